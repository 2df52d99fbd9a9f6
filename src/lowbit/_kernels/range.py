"""Single-pass range kernel: min and max per parameter block, and NaN/Inf detection.

Floating-point min/max reductions do not vectorise unless LLVM may assume
there is no NaN, so the fast path reduces the values' *bit patterns* mapped
to integers of the same order (``k = b ^ ((b >> 31) & 0x7F..F)``): integer
min/max vectorises, and a NaN or Inf shows up as a key at or beyond the keys
of +-inf.  Only then does a second, NaN-aware kernel run, which ignores NaN
and counts the non-finite values for the error message.

Rows (``P*Q`` of them, ``R*T`` elements each) are split into pieces along
``R`` when long, or grouped several to a task when short; NumPy folds the
partial results (at most a few per parameter).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from lowbit.granularity import BlockLayout

__all__ = ["block_minmax"]

_MIN_TASK = 1 << 16


@njit(inline="always", cache=True)
def _key(b, shift, mask):  # pragma: no cover - compiled
    """Integer with the same order as the float whose bits are ``b`` (an involution)."""
    return b ^ ((b >> shift) & mask)


@njit(inline="always", cache=True)
def _run_minmax(xs, top, shift):  # pragma: no cover - compiled
    lo = top
    hi = -top - 1
    for i in range(xs.size):
        k = _key(xs[i], shift, top)
        lo = min(lo, k)
        hi = max(hi, k)
    return lo, hi


@njit(parallel=True, cache=True)
def _key_short_rows(xi, rows, R, lo_out, hi_out):  # pragma: no cover - compiled
    """T == 1, one split per row: several short rows per task."""
    top = xi.dtype.type(np.iinfo(xi.dtype).max)
    shift = xi.dtype.type(xi.itemsize * 8 - 1)
    per_task = max(1, _MIN_TASK // max(R, 1))
    ntasks = (rows + per_task - 1) // per_task
    for task in prange(ntasks):
        for row in range(task * per_task, min(rows, (task + 1) * per_task)):
            lo_out[row], hi_out[row] = _run_minmax(xi[row * R : (row + 1) * R], top, shift)


@njit(parallel=True, cache=True)
def _key_split_rows(xi, rows, R, nsplit, lo_out, hi_out):  # pragma: no cover - compiled
    """T == 1, long rows split into ``nsplit`` contiguous pieces."""
    top = xi.dtype.type(np.iinfo(xi.dtype).max)
    shift = xi.dtype.type(xi.itemsize * 8 - 1)
    for task in prange(rows * nsplit):
        row = task // nsplit
        s = task % nsplit
        base = row * R
        lo_out[task], hi_out[task] = _run_minmax(
            xi[base + s * R // nsplit : base + (s + 1) * R // nsplit], top, shift
        )


@njit(parallel=True, cache=True)
def _key_lanes(xi, rows, R, T, nsplit, lo_out, hi_out):  # pragma: no cover - compiled
    """T > 1: each parameter is a lane of a contiguous run of T elements."""
    top = xi.dtype.type(np.iinfo(xi.dtype).max)
    shift = xi.dtype.type(xi.itemsize * 8 - 1)
    for task in prange(rows * nsplit):
        row = task // nsplit
        s = task % nsplit
        los = lo_out[task * T : (task + 1) * T]
        his = hi_out[task * T : (task + 1) * T]
        los[:] = top
        his[:] = -top - 1
        for r in range(s * R // nsplit, (s + 1) * R // nsplit):
            xs = xi[(row * R + r) * T : (row * R + r + 1) * T]
            for t in range(T):
                k = _key(xs[t], shift, top)
                los[t] = min(los[t], k)
                his[t] = max(his[t], k)


def _key_rows(xi, rows, R, T, nsplit, lo, hi):
    if T > 1:
        _key_lanes(xi, rows, R, T, nsplit, lo, hi)
    elif nsplit == 1:
        _key_short_rows(xi, rows, R, lo, hi)
    else:
        _key_split_rows(xi, rows, R, nsplit, lo, hi)


@njit(parallel=True, cache=True)
def _nan_aware_rows(x, rows, R, T, nsplit, mn, mx, bad):  # pragma: no cover - compiled
    """Slow path: float min/max ignoring NaN, and a count of NaN/Inf per task."""
    inf = x.dtype.type(np.inf)
    for task in prange(rows * nsplit):
        row = task // nsplit
        s = task % nsplit
        r0 = s * R // nsplit
        r1 = (s + 1) * R // nsplit
        nonfinite = 0
        for r in range(r0, r1):
            for t in range(T):
                v = x[(row * R + r) * T + t]
                o = task * T + t
                if r == r0:
                    mn[o] = inf
                    mx[o] = -inf
                mn[o] = min(mn[o], v)
                mx[o] = max(mx[o], v)
                nonfinite += not (abs(v) < inf)
        bad[task] = nonfinite


@njit(parallel=True, cache=True)
def _key_ragged(xi, runs, R, T, N, lo_out, hi_out):  # pragma: no cover - compiled
    """Ragged groups: each run of ``N*T`` elements holds ``G = ceil(N/R)`` groups, the last shorter.

    Group ``g`` of a run covers ``n`` in ``[g*R, min(g*R + R, N))``; output ``(run*G + g)*T + t``.
    """
    top = xi.dtype.type(np.iinfo(xi.dtype).max)
    shift = xi.dtype.type(xi.itemsize * 8 - 1)
    G = (N + R - 1) // R
    for task in prange(runs * G):
        run = task // G
        g = task % G
        n1 = min(g * R + R, N)
        los = lo_out[task * T : (task + 1) * T]
        his = hi_out[task * T : (task + 1) * T]
        if T == 1:
            los[0], his[0] = _run_minmax(xi[run * N + g * R : run * N + n1], top, shift)
            continue
        los[:] = top
        his[:] = -top - 1
        for n in range(g * R, n1):
            xs = xi[(run * N + n) * T : (run * N + n + 1) * T]
            for t in range(T):
                k = _key(xs[t], shift, top)
                los[t] = min(los[t], k)
                his[t] = max(his[t], k)


@njit(parallel=True, cache=True)
def _nan_aware_ragged(x, runs, R, T, N, mn, mx, bad):  # pragma: no cover - compiled
    """Slow path of :func:`_key_ragged`: float min/max ignoring NaN, and NaN/Inf counts per group."""
    inf = x.dtype.type(np.inf)
    G = (N + R - 1) // R
    for task in prange(runs * G):
        run = task // G
        g = task % G
        mn[task * T : (task + 1) * T] = inf
        mx[task * T : (task + 1) * T] = -inf
        nonfinite = 0
        for n in range(g * R, min(g * R + R, N)):
            for t in range(T):
                v = x[(run * N + n) * T + t]
                o = task * T + t
                mn[o] = min(mn[o], v)
                mx[o] = max(mx[o], v)
                nonfinite += not (abs(v) < inf)
        bad[task] = nonfinite


def _ragged_minmax(x: np.ndarray, layout: BlockLayout) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`block_minmax` of a ragged layout: one task per group (groups are short, P == 1)."""
    runs = layout.P * layout.Q // layout.G
    R, T, N = layout.R, layout.T, layout.N
    itype = np.int32 if x.dtype == np.float32 else np.int64
    xi = x.view(itype)
    lo = np.empty(layout.P * layout.nparams, itype)
    hi = np.empty_like(lo)
    _key_ragged(xi, runs, R, T, N, lo, hi)
    lo_k = lo.reshape(layout.P, -1).min(axis=0)
    hi_k = hi.reshape(layout.P, -1).max(axis=0)
    inf_keys = _keys_to_float(np.array([-np.inf, np.inf], x.dtype).view(itype), itype)
    if lo_k.size == 0 or (lo_k.min() > inf_keys[0] and hi_k.max() < inf_keys[1]):
        return _keys_to_float(lo_k, x.dtype), _keys_to_float(hi_k, x.dtype), 0
    mn = np.empty(layout.P * layout.nparams, x.dtype)
    mx = np.empty_like(mn)
    bad = np.empty(runs * layout.G, np.int64)
    _nan_aware_ragged(x, runs, R, T, N, mn, mx, bad)
    return mn.reshape(layout.P, -1).min(axis=0), mx.reshape(layout.P, -1).max(axis=0), int(bad.sum())


def _nsplit(layout: BlockLayout) -> int:
    rows = layout.P * layout.Q
    per_row = layout.R * layout.T
    want = max(1, min(layout.R, per_row // _MIN_TASK))
    if layout.T > 1:
        want = min(want, max(1, math.ceil(4 * numba.get_num_threads() / rows)))
    return want


def _keys_to_float(keys: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """Undo (or apply: the map is its own inverse) the float-bits to ordered-integer map."""
    mask = keys.dtype.type(np.iinfo(keys.dtype).max)
    return (keys ^ ((keys >> (keys.dtype.itemsize * 8 - 1)) & mask)).view(dtype)


def block_minmax(x: np.ndarray, layout: BlockLayout) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-parameter min and max of a flat float array, and its count of NaN/Inf.

    Args:
        x: 1-D contiguous float32/float64 array.
        layout: the granularity's block layout.

    Returns:
        ``(mins, maxs, nonfinite)``; mins/maxs have ``layout.nparams`` entries in
        x's dtype and ignore NaN.

    Example:
        >>> from lowbit.granularity import PerChannel, plan
        >>> x = np.arange(6, dtype=np.float32)
        >>> lo, hi, bad = block_minmax(x, plan(PerChannel(0), (2, 3)))
        >>> lo.tolist(), hi.tolist(), bad
        ([0.0, 3.0], [2.0, 5.0], 0)
        >>> block_minmax(np.arange(5.0), plan("group:2", (5,)))[1].tolist()  # ragged: the last group is [4]
        [1.0, 3.0, 4.0]
    """
    if layout.ragged:
        return _ragged_minmax(x, layout)
    rows = layout.P * layout.Q
    nsplit = _nsplit(layout)
    T = layout.T
    itype = np.int32 if x.dtype == np.float32 else np.int64
    xi = x.view(itype)
    lo = np.empty(rows * nsplit * T, itype)
    hi = np.empty_like(lo)
    _key_rows(xi, rows, layout.R, T, nsplit, lo, hi)
    shape = (layout.P, layout.Q, nsplit, T)
    lo_k = lo.reshape(shape).min(axis=(0, 2)).reshape(-1)
    hi_k = hi.reshape(shape).max(axis=(0, 2)).reshape(-1)
    inf_keys = _keys_to_float(np.array([-np.inf, np.inf], x.dtype).view(itype), itype)  # the map is an involution
    if lo_k.min() > inf_keys[0] and hi_k.max() < inf_keys[1]:
        return _keys_to_float(lo_k, x.dtype), _keys_to_float(hi_k, x.dtype), 0
    mn = np.empty(rows * nsplit * T, x.dtype)
    mx = np.empty_like(mn)
    bad = np.empty(rows * nsplit, np.int64)
    _nan_aware_rows(x, rows, layout.R, T, nsplit, mn, mx, bad)
    mins = mn.reshape(shape).min(axis=(0, 2)).reshape(-1)
    maxs = mx.reshape(shape).max(axis=(0, 2)).reshape(-1)
    return mins, maxs, int(bad.sum())
