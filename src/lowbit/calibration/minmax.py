"""MinMax: the smallest range that holds every value seen.

Example:
    >>> import numpy as np
    >>> MinMax(axis=0).fit([np.array([[1.0, -1.0], [0.0, 2.0]])]).clip_range()
    (array([-1.,  0.]), array([1., 2.]))
"""

from __future__ import annotations

import numpy as np

from lowbit.calibration.base import RangeEstimator, register_estimator
from lowbit.formats import QType

__all__ = ["MinMax"]


@register_estimator
class MinMax(RangeEstimator):
    """Running minimum and maximum (exact under any batching)."""

    name = "minmax"

    def _reset(self, channels: int) -> None:
        self.min_ = np.full(channels, np.inf)
        self.max_ = np.full(channels, -np.inf)

    def _has_data(self) -> bool:
        return bool(np.all(self.min_ <= self.max_))

    def _update(self, rows: np.ndarray, mins: np.ndarray, maxs: np.ndarray, had_nonfinite: bool) -> None:
        self.min_ = np.minimum(self.min_, mins)
        self.max_ = np.maximum(self.max_, maxs)

    def _range(self, qtype: QType, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
        return self.min_, self.max_
