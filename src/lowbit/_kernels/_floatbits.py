"""Float bit tricks for the kernels: exponent extraction, exact powers of two, a vectorisable ``x ** p``.

``exponent(a)`` and ``pow2(e, like)`` read and build IEEE bits directly (LLVM
bitcasts, which Numba does not expose), so loops that use them stay free of
libm calls and vectorise.  ``pow_pos(x, p)`` is ``x ** p`` for positive
float64 ``x`` from a short log/exp pair built on them (relative error below
1e-10); it is meant for iterative optimisers such as HQQ, not for results that
must be bit-exact.

Example:
    >>> from numba import njit
    >>> from lowbit._kernels._floatbits import pow_pos
    >>> f = njit(lambda x: pow_pos(x, 0.5))
    >>> abs(f(2.0) / 2.0 ** 0.5 - 1) < 1e-10
    True
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["exponent", "pow2", "pow_pos", "POW_TINY", "POW_HUGE"]

_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that n * _LN2_HI is exact for |n| < 2^20
_LN2_LO = 1.90821492927058770002e-10
_SQRT2 = math.sqrt(2.0)
POW_TINY = 2.0**-1000
"""Below this ``pow_pos`` returns 0 (the exact value is < 1e-300 ** p)."""
POW_HUGE = 2.0**1000
"""Above this ``pow_pos`` returns ``POW_HUGE ** p``."""


@intrinsic
def exponent(typingctx, a):  # pragma: no cover - compiled
    """``floor(log2 a)`` of a positive normal float (int64); ``-bias`` for 0 and subnormals."""
    if a not in (types.float32, types.float64):
        return None
    fb, bias, width = (23, 127, 32) if a == types.float32 else (52, 1023, 64)

    def codegen(context, builder, signature, args):
        ity = ir.IntType(width)
        bits = builder.bitcast(args[0], ity)
        field = builder.and_(builder.lshr(bits, ir.Constant(ity, fb)), ir.Constant(ity, (1 << (width - 1 - fb)) - 1))
        wide = builder.zext(field, ir.IntType(64)) if width < 64 else field
        return builder.sub(wide, ir.Constant(ir.IntType(64), bias))

    return types.int64(a), codegen


@intrinsic
def pow2(typingctx, e, like):  # pragma: no cover - compiled
    """``2.0 ** e`` in the float type of ``like``, built from its bits (``e`` in the normal range)."""
    if not isinstance(e, types.Integer) or like not in (types.float32, types.float64):
        return None
    fb, bias, width = (23, 127, 32) if like == types.float32 else (52, 1023, 64)

    def codegen(context, builder, signature, args):
        ity = ir.IntType(width)
        ev = args[0]
        if ev.type.width > width:
            ev = builder.trunc(ev, ity)
        elif ev.type.width < width:
            ev = builder.sext(ev, ity)
        bits = builder.shl(builder.add(ev, ir.Constant(ity, bias)), ir.Constant(ity, fb))
        return builder.bitcast(bits, context.get_value_type(like))

    return like(e, like), codegen


@njit(inline="always", cache=True, error_model="numpy")
def _log_pos(x):  # pragma: no cover - compiled
    """Natural log of a float64 in [POW_TINY, POW_HUGE]: exponent plus an atanh series on [1/sqrt2, sqrt2)."""
    e = np.int32(exponent(x))
    m = x * pow2(-e, x)  # [1, 2)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    ef = np.float64(e) + (1.0 if big else 0.0)
    t = (m - 1.0) / (m + 1.0)  # |t| <= 0.1716: the terms left out sum to < 2e-11
    t2 = t * t
    poly = 1.0 / 11.0
    poly = poly * t2 + 1.0 / 9.0
    poly = poly * t2 + 1.0 / 7.0
    poly = poly * t2 + 1.0 / 5.0
    poly = poly * t2 + 1.0 / 3.0
    poly = poly * t2 + 1.0
    return ef * _LN2_HI + (ef * _LN2_LO + 2.0 * t * poly)


@njit(inline="always", cache=True, error_model="numpy")
def _exp(y):  # pragma: no cover - compiled
    """exp(y) for |y| < 700: 2^n times a degree-10 Taylor polynomial on |r| <= ln2 / 2 (error < 3e-13)."""
    n = np.rint(y * (1.0 / math.log(2.0)))
    r = (y - n * _LN2_HI) - n * _LN2_LO
    poly = 1.0 / 3628800.0
    poly = poly * r + 1.0 / 362880.0
    poly = poly * r + 1.0 / 40320.0
    poly = poly * r + 1.0 / 5040.0
    poly = poly * r + 1.0 / 720.0
    poly = poly * r + 1.0 / 120.0
    poly = poly * r + 1.0 / 24.0
    poly = poly * r + 1.0 / 6.0
    poly = poly * r + 0.5
    poly = poly * r + 1.0
    poly = poly * r + 1.0
    return poly * pow2(np.int32(n), y)


@njit(inline="always", cache=True, error_model="numpy")
def pow_pos(x, p):  # pragma: no cover - compiled
    """``x ** p`` for float64 ``x >= 0`` and ``0 < p <= 1``; 0 below :data:`POW_TINY`.

    Relative error below 1e-10 up to :data:`POW_HUGE`, where it saturates.
    """
    xs = min(max(x, POW_TINY), POW_HUGE)
    v = _exp(p * _log_pos(xs))
    return v if x >= POW_TINY else 0.0
