"""llama.cpp's K-quant blocks Q4_K and Q6_K: quantize to the exact GGUF bytes, decode to codes and scales.

``quantize_q4_k`` and ``quantize_q6_k`` give the same bytes as llama.cpp's
reference quantizers ``quantize_row_q4_K_ref`` / ``quantize_row_q6_K_ref``
(what ``llama-quantize`` writes for a tensor without an importance matrix):
the per-sub-block search runs in float32 in llama.cpp's order of operations
(:mod:`lowbit._kernels.kquants`), and the super-block step here does the same
over all super-blocks at once.  ``tests/io/data/kquant_vectors.npz`` holds
bytes made by llama.cpp itself to check this.

Layouts (one row of the result per super-block of 256 values):

- Q4_K, 144 bytes: fp16 ``d``, fp16 ``dmin``, 12 bytes of eight 6-bit scales
  and eight 6-bit mins, 128 bytes of 4-bit codes.  Sub-block ``j`` (32 values)
  is ``(d * scale_j) * code - (dmin * min_j)``.
- Q6_K, 210 bytes: 128 bytes of low code nibbles, 64 bytes of high code bits,
  16 int8 scales, fp16 ``d``.  Sub-block ``j`` (16 values) is
  ``(d * scale_j) * code`` with ``code`` in -32..31.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=512).astype(np.float32)
    >>> q4 = quantize_q4_k(x)
    >>> q4.shape, q4.dtype.name
    ((2, 144), 'uint8')
    >>> codes, scale, minimum = decode_q4_k(q4)
    >>> y = (scale[:, :, None] * codes.reshape(2, 8, 32) - minimum[:, :, None]).reshape(-1)
    >>> bool(np.abs(y - x).max() < 0.25)
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lowbit._arrays import as_float_array, check_finite
from lowbit.errors import GranularityError, InputTypeError, NonFiniteError

__all__ = ["QK_K", "Q4_K_BYTES", "Q6_K_BYTES", "quantize_q4_k", "quantize_q6_k", "decode_q4_k", "decode_q6_k"]

QK_K = 256
"""Values per super-block."""
Q4_K_BYTES = 144
"""Bytes per Q4_K super-block."""
Q6_K_BYTES = 210
"""Bytes per Q6_K super-block."""

_F16_INF = 0x7C00
_MAGIC = np.float32(12582912.0)
_EPS = np.float32(1e-15)


def _nearest_int(v: np.ndarray) -> np.ndarray:
    """llama.cpp's float32 -> int rounding (half to even for ``|v| < 2**22``), as int32."""
    bits = (v.astype(np.float32, copy=False) + _MAGIC).view(np.int32)
    return (bits & np.int32(0x7FFFFF)) - np.int32(0x400000)


def _superblocks(x: Any, name: str) -> np.ndarray:
    """The input as float32 super-blocks (n, 256), after the size and finiteness checks."""
    flat, source = as_float_array(x)
    if flat.size % QK_K:
        raise GranularityError(
            f"{name} quantizes whole super-blocks of {QK_K} values; got {flat.size} values "
            f"(shape {source.shape}), which is not a multiple of {QK_K}: pad or pick another format"
        )
    flat = flat.astype(np.float32, copy=False)
    nonfinite = flat.size - int(np.count_nonzero(np.isfinite(flat)))
    check_finite(flat, nonfinite, source.shape)
    return flat.reshape(-1, QK_K)


def _to_f16(v: np.ndarray) -> np.ndarray:
    """float32 -> fp16 rounded to nearest even (overflow to inf, as llama.cpp)."""
    with np.errstate(over="ignore"):
        return v.astype(np.float16)


def _check_scale_range(d: np.ndarray, name: str, x: np.ndarray) -> None:
    """Refuse blocks whose fp16 super-block scale overflowed (values too large for the format)."""
    bad = np.flatnonzero(np.abs(d) == np.inf)
    if bad.size:
        peak = float(np.abs(x[bad[0]]).max())
        raise NonFiniteError(
            f"{name}: {bad.size} super-block(s) need a scale beyond fp16's range (first: block {int(bad[0])}, "
            f"largest |value| {peak:.4g}); scale the tensor down before quantizing"
        )


def _running_max(v: np.ndarray) -> np.ndarray:
    """Per-row maximum of ``v`` (n, k) starting from 0 and taking strictly larger values in order."""
    best = np.zeros(v.shape[0], np.float32)
    for j in range(v.shape[1]):
        best = np.where(v[:, j] > best, v[:, j], best)
    return best


def _inverse(num: float, v: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """``num / v`` in float32 where ``where`` (default ``v > 0``), else 0."""
    out = np.zeros_like(v)
    with np.errstate(over="ignore"):  # a float32-subnormal v gives inf, as in llama.cpp
        np.divide(np.float32(num), v, out=out, where=v > 0 if where is None else where)
    return out


def _six_bit(inv: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Round ``inv * v`` to the 6-bit scale codes (kept as uint8 and capped at 63, as llama.cpp)."""
    with np.errstate(invalid="ignore"):  # inf * 0 after a subnormal maximum: llama.cpp rounds the NaN to 0
        product = inv[:, None] * v
    return np.minimum(_nearest_int(product).astype(np.uint8), np.uint8(63))


def _pack_q4_scales(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Eight 6-bit scales and mins into Q4_K's 12 bytes."""
    hi_s, hi_m = (ls[:, 4:] >> 4) << 6, (lm[:, 4:] >> 4) << 6
    return np.concatenate([ls[:, :4] | hi_s, lm[:, :4] | hi_m, (ls[:, 4:] & 0xF) | ((lm[:, 4:] & 0xF) << 4)], axis=1)


def _recode(x: np.ndarray, d: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
    """llama.cpp's final codes ``nearest_int((x + offset) / d)`` for sub-blocks x (n, s, k) and d, offset (n, s)."""
    top = x if offset is None else x + offset[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return _nearest_int(top / d[:, :, None])


def quantize_q4_k(x: Any) -> np.ndarray:
    """Quantize to llama.cpp Q4_K super-blocks, byte for byte as ``quantize_row_q4_K_ref``.

    Each super-block of 256 values holds eight sub-blocks of 32, each with its
    own 6-bit scale and minimum found by llama.cpp's weighted search.

    Args:
        x: a floating-point array (or CPU tensor) whose size is a multiple of 256,
            read flat in C order and quantized as float32.

    Returns:
        uint8 array of shape (size // 256, 144), one ``block_q4_K`` per row.

    Raises:
        GranularityError: the size is not a multiple of 256.
        NonFiniteError: the input holds NaN/Inf, or values so large that the fp16
            super-block scale would overflow.
        InputTypeError: not a floating-point array.

    Example:
        >>> import numpy as np
        >>> q = quantize_q4_k(np.zeros(256, np.float32))
        >>> q.shape, int(q.max())
        ((1, 144), 0)
    """
    from lowbit._kernels.kquants import search_q4_k

    blocks = _superblocks(x, "Q4_K")
    n = blocks.shape[0]
    sub = blocks.reshape(n, 8, 32)
    scales, mins, codes = search_q4_k(blocks.reshape(-1, 32))
    scales, mins, codes = scales.reshape(n, 8), mins.reshape(n, 8), codes.reshape(n, 8, 32)
    max_scale, max_min = _running_max(scales), _running_max(mins)
    ls, lm = _six_bit(_inverse(63.0, max_scale), scales), _six_bit(_inverse(63.0, max_min), mins)
    d, dmin = _to_f16(max_scale / np.float32(63.0)), _to_f16(max_min / np.float32(63.0))
    _check_scale_range(d, "Q4_K", blocks)
    _check_scale_range(dmin, "Q4_K", blocks)
    sub_d = d.astype(np.float32)[:, None] * ls.astype(np.float32)
    sub_m = dmin.astype(np.float32)[:, None] * lm.astype(np.float32)
    fresh = np.clip(_recode(sub, sub_d, sub_m), 0, 15).astype(np.uint8)
    codes = np.where((sub_d != 0)[:, :, None], fresh, codes).reshape(n, 4, 2, 32)
    qs = (codes[:, :, 0, :] | (codes[:, :, 1, :] << 4)).reshape(n, 128)
    head = np.stack([d, dmin], axis=1).view(np.uint8)
    return np.ascontiguousarray(np.concatenate([head, _pack_q4_scales(ls, lm), qs], axis=1))


def _first_abs_max(v: np.ndarray) -> np.ndarray:
    """Per row, the first entry of largest magnitude (0 for an all-zero row)."""
    best_abs = np.zeros(v.shape[0], np.float32)
    best = np.zeros(v.shape[0], np.float32)
    for j in range(v.shape[1]):
        a = np.abs(v[:, j])
        take = a > best_abs
        best_abs, best = np.where(take, a, best_abs), np.where(take, v[:, j], best)
    return best


def _pack_q6_codes(codes: np.ndarray) -> np.ndarray:
    """Q6_K codes (n, 256) as code + 32 into 128 bytes of low nibbles and 64 bytes of high bits."""
    n = codes.shape[0]
    c = codes.reshape(n, 2, 4, 32)  # halves of 128, quarters of 32
    lo = c & 0xF
    ql = np.concatenate([lo[:, :, 0] | (lo[:, :, 2] << 4), lo[:, :, 1] | (lo[:, :, 3] << 4)], axis=2)
    hi = c >> 4
    qh = hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)
    return np.concatenate([ql.reshape(n, 128), qh.reshape(n, 64)], axis=1)


def quantize_q6_k(x: Any) -> np.ndarray:
    """Quantize to llama.cpp Q6_K super-blocks, byte for byte as ``quantize_row_q6_K_ref``.

    Each super-block of 256 values holds sixteen sub-blocks of 16 with an int8
    scale each (relative to one fp16 ``d``) and signed 6-bit codes.  A
    super-block whose values are all below 1e-15 in magnitude is all zero bytes.

    Args:
        x: a floating-point array (or CPU tensor) whose size is a multiple of 256,
            read flat in C order and quantized as float32.

    Returns:
        uint8 array of shape (size // 256, 210), one ``block_q6_K`` per row.

    Raises:
        GranularityError: the size is not a multiple of 256.
        NonFiniteError: the input holds NaN/Inf, or values so large that the fp16
            super-block scale would overflow.
        InputTypeError: not a floating-point array.

    Example:
        >>> import numpy as np
        >>> q = quantize_q6_k(np.ones(256, np.float32))
        >>> codes, scale = decode_q6_k(q)
        >>> q.shape, int(codes[0, 0]), float(scale[0, 0] * codes[0, 0])
        ((1, 210), -32, 1.0)
    """
    from lowbit._kernels.kquants import search_q6_k

    blocks = _superblocks(x, "Q6_K")
    n = blocks.shape[0]
    scales, codes = search_q6_k(blocks.reshape(-1, 16))
    scales, codes = scales.reshape(n, 16), codes.reshape(n, 16, 16)
    peak = _first_abs_max(scales)
    live = np.abs(peak) >= _EPS
    iscale = _inverse(-128.0, peak, where=live)
    d = _to_f16(_inverse(1.0, iscale, where=live))
    _check_scale_range(d, "Q6_K", blocks)
    qscale = np.minimum(_nearest_int(iscale[:, None] * scales), 127).astype(np.int8)
    sub_d = d.astype(np.float32)[:, None] * qscale.astype(np.float32)
    fresh = (np.clip(_recode(blocks.reshape(n, 16, 16), sub_d, None), -32, 31) + 32).astype(np.uint8)
    codes = np.where((sub_d != 0)[:, :, None], fresh, codes).reshape(n, QK_K)
    out = np.concatenate([_pack_q6_codes(codes), qscale.view(np.uint8), d[:, None].view(np.uint8)], axis=1)
    out[~live] = 0
    return np.ascontiguousarray(out)


def _as_blocks(blocks: Any, width: int, name: str) -> np.ndarray:
    """``blocks`` as a C-contiguous uint8 array (n, width), checked."""
    arr = np.asarray(blocks)
    if arr.dtype != np.uint8:
        raise InputTypeError(f"{name} blocks must be uint8 bytes, got dtype {arr.dtype}; pass the raw tensor data")
    if arr.size % width:
        raise GranularityError(
            f"{name} blocks are {width} bytes each; got {arr.size} bytes (shape {arr.shape}), not a multiple of {width}"
        )
    return np.ascontiguousarray(arr).reshape(-1, width)


def decode_q4_k(blocks: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split Q4_K super-blocks into codes, per-sub-block scales and mins.

    ``scale * code - minimum`` over each sub-block of 32 (float32, in that
    order) equals ``gguf.quants.dequantize(blocks, Q4_K)`` bit for bit.

    Args:
        blocks: uint8 bytes, shape (n, 144) or any shape of n * 144 bytes.

    Returns:
        ``(codes, scale, minimum)``: uint8 (n, 256) in 0..15, float32 (n, 8)
        ``d * scale_j`` and float32 (n, 8) ``dmin * min_j``.

    Raises:
        InputTypeError: not uint8.
        GranularityError: the byte count is not a multiple of 144.

    Example:
        >>> import numpy as np
        >>> codes, scale, minimum = decode_q4_k(quantize_q4_k(np.arange(256, dtype=np.float32)))
        >>> codes.shape, scale.shape, minimum.shape
        ((1, 256), (1, 8), (1, 8))
    """
    b = _as_blocks(blocks, Q4_K_BYTES, "Q4_K")
    n = b.shape[0]
    d = b[:, 0:2].copy().view(np.float16).astype(np.float32)
    dmin = b[:, 2:4].copy().view(np.float16).astype(np.float32)
    s = b[:, 4:16]
    sc = np.concatenate([s[:, 0:4] & 0x3F, (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    mn = np.concatenate([s[:, 4:8] & 0x3F, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    qs = b[:, 16:].reshape(n, 4, 1, 32)
    codes = np.concatenate([qs & 0xF, qs >> 4], axis=2).reshape(n, QK_K)
    return codes, d * sc.astype(np.float32), dmin * mn.astype(np.float32)


def decode_q6_k(blocks: Any) -> tuple[np.ndarray, np.ndarray]:
    """Split Q6_K super-blocks into signed codes and per-sub-block scales.

    ``scale * code`` over each sub-block of 16 (float32) equals
    ``gguf.quants.dequantize(blocks, Q6_K)`` bit for bit.

    Args:
        blocks: uint8 bytes, shape (n, 210) or any shape of n * 210 bytes.

    Returns:
        ``(codes, scale)``: int8 (n, 256) in -32..31 and float32 (n, 16) ``d * scale_j``.

    Raises:
        InputTypeError: not uint8.
        GranularityError: the byte count is not a multiple of 210.

    Example:
        >>> import numpy as np
        >>> codes, scale = decode_q6_k(quantize_q6_k(-np.ones(256, np.float32)))
        >>> int(codes[0, 0]), bool(scale[0, 0] * codes[0, 0] == -1.0)
        (-32, True)
    """
    b = _as_blocks(blocks, Q6_K_BYTES, "Q6_K")
    n = b.shape[0]
    ql = b[:, :128].reshape(n, 2, 2, 32)  # halves, then [lows of quarters 0|1, highs of quarters 2|3]
    qh = b[:, 128:192].reshape(n, 2, 1, 32)
    low = np.concatenate([ql & 0xF, ql >> 4], axis=2)  # quarters 0, 1, 2, 3
    high = (qh >> np.array([0, 2, 4, 6], np.uint8)[None, None, :, None]) & 0x3
    codes = ((low | (high << 4)).astype(np.int8) - np.int8(32)).reshape(n, QK_K)
    d = b[:, 208:210].copy().view(np.float16).astype(np.float32)
    return codes, d * b[:, 192:208].view(np.int8).astype(np.float32)
