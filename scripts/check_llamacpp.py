"""``make check-llamacpp``: SmolLM2 exported to GGUF by lowbit runs in llama.cpp as it runs in lowbit.

For each scheme, lowbit quantizes SmolLM2-135M (``lowbit.zoo``), exports it with
:func:`lowbit.io.gguf.export_gguf` (lowbit's codes kept as they are), and then:

* runs the GGUF file in llama.cpp (``llama-cpp-python``, built by ``make check-llamacpp``) and lowbit's own
  quantized torch model on the same Hamlet windows: the perplexities must agree within 1 %;
* decodes 16 tokens greedily from the same prompt in both: the tokens must be the same;
* reports how often both pick the same next token over the windows (teacher-forced top-1 agreement,
  llama.cpp's own "same top" metric), the first greedy position where they part and lowbit's margin
  between its top two logits there, and each side's decoding speed (tokens/s, batch 1, 2 threads).

llama.cpp multiplies quantized weights with activations it rounds to 8 bits (Q8_0/Q8_1/Q8_K blocks), so
its logits differ from a float-activation runtime on the same weights by far more than float noise;
the ``control`` line runs the q8_0 model's exact weights as an F32 GGUF to show that the weights
themselves agree.

The ``q4_k_m`` row is a float export with llama.cpp's Q4_K_M mix; lowbit's side is the GGUF file read back
with ``lowbit.load`` into the torch model, so it checks the reader as well.

Exit status 1 when a gate fails.
"""

from __future__ import annotations

import copy
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import lowbit
from lowbit.io.gguf import export_gguf
from lowbit.io.gguf._llama import hf_name, qk_row_order
from lowbit.model import WeightOnly, quantize_
from lowbit.zoo.smollm2 import cache_path, hamlet_windows, load_smollm2

THREADS = 2
N_WINDOWS, WINDOW = 8, 256
GREEDY = 16
PROMPT = "HAMLET:\nTo be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer"
SCHEMES = {
    "q8_0": WeightOnly("int8", "group:32", scale_format="float16"),
    "q4_0": WeightOnly("int4", "group:32", scale_format="float16"),
    "q4_1": WeightOnly("uint4", "group:32", scale_format="float16", zero_point="float"),
}


def _nll(logits: np.ndarray, row: list[int]) -> float:
    """Summed next-token cross-entropy of one window (positions 0..T-2 predict tokens 1..T-1)."""
    z = logits[:-1].astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -float(logp[np.arange(len(row) - 1), row[1:]].sum())


def compare_windows(llm, model, windows: torch.Tensor) -> tuple[float, float, float, float]:
    """(lowbit perplexity, llama.cpp perplexity, top-1 agreement, max |logit difference|) over the windows,
    counted as :func:`lowbit.zoo.smollm2.perplexity` counts."""
    nll = {"lowbit": 0.0, "llama": 0.0}
    same = count = 0
    worst = 0.0
    for row in windows.tolist():
        llm.reset()
        llm.eval(row)
        theirs = np.asarray(llm.scores[: len(row)], np.float32)
        with torch.no_grad():
            ours = model(torch.tensor([row])).logits[0].float().numpy()
        nll["llama"] += _nll(theirs, row)
        nll["lowbit"] += _nll(ours, row)
        same += int((theirs.argmax(1) == ours.argmax(1)).sum())
        worst = max(worst, float(np.abs(theirs - ours).max()))
        count += len(row) - 1
    return math.exp(nll["lowbit"] / count), math.exp(nll["llama"] / count), same / (count + len(windows)), worst


def llama_greedy(llm, prompt: list[int], n: int) -> tuple[list[int], float]:
    """``n`` greedy tokens after ``prompt`` and the decoding speed (tokens/s, prompt excluded)."""
    llm.reset()
    llm.eval(prompt)
    out: list[int] = []
    start = time.perf_counter()
    for _ in range(n):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(nxt)
        llm.eval([nxt])
    return out, n / (time.perf_counter() - start)


def first_split(model, prompt: list[int], ours: list[int], theirs: list[int]) -> str:
    """Where two greedy continuations part, and lowbit's top-2 logit margin at that step."""
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if a != b:
            with torch.no_grad():
                logits = model(torch.tensor([prompt + ours[:i]])).logits[0, -1].float()
            top = torch.topk(logits, 2).values
            return f"part at token {i + 1}, where lowbit's top-2 logit margin is {float(top[0] - top[1]):.3f}"
    return "same"


def torch_greedy(model, prompt: list[int], n: int) -> tuple[list[int], float]:
    """The same with lowbit's torch model (KV cache, batch 1)."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, do_sample=False)  # warm-up
        start = time.perf_counter()
        out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        speed = n / (time.perf_counter() - start)
    return out[0, len(prompt):].tolist(), speed


def load_gguf_into(model, path: Path):
    """The float model with every weight replaced by the GGUF file's values (read by ``lowbit.load``)."""
    heads = {"attn_q": model.config.num_attention_heads, "attn_k": model.config.num_key_value_heads}
    state = model.state_dict()
    for name, value in lowbit.load(path).items():
        w = value.dequantize() if hasattr(value, "dequantize") else value
        part = name.split(".")[2] if name.startswith("blk.") else ""
        if part in heads:
            back = np.empty_like(w)
            back[qk_row_order(w.shape[0], heads[part])] = w
            w = back
        state[hf_name(name)].copy_(torch.from_numpy(np.ascontiguousarray(w)))
    return model


def control(base, tok, prompt: list[int], tmp: Path) -> float:
    """Max |logit difference| between llama.cpp and lowbit when llama.cpp runs q8_0's weights as F32."""
    from llama_cpp import Llama

    model = copy.deepcopy(base)
    quantize_(model, SCHEMES["q8_0"])
    q8 = tmp / "control-q8_0.gguf"
    export_gguf(model, q8, tokenizer_dir=cache_path(), tokenizer_pre="smollm")
    f32 = tmp / "control-f32.gguf"
    export_gguf(load_gguf_into(copy.deepcopy(base), q8), f32, "f32", tokenizer_dir=cache_path(),
                tokenizer_pre="smollm")
    llm = Llama(model_path=str(f32), n_ctx=WINDOW, logits_all=True, n_threads=THREADS, verbose=False,
                use_extra_bufts=False)
    llm.eval(prompt)
    with torch.no_grad():
        ours = model(torch.tensor([prompt])).logits[0].numpy()
    return float(np.abs(np.asarray(llm.scores[: len(prompt)]) - ours).max())


def run_scheme(label: str, base, tok, windows, prompt: list[int], tmp: Path) -> bool:
    from llama_cpp import Llama

    path = tmp / f"smollm2-{label}.gguf"
    model = copy.deepcopy(base)
    if label in SCHEMES:
        quantize_(model, SCHEMES[label])
        summary = export_gguf(model, path, tokenizer_dir=cache_path(), tokenizer_pre="smollm")
    else:
        summary = export_gguf(cache_path(), path, label, tokenizer_pre="smollm")
        load_gguf_into(model, path)
    llm = Llama(model_path=str(path), n_ctx=WINDOW, logits_all=True, n_threads=THREADS, verbose=False,
                use_extra_bufts=False)
    ppl_lowbit, ppl_llama, agree, worst = compare_windows(llm, model, windows)
    tok_llama, speed_llama = llama_greedy(llm, prompt, GREEDY)
    tok_lowbit, speed_lowbit = torch_greedy(model, prompt, GREEDY)
    gap = abs(ppl_llama / ppl_lowbit - 1)
    ppl_ok, tokens_ok = gap <= 0.01, tok_llama == tok_lowbit
    print(f"{label}: {summary.bits_per_weight:.2f} bits/weight, {summary.exact} tensors kept lowbit's codes\n"
          f"  perplexity lowbit {ppl_lowbit:.3f}  llama.cpp {ppl_llama:.3f}  gap {100 * gap:.2f} % "
          f"[{'PASS' if ppl_ok else 'FAIL'}] (<= 1 %)\n"
          f"  greedy {GREEDY} tokens: {first_split(model, prompt, tok_lowbit, tok_llama)} "
          f"[{'PASS' if tokens_ok else 'FAIL'}] (same tokens)\n"
          f"  same top-1 token on {100 * agree:.1f} % of window positions; max |logit difference| {worst:.2f}\n"
          f"  decoding tokens/s: lowbit (torch) {speed_lowbit:.1f}  llama.cpp {speed_llama:.1f}", flush=True)
    if not tokens_ok:
        print(f"    lowbit:    {tok.decode(tok_lowbit)!r}\n    llama.cpp: {tok.decode(tok_llama)!r}")
    return ppl_ok and tokens_ok


def main() -> int:
    torch.set_num_threads(THREADS)
    base, tok = load_smollm2()
    windows = hamlet_windows(tok, n_windows=N_WINDOWS, window=WINDOW)
    prompt = tok(PROMPT)["input_ids"]
    with tempfile.TemporaryDirectory() as tmp:
        print(f"control: q8_0's exact weights as an F32 GGUF, max |logit difference| llama.cpp vs lowbit "
              f"{control(base, tok, prompt, Path(tmp)):.3f}", flush=True)
        passed = [run_scheme(label, base, tok, windows, prompt, Path(tmp)) for label in [*SCHEMES, "q4_k_m"]]
    print(f"SmolLM2-135M, {N_WINDOWS} Hamlet windows of {WINDOW} tokens, {THREADS} threads: "
          f"{sum(passed)}/{len(passed)} schemes pass both gates (perplexity within 1 %, same greedy tokens)")
    return 0 if all(passed) else 1


if __name__ == "__main__":
    sys.exit(main())
