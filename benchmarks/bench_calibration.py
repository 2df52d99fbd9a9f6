"""Benchmark of the range estimators (lowbit.calibration) against NumPy, in one process.

On a 64Mi-element float32 array: every estimator's fit + range, as a ratio
against ``np.percentile(x, 99.99)`` (the cost of the obvious way to clip) and,
for MinMax, against ``np.min`` + ``np.max``.  Then the memory that calibrating
over 1 GiB of activations in 16 batches adds (peak RSS while fitting, minus
the peak of making the same batches alone).

Run: ``make bench`` or ``python benchmarks/bench_calibration.py``.  Exits 0
whatever the figures: it is a measurement, not a test.
"""

from __future__ import annotations

import os
import platform
import resource
import sys

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _timing import measure_interleaved
from lowbit.calibration import ACIQ, MSE, Entropy, MinMax, MovingAverageMinMax, Percentile

N = 64 << 20
BATCH = 16 << 20  # 64 MiB of float32
NBATCHES = 16  # 1 GiB in all


def _fit(cls, x):
    return lambda: cls().fit([x]).clip_range("int8")


def timings(x: np.ndarray, repeat: int) -> None:
    cases = [
        ("np.percentile(x, 99.99)  [baseline]", lambda: np.percentile(x, 99.99)),
        ("np.min(x) + np.max(x)  [baseline]", lambda: (np.min(x), np.max(x))),
        *((f"{cls.__name__}().fit([x]).clip_range()", _fit(cls, x)) for cls in
          (MinMax, Percentile, MSE, Entropy, ACIQ, MovingAverageMinMax)),
    ]
    results = dict(zip([c[0] for c in cases], measure_interleaved([c[1] for c in cases], repeat), strict=True))
    pct = results[cases[0][0]].median
    mm = results[cases[1][0]].median
    print(f"{'case':46s} {'median ms':>10s} {'min ms':>9s} {'GB/s':>7s}  ratio")
    for name, t in results.items():
        ratio = ""
        if "fit" in name:
            ratio = f"{pct / t.median:6.1f}x np.percentile"
            if name.startswith("MinMax"):
                ratio += f"   {mm / t.median:.2f}x np.min+np.max"
        print(f"{name:46s} {t.median * 1e3:10.2f} {t.best * 1e3:9.2f} {x.nbytes / t.median / 1e9:7.2f}  {ratio}")
    print("targets:")
    for cls in (Percentile, MSE, Entropy):
        r = pct / results[f"{cls.__name__}().fit([x]).clip_range()"].median
        verdict = "PASS" if r >= 5 else "FAIL"
        print(f"  [{verdict}] {cls.__name__:10s} {r:6.1f}x faster than np.percentile (target >= 5x)")
    r = results["MinMax().fit([x]).clip_range()"].median / mm
    print(f"  [{'PASS' if r <= 1.5 else 'FAIL'}] MinMax takes {r:.2f}x the time of np.min+np.max (target <= 1.5x)")


def _batches(seed: int):
    rng = np.random.default_rng(seed)
    buf = np.empty(BATCH, np.float32)
    for i in range(NBATCHES):
        rng.standard_normal(BATCH, dtype=np.float32, out=buf)
        buf *= 1.0 + i / 4  # the range grows, so histograms re-bin
        yield buf


def _feed(est) -> None:
    """Feed every batch (or just make them); no batch outlives this call."""
    for batch in _batches(1):
        if est is not None:
            est.partial_fit(batch)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory() -> None:
    """Run first, before anything large is allocated: ru_maxrss is a lifetime peak."""
    small = np.random.default_rng(0).standard_normal(1 << 16).astype(np.float32)
    for cls in (MinMax, Percentile, MSE, Entropy, ACIQ, MovingAverageMinMax):
        cls().fit([small, small * 2]).clip_range("int8")  # compile (or load) every kernel first
    _feed(None)  # the batches alone set the baseline peak
    base = _peak_rss_mib()
    print(f"calibrating over {NBATCHES} batches of {BATCH * 4 >> 20} MiB ({NBATCHES * BATCH * 4 >> 30} GiB):")
    for cls in (MinMax, Percentile, MSE, Entropy, ACIQ, MovingAverageMinMax):
        est = cls()
        _feed(est)
        est.clip_range("int8")
        print(f"  {cls.__name__:20s} peak RSS above the batches alone: {_peak_rss_mib() - base:6.1f} MiB")
    added = _peak_rss_mib() - base
    print(f"  [{'PASS' if added < 64 else 'FAIL'}] largest addition {added:.1f} MiB (target < 64 MiB)")


def main() -> int:
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    print("lowbit calibration benchmark")
    print(f"  python {platform.python_version()}  numpy {np.__version__}  numba {numba.__version__}  "
          f"threads {numba.get_num_threads()}  cpus {os.cpu_count()}")
    memory()
    x = np.random.default_rng(0).standard_normal(N, dtype=np.float32)
    print(f"\ndata: {N >> 20}Mi float32 normal values; median of 5 runs after a warm-up, round-robin")
    timings(x, repeat=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
