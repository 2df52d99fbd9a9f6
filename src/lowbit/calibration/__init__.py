"""Range estimators (calibration): how the clipping range is chosen.

Every estimator streams over batches with bounded memory and follows one
contract (see :class:`RangeEstimator`).  ``get_estimator(name, **options)``
builds one from the registry; ``lowbit.quantize(x, method=name)`` uses them.

Example:
    >>> import numpy as np
    >>> from lowbit.calibration import get_estimator
    >>> est = get_estimator("percentile", percentile=99.0).fit([np.arange(1000.0)])
    >>> [round(float(v), 2) for v in est.range_("uint8")]
    [9.99, 989.01]
"""

from __future__ import annotations

from typing import Any

from lowbit.calibration.aciq import ACIQ
from lowbit.calibration.base import HistogramEstimator, RangeEstimator
from lowbit.calibration.entropy import Entropy
from lowbit.calibration.minmax import MinMax
from lowbit.calibration.moving_average import MovingAverageMinMax
from lowbit.calibration.mse import MSE
from lowbit.calibration.percentile import Percentile
from lowbit.errors import OptionError

__all__ = [
    "RangeEstimator",
    "HistogramEstimator",
    "MinMax",
    "Percentile",
    "MSE",
    "Entropy",
    "ACIQ",
    "MovingAverageMinMax",
    "ESTIMATORS",
    "get_estimator",
    "list_methods",
]

ESTIMATORS: dict[str, type[RangeEstimator]] = {
    cls.name: cls for cls in (MinMax, Percentile, MSE, Entropy, ACIQ, MovingAverageMinMax)
}


def list_methods() -> list[str]:
    """Registered estimator names.

    Example:
        >>> list_methods()[:3]
        ['minmax', 'percentile', 'mse']
    """
    return list(ESTIMATORS)


def get_estimator(name: str, **options: Any) -> RangeEstimator:
    """Build the estimator registered as ``name`` with ``options``.

    Raises:
        OptionError: unknown name (the message lists the registered ones) or an
            option the estimator does not take.

    Example:
        >>> get_estimator("mse", qtype="int4")
        MSE(axis=None, nan_policy='raise', bins=4096, qtype='int4', symmetric=None)
    """
    cls = ESTIMATORS.get(str(name).lower())
    if cls is None:
        raise OptionError(f"unknown method {name!r}; registered methods are: {', '.join(ESTIMATORS)}")
    try:
        return cls(**options)
    except TypeError as err:
        raise OptionError(f"method {name!r} does not take these options {sorted(options)}: {err}") from None
