"""Histogram kernels for calibration: one pass over the data, bounded memory.

Bins are aligned to multiples of a power-of-two width ``w``: absolute bin
``k`` covers ``[k*w, (k+1)*w)`` and a histogram stores ``nbins`` counts from
bin ``k0``.  Values outside the stored bins are clamped into the end bins
(callers size the histogram from the exact range, so this only absorbs
rounding at the edges).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

__all__ = [
    "histogram_flat",
    "histogram_rows",
    "histogram_errors",
    "values_between",
    "kl_thresholds",
]

_MIN_TASK = 1 << 16


@njit(inline="always", cache=True)
def _bin(v, inv_w, k0, nbins):  # pragma: no cover - compiled
    b = np.int64(np.floor(v * inv_w)) - k0
    return min(max(b, 0), nbins - 1)


@njit(parallel=True, cache=True)
def _hist_tasks(x, inv_w, k0, counts, ntasks, omit):  # pragma: no cover - compiled
    n = x.size
    nbins = counts.shape[1]
    for t in prange(ntasks):
        lo = t * n // ntasks
        hi = (t + 1) * n // ntasks
        for i in range(lo, hi):
            v = x[i]
            if omit and not (abs(v) < np.inf):
                continue
            counts[t, _bin(v, inv_w, k0, nbins)] += 1


def histogram_flat(x: np.ndarray, width: float, k0: int, nbins: int, omit: bool = False) -> np.ndarray:
    """Counts of a flat array in ``nbins`` aligned bins of ``width`` starting at bin ``k0``.

    Args:
        x: 1-D float array (finite unless ``omit``).
        width: bin width (a power of two).
        k0: absolute index of the first bin.
        nbins: number of bins.
        omit: skip NaN and Inf values.

    Returns:
        int64 counts of length ``nbins``.

    Example:
        >>> histogram_flat(np.array([0.1, 0.6, 0.7, -0.2]), 0.5, -1, 3).tolist()
        [1, 1, 2]
    """
    ntasks = max(1, min(4 * numba.get_num_threads(), x.size // _MIN_TASK))
    counts = np.zeros((ntasks, nbins), np.int64)
    _hist_tasks(x, 1.0 / width, np.int64(k0), counts, ntasks, omit)
    return counts.sum(axis=0)


@njit(parallel=True, cache=True)
def _hist_rows(x, inv_w, k0, counts, omit):  # pragma: no cover - compiled
    rows, m = x.shape
    nbins = counts.shape[1]
    for r in prange(rows):
        for i in range(m):
            v = x[r, i]
            if omit and not (abs(v) < np.inf):
                continue
            counts[r, _bin(v, inv_w[r], k0[r], nbins)] += 1


def histogram_rows(x: np.ndarray, widths: np.ndarray, k0: np.ndarray, nbins: int, omit: bool = False) -> np.ndarray:
    """One histogram per row of a 2-D array (rows are channels), each with its own bins.

    Example:
        >>> histogram_rows(np.array([[0.0, 1.0], [2.0, 2.0]]), np.array([1.0, 1.0]), np.array([0, 2]), 2).tolist()
        [[1, 1], [2, 0]]
    """
    counts = np.zeros((x.shape[0], nbins), np.int64)
    _hist_rows(np.ascontiguousarray(x), 1.0 / widths, k0.astype(np.int64), counts, omit)
    return counts


@njit(inline="always", cache=True)
def _value(v, absolute):  # pragma: no cover - compiled
    return abs(v) if absolute else v


@njit(parallel=True, cache=True)
def _count_between(x, los, his, absolute, nchunks, inside, below):  # pragma: no cover - compiled
    n = x.size
    for c in prange(nchunks):
        xs = x[c * n // nchunks : (c + 1) * n // nchunks]
        for j in range(los.size):
            lo = los[j]
            hi = his[j]
            a = absolute[j]
            nin = 0
            nbelow = 0
            for i in range(xs.size):
                v = _value(xs[i], a)
                nbelow += v < lo
                nin += (v >= lo) & (v < hi)
            inside[c, j] = nin
            below[c, j] = nbelow


@njit(parallel=True, cache=True)
def _gather_between(x, los, his, absolute, nchunks, offsets, out):  # pragma: no cover - compiled
    n = x.size
    for c in prange(nchunks):
        xs = x[c * n // nchunks : (c + 1) * n // nchunks]
        for j in range(los.size):
            lo = los[j]
            hi = his[j]
            a = absolute[j]
            k = offsets[c, j]
            for i in range(xs.size):
                v = _value(xs[i], a)
                if v >= lo and v < hi:
                    out[k] = v
                    k += 1


def values_between(x: np.ndarray, intervals: list[tuple[float, float, bool]]) -> list[tuple[np.ndarray, int]]:
    """For each ``(lo, hi, absolute)``: the values of ``x`` (or ``|x|``) in ``[lo, hi)`` and the count below ``lo``.

    Two parallel passes serve every interval (count, then gather into place);
    NaN falls in none and is not counted below.

    Example:
        >>> [(v.tolist(), n) for v, n in values_between(np.array([3.0, -1.0, 2.0, 0.5]), [(1.0, 3.0, True)])]
        [([1.0, 2.0], 1)]
    """
    k = len(intervals)
    los = np.array([i[0] for i in intervals], x.dtype)
    his = np.array([i[1] for i in intervals], x.dtype)
    absolute = np.array([i[2] for i in intervals], np.bool_)
    nchunks = max(1, min(256, x.size // _MIN_TASK))
    inside = np.zeros((nchunks, k), np.int64)
    below = np.zeros((nchunks, k), np.int64)
    _count_between(x, los, his, absolute, nchunks, inside, below)
    per_interval = inside.sum(axis=0)
    starts = np.concatenate([[0], np.cumsum(per_interval)[:-1]])
    offsets = starts[None, :] + np.cumsum(inside, axis=0) - inside
    out = np.empty(int(per_interval.sum()), x.dtype)
    _gather_between(x, los, his, absolute, nchunks, offsets, out)
    totals = below.sum(axis=0)
    return [(out[starts[j] : starts[j] + per_interval[j]], int(totals[j])) for j in range(k)]


@njit(parallel=True, cache=True)
def _errors(centers, counts, scales, zps, qmin, qmax, out):  # pragma: no cover - compiled
    for c in prange(scales.size):
        s = scales[c]
        inv = 1.0 / s
        z = zps[c]
        acc = 0.0
        for j in range(centers.size):
            n = counts[j]
            if n == 0:
                continue
            v = centers[j]
            q = min(max(np.rint(v * inv + z), qmin), qmax)
            d = v - (q - z) * s
            acc += n * d * d
        out[c] = acc


def histogram_errors(
    centers: np.ndarray, counts: np.ndarray, scales: np.ndarray, zero_points: np.ndarray, qmin: int, qmax: int
) -> np.ndarray:
    """Squared quantization error of a histogram (mass at bin centers) for each candidate (scale, zero point).

    Example:
        >>> histogram_errors(np.array([0.25, 1.0]), np.array([2, 1]), np.array([0.5, 1.0]), np.zeros(2), -1, 1).tolist()
        [0.375, 0.125]
    """
    out = np.empty(scales.size, np.float64)
    _errors(
        centers.astype(np.float64), counts.astype(np.float64), scales.astype(np.float64),
        zero_points.astype(np.float64), float(qmin), float(qmax), out,
    )
    return out


@njit(cache=True)
def _kl(p, q):  # pragma: no cover - compiled
    total_p = p.sum()
    total_q = q.sum()
    if total_p == 0 or total_q == 0:
        return np.inf
    acc = 0.0
    for j in range(p.size):
        if p[j] > 0:
            pj = p[j] / total_p
            qj = q[j] / total_q
            if qj <= 0:
                qj = 1e-12
            acc += pj * np.log(pj / qj)
    return acc


@njit(inline="always", cache=True)
def _kl_cut(hist, i, levels, prefix, nzc, nz, total):  # pragma: no cover - compiled
    """KL(P || Q) for the cut after ``i`` bins, bucket by bucket over the non-empty bins only.

    Equal, bit for bit, to building P and Q bin by bin (TensorRT's loop): empty bins add
    exact zeros to every sum, and the other terms are added in the same (bin) order.
    ``prefix``/``nzc`` are prefix sums of the counts and of the non-empty bins, ``nz`` the
    non-empty bins' indices.
    """
    last = hist[i - 1] + (total - prefix[i])  # the cut's last bin with the clipped mass added
    total_p = prefix[i - 1] + last
    total_q = 0.0
    step, extra = i // levels, i % levels  # bucket lvl is [lvl*i//levels, (lvl+1)*i//levels), found without division
    for sweep in range(2):  # 0: total of Q; 1: the divergence
        acc = 0.0
        b = 0
        rem = 0
        for _ in range(levels):
            a = b
            b += step
            rem += extra
            if rem >= levels:
                rem -= levels
                b += 1
            if a == b:
                continue
            k0 = nzc[a]
            k1 = nzc[b - 1] if b == i else nzc[b]  # non-empty bins of the bucket before the cut's last
            tail = b == i and last != 0
            nonzero = k1 - k0 + tail
            if nonzero == 0:
                continue
            share = (prefix[b] - prefix[a]) / nonzero
            if sweep == 0:
                for _ in range(nonzero):
                    total_q += share
                continue
            qj = share / total_q
            if qj <= 0:
                qj = 1e-12
            for k in range(k0, k1):
                pj = hist[nz[k]] / total_p
                acc += pj * np.log(pj / qj)
            if tail:
                pj = last / total_p
                acc += pj * np.log(pj / qj)
        if sweep == 0 and (total_p == 0 or total_q == 0):
            return np.inf
    return acc


@njit(parallel=True, cache=True)
def _kl_all(hist, levels, start, out):  # pragma: no cover - compiled
    nb = hist.size
    prefix = np.zeros(nb + 1, np.float64)
    nzc = np.zeros(nb + 1, np.int64)
    for j in range(nb):
        prefix[j + 1] = prefix[j] + hist[j]
        nzc[j + 1] = nzc[j] + (hist[j] != 0)
    nz = np.empty(nzc[nb], np.int64)
    k = 0
    for j in range(nb):
        if hist[j] != 0:
            nz[k] = j
            k += 1
    for idx in prange(nb - start + 1):
        out[idx] = _kl_cut(hist, start + idx, levels, prefix, nzc, nz, prefix[nb])


def kl_thresholds(hist: np.ndarray, levels: int) -> np.ndarray:
    """KL divergence of TensorRT's entropy calibration for every candidate bin count.

    ``out[k]`` is ``KL(P || Q)`` when clipping after bin ``levels + k``: P is the
    histogram cut there with the clipped mass added to its last bin, Q is the
    cut histogram merged into ``levels`` buckets and spread back evenly over
    the non-empty bins of each bucket.

    Example:
        >>> kl_thresholds(np.array([8, 4, 2, 1], np.int64), 2).shape
        (3,)
    """
    start = min(levels, hist.size)
    out = np.empty(hist.size - start + 1, np.float64)
    _kl_all(hist.astype(np.int64), levels, start, out)
    return out
