"""HQQ: half-quadratic quantization of a weight matrix, data-free.

After Badri & Shaji (2023), "Half-Quadratic Quantization of Large Machine
Learning Models".  Round-to-nearest with min-max parameters treats every
element's error alike, so a few outliers stretch the grid.  HQQ instead
minimises a sparsity-promoting ``l_p`` norm (``p < 1``) of the error
``W - s * (round(W / s + z) - z)`` over the zero point ``z``, which lets the
outliers keep a large error while the bulk of the weights fits the grid
better.  The problem is split with an auxiliary error variable ``W_e``
(half-quadratic splitting) and solved by alternating two closed-form steps,
with the penalty ``beta`` growing by ``kappa`` each iteration:

1. ``W_e = shrink_p(W - W_r, beta)``: the proximal operator of the ``l_p``
   norm, a generalised soft threshold
   ``sign(e) * max(|e| - |e|^(p-1) / beta, 0)``;
2. ``z = mean_group(q - (W - W_e) / s)``: the least-squares zero point for the
   current codes ``q``.

The scale stays at its min-max value during this phase and ``z`` is real.

Integer zero points.  A lowbit :class:`~lowbit.QTensor` stores an *integer*
zero point per block, and a real offset ``s * (z - round(z))`` cannot be
folded into an integer zero point and a scale exactly.  So this module
finishes in a second phase that lowbit can represent exactly: the optimised
zero point is rounded to an integer in ``[qmin, qmax]`` and the scale is refit
by the same half-quadratic scheme (shrink, then the closed-form least-squares
scale ``<W - W_e, q - z> / <q - z, q - z>``).  Finally each block keeps
whichever of {HQQ parameters, plain min-max parameters} has the lower ``l_p``
error, so no block is worse than round-to-nearest in the norm HQQ optimises.
The result is built with :func:`lowbit.quantize` from those explicit
parameters, so ``lowbit.dequantize(result)`` *is* the reconstruction that was
scored (codes are nearest-rounded for the chosen scale and zero point).

Supported formats: every integer format (``"uint4"``, ``"uint3"``, and also
signed ones such as ``"int4"``), always used affine (``symmetric=False``).

Example:
    >>> import numpy as np, lowbit
    >>> from lowbit.algorithms import hqq_quantize
    >>> w = np.random.default_rng(0).standard_normal((8, 128)).astype(np.float32)
    >>> qt = hqq_quantize(w, "uint4", group_size=64)
    >>> qt.shape, qt.scale.shape
    ((8, 128), (8, 2))
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from lowbit._arrays import as_float_array, check_finite
from lowbit.core import quantize
from lowbit.errors import OptionError
from lowbit.formats import QType, get_qtype
from lowbit.granularity import Granularity, PerChannel, PerGroup, plan
from lowbit.qparams import choose_qparams
from lowbit.qtensor import QTensor

__all__ = ["hqq_quantize", "shrink_lp"]

_CHUNK_ELEMENTS = 1 << 16  # elements per chunk of rows processed together


def shrink_lp(x: np.ndarray, beta: float, p: float) -> np.ndarray:
    """Proximal operator of ``|x|^p / beta`` (generalised soft threshold), elementwise.

    ``sign(x) * max(|x| - |x|^(p-1) / beta, 0)``; exactly 0 where ``x`` is 0.
    With ``p = 1`` this is the ordinary soft threshold by ``1 / beta``.

    Args:
        x: float array (the quantization error).
        beta: penalty weight, > 0; larger shrinks less.
        p: the norm's exponent, in (0, 1].

    Returns:
        A float64 array shaped like ``x``.

    Example:
        >>> shrink_lp(np.array([-2.0, 0.0, 0.05, 3.0]), 10.0, 1.0).tolist()
        [-1.9, 0.0, 0.0, 2.9]
    """
    x = np.asarray(x, np.float64)
    ax = np.abs(x)
    with np.errstate(divide="ignore"):
        thresh = np.power(ax, p - 1.0) / beta  # inf at 0: the result there is 0
    return np.sign(x) * np.maximum(ax - thresh, 0.0)


def _lp_error(g: np.ndarray, s: np.ndarray, z: np.ndarray, qmin: int, qmax: int, p: float) -> np.ndarray:
    """Per-row sum of ``|g - s (round(g/s + z) - z)|^p`` (rows are blocks)."""
    q = np.clip(np.rint(g / s + z), qmin, qmax)
    return np.sum(np.abs(g - s * (q - z)) ** p, axis=1, keepdims=True)


def _evaluate(
    g: np.ndarray, s: np.ndarray, z: np.ndarray, qt: QType, p: float, beta: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes, shrunk error ``W_e`` and per-row ``l_p`` error for the current parameters.

    One ``pow`` per element: ``|e|^(p-1)`` is taken as ``|e|^p / |e|``.
    """
    q = np.clip(np.rint(g / s + z), qt.qmin, qt.qmax)
    e = g - s * (q - z)
    ax = np.abs(e)
    axp = ax**p
    err = np.sum(axp, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        thresh = axp / (ax * beta)  # NaN where e == 0, where the shrunk value is 0
    w_e = np.copysign(np.maximum(ax - thresh, 0.0, where=ax > 0, out=np.zeros_like(ax)), e)
    return q, w_e, err


def _half_quadratic(
    g: np.ndarray,
    s: np.ndarray,
    z: np.ndarray,
    qt: QType,
    opts: tuple[float, float, float, int, bool],
    update_zero: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Alternate shrink and closed-form update of ``z`` (update_zero) or of ``s``; best per row.

    Returns the best ``(s, z)`` seen per row (by ``l_p`` error); stops once the
    rows' total error stops decreasing when early stopping is on.
    """
    p, beta, kappa, iterations, early_stop = opts
    best_s, best_z, best_err, prev = s, z, None, np.inf
    for it in range(iterations + 1):
        q, w_e, err = _evaluate(g, s, z, qt, p, beta)
        if best_err is None:
            best_err = err
        else:
            better = err < best_err
            best_s, best_z, best_err = (
                np.where(better, s, best_s),
                np.where(better, z, best_z),
                np.minimum(err, best_err),
            )
        total = float(err.sum())
        if it == iterations or (early_stop and total >= prev):
            break
        prev = total
        if update_zero:
            z = np.mean(q - (g - w_e) / s, axis=1, keepdims=True)
        else:
            d = q - z
            num = np.sum((g - w_e) * d, axis=1, keepdims=True)
            den = np.sum(d * d, axis=1, keepdims=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                new = num / den
            s = np.where((den > 0) & np.isfinite(new) & (new > 0), new, s)
        beta *= kappa
    return best_s, best_z


def _hqq_rows(
    g: np.ndarray, s0: np.ndarray, z0: np.ndarray, qt: QType, sdt: np.dtype, opts: tuple[float, float, float, int, bool]
) -> tuple[np.ndarray, np.ndarray]:
    """Both phases for a chunk of blocks (rows of ``g``); returns storable (scale, int zero point)."""
    _, z_real = _half_quadratic(g, s0, z0, qt, opts, update_zero=True)
    z_int = np.clip(np.rint(z_real), qt.qmin, qt.qmax)
    s_hqq, _ = _half_quadratic(g, s0, z_int, qt, opts, update_zero=False)
    s_hqq = s_hqq.astype(sdt).astype(np.float64)  # score the scale that will be stored
    p = opts[0]
    keep = _lp_error(g, s_hqq, z_int, qt.qmin, qt.qmax, p) < _lp_error(g, s0, z0, qt.qmin, qt.qmax, p)
    return np.where(keep, s_hqq, s0), np.where(keep, z_int, z0)


def _check_options(
    qtype: str | QType,
    shape: tuple[int, ...],
    group_size: int | None,
    iterations: int,
    lp_norm: float,
    beta: float,
    kappa: float,
) -> tuple[QType, Granularity, int]:
    """Validate the arguments once; return the format, granularity and block length."""
    qt = get_qtype(qtype)
    if qt.kind != "int":
        raise OptionError(f"hqq_quantize supports integer formats (e.g. 'uint4'), got {qt.name!r} of kind {qt.kind!r}")
    if len(shape) != 2:
        raise OptionError(
            f"hqq_quantize expects a 2-D weight (out_features, in_features), got shape {shape}; "
            "reshape it, e.g. w.reshape(w.shape[0], -1) for a conv kernel"
        )
    if group_size is None:
        gran, size = PerChannel(axis=0), shape[1]
    elif isinstance(group_size, bool) or not isinstance(group_size, numbers.Integral) or group_size < 1:
        raise OptionError(f"group_size must be a positive int or None (per output channel), got {group_size!r}")
    elif shape[1] % int(group_size):
        raise OptionError(
            f"group_size={group_size} does not divide in_features={shape[1]} of weight shape {shape}; "
            f"use a divisor of {shape[1]} or group_size=None"
        )
    else:
        gran, size = PerGroup(int(group_size), axis=-1), int(group_size)
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) or iterations < 1:
        raise OptionError(f"iterations must be an int >= 1, got {iterations!r}")
    if not (isinstance(lp_norm, numbers.Real) and 0.0 < float(lp_norm) <= 1.0):
        raise OptionError(f"lp_norm must be in (0, 1] (e.g. 0.7), got {lp_norm!r}")
    if not (isinstance(beta, numbers.Real) and np.isfinite(beta) and beta > 0):
        raise OptionError(f"beta must be a finite number > 0 (e.g. 10.0), got {beta!r}")
    if not (isinstance(kappa, numbers.Real) and np.isfinite(kappa) and kappa >= 1):
        raise OptionError(f"kappa must be a finite number >= 1 (e.g. 1.01), got {kappa!r}")
    return qt, gran, size


def hqq_quantize(
    weight: Any,
    qtype: str | QType = "uint4",
    *,
    group_size: int | None = 64,
    iterations: int = 20,
    lp_norm: float = 0.7,
    beta: float = 10.0,
    kappa: float = 1.01,
    early_stop: bool = True,
) -> QTensor:
    """Quantize a weight matrix with half-quadratic quantization (no calibration data).

    Args:
        weight: 2-D float NumPy array or CPU torch tensor ``(out_features, in_features)``.
        qtype: integer format, used affine (zero point in ``[qmin, qmax]``): ``"uint4"``,
            ``"uint3"``, ... (signed formats such as ``"int4"`` work too).
        group_size: elements per group along ``in_features`` (must divide it), or
            ``None`` for one scale and zero point per output channel.
        iterations: maximum half-quadratic iterations per phase, >= 1.
        lp_norm: exponent ``p`` of the error norm minimised, in (0, 1].
        beta: initial penalty of the splitting, > 0.
        kappa: factor by which ``beta`` grows each iteration, >= 1.
        early_stop: stop a phase as soon as the total ``l_p`` error stops decreasing (judged
            per chunk of about 65k elements, which are processed together to stay in cache).

    Returns:
        A QTensor with ``PerGroup(group_size)`` or ``PerChannel(0)`` granularity,
        ``symmetric=False``; ``lowbit.dequantize`` of it is the HQQ reconstruction.

    Raises:
        OptionError: non-integer format, weight not 2-D, group size not dividing
            ``in_features``, ``iterations < 1``, ``lp_norm`` outside (0, 1], ``beta <= 0``
            or ``kappa < 1``. QTypeError: unknown format. InputTypeError,
            EmptyInputError, NonFiniteError: as for :func:`lowbit.quantize`.

    Example:
        >>> import numpy as np, lowbit
        >>> from lowbit.algorithms import hqq_quantize
        >>> w = np.random.default_rng(1).standard_normal((4, 64))
        >>> qt = hqq_quantize(w, "uint4", group_size=32)
        >>> codes = qt.codes
        >>> bool(codes.min() >= 0 and codes.max() <= 15), qt.zero_point.shape
        (True, (4, 2))
    """
    flat, source = as_float_array(weight)
    qt, gran, size = _check_options(qtype, source.shape, group_size, iterations, lp_norm, beta, kappa)
    check_finite(flat, int(flat.size - np.count_nonzero(np.isfinite(flat))), source.shape)
    layout = plan(gran, source.shape)
    g = flat.astype(np.float64).reshape(-1, size)  # one row per block, in parameter order
    sdt = np.dtype(np.float64 if flat.dtype == np.float64 else np.float32)
    s0, z0 = choose_qparams(g.min(axis=1), g.max(axis=1), qt, symmetric=False, scale_dtype=sdt)
    s0 = s0.astype(np.float64)[:, None]
    z0 = z0.astype(np.float64)[:, None]
    opts = (float(lp_norm), float(beta), float(kappa), int(iterations), bool(early_stop))
    scale, zero = np.empty_like(s0), np.empty_like(z0)
    rows = max(1, _CHUNK_ELEMENTS // size)  # chunks of blocks small enough to stay in cache
    for r in range(0, g.shape[0], rows):
        scale[r : r + rows], zero[r : r + rows] = _hqq_rows(
            g[r : r + rows], s0[r : r + rows], z0[r : r + rows], qt, sdt, opts
        )
    return quantize(
        weight,
        qt,
        granularity=gran,
        symmetric=False,
        scale=scale.astype(sdt).reshape(layout.param_shape),
        zero_point=zero.astype(np.int64).reshape(layout.param_shape),
    )
