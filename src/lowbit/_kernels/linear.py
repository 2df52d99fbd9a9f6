"""Fused weight-only matmul kernels: ``y = x @ dequantize(W).T`` straight from the stored codes.

The weight is read in its lowbit storage (never expanded to a float matrix):
row ``n`` of a ``(N, K)`` weight is ``B`` bytes, and a group of ``G`` columns is
``gb`` consecutive bytes of it (``G / 2`` for 4-bit codes, ``G`` for 8-bit ones).
A per-channel weight is one group of ``K`` columns.  Groups are ragged when ``G``
does not divide ``K``: group ``g`` covers bytes ``[g*gb, min(g*gb + gb, B))`` (the
last one shorter); the kernels take ``gb`` and walk that one loop.

* 4-bit codes: byte ``b`` of a row holds column ``2b`` in its low nibble and
  ``2b + 1`` in its high nibble, so the input is split once per call into its
  even and odd columns (``xe``, ``xo``) and the inner loop over a group's bytes
  is contiguous: ``sum_b lo(b) * xe[b] + hi(b) * xo[b]``.
* Integer formats: a code ``c`` means ``(c - z) * s``; the kernel sums ``u * x``
  over the group with ``u = c + 8`` for signed 4-bit codes (``byte ^ 0x88`` turns
  both two's-complement nibbles into ``c + 8``) or ``u = c`` otherwise, and
  subtracts ``offset * sum(x over the group)`` once per group, then multiplies
  by the group's scale: ``offset = z + 8`` (signed 4-bit) or ``z``.
* Grid formats (nf4, fp4, fp8, MX elements): a code indexes a table of at most
  256 float32 values (``lut``); no offset.

With int8 activations (an opt-in approximation, as llama.cpp's Q8 blocks and ONNX Runtime's accuracy
level 4), :func:`quantize_blocks` quantizes each block of ``A`` input columns (a block lies inside one
weight group; the kernels see it as a group of its own, with the group's scale repeated) to
``q = rint(x * 127 / max|x|)`` with the scale ``max|x| / 127``, and the kernels sum
exact int32 products ``u * q`` per block.  Every product and sum is spelled as ``np.int32`` (Numba
would otherwise widen them to int64) and the unpacked nibble as ``np.uint8``, so that LLVM turns the
loop into 16-bit word dot products (``vpmaddwd``, and ``vpdpwssd`` on AVX512-VNNI/AVX-VNNI CPUs).

Each output row's groups are summed in float32 in the kernel's order (the
result differs from ``F.linear`` of the dequantized weight by float
reassociation only).  For several input rows (``M > 1``) a group's codes are
turned into floats once and reused for every input row.  Rows of the weight are
split into chunks run in parallel (``prange``); each chunk is a plain loop
compiled on its own, which vectorises the inner loops.

Example:
    >>> import numpy as np
    >>> w = np.array([[0x21, 0x43]], np.uint8)  # codes 1, 2, 3, 4 (uint4)
    >>> x = np.ones((1, 4), np.float32)
    >>> out = np.zeros((1, 1), np.float32)
    >>> xe, xo, xs = split_even_odd(x, 2)
    >>> linear_int4(xe, xo, xs, w, np.ones((1, 1), np.float32), np.zeros((1, 1), np.float32), 0, out, 1)
    >>> out.tolist()
    [[10.0]]
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["split_even_odd", "group_sums", "linear_int4", "linear_lut4", "linear_int8", "linear_lut8",
           "quantize_blocks", "linear_int4_q8", "linear_int8_q8"]


def split_even_odd(x: np.ndarray, gb: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Even and odd columns of ``x`` ``(M, K)`` as contiguous float32 arrays, and their sums per group of
    ``gb`` byte positions (``2 * gb`` columns, the last group shorter when ``gb`` does not divide
    ``K / 2``), ``(M, ceil(K / 2 / gb))``.

    Example:
        >>> xe, xo, xs = split_even_odd(np.arange(8, dtype=np.float32).reshape(1, 8), 2)
        >>> xe.tolist(), xo.tolist(), xs.tolist()
        ([[0.0, 2.0, 4.0, 6.0]], [[1.0, 3.0, 5.0, 7.0]], [[6.0, 22.0]])
    """
    m, k = x.shape
    xe = np.empty((m, k // 2), np.float32)
    xo = np.empty((m, k // 2), np.float32)
    xs = np.empty((m, -(-(k // 2) // gb)), np.float32)
    _split(np.ascontiguousarray(x, np.float32), gb, xe, xo, xs)
    return xe, xo, xs


@njit(fastmath=True, nogil=True, cache=True)
def _split(x, gb, xe, xo, xs):  # pragma: no cover - compiled
    m, half = xe.shape
    for r in range(m):
        src, e, o = x[r], xe[r], xo[r]
        for j in range(half):
            e[j] = src[2 * j]
            o[j] = src[2 * j + 1]
        for g in range(xs.shape[1]):
            es = e[g * gb : (g + 1) * gb]
            os_ = o[g * gb : (g + 1) * gb]
            acc = np.float32(0.0)
            for j in range(es.size):
                acc += es[j] + os_[j]
            xs[r, g] = acc


def group_sums(x: np.ndarray, size: int) -> np.ndarray:
    """Sums of ``x`` ``(M, L)`` over runs of ``size`` columns (the last run shorter when ``size`` does not
    divide ``L``), float32 ``(M, ceil(L / size))``.

    Example:
        >>> group_sums(np.ones((2, 6), np.float32), 3).tolist()
        [[3.0, 3.0], [3.0, 3.0]]
        >>> group_sums(np.ones((1, 7), np.float32), 3).tolist()
        [[3.0, 3.0, 1.0]]
    """
    m, length = x.shape
    if length % size == 0:
        return x.reshape(m, length // size, size).sum(axis=2, dtype=np.float32)
    return np.add.reduceat(x, np.arange(0, length, size), axis=1, dtype=np.float32)


def _chunks(n: int, threads: int) -> int:
    return max(1, min(n, 4 * threads))


# --------------------------------------------------------------------------- 4-bit integer codes


@njit(inline="always", cache=True)
def _nibble_dot(rs, es, os_, nb, flip):  # pragma: no cover - compiled
    """``sum_j lo(rs[j]) * es[j] + hi(rs[j]) * os_[j]`` over the first ``nb`` bytes of a group."""
    acc = np.float32(0.0)
    for j in range(nb):
        v = rs[j] ^ flip
        acc += np.float32(v & np.uint8(15)) * es[j] + np.float32(v >> np.uint8(4)) * os_[j]
    return acc


@njit(inline="always", cache=True)
def _unpack_int4(rs, nb, flip, lo, hi):  # pragma: no cover - compiled
    """The low and high nibbles of a group's first ``nb`` bytes (``byte ^ flip``) as float32."""
    for j in range(nb):
        v = rs[j] ^ flip
        lo[j] = np.float32(v & np.uint8(15))
        hi[j] = np.float32(v >> np.uint8(4))


@njit(inline="always", cache=True)
def _add_group_rows(xe, xo, xs, b0, nb, g, s, z, lo, hi, acc):  # pragma: no cover - compiled
    """``acc[m] += (sum_j lo[j] xe[m, b0+j] + hi[j] xo[m, b0+j] - z * xs[m, g]) * s`` for every input row."""
    for m in range(acc.size):
        es = xe[m, b0 : b0 + nb]
        os_ = xo[m, b0 : b0 + nb]
        part = np.float32(0.0)
        for j in range(nb):
            part += lo[j] * es[j] + hi[j] * os_[j]
        acc[m] += (part - z * xs[m, g]) * s


@njit(fastmath=True, nogil=True, cache=True)
def _int4_rows(xe, xo, xs, w, scale, offset, xor, gb, out, n0, n1):  # pragma: no cover - compiled
    m_rows, nbytes = xe.shape
    ng = scale.shape[1]
    flip = np.uint8(xor)
    if m_rows == 1:  # whole groups in one loop of fixed width, then a ragged last group on its own
        xe0, xo0, xs0 = xe[0], xo[0], xs[0]
        full = nbytes // gb
        for n in range(n0, n1):
            row = w[n]
            total = np.float32(0.0)
            for g in range(full):
                b0 = g * gb
                acc = _nibble_dot(row[b0 : b0 + gb], xe0[b0 : b0 + gb], xo0[b0 : b0 + gb], gb, flip)
                total += (acc - offset[n, g] * xs0[g]) * scale[n, g]
            if full < ng:
                b0 = full * gb
                acc = _nibble_dot(row[b0:], xe0[b0:], xo0[b0:], nbytes - b0, flip)
                total += (acc - offset[n, full] * xs0[full]) * scale[n, full]
            out[0, n] = total
        return
    lo = np.empty(gb, np.float32)
    hi = np.empty(gb, np.float32)
    acc = np.zeros(m_rows, np.float32)
    full = nbytes // gb
    for n in range(n0, n1):
        row = w[n]
        acc[:] = 0.0
        for g in range(full):  # whole groups in one loop of fixed width, then a ragged last group on its own
            b0 = g * gb
            _unpack_int4(row[b0 : b0 + gb], gb, flip, lo, hi)
            _add_group_rows(xe, xo, xs, b0, gb, g, scale[n, g], offset[n, g], lo, hi, acc)
        if full < ng:
            b0 = full * gb
            _unpack_int4(row[b0:], nbytes - b0, flip, lo, hi)
            _add_group_rows(xe, xo, xs, b0, nbytes - b0, full, scale[n, full], offset[n, full], lo, hi, acc)
        for m in range(m_rows):
            out[m, n] = acc[m]


@njit(parallel=True, cache=True)
def _int4_parallel(xe, xo, xs, w, scale, offset, xor, gb, out, chunks):  # pragma: no cover - compiled
    n = w.shape[0]
    per = (n + chunks - 1) // chunks
    for c in prange(chunks):
        _int4_rows(xe, xo, xs, w, scale, offset, xor, gb, out, c * per, min(n, (c + 1) * per))


def _group_width(total: int, groups: int, group: int | None) -> int:
    """Bytes (4-bit) or columns (8-bit) per group: ``group`` when given, else ``total / groups`` (equal groups)."""
    return max(1, total // max(groups, 1)) if group is None else int(group)


def linear_int4(xe, xo, xs, w, scale, offset, xor, out, threads, group=None):
    """``out[m, n] = sum_g scale[n, g] * sum_{k in g} (u[n, k] - offset[n, g]) * x[m, k]`` for 4-bit codes.

    Args:
        xe, xo, xs: :func:`split_even_odd` of the float32 input ``(M, K)``.
        w: uint8 ``(N, K / 2)``, two codes per byte (low nibble first).
        scale, offset: float32 ``(N, groups)``.
        xor: ``0x88`` for signed codes (``u = c + 8``), 0 for unsigned ones.
        out: float32 ``(M, N)``, written.
        threads: 1 runs on the calling thread; more splits the rows.
        group: bytes per group (columns / 2); None: ``K / 2 / groups``.  A width that does not
            divide ``K / 2`` makes the last group shorter (ragged groups).
    """
    gb = _group_width(xe.shape[1], scale.shape[1], group)
    if threads > 1:
        _int4_parallel(xe, xo, xs, w, scale, offset, xor, gb, out, _chunks(w.shape[0], threads))
    else:
        _int4_rows(xe, xo, xs, w, scale, offset, xor, gb, out, 0, w.shape[0])


# --------------------------------------------------------------------------- 4-bit grid codes (lookup table)


@njit(inline="always", cache=True)
def _lookup_nibbles(rs, nb, lut, lo, hi):  # pragma: no cover - compiled
    """The table values of a group's first ``nb`` bytes' low and high nibbles."""
    for j in range(nb):
        v = rs[j]
        lo[j] = lut[v & np.uint8(15)]
        hi[j] = lut[v >> np.uint8(4)]


@njit(fastmath=True, nogil=True, cache=True)
def _lut4_rows(xe, xo, w, scale, lut, gb, out, n0, n1):  # pragma: no cover - compiled
    m_rows, nbytes = xe.shape
    ng = scale.shape[1]
    lo = np.empty(gb, np.float32)
    hi = np.empty(gb, np.float32)
    acc = np.zeros(m_rows, np.float32)
    zeros = np.zeros((m_rows, 1), np.float32)  # no offset: the group sums are not needed
    full = nbytes // gb
    for n in range(n0, n1):
        row = w[n]
        acc[:] = 0.0
        for g in range(full):  # whole groups in one loop of fixed width, then a ragged last group on its own
            b0 = g * gb
            _lookup_nibbles(row[b0 : b0 + gb], gb, lut, lo, hi)
            _add_group_rows(xe, xo, zeros, b0, gb, 0, scale[n, g], np.float32(0.0), lo, hi, acc)
        if full < ng:
            b0 = full * gb
            _lookup_nibbles(row[b0:], nbytes - b0, lut, lo, hi)
            _add_group_rows(xe, xo, zeros, b0, nbytes - b0, 0, scale[n, full], np.float32(0.0), lo, hi, acc)
        for m in range(m_rows):
            out[m, n] = acc[m]


@njit(parallel=True, cache=True)
def _lut4_parallel(xe, xo, w, scale, lut, gb, out, chunks):  # pragma: no cover - compiled
    n = w.shape[0]
    per = (n + chunks - 1) // chunks
    for c in prange(chunks):
        _lut4_rows(xe, xo, w, scale, lut, gb, out, c * per, min(n, (c + 1) * per))


def linear_lut4(xe, xo, w, scale, lut, out, threads, group=None):
    """``out[m, n] = sum_g scale[n, g] * sum_{k in g} lut[code[n, k]] * x[m, k]`` for 4-bit grid codes.

    ``lut`` is float32 with 16 entries (the grid, padded); other arguments as :func:`linear_int4`.
    """
    gb = _group_width(xe.shape[1], scale.shape[1], group)
    if threads > 1:
        _lut4_parallel(xe, xo, w, scale, lut, gb, out, _chunks(w.shape[0], threads))
    else:
        _lut4_rows(xe, xo, w, scale, lut, gb, out, 0, w.shape[0])


# --------------------------------------------------------------------------- 8-bit codes


@njit(inline="always", cache=True)
def _code_dot(rs, xg, nk):  # pragma: no cover - compiled
    """``sum_j rs[j] * xg[j]`` over the first ``nk`` columns of a group (codes as float32)."""
    acc = np.float32(0.0)
    for j in range(nk):
        acc += np.float32(rs[j]) * xg[j]
    return acc


@njit(inline="always", cache=True)
def _add_code_rows(x, xs, c0, nk, g, s, z, vals, acc):  # pragma: no cover - compiled
    """``acc[m] += (sum_j vals[j] x[m, c0+j] - z * xs[m, g]) * s`` for every input row."""
    for m in range(acc.size):
        xg = x[m, c0 : c0 + nk]
        part = np.float32(0.0)
        for j in range(nk):
            part += vals[j] * xg[j]
        acc[m] += (part - z * xs[m, g]) * s


@njit(fastmath=True, nogil=True, cache=True)
def _int8_rows(x, xs, w, scale, offset, gk, out, n0, n1):  # pragma: no cover - compiled
    m_rows, k = x.shape
    ng = scale.shape[1]
    if m_rows == 1:  # whole groups in one loop of fixed width, then a ragged last group on its own
        x0, xs0 = x[0], xs[0]
        full = k // gk
        for n in range(n0, n1):
            row = w[n]
            total = np.float32(0.0)
            for g in range(full):
                c0 = g * gk
                acc = _code_dot(row[c0 : c0 + gk], x0[c0 : c0 + gk], gk)
                total += (acc - offset[n, g] * xs0[g]) * scale[n, g]
            if full < ng:
                c0 = full * gk
                acc = _code_dot(row[c0:], x0[c0:], k - c0)
                total += (acc - offset[n, full] * xs0[full]) * scale[n, full]
            out[0, n] = total
        return
    vals = np.empty(gk, np.float32)
    acc = np.zeros(m_rows, np.float32)
    full = k // gk
    for n in range(n0, n1):
        row = w[n]
        acc[:] = 0.0
        for g in range(full):  # whole groups in one loop of fixed width, then a ragged last group on its own
            c0 = g * gk
            rs = row[c0 : c0 + gk]
            for j in range(gk):
                vals[j] = np.float32(rs[j])
            _add_code_rows(x, xs, c0, gk, g, scale[n, g], offset[n, g], vals, acc)
        if full < ng:
            c0 = full * gk
            rs = row[c0:]
            for j in range(k - c0):
                vals[j] = np.float32(rs[j])
            _add_code_rows(x, xs, c0, k - c0, full, scale[n, full], offset[n, full], vals, acc)
        for m in range(m_rows):
            out[m, n] = acc[m]


@njit(parallel=True, cache=True)
def _int8_parallel(x, xs, w, scale, offset, gk, out, chunks):  # pragma: no cover - compiled
    n = w.shape[0]
    per = (n + chunks - 1) // chunks
    for c in prange(chunks):
        _int8_rows(x, xs, w, scale, offset, gk, out, c * per, min(n, (c + 1) * per))


def linear_int8(x, xs, w, scale, offset, out, threads, group=None):
    """``out[m, n] = sum_g scale[n, g] * sum_{k in g} (c[n, k] - offset[n, g]) * x[m, k]`` for 8-bit codes.

    Args:
        x: float32 ``(M, K)``; ``xs`` its :func:`group_sums` per group.
        w: int8 or uint8 codes ``(N, K)``.
        scale, offset, out, threads: as :func:`linear_int4`.
        group: columns per group (the last group shorter when it does not divide ``K``);
            None: ``K / groups``.
    """
    gk = _group_width(x.shape[1], scale.shape[1], group)
    if threads > 1:
        _int8_parallel(x, xs, w, scale, offset, gk, out, _chunks(w.shape[0], threads))
    else:
        _int8_rows(x, xs, w, scale, offset, gk, out, 0, w.shape[0])


@njit(fastmath=True, nogil=True, cache=True)
def _lut8_rows(x, w, scale, lut, gk, out, n0, n1):  # pragma: no cover - compiled
    m_rows, k = x.shape
    ng = scale.shape[1]
    vals = np.empty(gk, np.float32)
    acc = np.zeros(m_rows, np.float32)
    zeros = np.zeros((m_rows, 1), np.float32)  # no offset: the group sums are not needed
    full = k // gk
    for n in range(n0, n1):
        row = w[n]
        acc[:] = 0.0
        for g in range(full):  # whole groups in one loop of fixed width, then a ragged last group on its own
            c0 = g * gk
            rs = row[c0 : c0 + gk]
            for j in range(gk):
                vals[j] = lut[rs[j]]
            _add_code_rows(x, zeros, c0, gk, 0, scale[n, g], np.float32(0.0), vals, acc)
        if full < ng:
            c0 = full * gk
            rs = row[c0:]
            for j in range(k - c0):
                vals[j] = lut[rs[j]]
            _add_code_rows(x, zeros, c0, k - c0, 0, scale[n, full], np.float32(0.0), vals, acc)
        for m in range(m_rows):
            out[m, n] = acc[m]


@njit(parallel=True, cache=True)
def _lut8_parallel(x, w, scale, lut, gk, out, chunks):  # pragma: no cover - compiled
    n = w.shape[0]
    per = (n + chunks - 1) // chunks
    for c in prange(chunks):
        _lut8_rows(x, w, scale, lut, gk, out, c * per, min(n, (c + 1) * per))


def linear_lut8(x, w, scale, lut, out, threads, group=None):
    """``out[m, n] = sum_g scale[n, g] * sum_{k in g} lut[code[n, k]] * x[m, k]`` for 8-bit grid codes
    (``lut`` float32 with 256 entries); other arguments as :func:`linear_int8`."""
    gk = _group_width(x.shape[1], scale.shape[1], group)
    if threads > 1:
        _lut8_parallel(x, w, scale, lut, gk, out, _chunks(w.shape[0], threads))
    else:
        _lut8_rows(x, w, scale, lut, gk, out, 0, w.shape[0])


# --------------------------------------------------------------------------- int8 activations


@njit(nogil=True, cache=True)
def _quantize_blocks(x, block, q, sx, qs):  # pragma: no cover - compiled
    m, k = x.shape
    finite = np.float32(0.0)
    for r in range(m):
        for b in range(sx.shape[1]):  # the last block is shorter when block does not divide k
            src = x[r, b * block : min((b + 1) * block, k)]
            dst = q[r, b * block : min((b + 1) * block, k)]
            amax = np.float32(0.0)
            for j in range(src.size):
                finite += src[j] - src[j]  # NaN once any value is NaN or infinite
                amax = max(amax, abs(src[j]))
            inv = np.float32(127.0) / amax if amax > 0 else np.float32(0.0)
            total = np.int32(0)
            for j in range(src.size):
                c = np.int32(np.rint(src[j] * inv))
                dst[j] = np.int8(c)
                total = np.int32(total + c)
            s = amax / np.float32(127.0)
            sx[r, b] = s
            qs[r, b] = s * np.float32(total)
    return finite == 0


def quantize_blocks(x: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Quantize ``x`` ``(M, K)`` to int8 per block of ``block`` columns (symmetric, round half to even).

    Returns ``(q, sx, qs)``: the int8 codes ``(M, K)``; each block's scale ``max|x| / 127`` (0 for an
    all-zero block), float32 ``(M, ceil(K / block))`` (the last block shorter when ``block`` does not
    divide ``K``); and each block's dequantized sum ``sx * sum(q)``
    (same shape).  None when ``x`` holds a NaN or an infinity (the caller then keeps the float path,
    which propagates them).

    Example:
        >>> q, sx, qs = quantize_blocks(np.array([[1.0, -2.0, 0.0, 0.0]], np.float32), 2)
        >>> q.tolist(), sx.tolist(), round(float(qs[0, 0]), 4)  # (64 - 127) / 127 * 2
        ([[64, -127, 0, 0]], [[0.015748031437397003, 0.0]], -0.9921)
    """
    m, k = x.shape
    q = np.empty((m, k), np.int8)
    sx = np.empty((m, -(-k // block)), np.float32)
    qs = np.empty((m, -(-k // block)), np.float32)
    if not _quantize_blocks(np.ascontiguousarray(x, np.float32), block, q, sx, qs):
        return None
    return q, sx, qs


@njit(inline="always", cache=True)
def _dot_u4_i8(rs, es, os_, flip):  # pragma: no cover - compiled
    """Exact int32 sum of a group's nibbles times int8 activations (``u = byte ^ flip``; low nibble with ``es``,
    high with ``os_``).  Every product and sum is wrapped in int32: Numba types ``int32 * int32`` as int64,
    which vectorises to 64-bit lanes; in int32 LLVM emits word dot products (vpmaddwd, vpdpwssd)."""
    dot = np.int32(0)
    for j in range(rs.size):
        v = np.uint8(rs[j] ^ flip)  # a bare ``rs[j] ^ flip`` is int64, and so is the rest of the loop
        dot = np.int32(dot + np.int32(np.int32(v & np.uint8(15)) * np.int32(es[j]))
                       + np.int32(np.int32(v >> np.uint8(4)) * np.int32(os_[j])))
    return dot


@njit(inline="always", cache=True)
def _dot_i8_i8(rs, xq):  # pragma: no cover - compiled
    """Exact int32 sum of int8 codes times int8 activations (int32 throughout, as in :func:`_dot_u4_i8`)."""
    dot = np.int32(0)
    for j in range(rs.size):
        dot = np.int32(dot + np.int32(np.int32(rs[j]) * np.int32(xq[j])))
    return dot


@njit(fastmath=True, nogil=True, cache=True)
def _int4_q8_row1(qe, qo, sx, qs, w, scale, offset, xor, gb, out, n0, n1):  # pragma: no cover - compiled
    ng = scale.shape[1]
    nbytes = qe.shape[1]
    flip = np.uint8(xor)
    qe0, qo0, sx0, qs0 = qe[0], qo[0], sx[0], qs[0]
    full = nbytes // gb  # whole groups in one loop of fixed width, then a ragged last group on its own
    for n in range(n0, n1):
        row = w[n]
        total = np.float32(0.0)
        for g in range(full):
            b0 = g * gb
            dot = _dot_u4_i8(row[b0 : b0 + gb], qe0[b0 : b0 + gb], qo0[b0 : b0 + gb], flip)
            total += (np.float32(dot) * sx0[g] - offset[n, g] * qs0[g]) * scale[n, g]
        if full < ng:
            b0 = full * gb
            dot = _dot_u4_i8(row[b0:], qe0[b0:], qo0[b0:], flip)
            total += (np.float32(dot) * sx0[full] - offset[n, full] * qs0[full]) * scale[n, full]
        out[0, n] = total


@njit(fastmath=True, nogil=True, cache=True)
def _int4_q8_rows(qe, qo, sx, qs, w, scale, offset, xor, gb, out, n0, n1):  # pragma: no cover - compiled
    m_rows, nbytes = qe.shape
    if m_rows == 1:  # a scalar accumulator: small groups pay no per-group array update
        _int4_q8_row1(qe, qo, sx, qs, w, scale, offset, xor, gb, out, n0, n1)
        return
    ng = scale.shape[1]
    flip = np.uint8(xor)
    acc = np.zeros(m_rows, np.float32)
    full = nbytes // gb
    for n in range(n0, n1):
        row = w[n]
        acc[:] = 0.0
        for g in range(ng):
            b0 = g * gb
            nb = gb if g < full else nbytes - b0  # the last group is shorter when gb does not divide the row
            rs = row[b0 : b0 + nb]
            s, z = scale[n, g], offset[n, g]
            for m in range(m_rows):  # each row re-reads the group's bytes from L1 (faster than unpacking once)
                dot = _dot_u4_i8(rs, qe[m, b0 : b0 + nb], qo[m, b0 : b0 + nb], flip)
                acc[m] += (np.float32(dot) * sx[m, g] - z * qs[m, g]) * s
        for m in range(m_rows):
            out[m, n] = acc[m]


@njit(parallel=True, cache=True)
def _int4_q8_parallel(qe, qo, sx, qs, w, scale, offset, xor, gb, out, chunks):  # pragma: no cover - compiled
    n = w.shape[0]
    per = (n + chunks - 1) // chunks
    for c in prange(chunks):
        _int4_q8_rows(qe, qo, sx, qs, w, scale, offset, xor, gb, out, c * per, min(n, (c + 1) * per))


def linear_int4_q8(q, sx, qs, w, scale, offset, xor, out, threads, group=None):
    """:func:`linear_int4` on int8 activations: ``out[m, n] = sum_g scale[n, g] * (sx[m, g] * sum_{k in g}
    u[n, k] * q[m, k] - offset[n, g] * qs[m, g])``, the inner sums exact in int32.

    Args:
        q, sx, qs: :func:`quantize_blocks` of the input, one block per group (a wider weight group is
            passed as several groups with repeated scales and offsets).
        w, scale, offset, xor, out, threads: as :func:`linear_int4`.
        group: columns per block (even; the last block shorter when it does not divide ``K``);
            None: ``K / blocks``.

    Example:
        >>> w = np.array([[0x21, 0x43]], np.uint8)  # codes 1, 2, 3, 4 (uint4)
        >>> q, sx, qs = quantize_blocks(np.array([[1.0, 1.0, 1.0, 1.0]], np.float32), 4)
        >>> out = np.zeros((1, 1), np.float32)
        >>> linear_int4_q8(q, sx, qs, w, np.ones((1, 1), np.float32), np.zeros((1, 1), np.float32), 0, out, 1)
        >>> out.tolist()
        [[10.0]]
    """
    qe, qo = np.ascontiguousarray(q[:, 0::2]), np.ascontiguousarray(q[:, 1::2])
    gb = _group_width(qe.shape[1], scale.shape[1], None if group is None else group // 2)
    if threads > 1:
        _int4_q8_parallel(qe, qo, sx, qs, w, scale, offset, xor, gb, out, _chunks(w.shape[0], threads))
    else:
        _int4_q8_rows(qe, qo, sx, qs, w, scale, offset, xor, gb, out, 0, w.shape[0])


@njit(fastmath=True, nogil=True, cache=True)
def _int8_q8_row1(q, sx, qs, w, scale, offset, gk, out, n0, n1):  # pragma: no cover - compiled
    ng = scale.shape[1]
    k = q.shape[1]
    q0, sx0, qs0 = q[0], sx[0], qs[0]
    full = k // gk  # whole groups in one loop of fixed width, then a ragged last group on its own
    for n in range(n0, n1):
        row = w[n]
        total = np.float32(0.0)
        for g in range(full):
            c0 = g * gk
            dot = _dot_i8_i8(row[c0 : c0 + gk], q0[c0 : c0 + gk])
            total += (np.float32(dot) * sx0[g] - offset[n, g] * qs0[g]) * scale[n, g]
        if full < ng:
            c0 = full * gk
            dot = _dot_i8_i8(row[c0:], q0[c0:])
            total += (np.float32(dot) * sx0[full] - offset[n, full] * qs0[full]) * scale[n, full]
        out[0, n] = total


@njit(fastmath=True, nogil=True, cache=True)
def _int8_q8_rows(q, sx, qs, w, scale, offset, gk, out, n0, n1):  # pragma: no cover - compiled
    m_rows, k = q.shape
    if m_rows == 1:
        _int8_q8_row1(q, sx, qs, w, scale, offset, gk, out, n0, n1)
        return
    ng = scale.shape[1]
    acc = np.zeros(m_rows, np.float32)
    full = k // gk
    for n in range(n0, n1):
        row = w[n]
        acc[:] = 0.0
        for g in range(ng):
            c0 = g * gk
            nk = gk if g < full else k - c0  # the last group is shorter when gk does not divide the row
            rs = row[c0 : c0 + nk]
            s, z = scale[n, g], offset[n, g]
            for m in range(m_rows):
                dot = _dot_i8_i8(rs, q[m, c0 : c0 + nk])
                acc[m] += (np.float32(dot) * sx[m, g] - z * qs[m, g]) * s
        for m in range(m_rows):
            out[m, n] = acc[m]


@njit(parallel=True, cache=True)
def _int8_q8_parallel(q, sx, qs, w, scale, offset, gk, out, chunks):  # pragma: no cover - compiled
    n = w.shape[0]
    per = (n + chunks - 1) // chunks
    for c in prange(chunks):
        _int8_q8_rows(q, sx, qs, w, scale, offset, gk, out, c * per, min(n, (c + 1) * per))


def linear_int8_q8(q, sx, qs, w, scale, offset, out, threads, group=None):
    """:func:`linear_int8` on int8 activations (:func:`quantize_blocks`, one block per group), the inner
    sums exact in int32; other arguments as :func:`linear_int8` (``group``: columns per block).

    Example:
        >>> q, sx, qs = quantize_blocks(np.array([[2.0, -1.0]], np.float32), 2)
        >>> out = np.zeros((1, 1), np.float32)
        >>> w = np.array([[3, 4]], np.int8)
        >>> linear_int8_q8(q, sx, qs, w, np.ones((1, 1), np.float32), np.zeros((1, 1), np.float32), out, 1)
        >>> round(float(out[0, 0]), 4)  # 3 * 2 - 4 * (64 / 127 * 2)
        1.9685
    """
    gk = _group_width(q.shape[1], scale.shape[1], group)
    if threads > 1:
        _int8_q8_parallel(q, sx, qs, w, scale, offset, gk, out, _chunks(w.shape[0], threads))
    else:
        _int8_q8_rows(q, sx, qs, w, scale, offset, gk, out, 0, w.shape[0])
