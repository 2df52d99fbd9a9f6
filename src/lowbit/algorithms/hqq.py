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
scale ``<W - W_e, q - z> / <q - z, q - z>``).  The ``l_p`` norm steers the
iterations, but the parameters kept are those with the lowest squared error
seen, and each block keeps HQQ's parameters only where they have a lower
squared error than the plain min-max ones *and* round every weight to within
half a min-max step, as min-max does: HQQ may move the grid but not clip.  So
no block is worse than round-to-nearest in squared error, and none clips its
extremes, which in a language model are salient weights.  (Choosing by the
``l_p`` error let the extremes keep large errors: on SmolLM2 at uint4 per
channel, 2.5-3.1x round-to-nearest's perplexity; by squared error alone, 1.9x.)
The result is built with :func:`lowbit.quantize` from those explicit
parameters, so ``lowbit.dequantize(result)`` *is* the reconstruction that was
scored (codes are nearest-rounded for the chosen scale and zero point).

Supported formats: every integer format (``"uint4"``, ``"uint3"``, and also
signed ones such as ``"int4"``), always used affine (``symmetric=False``).

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
from lowbit.algorithms._checks import _UNSET, weight_granularity
from lowbit.core import quantize
from lowbit.errors import OptionError
from lowbit.formats import QType, get_qtype
from lowbit.granularity import Granularity, PerGroup, plan
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
    group_size: Any = _UNSET,
) -> QTensor:
    """Quantize a weight matrix with half-quadratic quantization (no calibration data).

    Args:
        weight: 2-D float NumPy array or CPU torch tensor ``(out_features, in_features)``.
        qtype: integer format, used affine (zero point in ``[qmin, qmax]``): ``"uint4"``,
            ``"uint3"``, ... (signed formats such as ``"int4"`` work too).
        granularity: ``PerGroup(size)`` / ``"group:64"`` (the default, None; groups along
            ``in_features``, the size must divide it) or ``PerChannel(0)`` / ``"channel"``
            (one scale and zero point per output channel).
        iterations: maximum half-quadratic iterations per phase, >= 1.
        lp_norm: exponent ``p`` of the error norm minimised, in (0, 1].
        beta: initial penalty of the splitting, > 0.
        kappa: factor by which ``beta`` grows each iteration, >= 1.
        early_stop: stop a phase as soon as the total ``l_p`` error stops decreasing (judged
            per chunk of about 65k elements, which are processed together to stay in cache).
        group_size: deprecated spelling of ``granularity`` (None: per channel).

    Returns:
        A QTensor with ``PerGroup(size)`` or ``PerChannel(0)`` granularity,
        ``symmetric=False``; ``lowbit.dequantize`` of it is the HQQ reconstruction.

    Raises:
        OptionError: non-integer format, weight not 2-D, ``iterations < 1``, ``lp_norm``
            outside (0, 1], ``beta <= 0`` or ``kappa < 1``. GranularityError: not per
            channel or per group, or a group size not dividing ``in_features``. QTypeError: unknown
            format. InputTypeError,
            EmptyInputError, NonFiniteError: as for :func:`lowbit.quantize`.

    Example:
        >>> import numpy as np, lowbit
        >>> from lowbit.algorithms import hqq_quantize
        >>> w = np.random.default_rng(1).standard_normal((4, 64))
        >>> qt = hqq_quantize(w, "uint4", granularity="group:32")
        >>> codes = qt.codes
        >>> bool(codes.min() >= 0 and codes.max() <= 15), qt.zero_point.shape
        (True, (4, 2))
    """
    flat, source = as_float_array(weight)
    qt, gran, size = _check_options(qtype, source.shape, granularity, group_size, iterations, lp_norm, beta, kappa)
    check_finite(flat, int(flat.size - np.count_nonzero(np.isfinite(flat))), source.shape)
    layout = plan(gran, source.shape)
    g = flat.astype(np.float64).reshape(-1, size)  # one row per block, in parameter order
    sdt = np.dtype(np.float64 if flat.dtype == np.float64 else np.float32)
    s0, z0 = choose_qparams(g.min(axis=1), g.max(axis=1), qt, symmetric=False, scale_dtype=sdt)
    s0 = s0.astype(np.float64)
    z0 = z0.astype(np.float64)
    scale, zero = np.empty_like(s0), np.empty_like(z0)
    from lowbit._kernels.hqq import hqq_blocks

    hqq_blocks(
        g, s0, z0, qt.qmin, qt.qmax, float(lp_norm), float(beta), float(kappa), int(iterations), bool(early_stop),
        max(1, _CHUNK_ELEMENTS // size), sdt == np.float32, scale, zero,
    )
    return quantize(
        weight,
        qt,
        granularity=gran,
        symmetric=False,
        scale=scale.astype(sdt).reshape(layout.param_shape),
        zero_point=zero.astype(np.int64).reshape(layout.param_shape),
    )
