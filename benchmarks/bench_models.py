"""Benchmark of lowbit's quantized torch layers against fp32 nn.Linear, in one process, 2 threads.

* W8A8 ``Int8Linear(4096, 4096)`` (dynamic activations, exact int8 GEMM) vs fp32
  ``nn.Linear`` at batch 64 and 256 (target: >= 3x faster);
* weight-only int4 group-128 ``WeightOnlyLinear`` at batch 1 vs fp32 (reported);
* time to quantize all-MiniLM-L6-v2 weight-only int4 (target: < 5 s).

Run: ``make bench``.  Exits 0 whatever the figures.
"""

from __future__ import annotations

import copy
import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
import lowbit.model as lm
from _timing import measure_interleaved
from lowbit.granularity import PerGroup
from lowbit.nn import Int8Linear, WeightOnlyLinear


def linear_speed() -> None:
    torch.manual_seed(0)
    fp32 = nn.Linear(4096, 4096).eval()
    int8 = Int8Linear.from_float(fp32)
    w4 = WeightOnlyLinear.from_float(fp32, qtype="int4", granularity=PerGroup(128))
    print(f"{'case':44s} {'fp32 ms':>9s} {'lowbit ms':>10s}  speed-up")
    with torch.no_grad():
        for batch in (64, 256):
            x = torch.randn(batch, 4096)
            t_fp, t_q = measure_interleaved([lambda x=x: fp32(x), lambda x=x: int8(x)], repeat=7)
            ratio = t_fp.median / t_q.median
            verdict = "PASS" if ratio >= 3 else "FAIL"
            print(f"{f'W8A8 Int8Linear 4096x4096, batch {batch}':44s} {t_fp.median * 1e3:9.2f} "
                  f"{t_q.median * 1e3:10.2f}  {ratio:5.2f}x  [{verdict}] target >= 3x")
        x = torch.randn(1, 4096)
        t_fp, t_q = measure_interleaved([lambda: fp32(x), lambda: w4(x)], repeat=15)
        print(f"{'weight-only int4 g128 4096x4096, batch 1':44s} {t_fp.median * 1e3:9.2f} "
              f"{t_q.median * 1e3:10.2f}  {t_fp.median / t_q.median:5.2f}x  (reported; fp32 is the goal to beat)")


def minilm_quantize_time() -> None:
    try:
        from lowbit.zoo import load_minilm
    except ImportError as err:  # pragma: no cover - optional model package
        print(f"MiniLM not available: {err}")
        return
    model, _ = load_minilm()
    lm.quantize_(copy.deepcopy(model), lm.WeightOnly("int4", PerGroup(32)))  # warm-up: kernels compiled/cached
    copies = [copy.deepcopy(model) for _ in range(3)]
    times = []
    for m in copies:
        start = time.perf_counter()
        summary = lm.quantize_(m, lm.WeightOnly("int4", PerGroup(32)))
        times.append(time.perf_counter() - start)
    median = sorted(times)[len(times) // 2]
    print(f"{'quantize_ all-MiniLM-L6-v2 weight-only int4 g32':44s} {median:9.2f} s   "
          f"[{'PASS' if median < 5 else 'FAIL'}] target < 5 s  ({len(summary.rows)} layers, "
          f"{summary.bytes_before / 2**20:.1f} -> {summary.bytes_after / 2**20:.1f} MiB)")


def main() -> int:
    torch.set_num_threads(2)
    print(f"lowbit model benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    linear_speed()
    minilm_quantize_time()
    return 0


if __name__ == "__main__":
    sys.exit(main())
