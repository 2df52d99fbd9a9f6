"""MovingAverageMinMax: exponential moving average of each batch's min and max (for activations).

``new = momentum * old + (1 - momentum) * batch``; the first batch sets the
state directly.  PyTorch's ``MovingAverageMinMaxObserver(averaging_constant=c)``
is ``momentum = 1 - c``.

Example:
    >>> import numpy as np
    >>> est = MovingAverageMinMax(momentum=0.5).fit([np.array([0.0, 4.0]), np.array([0.0, 2.0])])
    >>> est.clip_range()
    (0.0, 3.0)
"""

from __future__ import annotations

import numpy as np

from lowbit.calibration.base import RangeEstimator, register_estimator
from lowbit.errors import OptionError
from lowbit.formats import QType

__all__ = ["MovingAverageMinMax"]


@register_estimator
class MovingAverageMinMax(RangeEstimator):
    """EMA of per-batch min/max; ``momentum`` in [0, 1) is the weight of the past."""

    name = "moving_average"

    def __init__(self, momentum: float = 0.9, *, axis: int | None = None, nan_policy: str = "raise") -> None:
        super().__init__(axis=axis, nan_policy=nan_policy)
        self.momentum = momentum

    def _validate_params(self) -> None:
        super()._validate_params()
        m = self.momentum
        if isinstance(m, bool) or not isinstance(m, (int, float, np.integer, np.floating)) or not 0.0 <= m < 1.0:
            raise OptionError(f"momentum must be a number in [0, 1), got {m!r}")

    def _reset(self, channels: int) -> None:
        self.min_ = np.full(channels, np.nan)
        self.max_ = np.full(channels, np.nan)

    def _has_data(self) -> bool:
        return not bool(np.any(np.isnan(self.min_)))

    def _update(self, rows: np.ndarray, mins: np.ndarray, maxs: np.ndarray, had_nonfinite: bool) -> None:
        has = mins <= maxs
        first = np.isnan(self.min_) & has
        m = float(self.momentum)
        self.min_ = np.where(first, mins, np.where(has, m * self.min_ + (1 - m) * mins, self.min_))
        self.max_ = np.where(first, maxs, np.where(has, m * self.max_ + (1 - m) * maxs, self.max_))

    def _range(self, qtype: QType, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
        return self.min_, self.max_
