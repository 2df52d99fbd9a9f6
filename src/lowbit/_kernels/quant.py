"""Fused quantize / dequantize kernels over a (P, Q, R, T) block layout (ragged: and N).

Work is split into chunks of the flat tensor (a multiple of 8 elements, so a
packed chunk starts on a byte boundary).  Inside a chunk the loop walks
*segments*: runs that share one parameter (``T == 1``) or runs whose
parameters are a contiguous slice (``T > 1``).  Each segment is a plain
contiguous loop that LLVM vectorises.  Sub-byte codes are produced into a
per-chunk scratch buffer and packed straight away, so the only large
allocation is the caller's output.

Rounding matches PyTorch bit for bit, in the input's precision, then clamps to
``[qmin, qmax]``: per-tensor ``rint(fma(x, 1/scale, zero_point))`` (one
rounding, through the ``llvm.fma`` intrinsic), as ``torch.quantize_per_tensor``;
per-channel and per-group ``rint(x * (1/scale) + zero_point)`` with the product
rounded first, as ``torch.quantize_per_channel``.  Stochastic rounding is
``floor(x * (1/scale) + zero_point + u)`` with ``u`` a hash of (seed, index).
Loops index zero-based slices so LLVM can drop the negative-index checks and
vectorise.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from lowbit._kernels._bits import pack_run, uniform01, unpack_run
from lowbit._kernels._intrinsics import fma

__all__ = [
    "quantize_kernel", "dequantize_kernel", "dequantize_offset_kernel", "fake_quantize_kernel", "CHUNK", "FUSED",
    "UNFUSED", "STOCHASTIC",
]

CHUNK = 1 << 14
# Rounding modes.  PyTorch's per-tensor quantizer rounds one fused multiply-add,
# its per-channel quantizer rounds x * (1/scale) first and then adds the zero
# point; lowbit follows each so that codes agree bit for bit.
FUSED = 0
UNFUSED = 1
STOCHASTIC = 2


@njit(inline="always", cache=True)
def _quant_segment(x, lo, hi, inv, zp, qmin, qmax, mode, seed, dst, dst0):  # pragma: no cover
    """Quantize x[lo:hi] with one (inv, zp) into dst[lo - dst0 : hi - dst0]."""
    xs = x[lo:hi]
    ds = dst[lo - dst0 : hi - dst0]
    if mode == FUSED:
        for i in range(xs.size):
            ds[i] = min(max(np.rint(fma(xs[i], inv, zp)), qmin), qmax)
    elif mode == UNFUSED:
        for i in range(xs.size):
            ds[i] = min(max(np.rint(xs[i] * inv + zp), qmin), qmax)
    else:
        for i in range(xs.size):
            v = np.floor(xs[i] * inv + zp + uniform01(seed, lo + i))
            ds[i] = min(max(v, qmin), qmax)


@njit(inline="always", cache=True)
def _quant_vector(x, lo, hi, inv, zp, p0, qmin, qmax, mode, seed, dst, dst0):  # pragma: no cover
    """Quantize x[lo:hi] where element lo + k uses parameter p0 + k."""
    m = hi - lo
    xs = x[lo:hi]
    ds = dst[lo - dst0 : hi - dst0]
    ivs = inv[p0 : p0 + m]
    zs = zp[p0 : p0 + m]
    if mode == FUSED:
        for i in range(m):
            ds[i] = min(max(np.rint(fma(xs[i], ivs[i], zs[i])), qmin), qmax)
    elif mode == UNFUSED:
        for i in range(m):
            ds[i] = min(max(np.rint(xs[i] * ivs[i] + zs[i]), qmin), qmax)
    else:
        for i in range(m):
            v = np.floor(xs[i] * ivs[i] + zs[i] + uniform01(seed, lo + i))
            ds[i] = min(max(v, qmin), qmax)


@njit(inline="always", cache=True)
def _segment(e, stop, Q, R, T, N):  # pragma: no cover - compiled
    """End of the segment starting at flat index e, and its first parameter index.

    With ``T == 1`` every element of the segment uses that parameter; with
    ``T > 1`` element ``e + k`` uses parameter ``first + k``.  A ragged layout
    (``N != R``) cuts each run of ``N*T`` elements into ``G = ceil(N/R)`` groups,
    group ``g`` ending at ``min(g*R + R, N)``.
    """
    if N == R:
        RT = R * T
        row = e // RT
        q = row % Q
        if T == 1:
            return min(stop, (row + 1) * RT), q
        t0 = e % T
        return min(stop, e - t0 + T), q * T + t0
    G = (N + R - 1) // R
    NT = N * T
    row = e // NT
    g = (e - row * NT) // T // R
    first = (row % (Q // G) * G + g) * T
    if T == 1:
        return min(stop, row * NT + min(g * R + R, N)), first
    t0 = e % T
    return min(stop, e - t0 + T), first + t0


@njit(inline="always", cache=True)
def _quant_chunk(x, start, stop, inv, zp, Q, R, T, N, qmin, qmax, mode, seed, dst, dst0):  # pragma: no cover
    e = start
    while e < stop:
        end, p = _segment(e, stop, Q, R, T, N)
        if T == 1:
            _quant_segment(x, e, end, inv[p], zp[p], qmin, qmax, mode, seed, dst, dst0)
        else:
            _quant_vector(x, e, end, inv, zp, p, qmin, qmax, mode, seed, dst, dst0)
        e = end


@njit(parallel=True, cache=True)
def quantize_kernel(x, out, inv, zp, Q, R, T, N, qmin, qmax, bits, mode, seed):  # pragma: no cover
    """Quantize the flat float array ``x`` into ``out``.

    ``out`` holds codes (8/16-bit formats) or packed bytes (other widths);
    ``inv`` and ``zp`` are per-parameter ``1/scale`` and zero points in x's dtype.
    """
    n = x.size
    packed = bits != 8 and bits != 16
    fmin = x.dtype.type(qmin)
    fmax = x.dtype.type(qmax)
    nchunks = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunks):
        start = c * CHUNK
        stop = min(n, start + CHUNK)
        if packed:
            scratch = np.empty(CHUNK, np.int32)
            _quant_chunk(x, start, stop, inv, zp, Q, R, T, N, fmin, fmax, mode, seed, scratch, start)
            pack_run(scratch, stop - start, bits, out, start * bits // 8)
        else:
            _quant_chunk(x, start, stop, inv, zp, Q, R, T, N, fmin, fmax, mode, seed, out, 0)


@njit(inline="always", cache=True)
def _dequant_chunk(codes, c0, start, stop, scale, zp, Q, R, T, N, out):  # pragma: no cover
    """out[e] = (codes[e - c0] - zp) * scale for e in [start, stop)."""
    e = start
    while e < stop:
        end, p = _segment(e, stop, Q, R, T, N)
        cs = codes[e - c0 : end - c0]
        os_ = out[e:end]
        if T == 1:
            s = scale[p]
            z = zp[p]
            for i in range(end - e):
                os_[i] = scale.dtype.type(np.int32(cs[i]) - z) * s
        else:
            ss = scale[p : p + end - e]
            zs = zp[p : p + end - e]
            for i in range(end - e):
                os_[i] = ss.dtype.type(np.int32(cs[i]) - zs[i]) * ss[i]
        e = end


@njit(parallel=True, cache=True)
def dequantize_kernel(data, n, out, scale, zp, Q, R, T, N, bits, signed):  # pragma: no cover
    """Dequantize ``n`` codes (unpacked, or packed bytes for sub-byte widths) into ``out``.

    ``scale`` has out's dtype; ``zp`` is int32.
    """
    packed = bits != 8 and bits != 16
    nchunks = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunks):
        start = c * CHUNK
        stop = min(n, start + CHUNK)
        if packed:
            scratch = np.empty(CHUNK, np.int32)
            unpack_run(data, start * bits // 8, stop - start, bits, signed, scratch)
            _dequant_chunk(scratch, start, start, stop, scale, zp, Q, R, T, N, out)
        else:
            _dequant_chunk(data, 0, start, stop, scale, zp, Q, R, T, N, out)


@njit(parallel=True, cache=True)
def fake_quantize_kernel(x, out, inv, zpf, scale, zpi, Q, R, T, N, qmin, qmax, mode, seed):  # pragma: no cover
    """Quantize then dequantize ``x`` into the float array ``out`` chunk by chunk.

    The codes of a chunk are written to ``out`` and turned back into values
    while the chunk is still in cache: one pass over memory, no code array.
    """
    n = x.size
    fmin = x.dtype.type(qmin)
    fmax = x.dtype.type(qmax)
    nchunks = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunks):
        start = c * CHUNK
        stop = min(n, start + CHUNK)
        _quant_chunk(x, start, stop, inv, zpf, Q, R, T, N, fmin, fmax, mode, seed, out, 0)
        _dequant_chunk(out, 0, start, stop, scale, zpi, Q, R, T, N, out)


@njit(inline="always", cache=True)
def _offset_chunk(codes, c0, start, stop, scale, offset, Q, R, T, N, out):  # pragma: no cover
    """out[e] = codes[e - c0] * scale + offset for e in [start, stop) (the product rounded first)."""
    e = start
    while e < stop:
        end, p = _segment(e, stop, Q, R, T, N)
        cs = codes[e - c0 : end - c0]
        os_ = out[e:end]
        if T == 1:
            s = scale[p]
            m = offset[p]
            for i in range(end - e):
                os_[i] = scale.dtype.type(cs[i]) * s + m
        else:
            ss = scale[p : p + end - e]
            ms = offset[p : p + end - e]
            for i in range(end - e):
                os_[i] = ss.dtype.type(cs[i]) * ss[i] + ms[i]
        e = end


@njit(parallel=True, cache=True)
def dequantize_offset_kernel(data, n, out, scale, offset, Q, R, T, N, bits, signed):  # pragma: no cover
    """Dequantize codes with a float zero point: ``code * scale + offset`` (GGUF Q4_1's rule).

    ``scale`` and ``offset`` have out's dtype.
    """
    packed = bits != 8 and bits != 16
    nchunks = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunks):
        start = c * CHUNK
        stop = min(n, start + CHUNK)
        if packed:
            scratch = np.empty(CHUNK, np.int32)
            unpack_run(data, start * bits // 8, stop - start, bits, signed, scratch)
            _offset_chunk(scratch, start, start, stop, scale, offset, Q, R, T, N, out)
        else:
            _offset_chunk(data, 0, start, stop, scale, offset, Q, R, T, N, out)
