"""Fixtures shared by the estimator tests: the seeds' outlier example and the error it is scored by."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import lowbit


@pytest.fixture
def outlier_example() -> np.ndarray:
    """10,000 values uniform on [-50, 150] (2 decimals) and one outlier at 1000 (the last value)."""
    rng = np.random.default_rng(0)
    x = np.round(rng.uniform(-50, 150, 10_000), 2)
    x[-1] = 1000.0
    return x


@pytest.fixture
def uint8_mse() -> Callable[..., float]:
    """``uint8_mse(x, method, inliers=True)``: float64 MSE of ``fake_quantize(x, "uint8", method=method)``,
    over every value but the last (the outlier) unless ``inliers=False``."""

    def mse(x: np.ndarray, method: str, inliers: bool = True) -> float:
        d = lowbit.fake_quantize(x, "uint8", method=method)
        sel = slice(0, -1) if inliers else slice(None)
        return float(np.mean((x[sel] - d[sel]) ** 2))

    return mse
