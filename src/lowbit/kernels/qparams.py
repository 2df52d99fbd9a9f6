"""Scale and zero point per block (the arithmetic of :func:`lowbit.choose_qparams`).

One compiled loop instead of a dozen NumPy passes: group-wise quantization
has hundreds of thousands of blocks, and their parameters must not cost more
than the data pass.  The loop is serial: a parallel launch costs more than the
work for all but the largest tensors.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["qparams_kernel"]


@njit(inline="always", cache=True)
def _exact_scale(target, nsteps, sdt_one):  # pragma: no cover - compiled
    """Scale in the output precision with ``nsteps * scale == target`` when one is within 3 ulps."""
    tgt = sdt_one * target
    stp = sdt_one * nsteps
    best = sdt_one * (target / nsteps)
    if stp * best == tgt:
        return best
    for direction in (np.inf, -np.inf):
        cand = best
        for _ in range(3):
            cand = sdt_one * np.nextafter(cand, sdt_one * direction)
            if stp * cand == tgt:
                return cand
    return best


@njit(cache=True)
def qparams_kernel(mins, maxs, qmin, qmax, symmetric, zero, steps, tiny, scale_out, zp_out):  # pragma: no cover
    """Fill ``scale_out`` (float32/64) and ``zp_out`` (int64) for each block's (min, max).

    Symmetric: ``scale = absmax / steps`` and zero point ``zero``; affine: the
    range widened to include 0, ``scale = (hi - lo) / (qmax - qmin)``,
    ``zp = clip(qmin - rint(lo / scale))``.  Degenerate blocks get scale 1.
    """
    one = scale_out.dtype.type(1.0)
    for i in range(mins.size):
        lo = min(np.float64(mins[i]), 0.0)
        hi = max(np.float64(maxs[i]), 0.0)
        if symmetric:
            target = max(-lo, hi)
            nsteps = np.float64(steps)
        else:
            target = hi - lo
            nsteps = np.float64(qmax - qmin)
        s = one if target <= tiny * nsteps else _exact_scale(target, nsteps, one)
        scale_out[i] = s
        if symmetric:
            zp_out[i] = zero
        else:
            zp = qmin - np.rint(lo / np.float64(s))
            zp_out[i] = np.int64(min(max(zp, np.float64(qmin)), np.float64(qmax)))
