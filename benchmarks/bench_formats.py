"""Pack and unpack speed of every format family, in GB/s of float32 input (issue 5: >= 1 GB/s).

For each format: quantize (range + rounding + packing) and dequantize (unpacking
+ scaling) of a 16Mi-element float32 array with group-32 scales, medians of 5
runs after a warm-up, plus the bare pack/unpack of codes for the integer widths.

Run: ``make bench``.  Exits 0 whatever the figures.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import lowbit
from _timing import measure
from lowbit.kernels import pack_codes, unpack_codes

N = 16 << 20
FORMATS = ["int8", "uint8", "int4", "uint4", "int3", "int2", "uint6", "int16",
           "fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1", "nf4"]


def main() -> int:
    x = np.random.default_rng(0).standard_normal(N).astype(np.float32)
    gb = x.nbytes / 1e9
    print(f"lowbit format benchmark: {N >> 20}Mi float32, PerGroup(32), GB/s of float32 in (quantize) / out "
          f"(dequantize)\n")
    print(f"{'format':10s} {'bits':>4s} {'quantize':>9s} {'dequantize':>10s}  >= 1 GB/s")
    worst = np.inf
    for name in FORMATS:
        qt = lowbit.quantize(x, name, granularity=lowbit.PerGroup(32))
        t_q = measure(lambda name=name: lowbit.quantize(x, name, granularity=lowbit.PerGroup(32)))
        t_d = measure(lambda qt=qt: qt.dequantize())
        q, d = gb / t_q.median, gb / t_d.median
        worst = min(worst, q, d)
        print(f"{name:10s} {qt.qtype.bits:4d} {q:9.2f} {d:10.2f}  {'PASS' if min(q, d) >= 1 else 'FAIL'}")
    print(f"\n{'bits':>4s} {'pack':>9s} {'unpack':>10s}   (codes only, GB/s of int8 codes)")
    for bits in (1, 2, 3, 4, 5, 6, 7):
        codes = (np.arange(N) % (1 << bits)).astype(np.uint8)
        packed = pack_codes(codes, bits)
        t_p = measure(lambda codes=codes, bits=bits: pack_codes(codes, bits))
        t_u = measure(lambda packed=packed, bits=bits: unpack_codes(packed, N, bits, False))
        print(f"{bits:4d} {codes.nbytes / 1e9 / t_p.median:9.2f} {codes.nbytes / 1e9 / t_u.median:10.2f}")
    print(f"\nslowest quantize/dequantize: {worst:.2f} GB/s [{'PASS' if worst >= 1 else 'FAIL'}] target >= 1 GB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
