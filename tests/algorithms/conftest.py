"""Fixtures shared by the AWQ, SmoothQuant and ActivationStatistics tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def _outlier_rows(n: int = 512, width: int = 64, seed: int = 0) -> np.ndarray:
    """Rows whose channels 0..3 are 30x larger than the rest (the case AWQ and SmoothQuant address)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, width)) * np.where(np.arange(width) < 4, 30.0, 1.0)).astype(np.float32)


@pytest.fixture
def outlier_rows() -> Callable[..., np.ndarray]:
    """``outlier_rows(n=512, width=64, seed=0)``: float32 Gaussian rows whose channels 0..3 are 30x larger."""
    return _outlier_rows
