"""lowbit.calibration.minmax: MinMax, the plain running minimum and maximum, against NumPy."""

from __future__ import annotations

import numpy as np

from lowbit.calibration import MinMax


def test_per_channel_on_another_axis(rng):
    x = rng.standard_normal((50, 4)) * np.array([1.0, 2.0, 3.0, 4.0])
    lo, hi = MinMax(axis=1).fit([x]).clip_range()
    np.testing.assert_array_equal(lo, x.min(axis=0))
    np.testing.assert_array_equal(hi, x.max(axis=0))


def test_streamed_range_and_qparams_equal_numpy_over_all_batches(rng):
    """Batches of several sizes and dtypes, 3-d, one range per channel of axis 0: the range is NumPy's
    min/max over the concatenation, and the qparams are the min-max formulas on it (the range widened
    to hold 0 for the affine format)."""
    batches = [(rng.standard_normal((4, n, 3)) * rng.uniform(0.1, 20, (4, 1, 1)) + rng.uniform(-5, 5, (4, 1, 1)))
               .astype(dtype) for n, dtype in [(7, np.float32), (1, np.float64), (50, np.float32), (3, np.float64)]]
    est = MinMax(axis=0)
    for b in batches:
        est.partial_fit(b)
    every = np.concatenate([b.astype(np.float64).reshape(4, -1) for b in batches], axis=1)
    lo, hi = est.clip_range("int8")
    np.testing.assert_array_equal(lo, every.min(axis=1))
    np.testing.assert_array_equal(hi, every.max(axis=1))
    assert est.seen_ == 4
    scale, zp = est.qparams("int8", symmetric=True)
    np.testing.assert_allclose(scale, np.abs(every).max(axis=1) / 127, rtol=1e-6)
    assert np.all(zp == 0)
    scale, zp = est.qparams("uint8", symmetric=False)
    lo0, hi0 = np.minimum(every.min(axis=1), 0), np.maximum(every.max(axis=1), 0)
    np.testing.assert_allclose(scale, (hi0 - lo0) / 255, rtol=1e-6)
    np.testing.assert_array_equal(zp, np.clip(-np.rint(lo0 / scale.astype(np.float64)), 0, 255))
