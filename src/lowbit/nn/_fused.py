"""Weight-only Linear straight from the stored codes: which layers the fused kernels take, and their plan.

:func:`fused_linear` runs :mod:`lowbit._kernels.linear` for a ``WeightOnlyLinear`` whose weight the
kernels read directly, and returns None otherwise (the layer then dequantizes and calls BLAS):

* formats stored in whole bytes per row: 4-bit codes (``int4``, ``uint4``, ``nf4``, ``fp4``,
  ``mxfp4`` ...) with an even number of input features, or 8-bit codes (``int8``, ``uint8``,
  ``fp8_*``, ``mxfp8``, ``mxint8``); integer codes directly, grid codes through a table;
* one scale per tensor, per output channel, or per group along the input features (an even
  group size for 4-bit codes; a size that does not divide the features gives a shorter last
  group, which the kernels walk after the whole groups), in any scale format: the scales (and zero
  points) are decoded once into a small float32 cache, refreshed when a buffer changes; the weight is never expanded;
* at most :data:`MAX_ROWS` input rows: the kernels turn each group's codes into floats once per
  call and reuse them for every row, which beats dequantizing the whole weight and calling BLAS
  only while the rows are few (``benchmarks/bench_inference.py``, 4096 x 4096 int4 group-64, weights
  from memory: the kernel 2.8 ms at one row, 9.1 ms at 4, 24 ms at 16; dequantize + BLAS about
  25 ms whatever the rows, 33 ms at 64).

With ``activations="int8"`` on the layer (integer 4- and 8-bit codes) and at most
:data:`INT8_MAX_ROWS` input rows, the input is quantized to int8 per block (:func:`activation_block`
columns: the weight's group, or 256/128/64/32 columns inside a wider one) and the kernels sum exact
int32 products per block; an input holding NaN or infinity keeps the float kernels.

Example:
    >>> import torch, lowbit.nn as lnn
    >>> layer = lnn.WeightOnlyLinear.from_float(torch.nn.Linear(64, 8), "int4", "group:32")
    >>> x = torch.randn(2, 64)
    >>> bool(torch.allclose(fused_linear(layer, x), x @ layer.dequantized_weight().T, atol=1e-5))
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lowbit.granularity import PerChannel, PerGroup, PerTensor

__all__ = ["fused_linear", "kernel_plan", "activation_block", "MAX_ROWS", "INT8_MAX_ROWS", "ACTIVATIONS"]

MAX_ROWS = 8
ACTIVATIONS = ("float", "int8")  # how the fused kernels read the input: exactly, or quantized per block
_ACT_BLOCKS = (256, 128, 64, 32)  # block sizes tried for groups wider than 256 columns (per channel)
_MAX_DOT_COLUMNS = 1 << 16  # an int32 block sum of 255 * 127 * columns stays below 2^31
# int8 activations pay at one row (decoding) and tie at 4; at 8 rows the float kernel, which turns each
# group's codes into floats once for all rows, is faster (4096 x 4096 int4 g64, one thread)
INT8_MAX_ROWS = 4
_PARALLEL_MIN = 1 << 18  # weights below this many elements run on one thread (thread start-up dominates)


def _group_columns(module: Any) -> int | None:
    """Input features per scale group (all of them per tensor or channel), or None when not along the rows."""
    k = module.weight_shape[1]
    g = module.granularity
    if isinstance(g, PerTensor) or (isinstance(g, PerChannel) and g.axis in (0, -2)):
        return k
    if isinstance(g, PerGroup) and g.axis in (-1, 1):
        return min(g.size, k)
    return None


def kernel_plan(module: Any) -> tuple[str, int] | None:
    """``(kernel, group columns)`` for a weight-only Linear the fused kernels take, else None.

    Example:
        >>> import lowbit.nn as lnn
        >>> kernel_plan(lnn.WeightOnlyLinear(64, 8, qtype="nf4", granularity="group:32"))
        ('lut4', 32)
        >>> kernel_plan(lnn.WeightOnlyLinear(64, 8, qtype="int3")) is None
        True
    """
    qt = module.qtype
    cols = _group_columns(module)
    if cols is None or qt.bits not in (4, 8):
        return None
    k = module.weight_shape[1]
    if qt.bits == 4 and (k % 2 or cols % 2):
        return None
    kind = "lut" if qt.is_grid else "int"
    return f"{kind}{qt.bits}", cols


def activation_block(cols: int) -> int | None:
    """Columns per int8 activation block for weight groups of ``cols`` columns (None: too wide for int32).

    A group of at most 256 columns is one block (llama.cpp's Q8_0 and ONNX Runtime's accuracy level 4
    also quantize activations per weight block); a wider one (per channel) is split into the largest
    of 256, 128, 64 or 32 columns that divides it, else stays one block.

    Example:
        >>> activation_block(64), activation_block(4096), activation_block(1030)
        (64, 256, 1030)
    """
    if cols <= _ACT_BLOCKS[0]:
        return cols
    block = next((b for b in _ACT_BLOCKS if cols % b == 0), cols)
    return block if block <= _MAX_DOT_COLUMNS else None


def _per_row(values: Any, n: int, groups: int) -> np.ndarray:
    """Per-tensor, per-channel or per-group parameters as a float32 ``(n, groups)`` array."""
    a = np.asarray(values, np.float32)
    return np.broadcast_to(a.reshape(-1 if a.size > 1 else 1, groups if a.size > 1 else 1), (n, groups))


class _Plan:
    """Everything a fused call needs that does not depend on the input, built once per buffer version."""

    def __init__(self, module: Any, kernel: str, cols: int) -> None:
        from lowbit.nn._util import from_buffer

        qt = module.qtype
        n, k = module.weight_shape
        self.kernel, self.cols, self.n, self.k = kernel, cols, n, k
        self.buffers = [b for name, b in module.named_buffers(recurse=False) if b is not None]
        self.key = self._key(self.buffers)
        q = module.weight_qtensor()
        groups = -(-k // cols)  # the last group is shorter when cols does not divide k
        self.scale = np.ascontiguousarray(_per_row(q.scale, n, groups), np.float32)
        # a float zero point (x = code * scale + offset) is the code offset -offset / scale
        zp = -q.zero_point.astype(np.float64) / q.scale if q.float_zero_point else q.zero_point
        zero = _per_row(zp, n, groups)
        self.lut: np.ndarray | None = None
        if qt.is_grid:
            from lowbit._kernels.grid import grid_tables

            table = grid_tables(qt)[0]
            self.lut = np.zeros(1 << qt.bits, np.float32)
            self.lut[: table.size] = table
            self.offset = np.zeros((n, groups), np.float32)
        else:
            self.offset = np.ascontiguousarray(zero + (8.0 if (qt.bits == 4 and qt.signed) else 0.0), np.float32)
        self.xor = 0x88 if (qt.bits == 4 and qt.signed and not qt.is_grid) else 0
        dtype = np.dtype(np.uint8) if qt.bits == 4 else qt.storage_dtype
        self.w = from_buffer(module.weight_data, dtype).reshape(n, k // 2 if qt.bits == 4 else k)
        self.threads = torch.get_num_threads() if n * k >= _PARALLEL_MIN else 1
        self.act_block = activation_block(cols) if kernel in ("int4", "int8") else None
        self._act_params: tuple[np.ndarray, np.ndarray] | None = None

    def act_params(self) -> tuple[np.ndarray, np.ndarray]:
        """Scale and offset per int8 activation block: the group's, repeated for each block inside it."""
        if self._act_params is None:
            block = self.act_block or self.cols
            if block == self.cols:
                self._act_params = (self.scale, self.offset)
            else:  # blocks tile each group (block divides cols); the last group may hold fewer of them
                group_of = np.arange(0, self.k, block) // self.cols
                self._act_params = (np.ascontiguousarray(self.scale[:, group_of]),
                                    np.ascontiguousarray(self.offset[:, group_of]))
        return self._act_params

    @staticmethod
    def _key(buffers: list[torch.Tensor]) -> tuple:
        return tuple((b.data_ptr(), b._version) for b in buffers)

    def current(self, module: Any) -> bool:
        """Whether the module's buffers are still the ones this plan was built from."""
        now = [b for b in module._buffers.values() if b is not None]
        return len(now) == len(self.buffers) and all(a is b for a, b in zip(now, self.buffers, strict=True)) \
            and self._key(now) == self.key


def _plan_of(module: Any) -> _Plan | None:
    cached = module.__dict__.get("_fused_plan")
    if cached is not None and cached.current(module):
        return cached
    found = kernel_plan(module)
    if found is None:
        return None
    plan_ = _Plan(module, *found)
    module.__dict__["_fused_plan"] = plan_
    return plan_


def fused_linear(module: Any, x: torch.Tensor) -> torch.Tensor | None:
    """``x @ dequantize(W).T`` (float32 ``(M, N)``, no bias) from the stored codes, or None when the fused
    kernels do not take this layer or this many rows (the caller then dequantizes).

    Args:
        module: a ``WeightOnlyLinear``.
        x: float ``(M, K)`` (any float dtype; read as float32).
    """
    rows = x.shape[0]
    if rows > MAX_ROWS or rows == 0:
        return None
    p = _plan_of(module)
    if p is None:
        return None
    from lowbit._kernels import linear as kernels

    xf = x.detach().float().numpy()
    out = np.empty((rows, p.n), np.float32)
    if getattr(module, "activations", "float") == "int8" and p.act_block is not None and rows <= INT8_MAX_ROWS \
            and _int8_activations(p, xf, out, kernels):
        return torch.from_numpy(out)
    if p.kernel in ("int4", "lut4"):
        xe, xo, xs = kernels.split_even_odd(xf, p.cols // 2)
        if p.kernel == "int4":
            kernels.linear_int4(xe, xo, xs, p.w, p.scale, p.offset, p.xor, out, p.threads, p.cols // 2)
        else:
            kernels.linear_lut4(xe, xo, p.w, p.scale, p.lut, out, p.threads, p.cols // 2)
    else:
        xf = np.ascontiguousarray(xf)
        if p.kernel == "int8":
            kernels.linear_int8(xf, kernels.group_sums(xf, p.cols), p.w, p.scale, p.offset, out, p.threads, p.cols)
        else:
            kernels.linear_lut8(xf, p.w, p.scale, p.lut, out, p.threads, p.cols)
    return torch.from_numpy(out)


def _int8_activations(p: _Plan, xf: np.ndarray, out: np.ndarray, kernels: Any) -> bool:
    """Run the int8-activation kernel into ``out``; False (nothing written) when ``xf`` is not finite."""
    quantized = kernels.quantize_blocks(xf, p.act_block)
    if quantized is None:
        return False
    q, sx, qs = quantized
    scale, offset = p.act_params()
    if p.kernel == "int4":
        kernels.linear_int4_q8(q, sx, qs, p.w, scale, offset, p.xor, out, p.threads, p.act_block)
    else:
        kernels.linear_int8_q8(q, sx, qs, p.w, scale, offset, out, p.threads, p.act_block)
    return True
