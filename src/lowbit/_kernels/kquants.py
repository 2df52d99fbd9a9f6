"""Per-sub-block searches of llama.cpp's K-quants (Q4_K, Q6_K), in float32 as its reference does.

The searches pick one scale (Q6_K) or one scale and one minimum (Q4_K) per
sub-block by trying a few candidate inverse scales and keeping the one with the
least weighted squared error.  They are written so that every float operation
happens in float32 and in the same order as llama.cpp's ``*_ref`` quantizers,
so the chosen parameters -- and in the end the GGUF bytes -- are identical:
no float64 temporaries (every constant is a ``np.float32``, integers are
converted before they meet a float), sequential sums, no fused multiply-add.

Rounding is llama.cpp's ``nearest_int``: the float32 sum ``v + 1.5 * 2**23``
read back as bits, which rounds half to even for ``|v| < 2**22`` and gives the
same (meaningless but reproducible) integer outside that range.

Example:
    >>> import numpy as np
    >>> from lowbit._kernels.kquants import search_q6_k
    >>> x = np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)
    >>> scales, codes = search_q6_k(x)
    >>> scales.dtype.name, codes.shape
    ('float32', (2, 16))
    >>> bool(np.abs(scales[:, None] * (codes.astype(np.float32) - 32) - x).max() < 0.02)
    True
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

__all__ = ["nearest_int", "search_q4_k", "search_q6_k", "CHUNK"]

CHUNK = 512
"""Sub-blocks handled by one parallel task (its scratch is allocated once)."""

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_MAGIC = np.float32(12582912.0)  # 1.5 * 2**23
_EPS = np.float32(1e-15)
# Q4_K: 8 sub-blocks of 32, codes 0..15, candidates (nmax + rmin + rdelta * k) for k = 0..20.
_Q4_N = 32
_Q4_NMAX = np.float32(15.0)
_Q4_RMIN = np.float32(-1.0)
_Q4_RDELTA = np.float32(0.1)
_Q4_NSTEP = 20
# Q6_K: 16 sub-blocks of 16, signed codes -32..31, candidates nmax + 0.1 * k for k = -9..9.
_Q6_N = 16
_Q6_NMAX = 32
_Q6_STEP = np.float32(0.1)


@intrinsic
def _bits(typingctx, v):  # pragma: no cover - compiled
    """The IEEE bits of a float32 as an int32 (an LLVM bitcast)."""
    if v != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(v), codegen


@njit(inline="always", cache=True)
def nearest_int(v):  # pragma: no cover - compiled
    """llama.cpp's rounding of a float32 to an int: read the mantissa of ``v + 1.5 * 2**23``."""
    return (np.int64(_bits(v + _MAGIC)) & 0x7FFFFF) - 0x400000


@njit(inline="always", cache=True)
def _q4_weights(x, w):  # pragma: no cover - compiled
    """Importance of each element: rms of the sub-block plus its magnitude."""
    s = _F0
    for i in range(_Q4_N):
        s += x[i] * x[i]
    rms = np.sqrt(s / np.float32(_Q4_N))
    for i in range(_Q4_N):
        w[i] = rms + abs(x[i])


@njit(inline="always", cache=True)
def _q4_error(x, w, codes, scale, lo):  # pragma: no cover - compiled
    """Weighted squared error of ``scale * code + lo`` against ``x``."""
    err = _F0
    for i in range(_Q4_N):
        diff = scale * np.float32(codes[i]) + lo - x[i]
        err += w[i] * (diff * diff)
    return err


@njit(inline="always", cache=True)
def _q4_codes(x, iscale, lo, codes):  # pragma: no cover - compiled
    """Round ``iscale * (x - lo)`` into 0..15."""
    for i in range(_Q4_N):
        codes[i] = min(max(nearest_int(iscale * (x[i] - lo)), 0), 15)


@njit(inline="always", cache=True)
def _q4_one(x, w, codes, aux):  # pragma: no cover - compiled
    """Scale and (negated) minimum of one Q4_K sub-block; its codes go to ``codes``."""
    lo = x[0]
    hi = x[0]
    sum_w = w[0]
    sum_x = sum_w * x[0]
    for i in range(1, _Q4_N):
        if x[i] < lo:
            lo = x[i]
        if x[i] > hi:
            hi = x[i]
        sum_w += w[i]
        sum_x += w[i] * x[i]
    if lo > _F0:
        lo = _F0
    if hi == lo:
        codes[:] = 0
        return _F0, -lo
    iscale = _Q4_NMAX / (hi - lo)
    scale = _F1 / iscale
    _q4_codes(x, iscale, lo, codes)
    best = _q4_error(x, w, codes, scale, lo)
    for k in range(_Q4_NSTEP + 1):
        # llama.cpp measures the range from the best minimum found so far, not the data's minimum
        iscale = (_Q4_RMIN + _Q4_RDELTA * np.float32(k) + _Q4_NMAX) / (hi - lo)
        _q4_codes(x, iscale, lo, aux)
        s_l = _F0
        s_l2 = _F0
        s_xl = _F0
        for i in range(_Q4_N):
            wl = w[i] * np.float32(aux[i])
            s_l += wl
            s_l2 += wl * np.float32(aux[i])
            s_xl += wl * x[i]
        det = sum_w * s_l2 - s_l * s_l
        if det > _F0:
            t_scale = (sum_w * s_xl - sum_x * s_l) / det
            t_lo = (s_l2 * sum_x - s_l * s_xl) / det
            if t_lo > _F0:
                t_lo = _F0
                t_scale = s_xl / s_l2
            err = _q4_error(x, w, aux, t_scale, t_lo)
            if err < best:
                codes[:] = aux
                best = err
                scale = t_scale
                lo = t_lo
    return scale, -lo


@njit(parallel=True, cache=True)
def _search_q4_k(x, scales, mins, codes):  # pragma: no cover - compiled
    n = x.shape[0]
    for task in prange((n + CHUNK - 1) // CHUNK):
        w = np.empty(_Q4_N, np.float32)
        aux = np.empty(_Q4_N, np.uint8)
        for s in range(task * CHUNK, min(n, (task + 1) * CHUNK)):
            _q4_weights(x[s], w)
            scales[s], mins[s] = _q4_one(x[s], w, codes[s], aux)


def search_q4_k(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q4_K's per-sub-block search over a C-contiguous float32 array of shape (n, 32).

    Returns ``(scale, minimum, codes)``: float32 (n,), float32 (n,) and uint8
    (n, 32) in 0..15, with ``x ~ scale * code - minimum``.

    Example:
        >>> x = np.arange(32, dtype=np.float32).reshape(1, 32)
        >>> scale, minimum, codes = search_q4_k(x)
        >>> int(codes[0, 0]), int(codes[0, -1]), float(minimum[0]) <= 0.0
        (0, 15, True)
    """
    n = x.shape[0]
    scales = np.empty(n, np.float32)
    mins = np.empty(n, np.float32)
    codes = np.empty((n, _Q4_N), np.uint8)
    _search_q4_k(x, scales, mins, codes)
    return scales, mins, codes


@njit(inline="always", cache=True)
def _q6_code(v, iscale):  # pragma: no cover - compiled
    """Round ``iscale * v`` into -32..31."""
    return min(max(nearest_int(iscale * v), -_Q6_NMAX), _Q6_NMAX - 1)


@njit(inline="always", cache=True)
def _q6_codes(x, iscale, codes):  # pragma: no cover - compiled
    """Codes of ``iscale * x`` stored as code + 32."""
    for i in range(_Q6_N):
        codes[i] = _q6_code(x[i], iscale) + _Q6_NMAX


@njit(inline="always", cache=True)
def _q6_sums(x, iscale):  # pragma: no cover - compiled
    """The x**2-weighted sums of x * code and code**2 for the codes of ``iscale * x``."""
    s_xl = _F0
    s_l2 = _F0
    for i in range(_Q6_N):
        fq = np.float32(_q6_code(x[i], iscale))
        w = x[i] * x[i]
        s_xl += w * x[i] * fq
        s_l2 += w * fq * fq
    return s_xl, s_l2


@njit(inline="always", cache=True)
def _q6_one(x, codes):  # pragma: no cover - compiled
    """Signed scale of one Q6_K sub-block; its codes (0..63, i.e. code + 32) go to ``codes``."""
    amax = _F0
    peak = _F0
    for i in range(_Q6_N):
        a = abs(x[i])
        if a > amax:
            amax = a
            peak = x[i]
    if amax < _EPS:
        codes[:] = 0
        return _F0
    iscale = np.float32(-_Q6_NMAX) / peak
    _q6_codes(x, iscale, codes)
    s_xl, s_l2 = _q6_sums(x, iscale)
    scale = s_xl / s_l2 if s_l2 != _F0 else _F0
    best = scale * s_xl
    for k in range(-9, 10):
        if k == 0:
            continue
        iscale = -(np.float32(_Q6_NMAX) + _Q6_STEP * np.float32(k)) / peak
        s_xl, s_l2 = _q6_sums(x, iscale)
        if s_l2 > _F0 and s_xl * s_xl > best * s_l2:
            _q6_codes(x, iscale, codes)
            scale = s_xl / s_l2
            best = scale * s_xl
    return scale


@njit(parallel=True, cache=True)
def _search_q6_k(x, scales, codes):  # pragma: no cover - compiled
    n = x.shape[0]
    for task in prange((n + CHUNK - 1) // CHUNK):
        for s in range(task * CHUNK, min(n, (task + 1) * CHUNK)):
            scales[s] = _q6_one(x[s], codes[s])


def search_q6_k(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q6_K's per-sub-block search over a C-contiguous float32 array of shape (n, 16).

    Returns ``(scale, codes)``: float32 (n,) and uint8 (n, 16) holding code + 32
    (0..63), with ``x ~ scale * code``.

    Example:
        >>> scale, codes = search_q6_k(np.zeros((1, 16), np.float32))
        >>> float(scale[0]), int(codes.max())
        (0.0, 0)
    """
    n = x.shape[0]
    scales = np.empty(n, np.float32)
    codes = np.empty((n, _Q6_N), np.uint8)
    _search_q6_k(x, scales, codes)
    return scales, codes
