"""Quantiles from a histogram: interpolated within a bin, or exact with one more pass.

Both follow ``np.percentile``'s default (linear interpolation between the
order statistics at ranks ``floor(r)`` and ``floor(r) + 1``, ``r = q/100 (n-1)``).

Example:
    >>> import numpy as np
    >>> x = np.array([4.0, 1.0, 3.0, 2.0])
    >>> hist = (np.array([0.5, 1.5, 2.5, 3.5, 4.5]), np.array([0, 1, 1, 1, 1]), 1.0, False)
    >>> exact_quantiles(x, [(*hist, 50.0)])
    [2.5]
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fold", "hist_quantile", "exact_quantiles", "quantile_interval"]


def fold(
    centers: np.ndarray, counts: np.ndarray, width: float, max_bins: int | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Histogram of ``|x|``, from 0, out of a histogram of ``x`` whose edges are multiples of ``width``.

    Bin ``[k w, (k+1) w)`` with ``k < 0`` holds ``|x|`` in ``((-k-1) w, -k w]``,
    i.e. bin ``-k-1`` of the folded histogram: folding is exact.  Data far from
    zero relative to ``width`` would need very many bins from 0; beyond
    ``max_bins`` (default ``2 * len(counts)``) pairs of bins merge exactly, the
    width doubling each time.

    Returns:
        ``(centers, counts, width)`` of the folded histogram.

    Example:
        >>> fold(np.array([-0.5, 0.5, 1.5]), np.array([2, 1, 1]), 1.0)
        (array([0.5, 1.5]), array([3, 1]), 1.0)
    """
    if width == 0.0:
        return np.abs(centers), counts.copy(), 0.0
    limit = max_bins or 2 * counts.size
    k = np.floor(centers / width).astype(np.int64)
    j = np.where(k >= 0, k, -k - 1)
    keep = counts > 0
    j, weights = j[keep], counts[keep]
    while int(j.max()) + 1 > limit:
        j //= 2
        width *= 2.0
    folded = np.bincount(j, weights=weights, minlength=int(j.max()) + 1).astype(np.int64)
    return (np.arange(folded.size) + 0.5) * width, folded, width


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


def quantile_interval(
    centers: np.ndarray, counts: np.ndarray, width: float, q: float
) -> tuple[float, float, int, int, float, int]:
    """Where percentile ``q`` lies: ``(lo, hi, rank0, rank1, frac, guess)``.

    ``[lo, hi)`` covers the bins holding the order statistics at ``rank0`` and
    ``rank1``, widened by one bin each side so a value sitting exactly on an
    edge is never missed (ranks are recounted exactly when the values are
    gathered); ``guess`` is how many values the histogram puts in between.
    """
    cum = np.cumsum(counts)
    i0, i1, frac = _ranks(int(cum[-1]), q)
    b0 = max(int(np.searchsorted(cum, i0, side="right")) - 1, 0)
    b1 = min(int(np.searchsorted(cum, i1, side="right")) + 1, counts.size - 1)
    lo = -np.inf if b0 == 0 else float(centers[b0] - width / 2)
    hi = np.inf if b1 == counts.size - 1 else float(centers[b1] + width / 2)
    guess = int(cum[b1]) - (int(cum[b0 - 1]) if b0 else 0)
    return lo, hi, i0, i1, frac, guess


Query = tuple[np.ndarray, np.ndarray, float, bool, float]


def exact_quantiles(values: np.ndarray, queries: list[Query]) -> list[float]:
    """Exact percentiles of ``values``, each located with a histogram: no sort.

    Each query is ``(centers, counts, width, absolute, q)``: the histogram of
    what percentile ``q`` is taken of (``|values|`` when ``absolute``).  One
    gather (two parallel passes) collects the values in the bins that hold each
    pair of order statistics, and only those are partitioned.

    Example:
        >>> centers, counts = np.array([0.5, 1.5, 2.5, 3.5]), np.array([0, 1, 0, 1])
        >>> exact_quantiles(np.array([-3.0, 1.0]), [(centers, counts, 1.0, True, 100.0)])
        [3.0]
    """
    from lowbit._kernels.histogram import values_between

    result: list[float | None] = [None] * len(queries)
    where, intervals = [], []
    for j, (centers, counts, width, absolute, q) in enumerate(queries):
        if width == 0.0:  # a point mass: every order statistic is its value
            result[j] = float(abs(centers[0]) if absolute else centers[0])
            continue
        lo, hi, i0, i1, frac, _ = quantile_interval(centers, counts, width, q)
        where.append((j, i0, i1, frac))
        intervals.append((lo, hi, absolute))
    gathered = values_between(values, intervals) if intervals else []
    for (j, i0, i1, frac), (picked, below), (_, _, absolute) in zip(where, gathered, intervals, strict=True):
        k0, k1 = i0 - below, i1 - below
        if not (0 <= k0 < picked.size and 0 <= k1 < picked.size):
            # bins too narrow for float64 to separate their edges (subnormal data): partition every value
            picked, k0, k1 = (np.abs(values) if absolute else values).reshape(-1), i0, i1
        part = np.partition(picked, (k0, k1))
        result[j] = _lerp(float(part[k0]), float(part[k1]), frac)
    return [float(r) for r in result if r is not None]
