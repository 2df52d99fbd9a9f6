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
