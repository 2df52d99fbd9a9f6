"""Single-pass range kernel: min, max and non-finite count per parameter block.

Rows (``P*Q`` of them, ``R*T`` elements each) are split into ``nsplit`` pieces
along ``R`` so a per-tensor reduction still uses every core; each task writes
a partial result and NumPy folds the partials (a few thousand values at most).
The ``min``/``max`` builtins compile to vectorised selects that ignore NaN;
NaN and Inf are counted separately.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from lowbit.granularity import BlockLayout

__all__ = ["block_minmax"]

_MIN_TASK = 1 << 16


@njit(parallel=True, cache=True)
def _range_kernel(x, rows, R, T, nsplit, mn, mx, bad):  # pragma: no cover - compiled
    inf = x.dtype.type(np.inf)
    for task in prange(rows * nsplit):
        row = task // nsplit
        s = task % nsplit
        r0 = s * R // nsplit
        r1 = (s + 1) * R // nsplit
        base = row * R * T
        nonfinite = 0
        if T == 1:
            lo = inf
            hi = -inf
            for e in range(base + r0, base + r1):
                v = x[e]
                lo = min(lo, v)
                hi = max(hi, v)
                nonfinite += not (abs(v) < inf)
            mn[task] = lo
            mx[task] = hi
        else:
            o = task * T
            for t in range(T):
                mn[o + t] = inf
                mx[o + t] = -inf
            for r in range(r0, r1):
                e0 = base + r * T
                for t in range(T):
                    v = x[e0 + t]
                    mn[o + t] = min(mn[o + t], v)
                    mx[o + t] = max(mx[o + t], v)
                    nonfinite += not (abs(v) < inf)
        bad[task] = nonfinite


def _nsplit(layout: BlockLayout) -> int:
    rows = layout.P * layout.Q
    per_row = layout.R * layout.T
    want = max(1, min(layout.R, per_row // _MIN_TASK))
    if layout.T > 1:
        want = min(want, max(1, math.ceil(4 * numba.get_num_threads() / rows)))
    return want


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
    """
    rows = layout.P * layout.Q
    nsplit = _nsplit(layout)
    T = layout.T
    mn = np.empty(rows * nsplit * T, x.dtype)
    mx = np.empty_like(mn)
    bad = np.empty(rows * nsplit, np.int64)
    _range_kernel(x, rows, layout.R, T, nsplit, mn, mx, bad)
    shape = (layout.P, layout.Q, nsplit, T)
    mins = mn.reshape(shape).min(axis=(0, 2)).reshape(-1)
    maxs = mx.reshape(shape).max(axis=(0, 2)).reshape(-1)
    return mins, maxs, int(bad.sum())
