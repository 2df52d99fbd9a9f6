"""lowbit.calibration.aciq: ACIQ against the clipping values published by Banner et al. (2019)."""

from __future__ import annotations

import pytest

from lowbit.calibration import ACIQ
from lowbit.calibration.aciq import optimal_clip


def test_aciq_clips_match_the_published_table():
    """Banner et al. (2019), optimal clipping in units of b (Laplace) or sigma (Gaussian)."""
    laplace = {2: 2.83, 3: 3.89, 4: 5.03, 5: 6.2, 6: 7.41, 7: 8.64, 8: 9.89}
    gaussian = {2: 1.71, 3: 2.15, 4: 2.55, 5: 2.94, 6: 3.29, 7: 3.61, 8: 3.92}
    for bits, alpha in laplace.items():
        assert optimal_clip(1.0, bits, "laplace") == pytest.approx(alpha, abs=0.015)
    for bits, alpha in gaussian.items():
        assert optimal_clip(2.0, bits, "gaussian") == pytest.approx(2 * alpha, abs=0.03)


def test_aciq_fits_the_data(rng):
    x = rng.laplace(scale=2.0, size=400_000)
    _, hi = ACIQ("laplace").fit([x]).clip_range("int4")
    assert hi == pytest.approx(5.03 * 2.0, rel=0.03)
    g = rng.standard_normal(400_000) * 3
    _, hi = ACIQ("gaussian").fit([g]).clip_range("int3")
    assert hi == pytest.approx(2.15 * 3, rel=0.03)


def test_values_near_the_float64_maximum_stay_finite():
    import numpy as np

    from lowbit.calibration import ACIQ

    for symmetric in (True, False):
        lo, hi = ACIQ(bins=64).fit([np.array([-1e308, 1e308, 1.0, 3e307])]).clip_range("int8", symmetric=symmetric)
        assert np.isfinite([lo, hi]).all()
