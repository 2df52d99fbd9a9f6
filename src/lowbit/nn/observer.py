"""Observer: a module that feeds what flows through it to a lowbit range estimator.

Example:
    >>> import torch, lowbit.nn as lnn
    >>> obs = lnn.Observer("minmax")
    >>> y = obs(torch.tensor([-1.0, 3.0]))
    >>> obs.range_()
    (-1.0, 3.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from lowbit.errors import OptionError
from lowbit.formats import QType

__all__ = ["Observer"]


class Observer(nn.Module):
    """Identity module that calibrates a range estimator on every tensor it sees.

    Args:
        estimator: a registered estimator name (``"minmax"``, ``"percentile"``,
            ``"mse"``, ``"entropy"``, ``"aciq"``, ``"moving_average"``...) or an
            estimator instance (:class:`lowbit.calibration.RangeEstimator`).
        enabled: when False, forward passes tensors through without observing.
        **options: options of the named estimator (e.g. ``percentile=99.9``, ``axis=1``).

    The estimator's statistics live in Python (not in ``state_dict``); save the
    resulting ``qparams`` instead.

    Raises:
        OptionError: unknown estimator name or option, or options given with an instance.

    Example:
        >>> import torch, lowbit.nn as lnn
        >>> obs = lnn.Observer("percentile", percentile=90.0)
        >>> _ = obs(torch.arange(101.0))
        >>> obs.range_("uint8")
        (10.0, 90.0)
    """

    def __init__(self, estimator: Any = "minmax", *, enabled: bool = True, **options: Any) -> None:
        super().__init__()
        from lowbit.calibration import RangeEstimator, get_estimator

        if isinstance(estimator, RangeEstimator):
            if options:
                raise OptionError(f"Observer got options {sorted(options)} with an estimator instance; set them "
                                  "when building the estimator")
            self.estimator = estimator
        elif isinstance(estimator, str):
            self.estimator = get_estimator(estimator, **options)
        else:
            raise OptionError(f"Observer estimator must be a name or a RangeEstimator, got {type(estimator).__name__}")
        self.enabled = bool(enabled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feed ``x.detach()`` to the estimator's ``partial_fit`` and return ``x`` unchanged."""
        if self.enabled:
            self.estimator.partial_fit(x.detach())
        return x

    def range_(self, qtype: str | QType | None = None, symmetric: bool | None = None) -> tuple[Any, Any]:
        """The estimated clipping range ``(lo, hi)`` (raises NotCalibratedError before data).

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> lnn.Observer()(torch.ones(2)) is not None
            True
        """
        return self.estimator.range_(qtype, symmetric)

    def qparams(self, qtype: str | QType = "int8", symmetric: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, zero_point)`` for ``qtype`` from the estimated range (NotCalibratedError before data).

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> obs = lnn.Observer()
            >>> _ = obs(torch.tensor([-2.54, 1.0]))
            >>> round(float(obs.qparams("int8")[0]), 4)
            0.02
        """
        return self.estimator.qparams(qtype, symmetric)

    def extra_repr(self) -> str:
        """The wrapped estimator."""
        return f"{self.estimator!r}, enabled={self.enabled}"
