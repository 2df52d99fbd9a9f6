"""Fake quantization with a learnable scale (LSQ, Esser et al. 2020).

Forward, for a symmetric signed integer format with codes ``qmin..qmax``::

    v = x * (1 / s);   q = clamp(round_half_even(v), qmin, qmax);   y = q * s

computed in float32 exactly as :func:`lowbit.quantize` with ``scale=s`` rounds
(so a layer converted with the learned scales reproduces the QAT forward bit
for bit). Backward (straight-through estimator of ``round``):

* ``dy/dx = 1`` where ``qmin <= v <= qmax`` and 0 outside (clipped values);
* ``dy/ds = round(v) - v`` inside and ``qmin`` / ``qmax`` outside, times the LSQ
  gradient scale ``g = 1 / sqrt(n * qmax)``, ``n`` the number of elements that
  share one scale in the current tensor (all of them per tensor, ``numel / C``
  per channel).

The scale is used as ``max(s, 1e-12)``, so it never reaches zero.

Example:
    >>> import torch
    >>> s = torch.tensor(0.5, requires_grad=True)
    >>> x = torch.tensor([0.3, -0.8, 2.0], requires_grad=True)
    >>> y = lsq_fake_quantize(x, s, -3, 3)
    >>> y.tolist()
    [0.5, -1.0, 1.5]
    >>> y.sum().backward()
    >>> x.grad.tolist()
    [1.0, 1.0, 0.0]
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from lowbit._deprecation import warn_renamed
from lowbit.errors import GranularityError, NonFiniteError, OptionError, QTypeError
from lowbit.formats import QType, get_qtype
from lowbit.nn._util import check_float_input

__all__ = ["FakeQuantize", "lsq_fake_quantize", "lsq_init_scale"]

MIN_SCALE = 1e-12


def _shape_for(x: torch.Tensor, axis: int | None) -> tuple[int, ...]:
    """Broadcast shape of the scale against ``x``."""
    if axis is None:
        return ()
    shape = [1] * x.dim()
    shape[axis] = x.shape[axis]
    return tuple(shape)


class _LSQ(torch.autograd.Function):
    """Fake quantization with straight-through input and LSQ scale gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: torch.Tensor, qmin: int, qmax: int, axis: int | None,
                grad_scale: float) -> torch.Tensor:
        s = scale.float().clamp_min(MIN_SCALE).reshape(_shape_for(x, axis))
        v = x.float() * (1.0 / s)
        q = torch.clamp(torch.round(v), qmin, qmax)
        ctx.save_for_backward(v)
        ctx.meta = (qmin, qmax, axis, grad_scale, scale.dtype, scale.shape, x.dtype)
        return (q * s).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        (v,) = ctx.saved_tensors
        qmin, qmax, axis, g, s_dtype, s_shape, x_dtype = ctx.meta
        inside = (v >= qmin) & (v <= qmax)
        gf = grad.float()
        grad_x = (gf * inside).to(x_dtype) if ctx.needs_input_grad[0] else None
        grad_s = None
        if ctx.needs_input_grad[1]:
            q = torch.clamp(torch.round(v), qmin, qmax)
            term = gf * torch.where(inside, q - v, q)
            dims = [d for d in range(v.dim()) if d != axis] if axis is not None else list(range(v.dim()))
            grad_s = (term.sum(dim=dims) * g).reshape(s_shape).to(s_dtype)
        return grad_x, grad_s, None, None, None, None


def lsq_fake_quantize(x: torch.Tensor, scale: torch.Tensor, qmin: int, qmax: int, *, axis: int | None = None,
                      grad_scale: float | None = None) -> torch.Tensor:
    """Differentiable fake quantization with an LSQ scale (see the module docstring).

    Args:
        x: float tensor.
        scale: scalar tensor, or one entry per index along ``axis``.
        qmin, qmax: the integer code range (e.g. -7, 7 for int4).
        axis: channel axis of a per-channel scale, None for one scale.
        grad_scale: LSQ gradient scale; default ``1 / sqrt(n * qmax)``.

    Returns:
        The fake-quantized tensor, same dtype and shape as ``x``.

    Example:
        >>> import torch
        >>> lsq_fake_quantize(torch.tensor([[1.0, 0.2], [3.0, -3.0]]), torch.tensor([1.0, 2.0]), -1, 1, axis=0).tolist()
        [[1.0, 0.0], [2.0, -2.0]]
    """
    if axis is not None:
        axis %= x.dim()
    if grad_scale is None:
        n = x.numel() // (x.shape[axis] if axis is not None else 1)
        grad_scale = 1.0 / math.sqrt(max(n, 1) * qmax)
    return _LSQ.apply(x, scale, qmin, qmax, axis, grad_scale)


def lsq_init_scale(x: torch.Tensor, qtype: str | QType, axis: int | None = None) -> torch.Tensor:
    """LSQ's initial scale ``2 * mean(|x|) / sqrt(qmax)`` (per tensor or per channel).

    An all-zero tensor (or channel) gets scale 1.

    Raises:
        NonFiniteError: ``x`` holds NaN or Inf.

    Example:
        >>> import torch
        >>> lsq_init_scale(torch.tensor([1.0, -3.0]), "int2").item()  # qmax = 1
        4.0
    """
    qt = get_qtype(qtype)
    xf = x.detach().float().abs()
    if not bool(torch.isfinite(xf).all()):
        raise NonFiniteError(f"cannot initialise a scale from a tensor {tuple(x.shape)} holding NaN or Inf")
    mean = xf.mean() if axis is None else xf.transpose(0, axis).reshape(x.shape[axis], -1).mean(dim=1)
    s = 2.0 * mean / math.sqrt(qt.qmax)
    return torch.where(s > 0, s, torch.ones_like(s))


def _check_method(method: Any, options: Any) -> str:
    """``"lsq"`` or a registered estimator name (validated with its options)."""
    from lowbit.calibration import get_estimator, list_estimators

    if method == "lsq":
        if options:
            raise OptionError(f"method='lsq' takes no method_options, got {sorted(options)}")
        return method
    if not isinstance(method, str) or method not in list_estimators():
        raise OptionError(f"FakeQuantize method must be 'lsq' or one of {list_estimators()}, got {method!r}")
    if options is not None and not isinstance(options, dict):
        raise OptionError(f"method_options must be a dict, got {type(options).__name__}")
    get_estimator(method, **(options or {}))
    return method


def _check_qtype(qtype: str | QType) -> QType:
    qt = get_qtype(qtype)
    if qt.kind != "int" or not qt.signed or not 2 <= qt.bits <= 8:
        raise QTypeError(
            f"FakeQuantize learns symmetric scales for signed integer formats of 2 to 8 bits (int2..int8, "
            f"int2_full..int8_full), got {qt.name}"
        )
    return qt


class FakeQuantize(nn.Module):
    """Learnable-scale fake quantizer for QAT (per tensor or per channel).

    Args:
        qtype: signed integer format of 2..8 bits (``"int4"``, ``"int8_full"``, ...).
        axis: channel axis for per-channel scales (then ``channels`` is required),
            None for one scale.
        channels: number of channels along ``axis``.
        method: how the scale is initialised from the first tensor seen: ``"lsq"``
            (``2 * mean|x| / sqrt(qmax)``, as the paper) or a lowbit range
            estimator name (``"minmax"``, ``"mse"``, ``"percentile"``, ...).
        method_options: options of that estimator (``{"percentile": 99.9}``).
        enabled: when False, forward returns the input unchanged.
        init: deprecated spelling of ``method``.

    Attributes:
        scale: the learnable scale (Parameter), ``()`` or ``(channels,)``.
        initialized: bool buffer; the first forward (or :meth:`initialize_`) sets it.

    Example:
        >>> import torch, lowbit.nn as lnn
        >>> fq = lnn.FakeQuantize("int4", axis=0, channels=2)
        >>> y = fq(torch.tensor([[0.1, -2.0], [5.0, 1.0]]))
        >>> fq.scale.shape, bool(fq.initialized)
        (torch.Size([2]), True)
    """

    initialized: torch.Tensor

    def __init__(self, qtype: str | QType = "int8", *, axis: int | None = None, channels: int | None = None,
                 method: str = "lsq", method_options: dict[str, Any] | None = None, enabled: bool = True,
                 init: str | None = None) -> None:
        super().__init__()
        self.qtype = _check_qtype(qtype)
        if (axis is None) != (channels is None):
            raise OptionError("FakeQuantize needs both axis and channels for per-channel scales, or neither")
        if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
            raise OptionError(f"FakeQuantize channels must be a positive int, got {channels!r}")
        if init is not None:
            warn_renamed("FakeQuantize(init=...)", "FakeQuantize(method=...)")
            method = init
        self.method, self.method_options = _check_method(method, method_options), dict(method_options or {})
        self.axis, self.channels, self.enabled = axis, channels, bool(enabled)
        self.scale = nn.Parameter(torch.ones(() if channels is None else (channels,)))
        self.register_buffer("initialized", torch.tensor(False))

    def _check(self, x: torch.Tensor) -> int | None:
        check_float_input(x, "FakeQuantize")
        if self.axis is None:
            return None
        if not -x.dim() <= self.axis < x.dim() or x.shape[self.axis] != self.channels:
            raise GranularityError(
                f"FakeQuantize has {self.channels} channels on axis {self.axis} but got a tensor of shape "
                f"{tuple(x.shape)}; build it with channels=x.shape[axis]"
            )
        return self.axis % x.dim()

    @torch.no_grad()
    def initialize_(self, x: torch.Tensor) -> FakeQuantize:
        """Set the scale from ``x`` with the ``method`` rule; returns self.

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> lnn.FakeQuantize("int8", method="minmax").initialize_(torch.tensor([-2.54, 1.0])).scale.item()
            0.019999999552965164
        """
        axis = self._check(x)
        if self.method == "lsq":
            s = lsq_init_scale(x, self.qtype, axis)
        else:
            from lowbit.calibration import get_estimator

            est = get_estimator(self.method, **{**self.method_options, "axis": axis}).partial_fit(x.detach().float())
            s = torch.as_tensor(est.qparams(self.qtype, symmetric=True)[0], dtype=torch.float32)
        self.scale.copy_(s.reshape(self.scale.shape))
        self.initialized.fill_(True)
        return self

    def effective_scale(self) -> torch.Tensor:
        """The scale as used in forward (``max(scale, 1e-12)``), detached float32."""
        return self.scale.detach().float().clamp_min(MIN_SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantize ``x`` (initialising the scale from the first tensor seen)."""
        if not self.enabled:
            return x
        axis = self._check(x)
        if not bool(self.initialized):
            self.initialize_(x)
        return lsq_fake_quantize(x, self.scale, self.qtype.qmin, self.qtype.qmax, axis=axis)

    def extra_repr(self) -> str:
        """Format, layout and state."""
        where = "tensor" if self.axis is None else f"axis={self.axis}, channels={self.channels}"
        return f"{self.qtype.name}, {where}, method={self.method}, enabled={self.enabled}"
