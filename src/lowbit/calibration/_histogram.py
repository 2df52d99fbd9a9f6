"""StreamingHistogram: per-channel histograms that merge exactly as the range grows.

Bin edges are multiples of a power-of-two width ``w``.  When a new batch
reaches outside the stored bins, ``w`` doubles (pairs of bins merge exactly,
no redistribution guesswork) until the whole range fits in ``nbins`` bins, so
feeding batches one by one gives *the same counts* as one batch holding all
of them, and memory stays ``channels x nbins`` whatever was seen.  A channel
whose values are all equal is kept as a point mass until a second value
arrives.

Example:
    >>> import numpy as np
    >>> h = StreamingHistogram(1, 8)
    >>> h.add(np.array([[0.0, 1.0, 3.0]]), np.array([0.0]), np.array([3.0]))
    >>> h.counts.tolist(), float(h.width[0])
    ([[1, 0, 1, 0, 0, 0, 1, 0]], 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["StreamingHistogram", "unit_factor", "in_units", "integer_target"]


def _span(lo: float, hi: float, w: float) -> int:
    return math.floor(hi / w) - math.floor(lo / w) + 1


def _fitting_width(lo: float, hi: float, nbins: int, start: float) -> float:
    """Smallest power-of-two width >= start (or >= the range's own lower bound) that fits.

    A range wider than float64 can hold (``hi - lo`` overflows) is measured halved.
    """
    if start > 0:
        w = start
    elif math.isfinite(hi - lo):
        w = 2.0 ** math.ceil(math.log2((hi - lo) / nbins))
    else:
        w = 2.0 ** (math.ceil(math.log2((hi * 0.5 - lo * 0.5) / nbins)) + 1)
    while _span(lo, hi, w) > nbins:
        w *= 2.0
    return w


def unit_factor(amax: float) -> float:
    """A power of two that brings ``amax`` near 1 when it is huge (beyond 2^500), else 1.

    Estimators multiply bin centers by it before squaring them (so sums of squares
    cannot overflow) and divide the range found by it; power-of-two scaling is exact.

    Example:
        >>> unit_factor(1e308) * 1e308 < 2.0, unit_factor(3.0)
        (True, 1.0)
    """
    if not amax > 2.0**500:
        return 1.0
    return math.ldexp(1.0, -math.frexp(amax)[1])


def in_units(fit: Callable[..., tuple[float, float]], centers: np.ndarray, counts: np.ndarray, lo: float, hi: float,
             *args: Any) -> tuple[float, float]:
    """``fit(centers, counts, lo, hi, *args) -> (lo, hi)``, run in the units of :func:`unit_factor` when the
    values are huge (the range found is scaled back; power-of-two scaling is exact).

    Example:
        >>> in_units(lambda c, n, lo, hi: (lo, hi), np.zeros(1), np.ones(1), -1e308, 1e308)
        (-1e+308, 1e+308)
    """
    f = unit_factor(max(-lo, hi))
    if f == 1.0:
        return fit(centers, counts, lo, hi, *args)
    lo_f, hi_f = fit(centers * f, counts, lo * f, hi * f, *args)
    return lo_f / f, hi_f / f


def integer_target(qtype: Any, estimator: str) -> Any:
    """``get_qtype(qtype)``, refusing grid (float, codebook) and MX formats as :func:`lowbit.quantize` does.

    The MSE and entropy searches model a uniform integer grid (``qmin..qmax`` codes times
    a scale); a float or codebook format has another grid, and its range is its absmax.

    Raises:
        OptionError: a grid or MX format.

    Example:
        >>> integer_target("int4", "mse").name
        'int4'
    """
    from lowbit.errors import OptionError
    from lowbit.formats import get_qtype

    qt = get_qtype(qtype)
    if qt.is_grid or qt.is_mx:
        raise OptionError(
            f"{qt.name} ({qt.kind}) supports method='minmax' only (absmax scaling), got {estimator!r}: "
            f"the {estimator} search models integer formats; use an integer format (int8, uint4 ...) or "
            "method='minmax'"
        )
    return qt


class StreamingHistogram:
    """``channels`` histograms of ``nbins`` aligned bins each, with exact min/max and counts."""

    def __init__(self, channels: int, nbins: int) -> None:
        self.nbins = nbins
        self.counts = np.zeros((channels, nbins), np.int64)
        self.width = np.zeros(channels)  # 0: empty or a point mass at lo
        self.k0 = np.zeros(channels, np.int64)
        self.lo = np.full(channels, np.inf)
        self.hi = np.full(channels, -np.inf)
        self.n = np.zeros(channels, np.int64)

    @property
    def nbytes(self) -> int:
        """Bytes of state (constant once constructed)."""
        return sum(a.nbytes for a in (self.counts, self.width, self.k0, self.lo, self.hi, self.n))

    def _regrid(self, c: int, lo: float, hi: float) -> None:
        old_w = self.width[c]
        if self.n[c] and old_w == 0.0:  # point mass: re-seat it in the new grid
            w = _fitting_width(lo, hi, self.nbins, 0.0)
            k0 = math.floor(lo / w)
            self.counts[c] = 0
            self.counts[c, min(math.floor(self.lo[c] / w) - k0, self.nbins - 1)] = self.n[c]
        elif self.n[c]:
            w = _fitting_width(lo, hi, self.nbins, old_w)
            k0 = math.floor(lo / w)
            if w != old_w or k0 != self.k0[c]:
                factor = round(w / old_w)
                absolute = self.k0[c] + np.arange(self.nbins)
                target = np.floor_divide(absolute, factor) - k0
                keep = self.counts[c] > 0
                merged = np.zeros(self.nbins, np.int64)
                np.add.at(merged, target[keep], self.counts[c][keep])
                self.counts[c] = merged
        else:
            w = _fitting_width(lo, hi, self.nbins, 0.0)
            k0 = math.floor(lo / w)
        self.width[c] = w
        self.k0[c] = k0

    def add(self, rows: np.ndarray, mins: np.ndarray, maxs: np.ndarray, omit: bool = False) -> None:
        """Count a batch given as ``(channels, m)`` rows with their finite min/max per channel.

        Channels with no finite value in this batch must have ``mins > maxs``.
        """
        from lowbit._kernels.histogram import histogram_flat, histogram_rows

        has = mins <= maxs
        new_lo = np.where(has, np.minimum(self.lo, mins), self.lo)
        new_hi = np.where(has, np.maximum(self.hi, maxs), self.hi)
        for c in np.flatnonzero(has & (new_hi > new_lo)):
            if self.width[c] == 0.0 or new_lo[c] < self.lo[c] or new_hi[c] > self.hi[c]:
                self._regrid(int(c), float(new_lo[c]), float(new_hi[c]))
        point = has & (new_hi == new_lo)
        widths = np.where(self.width > 0, self.width, 1.0)
        k0 = np.where(self.width > 0, self.k0, np.floor(np.where(point, new_lo, 0.0))).astype(np.int64)
        if rows.shape[0] == 1:
            batch = histogram_flat(rows[0], float(widths[0]), int(k0[0]), self.nbins, omit)[None, :]
        else:
            batch = histogram_rows(rows, widths, k0, self.nbins, omit)
        counted = batch.sum(axis=1)
        self.counts[point] = 0
        self.counts += np.where(point[:, None], 0, batch)
        self.n += counted
        self.counts[point, 0] = self.n[point]
        self.k0 = np.where(point, 0, self.k0)
        self.lo, self.hi = new_lo, new_hi

    def channel(self, c: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(bin centers, counts, width) of channel ``c``; a point mass is one bin at its value.

        Centers of empty bins beyond the float64 maximum are clipped to it (never inf).

        Example:
            >>> h = StreamingHistogram(1, 4)
            >>> h.add(np.array([[2.0, 2.0]]), np.array([2.0]), np.array([2.0]))
            >>> h.channel(0)
            (array([2.]), array([2]), 0.0)
        """
        if self.width[c] == 0.0:
            return np.array([self.lo[c]]), self.counts[c, :1].copy(), 0.0
        w = self.width[c]
        with np.errstate(over="ignore"):  # empty end bins of a range near the float maximum
            centers = (self.k0[c] + np.arange(self.nbins) + 0.5) * w
        big = np.finfo(np.float64).max
        return np.clip(centers, -big, big), self.counts[c], float(w)

    def edges(self, c: int) -> np.ndarray:
        """The ``nbins + 1`` bin edges of channel ``c`` (exact multiples of the width)."""
        with np.errstate(over="ignore"):  # edges past the float64 maximum (empty end bins) are clipped to it
            edges = (self.k0[c] + np.arange(self.nbins + 1)) * self.width[c]
        big = np.finfo(np.float64).max
        return np.clip(edges, -big, big)
