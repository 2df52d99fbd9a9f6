"""Scale and zero point per block (the arithmetic of :func:`lowbit.choose_qparams`).

One compiled loop instead of a dozen NumPy passes: group-wise quantization
has hundreds of thousands of blocks, and their parameters must not cost more
than the data pass.  The loop is serial: a parallel launch costs more than the
work for all but the largest tensors.  All scale arithmetic happens in the
scale's own precision (float32 or float64), so the zero point is derived from
the scale that is stored.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["qparams_kernel"]


@njit(inline="always", cache=True)
def _exact_scale(target, nsteps, out):  # pragma: no cover - compiled
    """Scale in out's precision with ``nsteps * scale == target`` when one is within 3 ulps."""
    cast = out.dtype.type
    tgt = cast(target)
    stp = cast(nsteps)
    best = cast(target / nsteps)
    if stp * best == tgt:
        return best
    for direction in (np.inf, -np.inf):
        cand = best
        for _ in range(3):
            cand = cast(np.nextafter(cand, cast(direction)))
            if stp * cand == tgt:
                return cand
    return best


@njit(inline="always", cache=True)
def _zero_point(lo, s, qmin, qmax):  # pragma: no cover - compiled
    """``clip(qmin - rint(lo / s), qmin, qmax)`` as a float64."""
    return min(max(qmin - np.rint(lo / np.float64(s)), np.float64(qmin)), np.float64(qmax))


@njit(cache=True)
def qparams_kernel(mins, maxs, qmin, qmax, symmetric, zero, steps, vmax, scale_out, zp_out):  # pragma: no cover
    """Fill ``scale_out`` (float32/64) and ``zp_out`` (int64) for each block's (min, max).

    Symmetric: ``scale = absmax / steps`` and zero point ``zero``; affine: the
    range widened to include 0, ``scale = (hi - lo) / (qmax - qmin)``,
    ``zp = clip(qmin - rint(lo / scale))``.  A constant block (min == max)
    whose value no nudged scale reproduces exactly falls back to the single
    step ``scale = |value|``, so it round-trips exactly; a block of zeros gets
    scale 1; a block whose range is too small for a normal scale (subnormal
    values) gets the smallest normal scale.  An affine range wider than the
    float64 maximum is halved before the division.  Finally the scale is
    lowered (by ulps) until every code dequantizes to a magnitude of at most
    ``vmax`` (the result dtype's largest finite value), so no code means inf.
    """
    cast = scale_out.dtype.type
    tiny = np.float64(np.finfo(scale_out.dtype).tiny)
    smax = np.float64(np.finfo(scale_out.dtype).max)
    for i in range(mins.size):
        constant = mins[i] == maxs[i]
        lo = min(np.float64(mins[i]), 0.0)
        hi = max(np.float64(maxs[i]), 0.0)
        if symmetric:
            target = max(-lo, hi)
            nsteps = np.float64(steps)
        else:
            target = hi - lo
            nsteps = np.float64(qmax - qmin)
        if target == 0.0:
            s = cast(1.0)
        elif target <= tiny * nsteps:
            s = cast(tiny)
        elif target > smax:
            s = cast(min((hi * 0.5 - lo * 0.5) / nsteps * 2.0, smax))
        else:
            s = _exact_scale(target, nsteps, scale_out)
            if constant and cast(nsteps) * s != cast(target):
                s = cast(target)
        zp = np.float64(zero) if symmetric else _zero_point(lo, s, qmin, qmax)
        for _ in range(8):  # keep (code - zp) * scale finite for every code
            reach = max(zp - qmin, qmax - zp)
            if reach * np.float64(s) <= vmax:
                break
            s = cast(vmax / reach)
            while reach * np.float64(s) > vmax:
                s = cast(np.nextafter(s, cast(0.0)))
            if not symmetric:
                zp = _zero_point(lo, s, qmin, qmax)
        scale_out[i] = s
        zp_out[i] = np.int64(zp)
