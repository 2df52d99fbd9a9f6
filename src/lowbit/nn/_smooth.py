"""An optional per-input-channel divisor, for layers whose weight columns were scaled.

AWQ and SmoothQuant rewrite a linear layer ``x W^T`` as ``(x / s) (W diag(s))^T``:
the layer stores the scaled weight and divides its input by ``s`` (a float32
buffer ``smooth_scale`` of ``in_features`` values) before anything else.  In a
deployed graph the division is usually folded into the operation that makes
``x`` (a LayerNorm's weight, say); lowbit keeps it in the layer so that any
model works, at the cost of one elementwise division per call.

Example:
    >>> import torch
    >>> m = torch.nn.Module()
    >>> SmoothedInput._init_smooth(m, 2, True)
    >>> SmoothedInput.set_smooth_scale(m, torch.tensor([2.0, 4.0]))
    >>> SmoothedInput._smooth(m, torch.tensor([[2.0, 2.0]])).tolist()
    [[1.0, 0.5]]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from lowbit.errors import OptionError

__all__ = ["SmoothedInput"]


class SmoothedInput(nn.Module):
    """Mixin: ``smooth_scale`` buffer (or None) and the input division."""

    smooth_scale: torch.Tensor | None

    def _init_smooth(self, in_features: int, enabled: bool) -> None:
        self.register_buffer("smooth_scale", torch.ones(in_features) if enabled else None)

    def set_smooth_scale(self, scale: Any) -> None:
        """Store the per-input-channel divisor ``s`` (positive, finite, one per input feature).

        Raises:
            OptionError: the layer was built without ``smooth=True``, or ``s`` has the
                wrong size or non-positive/non-finite values.

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> m = lnn.WeightOnlyLinear(2, 1, smooth=True)
            >>> m.set_smooth_scale([0.5, 2.0]); m.smooth_scale.tolist()
            [0.5, 2.0]
        """
        name = type(self).__name__
        if self.smooth_scale is None:
            raise OptionError(f"{name} was built without an input divisor; construct it with smooth=True")
        s = torch.as_tensor(np.asarray(scale, np.float32)).reshape(-1)
        if s.numel() != self.smooth_scale.numel():
            raise OptionError(f"{name} smooth_scale needs {self.smooth_scale.numel()} values, got {s.numel()}")
        if not bool(torch.isfinite(s).all() and (s > 0).all()):
            raise OptionError(f"{name} smooth_scale must be finite and > 0 everywhere")
        self.smooth_scale.copy_(s)

    def _smooth(self, x: torch.Tensor) -> torch.Tensor:
        """``x / smooth_scale`` along the last axis (``x`` unchanged without a divisor)."""
        return x if self.smooth_scale is None else x / self.smooth_scale.to(x.dtype)

    def _smooth_repr(self) -> str:
        return "" if self.smooth_scale is None else ", smooth=True"
