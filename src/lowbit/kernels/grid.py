"""Kernels for grid formats (low-bit floats, codebooks): nearest-value search.

A grid format's code ``c`` stands for ``grid[c]`` (``grid`` sorted ascending).
Quantizing ``x`` with scale ``s`` computes ``y = x * (1/s)`` in the input's
precision, then the code of the nearest grid value: the number of midpoints
``(grid[k] + grid[k+1]) / 2`` below ``y`` (a branch-free binary search), and
for a ``y`` exactly on midpoint ``k`` the precomputed tie code ``tie[k]``.
Values beyond the ends saturate to the first/last code.  Comparisons are in
float64, where the midpoints of float32 grids are exact, so ties are exact.

The chunk/segment walk over the (P, Q, R, T) block layout and the packing of
sub-byte codes are those of :mod:`lowbit.kernels.quant`.

Example:
    >>> import numpy as np
    >>> from lowbit.kernels.grid import grid_tables
    >>> from lowbit.formats import get_qtype
    >>> g, mids, tie = grid_tables(get_qtype("fp4_e2m1"))
    >>> float(mids[8]), int(tie[8])  # 0.75 lies between 0.5 (code 8) and 1.0 (code 9)
    (0.75, 9)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit, prange

from lowbit.formats import QType
from lowbit.kernels._bits import pack_run, unpack_run
from lowbit.kernels.quant import CHUNK, _segment

__all__ = ["grid_tables", "quantize_grid_kernel", "dequantize_grid_kernel", "fake_quantize_grid_kernel"]


@lru_cache(maxsize=64)
def grid_tables(qtype: QType) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid, midpoints, tie codes) of a grid format, float64/float64/int32, read-only.

    A value exactly between codes ``k`` and ``k + 1`` goes to the one of even
    parity: for ``kind="float"`` parity counts from the code of zero, which is
    the even *mantissa* of IEEE round-to-nearest-even (the grid holds one zero,
    so index parity alone would flip on the positive side); for codebooks it is
    the even code itself.
    """
    grid = np.asarray(qtype.grid, np.float64)
    mids = (grid[:-1] + grid[1:]) / 2
    ref = int(np.searchsorted(grid, 0.0)) if qtype.kind == "float" else 0
    k = np.arange(mids.size, dtype=np.int32)
    tie = np.where((k - ref) % 2 == 0, k, k + 1).astype(np.int32)
    for a in (grid, mids, tie):
        a.flags.writeable = False
    return grid, mids, tie


@njit(inline="always", cache=True)
def _nearest(y, mids, tie, steps):  # pragma: no cover - compiled
    """Code of the grid value nearest to y (float64); ``steps`` = bit length of mids.size."""
    n = mids.size
    lo = 0  # invariant: mids[:lo] < y
    width = 1 << steps
    for _ in range(steps):
        width >>= 1
        probe = lo + width
        if probe <= n and mids[probe - 1] < y:
            lo = probe
    if lo < n and mids[lo] == y:
        return tie[lo]
    return lo


@njit(inline="always", cache=True)
def _grid_chunk(x, start, stop, inv, mids, tie, steps, Q, R, T, dst, dst0):  # pragma: no cover
    e = start
    while e < stop:
        end, p = _segment(e, stop, Q, R, T)
        xs = x[e:end]
        ds = dst[e - dst0 : end - dst0]
        if T == 1:
            iv = inv[p]
            for i in range(end - e):
                ds[i] = _nearest(np.float64(xs[i] * iv), mids, tie, steps)
        else:
            ivs = inv[p : p + end - e]
            for i in range(end - e):
                ds[i] = _nearest(np.float64(xs[i] * ivs[i]), mids, tie, steps)
        e = end


@njit(inline="always", cache=True)
def _search_steps(nmids):  # pragma: no cover - compiled
    """Halvings a binary search over ``nmids`` midpoints needs."""
    steps = 0
    while (1 << steps) <= nmids:
        steps += 1
    return steps


@njit(parallel=True, cache=True)
def quantize_grid_kernel(x, out, inv, mids, tie, Q, R, T, bits):  # pragma: no cover - compiled
    """Grid codes of ``x * inv`` into ``out`` (codes for 8/16-bit, else packed bytes)."""
    n = x.size
    steps = _search_steps(mids.size)
    packed = bits != 8 and bits != 16
    nchunks = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunks):
        start = c * CHUNK
        stop = min(n, start + CHUNK)
        scratch = np.empty(CHUNK, np.int32)
        _grid_chunk(x, start, stop, inv, mids, tie, steps, Q, R, T, scratch, start)
        if packed:
            pack_run(scratch, stop - start, bits, out, start * bits // 8)
        else:
            os_ = out[start:stop]
            for i in range(stop - start):
                os_[i] = scratch[i]


@njit(inline="always", cache=True)
def _values_chunk(codes, c0, start, stop, scale, grid, Q, R, T, out):  # pragma: no cover
    """out[e] = grid[codes[e - c0]] * scale for e in [start, stop)."""
    e = start
    while e < stop:
        end, p = _segment(e, stop, Q, R, T)
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


@njit(parallel=True, cache=True)
def dequantize_grid_kernel(data, n, out, scale, grid, Q, R, T, bits):  # pragma: no cover - compiled
    """``out = grid[code] * scale`` for ``n`` codes; ``grid`` and ``scale`` have out's dtype."""
    packed = bits != 8 and bits != 16
    nchunks = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunks):
        start = c * CHUNK
        stop = min(n, start + CHUNK)
        if packed:
            scratch = np.empty(CHUNK, np.int32)
            unpack_run(data, start * bits // 8, stop - start, bits, False, scratch)
            _values_chunk(scratch, start, start, stop, scale, grid, Q, R, T, out)
        else:
            _values_chunk(data, 0, start, stop, scale, grid, Q, R, T, out)


@njit(parallel=True, cache=True)
def fake_quantize_grid_kernel(x, out, inv, mids, tie, scale, grid, Q, R, T):  # pragma: no cover - compiled
    """Quantize to grid codes and back in one pass per chunk (no code array kept)."""
    n = x.size
    steps = _search_steps(mids.size)
    nchunks = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunks):
        start = c * CHUNK
        stop = min(n, start + CHUNK)
        scratch = np.empty(CHUNK, np.int32)
        _grid_chunk(x, start, stop, inv, mids, tie, steps, Q, R, T, scratch, start)
        _values_chunk(scratch, start, start, stop, scale, grid, Q, R, T, out)
