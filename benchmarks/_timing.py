"""Timing helpers for the lowbit benchmarks (stdlib only).

``measure`` times one callable; ``measure_interleaved`` times several callables
round-robin (one call of each per round), so slow drifts in machine load hit
a baseline and the code compared against it alike.  ``CpuMonitor`` reports how
much CPU other processes used while the benchmark ran (Linux ``/proc/stat``).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Timing", "measure", "measure_interleaved", "gbps", "CpuMonitor", "others_cpu_fraction", "wait_for_idle"]


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of the timed runs (warm-up calls are not included)."""

    runs: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def spread(self) -> float:
        """How far the median lies above the best run: median / min - 1 (robust to one outlier)."""
        return self.median / self.best - 1.0


def measure(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> Timing:
    """Call ``fn`` ``warmup`` times untimed (JIT compile, page faults), then ``repeat`` times timed."""
    return measure_interleaved([fn], repeat, warmup)[0]


def measure_interleaved(fns: Sequence[Callable[[], Any]], repeat: int = 5, warmup: int = 1) -> list[Timing]:
    """Warm every callable up, then run ``repeat`` rounds calling each once per round."""
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    for fn in fns:
        for _ in range(warmup):
            fn()
    runs: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            runs[k].append(time.perf_counter() - t0)
    return [Timing(tuple(r)) for r in runs]


def gbps(nbytes: int, seconds: float) -> float:
    """Decimal GB/s."""
    return nbytes / seconds / 1e9


def _busy_seconds() -> float | None:
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuMonitor:
    """CPU seconds used by *other* processes between ``start()`` and ``stop()`` (None off Linux)."""

    def start(self) -> None:
        self._busy = _busy_seconds()
        self._own = sum(os.times()[:2])
        self._wall = time.perf_counter()

    def stop(self) -> tuple[float, float] | None:
        """(other processes' CPU seconds, wall seconds), or None when /proc/stat is unreadable."""
        busy = _busy_seconds()
        if busy is None or self._busy is None:
            return None
        own = sum(os.times()[:2]) - self._own
        return max(0.0, busy - self._busy - own), time.perf_counter() - self._wall


def others_cpu_fraction(window: float = 0.5) -> float | None:
    """Fraction of all CPUs used by other processes over the next ``window`` seconds (None off Linux)."""
    mon = CpuMonitor()
    mon.start()
    time.sleep(window)
    got = mon.stop()
    if got is None:
        return None
    other, wall = got
    return other / (wall * (os.cpu_count() or 1))


def wait_for_idle(max_wait: float, threshold: float = 0.15, window: float = 0.5) -> tuple[float, float | None]:
    """Sleep until other processes use less than ``threshold`` of the CPUs for two windows in a row.

    Gives up after ``max_wait`` seconds.  Returns (seconds waited, last measured fraction).
    """
    t0 = time.perf_counter()
    calm = 0
    frac = others_cpu_fraction(window)
    while frac is not None:
        calm = calm + 1 if frac < threshold else 0
        if calm >= 2 or time.perf_counter() - t0 >= max_wait:
            break
        frac = others_cpu_fraction(window)
    return time.perf_counter() - t0, frac
