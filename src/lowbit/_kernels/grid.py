"""Kernels for grid formats (low-bit floats, codebooks): rounding to the nearest grid value.

A grid format's code ``c`` stands for ``grid[c]`` (``grid`` sorted ascending).
Quantizing ``x`` with scale ``s`` computes ``y = x * (1/s)`` in the input's
precision, then the code of the nearest grid value.  The rule, fixed by
:func:`grid_tables`: ``y`` below the midpoint ``(grid[k] + grid[k+1]) / 2``
(taken in float64) gets a code <= ``k``, above it a code > ``k``, and exactly
on it the tie code ``tie[k]``; values beyond the ends saturate.  Equivalently,
the code is the number of *thresholds* ``t_k <= y``, where ``t_k`` is the
smallest number of y's dtype that lies above midpoint ``k``, or on it when its
tie goes up (:func:`thresholds`); comparisons against them are exact.

:func:`rounding_plan` picks, once per grid and input dtype, how the kernels
find that code:

* ``FLOAT``: the grid is a sign/exponent/mantissa format (``M >= 1`` mantissa
  bits, smallest normal exponent ``emin``, ``kmax`` positive values, ties to the
  even mantissa).  The magnitude index is computed directly:
  ``E = max(floor(log2 a), emin)`` from the exponent bits of ``a = min(|y|, top)``,
  ``k = (E - emin) * 2^M + rint(a * 2^(M - E))`` (an exact power-of-two scaling,
  so ``rint``'s ties-to-even is the even mantissa), code ``zero ± k``.  The
  structure is recognised from the rule itself, so any float grid (fp8, fp6,
  fp4, the elements of MX formats) takes this path and a grid that merely
  resembles one does not.
* ``COUNT``: small grids (nf4 and other codebooks up to ``COUNT_MAX``
  thresholds): ``sum_k [y >= t_k]``, one vectorised pass per threshold.
* ``SEARCH``: anything else: a branch-free binary search over the thresholds.

Each chunk of the flat tensor is first scaled into a scratch buffer (the
chunk/segment walk over the (P, Q, R, T) block layout of
:mod:`lowbit._kernels.quant`), then rounded in one contiguous loop, then packed.

Example:
    >>> import numpy as np
    >>> from lowbit._kernels.grid import grid_tables
    >>> from lowbit.formats import get_qtype
    >>> g, mids, tie = grid_tables(get_qtype("fp4_e2m1"))
    >>> float(mids[8]), int(tie[8])  # 0.75 lies between 0.5 (code 8) and 1.0 (code 9)
    (0.75, 9)
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from lowbit._kernels._bits import pack_run, unpack_run
from lowbit._kernels._floatbits import exponent, pow2
from lowbit._kernels.quant import CHUNK, _segment
from lowbit.errors import InputTypeError
from lowbit.formats import QType

__all__ = [
    "grid_tables",
    "thresholds",
    "rounding_plan",
    "RoundingPlan",
    "quantize_grid_kernel",
    "dequantize_grid_kernel",
    "fake_quantize_grid_kernel",
    "FLOAT",
    "COUNT",
    "SEARCH",
    "COUNT_MAX",
]

FLOAT, COUNT, SEARCH = 0, 1, 2
COUNT_MAX = 32
"""Largest number of thresholds rounded by counting; longer grids use the binary search."""

# (mantissa field bits, exponent bias, bit width) of the input dtypes the kernels see
_FLOAT_LAYOUT = {np.dtype(np.float32): (23, 127, 32), np.dtype(np.float64): (52, 1023, 64)}


@lru_cache(maxsize=64)
def grid_tables(qtype: QType) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid, midpoints, tie codes) of a grid format, float64/float64/int32, read-only.

    A value exactly between codes ``k`` and ``k + 1`` goes to the one of even
    parity: for ``kind="float"`` parity counts from the code of zero, which is
    the even *mantissa* of IEEE round-to-nearest-even (the grid holds one zero,
    so index parity alone would flip on the positive side); for codebooks it is
    the even code itself.

    Example:
        >>> from lowbit.formats import get_qtype
        >>> grid, mids, tie = grid_tables(get_qtype("nf4"))
        >>> grid.size, mids.size, tie.tolist()[:4]
        (16, 15, [0, 2, 2, 4])
    """
    grid = np.asarray(qtype.grid, np.float64)
    mids = (grid[:-1] + grid[1:]) / 2
    ref = int(np.searchsorted(grid, 0.0)) if qtype.kind == "float" else 0
    k = np.arange(mids.size, dtype=np.int32)
    tie = np.where((k - ref) % 2 == 0, k, k + 1).astype(np.int32)
    for a in (grid, mids, tie):
        a.flags.writeable = False
    return grid, mids, tie


def _input_dtype(dtype: np.dtype | type) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in _FLOAT_LAYOUT:
        raise InputTypeError(f"grid kernels round float32 or float64 values, got dtype {dt}; convert the input first")
    return dt


def thresholds(mids: np.ndarray, tie: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """The rounding rule as thresholds of ``dtype``: code = number of ``t_k <= y``.

    ``t_k`` is the smallest ``dtype`` number above ``mids[k]`` (float64), or
    equal to it when the tie goes up (``tie[k] == k + 1``), so that for every
    ``y`` of that dtype ``y >= t_k`` holds exactly when ``y`` rounds above code ``k``.

    Args:
        mids: float64 midpoints, ascending (from :func:`grid_tables`).
        tie: int32 tie codes, ``k`` or ``k + 1`` for each midpoint.
        dtype: float32 or float64, the dtype of the scaled inputs.

    Returns:
        A read-only array of ``dtype``, non-decreasing.

    Raises:
        InputTypeError: ``dtype`` is not float32 or float64.

    Example:
        >>> t = thresholds(np.array([0.25, 0.75]), np.array([0, 2], np.int32), np.float32)
        >>> [float(v) for v in t]  # 0.25 ties down, so only values above it count; 0.75 ties up
        [0.2500000298023224, 0.75]
    """
    dt = _input_dtype(dtype)
    mids = np.asarray(mids, np.float64)
    up = np.asarray(tie) == np.arange(mids.size) + 1
    with np.errstate(over="ignore"):
        c = mids.astype(dt)
    back = c.astype(np.float64)
    bump = (back < mids) | ((back == mids) & ~up)
    t = np.where(bump, np.nextafter(c, dt.type(np.inf)), c).astype(dt)
    t.flags.writeable = False
    return t


def _float_structure(mids: np.ndarray, tie: np.ndarray) -> tuple[int, int, int, float] | None:
    """(mantissa bits M >= 1, emin, kmax, top) when the rule is that of a float grid, else None.

    The candidate grid ``0, ±k * 2^(emin-M) (k <= 2^M), ±(1 + m/2^M) 2^E ...`` with its
    float64 midpoints and even-mantissa ties must reproduce ``mids`` and ``tie`` exactly.
    """
    nm = mids.size
    if nm < 2 or nm % 2:
        return None
    kmax = nm // 2
    smallest = 2.0 * float(mids[kmax])  # the grid's smallest positive value (exact for float grids)
    frac, exp = math.frexp(smallest) if smallest > 0 else (0.0, 0)
    if frac != 0.5 or float(mids[kmax - 1]) != -float(mids[kmax]):
        return None
    k = np.arange(1, kmax + 1, dtype=np.int64)
    for m_bits in range(1, 53):
        if (1 << m_bits) > 2 * kmax + 2 and m_bits > 1:
            break  # every further M describes the same subnormal-only grid
        emin = exp - 1 + m_bits  # smallest = 2^(emin - M)
        binade = np.maximum((k >> m_bits) - 1, 0)
        if emin - m_bits + int(binade[-1]) > 1023:
            continue  # far more binades than float64 has
        mant = np.where(k < (1 << m_bits), k, (1 << m_bits) + (k & ((1 << m_bits) - 1)))
        pos = np.ldexp(mant.astype(np.float64), (emin - m_bits + binade).astype(np.int32))
        grid = np.concatenate([-pos[::-1], [0.0], pos])
        with np.errstate(over="ignore", invalid="ignore"):
            canon_mids = (grid[:-1] + grid[1:]) / 2
        j = np.arange(nm)
        canon_tie = np.where((j - kmax) % 2 == 0, j, j + 1)
        if np.array_equal(canon_mids, mids) and np.array_equal(canon_tie, tie):
            return m_bits, emin, kmax, float(pos[-1])
    return None


class RoundingPlan(NamedTuple):
    """How the kernels round scaled values of one dtype to one grid.

    Attributes:
        mode: ``FLOAT``, ``COUNT`` or ``SEARCH`` (see the module docstring).
        table: ``[top]`` for FLOAT, else the thresholds (padded with +inf to
            ``2^steps - 1`` entries for SEARCH), in the input dtype.
        params: int64 ``[mode, code of zero, emin, M, steps]`` (unused entries 0).
    """

    mode: int
    table: np.ndarray
    params: np.ndarray


@lru_cache(maxsize=128)
def _plan(mids_bytes: bytes, tie_bytes: bytes, dtype_str: str) -> RoundingPlan:
    mids = np.frombuffer(mids_bytes, np.float64)
    tie = np.frombuffer(tie_bytes, np.int32)
    dt = np.dtype(dtype_str)
    fb, bias, _ = _FLOAT_LAYOUT[dt]
    found = _float_structure(mids, tie)
    if found is not None:
        m_bits, emin, kmax, top = found
        e_top = math.frexp(top)[1] - 1
        grid_exact = dt == np.float64 or (m_bits <= fb and float(np.float32(top)) == top and emin - m_bits >= -149)
        if grid_exact and emin >= 1 - bias and m_bits - emin <= bias and m_bits - e_top >= 1 - bias:
            table = np.array([top], dt)
            return RoundingPlan(FLOAT, table, np.array([FLOAT, kmax, emin, m_bits, 0], np.int64))
    t = thresholds(mids, tie, dt)
    if t.size <= COUNT_MAX:
        return RoundingPlan(COUNT, t, np.array([COUNT, 0, 0, 0, 0], np.int64))
    steps = int(t.size).bit_length()
    padded = np.full((1 << steps) - 1, np.inf, dt)
    padded[: t.size] = t
    return RoundingPlan(SEARCH, padded, np.array([SEARCH, 0, 0, 0, steps], np.int64))


def rounding_plan(mids: np.ndarray, tie: np.ndarray, dtype: np.dtype | type) -> RoundingPlan:
    """The kernels' plan for rounding ``dtype`` values by the rule ``(mids, tie)`` (cached).

    Args:
        mids, tie: the rule, from :func:`grid_tables`.
        dtype: float32 or float64.

    Returns:
        A :class:`RoundingPlan`.

    Raises:
        InputTypeError: ``dtype`` is not float32 or float64.

    Example:
        >>> from lowbit.formats import get_qtype
        >>> _, mids, tie = grid_tables(get_qtype("fp8_e4m3"))
        >>> plan = rounding_plan(mids, tie, np.float32)
        >>> plan.mode == FLOAT, plan.params.tolist()  # zero at code 126, emin -6, 3 mantissa bits
        (True, [0, 126, -6, 3, 0])
    """
    mids = np.ascontiguousarray(mids, np.float64)
    tie = np.ascontiguousarray(tie, np.int32)
    return _plan(mids.tobytes(), tie.tobytes(), _input_dtype(dtype).str)


@njit(inline="always", cache=True)
def _scaled_chunk(x, start, stop, inv, Q, R, T, N, ys):  # pragma: no cover - compiled
    """ys[e - start] = x[e] * inv[param of e] for e in [start, stop), in x's dtype."""
    e = start
    while e < stop:
        end, p = _segment(e, stop, Q, R, T, N)
        xs = x[e:end]
        ds = ys[e - start : end - start]
        if T == 1:
            iv = inv[p]
            for i in range(end - e):
                ds[i] = xs[i] * iv
        else:
            ivs = inv[p : p + end - e]
            for i in range(end - e):
                ds[i] = xs[i] * ivs[i]
        e = end


@njit(inline="always", cache=True)
def _round_chunk(ys, m, table, params, codes):  # pragma: no cover - compiled
    """Grid codes of ys[:m] into codes[:m] (int32) by the plan (table, params).

    The FLOAT loop keeps every integer in int32 (Numba widens int32 arithmetic
    to int64, whose float conversions AVX2 cannot vectorise); COUNT adds four
    comparisons per pass over the chunk.
    """
    mode = params[0]
    if mode == FLOAT:
        top = table[0]
        zero = np.int32(params[1])
        emin = np.int32(params[2])
        mb = np.int32(params[3])
        for i in range(m):
            y = ys[i]
            a = min(abs(y), top)
            e = max(np.int32(exponent(a)), emin)
            n = np.int32(np.rint(a * pow2(mb - e, a)))
            k = np.int32(np.int32(e - emin) << mb) + n
            codes[i] = np.int32(zero - k) if y < 0 else np.int32(zero + k)
    elif mode == COUNT:
        nt = table.size
        for i in range(m):
            codes[i] = 0
        j = 0
        while j + 4 <= nt:
            t0, t1, t2, t3 = table[j], table[j + 1], table[j + 2], table[j + 3]
            for i in range(m):
                y = ys[i]
                codes[i] += np.int32(y >= t0) + np.int32(y >= t1) + np.int32(y >= t2) + np.int32(y >= t3)
            j += 4
        while j < nt:
            t = table[j]
            for i in range(m):
                codes[i] += np.int32(ys[i] >= t)
            j += 1
    else:
        steps = params[4]
        for i in range(m):
            y = ys[i]
            lo = 0
            w = 1 << steps
            for _ in range(steps):
                w >>= 1
                lo += w if table[lo + w - 1] <= y else 0
            codes[i] = lo


@njit(inline="always", cache=True)
def _pack_unsigned(codes, count, bits, out, byte0):  # pragma: no cover - compiled
    """Pack codes[:count] from byte ``byte0`` on; 6-bit codes four at a time (3 bytes), others via pack_run."""
    if bits != 6:
        pack_run(codes, count, bits, out, byte0)
        return
    full = count // 4
    ob = out[byte0 : byte0 + 3 * full]
    for j in range(full):
        cs = codes[4 * j : 4 * j + 4]
        c1 = cs[1]
        c2 = cs[2]
        ob[3 * j] = (cs[0] | (c1 << 6)) & 255
        ob[3 * j + 1] = ((c1 >> 2) | (c2 << 4)) & 255
        ob[3 * j + 2] = ((c2 >> 4) | (cs[3] << 2)) & 255
    if count > 4 * full:
        pack_run(codes[4 * full :], count - 4 * full, 6, out, byte0 + 3 * full)


@njit(parallel=True, cache=True)
def _quantize_grid(x, out, inv, table, params, Q, R, T, N, bits):  # pragma: no cover - compiled
    n = x.size
    packed = bits != 8 and bits != 16
    nchunks = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunks):
        start = c * CHUNK
        stop = min(n, start + CHUNK)
        ys = np.empty(CHUNK, x.dtype)
        codes = np.empty(CHUNK, np.int32)
        _scaled_chunk(x, start, stop, inv, Q, R, T, N, ys)
        _round_chunk(ys, stop - start, table, params, codes)
        if packed:
            _pack_unsigned(codes, stop - start, bits, out, start * bits // 8)
        else:
            os_ = out[start:stop]
            for i in range(stop - start):
                os_[i] = codes[i]


def quantize_grid_kernel(x, out, inv, mids, tie, Q, R, T, N, bits):
    """Grid codes of ``x * inv`` into ``out`` (codes for 8/16-bit formats, else packed bytes).

    Args:
        x: flat float32/float64 array.
        out: uint8 codes, or packed bytes for other widths.
        inv: per-parameter ``1/scale`` in x's dtype.
        mids, tie: the rounding rule (:func:`grid_tables`).
        Q, R, T, N: the block layout's ``dims`` (:func:`lowbit.granularity.plan`).
        bits: code width.

    Example:
        >>> from lowbit.formats import get_qtype
        >>> _, mids, tie = grid_tables(get_qtype("fp8_e4m3"))
        >>> out = np.empty(3, np.uint8)
        >>> quantize_grid_kernel(np.array([0.0, 1.0, -448.0], np.float32), out, np.ones(1, np.float32),
        ...                      mids, tie, 1, 3, 1, 3, 8)
        >>> out.tolist()
        [126, 182, 0]
    """
    plan = rounding_plan(mids, tie, x.dtype)
    _quantize_grid(x, out, inv, plan.table, plan.params, Q, R, T, N, bits)


@njit(inline="always", cache=True)
def _values_chunk(codes, c0, start, stop, scale, grid, Q, R, T, N, out):  # pragma: no cover
    """out[e] = grid[codes[e - c0]] * scale for e in [start, stop)."""
    e = start
    while e < stop:
        end, p = _segment(e, stop, Q, R, T, N)
        cs = codes[e - c0 : end - c0]
        os_ = out[e:end]
        if T == 1:
            s = scale[p]
            for i in range(end - e):
                os_[i] = grid[cs[i]] * s
        else:
            ss = scale[p : p + end - e]
            for i in range(end - e):
                os_[i] = grid[cs[i]] * ss[i]
        e = end


@njit(inline="always", cache=True)
def _unpack_unsigned(data, byte0, count, bits, codes):  # pragma: no cover - compiled
    """Unsigned codes from byte ``byte0`` on; 6-bit codes four at a time (3 bytes), others via unpack_run."""
    if bits != 6:
        unpack_run(data, byte0, count, bits, False, codes)
        return
    full = count // 4
    db = data[byte0 : byte0 + 3 * full]
    for j in range(full):
        b0 = np.int32(db[3 * j])
        b1 = np.int32(db[3 * j + 1])
        b2 = np.int32(db[3 * j + 2])
        cs = codes[4 * j : 4 * j + 4]
        cs[0] = b0 & 63
        cs[1] = (b0 >> 6) | ((b1 & 15) << 2)
        cs[2] = (b1 >> 4) | ((b2 & 3) << 4)
        cs[3] = b2 >> 2
    if count > 4 * full:
        unpack_run(data, byte0 + 3 * full, count - 4 * full, 6, False, codes[4 * full :])


@njit(parallel=True, cache=True)
def dequantize_grid_kernel(data, n, out, scale, grid, Q, R, T, N, bits):  # pragma: no cover - compiled
    """``out = grid[code] * scale`` for ``n`` codes; ``grid`` and ``scale`` have out's dtype."""
    packed = bits != 8 and bits != 16
    nchunks = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunks):
        start = c * CHUNK
        stop = min(n, start + CHUNK)
        if packed:
            scratch = np.empty(CHUNK, np.int32)
            _unpack_unsigned(data, start * bits // 8, stop - start, bits, scratch)
            _values_chunk(scratch, start, start, stop, scale, grid, Q, R, T, N, out)
        else:
            _values_chunk(data, 0, start, stop, scale, grid, Q, R, T, N, out)


@njit(parallel=True, cache=True)
def _fake_quantize_grid(x, out, inv, table, params, scale, grid, Q, R, T, N):  # pragma: no cover - compiled
    n = x.size
    nchunks = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunks):
        start = c * CHUNK
        stop = min(n, start + CHUNK)
        ys = np.empty(CHUNK, x.dtype)
        codes = np.empty(CHUNK, np.int32)
        _scaled_chunk(x, start, stop, inv, Q, R, T, N, ys)
        _round_chunk(ys, stop - start, table, params, codes)
        _values_chunk(codes, start, start, stop, scale, grid, Q, R, T, N, out)


def fake_quantize_grid_kernel(x, out, inv, mids, tie, scale, grid, Q, R, T, N):
    """Quantize to grid codes and back in one pass per chunk (no code array kept).

    Arguments as :func:`quantize_grid_kernel`, plus ``scale`` and ``grid`` in x's dtype.

    Example:
        >>> from lowbit.formats import get_qtype
        >>> g, mids, tie = grid_tables(get_qtype("fp4_e2m1"))
        >>> x, out, one = np.array([0.7, -5.0, 9.0]), np.empty(3), np.ones(1)
        >>> fake_quantize_grid_kernel(x, out, one, mids, tie, one, g, 1, 3, 1, 3)
        >>> out.tolist()
        [0.5, -4.0, 6.0]
    """
    plan = rounding_plan(mids, tie, x.dtype)
    _fake_quantize_grid(x, out, inv, plan.table, plan.params, scale, grid, Q, R, T, N)
