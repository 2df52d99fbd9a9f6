"""Two-sided (affine) KL windows: the search behind entropy calibration of affine formats.

A window is a run of bins [a, b) of a signed histogram.  Its score, in count units over the
total N (so P and Q share one normaliser), is

    D(a, b) = sum_j P_j log(P_j / Q_j) / N

P: the histogram inside the window, with the mass left of a added to bin a and the mass from
b on added to bin b - 1 (clipped values land on the edges).  Q: the window's own (unclipped)
mass merged into ``levels`` buckets (one per bin in a window of fewer bins) and spread evenly
over each bucket's bins: a code stands for its whole bucket, the quantized data cannot tell
which of its bins were empty.  (TensorRT spreads over P's non-zero bins only, which makes
isolated far values free to keep: at 4 bits it kept 20 values spread over [-800, -400] next to
a bulk on [-20, 200].)  Q sums to the mass inside, m, so D is at least log(N / m), the
information lost by clipping the fraction 1 - m/N: what a window far out in one tail, holding
almost no mass, pays (with Q normalised on its own, as in TensorRT, such a window scores near
0).  A bucket where P holds clipped mass and Q none scores +inf.  Every bucket's term is >= 0
(log-sum inequality), so D >= 0 and the two edge buckets alone give an O(1) lower bound, which
prunes the exhaustive search.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["kl_window_scores", "kl_window"]


@njit(inline="always", cache=True)
def _plogp(v):  # pragma: no cover - compiled
    return v * np.log(v) if v > 0 else 0.0


@njit(cache=True)
def _window_prefixes(hist):  # pragma: no cover - compiled
    """Prefix sums of the counts and of ``h log h``: a bucket's terms in O(1)."""
    nb = hist.size
    mass = np.zeros(nb + 1, np.float64)
    hlogh = np.zeros(nb + 1, np.float64)
    for j in range(nb):
        h = np.float64(hist[j])
        mass[j + 1] = mass[j] + h
        hlogh[j + 1] = hlogh[j] + _plogp(h)
    return mass, hlogh


@njit(inline="always", cache=True)
def _bucket_term(hist, mass, hlogh, s, e, a, b, left, right):  # pragma: no cover - compiled
    """``sum P log(P/Q)`` (counts) over bucket ``[s, e)`` of window ``[a, b)``: ``sum P log P -
    (sum P) log(inside / (e - s))``, read off the prefix sums; the window's edge bins carry the
    clipped mass (``left``, ``right``).  +inf where P has mass and Q none."""
    inside = mass[e] - mass[s]
    p_mass = inside
    p_logp = hlogh[e] - hlogh[s]
    if s == a and left > 0:
        h = np.float64(hist[a])
        p_mass += left
        p_logp += _plogp(h + left) - _plogp(h)
    if e == b and right > 0:
        h = np.float64(hist[b - 1])
        p_mass += right
        p_logp += _plogp(h + right) - _plogp(h)
    if p_mass == 0:
        return 0.0
    if inside == 0:
        return np.inf
    return p_logp - p_mass * np.log(inside / (e - s))


@njit(cache=True)
def _window_kl(hist, mass, hlogh, a, b, levels, limit=np.inf):  # pragma: no cover - compiled
    """``D(a, b)`` for ``b > a`` and ``levels >= 2``, in O(levels); +inf once ``N * D`` passes ``limit``.

    Bucket ``l`` is ``[a + l*n//levels, a + (l+1)*n//levels)``, walked without division; a window
    of fewer bins than codes has one bucket per bin (its grid is finer than the bins).  Every
    bucket's term is >= 0, so the sum so far bounds ``N * D`` from below: the two edge buckets
    (where the clipped mass is) go first, and the walk stops once past ``limit``.
    """
    total = mass[hist.size]
    left = mass[a]
    right = total - mass[b]
    n = b - a
    if n == 1:  # one bin takes the clipped mass of both sides
        return np.log(total / hist[a]) if hist[a] > 0 else np.inf
    buckets = min(levels, n)
    step, extra = n // buckets, n % buckets
    last_start = a + (buckets - 1) * n // buckets
    acc = _bucket_term(hist, mass, hlogh, last_start, b, a, b, left, right)
    e = a
    rem = 0
    for _ in range(buckets - 1):
        if acc > limit:
            return np.inf
        s = e
        e += step
        rem += extra
        if rem >= buckets:
            rem -= buckets
            e += 1
        acc += _bucket_term(hist, mass, hlogh, s, e, a, b, left, right)
    if acc > limit:
        return np.inf
    return max(acc, 0.0) / total


@njit(inline="always", cache=True)
def _edge_bound(mass, a, b, levels):  # pragma: no cover - compiled
    """A lower bound of ``N * D(a, b)`` in O(1): the edge buckets' terms after the log-sum inequality.

    A bucket's ``sum P log(P/Q) >= P_B log(P_B / Q_B)`` (its totals); inner buckets have
    ``P_B == Q_B``, edge buckets ``P_B = Q_B + clipped``.
    """
    total = mass[mass.size - 1]
    left = mass[a]
    right = total - mass[b]
    n = b - a
    buckets = min(levels, n)  # n == 1: two terms of one bin, below its one term (convexity)
    acc = 0.0
    if left > 0:
        inside = mass[a + n // buckets] - mass[a]
        if inside == 0:
            return np.inf
        acc += (inside + left) * np.log((inside + left) / inside)
    if right > 0:
        inside = mass[b] - mass[a + (buckets - 1) * n // buckets]
        if inside == 0:
            return np.inf
        acc += (inside + right) * np.log((inside + right) / inside)
    return acc


@njit(cache=True)
def _window_table(hist, levels, keep_from, keep_to, out):  # pragma: no cover - compiled
    mass, hlogh = _window_prefixes(hist)
    nb = hist.size
    for a in range(nb + 1):
        for b in range(nb + 1):
            if a <= keep_from and b >= keep_to and b > a:
                out[a, b] = _window_kl(hist, mass, hlogh, a, b, levels)
            else:
                out[a, b] = np.nan


def kl_window_scores(hist: np.ndarray, levels: int, keep_from: int, keep_to: int) -> np.ndarray:
    """The affine entropy score ``D`` of every window of a (small) histogram: ``out[a, b]`` for bins ``[a, b)``.

    ``D`` is what :func:`kl_window` minimises (see there).  Windows that are not candidates (empty,
    or not holding the bins ``[keep_from, keep_to)``) are NaN.
    O(bins^2 levels): for tests and for looking at the landscape, not for calibration.

    Example:
        >>> hist = np.array([1, 0, 0, 0, 0, 0, 20, 50, 80, 60, 30, 10], np.int64)
        >>> s = kl_window_scores(hist, 4, 6, 6)
        >>> [int(i) for i in np.unravel_index(np.nanargmin(s), s.shape)]  # the lone value in bin 0 is clipped
        [6, 12]
    """
    hist = np.asarray(hist, np.int64)
    out = np.empty((hist.size + 1, hist.size + 1), np.float64)
    _window_table(hist, int(levels), int(keep_from), int(keep_to), out)
    return out


@njit(cache=True)
def _best_start(hist, mass, hlogh, levels, b, lo, hi):  # pragma: no cover - compiled
    best, arg = np.inf, lo
    for a in range(lo, hi + 1):
        v = _window_kl(hist, mass, hlogh, a, b, levels, best * mass[hist.size])
        if v < best:
            best, arg = v, a
    return best, arg


@njit(cache=True)
def _best_end(hist, mass, hlogh, levels, a, lo, hi):  # pragma: no cover - compiled
    best, arg = np.inf, hi
    for b in range(hi, lo - 1, -1):
        v = _window_kl(hist, mass, hlogh, a, b, levels, best * mass[hist.size])
        if v < best:
            best, arg = v, b
    return best, arg


@njit(cache=True)
def _descend(hist, levels, keep_from, keep_to, a, b, rounds):  # pragma: no cover - compiled
    """Coordinate descent from ``[a, b)``: the best start for the end, then the best end for the start, ..."""
    mass, hlogh = _window_prefixes(hist)
    nb = hist.size
    best = _window_kl(hist, mass, hlogh, a, b, levels)
    for _ in range(rounds):
        moved = False
        v, a2 = _best_start(hist, mass, hlogh, levels, b, 0, min(keep_from, b - 1))
        if v < best:
            best, a, moved = v, a2, True
        v, b2 = _best_end(hist, mass, hlogh, levels, a, max(keep_to, a + 1), nb)
        if v < best:
            best, b, moved = v, b2, True
        if not moved:
            break
    return a, b, best


@njit(cache=True)
def _bounded_row(hist, mass, hlogh, levels, keep_to, a, limit):  # pragma: no cover - compiled
    """Best end and score for start ``a``, scoring only the windows whose edge bound is below ``limit``."""
    best, arg = np.inf, -1
    for b in range(max(keep_to, a + 1), hist.size + 1):
        bound = min(limit, best * mass[hist.size])
        if _edge_bound(mass, a, b, levels) >= bound:
            continue
        v = _window_kl(hist, mass, hlogh, a, b, levels, bound)
        if v < best:
            best = v
            arg = b
    return best, arg


@njit(parallel=True, cache=True)
def _bounded_rows(hist, levels, keep_to, bound, best_b, best_v):  # pragma: no cover - compiled
    mass, hlogh = _window_prefixes(hist)
    limit = bound * mass[hist.size]
    for a in prange(best_b.size):
        v, b = _bounded_row(hist, mass, hlogh, levels, keep_to, np.int64(a), limit)
        best_b[a] = b
        best_v[a] = v


@njit(cache=True)
def _local(hist, levels, keep_from, keep_to, a0, b0, reach):  # pragma: no cover - compiled
    """Best window with its start within ``reach`` bins of ``a0`` and its end within ``reach`` of ``b0``."""
    mass, hlogh = _window_prefixes(hist)
    nb = hist.size
    best, arg_a, arg_b = np.inf, a0, b0
    for a in range(max(a0 - reach, 0), min(a0 + reach, keep_from) + 1):
        for b in range(max(b0 - reach, keep_to, a + 1), min(b0 + reach, nb) + 1):
            v = _window_kl(hist, mass, hlogh, a, b, levels, best * mass[nb])
            if v < best:
                best, arg_a, arg_b = v, a, b
    return arg_a, arg_b, best


def _exact_rows(hist: np.ndarray, levels: int, keep_from: int, keep_to: int) -> tuple[np.ndarray, np.ndarray]:
    """For each start ``a <= keep_from``: the best end and its score (+inf where none beats the descent's bound).

    Coordinate descent gives a bound first; then every window is scored unless its O(1) edge
    bound is already above the bound or the row's best, so the smallest entry is the exact minimum.
    """
    a, b, v = _descend(hist, levels, keep_from, keep_to, 0, hist.size, 64)
    best_b = np.empty(keep_from + 1, np.int64)
    best_v = np.empty(keep_from + 1, np.float64)
    _bounded_rows(hist, levels, keep_to, v * (1 + 1e-12), best_b, best_v)
    if not best_v[a] <= v:  # the descent's own window was pruned by the rounding of its bound
        best_b[a], best_v[a] = b, v
    return best_b, best_v


def _coarsen(hist: np.ndarray, anchor: int, factor: int) -> tuple[np.ndarray, int]:
    """``hist`` with every ``factor`` bins merged, counted from the edge ``anchor`` (which stays an edge)."""
    k = (np.arange(hist.size) - anchor) // factor
    first = int(k[0])
    merged = np.bincount(k - first, weights=hist, minlength=int(k[-1]) - first + 1)
    return np.rint(merged).astype(np.int64), -first


_REFINED = 8  # merged-bin optima refined at full resolution
_WORK = 1 << 28  # bucket terms an exhaustive search may take (its bound; pruning leaves far fewer)


def _best_windows(hist: np.ndarray, levels: int, keep_from: int, keep_to: int) -> tuple[np.ndarray, ...]:
    """``(starts, ends, scores)``: each start's best window, exhaustively where that fits in ``_WORK``;
    else (a grid of very many codes) the one window coordinate descent from the whole histogram finds."""
    if (keep_from + 1) * (hist.size - keep_to + 1) * levels <= _WORK:
        ends, scores = _exact_rows(hist, levels, keep_from, keep_to)
        return np.arange(ends.size), ends, scores
    a, b, v = _descend(hist, levels, keep_from, keep_to, 0, hist.size, 64)
    return np.array([a]), np.array([b]), np.array([v])


def kl_window(
    hist: np.ndarray, levels: int, keep_from: int, keep_to: int, exact_bins: int = 1024
) -> tuple[int, int, float]:
    """The window of bins ``[a, b)`` of a signed histogram that best keeps its shape on ``levels`` codes.

    The affine (two-sided) form of TensorRT's entropy calibration.  Candidates hold the bins
    ``[keep_from, keep_to)``: ``a <= keep_from``, ``b >= keep_to`` (the caller keeps the edge at
    0, which an affine range always holds, and the bulk of the data).  The score minimised is

        ``D(a, b) = sum_j P_j log(P_j / Q_j) / N``

    with P the histogram cut to the window, the clipped mass added to its two edge bins; Q the
    window's unclipped mass merged into ``levels`` buckets and spread evenly over each bucket's
    bins (a code stands for its whole bucket; TensorRT spreads over P's non-zero bins only, which
    lets isolated far values be kept for free); both over the same total ``N``.  Q sums to the
    mass ``m`` the window holds, so ``D >= -log(1 - c)`` for the clipped fraction ``c = 1 - m/N``:
    a window that leaves out the bulk of the data pays for it, however its inside looks.  A
    window of fewer bins than codes has one bucket per bin (the grid is finer than the histogram:
    nothing merges, only clipping costs), so a bulk narrower than ``levels`` bins can still be cut
    from a far outlier.

    Up to ``exact_bins`` bins the minimum is exact (every window is scored or pruned by an O(1)
    lower bound, after coordinate descent has found a good bound), unless that could take more
    than ``2**28`` bucket terms (formats of thousands of codes), where coordinate descent alone
    searches.  A larger histogram is first searched exactly with its bins merged by a power of
    two (to at most ``exact_bins`` bins, but never fewer than ``4 * levels``), and the best few
    results refined at full resolution: every window within two merged bins of each, then
    coordinate descent.

    Args:
        hist: counts (int64) of the bins, in order.
        levels: the number of codes of the format (``qmax - qmin + 1``), >= 2.
        keep_from, keep_to: edges every window holds, ``0 <= keep_from <= keep_to <= len(hist)``.
        exact_bins: the largest histogram searched exactly.

    Returns:
        ``(a, b, score)``; the whole histogram, score 0, when it has at most ``levels`` bins (one
        bucket per bin: nothing merges, nothing is clipped).

    Raises:
        ValueError: ``levels < 2`` or edges out of order.

    Example:
        >>> hist = np.array([1, 0, 0, 0, 0, 0, 20, 50, 80, 60, 30, 10], np.int64)
        >>> kl_window(hist, 4, 6, 6)[:2]  # the lone value 6 bins below the rest is clipped
        (6, 12)
    """
    hist = np.asarray(hist, np.int64)
    levels, keep_from, keep_to = int(levels), int(keep_from), int(keep_to)
    if levels < 2 or not 0 <= keep_from <= keep_to <= hist.size:
        raise ValueError(f"kl_window needs levels >= 2 and 0 <= keep_from <= keep_to <= {hist.size}, "
                         f"got {levels}, {keep_from}, {keep_to}")
    if hist.size <= levels:
        return 0, hist.size, 0.0
    factor = 1
    while hist.size > exact_bins * factor and hist.size // (2 * factor) >= 4 * levels:
        factor *= 2
    if factor == 1:
        starts, ends, scores = _best_windows(hist, levels, keep_from, keep_to)
        i = int(np.argmin(scores))
        return int(starts[i]), int(ends[i]), float(scores[i])
    coarse, anchor = _coarsen(hist, keep_from, factor)
    coarse_to = anchor - (keep_from - keep_to) // factor  # keep_to rounded up to a merged edge
    starts, ends, scores = _best_windows(coarse, levels, anchor, coarse_to)
    best = (np.inf, 0, hist.size)
    for i in np.argsort(scores, kind="stable")[:_REFINED]:  # the best few starts, each with its best end
        if not np.isfinite(scores[i]):
            break
        a0 = min(max((int(starts[i]) - anchor) * factor + keep_from, 0), keep_from)
        b0 = max(min((int(ends[i]) - anchor) * factor + keep_from, hist.size), keep_to)
        a, b, v = _local(hist, levels, keep_from, keep_to, a0, b0, 2 * factor)
        best = min(best, (v, a, b))
    v, a, b = best
    a, b, v = _descend(hist, levels, keep_from, keep_to, a, b, 64)
    return int(a), int(b), float(v)
