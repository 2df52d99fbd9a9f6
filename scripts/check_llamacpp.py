"""``make check-llamacpp``: SmolLM2 exported to GGUF by lowbit runs in llama.cpp as it runs in lowbit.

For each scheme, lowbit quantizes SmolLM2-135M (``lowbit.zoo``), exports it with
:func:`lowbit.io.gguf.export_gguf` (lowbit's codes kept as they are), and then:

* runs the GGUF file in llama.cpp (``llama-cpp-python``, built by ``make check-llamacpp``) and lowbit's own
  quantized torch model on the same Hamlet windows: the perplexities must agree within 1 %;
* decodes 16 tokens greedily from the same prompt in both: the tokens must be the same;
* reports each side's decoding speed (tokens/s, batch 1, 2 threads).

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
from lowbit.zoo.smollm2 import cache_path, hamlet_windows, load_smollm2, perplexity

THREADS = 2
N_WINDOWS, WINDOW = 8, 256
GREEDY = 16
PROMPT = "HAMLET:\nTo be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer"
SCHEMES = {
    "q8_0": WeightOnly("int8", "group:32", scale_format="float16"),
    "q4_0": WeightOnly("int4", "group:32", scale_format="float16"),
    "q4_1": WeightOnly("uint4", "group:32", scale_format="float16", zero_point="float"),
}


def llama_perplexity(llm, windows: torch.Tensor) -> float:
    """exp of the mean next-token cross-entropy, as :func:`lowbit.zoo.smollm2.perplexity` counts it."""
    nll, count = 0.0, 0
    for row in windows.tolist():
        llm.reset()
        llm.eval(row)
        logits = np.asarray(llm.scores[: len(row)], np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        nll -= float(logp[np.arange(len(row) - 1), row[1:]].sum())
        count += len(row) - 1
    return math.exp(nll / count)


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


def main() -> int:
    from llama_cpp import Llama

    torch.set_num_threads(THREADS)
    base, tok = load_smollm2()
    windows = hamlet_windows(tok, n_windows=N_WINDOWS, window=WINDOW)
    prompt = tok(PROMPT)["input_ids"]
    results, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        for label in [*SCHEMES, "q4_k_m"]:
            path = Path(tmp) / f"smollm2-{label}.gguf"
            model = copy.deepcopy(base)
            if label in SCHEMES:
                quantize_(model, SCHEMES[label])
                summary = export_gguf(model, path, tokenizer_dir=cache_path(), tokenizer_pre="smollm")
            else:
                summary = export_gguf(cache_path(), path, label, tokenizer_pre="smollm")
                load_gguf_into(model, path)
            llm = Llama(model_path=str(path), n_ctx=WINDOW, logits_all=True, n_threads=THREADS, verbose=False,
                        use_extra_bufts=False)
            ppl_llama = llama_perplexity(llm, windows)
            ppl_lowbit = perplexity(model, windows)
            tok_llama, speed_llama = llama_greedy(llm, prompt, GREEDY)
            tok_lowbit, speed_lowbit = torch_greedy(model, prompt, GREEDY)
            gap = abs(ppl_llama / ppl_lowbit - 1)
            passed = gap <= 0.01 and tok_llama == tok_lowbit
            ok &= passed
            results.append((label, summary, ppl_lowbit, ppl_llama, gap, tok_llama == tok_lowbit, speed_lowbit,
                            speed_llama, passed))
            print(f"{label:7s} {summary.bits_per_weight:5.2f} bits/weight ({summary.exact} tensors kept lowbit's "
                  f"codes)  perplexity lowbit {ppl_lowbit:.3f} llama.cpp {ppl_llama:.3f} ({100 * gap:.2f} %)  "
                  f"greedy {GREEDY} tokens {'same' if tok_llama == tok_lowbit else 'DIFFER'}  tokens/s lowbit "
                  f"{speed_lowbit:.1f} llama.cpp {speed_llama:.1f}  [{'PASS' if passed else 'FAIL'}]", flush=True)
            if tok_llama != tok_lowbit:
                print(f"        lowbit:    {tok.decode(tok_lowbit)!r}\n        llama.cpp: {tok.decode(tok_llama)!r}")
            del llm
    print(f"SmolLM2-135M, {N_WINDOWS} Hamlet windows of {WINDOW} tokens, {THREADS} threads: "
          f"{sum(r[-1] for r in results)}/{len(results)} schemes pass (perplexity within 1 %, same greedy tokens)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
