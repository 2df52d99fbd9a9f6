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

import numpy as np

__all__ = ["StreamingHistogram"]


def _span(lo: float, hi: float, w: float) -> int:
    return math.floor(hi / w) - math.floor(lo / w) + 1


def _fitting_width(lo: float, hi: float, nbins: int, start: float) -> float:
    """Smallest power-of-two width >= start (or >= the range's own lower bound) that fits."""
    w = start if start > 0 else 2.0 ** math.ceil(math.log2((hi - lo) / nbins))
    while _span(lo, hi, w) > nbins:
        w *= 2.0
    return w


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

        Example:
            >>> h = StreamingHistogram(1, 4)
            >>> h.add(np.array([[2.0, 2.0]]), np.array([2.0]), np.array([2.0]))
            >>> h.channel(0)
            (array([2.]), array([2]), 0.0)
        """
        if self.width[c] == 0.0:
            return np.array([self.lo[c]]), self.counts[c, :1].copy(), 0.0
        w = self.width[c]
        centers = (self.k0[c] + np.arange(self.nbins) + 0.5) * w
        return centers, self.counts[c], float(w)

    def edges(self, c: int) -> np.ndarray:
        """The ``nbins + 1`` bin edges of channel ``c`` (exact multiples of the width)."""
        return (self.k0[c] + np.arange(self.nbins + 1)) * self.width[c]
