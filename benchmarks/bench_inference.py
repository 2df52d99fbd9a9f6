"""Inference speed of lowbit's quantized layers and models against fp32, measured in one process (issue 11).

Every figure is a ratio against a baseline timed round-robin with it (``measure_interleaved``), with
PASS/FAIL against the issue's target:

* W8A8 ``Int8Linear(4096, 4096)``, dynamic per-token activations, at batch 1, 64 and 256, against fp32
  ``nn.Linear`` and ``torch.ao`` ``quantize_dynamic``; and the exact fp32 fallback forced
  (``LOWBIT_INT8_MATMUL=fp32``), as on a CPU without int8 dot products;
* weight-only ``WeightOnlyLinear(4096, 4096)``: int4 groups of 32/64/128 at batch 1, the same with
  ``activations="int8"`` (int8 activations per block, with their error against float activations),
  int4 group-64 at batch 4, 16 and 64, int8 per channel and nf4 group-64 at batch 1;
* end to end: SmolLM2-135M greedy generation of 128 tokens with the KV cache (every decoder Linear
  int4 group-64, and int8), and all-MiniLM-L6-v2 W8A8 dynamic per-token embeddings at batch 32.

Weights are cycled over enough distinct layers that they come from memory, not the cache, as in a
real model: at least 8 layers and at least twice the last-level cache in bytes.

Run: ``make bench`` (or ``python benchmarks/bench_inference.py [--quick]``).  Exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
import lowbit.model as lm
import lowbit.nn as lnn
from _timing import CpuMonitor, measure_interleaved, wait_for_idle  # benchmarks/ is sys.path[0]
from lowbit.nn import _fused
from lowbit.nn._int8mm import int8_path

SIZE = 4096
RESULTS: list[tuple[str, float, float]] = []  # (label, ratio, target)


def _llc_bytes() -> int:
    """The last-level cache size from sysfs (32 MiB when unknown)."""
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in os.listdir(base):
            with open(os.path.join(base, entry, "size")) as f:
                text = f.read().strip()
            units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
            best = max(best, int(text[:-1]) * units.get(text[-1], 1) if text[-1] in units else int(text))
    except (OSError, ValueError):
        pass
    return best or (32 << 20)


def copies(layer: nn.Module, layer_bytes: int, cap: int = 96) -> list[nn.Module]:
    """Distinct copies of ``layer``, enough to hold twice the last-level cache (at least 8)."""
    n = min(cap, max(8, math.ceil(2 * _llc_bytes() / layer_bytes)))
    return [layer] + [copy.deepcopy(layer) for _ in range(n - 1)]


def cycled(layers: Sequence[nn.Module], x: torch.Tensor) -> Callable[[], Any]:
    state = {"i": 0}

    def run() -> Any:
        state["i"] = (state["i"] + 1) % len(layers)
        return layers[state["i"]](x)

    return run


def report(label: str, base_s: float, ours_s: float, target: float, baseline: str = "fp32") -> None:
    ratio = base_s / ours_s
    RESULTS.append((label, ratio, target))
    verdict = "PASS" if ratio >= target else "FAIL"
    print(f"  {label:46s} {baseline} {base_s * 1e3:8.2f} ms  lowbit {ours_s * 1e3:8.2f} ms  {ratio:5.2f}x  "
          f"[{verdict}] target >= {target:g}x")


def timed_pair(base: Callable[[], Any], ours: Callable[[], Any], repeat: int) -> tuple[float, float]:
    with torch.no_grad():
        t = measure_interleaved([base, ours], repeat=repeat, warmup=2)
    return t[0].median, t[1].median


def w8a8(fp32: list[nn.Module], repeat: int) -> None:
    print(f"\nW8A8 Int8Linear {SIZE}x{SIZE}, dynamic per-token activations (int8 GEMM path: {int8_path()}):")
    q = copies(lnn.Int8Linear.from_float(fp32[0], act_granularity="token"), SIZE * SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices
        ao = copies(torch.ao.quantization.quantize_dynamic(nn.Sequential(fp32[0]), {nn.Linear}, dtype=torch.qint8),
                    SIZE * SIZE)
    for batch, target in ((1, 1.5), (64, 3.0), (256, 3.0)):
        x = torch.randn(batch, SIZE)
        fp_s, q_s = timed_pair(cycled(fp32, x), cycled(q, x), repeat)
        report(f"batch {batch} vs fp32 nn.Linear", fp_s, q_s, target)
        if batch > 1:
            ao_s, q_s = timed_pair(cycled(ao, x), cycled(q, x), repeat)
            report(f"batch {batch} vs torch.ao quantize_dynamic", ao_s, q_s, 1.0, "ao  ")
    os.environ["LOWBIT_INT8_MATMUL"] = "fp32"
    try:
        x = torch.randn(64, SIZE)
        fp_s, q_s = timed_pair(cycled(fp32, x), cycled(q, x), repeat)
        report("batch 64, fp32 fallback forced", fp_s, q_s, 0.9)
    finally:
        del os.environ["LOWBIT_INT8_MATMUL"]


def weight_only(fp32: list[nn.Module], repeat: int) -> None:
    print(f"\nWeight-only WeightOnlyLinear {SIZE}x{SIZE} (fused kernels up to {_fused.MAX_ROWS} rows):")
    cases = [("int4", "group:32", 1, 2.5, "float"), ("int4", "group:64", 1, 2.5, "float"),
             ("int4", "group:128", 1, 2.5, "float"),
             ("int4", "group:32", 1, 2.5, "int8"), ("int4", "group:64", 1, 2.5, "int8"),
             ("int4", "group:128", 1, 2.5, "int8"),
             ("int4", "group:64", 4, 1.5, "float"), ("int4", "group:64", 16, 1.0, "float"),
             ("int4", "group:64", 64, 0.9, "float"), ("int8", "channel", 1, 1.7, "float"),
             ("nf4", "group:64", 1, 2.0, "float")]
    built: dict[tuple[str, str, str], list[nn.Module]] = {}
    for qtype, gran, batch, target, acts in cases:
        if (qtype, gran, acts) not in built:
            layer = lnn.WeightOnlyLinear.from_float(fp32[0], qtype, gran, activations=acts)
            built = {(qtype, gran, acts): copies(layer, layer.nbytes)}  # one format in memory at a time
        x = torch.randn(batch, SIZE)
        fp_s, q_s = timed_pair(cycled(fp32, x), cycled(built[(qtype, gran, acts)], x), repeat)
        report(f"{qtype} {gran}, batch {batch}" + (", int8 activations" if acts == "int8" else ""), fp_s, q_s,
               target)
        if acts == "int8":
            print(f"  {'':46s} error vs float activations: {int8_activation_error(built[(qtype, gran, acts)][0]):.2e} "
                  "(relative Frobenius, 8 random rows, one per call)")


def int8_activation_error(layer: lnn.WeightOnlyLinear, rows: int = 8) -> float:
    """``||y_int8 - y_float|| / ||y_float||`` of ``layer`` on random rows, each called alone (as in decoding)."""
    x = torch.randn(rows, layer.in_features, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        layer.activations = "float"
        exact = torch.cat([layer(r[None]) for r in x])
        layer.activations = "int8"
        approx = torch.cat([layer(r[None]) for r in x])
    return float((approx - exact).norm() / exact.norm())


def generation(quick: bool) -> None:
    try:
        from lowbit.zoo import load_smollm2
    except ImportError as err:  # pragma: no cover - optional model package
        print(f"\nSmolLM2 not available: {err}")
        return
    model, tokenizer = load_smollm2()
    model.eval()
    prompt = tokenizer("To be, or not to be, that is the question:", return_tensors="pt")
    new = 32 if quick else 128

    def generate(m: nn.Module, tokens: int = new) -> tuple[float, list[int]]:
        with torch.no_grad():
            m.generate(**prompt, max_new_tokens=4, do_sample=False)  # warm-up
            start = time.perf_counter()
            out = m.generate(**prompt, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
            return time.perf_counter() - start, out[0, prompt["input_ids"].shape[1]:].tolist()

    fp_s, _ = generate(model)
    print(f"\nSmolLM2-135M greedy generation of {new} tokens with the KV cache (fp32: {new / fp_s:.1f} tokens/s):")
    for qtype, gran, target in (("int4", "group:64", 1.5), ("int8", "channel", 1.2)):
        q = copy.deepcopy(model)
        lm.quantize_(q, lm.WeightOnly(qtype, gran), include=["model.layers.*"])
        q_s, tokens = generate(q)
        fp_s, _ = generate(model)  # re-measured next to it
        report(f"{qtype} {gran}, tokens/s", fp_s, q_s, target)
        saved = _fused.MAX_ROWS
        _fused.MAX_ROWS = 0  # the dequantize path
        try:
            _, reference = generate(q, 32)
        finally:
            _fused.MAX_ROWS = saved
        same = tokens[:32] == reference
        print(f"  {'':46s} first 32 greedy tokens identical with the dequantize path: {'yes' if same else 'NO'}")


def minilm(repeat: int) -> None:
    try:
        from lowbit.zoo import embed, load_minilm, sentences
    except ImportError as err:  # pragma: no cover - optional model package
        print(f"\nMiniLM not available: {err}")
        return
    model, tokenizer = load_minilm()
    q = copy.deepcopy(model)
    lm.quantize_(q, lm.Dynamic(act_granularity="token"))
    batch = sentences(32)
    with torch.no_grad():
        ref, got = embed(model, tokenizer, batch), embed(q, tokenizer, batch)
        cos = float(torch.nn.functional.cosine_similarity(ref, got).mean())
        t = measure_interleaved([lambda: embed(model, tokenizer, batch), lambda: embed(q, tokenizer, batch)],
                                repeat=repeat, warmup=1)
    print(f"\nall-MiniLM-L6-v2 embeddings of 32 sentences, W8A8 dynamic per-token (mean cosine to fp32 {cos:.4f}):")
    report("throughput", t[0].median, t[1].median, 2.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats and 32 generated tokens")
    ap.add_argument("--wait-idle", type=float, default=30.0, help="seconds to wait for a quiet machine first")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.wait_idle > 0:
        waited, frac = wait_for_idle(args.wait_idle)
        print(f"waited {waited:.1f} s for other processes to go quiet (last: {frac})")
    repeat = 7 if args.quick else 21
    print(f"lowbit inference benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"last-level cache {_llc_bytes() >> 20} MiB")
    mon = CpuMonitor()
    mon.start()
    torch.manual_seed(0)
    fp32 = copies(nn.Linear(SIZE, SIZE).eval(), SIZE * SIZE * 4)
    w8a8(fp32, repeat)
    weight_only(fp32, repeat)
    del fp32
    generation(args.quick)
    minilm(3 if args.quick else 7)
    got = mon.stop()
    if got is not None:
        other, wall = got
        print(f"\nother processes used {other:.1f} CPU-s during the {wall:.0f} s of measurement "
              f"({100 * other / (wall * (os.cpu_count() or 1)):.0f}% of {os.cpu_count()} CPUs)")
    passed = sum(r >= t for _, r, t in RESULTS)
    print(f"summary: {passed}/{len(RESULTS)} targets met (benchmark only: exit status is 0 either way)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
