"""Observed: a float layer with an observer on its input, between Static prepare and convert.

Example:
    >>> import torch
    >>> from lowbit.model import Static
    >>> layer = Observed(torch.nn.Linear(4, 2), Static())
    >>> layer.calibrated
    False
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from lowbit.model.config import Static

__all__ = ["Observed"]


class Observed(nn.Module):
    """Runs ``module`` unchanged and feeds its input (divided by ``smooth_scale``, when
    SmoothQuant factors are given) to a range observer."""

    smooth_scale: torch.Tensor | None

    def __init__(self, module: nn.Module, config: Static, smooth_scale: Any = None) -> None:
        super().__init__()
        from lowbit.nn import Observer

        self.module = module
        self.config = config
        self.observer = Observer(config.method, config.method_options)
        self.batches = 0
        s = None if smooth_scale is None else torch.as_tensor(np.asarray(smooth_scale, np.float32))
        self.register_buffer("smooth_scale", s)

    @property
    def calibrated(self) -> bool:
        """True once the observer has seen data."""
        return self.batches > 0

    def forward(self, x: torch.Tensor) -> Any:
        """Observe ``x`` (smoothed), then run the float layer on ``x``."""
        self.observer(x if self.smooth_scale is None else x / self.smooth_scale.to(x.dtype))
        self.batches += 1
        return self.module(x)

    def to_quantized(self) -> nn.Module:
        """The integer layer: int8 weights per output channel, the observed int8 activation scale."""
        from lowbit.nn import Int8Conv2d, Int8Linear

        scale, _ = self.observer.qparams("int8", symmetric=True)
        gran = self.config.weight_granularity
        if isinstance(self.module, nn.Linear):
            return Int8Linear.from_float(self.module, act_scale=float(scale), weight_granularity=gran,
                                         smooth_scale=self.smooth_scale)
        return Int8Conv2d.from_float(self.module, act_scale=float(scale), weight_granularity=gran)
