"""Pack and unpack speed of every format family, in GB/s of float32 input (issue 5: >= 1 GB/s).

For each format: quantize (range + rounding + packing) and dequantize (unpacking
+ scaling) of a 16Mi-element float32 array with group-32 scales, medians of 5
runs after a warm-up, plus the bare pack/unpack of codes for the integer widths.
The integer formats are a fixed list; every grid format (floats, codebooks) and
every block-scaled MX format in the registry is measured, so formats registered
later appear without edits here.  Column ``x int8``: int8's quantize time over
the format's, timed in the same process (1.00 = as fast as int8).  The CPU time
other processes used during the run is printed: a busy machine halves the figures.

Run: ``make bench``.  Exits 0 whatever the figures.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import lowbit
from _timing import CpuMonitor, measure
from lowbit._kernels import pack_codes, unpack_codes

N = 16 << 20
INT_FORMATS = ["int8", "uint8", "int4", "uint4", "int3", "int2", "uint6", "int16"]


def formats() -> list[str]:
    """The integer list, then every registered grid or MX format in registration order."""
    extra = [n for n in lowbit.list_qtypes() if lowbit.get_qtype(n).is_grid or lowbit.get_qtype(n).is_mx]
    return INT_FORMATS + [n for n in extra if n not in INT_FORMATS]


def main() -> int:
    x = np.random.default_rng(0).standard_normal(N).astype(np.float32)
    gb = x.nbytes / 1e9
    mon = CpuMonitor()
    mon.start()
    print(f"lowbit format benchmark: {N >> 20}Mi float32, PerGroup(32), GB/s of float32 in (quantize) / out "
          f"(dequantize)\n")
    print(f"{'format':12s} {'bits':>4s} {'quantize':>9s} {'x int8':>7s} {'dequantize':>10s}  >= 1 GB/s")
    worst, worst_name = np.inf, ""
    t_int8 = None
    for name in formats():
        qt = lowbit.quantize(x, name, granularity=lowbit.PerGroup(32))
        t_q = measure(lambda name=name: lowbit.quantize(x, name, granularity=lowbit.PerGroup(32)))
        t_d = measure(lambda qt=qt: qt.dequantize())
        t_int8 = t_q.median if name == "int8" else t_int8
        q, d = gb / t_q.median, gb / t_d.median
        if min(q, d) < worst:
            worst, worst_name = min(q, d), name
        rel = f"{t_int8 / t_q.median:6.2f}x" if t_int8 else ""
        print(f"{name:12s} {qt.qtype.bits:4d} {q:9.2f} {rel:>7s} {d:10.2f}  {'PASS' if min(q, d) >= 1 else 'FAIL'}",
              flush=True)
    print(f"\n{'bits':>4s} {'pack':>9s} {'unpack':>10s}   (codes only, GB/s of int8 codes)")
    for bits in (1, 2, 3, 4, 5, 6, 7):
        codes = (np.arange(N) % (1 << bits)).astype(np.uint8)
        packed = pack_codes(codes, bits)
        t_p = measure(lambda codes=codes, bits=bits: pack_codes(codes, bits))
        t_u = measure(lambda packed=packed, bits=bits: unpack_codes(packed, N, bits, False))
        print(f"{bits:4d} {codes.nbytes / 1e9 / t_p.median:9.2f} {codes.nbytes / 1e9 / t_u.median:10.2f}")
    got = mon.stop()
    if got is not None:
        print(f"\nother processes used {got[0]:.0f} CPU-s during the {got[1]:.0f} s run "
              f"({got[0] / (got[1] * (os.cpu_count() or 1)):.0%} of the machine)")
    print(f"\nslowest quantize/dequantize: {worst:.2f} GB/s ({worst_name}) [{'PASS' if worst >= 1 else 'FAIL'}] "
          "target >= 1 GB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
