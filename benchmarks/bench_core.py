"""Throughput of lowbit's core quantize / dequantize against NumPy and torch baselines.

Run:  python benchmarks/bench_core.py [--repeat N] [--quick] [--wait-idle S]

Everything runs in one process.  Each case gets one untimed warm-up call (Numba
compilation, first-touch page faults), then ``--repeat`` (>= 5) timed calls;
the median is reported.  The cases of one workload run round-robin (one call
of each per round), so a change in machine load during the run affects a
baseline and the code compared against it alike.

Throughput is always "GB/s of float32 input": elements x 4 bytes / median
time, also for dequantize, so the rows of a table are comparable.  Ratios are
speed-ups (baseline median / lowbit median) against baselines timed in the
same process.  The np.copyto ratio compares float32 bytes read per second:
lowbit's input bytes against the copy's source bytes.

This is a benchmark, not a test: targets are printed as PASS/FAIL but the
script always exits 0.  Threads are not forced beyond ``torch.set_num_threads(2)``
and ``numba.set_num_threads(min(2, NUMBA_NUM_THREADS))``; set
``NUMBA_NUM_THREADS`` in the environment to change Numba's pool.  The CPU time
other processes used during the run is printed: figures taken on a busy
machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import torch

import lowbit
from _timing import CpuMonitor, Timing, gbps, measure_interleaved, wait_for_idle  # benchmarks/ is sys.path[0]

# torch's quantized tensor API warns that it is deprecated; the benchmark uses it only as a baseline.
warnings.filterwarnings("ignore", message=r".*quantize.*deprecated.*")
warnings.filterwarnings("ignore", category=UserWarning, module=r"torch.*")

GROUP = 128


# --------------------------------------------------------------------------- baselines


def naive_int8(x: np.ndarray) -> np.ndarray:
    """The seeds' NumPy per-tensor int8 quantize (range pass included)."""
    alpha = np.max(np.abs(x))
    scale = alpha / 127
    return np.clip(np.round(x / scale), -127, 127).astype(np.int8)


def numpy_uint4_group(x: np.ndarray, group: int = GROUP) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Straightforward NumPy asymmetric uint4 group quantize + nibble packing.

    Groups are runs of ``group`` consecutive elements along the last axis (C order),
    the range includes zero, ``zero_point = round(-lo / scale)``, two codes per
    byte with the first code in the low nibble (lowbit's layout).
    """
    g = x.reshape(-1, group)
    lo = np.minimum(g.min(axis=1), 0)
    hi = np.maximum(g.max(axis=1), 0)
    scale = (hi - lo) / 15
    scale[scale == 0] = 1
    zp = np.clip(np.round(-lo / scale), 0, 15)
    q = np.clip(np.round(g / scale[:, None] + zp[:, None]), 0, 15).astype(np.uint8).reshape(-1, 2)
    packed = q[:, 0] | (q[:, 1] << 4)
    return packed, scale, zp


# --------------------------------------------------------------------------- bookkeeping


@dataclass
class Row:
    label: str
    timing: Timing
    nbytes: int  # float32 input bytes the row is normalised by
    vs: str = ""  # "x.xx x <baseline>"

    @property
    def gbps(self) -> float:
        return gbps(self.nbytes, self.timing.median)


@dataclass
class Target:
    what: str
    value: float
    goal: float

    @property
    def ok(self) -> bool:
        return self.value >= self.goal


@dataclass
class Suite:
    name: str
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- one workload


def run_suite(name: str, x: np.ndarray, repeat: int) -> Suite:
    """Time every case on ``x``; all cases run round-robin (see ``measure_interleaved``)."""
    suite = Suite(name)
    nb = x.nbytes
    t = torch.from_numpy(x)  # shares memory with x
    scale = float(np.max(np.abs(x))) / 127.0
    gran = lowbit.PerGroup(GROUP)
    dst = np.empty_like(x)
    buf = np.empty(x.size, np.int8)
    fbuf = np.empty_like(x)
    qt = lowbit.quantize(x, "int8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tq = torch.quantize_per_tensor(t, scale, 0, torch.qint8)

    def torch_qpt() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.quantize_per_tensor(t, scale, 0, torch.qint8)

    cases: dict[str, tuple[str, Callable[[], Any]]] = {
        "copy": ("np.copyto(dst, src)  [baseline]", lambda: np.copyto(dst, x)),
        "naive": ("NumPy naive int8 quantize  [baseline]", lambda: naive_int8(x)),
        "tqpt": ("torch.quantize_per_tensor (scale given)  [baseline]", torch_qpt),
        "tdq": ("torch q.dequantize()  [baseline]", lambda: tq.dequantize()),
        "np4": (f"NumPy uint4 group-{GROUP} quantize+pack  [baseline]", lambda: numpy_uint4_group(x)),
        "q": ('lowbit.quantize(x, "int8")', lambda: lowbit.quantize(x, "int8")),
        "qo": ('lowbit.quantize(x, "int8", out=buf)', lambda: lowbit.quantize(x, "int8", out=buf)),
        "dq": ("lowbit.dequantize(qt)  [int8]", lambda: lowbit.dequantize(qt)),
        "dqo": ("lowbit.dequantize(qt, out=buf)  [int8]", lambda: lowbit.dequantize(qt, out=fbuf)),
        "q4": (
            f'lowbit.quantize(x, "uint4", PerGroup({GROUP}))',
            lambda: lowbit.quantize(x, "uint4", granularity=gran),
        ),
        "fq": ('lowbit.fake_quantize(x, "int8")  [reference]', lambda: lowbit.fake_quantize(x, "int8")),
    }
    keys = list(cases)
    timings = dict(zip(keys, measure_interleaved([cases[k][1] for k in keys], repeat=repeat, warmup=1), strict=True))

    def sp(base: str, new: str) -> float:
        return timings[base].median / timings[new].median

    vs = {
        "q": f"{sp('naive', 'q'):6.2f}x naive  {sp('tqpt', 'q'):5.2f}x torch.qpt",
        "qo": f"{sp('naive', 'qo'):6.2f}x naive  {sp('tqpt', 'qo'):5.2f}x torch.qpt  "
        f"{sp('copy', 'qo'):4.2f}x copyto BW",
        "dq": f"{sp('tdq', 'dq'):6.2f}x torch dequantize",
        "dqo": f"{sp('tdq', 'dqo'):6.2f}x torch dequantize",
        "q4": f"{sp('np4', 'q4'):6.2f}x NumPy uint4",
        "fq": f"{sp('naive', 'fq'):6.2f}x naive int8 quantize",
    }
    for k in keys:
        suite.rows.append(Row(cases[k][0], timings[k], nb, vs.get(k, "")))

    # sanity: the baselines compute the same thing as lowbit (not timed)
    agree8 = float(np.mean(qt.codes.reshape(-1) == naive_int8(x).reshape(-1)))
    qt4 = lowbit.quantize(x, "uint4", granularity=gran)
    agree4 = float(np.mean(qt4.data == numpy_uint4_group(x)[0]))
    suite.notes.append(
        f"sanity: int8 codes equal to naive NumPy: {agree8:.4%}; "
        f"uint4 packed bytes equal to the NumPy baseline: {agree4:.4%}"
    )
    worst = max(keys, key=lambda k: timings[k].spread)
    suite.notes.append(
        f"noise: largest median-over-best-run excess: {timings[worst].spread:.0%} ({cases[worst][0].split('  [')[0]})"
    )

    suite.targets += [
        Target("int8 quantize incl. range vs naive NumPy", sp("naive", "q"), 8.0),
        Target("int8 quantize incl. range vs torch.quantize_per_tensor", sp("tqpt", "q"), 1.5),
        Target("int8 quantize out= input BW vs np.copyto src BW", sp("copy", "qo"), 0.8),
        Target("int8 dequantize vs torch dequantize()", sp("tdq", "dq"), 5.0),
        Target(f"uint4 group-{GROUP} quantize+pack vs NumPy", sp("np4", "q4"), 8.0),
    ]
    return suite


# --------------------------------------------------------------------------- printing


def header(repeat: int) -> str:
    lines = [
        "lowbit core benchmark",
        f"  python {platform.python_version()}  numpy {np.__version__}  numba {numba.__version__}  "
        f"torch {torch.__version__}  lowbit {lowbit.__version__}",
        f"  cpu: {platform.processor() or platform.machine()}  os.cpu_count()={os.cpu_count()}",
        f"  numba threads: {numba.get_num_threads()} (NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}, "
        f"layer={numba.threading_layer()})  torch threads: {torch.get_num_threads()}",
        f"  load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
        f"median of {repeat} timed runs (round-robin) after 1 warm-up call each",
        "  GB/s = float32 input bytes / median time (dequantize too: bytes of the float32 result)",
        "  ratios are speed-ups: baseline median time / lowbit median time",
    ]
    return "\n".join(lines)


def print_suite(s: Suite) -> None:
    w = max(len(r.label) for r in s.rows)
    print(f"\n== {s.name} ==")
    print(f"  {'case':<{w}}  {'median ms':>10}  {'min ms':>9}  {'GB/s':>7}  ratio")
    print(f"  {'-' * w}  {'-' * 10}  {'-' * 9}  {'-' * 7}  {'-' * 40}")
    for r in s.rows:
        print(f"  {r.label:<{w}}  {r.timing.median * 1e3:10.2f}  {r.timing.best * 1e3:9.2f}  {r.gbps:7.2f}  {r.vs}")
    for note in s.notes:
        print(f"  {note}")
    print("  targets:")
    tw = max(len(t.what) for t in s.targets)
    for t in s.targets:
        print(f"    [{'PASS' if t.ok else 'FAIL'}] {t.what:<{tw}}  {t.value:6.2f}x  (target >= {t.goal:g}x)")


def _warm_numba() -> None:
    """Compile (or load from cache) every kernel once, so no case pays for it."""
    small = np.random.default_rng(1).standard_normal((4, 256)).astype(np.float32)
    lowbit.dequantize(lowbit.quantize(small, "int8"))
    lowbit.quantize(small, "int8", out=np.empty(small.size, np.int8))
    lowbit.dequantize(lowbit.quantize(small, "uint4", granularity=lowbit.PerGroup(GROUP)))
    lowbit.fake_quantize(small, "int8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per case (default 7, minimum 5)")
    ap.add_argument("--quick", action="store_true", help="smaller inputs (16Mi / 2048x2048) for a smoke run")
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=45.0,
        metavar="S",
        help="before each workload wait up to S seconds (in all) for other processes to go "
        "below 15%% CPU (default 45; 0 disables)",
    )
    args = ap.parse_args(argv)
    repeat = max(5, args.repeat)

    torch.set_num_threads(2)
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))

    t_start = time.perf_counter()
    _warm_numba()
    print(header(repeat), flush=True)

    rng = np.random.default_rng(0)
    n_flat = (16 if args.quick else 64) * 1024 * 1024
    side = 2048 if args.quick else 4096
    workloads = [
        (
            f"flat float32 array, {n_flat // (1024 * 1024)}Mi elements ({n_flat * 4 / 2**20:.0f} MiB)",
            rng.standard_normal(n_flat, dtype=np.float32),
        ),
        (
            f"float32 matrix {side}x{side} ({side * side * 4 / 2**20:.0f} MiB)",
            rng.standard_normal((side, side), dtype=np.float32),
        ),
    ]
    summary = []
    monitor = CpuMonitor()
    monitor.start()
    wait_left = max(0.0, args.wait_idle)
    for name, x in workloads:
        if wait_left > 0:
            waited, frac = wait_for_idle(wait_left)
            wait_left -= waited
            if frac is not None and frac >= 0.15:
                print(f"\n(note: other processes still used {frac:.0%} of the CPUs after waiting {waited:.0f} s)")
        suite = run_suite(name, x, repeat)
        print_suite(suite)
        summary += [(name.split(",")[0].split(" (")[0], t) for t in suite.targets]
        sys.stdout.flush()

    passed = sum(t.ok for _, t in summary)
    busy = monitor.stop()
    if busy is not None:
        other, wall = busy
        ncpu = os.cpu_count() or 1
        noisy = "  <- noisy machine" if other > 0.1 * wall * ncpu else ""
        print(
            f"\nother processes used {other:.1f} CPU-s during the {wall:.0f} s of measurement "
            f"({other / (wall * ncpu):.0%} of {ncpu} CPUs){noisy}"
        )
    print(
        f"summary: {passed}/{len(summary)} targets met; total time {time.perf_counter() - t_start:.1f} s "
        "(benchmark only: exit status is 0 either way)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
