"""lowbit.calibration.percentile: Percentile against np.percentile of all the data."""

from __future__ import annotations

import numpy as np
import pytest

from lowbit.calibration import Percentile


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("q", [99.99, 99.9, 99.0, 90.0, 75.0, 50.0, 100.0])
def test_percentile_equals_numpy(dtype, q, rng):
    data = [
        rng.standard_normal(200_001),
        rng.laplace(size=50_000) * 3 + 1,
        np.round(rng.uniform(-50, 150, 10_000), 2),
        rng.integers(-4, 5, 5_000).astype(np.float64),  # many ties on bin edges
    ]
    for x in (d.astype(dtype) for d in data):
        est = Percentile(percentile=q).fit([x])
        lo, hi = est.clip_range("uint8", symmetric=False)
        _, amax = est.clip_range("int8", symmetric=True)
        want = [*np.percentile(x, [100 - q, q]).tolist(), np.percentile(np.abs(x), q)]
        tol = 2 * np.finfo(dtype).eps
        np.testing.assert_allclose([lo, hi, amax], want, rtol=tol, atol=tol)


def test_subnormal_data_gives_its_exact_percentile() -> None:
    """Bins too narrow for float64 to separate (subnormal values) fall back to partitioning every value."""
    x = np.array([1e-45, -1e-45, 0.0], np.float32)
    lo, hi = Percentile(percentile=100).partial_fit(x).clip_range("int8")
    assert hi == float(np.abs(x).max()) and lo == -hi
