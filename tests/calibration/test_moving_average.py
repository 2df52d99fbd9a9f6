"""lowbit.calibration.moving_average: MovingAverageMinMax against an exponential moving average written out here."""

from __future__ import annotations

import pytest

from lowbit.calibration import MovingAverageMinMax


def test_moving_average_is_an_ema(rng):
    batches = [rng.standard_normal(100) * (i + 1) for i in range(5)]
    est = MovingAverageMinMax(momentum=0.8)
    lo, hi = batches[0].min(), batches[0].max()
    for i, b in enumerate(batches):
        est.partial_fit(b)
        if i:
            lo, hi = 0.8 * lo + 0.2 * b.min(), 0.8 * hi + 0.2 * b.max()
    assert est.clip_range() == pytest.approx((lo, hi), rel=1e-12)
