"""Validated Conv2d settings shared by the quantized convolution modules (not public).

Example:
    >>> s = ConvSettings.build("Layer", 4, 8, 3, padding=1)
    >>> s.kernel_size, s.padding, s.output_size(5, 5)
    ((3, 3), (1, 1), (5, 5))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from lowbit.errors import InputTypeError, OptionError

__all__ = ["ConvSettings"]

Pair = tuple[int, int]


def _pair(value: Any, name: str, minimum: int, problems: list[str]) -> Pair:
    """``value`` as a pair of ints >= ``minimum``; a problem is noted (and ``(minimum, minimum)`` returned) if not."""
    vals = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(vals) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in vals):
        problems.append(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
        return (minimum, minimum)
    return (int(vals[0]), int(vals[1]))


@dataclass(frozen=True)
class ConvSettings:
    """The geometry of a 2-d convolution, validated once."""

    in_channels: int
    out_channels: int
    kernel_size: Pair
    stride: Pair
    padding: Pair | str
    dilation: Pair
    groups: int

    @classmethod
    def build(cls, layer: str, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
              padding: Any = 0, dilation: Any = 1, groups: int = 1, padding_mode: str = "zeros") -> ConvSettings:
        """Validate the settings of ``layer`` (one OptionError naming every bad setting)."""
        if padding_mode != "zeros":
            raise OptionError(
                f"{layer} supports padding_mode='zeros' only, got padding_mode={padding_mode!r}; pad the input "
                "yourself (torch.nn.functional.pad with that mode) and use padding=0, or keep this layer in float"
            )
        problems: list[str] = []
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.append(f"{name} must be a positive int, got {v!r}")
        if not problems and (in_channels % groups or out_channels % groups):
            problems.append(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        kernel = _pair(kernel_size, "kernel_size", 1, problems)
        stride_ = _pair(stride, "stride", 1, problems)
        dilation_ = _pair(dilation, "dilation", 1, problems)
        pad: Pair | str = (0, 0)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                problems.append(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
            elif padding == "same" and stride_ != (1, 1):
                problems.append(f"padding='same' needs stride=1, got stride={stride!r}; give padding as ints")
            elif padding == "same":
                pad = "same"
        else:
            pad = _pair(padding, "padding", 0, problems)
        if problems:
            raise OptionError(f"{layer}: " + "; ".join(problems))
        return cls(in_channels, out_channels, kernel, stride_, pad, dilation_, groups)

    @staticmethod
    def kwargs_of(module: nn.Module, layer: str) -> dict[str, Any]:
        """Constructor arguments of a ``torch.nn.Conv2d`` (raises InputTypeError for anything else)."""
        if not isinstance(module, nn.Conv2d):
            raise InputTypeError(f"{layer}.from_float expects a torch.nn.Conv2d, got {type(module).__name__}")
        return {
            "in_channels": module.in_channels, "out_channels": module.out_channels,
            "kernel_size": module.kernel_size, "stride": module.stride, "padding": module.padding,
            "dilation": module.dilation, "groups": module.groups, "bias": module.bias is not None,
            "padding_mode": module.padding_mode,
        }

    def kwargs(self) -> dict[str, Any]:
        """The constructor arguments these settings came from, as JSON values.

        Example:
            >>> ConvSettings.build("C", 3, 8, 3, padding=1).kwargs()["padding"]
            [1, 1]
        """
        pad = self.padding if isinstance(self.padding, str) else list(self.padding)
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": pad,
                "dilation": list(self.dilation), "groups": self.groups}

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """``(out_channels, in_channels // groups, kh, kw)``."""
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def pads(self) -> tuple[int, int, int, int]:
        """Explicit ``(left, right, top, bottom)`` zero padding, as torch pads for ``'same'``."""
        if isinstance(self.padding, tuple):
            ph, pw = self.padding
            return (pw, pw, ph, ph)
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return (tw // 2, tw - tw // 2, th // 2, th - th // 2)

    def output_size(self, h: int, w: int) -> Pair:
        """Spatial size of the output for an ``h x w`` input."""
        left, right, top, bottom = self.pads()
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        return ((h + top + bottom - dh * (kh - 1) - 1) // sh + 1, (w + left + right - dw * (kw - 1) - 1) // sw + 1)

    def repr(self) -> str:
        """The settings as ``extra_repr`` text."""
        pad = repr(self.padding) if isinstance(self.padding, str) else self.padding
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={pad}, dilation={self.dilation}, groups={self.groups}")
