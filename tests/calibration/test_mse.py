"""lowbit.calibration.mse: MSE against a brute-force float64 search and the other estimators' total error."""

from __future__ import annotations

import numpy as np
import pytest

from lowbit.calibration import MSE


def _brute_force_mse(x: np.ndarray, bits: int, candidates: int = 400) -> float:
    steps = 2 ** (bits - 1) - 1
    xs = x.astype(np.float64)
    amax = np.abs(xs).max()
    best = np.inf
    for c in np.linspace(amax / candidates, amax, candidates):
        s = c / steps
        best = min(best, float(np.mean((xs - np.clip(np.rint(xs / s), -steps, steps) * s) ** 2)))
    return best


@pytest.mark.model
@pytest.mark.parametrize("dist", ["gaussian", "laplace"])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_mse_clip_matches_brute_force(dist, bits):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(1_000_000) if dist == "gaussian" else rng.laplace(size=1_000_000)).astype(np.float32)
    _, clip = MSE().fit([x]).clip_range(f"int{bits}")
    steps = 2 ** (bits - 1) - 1
    s = np.float64(np.float32(clip / steps))
    ours = float(np.mean((x - np.clip(np.rint(x / s), -steps, steps) * s) ** 2))
    assert ours <= 1.01 * _brute_force_mse(x, bits)


def test_outlier_example_mse_minimises_the_total_error(outlier_example, uint8_mse):
    """MSE minimises the error over *all* values: clipping 1000 to ~150 costs 850^2 = 722,500 in
    the sum, keeping it costs ~10,000 * s^2/12 ~ 14,000, so the MSE-optimal range keeps the
    outlier.  It is the lowest total error of every estimator (and not the lowest on inliers)."""
    x = outlier_example
    totals = {m: uint8_mse(x, m, inliers=False) for m in ("minmax", "percentile", "entropy", "aciq", "mse")}
    assert totals["mse"] == min(totals.values())
    assert totals["mse"] < 0.05 * totals["percentile"]


def test_grid_formats_are_refused_like_quantize():
    import lowbit

    x = np.random.default_rng(0).standard_normal(2000)
    with pytest.raises(lowbit.OptionError, match="method='minmax' only"):
        MSE(qtype="nf4").fit([x])
    with pytest.raises(lowbit.OptionError, match="method='minmax' only"):
        MSE().fit([x]).clip_range("fp8_e4m3")
    with pytest.raises(lowbit.OptionError, match="method='minmax' only"):
        lowbit.quantize(x, "nf4", method="mse")


def test_per_channel_equals_per_tensor_on_each_channel():
    x = np.random.default_rng(1).standard_normal((300, 3)) * np.array([1.0, 5.0, 0.01])
    lo, hi = MSE(axis=1, bins=256).fit([x]).clip_range("int4", symmetric=False)
    for c in range(3):
        assert (lo[c], hi[c]) == MSE(bins=256).fit([x[:, c]]).clip_range("int4", symmetric=False)


@pytest.mark.parametrize("symmetric", [True, False])
def test_values_near_the_float64_maximum(symmetric):
    x = np.array([-1e308, 1e308, 1.0, 0.5, 3e307])
    lo, hi = MSE(bins=64).fit([x]).clip_range("int8", symmetric=symmetric)
    assert np.isfinite([lo, hi]).all() and hi > 1e307
    # power-of-two rescaling is exact: the same search as on x / 2**1000
    lo2, hi2 = MSE(bins=64).fit([x / 2.0**1000]).clip_range("int8", symmetric=symmetric)
    assert (lo / 2.0**1000, hi / 2.0**1000) == (lo2, hi2)
