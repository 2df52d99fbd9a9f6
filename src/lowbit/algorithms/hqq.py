"""HQQ: half-quadratic quantization of a weight matrix, data-free or activation-aware.

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

Float zero points (``zero_point="float"``, the authors' form).  That is the
result: the min-max scale (as stored, e.g. float16) and the real ``z``, which
lowbit stores as its float zero point, the offset ``-z * s`` in the scales'
precision (``x = code * s + offset``, GGUF Q4_1's rule).

Integer zero points (the default).  A real offset ``s * (z - round(z))`` cannot
be folded into an integer zero point and a scale exactly, so a second phase
rounds ``z`` to an integer in ``[qmin, qmax]`` and refits the scale by the same
half-quadratic scheme (shrink, then the closed-form least-squares scale
``<W - W_e, q - z> / <q - z, q - z>``).

Activation-aware HQQ (``x_mean_sq``, from calibration data).  The error of input
feature ``j`` reaches the layer's output scaled by ``x_j``, so every squared
error (and the least-squares updates) is weighted by the mean ``x_j^2``: the
diagonal of the output error's Hessian, the part GPTQ's cross terms aside.

Choice per block.  The ``l_p`` norm steers the iterations, but the parameters
kept are those with the lowest (weighted) squared error seen, and each block
keeps HQQ's parameters only where, *as stored and reconstructed by lowbit*, they
have a lower (weighted) squared error than min-max round to nearest in the same
format (zero point kind and scale format) *and* round every weight to within half
a min-max step, as min-max does: HQQ may move the grid but not clip.  So no block
is worse than round-to-nearest, and none clips its extremes, which in a language
model are salient weights.  ``kquant6`` re-rounds the chosen scales of each run
of 8 blocks under their new super-scale, so a run that ends up worse than
round-to-nearest takes its scales back (no such run is worse); ``double8``,
whose scales move when stored again, keeps HQQ's result only where its total
error is lower.  (Choosing by the ``l_p`` error let the extremes keep
large errors: on SmolLM2 at uint4 per channel, 2.5-3.1x round-to-nearest's
perplexity; by squared error alone, 1.9x.)  The result is built with
:func:`lowbit.quantize` from those explicit parameters, so ``lowbit.dequantize(result)``
*is* the reconstruction that was scored.

Supported formats: every integer format (``"uint4"``, ``"uint3"``, and also
signed ones such as ``"int4"``), always used affine (``symmetric=False``);
float zero points need an unsigned one.

Example:
    >>> import numpy as np, lowbit
    >>> from lowbit.algorithms import hqq_quantize
    >>> w = np.random.default_rng(0).standard_normal((8, 128)).astype(np.float32)
    >>> qt = hqq_quantize(w, "uint4", granularity="group:64")
    >>> qt.shape, qt.scale.shape
    ((8, 128), (8, 2))
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from lowbit._arrays import as_float_array, check_finite
from lowbit.algorithms._checks import _UNSET, group_parts, weight_granularity
from lowbit.core import quantize
from lowbit.errors import OptionError
from lowbit.formats import QType, get_qtype, scale_format_for
from lowbit.formats.scales import KQUANT_SUPER
from lowbit.granularity import Granularity, PerGroup
from lowbit.qparams import choose_qparams
from lowbit.qtensor import QTensor

__all__ = ["hqq_quantize", "shrink_lp", "column_weights", "ACTIVATION_DAMP"]

_CHUNK_ELEMENTS = 1 << 16  # elements per chunk of rows processed together
ACTIVATION_DAMP = 0.01
"""Fraction of the mean ``x_j^2`` added to every input feature's error weight (activation-aware HQQ)."""


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


def _check_options(
    qtype: str | QType,
    shape: tuple[int, ...],
    granularity: Any,
    group_size: Any,
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
    gran, size = weight_granularity(granularity, group_size, shape, "hqq_quantize", PerGroup(64))
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) or iterations < 1:
        raise OptionError(f"iterations must be an int >= 1, got {iterations!r}")
    if not (isinstance(lp_norm, numbers.Real) and 0.0 < float(lp_norm) <= 1.0):
        raise OptionError(f"lp_norm must be in (0, 1] (e.g. 0.7), got {lp_norm!r}")
    if not (isinstance(beta, numbers.Real) and np.isfinite(beta) and beta > 0):
        raise OptionError(f"beta must be a finite number > 0 (e.g. 10.0), got {beta!r}")
    if not (isinstance(kappa, numbers.Real) and np.isfinite(kappa) and kappa >= 1):
        raise OptionError(f"kappa must be a finite number >= 1 (e.g. 1.01), got {kappa!r}")
    return qt, gran, size


def column_weights(x_mean_sq: Any, n_in: int, damp: float = ACTIVATION_DAMP) -> np.ndarray:
    """Per-input-feature error weights from activation statistics: ``mean(x_j^2)``, normalised to mean 1.

    ``damp`` (a fraction of the mean) is added so that no feature is ignored; all-zero
    statistics give equal weights (the data-free objective).

    Raises:
        OptionError: not ``n_in`` finite values >= 0.

    Example:
        >>> column_weights(np.array([0.0, 1.0, 3.0]), 3).round(3).tolist()
        [0.01, 0.752, 2.238]
    """
    d = np.asarray(x_mean_sq, np.float64)
    if d.shape != (n_in,) or not np.all(np.isfinite(d)) or np.any(d < 0):
        bad = "" if d.shape != (n_in,) else " with negative or non-finite values"
        raise OptionError(f"x_mean_sq must hold {n_in} finite values >= 0 (mean x_j^2 of each input feature), "
                          f"got shape {d.shape}{bad}")
    mean = float(d.mean())
    if not mean > 0:
        return np.ones(n_in)
    d = d / mean
    return (d + damp) / (1.0 + damp)


def _candidate(g: np.ndarray, wts: np.ndarray, s0: np.ndarray, z0: np.ndarray, qt: QType, float_zero: bool,
               opts: tuple[float, float, float, int, bool]) -> tuple[np.ndarray, np.ndarray]:
    """HQQ's (scale, zero point in code units) per block, from the fused kernel."""
    from lowbit._kernels.hqq import hqq_blocks

    p, beta, kappa, iterations, early_stop = opts
    scale, zero = np.empty(g.shape[0]), np.empty(g.shape[0])
    hqq_blocks(g, wts, np.ascontiguousarray(s0, np.float64), np.ascontiguousarray(z0, np.float64), qt.qmin, qt.qmax,
               p, beta, kappa, iterations, early_stop, max(1, _CHUNK_ELEMENTS // g.shape[1]), float_zero, scale, zero)
    return scale, zero


def _block_errors(w: np.ndarray, qtensor: QTensor, cols: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(weighted squared error, largest absolute error) of every block of a stored reconstruction, in parameter
    order; ``cols`` weighs each input feature (a ragged last group is one shorter block)."""
    e = w.astype(np.float64) - np.asarray(qtensor.dequantize(), np.float64)
    out = w.shape[0]
    err, top = np.empty((out, -(-w.shape[1] // size))), np.empty((out, -(-w.shape[1] // size)))
    for g0, g1, part in group_parts(e, size):
        width = part.shape[1]
        pe = part.reshape(out, g1 - g0, width)
        wts = cols[g0 * size : g0 * size + (g1 - g0) * width].reshape(-1, width)
        err[:, g0:g1] = np.einsum("rgk,gk->rg", pe * pe, wts)
        top[:, g0:g1] = np.abs(pe).max(axis=2)
    return err.reshape(-1), top.reshape(-1)


def _candidates(w: np.ndarray, cols: np.ndarray, base: QTensor, size: int, qt: QType, float_zero: bool, sdt: Any,
                opts: tuple[float, float, float, int, bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(min-max scale, HQQ scale, HQQ zero point in code units) per block in parameter order; the blocks of
    each equal-width part (the ragged last group apart) go through the kernel together."""
    out = w.shape[0]
    shape = (out, -(-w.shape[1] // size))
    s0_all, s_h, z_h = np.empty(shape), np.empty(shape), np.empty(shape)
    scale_b = np.asarray(base.scale, np.float64).reshape(shape)
    zero_b = np.asarray(base.zero_point, np.float64).reshape(shape)
    for g0, g1, g in group_parts(w.astype(np.float64), size):  # one row per block, in parameter order
        width = g.shape[1]
        wts = np.ascontiguousarray(cols[g0 * size : g0 * size + (g1 - g0) * width].reshape(-1, width))
        s0 = scale_b[:, g0:g1].reshape(-1)
        if float_zero:  # the min-max scale as stored, and its minimum in code units
            z0 = -zero_b[:, g0:g1].reshape(-1) / s0
        else:
            s0, z0 = choose_qparams(g.min(axis=1), g.max(axis=1), qt, symmetric=False, scale_dtype=sdt)
            s0 = s0.astype(np.float64)
        sh, zh = _candidate(g, wts, s0, np.asarray(z0, np.float64), qt, float_zero, opts)
        s0_all[:, g0:g1], s_h[:, g0:g1], z_h[:, g0:g1] = (a.reshape(out, -1) for a in (s0, sh, zh))
    return s0_all.reshape(-1), s_h.reshape(-1), z_h.reshape(-1)


def hqq_quantize(
    weight: Any,
    qtype: str | QType = "uint4",
    *,
    granularity: Granularity | str | None = None,
    iterations: int = 20,
    lp_norm: float = 0.7,
    beta: float = 10.0,
    kappa: float = 1.01,
    early_stop: bool = True,
    zero_point: str = "int",
    scale_format: str | None = None,
    x_mean_sq: Any = None,
    group_size: Any = _UNSET,
) -> QTensor:
    """Quantize a weight matrix with half-quadratic quantization (data-free, or activation-aware).

    Args:
        weight: 2-D float NumPy array or CPU torch tensor ``(out_features, in_features)``.
        qtype: integer format, used affine: ``"uint4"``, ``"uint3"``, ... (signed formats
            such as ``"int4"`` work too with integer zero points).
        granularity: ``PerGroup(size)`` / ``"group:64"`` (the default, None; groups along
            ``in_features``; a size that does not divide it gives a shorter last group) or
            ``PerChannel(0)`` / ``"channel"``
            (one scale and zero point per output channel).
        iterations: maximum half-quadratic iterations per phase, >= 1.
        lp_norm: exponent ``p`` of the error norm minimised, in (0, 1].
        beta: initial penalty of the splitting, > 0.
        kappa: factor by which ``beta`` grows each iteration, >= 1.
        early_stop: stop a phase as soon as the total ``l_p`` error stops decreasing (judged
            per chunk of about 65k elements, which are processed together to stay in cache).
        zero_point: ``"int"`` (an integer zero point in ``[qmin, qmax]``, the scale refitted
            for it) or ``"float"`` (the authors' form: the min-max scale and a real zero
            point ``z``, stored as lowbit's float zero point ``offset = -z * scale``;
            unsigned formats, float32 or float16 scales).
        scale_format: how the scales (and float zero points) are stored, e.g. ``"float16"``;
            None for float32. Every candidate is scored as stored.
        x_mean_sq: optional ``(in_features,)`` mean of ``x_j^2`` of each input feature over
            calibration data (the diagonal of GPTQ's Hessian, halved): the errors of column
            ``j`` are weighted by it (normalised, plus 1% of the mean), in the iterations and
            in the choice against min-max, so the objective is the layer's output error
            without cross terms. None: every weight counts alike (data-free).
        group_size: deprecated spelling of ``granularity`` (None: per channel).

    Returns:
        A QTensor with ``PerGroup(size)`` or ``PerChannel(0)`` granularity,
        ``symmetric=False``; ``lowbit.dequantize`` of it is the HQQ reconstruction. It is exactly
        ``lowbit.quantize(weight, qtype, granularity=..., scale=qt.scale, zero_point=qt.zero_point,
        scale_format=...)``. Each block keeps HQQ's parameters only where its (weighted) squared
        error is lower than min-max round to nearest's in the same format and no weight is rounded
        beyond half a min-max step; else min-max's (kquant6: per run of 8 blocks; double8: for the
        whole tensor, see the module docstring).

    Raises:
        OptionError: non-integer format, weight not 2-D, ``iterations < 1``, ``lp_norm``
            outside (0, 1], ``beta <= 0``, ``kappa < 1``, a bad ``x_mean_sq``, or
            ``zero_point="float"`` with a signed format or another scale format.
            GranularityError: not per channel or per group. QTypeError: unknown format. InputTypeError, EmptyInputError,
            NonFiniteError: as for :func:`lowbit.quantize`.

    Example:
        >>> import numpy as np, lowbit
        >>> from lowbit.algorithms import hqq_quantize
        >>> w = np.random.default_rng(1).standard_normal((4, 64))
        >>> qt = hqq_quantize(w, "uint4", granularity="group:32")
        >>> codes = qt.codes
        >>> bool(codes.min() >= 0 and codes.max() <= 15), qt.zero_point.shape
        (True, (4, 2))
        >>> f = hqq_quantize(w, "uint4", granularity="group:32", zero_point="float", scale_format="float16")
        >>> f.zero_point.dtype.name, f.scale_format
        ('float16', 'float16')
    """
    flat, source = as_float_array(weight)
    qt, gran, size = _check_options(qtype, source.shape, granularity, group_size, iterations, lp_norm, beta, kappa)
    float_zero = _check_zero_point(qt, zero_point, scale_format)
    check_finite(flat, int(flat.size - np.count_nonzero(np.isfinite(flat))), source.shape)
    w = flat.reshape(source.shape)
    n_in = source.shape[1]
    cols = np.ones(n_in) if x_mean_sq is None else column_weights(x_mean_sq, n_in)
    kind = "float" if float_zero else "int"
    base = quantize(w, qt, granularity=gran, symmetric=False, zero_point=kind, scale_format=scale_format)
    sdt = np.float64 if flat.dtype == np.float64 else np.float32
    opts = (float(lp_norm), float(beta), float(kappa), int(iterations), bool(early_stop))
    s0, s_h, z_h = _candidates(w, cols, base, size, qt, float_zero, sdt, opts)
    zdt = base.zero_point.dtype
    with np.errstate(over="ignore", invalid="ignore"):
        z_c = (-z_h * s_h).astype(zdt) if float_zero else z_h
    usable = np.isfinite(z_c.astype(np.float64)) & np.isfinite(s_h) & (s_h > 0)
    s_c = np.where(usable, s_h, s0)
    z_c = np.where(usable, z_c, base.zero_point.reshape(-1)).astype(zdt if float_zero else np.int64)
    shape = base.scale.shape
    cand = quantize(w, qt, granularity=gran, symmetric=False, scale=s_c.reshape(shape),
                    zero_point=z_c.reshape(shape), scale_format=scale_format)
    err_b = _block_errors(w, base, cols, size)[0]
    err_c, top_c = _block_errors(w, cand, cols, size)
    keep = usable & (err_c < err_b) & (top_c <= 0.5 * s0)
    fmt = scale_format_for(qt, scale_format)
    result = _mixed(weight, base, cand, keep, gran, scale_format)
    if fmt.name == "kquant6":  # storing mixed scales re-rounds each run of 8 under its new super-scale
        err_r = _block_errors(w, result, cols, size)[0]
        starts = np.arange(0, err_r.size, KQUANT_SUPER)
        worse = np.add.reduceat(err_r, starts) > np.add.reduceat(err_b, starts)
        if worse.any():  # those runs take min-max's scales back: each run is then one stored encoding, unchanged
            result = _mixed(weight, result, base, np.repeat(worse, KQUANT_SUPER)[: err_r.size], gran, scale_format)
    elif fmt.name == "double8" and _block_errors(w, result, cols, size)[0].sum() > err_b.sum():
        return base  # double8 moves scales when it stores them again: keep HQQ's only where it helps in all
    return result


def _mixed(weight: Any, first: QTensor, second: QTensor, take: np.ndarray, gran: Any, scale_format: Any) -> QTensor:
    """``weight`` stored with the scales and zero points of ``second`` in the blocks ``take``, of ``first``
    elsewhere (blocks in parameter order)."""
    shape = first.scale.shape
    flat = lambda a: np.asarray(a, np.float64).reshape(-1) if a.dtype.kind == "f" else a.reshape(-1)  # noqa: E731
    scale = np.where(take, flat(second.scale), flat(first.scale))
    zdt = first.zero_point.dtype if first.float_zero_point else np.int64
    zero = np.where(take, flat(second.zero_point), flat(first.zero_point)).astype(zdt)
    return quantize(weight, first.qtype, granularity=gran, symmetric=False, scale=scale.reshape(shape),
                    zero_point=zero.reshape(shape), scale_format=scale_format)


def _check_zero_point(qt: QType, zero_point: Any, scale_format: Any) -> bool:
    """Whether a float zero point is asked for (OptionError where the format cannot hold one)."""
    from lowbit.core import check_float_zero_point
    from lowbit.formats import scale_format_for

    fmt = scale_format_for(qt, scale_format).name
    return check_float_zero_point(zero_point, qt, None, fmt, where="hqq_quantize(zero_point='float')")
