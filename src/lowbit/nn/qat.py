"""Quantization-aware training layers: float weights seen through learnable fake quantizers.

``QATLinear`` / ``QATConv2d`` keep the float weight and bias as Parameters, a
per-output-channel weight :class:`~lowbit.nn.FakeQuantize` and, optionally, a
per-tensor input-activation one. After training, :meth:`to_quantized` turns
the layer into a :class:`~lowbit.nn.WeightOnlyLinear` / ``Conv2d`` with the
learned weight scales (the weight is bit-exact with the QAT forward's; the
outputs agree up to float reassociation), or into an
:class:`~lowbit.nn.Int8Linear` / ``Conv2d`` with the learned static activation
scale when ``act_qtype="int8"``.

Example:
    >>> import torch, lowbit.nn as lnn
    >>> _ = torch.manual_seed(0)
    >>> qat = lnn.QATLinear.from_float(torch.nn.Linear(16, 4), weight_qtype="int4")
    >>> x = torch.randn(8, 16)
    >>> q = qat.to_quantized()
    >>> type(q).__name__, bool(torch.equal(q.dequantized_weight(), qat.weight_fake_quant(qat.weight)))
    ('WeightOnlyLinear', True)
    >>> bool(torch.allclose(q(x), qat(x), atol=1e-5))
    True
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from lowbit._deprecation import warn_renamed
from lowbit.core import quantize
from lowbit.errors import InputTypeError, NotCalibratedError, OptionError, error_context
from lowbit.formats import QType
from lowbit.granularity import PerChannel
from lowbit.nn._conv import ConvSettings
from lowbit.nn._util import check_float_input, check_sizes
from lowbit.nn.fake_quant import FakeQuantize
from lowbit.nn.int8 import Int8Conv2d, Int8Linear
from lowbit.nn.weight_only import WeightOnlyConv2d, WeightOnlyLinear

__all__ = ["QATLinear", "QATConv2d"]

_M = TypeVar("_M", bound=nn.Module)


class _QATBase(nn.Module):
    """Parameters, fake quantizers and conversion shared by the QAT layers."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    act_fake_quant: FakeQuantize | None

    def _init_params(self, weight_shape: tuple[int, ...], bias: bool, weight_qtype: str | QType,
                     act_qtype: str | QType | None, method: str, init: str | None) -> None:
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(weight_shape[0])) if bias else None
        fan_in = math.prod(weight_shape[1:])
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # torch.nn.Linear / Conv2d default
        if self.bias is not None:
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)
        if init is not None:
            warn_renamed(f"{type(self).__name__}(init=...)", f"{type(self).__name__}(method=...)")
            method = init
        self.weight_fake_quant = FakeQuantize(weight_qtype, axis=0, channels=weight_shape[0], method=method)
        self.act_fake_quant = None if act_qtype is None else FakeQuantize(act_qtype, method=method)

    def _copy_from(self, module: Any) -> None:
        with torch.no_grad():
            self.weight.copy_(module.weight.detach())
            if self.bias is not None:
                self.bias.copy_(module.bias.detach())
            self.weight_fake_quant.initialize_(self.weight)

    def _quantized_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_float_input(x, type(self).__name__)
        xq = x if self.act_fake_quant is None else self.act_fake_quant(x)
        return xq, self.weight_fake_quant(self.weight).to(x.dtype)

    def _weight_codes(self) -> tuple[Any, torch.Tensor]:
        """QTensor of the weight with the learned per-channel scales, and those scales."""
        fq = self.weight_fake_quant
        if not bool(fq.initialized):
            fq.initialize_(self.weight.detach())
        scale = fq.effective_scale()
        with error_context(f"{type(self).__name__}.to_quantized weight {tuple(self.weight.shape)}"):
            qt = quantize(self.weight.detach().float(), fq.qtype, granularity=PerChannel(0), symmetric=True,
                          scale=scale.numpy())
        return qt, scale

    def _use_int8(self, weight_only: bool) -> bool:
        act = self.act_fake_quant
        if weight_only or act is None or not act.enabled:
            return False
        if act.qtype.name != "int8":
            raise OptionError(
                f"{type(self).__name__}.to_quantized makes integer layers for act_qtype='int8' only, got "
                f"{act.qtype.name}; train with act_qtype='int8' or call to_quantized(weight_only=True)"
            )
        if not bool(act.initialized):
            raise NotCalibratedError(
                f"{type(self).__name__} has no activation scale yet; run at least one forward pass first"
            )
        return True

    def _fill(self, target: _M, int8: bool) -> _M:
        qt, scale = self._weight_codes()
        t: Any = target
        if int8:
            t.set_weight(torch.from_numpy(qt.codes.reshape(qt.shape[0], -1)), scale)
        else:
            t._store(qt)
        if self.bias is not None:
            t.bias.data.copy_(self.bias.detach())
        return target

    def _act_kwargs(self) -> dict[str, Any]:
        act: Any = self.act_fake_quant  # present: checked by _use_int8
        return {"act_scale": float(act.effective_scale())}

    def _qat_repr(self) -> str:
        act = "None" if self.act_fake_quant is None else self.act_fake_quant.qtype.name
        return f"weight_qtype={self.weight_fake_quant.qtype.name}, act_qtype={act}"


class QATLinear(_QATBase):
    """Linear layer trained through fake quantizers (LSQ scales).

    Args:
        in_features, out_features, bias: as ``torch.nn.Linear`` (same default init).
        weight_qtype: signed 2..8-bit format of the weight (per output channel).
        act_qtype: format of the input activations (per tensor), or None.
        method: scale initialisation of the fake quantizers: ``"lsq"`` or a range
            estimator name (see :class:`FakeQuantize`).
        init: deprecated spelling of ``method``.

    Example:
        >>> import torch, lowbit.nn as lnn
        >>> m = lnn.QATLinear(8, 2, weight_qtype="int2", act_qtype="int8")
        >>> m(torch.randn(3, 8)).shape
        torch.Size([3, 2])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, weight_qtype: str | QType = "int4",
                 act_qtype: str | QType | None = None, method: str = "lsq", init: str | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = check_sizes(type(self).__name__, in_features=in_features,
                                                          out_features=out_features)
        self._init_params((self.out_features, self.in_features), bias, weight_qtype, act_qtype, method, init)

    @classmethod
    def from_float(cls, module: nn.Module, weight_qtype: str | QType = "int4", act_qtype: str | QType | None = None,
                   method: str = "lsq", init: str | None = None) -> QATLinear:
        """Copy a ``torch.nn.Linear`` and initialise the weight scales from its weight.

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> lnn.QATLinear.from_float(torch.nn.Linear(4, 2), "int3").weight_fake_quant.scale.shape
            torch.Size([2])
        """
        if not isinstance(module, nn.Linear):
            raise InputTypeError(f"{cls.__name__}.from_float expects a torch.nn.Linear, got {type(module).__name__}")
        new = cls(module.in_features, module.out_features, module.bias is not None, weight_qtype=weight_qtype,
                  act_qtype=act_qtype, method=method, init=init)
        new._copy_from(module)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``F.linear`` of the fake-quantized input and weight."""
        xq, w = self._quantized_inputs(x)
        return F.linear(xq, w, None if self.bias is None else self.bias.to(x.dtype))

    def to_quantized(self, weight_only: bool = False) -> WeightOnlyLinear | Int8Linear:
        """Convert with the learned scales: Int8Linear when ``act_qtype="int8"``, else WeightOnlyLinear.

        Raises:
            OptionError: an activation format other than int8 (use ``weight_only=True``).
            NotCalibratedError: the activation quantizer has not seen data yet.

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> m = lnn.QATLinear(8, 2, act_qtype="int8")
            >>> _ = m(torch.randn(4, 8))
            >>> type(m.to_quantized()).__name__, type(m.to_quantized(weight_only=True)).__name__
            ('Int8Linear', 'WeightOnlyLinear')
        """
        bias = self.bias is not None
        if self._use_int8(weight_only):
            return self._fill(Int8Linear(self.in_features, self.out_features, bias, **self._act_kwargs()), True)
        target = WeightOnlyLinear(self.in_features, self.out_features, bias, qtype=self.weight_fake_quant.qtype,
                                  granularity=PerChannel(0), symmetric=True)
        return self._fill(target, False)

    def extra_repr(self) -> str:
        """Sizes and formats."""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"{self._qat_repr()}")


class QATConv2d(_QATBase):
    """2-d convolution trained through fake quantizers (LSQ scales).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
            bias, padding_mode: as ``torch.nn.Conv2d`` (``padding_mode="zeros"`` only).
        weight_qtype, act_qtype, method, init: as :class:`QATLinear`.

    Example:
        >>> import torch, lowbit.nn as lnn
        >>> m = lnn.QATConv2d.from_float(torch.nn.Conv2d(3, 4, 3, padding=1), weight_qtype="int4")
        >>> m(torch.randn(1, 3, 6, 6)).shape
        torch.Size([1, 4, 6, 6])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *,
                 weight_qtype: str | QType = "int4", act_qtype: str | QType | None = None, method: str = "lsq",
                 init: str | None = None) -> None:
        super().__init__()
        self.conv = ConvSettings.build(type(self).__name__, in_channels, out_channels, kernel_size, stride, padding,
                                       dilation, groups, padding_mode)
        self._init_params(self.conv.weight_shape, bias, weight_qtype, act_qtype, method, init)

    @classmethod
    def from_float(cls, module: nn.Module, weight_qtype: str | QType = "int4", act_qtype: str | QType | None = None,
                   method: str = "lsq", init: str | None = None) -> QATConv2d:
        """Copy a ``torch.nn.Conv2d`` and initialise the weight scales from its weight.

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> lnn.QATConv2d.from_float(torch.nn.Conv2d(2, 6, 1), "int8").weight_fake_quant.channels
            6
        """
        new = cls(**ConvSettings.kwargs_of(module, cls.__name__), weight_qtype=weight_qtype, act_qtype=act_qtype,
                  method=method, init=init)
        new._copy_from(module)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``F.conv2d`` of the fake-quantized input and weight."""
        xq, w = self._quantized_inputs(x)
        c = self.conv
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.conv2d(xq, w, bias, c.stride, c.padding, c.dilation, c.groups)

    def to_quantized(self, weight_only: bool = False) -> WeightOnlyConv2d | Int8Conv2d:
        """Convert with the learned scales: Int8Conv2d when ``act_qtype="int8"``, else WeightOnlyConv2d.

        Raises:
            OptionError: int8 conversion of a grouped convolution, or an activation
                format other than int8 (use ``weight_only=True``).

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> type(lnn.QATConv2d(2, 2, 3).to_quantized()).__name__
            'WeightOnlyConv2d'
        """
        c = self.conv
        kw: dict[str, Any] = {
            "in_channels": c.in_channels, "out_channels": c.out_channels, "kernel_size": c.kernel_size,
            "stride": c.stride, "padding": c.padding, "dilation": c.dilation, "groups": c.groups,
            "bias": self.bias is not None,
        }
        if self._use_int8(weight_only):
            return self._fill(Int8Conv2d(**kw, **self._act_kwargs()), True)
        target = WeightOnlyConv2d(**kw, qtype=self.weight_fake_quant.qtype, granularity=PerChannel(0), symmetric=True)
        return self._fill(target, False)

    def extra_repr(self) -> str:
        """Convolution settings and formats."""
        return f"{self.conv.repr()}, bias={self.bias is not None}, {self._qat_repr()}"
