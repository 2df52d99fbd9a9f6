"""W8A8 modules: int8 weights, int8 activations, int32 accumulation.

For an input flattened to ``(M, K)`` and a weight of ``N`` outputs:

* weights: lowbit ``int8`` (narrow, -127..127), symmetric, one scale per output
  channel (or per tensor), stored ``(N, K)`` contiguous (buffer ``weight``);
* activations: ``x_q = clamp(round_half_even(x * (1 / s_x)), -127, 127)`` with
  ``s_x`` static (a calibrated float) or dynamic: ``absmax / 127`` of the whole
  input (``PerTensor()``, ``"tensor"``) or of each row (``PerToken()``, ``"token"``); an all-zero input or row
  gets ``s_x = 1``; NaN/Inf inputs raise NonFiniteError;
* ``acc = x_q @ w_q.T`` exactly in int32, on the fastest exact path of the machine
  (``torch._int_mm`` where the CPU has int8 dot products, else fp32 GEMMs over chunks of
  1024 features, whose sums stay exact; chosen once per process, see
  :mod:`lowbit.nn._int8mm`), ``y = acc.float() * (s_x * s_w) + bias``.

Example:
    >>> import torch, lowbit.nn as lnn
    >>> _ = torch.manual_seed(0)
    >>> lin = torch.nn.Linear(64, 32)
    >>> q = lnn.Int8Linear.from_float(lin, act_granularity="token")
    >>> x = torch.randn(4, 64)
    >>> bool(torch.nn.functional.cosine_similarity(q(x).flatten(), lin(x).flatten(), dim=0) > 0.999)
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lowbit._arrays import Source
from lowbit._deprecation import warn_renamed
from lowbit.core import quantize
from lowbit.errors import GranularityError, InputTypeError, NonFiniteError, OptionError, error_context
from lowbit.formats import get_qtype
from lowbit.granularity import Granularity, PerChannel, PerTensor, PerToken, as_granularity
from lowbit.nn._conv import ConvSettings
from lowbit.nn._int8mm import int8_mm
from lowbit.nn._smooth import SmoothedInput
from lowbit.nn._util import DtypeCheckedLoad, check_float_input, check_sizes, tensor_bytes
from lowbit.qtensor import QTensor

__all__ = ["Int8Linear", "Int8Conv2d", "quantize_activations", "int8_matmul"]

QMAX = 127


def _act_granularity(value: Granularity | str | None, what: str = "act_granularity") -> Granularity:
    """``PerTensor()`` (also for None) or ``PerToken()`` from an object or its string; GranularityError otherwise."""
    return as_granularity(value, PerTensor(), allowed=(PerTensor, PerToken), what=what)


def _weight_granularity(value: Granularity | str | None, layer: str) -> Granularity:
    """``PerChannel(0)`` (also for None) or ``PerTensor()`` for int8 weights; GranularityError otherwise."""
    gran = as_granularity(value, PerChannel(0), allowed=(PerTensor, PerChannel), what=f"{layer} weight_granularity")
    if isinstance(gran, PerChannel) and gran.axis != 0:
        raise GranularityError(f"{layer} weight_granularity must be PerChannel(0) or PerTensor(), got {gran}")
    return gran


def quantize_activations(x: torch.Tensor, scale: float | torch.Tensor | None = None,
                         granularity: Granularity | str = "tensor") -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes of a 2-d float input, with a static or dynamic scale.

    Args:
        x: float tensor ``(M, K)``.
        scale: a static scale (one finite float > 0, or a one-element tensor), or None
            for a dynamic one (absmax / 127).
        granularity: ``PerTensor()`` / ``"tensor"`` (one scale) or ``PerToken()`` /
            ``"token"`` (one per row; dynamic only).

    Returns:
        ``(codes, scale)``: int8 codes ``(M, K)`` in -127..127 and the float32
        scale, shaped ``()`` or ``(M, 1)``.

    Raises:
        NonFiniteError: NaN or Inf in ``x``. GranularityError: bad granularity.
        OptionError: a static scale that is not one finite number > 0 (0, negative, NaN, Inf,
            several values or not a number).

    Example:
        >>> import torch
        >>> q, s = quantize_activations(torch.tensor([[0.5, -1.0], [0.25, 0.0]]), granularity="token")
        >>> q.tolist(), s.flatten().tolist()
        ([[64, -127], [127, 0]], [0.007874015718698502, 0.0019685039296746254])
    """
    per_token = isinstance(_act_granularity(granularity, "granularity"), PerToken)
    xf = x.float()
    if xf.numel() == 0:
        amax = torch.zeros((xf.shape[0], 1) if per_token else ())
    else:
        amax = xf.abs().amax(dim=1, keepdim=True) if per_token else xf.abs().amax()
    if not bool(torch.isfinite(amax).all()):
        raise NonFiniteError(f"the int8 activation input {tuple(x.shape)} holds NaN or Inf values")
    if scale is None:
        s = amax / QMAX
        s = torch.where(s > 0, s, torch.ones_like(s))
    elif per_token:
        raise GranularityError("a static act_scale is one scale per tensor; use act_granularity='tensor'")
    else:
        s = _checked_scale(scale)
    scaled = xf * (1.0 / s)  # the one float temporary: rounded and clamped in place
    codes = scaled.round_().clamp_(-QMAX, QMAX).to(torch.int8)
    return codes, s


def _checked_scale(scale: Any) -> torch.Tensor:
    """A static activation scale as a float32 0-d tensor; OptionError unless it is one finite number > 0."""
    try:
        s = torch.as_tensor(scale, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise OptionError(f"the static activation scale must be a finite float > 0, got {scale!r}") from None
    if s.numel() != 1:
        raise OptionError(f"the static activation scale must be one number, got shape {tuple(s.shape)}; "
                          "use granularity='token' with scale=None for one scale per row")
    s = s.reshape(())
    if not bool(torch.isfinite(s)) or not bool(s > 0):
        raise OptionError(f"the static activation scale must be a finite float > 0, got {float(s)}; "
                          "calibrate the input range (a constant-zero input takes scale=None)")
    if not bool(torch.isfinite(1.0 / s)):
        raise OptionError(f"the static activation scale {float(s)} is too small: its reciprocal overflows float32 "
                          f"(use a scale >= {float(torch.finfo(torch.float32).tiny)})")
    return s


def int8_matmul(x_q: torch.Tensor, w_q_t: torch.Tensor) -> torch.Tensor:
    """Exact int32 product of int8 ``(M, K)`` codes and int8 ``(K, N)`` codes, on the machine's fastest
    exact path (:mod:`lowbit.nn._int8mm`).

    Example:
        >>> import torch
        >>> a = torch.tensor([[127, -127]], dtype=torch.int8)
        >>> int8_matmul(a, torch.tensor([[127], [1]], dtype=torch.int8)).tolist()
        [[16002]]
    """
    return int8_mm(x_q, w_q_t.t())


def _static_scale(act_scale: Any, layer: str) -> float | None:
    if act_scale is None:
        return None
    try:
        value = float(act_scale)
    except (TypeError, ValueError):
        raise OptionError(f"{layer} act_scale must be a positive float or None, got {act_scale!r}") from None
    if not value > 0 or value == float("inf"):
        raise OptionError(f"{layer} act_scale must be finite and > 0, got {value}; calibrate the input range first")
    return value


class _Int8Base(DtypeCheckedLoad):
    """Buffers and the integer GEMM shared by Int8Linear and Int8Conv2d."""

    weight: torch.Tensor
    weight_scale: torch.Tensor
    act_scale: torch.Tensor | None

    def _init_int8(self, n_out: int, k: int, bias: bool, act_scale: Any, act_gran: Granularity | str | None,
                   weight_gran: Granularity | str | None) -> None:
        layer = type(self).__name__
        act = _act_granularity(act_gran, f"{layer} act_granularity")
        static = _static_scale(act_scale, layer)
        if static is not None and isinstance(act, PerToken):
            raise GranularityError(f"{layer}: a static act_scale is one scale per tensor; use act_granularity='tensor'")
        gran = _weight_granularity(weight_gran, layer)
        self.act_granularity, self.weight_granularity = act, gran
        self.register_buffer("weight", torch.zeros((n_out, k), dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones((n_out,) if isinstance(gran, PerChannel) else ()))
        self.register_buffer("act_scale", None if static is None else torch.tensor(static, dtype=torch.float32))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    def _quantize_weight(self, module: Any, column_scale: torch.Tensor | None = None) -> None:
        weight = module.weight.detach().float()
        if column_scale is not None:  # SmoothQuant: W diag(s)
            weight = weight * column_scale
        with error_context(f"{type(self).__name__}.from_float({type(module).__name__}) weight {tuple(weight.shape)}"):
            qt = quantize(weight, "int8", granularity=self.weight_granularity, symmetric=True)
        self.set_weight(torch.from_numpy(qt.codes.reshape(weight.shape[0], -1)), torch.from_numpy(qt.scale))
        if self.bias is not None:
            self.bias.data.copy_(module.bias.detach())

    def set_weight(self, codes: torch.Tensor, scale: torch.Tensor) -> None:
        """Store int8 weight codes ``(N, K)`` (any signed format of <= 8 bits) and their scales.

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> m = lnn.Int8Linear(2, 1, bias=False)
            >>> m.set_weight(torch.tensor([[3, -7]], dtype=torch.int8), torch.tensor([0.5]))
            >>> m(torch.tensor([[127.0, 127.0]])).tolist()
            [[-254.0]]
        """
        self.weight.copy_(codes.reshape(self.weight.shape))
        self.weight_scale.copy_(scale.reshape(self.weight_scale.shape))

    @property
    def weight_t(self) -> torch.Tensor:
        """Deprecated: the ``(K, N)`` view of :attr:`weight` (the codes are stored ``(N, K)`` since 0.2)."""
        warn_renamed(f"{type(self).__name__}.weight_t", f"{type(self).__name__}.weight (stored (N, K))")
        return self.weight.t()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        old = prefix + "weight_t"
        if old in state_dict and prefix + "weight" not in state_dict:  # a state dict of lowbit 0.1
            warn_renamed("an Int8Linear/Int8Conv2d state dict with weight_t (K, N)", "weight (N, K); save it again")
            state_dict[prefix + "weight"] = state_dict.pop(old).t().contiguous()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _gemm(self, x2d: torch.Tensor) -> torch.Tensor:
        """float32 ``(M, N)`` output of the integer GEMM for a float ``(M, K)`` input."""
        codes, s_x = quantize_activations(x2d, self.act_scale, self.act_granularity)
        y = int8_mm(codes, self.weight).float()
        y.mul_(s_x * self.weight_scale)
        return y if self.bias is None else y.add_(self.bias.float())

    def _act_config(self) -> dict[str, Any]:
        act = None if self.act_scale is None else float(self.act_scale)
        return {"act_scale": act, "act_granularity": str(self.act_granularity),
                "weight_granularity": str(self.weight_granularity)}

    def weight_qtensor(self) -> QTensor:
        """The int8 weight codes and scales as a lowbit QTensor ``(N, K)`` (symmetric; shares memory).

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> lnn.Int8Linear.from_float(torch.nn.Linear(4, 2)).weight_qtensor().codes.shape
            (2, 4)
        """
        n, k = self.weight.shape
        scale = self.weight_scale.detach().float().numpy()
        return QTensor(self.weight.detach().numpy().reshape(-1), scale, np.zeros(scale.shape, np.int8),
                       get_qtype("int8"), self.weight_granularity, True, Source("torch", "float32", (n, k)))

    def load_qtensor(self, qt: QTensor) -> None:
        """Store an int8 weight held as a QTensor (as :meth:`weight_qtensor` gives it).

        Raises:
            OptionError: not a symmetric int8 QTensor of this layer's shape and weight granularity.

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> a = lnn.Int8Linear.from_float(torch.nn.Linear(4, 2))
            >>> b = lnn.Int8Linear(4, 2)
            >>> b.load_qtensor(a.weight_qtensor()); torch.equal(a.weight, b.weight)
            True
        """
        want = ("int8", str(self.weight_granularity), True, tuple(self.weight.shape))
        got = (qt.qtype.name, str(qt.granularity), qt.symmetric, tuple(qt.shape))
        if want != got:
            raise OptionError(f"{type(self).__name__}.load_qtensor: got (qtype, granularity, symmetric, shape) "
                              f"{got}, the layer holds {want}")
        codes, scale = np.array(qt.codes, np.int8), np.array(qt.scale, np.float32)  # copies: may be read-only maps
        self.set_weight(torch.from_numpy(codes), torch.from_numpy(scale))

    @property
    def nbytes(self) -> int:
        """Bytes held: int8 weight + scales (+ static activation scale, + smoothing divisor) + bias."""
        smooth = getattr(self, "smooth_scale", None)
        return tensor_bytes(self.weight, self.weight_scale, self.act_scale, smooth, self.bias)

    def _act_repr(self) -> str:
        act = "dynamic" if self.act_scale is None else f"static act_scale={float(self.act_scale):.6g}"
        return f"act={act}, act_granularity={self.act_granularity}, weight_granularity={self.weight_granularity}"


class Int8Linear(SmoothedInput, _Int8Base):
    """Linear layer computed as an int8 x int8 -> int32 matrix product.

    Args:
        in_features, out_features, bias: as ``torch.nn.Linear``.
        act_scale: static activation scale (from calibration), or None for dynamic.
        act_granularity: ``PerTensor()`` / ``"tensor"`` or ``PerToken()`` / ``"token"`` (one
            scale per row, dynamic only).
        weight_granularity: ``PerChannel(0)`` (default) or ``PerTensor()`` (or "channel"/"tensor").
        smooth: keep a per-input-channel divisor ``smooth_scale`` (SmoothQuant): the
            input is divided by it before its int8 quantization.

    To load a static model's state dict, build it with any ``act_scale`` (e.g. 1.0):
    the stored value replaces it.

    Example:
        >>> import torch, lowbit.nn as lnn
        >>> m = lnn.Int8Linear.from_float(torch.nn.Linear(16, 4), act_scale=0.05)
        >>> m(torch.randn(2, 3, 16)).shape
        torch.Size([2, 3, 4])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, act_scale: Any = None,
                 act_granularity: Granularity | str = "tensor", weight_granularity: Granularity | str | None = None,
                 smooth: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = check_sizes(type(self).__name__, in_features=in_features,
                                                          out_features=out_features)
        self._init_int8(self.out_features, self.in_features, bias, act_scale, act_granularity, weight_granularity)
        self._init_smooth(self.in_features, smooth)

    @classmethod
    def from_float(cls, module: nn.Module, act_scale: Any = None, act_granularity: Granularity | str = "tensor",
                   weight_granularity: Granularity | str | None = None, smooth_scale: Any = None) -> Int8Linear:
        """Quantize a ``torch.nn.Linear``'s weight to int8 (symmetric, narrow range).

        Args:
            module: the float layer.
            act_scale, act_granularity, weight_granularity: as in the constructor.
            smooth_scale: SmoothQuant factors ``s`` (one per input feature, e.g. from
                :func:`lowbit.algorithms.smoothquant_scales`): the weight is quantized as
                ``W diag(s)`` and inputs are divided by ``s``; ``act_scale`` must then be
                the scale of ``x / s``.

        Raises:
            InputTypeError: not a Linear. OptionError: bad act_scale or smooth_scale.
            GranularityError: a granularity the layer does not take.

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> lnn.Int8Linear.from_float(torch.nn.Linear(8, 2)).weight.shape
            torch.Size([2, 8])
        """
        if not isinstance(module, nn.Linear):
            raise InputTypeError(f"{cls.__name__}.from_float expects a torch.nn.Linear, got {type(module).__name__}")
        new = cls(module.in_features, module.out_features, module.bias is not None, act_scale=act_scale,
                  act_granularity=act_granularity, weight_granularity=weight_granularity,
                  smooth=smooth_scale is not None)
        if smooth_scale is not None:
            new.set_smooth_scale(smooth_scale)
        new._quantize_weight(module, new.smooth_scale)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """int8 GEMM over the last dimension; the output has ``x``'s dtype."""
        check_float_input(x, type(self).__name__)
        y = self._gemm(self._smooth(x.float()).reshape(-1, self.in_features))
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def config(self) -> dict[str, Any]:
        """Constructor keywords (JSON values) that rebuild an empty layer of this configuration.

        Example:
            >>> import lowbit.nn as lnn
            >>> lnn.Int8Linear(8, 2, act_granularity="token").config()["act_granularity"]
            'token'
        """
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None,
                "smooth": self.smooth_scale is not None, **self._act_config()}

    def extra_repr(self) -> str:
        """Sizes and quantization settings."""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"{self._act_repr()}{self._smooth_repr()}")


class Int8Conv2d(_Int8Base):
    """2-d convolution as im2col (``F.unfold``) + int8 GEMM; ``groups`` must be 1.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
            bias, padding_mode: as ``torch.nn.Conv2d`` (``padding_mode="zeros"``, ``groups=1``).
        act_scale, act_granularity, weight_granularity: as :class:`Int8Linear`;
            a "token" is one output position's receptive field.

    Example:
        >>> import torch, lowbit.nn as lnn
        >>> m = lnn.Int8Conv2d.from_float(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1))
        >>> m(torch.randn(2, 3, 9, 9)).shape
        torch.Size([2, 8, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *,
                 act_scale: Any = None, act_granularity: Granularity | str = "tensor",
                 weight_granularity: Granularity | str | None = None) -> None:
        super().__init__()
        self.conv = ConvSettings.build(type(self).__name__, in_channels, out_channels, kernel_size, stride, padding,
                                       dilation, groups, padding_mode)
        if groups != 1:
            raise OptionError(
                f"Int8Conv2d needs groups=1 (one dense GEMM), got groups={groups}; use WeightOnlyConv2d "
                "for grouped or depthwise convolutions"
            )
        k = in_channels * self.conv.kernel_size[0] * self.conv.kernel_size[1]
        self._init_int8(out_channels, k, bias, act_scale, act_granularity, weight_granularity)

    @classmethod
    def from_float(cls, module: nn.Module, act_scale: Any = None, act_granularity: Granularity | str = "tensor",
                   weight_granularity: Granularity | str | None = None) -> Int8Conv2d:
        """Quantize a ``torch.nn.Conv2d``'s weight to int8 per output channel.

        Raises:
            InputTypeError: not a Conv2d. OptionError: groups != 1, padding_mode != "zeros".

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> lnn.Int8Conv2d.from_float(torch.nn.Conv2d(2, 4, 3)).weight.shape
            torch.Size([4, 18])
        """
        new = cls(**ConvSettings.kwargs_of(module, cls.__name__), act_scale=act_scale,
                  act_granularity=act_granularity, weight_granularity=weight_granularity)
        new._quantize_weight(module)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolution of a ``(B, C, H, W)`` or ``(C, H, W)`` input; output in ``x``'s dtype."""
        check_float_input(x, type(self).__name__)
        batched = x if x.dim() == 4 else x.unsqueeze(0)
        c = self.conv
        b, _, h, w = batched.shape
        padded = F.pad(batched.float(), c.pads())
        cols = F.unfold(padded, c.kernel_size, dilation=c.dilation, stride=c.stride)  # (B, C*kh*kw, L)
        y = self._gemm(cols.transpose(1, 2).reshape(-1, cols.shape[1]))
        ho, wo = c.output_size(h, w)
        y = y.reshape(b, ho, wo, c.out_channels).permute(0, 3, 1, 2).contiguous().to(x.dtype)
        return y if x.dim() == 4 else y.squeeze(0)

    def config(self) -> dict[str, Any]:
        """Constructor keywords (JSON values) that rebuild an empty layer of this configuration.

        Example:
            >>> import lowbit.nn as lnn
            >>> lnn.Int8Conv2d(3, 4, 3, act_scale=0.1).config()["act_scale"]
            0.10000000149011612
        """
        return {**self.conv.kwargs(), "bias": self.bias is not None, **self._act_config()}

    def extra_repr(self) -> str:
        """Convolution settings and quantization settings."""
        return f"{self.conv.repr()}, bias={self.bias is not None}, {self._act_repr()}"
