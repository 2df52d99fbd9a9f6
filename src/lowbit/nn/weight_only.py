"""Weight-only quantized Linear and Conv2d: packed low-bit weights, float compute.

The weight is stored as a lowbit QTensor's packed storage (see
:class:`~lowbit.nn._packed.PackedWeightModule`).  ``WeightOnlyLinear`` multiplies
a few input rows (at most 8: decoding and batch-1 generation) straight from the
stored 4- or 8-bit codes with fused kernels that never build the float weight
(:mod:`lowbit.nn._fused`); otherwise, and for convolutions, each forward
dequantizes the weight to float32 in one fused pass, casts it to the input's
dtype and calls ``F.linear`` / ``F.conv2d``. The bias stays float.

Example:
    >>> import torch, lowbit.nn as lnn
    >>> _ = torch.manual_seed(0)
    >>> lin = torch.nn.Linear(64, 16)
    >>> q = lnn.WeightOnlyLinear.from_float(lin, "int4")
    >>> x = torch.randn(3, 64)
    >>> bool(torch.nn.functional.cosine_similarity(q(x).flatten(), lin(x).flatten(), dim=0) > 0.99)
    True
    >>> q.nbytes < 64 * 16 * 4 / 4
    True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lowbit.errors import InputTypeError, OptionError
from lowbit.formats import QType
from lowbit.granularity import Granularity
from lowbit.nn._conv import ConvSettings
from lowbit.nn._fused import ACTIVATIONS, fused_linear
from lowbit.nn._packed import PackedWeightModule
from lowbit.nn._smooth import SmoothedInput
from lowbit.nn._util import check_float_input, check_sizes

__all__ = ["WeightOnlyLinear", "WeightOnlyConv2d"]


class WeightOnlyLinear(SmoothedInput, PackedWeightModule):
    """``y = x @ dequantize(W).T + b`` with W stored packed (int8, int4, uint3, ...).

    Args:
        in_features, out_features, bias: as ``torch.nn.Linear``.
        qtype: weight format name or QType (default ``"int8"``).
        granularity: ``PerChannel(0)`` (default, one scale per output row),
            ``PerTensor()``, ``PerGroup(size)`` (groups along the input) or its
            string (``"group:64"``).
        symmetric: scale-only (default for signed formats) or affine.
        scale_format: how the scales are stored (``"float32"`` default; ``"float16"``,
            ``"double8"``, ``"kquant6"`` ...; MX formats use ``"e8m0"``, and their default
            granularity is ``PerGroup(32)``); the buffers hold the stored arrays.
        smooth: keep a per-input-channel divisor ``smooth_scale`` (AWQ): the layer
            computes ``(x / smooth_scale) @ dequantize(W).T + b``.
        activations: ``"float"`` (default: the exact result above) or ``"int8"``: for at most 4
            input rows (decoding), quantize the input to int8 per block (the weight's
            group, or 256 columns of a per-channel row) and sum exact int32 products, as
            llama.cpp's Q8 blocks and ONNX Runtime's accuracy level 4 do: faster, an approximation
            (each input value moves by at most its block's ``max|x| / 254``). Integer 4- and 8-bit
            formats only; more rows and non-finite inputs take the float path.

    Raises:
        OptionError: an unknown ``activations``, or ``"int8"`` with a format it does not serve.

    Example:
        >>> import torch, lowbit.nn as lnn
        >>> m = lnn.WeightOnlyLinear(8, 4, qtype="int4", granularity="group:4")
        >>> m.weight_data.numel(), tuple(m.weight_scale.shape)
        (16, (4, 2))
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, qtype: str | QType = "int8",
                 granularity: Granularity | str | None = None, symmetric: bool | None = None,
                 smooth: bool = False, scale_format: str | None = None,
                 zero_point: str = "int", activations: str = "float") -> None:
        super().__init__()
        self.in_features, self.out_features = check_sizes(type(self).__name__, in_features=in_features,
                                                          out_features=out_features)
        self._init_weight((self.out_features, self.in_features), qtype, granularity, symmetric, scale_format,
                          zero_point)
        self._init_smooth(self.in_features, smooth)
        self._init_bias(self.out_features, bias)
        self.activations = _check_activations(activations, self.qtype)

    @classmethod
    def from_float(cls, module: nn.Module, qtype: str | QType = "int8", granularity: Granularity | str | None = None,
                   symmetric: bool | None = None, method: Any = "minmax", *, scale_format: str | None = None,
                   method_options: dict[str, Any] | None = None, zero_point: str = "int",
                   activations: str = "float", **deprecated: Any) -> WeightOnlyLinear:
        """Quantize a ``torch.nn.Linear``'s weight with :func:`lowbit.quantize`.

        Args:
            module: the float layer (its weight is read as float32).
            qtype, granularity, symmetric, scale_format, activations: as in the constructor.
            method, method_options: how the clipping range is estimated (``"minmax"``,
                ``"mse"``, ``"percentile"``, ... or an estimator; see :mod:`lowbit.calibration`)
                and the estimator's options (``{"percentile": 99.9}``).
            **deprecated: estimator options as keywords, the old spelling of ``method_options``.

        Raises:
            InputTypeError: ``module`` is not a Linear. QTypeError, GranularityError,
                OptionError: bad format, granularity or method (the message names the layer).

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> lnn.WeightOnlyLinear.from_float(torch.nn.Linear(8, 2), "uint4", "group:4").extra_repr()
            'in_features=8, out_features=2, bias=True, qtype=uint4, granularity=group:4, symmetric=False'
        """
        if not isinstance(module, nn.Linear):
            raise InputTypeError(f"{cls.__name__}.from_float expects a torch.nn.Linear, got {type(module).__name__}")
        new = cls(module.in_features, module.out_features, module.bias is not None, qtype=qtype,
                  granularity=granularity, symmetric=symmetric, scale_format=scale_format, zero_point=zero_point,
                  activations=activations)
        new._quantize_from(module, method, method_options, deprecated)
        return new

    def config(self) -> dict[str, Any]:
        """Constructor keywords (JSON values) that rebuild an empty layer of this configuration
        (``activations`` only when it is not the default ``"float"``).

        Example:
            >>> import lowbit.nn as lnn
            >>> lnn.WeightOnlyLinear(8, 2, qtype="nf4", granularity="group:4").config()["granularity"]
            'group:4'
        """
        extra = {} if self.activations == "float" else {"activations": self.activations}
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None,
                "smooth": self.smooth_scale is not None, **self._weight_config(), **extra}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ dequantize(W).T + b`` in ``x``'s dtype: fused from the codes for a few rows (float32,
        float16 or bfloat16 inputs, no gradient), else with the dequantized weight cast to ``x.dtype``."""
        check_float_input(x, type(self).__name__)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        xs = self._smooth(x)
        if x.dtype != torch.float64 and not (torch.is_grad_enabled() and xs.requires_grad):
            y = fused_linear(self, xs.reshape(-1, self.in_features))
            if y is not None:
                y = y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
                return y if bias is None else y + bias
        return F.linear(xs, self.dequantized_weight().to(x.dtype), bias)

    def extra_repr(self) -> str:
        """Layer sizes and the weight format."""
        acts = "" if self.activations == "float" else f", activations={self.activations}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"{self._weight_repr()}{self._smooth_repr()}{acts}")


def _check_activations(activations: Any, qtype: QType) -> str:
    """The validated ``activations`` option of a WeightOnlyLinear."""
    if activations not in ACTIVATIONS:
        raise OptionError(f"WeightOnlyLinear: activations={activations!r} is not one of {list(ACTIVATIONS)}")
    if activations == "int8" and (qtype.is_grid or qtype.bits not in (4, 8)):
        raise OptionError(f"WeightOnlyLinear: activations='int8' needs integer 4- or 8-bit weight codes "
                          f"(int4, uint4, int8, uint8), got {qtype.name}; use activations='float'")
    return str(activations)


class WeightOnlyConv2d(PackedWeightModule):
    """2-d convolution with a packed low-bit weight (any stride/padding/dilation/groups).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
            bias: as ``torch.nn.Conv2d``.
        padding_mode: only ``"zeros"`` (others raise OptionError).
        qtype, granularity, symmetric, scale_format: as :class:`WeightOnlyLinear`; the
            default granularity ``PerChannel(0)`` gives one scale per output channel.

    Example:
        >>> import torch, lowbit.nn as lnn
        >>> conv = lnn.WeightOnlyConv2d.from_float(torch.nn.Conv2d(3, 8, 3, padding=1), "int4")
        >>> conv(torch.randn(1, 3, 5, 5)).shape
        torch.Size([1, 8, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *,
                 qtype: str | QType = "int8", granularity: Granularity | str | None = None,
                 symmetric: bool | None = None, scale_format: str | None = None,
                 zero_point: str = "int") -> None:
        super().__init__()
        self.conv = ConvSettings.build(type(self).__name__, in_channels, out_channels, kernel_size, stride,
                                       padding, dilation, groups, padding_mode)
        self._init_weight(self.conv.weight_shape, qtype, granularity, symmetric, scale_format,
                          zero_point)
        self._init_bias(out_channels, bias)

    @classmethod
    def from_float(cls, module: nn.Module, qtype: str | QType = "int8", granularity: Granularity | str | None = None,
                   symmetric: bool | None = None, method: Any = "minmax", *, scale_format: str | None = None,
                   method_options: dict[str, Any] | None = None, zero_point: str = "int",
                   **deprecated: Any) -> WeightOnlyConv2d:
        """Quantize a ``torch.nn.Conv2d``'s weight (arguments as :meth:`WeightOnlyLinear.from_float`).

        Raises:
            InputTypeError: not a Conv2d. OptionError: padding_mode other than "zeros".

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> lnn.WeightOnlyConv2d.from_float(torch.nn.Conv2d(4, 4, 3, groups=2), "int8").weight_shape
            (4, 2, 3, 3)
        """
        new = cls(**ConvSettings.kwargs_of(module, cls.__name__), qtype=qtype, granularity=granularity,
                  symmetric=symmetric, scale_format=scale_format, zero_point=zero_point)
        new._quantize_from(module, method, method_options, deprecated)
        return new

    def config(self) -> dict[str, Any]:
        """Constructor keywords (JSON values) that rebuild an empty layer of this configuration.

        Example:
            >>> import lowbit.nn as lnn
            >>> lnn.WeightOnlyConv2d(4, 8, 3, padding=1).config()["kernel_size"]
            [3, 3]
        """
        return {**self.conv.kwargs(), "bias": self.bias is not None, **self._weight_config()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolution with the dequantized weight cast to ``x.dtype``."""
        check_float_input(x, type(self).__name__)
        c = self.conv
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.conv2d(x, self.dequantized_weight().to(x.dtype), bias, c.stride, c.padding, c.dilation, c.groups)

    def extra_repr(self) -> str:
        """Convolution settings and the weight format."""
        return f"{self.conv.repr()}, bias={self.bias is not None}, {self._weight_repr()}"
