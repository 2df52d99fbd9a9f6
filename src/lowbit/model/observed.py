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

import torch
from torch import nn

from lowbit.model.config import Static

__all__ = ["Observed"]


class Observed(nn.Module):
    """Runs ``module`` unchanged and feeds its input to a range observer."""

    def __init__(self, module: nn.Module, config: Static) -> None:
        super().__init__()
        from lowbit.nn import Observer

        self.module = module
        self.config = config
        self.observer = Observer(config.observer, **config.observer_options)
        self.batches = 0

    @property
    def calibrated(self) -> bool:
        """True once the observer has seen data."""
        return self.batches > 0

    def forward(self, x: torch.Tensor) -> Any:
        """Observe ``x``, then run the float layer."""
        self.observer(x)
        self.batches += 1
        return self.module(x)

    def to_quantized(self) -> nn.Module:
        """The integer layer: int8 weights per output channel, the observed int8 activation scale."""
        from lowbit.nn import Int8Conv2d, Int8Linear

        scale, _ = self.observer.qparams("int8", symmetric=True)
        cls = Int8Linear if isinstance(self.module, nn.Linear) else Int8Conv2d
        return cls.from_float(self.module, act_scale=float(scale), weight_granularity=self.config.weight_granularity)
