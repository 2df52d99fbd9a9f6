"""AWQ: activation-aware weight quantization (Lin et al., 2024).

Not all weights matter alike: the input channels that carry large activations
decide most of a linear layer's output, and rounding their weights costs the
most.  AWQ protects them without mixed precision by scaling: the layer
``y = x W^T`` equals ``y = (x / s) (W diag(s))^T``, and quantizing
``W diag(s)`` (then dividing the inputs by ``s``) shrinks the *relative*
rounding error of the columns with large ``s``.  The factors come from the
activation statistics alone, ``s = mean|x_j|^alpha`` (normalised so that
``max(s) * min(s) = 1``), and ``alpha`` is chosen on a grid over ``[0, 1)`` by
the output error on calibration rows,

    ``|| X W^T - X (Q(W diag(s)) diag(s)^-1)^T ||^2``.

``alpha = 0`` (``s = 1``) is plain round-to-nearest and is always a candidate,
so the chosen scales never lose to it on those rows.  A second search then
shrinks the clipping range of each block (output row, or output row x input
group) by a factor in ``[max_shrink, 1]``, keeping per block the factor with
the least output error of that block's columns, and keeps the whole clip
only if it lowers the layer's total output error.

The result is a :class:`lowbit.QTensor` of ``W diag(s)`` (any integer format,
per-channel or per-group) and the float32 factors ``s``; the quantized layer
computes ``(x / s) @ dequantize(qt).T``.  :class:`lowbit.nn.WeightOnlyLinear`
stores ``s`` in its ``smooth_scale`` buffer.

:class:`~lowbit.algorithms.ActivationStatistics` streams what AWQ needs from
a layer's inputs: the per-channel ``mean |x|`` over every row, and a uniform
random sample of rows (fixed seed, bounded memory) to score candidates on.

Example:
    >>> import numpy as np, lowbit
    >>> from lowbit.algorithms import ActivationStatistics, awq_quantize
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((512, 64)) * np.where(np.arange(64) < 4, 20.0, 1.0)  # 4 outlier channels
    >>> w = rng.standard_normal((32, 64))
    >>> stats = ActivationStatistics(64).partial_fit(x)
    >>> qt, s = awq_quantize(w, stats.sample_, "int4", granularity="group:32", x_mean_abs=stats.mean_abs_)
    >>> rtn = lowbit.fake_quantize(w, "int4", granularity=lowbit.PerGroup(32))
    >>> err = lambda wq: float(np.sum((x @ (w - wq).T) ** 2))
    >>> bool(err(qt.dequantize() / s) < err(rtn))
    True
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from lowbit._arrays import as_float_array, check_finite
from lowbit.algorithms._checks import _UNSET, as_rows, group_parts, positive_int, weight_granularity
from lowbit.core import fake_quantize, quantize
from lowbit.errors import OptionError
from lowbit.formats import QType, get_qtype
from lowbit.granularity import Granularity, PerChannel, PerGroup
from lowbit.qparams import choose_qparams
from lowbit.qtensor import QTensor

__all__ = ["awq_quantize", "awq_scales"]

_S_RANGE = (1e-4, 1e4)


def awq_scales(x_mean_abs: Any, alpha: float) -> np.ndarray:
    """AWQ's factors ``s = mean|x|^alpha``, normalised so that ``max(s) * min(s) = 1``.

    Channels whose mean is 0 are treated as the smallest positive mean (they
    get the smallest factor); ``s`` is clipped to ``[1e-4, 1e4]``.

    Args:
        x_mean_abs: ``(in_features,)`` per-channel mean ``|x|``, >= 0.
        alpha: exponent in [0, 1]; 0 gives ``s = 1``.

    Returns:
        float64 factors, one per input channel.

    Example:
        >>> awq_scales(np.array([1.0, 4.0, 16.0]), 0.5).tolist()
        [0.5, 1.0, 2.0]
    """
    m = np.asarray(x_mean_abs, np.float64).reshape(-1)
    positive = m[m > 0]
    floor = positive.min() if positive.size else 1.0
    s = np.maximum(m, floor) ** float(alpha)
    s = s / np.sqrt(s.max() * s.min())
    return np.clip(s, *_S_RANGE)


def _check(weight: Any, x_sample: Any, qtype: str | QType, granularity: Any, group_size: Any, grid: Any,
           max_shrink: Any, clip_steps: Any) -> tuple[np.ndarray, np.ndarray, QType, Granularity, int]:
    w_flat, w_src = as_float_array(weight)
    gran, size = weight_granularity(granularity, group_size, w_src.shape, "awq_quantize", PerGroup(128))
    check_finite(w_flat, int(w_flat.size - np.count_nonzero(np.isfinite(w_flat))), w_src.shape)
    n_in = w_src.shape[1]
    qt = get_qtype(qtype)
    if qt.kind != "int":
        raise OptionError(f"AWQ rounds to integer formats; got {qt.name} ({qt.kind}); use e.g. 'int4' or 'uint4'")
    positive_int(grid, "grid")
    positive_int(clip_steps, "clip_steps")
    if isinstance(max_shrink, bool) or not isinstance(max_shrink, numbers.Real) or not 0 < float(max_shrink) <= 1:
        raise OptionError(f"max_shrink must be in (0, 1] (the smallest clip factor tried), got {max_shrink!r}")
    x = as_rows(x_sample, n_in, "x_sample")
    w = w_flat.reshape(w_src.shape).astype(np.float32)
    return w, x.astype(np.float32), qt, gran, size


_CLIP_ROWS = 512  # calibration rows that score clipping candidates
_BLOCK_CHUNK = 1 << 24  # floats of per-block outputs computed at once


def _output_error(x: np.ndarray, diff: np.ndarray) -> float:
    """``|| x diff^T ||^2`` (float32 product, float64 sum)."""
    y = x @ diff.T
    return float(np.sum(np.square(y), dtype=np.float64))


def _block_errors(x: np.ndarray, diff: np.ndarray, size: int) -> np.ndarray:
    """``err[o, b] = || x[:, block b] diff[o, block b]^T ||^2`` for blocks of ``size`` columns (the last
    block shorter when ``size`` does not divide the width)."""
    full = diff.shape[1] // size * size
    parts = [_equal_block_errors(x[:, :full], diff[:, :full], size)] if full else []
    if full < diff.shape[1]:
        parts.append(_equal_block_errors(x[:, full:], diff[:, full:], diff.shape[1] - full))
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _equal_block_errors(x: np.ndarray, diff: np.ndarray, size: int) -> np.ndarray:
    """:func:`_block_errors` for a width that ``size`` divides."""
    n, (out, width) = x.shape[0], diff.shape
    nblocks = width // size
    xb = x.reshape(n, nblocks, size).transpose(1, 0, 2)  # (blocks, rows, size)
    db = diff.reshape(out, nblocks, size).transpose(1, 2, 0)  # (blocks, size, out)
    err = np.empty((nblocks, out))
    step = max(1, _BLOCK_CHUNK // (n * out))
    for b in range(0, nblocks, step):
        y = np.matmul(xb[b : b + step], db[b : b + step])  # (chunk, rows, out)
        err[b : b + step] = np.sum(np.square(y), axis=1, dtype=np.float64)
    return err.T


def _block_ranges(ws: np.ndarray, size: int, sym: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-block (min, max) of ``ws`` for blocks of ``size`` columns (the last one shorter when ``size`` does
    not divide the width); symmetric ranges are ±absmax."""
    lo = np.empty((ws.shape[0], -(-ws.shape[1] // size)), ws.dtype)
    hi = np.empty_like(lo)
    for g0, g1, rows in group_parts(ws, size):
        lo[:, g0:g1] = rows.min(axis=1).reshape(ws.shape[0], -1)
        hi[:, g0:g1] = rows.max(axis=1).reshape(ws.shape[0], -1)
    if sym:
        amax = np.maximum(-lo, hi)
        lo, hi = -amax, amax
    return lo, hi


def _quantize_clipped(ws: np.ndarray, qt: QType, gran: Any, sym: bool, size: int, factor: np.ndarray) -> QTensor:
    """Quantize ``ws`` with every block's range shrunk by ``factor`` (shaped like the blocks)."""
    lo, hi = _block_ranges(ws, size, sym)
    scale, zero = choose_qparams(lo * factor, hi * factor, qt, symmetric=sym, scale_dtype=np.float32)
    if isinstance(gran, PerChannel):
        scale, zero = scale[:, 0], zero[:, 0]
    return quantize(ws, qt, granularity=gran, symmetric=sym, scale=scale, zero_point=zero)


def _search_clip(ws: np.ndarray, x: np.ndarray, qt: QType, gran: Any, sym: bool, size: int,
                 factors: np.ndarray) -> np.ndarray:
    """Per-block shrink factor with the least output error of the block's own columns."""
    nblocks = -(-ws.shape[1] // size)
    best_err = np.full((ws.shape[0], nblocks), np.inf)
    best = np.ones((ws.shape[0], nblocks))
    x = x[:: max(1, x.shape[0] // _CLIP_ROWS)][:_CLIP_ROWS]
    for f in factors:
        factor = np.full((ws.shape[0], nblocks), f)
        err = _block_errors(x, ws - _quantize_clipped(ws, qt, gran, sym, size, factor).dequantize(), size)
        better = err < best_err
        best_err[better], best[better] = err[better], f
    return best


def awq_quantize(
    weight: Any,
    x_sample: Any,
    qtype: str | QType = "int4",
    *,
    granularity: Granularity | str | None = None,
    symmetric: bool | None = None,
    x_mean_abs: Any = None,
    grid: int = 20,
    clip: bool = True,
    max_shrink: float = 0.5,
    clip_steps: int = 10,
    group_size: Any = _UNSET,
) -> tuple[QTensor, np.ndarray]:
    """Quantize a linear layer's weight with activation-aware scaling and clipping.

    Args:
        weight: ``(out_features, in_features)`` float array or CPU tensor.
        x_sample: ``(rows, in_features)`` calibration inputs of this layer (e.g.
            ``ActivationStatistics.sample_``), used to score candidates.
        qtype: integer format (``"int4"``, ``"uint4"``, ``"int3"`` ...).
        granularity: ``PerGroup(size)`` / ``"group:128"`` (the default, None; input columns
            per scale group; a size that does not divide ``in_features`` gives a shorter last group) or
            ``PerChannel(0)`` / ``"channel"`` (one scale per output channel).
        symmetric: default symmetric for signed formats, affine for unsigned ones.
        x_mean_abs: ``(in_features,)`` per-channel mean ``|x|`` over all calibration
            rows (``ActivationStatistics.mean_abs_``); default: taken from ``x_sample``.
        grid: number of ``alpha`` values tried, ``k / grid`` for ``k = 0..grid-1``.
        clip: also search a per-block clipping range.
        max_shrink: smallest clip factor tried (the range times ``max_shrink``).
        clip_steps: clip factors tried, evenly from 1 down to ``max_shrink``.
        group_size: deprecated spelling of ``granularity`` (None: per channel).

    Returns:
        ``(qtensor, s)``: the QTensor of ``weight * s`` (columns scaled;
        float32 source) and the float32 factors ``s`` of shape
        ``(in_features,)``.  ``qtensor.dequantize() / s`` is the effective weight.

    Raises:
        OptionError: shapes, format or search options that do not fit.
        GranularityError: not per channel or per group.
        NonFiniteError: NaN/Inf in the weight or the sample. EmptyInputError: no rows.

    Example:
        >>> import numpy as np
        >>> w = np.random.default_rng(0).standard_normal((4, 8))
        >>> qt, s = awq_quantize(w, np.ones((16, 8)), "int8", granularity="channel")
        >>> qt.shape, s.shape, s.dtype.name
        ((4, 8), (8,), 'float32')
    """
    w, x, qt, gran, size = _check(weight, x_sample, qtype, granularity, group_size, grid, max_shrink, clip_steps)
    sym = qt.signed if symmetric is None else bool(symmetric)
    mean_abs = np.abs(x).mean(axis=0) if x_mean_abs is None else np.asarray(x_mean_abs, np.float64).reshape(-1)
    if mean_abs.shape != (w.shape[1],) or not np.all(np.isfinite(mean_abs)) or np.any(mean_abs < 0):
        raise OptionError(f"x_mean_abs must hold {w.shape[1]} finite values >= 0 (one per input channel)")

    best_err, best_s = np.inf, np.ones(w.shape[1], np.float32)
    for k in range(int(grid)):
        s = awq_scales(mean_abs, k / int(grid)).astype(np.float32)
        w_hat = fake_quantize(w * s, qt, granularity=gran, symmetric=sym) / s
        err = _output_error(x, w - w_hat)
        if err < best_err:
            best_err, best_s = err, s
    ws = w * best_s
    plain = quantize(ws, qt, granularity=gran, symmetric=sym)
    if not clip:
        return plain, best_s
    factors = np.linspace(1.0, float(max_shrink), int(clip_steps))
    clipped = _quantize_clipped(ws, qt, gran, sym, size, _search_clip(ws, x, qt, gran, sym, size, factors))
    keep_clip = _output_error(x, w - clipped.dequantize() / best_s) < _output_error(x, w - plain.dequantize() / best_s)
    return (clipped if keep_clip else plain), best_s
