"""Range estimators (calibration): how the clipping range is chosen.

Every estimator streams over batches with bounded memory and follows one
contract (see :class:`RangeEstimator`).  They are registered by name like
formats: ``get_estimator(name, **options)`` builds one, ``list_estimators()``
names them, ``register_estimator`` adds one; ``lowbit.quantize(x, method=name,
method_options={...})`` and every other ``method=`` use them.

Example:
    >>> import numpy as np
    >>> from lowbit.calibration import get_estimator
    >>> est = get_estimator("percentile", percentile=99.0).fit([np.arange(1000.0)])
    >>> [round(float(v), 2) for v in est.clip_range("uint8")]
    [9.99, 989.01]
"""

from __future__ import annotations

from lowbit._deprecation import renamed_attributes
from lowbit.calibration.base import (
    HistogramEstimator,
    RangeEstimator,
    clone,
    get_estimator,
    list_estimators,
    register_estimator,
)

# isort: split
# Registration order is import order (the order list_estimators() and the CLI show).
from lowbit.calibration.minmax import MinMax

# isort: split
from lowbit.calibration.percentile import Percentile

# isort: split
from lowbit.calibration.mse import MSE

# isort: split
from lowbit.calibration.entropy import Entropy

# isort: split
from lowbit.calibration.aciq import ACIQ

# isort: split
from lowbit.calibration.moving_average import MovingAverageMinMax

__all__ = [
    "RangeEstimator",
    "HistogramEstimator",
    "MinMax",
    "Percentile",
    "MSE",
    "Entropy",
    "ACIQ",
    "MovingAverageMinMax",
    "register_estimator",
    "get_estimator",
    "list_estimators",
    "clone",
]


def _estimators() -> dict[str, type[RangeEstimator]]:
    from lowbit.calibration.base import _REGISTRY

    return dict(_REGISTRY)


__getattr__ = renamed_attributes(
    "lowbit.calibration",
    {
        "list_methods": ("lowbit.calibration.list_estimators", lambda: list_estimators),
        "ESTIMATORS": ("lowbit.calibration.list_estimators() and get_estimator(name)", _estimators),
    },
)
