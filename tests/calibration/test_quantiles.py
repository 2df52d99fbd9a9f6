"""lowbit.calibration._quantiles: percentiles from a histogram (interpolated, or exact with one more pass).

Oracles: np.percentile (linear interpolation, NumPy's default) of the raw values, and np.histogram
of |x| on the edges the folded histogram claims.
"""

from __future__ import annotations

import numpy as np
import pytest

from lowbit.calibration._quantiles import exact_quantiles, fold, hist_quantile


def _hist(x: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """np.histogram of x on the edges k * width that hold it: (centers, counts)."""
    k0 = int(np.floor(x.min() / width))
    k1 = int(np.floor(x.max() / width)) + 1
    edges = np.arange(k0, k1 + 1) * width
    counts = np.histogram(x, edges)[0]
    return (edges[:-1] + edges[1:]) / 2, counts


DATA = {
    "normal": lambda rng: rng.standard_normal(20_001),
    "laplace-shifted": lambda rng: rng.laplace(size=5_000) * 3 + 1,
    "ties-on-edges": lambda rng: rng.integers(-8, 9, 4_000).astype(np.float64) / 4,
    "all-positive": lambda rng: rng.uniform(2, 7, 3_001),
}


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("q", [0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.99, 100.0])
def test_exact_quantiles_equal_numpy(data, q, rng):
    x = DATA[data](rng)
    width = 0.25
    centers, counts = _hist(x, width)
    fc, fcounts, fwidth = fold(centers, counts, width)
    got_raw, got_abs = exact_quantiles(x, [(centers, counts, width, False, q), (fc, fcounts, fwidth, True, q)])
    assert got_raw == pytest.approx(np.percentile(x, q), rel=1e-15, abs=1e-15)
    assert got_abs == pytest.approx(np.percentile(np.abs(x), q), rel=1e-15, abs=1e-15)


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("q", [1.0, 50.0, 99.0])
def test_hist_quantile_is_within_a_bin_of_numpy(data, q, rng):
    x = DATA[data](rng)
    width = 0.125
    centers, counts = _hist(x, width)
    assert abs(hist_quantile(centers, counts, width, q) - np.percentile(x, q)) <= width


@pytest.mark.parametrize("max_bins", [None, 64, 7])
def test_fold_is_the_histogram_of_the_absolute_values(max_bins, rng):
    x = np.concatenate([rng.standard_normal(3000) * 4, [-32.0, 31.9, 0.0]])
    width = 0.5
    centers, counts = _hist(x, width)
    fc, fcounts, fwidth = fold(centers, counts, width, max_bins)
    assert fcounts.sum() == x.size
    if max_bins is not None:
        assert fcounts.size <= max_bins and fwidth >= width and np.log2(fwidth / width) % 1 == 0  # doubled
    edges = np.arange(fcounts.size + 1) * fwidth
    np.testing.assert_allclose(fc, (edges[:-1] + edges[1:]) / 2)
    # bins of |x| are (k w, (k+1) w] on the negative side and [k w, (k+1) w) on the positive side:
    # count each side with np.histogram on its own half-open edges
    neg = -x[x < 0]
    pos = x[x >= 0]
    want = np.histogram(pos, edges)[0] + np.histogram(-neg, -edges[::-1])[0][::-1]
    np.testing.assert_array_equal(fcounts, want)
