"""Quantiles from a histogram: interpolated within a bin, or exact with one more pass.

Both follow ``np.percentile``'s default (linear interpolation between the
order statistics at ranks ``floor(r)`` and ``floor(r) + 1``, ``r = q/100 (n-1)``).

Example:
    >>> import numpy as np
    >>> x = np.array([4.0, 1.0, 3.0, 2.0])
    >>> exact_quantile(x, np.array([0.5, 1.5, 2.5, 3.5, 4.5]), np.array([0, 1, 1, 1, 1]), 1.0, 50.0)
    2.5
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fold", "hist_quantile", "exact_quantile"]


def fold(centers: np.ndarray, counts: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of ``|x|`` from a histogram of ``x`` whose edges are multiples of ``width``.

    Bin ``[k w, (k+1) w)`` with ``k < 0`` holds ``|x|`` in ``((-k-1) w, -k w]``,
    i.e. bin ``-k-1`` of the folded histogram: folding is exact.

    Example:
        >>> fold(np.array([-0.5, 0.5, 1.5]), np.array([2, 1, 1]), 1.0)
        (array([0.5, 1.5]), array([3, 1]))
    """
    if width == 0.0:
        return np.abs(centers), counts.copy()
    k = np.floor(centers / width).astype(np.int64)
    j = np.where(k >= 0, k, -k - 1)
    folded = np.bincount(j, weights=counts, minlength=int(j.max()) + 1).astype(np.int64)
    return (np.arange(folded.size) + 0.5) * width, folded


def _ranks(n: int, q: float) -> tuple[int, int, float]:
    r = q / 100.0 * (n - 1)
    i0 = min(math.floor(r), n - 1)
    return i0, min(i0 + 1, n - 1), r - i0


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t if t < 0.5 else b - (b - a) * (1.0 - t)


def hist_quantile(centers: np.ndarray, counts: np.ndarray, width: float, q: float) -> float:
    """Percentile ``q`` assuming the values of each bin are spread evenly inside it.

    Example:
        >>> hist_quantile(np.array([0.5, 1.5]), np.array([1, 1]), 1.0, 50.0)
        1.0
    """
    cum = np.cumsum(counts)
    n = int(cum[-1])
    i0, i1, frac = _ranks(n, q)

    def value_at(i: int) -> float:
        b = int(np.searchsorted(cum, i, side="right"))
        before = int(cum[b - 1]) if b else 0
        return float(centers[b] - width / 2 + (i - before + 0.5) / counts[b] * width)

    return _lerp(value_at(i0), value_at(i1), frac)


def exact_quantile(
    values: np.ndarray, centers: np.ndarray, counts: np.ndarray, width: float, q: float, absolute: bool = False
) -> float:
    """Exact percentile of ``values`` (or ``|values|``) using their histogram to avoid a sort.

    Only the values in the bins holding the two order statistics are gathered
    (one pass) and partitioned.

    Example:
        >>> centers, counts = np.array([0.5, 1.5, 2.5, 3.5]), np.array([0, 1, 0, 1])
        >>> exact_quantile(np.array([-3.0, 1.0]), centers, counts, 1.0, 100.0, absolute=True)
        3.0
    """
    from lowbit.kernels.histogram import values_between

    if width == 0.0:
        return float(abs(centers[0]) if absolute else centers[0])
    cum = np.cumsum(counts)
    i0, i1, frac = _ranks(int(cum[-1]), q)
    # The bins holding both order statistics, widened by one bin each side so a
    # value sitting exactly on an edge is never missed; the ranks below are
    # recounted exactly during the gather.
    b0 = max(int(np.searchsorted(cum, i0, side="right")) - 1, 0)
    b1 = min(int(np.searchsorted(cum, i1, side="right")) + 1, counts.size - 1)
    lo = -np.inf if b0 == 0 else centers[b0] - width / 2
    hi = np.inf if b1 == counts.size - 1 else centers[b1] + width / 2
    guess = int(cum[b1]) - (int(cum[b0 - 1]) if b0 else 0)
    picked, below = values_between(values, lo, hi, guess, absolute)
    k0, k1 = i0 - below, i1 - below
    part = np.partition(picked, (k0, k1))
    return _lerp(float(part[k0]), float(part[k1]), frac)
