"""A module that keeps one weight as a lowbit QTensor's packed storage in buffers (not public).

Buffers (all tensors, so ``torch.load(weights_only=True)`` reads them):

* ``weight_data``: the QTensor's 1-D storage: codes (int8/uint8/int16; uint16
  codes as their int16 bit pattern) or packed bytes (uint8) for other widths;
* the scales *as stored* in the layer's scale format, one buffer per stored
  array named ``weight_`` + its key (:mod:`lowbit.formats.scales`):
  ``weight_scale`` (float32, shaped like the granularity's parameters) for the
  default float32 format; ``weight_scale_f16``, ``weight_scale_bf16`` (bit
  patterns as int16), ``weight_scale_e8m0`` (MX formats), ``weight_scale_codes``
  + ``weight_scale_block_scale`` + ``weight_scale_mean`` (double8),
  ``weight_scale_codes`` + ``weight_scale_super`` (kquant6);
* ``weight_zero_point``: storage dtype, same shape; only for affine formats
  (``None`` when symmetric: the zero point is then fixed by the format); with
  ``zero_point="float"`` the float offsets (float32, or float16 beside float16 scales).

The format, granularity, symmetry, scale format and shape are constructor
arguments, so a freshly built module of the same configuration loads the state
dict; the scales are decoded from the stored buffers on every forward.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from lowbit._arrays import Source
from lowbit.core import dequantize, offset_dtype, quantize
from lowbit.errors import OptionError, error_context
from lowbit.formats import QType, get_qtype
from lowbit.formats.scales import DEFAULT_SCALE_FORMAT, decode_scales, scale_format_for
from lowbit.granularity import Granularity, PerChannel, PerGroup, PerTensor, as_granularity, plan
from lowbit.nn._util import TORCH_STORAGE, DtypeCheckedLoad, from_buffer, to_buffer
from lowbit.qparams import symmetric_divisor
from lowbit.qtensor import QTensor

__all__ = ["PackedWeightModule"]


class PackedWeightModule(DtypeCheckedLoad):
    """Base of the weight-only modules: packed weight buffers, dequantization, ``nbytes``."""

    weight_data: torch.Tensor
    weight_scale: torch.Tensor
    weight_zero_point: torch.Tensor | None
    bias: torch.nn.Parameter | None

    def _init_weight(self, shape: tuple[int, ...], qtype: str | QType, granularity: Granularity | str | None,
                     symmetric: bool | None, scale_format: str | None = None, zero_point: str = "int") -> None:
        name = type(self).__name__
        with error_context(f"{name} weight {shape}"):
            qt = get_qtype(qtype)
            fmt = scale_format_for(qt, scale_format)
            float_zp = _float_zero_point(zero_point, qt, symmetric, fmt.name)
            symmetric = False if float_zp else symmetric
            gran = as_granularity(granularity, PerGroup(qt.block_size) if qt.is_mx else PerChannel(0),
                                  allowed=(PerTensor, PerChannel, PerGroup))
            if (qt.is_grid or qt.is_mx) and symmetric is not None and not symmetric:
                raise OptionError(f"{qt.name} ({qt.kind}) is scale-only; drop symmetric=False or use an integer format")
            sym = (qt.signed or qt.is_grid) if symmetric is None else bool(symmetric)
            layout = plan(gran, shape)
            zero = _fixed_zero_point(qt) if sym else 0
        self.qtype, self.granularity, self.symmetric, self.weight_shape = qt, gran, sym, tuple(shape)
        self.scale_format = fmt.name
        self.zero_point_kind = "float" if float_zp else "int"
        numel = math.prod(shape)
        dtype = torch.uint8 if qt.packed else TORCH_STORAGE[qt.storage_dtype]
        self.register_buffer("weight_data", torch.zeros(qt.packed_nbytes(numel) if qt.packed else numel, dtype=dtype))
        ones = np.ones(layout.param_shape, np.float32)
        for key, arr in fmt.encode(ones, np.dtype(np.float32)).items():  # scale 1 until a weight is stored
            self.register_buffer(f"weight_{key}", _scale_buffer(arr))
        zp_dtype = torch.from_numpy(np.empty(0, offset_dtype(fmt.name, np.float32))).dtype if float_zp \
            else TORCH_STORAGE[qt.storage_dtype]
        zp = None if sym else torch.full(layout.param_shape, zero, dtype=zp_dtype)
        self.register_buffer("weight_zero_point", zp)

    def _scale_keys(self) -> list[str]:
        """Keys of the stored scale arrays of this module's scale format."""
        layout = plan(self.granularity, self.weight_shape)
        return list(scale_format_for(self.qtype, self.scale_format).specs(layout.param_shape, np.dtype(np.float32)))

    def _init_bias(self, size: int, bias: bool) -> None:
        self.bias = torch.nn.Parameter(torch.zeros(size)) if bias else None

    def _quantize_from(self, module: Any, method: Any, method_options: Any, deprecated: dict[str, Any]) -> None:
        """Quantize ``module.weight`` (as float32) into the buffers and copy its bias.

        ``deprecated`` holds estimator options passed as keywords (the old spelling of ``method_options``).
        """
        weight = module.weight.detach().float()
        with error_context(f"{type(self).__name__}.from_float({type(module).__name__}) weight {tuple(weight.shape)}"):
            qt = quantize(weight, self.qtype, granularity=self.granularity, symmetric=self.symmetric,
                          method=method, method_options=method_options, scale_format=self.scale_format,
                          zero_point=None if self.zero_point_kind == "int" else "float", **deprecated)
        self._store(qt)
        if self.bias is not None:
            self.bias.data.copy_(module.bias.detach())

    def _store(self, qt: QTensor) -> None:
        """Copy a QTensor of this module's configuration into the buffers."""
        self.weight_data.copy_(to_buffer(qt.data))
        if self.scale_format == DEFAULT_SCALE_FORMAT:
            self.weight_scale.copy_(torch.from_numpy(np.asarray(qt.scale, np.float32)))
        else:
            for key, arr in qt.stored_scale.items():
                getattr(self, f"weight_{key}").copy_(_scale_buffer(arr))
        if self.weight_zero_point is not None:
            self.weight_zero_point.copy_(to_buffer(qt.zero_point))

    def _zero_point_array(self, param_shape: tuple[int, ...], zp: torch.Tensor | None) -> np.ndarray:
        dt = self.qtype.storage_dtype
        if zp is not None:
            return zp.detach().numpy() if zp.is_floating_point() else from_buffer(zp, dt)
        return np.full(param_shape, _fixed_zero_point(self.qtype), dt)

    def load_qtensor(self, qt: QTensor) -> None:
        """Store a weight quantized elsewhere (GPTQ, HQQ, ...) with this module's exact configuration.

        Raises:
            OptionError: the QTensor's format, granularity, symmetry, scale format or shape
                differs from the module's (the message lists each difference).

        Example:
            >>> import torch, lowbit, lowbit.nn as lnn
            >>> layer = lnn.WeightOnlyLinear.from_float(torch.nn.Linear(8, 2), "int4")
            >>> layer.load_qtensor(lowbit.quantize(torch.ones(2, 8), "int4", granularity=lowbit.PerChannel(0)))
            >>> layer.dequantized_weight().tolist()[0][:2]
            [1.0, 1.0]
        """
        mine = (self.qtype.name, str(self.granularity), self.symmetric, self.scale_format, self.weight_shape,
                self.zero_point_kind)
        theirs = (qt.qtype.name, str(qt.granularity), qt.symmetric, qt.scale_format, tuple(qt.shape),
                  "float" if qt.float_zero_point else "int")
        if mine != theirs:
            fields = ("qtype", "granularity", "symmetric", "scale_format", "shape", "zero_point")
            diffs = [f"{f} {b!r} (module has {a!r})" for f, a, b in zip(fields, mine, theirs, strict=True) if a != b]
            raise OptionError(f"{type(self).__name__}.load_qtensor: " + "; ".join(diffs))
        self._store(qt)

    def weight_qtensor(self) -> QTensor:
        """The stored weight as a lowbit QTensor (shares memory with the buffers).

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> m = lnn.WeightOnlyLinear.from_float(torch.nn.Linear(8, 2), "int4")
            >>> m.weight_qtensor().codes.shape
            (2, 8)
        """
        data_dtype = np.dtype(np.uint8) if self.qtype.packed else self.qtype.storage_dtype
        if self.scale_format == DEFAULT_SCALE_FORMAT:
            scale, arrays = self.weight_scale.detach().float().numpy(), None
        else:
            arrays = {k: _scale_array(getattr(self, f"weight_{k}")) for k in self._scale_keys()}
            param_shape = plan(self.granularity, self.weight_shape).param_shape
            fmt = scale_format_for(self.qtype, self.scale_format)
            scale = decode_scales(arrays, self.qtype, fmt, param_shape, np.dtype(np.float32))
        return QTensor(from_buffer(self.weight_data, data_dtype), scale,
                       self._zero_point_array(scale.shape, self.weight_zero_point), self.qtype, self.granularity,
                       self.symmetric, Source("torch", "float32", self.weight_shape), self.scale_format, arrays)

    def _weight_config(self) -> dict[str, Any]:
        """The weight's format settings, as constructor keywords (JSON values)."""
        float_zp = {"zero_point": "float"} if self.zero_point_kind == "float" else {}
        return {"qtype": self.qtype.name, "granularity": str(self.granularity), "symmetric": self.symmetric,
                "scale_format": self.scale_format, **float_zp}

    def config(self) -> dict[str, Any]:
        """Constructor keywords (JSON values) that rebuild an empty layer of this configuration.

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> m = lnn.WeightOnlyLinear(8, 2, qtype="int4", granularity="group:4")
            >>> type(m)(**m.config()).config() == m.config()
            True
        """
        raise NotImplementedError

    def dequantized_weight(self) -> torch.Tensor:
        """The weight as float32: ``(code - zero_point) * scale`` in one fused pass.

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> m = lnn.WeightOnlyLinear.from_float(torch.nn.Linear(8, 2), "int8")
            >>> m.dequantized_weight().dtype, m.dequantized_weight().shape
            (torch.float32, torch.Size([2, 8]))
        """
        return dequantize(self.weight_qtensor())

    @property
    def nbytes(self) -> int:
        """Bytes held: packed weight + stored scales (+ zero points when affine) + bias."""
        return sum(t.numel() * t.element_size() for t in (*self.buffers(recurse=False), *self.parameters(False)))

    def _weight_repr(self) -> str:
        text = f"qtype={self.qtype.name}, granularity={self.granularity}, symmetric={self.symmetric}"
        default = self.qtype.scale_format or DEFAULT_SCALE_FORMAT
        text = text if self.scale_format == default else f"{text}, scale_format={self.scale_format}"
        return f"{text}, zero_point=float" if self.zero_point_kind == "float" else text


def _float_zero_point(zero_point: str, qt: QType, symmetric: bool | None, scale_format: str) -> bool:
    """Whether a layer keeps float zero points (``"float"``) or integer ones (``"int"``); refuses bad combinations."""
    from lowbit.core import check_float_zero_point

    return check_float_zero_point(zero_point, qt, symmetric, scale_format)


def _fixed_zero_point(qt: QType) -> int:
    """The zero point of symmetric use: 0 for grid formats (their codes index values), else the format's."""
    return 0 if qt.is_grid else symmetric_divisor(qt)[0]


def _scale_buffer(arr: np.ndarray) -> torch.Tensor:
    """A buffer holding one stored scale array (float arrays as they are; integers via :func:`to_buffer`)."""
    arr = np.asarray(arr)
    if arr.dtype.kind == "f":
        return torch.from_numpy(arr.copy())
    return to_buffer(arr).clone()


def _scale_array(t: torch.Tensor) -> np.ndarray:
    """The NumPy stored scale array behind a buffer (uint16 bfloat16 bit patterns travel as int16)."""
    a = t.detach().contiguous().numpy()
    return a.view(np.uint16) if a.dtype == np.int16 else a
