"""SmoothQuant: move activation outliers into the weights before W8A8 quantization.

After Xiao et al. (2023), "SmoothQuant: Accurate and Efficient Post-Training
Quantization for Large Language Models".  A few input channels of a linear
layer carry activations tens of times larger than the rest, so one int8 scale
per tensor (or per token) wastes most codes on them.  The product is unchanged
if each input channel ``j`` is divided by a factor ``s_j`` and the matching
weight column multiplied by it: ``X W^T = (X diag(s)^-1) (W diag(s))^T``.
SmoothQuant picks

    ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)``

so that with ``alpha = 0.5`` the activation and the weight column end up with
the same range (the "migration strength" ``alpha`` moves difficulty from the
activations, ``alpha -> 1``, to the weights, ``alpha -> 0``).  Channels that
never fire (``max|X_j| = 0``) or whose weight column is all zero keep
``s_j = 1``; ``s`` is clamped to ``[1e-5, 1e5]``.

One ``alpha`` does not suit every layer: the paper smooths only the layers
that read a LayerNorm's output, where outlier channels are systematic, and
leaves the others alone.  :func:`search_smoothing` chooses per layer instead,
from data: it scores "no smoothing" and each ``alpha`` of a grid by the
layer's W8A8 output error on sampled calibration rows, cross-validated (factors
fitted on one half of the rows, error measured on the other), and keeps the
best.  On all-MiniLM-L6-v2 one ``alpha = 0.5`` everywhere lowered the mean
embedding cosine of dynamic per-tensor W8A8 from 0.977 to 0.925; the
search raised it to 0.980 (static: 0.977 to 0.996).

Example:
    >>> import numpy as np
    >>> from lowbit.algorithms import ActivationStatistics, smoothquant_scales
    >>> x = np.array([[1.0, 100.0], [-2.0, 50.0]])
    >>> w = np.array([[0.5, 0.5], [1.0, -0.25]])
    >>> s = smoothquant_scales(ActivationStatistics(2).partial_fit(x).absmax_, w, alpha=0.5)
    >>> s.round(3).tolist()
    [1.414, 14.142]
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from lowbit._arrays import as_float_array, check_finite
from lowbit._deprecation import warn_renamed
from lowbit.algorithms._checks import _UNSET, as_rows
from lowbit.errors import GranularityError, OptionError
from lowbit.granularity import Granularity, PerChannel, PerTensor, PerToken, as_granularity

__all__ = ["smoothquant_scales", "search_smoothing", "S_MIN", "S_MAX", "ALPHA_GRID"]

S_MIN = 1e-5
S_MAX = 1e5
ALPHA_GRID = tuple(round(0.1 * k, 1) for k in range(11))
"""Migration strengths :func:`search_smoothing` tries by default: 0, 0.1, ..., 1."""


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= float(alpha) <= 1.0:
        raise OptionError(f"alpha must be a number in [0, 1] (0.5 balances activations and weights), got {alpha!r}")
    return float(alpha)


def _weight(weight: Any) -> np.ndarray:
    w_flat, w_src = as_float_array(weight)
    if len(w_src.shape) != 2:
        raise OptionError(f"weight must be 2-d (out_features, in_features), got shape {w_src.shape}")
    check_finite(w_flat, int(w_flat.size - np.count_nonzero(np.isfinite(w_flat))), w_src.shape)
    return w_flat.reshape(w_src.shape)


def _absmax(act_absmax: Any, n_in: int) -> np.ndarray:
    a = as_rows(act_absmax, n_in, "act_absmax").reshape(-1).astype(np.float64)
    if a.size != n_in:
        raise OptionError(f"act_absmax must be one value per input channel ({n_in}), got {a.size}")
    if np.any(a < 0):
        raise OptionError("act_absmax holds negative values; pass per-channel maxima of |x|")
    return a


def smoothquant_scales(act_absmax: Any, weight: Any, alpha: float = 0.5) -> np.ndarray:
    """Per-input-channel smoothing factors ``s`` (divide inputs, multiply weight columns).

    Args:
        act_absmax: ``(in_features,)`` per-channel ``max|X_j|`` (e.g. ``ActivationStatistics.absmax_``).
        weight: ``(out_features, in_features)`` weight of the layer that reads ``X``.
        alpha: migration strength in [0, 1]; 0.5 balances the two ranges.

    Returns:
        float64 ``s`` of shape ``(in_features,)``, in ``[1e-5, 1e5]``; 1 where the
        channel or the weight column is all zero.

    Raises:
        OptionError: shapes that do not match, ``alpha`` outside [0, 1], negative maxima.
        NonFiniteError: NaN/Inf in either input.

    Example:
        >>> import numpy as np
        >>> smoothquant_scales(np.array([8.0, 0.0]), np.array([[2.0, 1.0]]), alpha=0.5).tolist()
        [2.0, 1.0]
    """
    a_ = _check_alpha(alpha)
    w = _weight(weight)
    return _factors(_absmax(act_absmax, w.shape[1]), _column_max(w), a_)


def _column_max(w: np.ndarray) -> np.ndarray:
    return np.abs(w).max(axis=0).astype(np.float64)


def _factors(a: np.ndarray, w_max: np.ndarray, alpha: float) -> np.ndarray:
    """:func:`smoothquant_scales` on checked inputs: channel maxima ``a`` and weight column maxima."""
    alive = (a > 0) & (w_max > 0)
    s = np.ones_like(a)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        s[alive] = a[alive] ** alpha / w_max[alive] ** (1.0 - alpha)
    return np.clip(s, S_MIN, S_MAX)


def _int8(values: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Symmetric int8 (-127..127) fake quantization with the given (broadcast) scale."""
    return np.clip(np.rint(values / scale), -127, 127) * scale


_ACT_MODES = ("static", "tensor", "token")  # how the scored layer quantizes its activations


def _modes(act_granularity: Any, static: bool, weight_granularity: Any, activations: Any, weights: Any
           ) -> tuple[str, str]:
    """(activation mode, weight mode) from the arguments, the deprecated spellings mapped with a warning."""
    if activations is not _UNSET:
        warn_renamed("search_smoothing(activations=...)", "act_granularity= and static=")
        if activations not in _ACT_MODES:
            raise OptionError(f"activations must be one of {_ACT_MODES}, got {activations!r}")
        static, act_granularity = activations == "static", "tensor" if activations == "static" else activations
    if weights is not _UNSET:
        warn_renamed("search_smoothing(weights=...)", "weight_granularity=")
        weight_granularity = weights
    act = as_granularity(act_granularity, allowed=(PerTensor, PerToken), what="act_granularity")
    if static and isinstance(act, PerToken):
        raise GranularityError("a static activation scale is one per tensor; use act_granularity='tensor'")
    wgran = as_granularity(weight_granularity, allowed=(PerTensor, PerChannel), what="weight_granularity")
    if isinstance(wgran, PerChannel) and wgran.axis != 0:
        raise GranularityError(f"weight_granularity must be PerChannel(0) or PerTensor(), got {wgran!r}")
    return ("static" if static else str(act)), str(wgran)


def _w8a8_error(w: np.ndarray, x: np.ndarray, y: np.ndarray, s: np.ndarray, x_range: float | None,
                activations: str, weights: str) -> float:
    """Output error of the layer quantized as Int8Linear does, after smoothing by ``s``.

    ``x_range`` is the static activation range of ``x / s``; None quantizes dynamically.
    """
    ws = w * s
    w_scale = np.abs(ws).max(axis=1 if weights == "channel" else None, keepdims=True) / 127
    wq = _int8(ws, np.where(w_scale > 0, w_scale, 1.0))
    xs = x / s
    if activations == "token":
        x_max = np.abs(xs).max(axis=1, keepdims=True)
    else:  # one scale: the static range, or the rows' own (dynamic per tensor)
        x_max = np.asarray(np.abs(xs).max() if x_range is None else x_range)
    x_scale = np.where(x_max > 0, x_max / 127, 1.0)
    diff = y - _int8(xs, x_scale) @ wq.T
    return float(np.sum(np.square(diff), dtype=np.float64))


def _held_out_error(w: np.ndarray, w_max: np.ndarray, x: np.ndarray, y: np.ndarray, alpha: float | None,
                    activations: str, weights: str) -> float:
    """Two-fold cross-validated W8A8 error of smoothing with ``alpha`` (None: no smoothing).

    The factors (and a static range) are fitted on one half of the rows and scored on
    the other, then the other way round: fitted and scored on the same rows, a high
    ``alpha`` looks best, yet it hinges each channel's scale on that channel's maximum,
    and a new input that exceeds it in a rarely firing channel either clips (static)
    or inflates the one dynamic scale of the whole tensor.
    """
    half = x.shape[0] // 2
    total = 0.0
    for fit, score in ((slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))):
        a_fit = np.abs(x[fit]).max(axis=0).astype(np.float64)
        s = np.ones_like(a_fit) if alpha is None else _factors(a_fit, w_max, alpha)
        x_range = float((a_fit / s).max()) if activations == "static" else None
        total += _w8a8_error(w, x[score], y[score], s.astype(np.float32), x_range, activations, weights)
    return total


def search_smoothing(
    weight: Any,
    x_sample: Any,
    act_absmax: Any,
    *,
    act_granularity: Granularity | str = "tensor",
    static: bool = True,
    weight_granularity: Granularity | str = "channel",
    alphas: tuple[float, ...] = ALPHA_GRID,
    activations: Any = _UNSET,
    weights: Any = _UNSET,
) -> tuple[np.ndarray | None, float | None]:
    """The SmoothQuant factors (or none) that give this layer the least W8A8 output error.

    Candidates are "no smoothing" and :func:`smoothquant_scales` for each ``alpha``;
    each is scored by ``|| x W^T - Q(x / s) Q(W s)^T ||^2`` with int8 weights (one
    scale per output channel, or per tensor) and int8 activations as the layer will
    quantize them: static, with a range fixed beforehand (``max_j max|x_j| / s_j``), or
    dynamic with the rows' own range (per tensor: one scale per call; per token: one
    scale per row).

    The score is two-fold cross-validated: ``s`` (and the static range) come from
    the per-channel maxima of one half of the sampled rows and the error is measured
    on the other half, then the halves swap.  Scored on the rows it was fitted to, a
    high ``alpha`` always looks best, yet it ties each channel's scale to that
    channel's maximum; a new input beyond it in a rarely firing channel clips (static)
    or inflates the whole tensor's one dynamic scale, which in-sample scoring cannot
    see.  The chosen ``alpha`` is then applied with ``act_absmax`` over all rows.

    Args:
        weight: ``(out_features, in_features)``.
        x_sample: ``(rows >= 2, in_features)`` calibration inputs of the layer, in the
            order seen (e.g. ``ActivationStatistics.sample_``); the halves are the folds.
        act_absmax: per-channel ``max|x_j|`` over all calibration rows.
        act_granularity: ``PerTensor()`` / ``"tensor"`` or ``PerToken()`` / ``"token"``
            (dynamic only): how the layer scales its int8 activations.
        static: the activation range is fixed beforehand (True) or taken from each call.
        weight_granularity: ``PerChannel(0)`` / ``"channel"`` or ``PerTensor()`` /
            ``"tensor"``: how the layer scales its int8 weights.
        alphas: migration strengths to try.
        activations, weights: deprecated spellings (``"static"``/``"tensor"``/``"token"``
            and ``"channel"``/``"tensor"``).

    Returns:
        ``(s, alpha)``: the float64 factors and their ``alpha``, or ``(None, None)``
        when no smoothing is best.

    Raises:
        OptionError: shapes that do not match, an ``alpha`` outside [0, 1], an unknown
            ``activations``, fewer than 2 rows. GranularityError: a granularity the
            layers do not take (per-token with ``static=True``).
        NonFiniteError: NaN/Inf in the inputs. EmptyInputError: no rows.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> x = rng.standard_normal((256, 16)) * np.where(np.arange(16) == 3, 60.0, 1.0)  # one outlier channel
        >>> w = rng.standard_normal((8, 16))
        >>> s, alpha = search_smoothing(w, x, np.abs(x).max(axis=0))
        >>> s is not None and 0 < alpha
        True
    """
    grid = tuple(_check_alpha(a) for a in alphas)
    activations, weights = _modes(act_granularity, static, weight_granularity, activations, weights)
    w = _weight(weight).astype(np.float32)
    x = as_rows(x_sample, w.shape[1], "x_sample").astype(np.float32)
    a = _absmax(act_absmax, w.shape[1])
    if x.shape[0] < 2:
        raise OptionError(f"x_sample needs at least 2 rows to score the candidates on, got {x.shape[0]}")
    y, w_max = x @ w.T, _column_max(w)
    best_alpha: float | None = None
    best_err = _held_out_error(w, w_max, x, y, None, activations, weights)
    for alpha in grid:
        err = _held_out_error(w, w_max, x, y, alpha, activations, weights)
        if err < best_err:
            best_err, best_alpha = err, alpha
    return (None, None) if best_alpha is None else (_factors(a, w_max, best_alpha), best_alpha)
