"""lowbit._kernels.histogram: histogram kernels against np.histogram / plain NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from lowbit._kernels.histogram import (
    histogram_flat,
    histogram_rows,
    kl_thresholds,
    values_between,
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_histogram_flat_equals_numpy(dtype, rng):
    x = (rng.standard_normal(300_000) * 5).astype(dtype)
    w, k0 = 2.0**-4, int(np.floor(x.min() / 2.0**-4))
    nbins = int(np.floor(x.max() / w)) - k0 + 1
    edges = (k0 + np.arange(nbins + 1)) * w
    np.testing.assert_array_equal(histogram_flat(x, w, k0, nbins), np.histogram(x, edges)[0])


def test_histogram_rows_and_omit(rng):
    x = rng.standard_normal((3, 1000))
    x[1, 10] = np.nan
    widths, k0 = np.array([0.5, 0.25, 1.0]), np.array([-10, -20, -5])
    counts = histogram_rows(x, widths, k0, 40, omit=True)
    for r in range(3):
        edges = (k0[r] + np.arange(41)) * widths[r]
        finite = x[r][np.isfinite(x[r])]
        np.testing.assert_array_equal(counts[r], np.histogram(finite, edges)[0])


def test_values_between_counts_below_exactly(rng):
    x = rng.integers(-5, 6, 10_000).astype(np.float64)
    ((inside, below),) = values_between(x, [(1.0, 3.0, False)])
    assert below == int((x < 1.0).sum()) and sorted(inside.tolist()) == sorted(x[(x >= 1) & (x < 3)].tolist())
    ((inside, below),) = values_between(x, [(2.0, 4.0, True)])
    assert below == int((np.abs(x) < 2).sum()) and inside.size == int(((np.abs(x) >= 2) & (np.abs(x) < 4)).sum())


def test_kl_prefers_the_threshold_that_keeps_the_shape():
    hist = np.zeros(512, np.int64)
    hist[:256] = np.linspace(1000, 10, 256).astype(np.int64)
    hist[500] = 1  # a lone outlier far out
    divergence = kl_thresholds(hist, 128)
    assert 128 + int(np.argmin(divergence)) <= 300


def _kl_reference(hist, levels):
    """TensorRT's loop in plain Python (float64), bin by bin."""
    import math

    out = []
    for i in range(min(levels, hist.size), hist.size + 1):
        ref = [float(v) for v in hist[:i]]
        ref[i - 1] += float(hist[i:].sum())
        expanded = [0.0] * i
        for lvl in range(levels):
            a, b = lvl * i // levels, (lvl + 1) * i // levels
            nonzero = sum(ref[j] != 0 for j in range(a, b))
            if nonzero:
                share = float(hist[a:b].sum()) / nonzero
                for j in range(a, b):
                    if ref[j] != 0:
                        expanded[j] = share
        tp, tq = sum(ref), sum(expanded)
        if tp == 0 or tq == 0:
            out.append(math.inf)
            continue
        acc = 0.0
        for j in range(i):
            if ref[j] > 0:
                pj, qj = ref[j] / tp, expanded[j] / tq
                acc += pj * math.log(pj / (qj if qj > 0 else 1e-12))
        out.append(acc)
    return np.array(out)


@pytest.mark.parametrize("seed", range(6))
def test_kl_thresholds_match_the_bin_by_bin_loop(seed):
    rng = np.random.default_rng(seed)
    nb, levels = int(rng.integers(8, 120)), int(rng.integers(1, 12))
    hist = (rng.random(nb) < rng.random()) * rng.integers(0, 40, nb)  # sparse to dense, empty tails
    if seed % 3 == 0:
        hist[nb // 2 :] = 0
    got, want = kl_thresholds(hist, levels), _kl_reference(hist, levels)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.argmin(got) == np.argmin(want)
