"""Observer: a module that feeds what flows through it to a lowbit range estimator.

Example:
    >>> import torch, lowbit.nn as lnn
    >>> obs = lnn.Observer("minmax")
    >>> y = obs(torch.tensor([-1.0, 3.0]))
    >>> obs.clip_range()
    (-1.0, 3.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from lowbit._deprecation import warn_renamed
from lowbit.errors import OptionError
from lowbit.formats import QType

__all__ = ["Observer"]


class Observer(nn.Module):
    """Identity module that calibrates a range estimator on every tensor it sees.

    Args:
        method: a registered estimator name (``"minmax"``, ``"percentile"``,
            ``"mse"``, ``"entropy"``, ``"aciq"``, ``"moving_average"``...) or an
            estimator instance (:class:`lowbit.calibration.RangeEstimator`, used as it is).
        method_options: options of the named estimator (e.g. ``{"percentile": 99.9, "axis": 1}``).
        enabled: when False, forward passes tensors through without observing.
        estimator, **options: deprecated spellings of ``method`` and ``method_options``.

    The estimator's statistics live in Python (not in ``state_dict``); save the
    resulting ``qparams`` instead.

    Raises:
        OptionError: unknown estimator name or option, or options given with an instance.

    Example:
        >>> import torch, lowbit.nn as lnn
        >>> obs = lnn.Observer("percentile", method_options={"percentile": 90.0})
        >>> _ = obs(torch.arange(101.0))
        >>> obs.clip_range("uint8")
        (10.0, 90.0)
    """

    def __init__(self, method: Any = "minmax", method_options: dict[str, Any] | None = None, *,
                 enabled: bool = True, estimator: Any = None, **options: Any) -> None:
        super().__init__()
        from lowbit.calibration import RangeEstimator, get_estimator

        if estimator is not None:
            warn_renamed("Observer(estimator=...)", "Observer(method=...)")
            method = estimator
        if options:
            warn_renamed("Observer(**options)", "Observer(method, method_options={...})")
            method_options = {**(method_options or {}), **options}
        if not isinstance(method, (str, RangeEstimator)):
            raise OptionError(f"Observer method must be a name or a RangeEstimator, got {type(method).__name__}")
        if method_options is not None and not isinstance(method_options, dict):
            raise OptionError(f"method_options must be a dict, got {type(method_options).__name__}")
        self.estimator = get_estimator(method, **(method_options or {}))
        self.enabled = bool(enabled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feed ``x.detach()`` to the estimator's ``partial_fit`` and return ``x`` unchanged."""
        if self.enabled:
            self.estimator.partial_fit(x.detach())
        return x

    def clip_range(self, qtype: str | QType | None = None, symmetric: bool | None = None) -> tuple[Any, Any]:
        """The estimated clipping range ``(lo, hi)`` (raises NotCalibratedError before data).

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> obs = lnn.Observer()
            >>> _ = obs(torch.tensor([0.5, -2.0]))
            >>> obs.clip_range()
            (-2.0, 0.5)
        """
        return self.estimator.clip_range(qtype, symmetric)

    def range_(self, qtype: str | QType | None = None, symmetric: bool | None = None) -> tuple[Any, Any]:
        """Deprecated spelling of :meth:`clip_range`."""
        warn_renamed("Observer.range_()", "Observer.clip_range()")
        return self.estimator.clip_range(qtype, symmetric)

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
