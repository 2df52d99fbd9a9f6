"""Choose scale and zero point from per-block ranges.

Rules (all computed in float64, then stored in the scale dtype):

* symmetric, signed format: ``scale = absmax / qmax`` (``-qmin`` for int1), zero point 0;
* symmetric, unsigned format: zero point ``2^(b-1)``, ``scale = absmax / (2^(b-1) - 1)``
  (as ``torch``'s symmetric observers do for quint8);
* grid formats (float, codebook): ``scale = absmax / max|grid|``, zero point 0;
* MX formats: the OCP MX shared scale ``2^(floor(log2 absmax) - emax)`` times the
  element's implicit scale (see :mod:`lowbit.formats.mx`), zero point 0;
* affine: the range is widened to include 0 so that 0 is exactly representable,
  ``scale = (hi - lo) / (qmax - qmin)``, ``zero_point = qmin - round(lo / scale)``.

A block whose range is all zero gets scale 1 (every value maps exactly to the
zero point and back to 0); a block of subnormal values (range below ``steps``
times the scale dtype's smallest normal) gets that smallest normal as its
scale, so its inverse stays finite and values below half a step become 0.

Near the float maximum: an affine range wider than float64 can hold is halved
before the division, and the scale is lowered (by ulps) until every code
dequantizes to a finite value of at most ``max_value`` (the largest finite value
of the result dtype, e.g. 65504 for float16 inputs): the extreme inputs then
come back as the largest value the format reaches, never as inf.  The scale is nudged by at most 3 ulps so that the
block's extreme value dequantizes to itself exactly where such a scale exists
(in float32 it does not always); a constant block (every value equal) for
which none exists uses one step, ``scale = |value|``, so constant tensors
always round-trip exactly.

Example:
    >>> import numpy as np
    >>> s, z = choose_qparams(np.array([-19.68]), np.array([146.59]), "uint8", symmetric=False)
    >>> round(float(s[0]), 6), int(z[0])
    (0.652039, 30)
"""

from __future__ import annotations

import numpy as np

from lowbit.errors import NonFiniteError, OptionError, QTypeError
from lowbit.formats import QType, get_qtype

__all__ = ["choose_qparams", "offset_qparams"]


def symmetric_divisor(qtype: QType) -> tuple[int, int]:
    """(zero point, number of steps from zero to the largest magnitude) for symmetric use.

    Raises:
        QTypeError: the format has no symmetric form (uint1).

    Example:
        >>> symmetric_divisor(get_qtype("int8")), symmetric_divisor(get_qtype("uint8"))
        ((0, 127), (128, 127))
    """
    if qtype.signed:
        return 0, qtype.qmax if qtype.qmax > 0 else -qtype.qmin
    mid = 2 ** (qtype.bits - 1)
    steps = min(qtype.qmax - mid, mid - qtype.qmin)
    if steps < 1:
        raise QTypeError(f"{qtype.name} has too few codes for symmetric quantization; use symmetric=False")
    return mid, steps


def _grid_qparams(
    lo: np.ndarray, hi: np.ndarray, qt: QType, sdt: np.dtype, vmax: float
) -> tuple[np.ndarray, np.ndarray]:
    """``absmax / max|grid|`` per block (1 for all-zero blocks, at least the smallest normal).

    Lowered by ulps where ``max|grid| * scale`` would exceed ``vmax``.
    """
    gmax = max(abs(qt.grid[0]), abs(qt.grid[-1]))
    absmax = np.maximum(np.abs(lo), np.abs(hi))
    scale = absmax / gmax
    scale = np.where(absmax > 0, np.clip(scale, np.finfo(sdt).tiny, vmax / gmax), 1.0).astype(sdt)
    for _ in range(4):
        over = gmax * scale.astype(np.float64) > vmax
        if not over.any():
            break
        scale[over] = np.nextafter(scale[over], sdt.type(0))
    return scale, np.zeros(lo.shape, np.int64)


def _mx_qparams(lo: np.ndarray, hi: np.ndarray, qt: QType, sdt: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Power-of-two MX scales ``X * 2^implicit_exp`` per block (X = 1 for all-zero blocks)."""
    from lowbit.formats.mx import mx_exponents

    exps = mx_exponents(np.maximum(np.abs(lo), np.abs(hi)), qt)
    return np.ldexp(1.0, exps + qt.implicit_exp).astype(sdt), np.zeros(lo.shape, np.int64)


def _value_limit(sdt: np.dtype, max_value: float | None) -> float:
    """The largest finite dequantized magnitude: ``max_value`` capped at the scale dtype's maximum."""
    limit = float(np.finfo(sdt).max)
    if max_value is None:
        return limit
    if not max_value > 0:
        raise OptionError(f"max_value must be a positive number, got {max_value!r}")
    return min(float(max_value), limit)


def affine_zero_points(mins: np.ndarray, scale: np.ndarray, qtype: str | QType) -> np.ndarray:
    """Zero points ``clip(qmin - rint(min(lo, 0) / scale))`` of affine blocks for given scales (int64).

    Used when a scale changed after it was chosen (stored in a coarser scale
    format), so the zero point matches the scale actually stored.

    Example:
        >>> affine_zero_points(np.array([-1.0]), np.array([0.5]), "uint4").tolist()
        [2]
    """
    qt = get_qtype(qtype)
    lo = np.minimum(np.asarray(mins, np.float64), 0.0)
    zp = qt.qmin - np.rint(lo / np.asarray(scale, np.float64))
    return np.clip(zp, qt.qmin, qt.qmax).astype(np.int64)


def choose_qparams(
    mins: np.ndarray,
    maxs: np.ndarray,
    qtype: str | QType,
    *,
    symmetric: bool,
    scale_dtype: np.dtype | type = np.float32,
    max_value: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scales and zero points for blocks with the given min and max.

    Args:
        mins: per-block minimum (any float dtype, finite).
        maxs: per-block maximum.
        qtype: the target integer format.
        symmetric: scale-only (zero point fixed) rather than affine.
        scale_dtype: float32 (default) or float64.
        max_value: the largest magnitude a dequantized code may take (default: the
            scale dtype's maximum; 65504 when the result is float16). Scales are
            lowered so that no code dequantizes beyond it (never to inf).

    Returns:
        ``(scale, zero_point)``; scale in ``scale_dtype``, zero point as int64,
        both shaped like ``mins``.

    Raises:
        QTypeError: unknown format, or symmetric use of uint1.
        NonFiniteError: a NaN or infinite min/max.

    Example:
        >>> s, z = choose_qparams(np.array([-1.0]), np.array([2.0]), "int8", symmetric=True)
        >>> bool(s[0] == np.float32(2 / 127)), int(z[0])
        (True, 0)
        >>> s, z = choose_qparams(np.array([-1e308]), np.array([1e308]), "uint4", symmetric=False,
        ...                       scale_dtype=np.float64)
        >>> bool(np.isfinite((np.array([0, 15]) - z) * s).all())
        True
    """
    from lowbit._kernels.qparams import qparams_kernel

    qt = get_qtype(qtype)
    sdt = np.dtype(scale_dtype)
    vmax = _value_limit(sdt, max_value)
    lo, hi = np.broadcast_arrays(np.asarray(mins, np.float64), np.asarray(maxs, np.float64))
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        bad = int((~np.isfinite(lo)).sum() + (~np.isfinite(hi)).sum())
        raise NonFiniteError(f"choose_qparams needs finite block ranges; {bad} min/max value(s) are NaN or "
                             "infinite (quantize() locates non-finite inputs; remove or replace them first)")
    if qt.is_mx:
        return _mx_qparams(lo, hi, qt, sdt)
    if qt.is_grid:
        return _grid_qparams(lo, hi, qt, sdt, vmax)
    zero, steps = symmetric_divisor(qt) if symmetric else (0, 1)
    scale = np.empty(lo.shape, sdt)
    zp = np.empty(lo.shape, np.int64)
    qparams_kernel(
        np.ascontiguousarray(lo).reshape(-1), np.ascontiguousarray(hi).reshape(-1), qt.qmin, qt.qmax,
        bool(symmetric), zero, steps, vmax, scale.reshape(-1), zp.reshape(-1),
    )
    return scale, zp


def offset_qparams(
    mins: np.ndarray, maxs: np.ndarray, qtype: str | QType, scale_dtype: np.dtype | type = np.float32,
    max_value: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scale and float zero point (the block minimum) of unsigned affine blocks: ``x = code * scale + offset``.

    ``scale = (max - min) / qmax`` and ``offset = min``, with no widening of the range to
    include 0 (GGUF's Q4_1/Q5_1 rule).  A constant block gets scale 1 and stores its
    value as the offset, so it round-trips exactly.  The scale is lowered by ulps
    where the top code's value ``qmax * scale + min`` would exceed ``max_value``
    (default: the scale dtype's maximum), so no code dequantizes to inf.

    Raises:
        OptionError: a block range wider than the scale dtype's maximum (``qmax * scale``
            would overflow before the offset is added); use integer zero points.

    Example:
        >>> s, m = offset_qparams(np.array([-1.0]), np.array([2.75]), "uint4")
        >>> float(s[0]), float(m[0])
        (0.25, -1.0)
    """
    qt = get_qtype(qtype)
    sdt = np.dtype(scale_dtype)
    vmax = _value_limit(sdt, max_value)
    lo, hi = np.broadcast_arrays(np.asarray(mins, np.float64), np.asarray(maxs, np.float64))
    span = (hi * 0.5 - lo * 0.5) / (qt.qmax - qt.qmin) * 2.0  # halved first: hi - lo may exceed float64
    finfo = np.finfo(sdt)
    scale = np.where(span > 0, np.clip(span, finfo.tiny, finfo.max), 1.0).astype(sdt)
    offset = lo.astype(sdt)
    for _ in range(8):
        with np.errstate(over="ignore", invalid="ignore"):
            top = (sdt.type(qt.qmax) * scale + offset).astype(np.float64)
        over = ~(np.abs(top) <= vmax)
        if not over.any():
            return scale, offset
        scale[over] = np.nextafter(scale[over], sdt.type(0))
    k = int(np.flatnonzero(over.reshape(-1))[0])
    raise OptionError(
        f"zero_point='float' cannot represent the block range [{lo.reshape(-1)[k]:g}, {hi.reshape(-1)[k]:g}]: "
        f"code * scale would exceed the largest finite value ({vmax:g}) before the offset is added; "
        "use integer zero points (zero_point='int')"
    )
