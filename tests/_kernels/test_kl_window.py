"""lowbit._kernels.kl_window: the two-sided KL window search (affine entropy) against bin-by-bin references."""

from __future__ import annotations

import numpy as np
import pytest

from lowbit._kernels.kl_window import kl_window, kl_window_scores


def _window_reference(hist, levels, a, b, tensorrt=False):
    """The affine entropy score of window [a, b), P and Q built bin by bin in plain Python (float64).

    ``levels`` buckets, one per bin when the window has fewer bins; Q spreads each bucket's mass
    over all its bins and shares P's total.  ``tensorrt``: TensorRT's one-sided score carried over
    to windows instead: Q spread over P's non-zero bins, normalised on its own, floored at 1e-12.
    """
    import math

    total = float(sum(int(v) for v in hist))
    p = [float(v) for v in hist[a:b]]
    p[0] += float(sum(int(v) for v in hist[:a]))
    p[-1] += float(sum(int(v) for v in hist[b:]))
    n = b - a
    buckets = min(levels, n)
    q = [0.0] * n
    for lvl in range(buckets):
        s, e = lvl * n // buckets, (lvl + 1) * n // buckets
        spread = [j for j in range(s, e) if p[j] != 0] if tensorrt else list(range(s, e))
        for j in spread:
            q[j] = float(sum(int(v) for v in hist[a + s : a + e])) / len(spread)
    q_total = sum(q) if tensorrt else total
    if q_total == 0:
        return math.inf
    acc = 0.0
    for j in range(n):
        if p[j] > 0:
            if q[j] == 0:
                if not tensorrt:
                    return math.inf
                q[j] = 1e-12 * q_total
            acc += p[j] / total * math.log((p[j] / total) / (q[j] / q_total))
    return acc


def _all_windows(hist, levels, keep_from, keep_to, tensorrt=False):
    return {
        (a, b): _window_reference(hist, levels, a, b, tensorrt)
        for a in range(keep_from + 1)
        for b in range(max(keep_to, a + 1), hist.size + 1)
    }


def _small_histogram(seed):
    """Sparse to dense random counts, or a skewed sample binned; the edge at 0 anywhere in it, and
    (every third seed) a span around it that every window must hold."""
    rng = np.random.default_rng(seed)
    nb = int(rng.integers(10, 36))
    if seed % 2:
        hist = ((rng.random(nb) < rng.random() + 0.2) * rng.integers(0, 40, nb)).astype(np.int64)
        hist[int(rng.integers(0, nb))] += 1
        zero = int(rng.integers(0, nb + 1))
    else:
        x = np.concatenate([rng.gamma(2.0, 1.0, 3000), -rng.uniform(0, 8, int(rng.integers(1, 20)))])
        edges = np.linspace(x.min(), x.max(), nb + 1)
        hist, zero = np.histogram(x, edges)[0].astype(np.int64), int(np.searchsorted(edges, 0.0))
    if seed % 3 == 0:
        return hist, min(zero, nb // 3), max(zero, 2 * nb // 3)
    return hist, zero, zero


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("levels", [2, 3, 8])
def test_window_scores_match_the_bin_by_bin_reference(seed, levels):
    hist, keep_from, keep_to = _small_histogram(seed)
    got = kl_window_scores(hist, levels, keep_from, keep_to)
    want = _all_windows(hist, levels, keep_from, keep_to)
    for (a, b), v in want.items():
        assert got[a, b] == pytest.approx(v, rel=1e-9, abs=1e-13)
    assert np.isnan(got).sum() == got.size - len(want)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("levels", [2, 4, 8])
def test_kl_window_finds_the_brute_force_minimum(seed, levels):
    hist, keep_from, keep_to = _small_histogram(seed)
    if hist.size <= levels:  # one bucket per bin: the whole histogram loses nothing
        assert kl_window(hist, levels, keep_from, keep_to) == (0, hist.size, 0.0)
        return
    want = _all_windows(hist, levels, keep_from, keep_to)
    best = min(want.values())
    a, b, score = kl_window(hist, levels, keep_from, keep_to)
    assert a <= keep_from and b >= keep_to
    assert want[(a, b)] == pytest.approx(best, rel=1e-9, abs=1e-13)
    assert score == pytest.approx(best, rel=1e-9, abs=1e-13)


def test_tensorrts_score_picks_a_tail_window_and_the_affine_score_does_not():
    """Why Q shares P's total: with Q normalised on its own (TensorRT's one-sided score carried
    over to windows), a window over the sparse left tail that holds 0.1 % of the mass, whose last
    bin takes all the clipped bulk, scores best.  The affine score makes it pay for the clipping."""
    hist = np.array([0, 2, 0, 0, 0, 0, 2, 0, 1, 3, 3, 11, 33, 38, 53, 65, 114, 136, 167, 178, 185, 181, 160, 169,
                     134, 113, 72, 63, 45, 33, 20, 13, 8, 2, 1], np.int64)
    separate = _all_windows(hist, 2, 0, 0, tensorrt=True)
    a, b = min(separate, key=separate.get)
    assert hist[a:b].sum() < 0.01 * hist.sum()
    shared = _all_windows(hist, 2, 0, 0)
    a, b, _ = kl_window(hist, 2, 0, 0)
    assert (a, b) == min(shared, key=shared.get) and hist[a:b].sum() > 0.9 * hist.sum()


def _binned(x, nbins):
    w = 2.0 ** np.ceil(np.log2((x.max() - x.min()) / nbins))
    k = np.floor(x / w).astype(np.int64)
    first = min(int(k.min()), 0)
    return np.bincount(k - first, minlength=max(int(k.max()) + 1, 0) - first), -first


@pytest.mark.parametrize("seed", range(4))
def test_merged_bin_search_lands_near_the_exact_minimum(seed):
    """Above ``exact_bins`` the search runs on merged bins and refines at full resolution: not
    exact, but its score is within a few percent of every window's minimum (measured: <= 4 %)."""
    rng = np.random.default_rng(seed)
    x = [rng.laplace(size=20_000), rng.gamma(2.0, 1.0, 20_000) - 0.5,
         np.concatenate([rng.uniform(-20, 200, 20_000), [-800.0]]), rng.standard_normal(20_000)][seed]
    hist, zero = _binned(x, 400)
    span = (min(zero, hist.size // 4), max(zero, 3 * hist.size // 4))
    for levels, keep in ((4, (zero, zero)), (16, (zero, zero)), (16, span)):
        scores = kl_window_scores(hist, levels, *keep)
        a, b, score = kl_window(hist, levels, *keep, exact_bins=64)
        assert a <= keep[0] and b >= keep[1] and score == pytest.approx(scores[a, b], rel=1e-12)
        assert np.nanmin(scores) <= score <= 1.05 * np.nanmin(scores)


def test_kl_window_edge_cases():
    hist = np.array([0, 5, 0, 0, 3], np.int64)
    assert kl_window(hist, 8, 0, 0) == (0, 5, 0.0)  # no more bins than codes: nothing to clip
    assert kl_window(np.full(16, 5, np.int64), 4, 8, 8) == (0, 16, 0.0)  # a flat density merges losslessly
    assert np.isinf(kl_window_scores(np.array([7, 0, 0, 0, 9], np.int64), 2, 0, 0)[0, 2])  # 9 onto an empty bin
    for bad in ((1, 0, 0), (2, 3, 2), (2, 0, 6)):
        with pytest.raises(ValueError, match="kl_window needs"):
            kl_window(hist, *bad)
