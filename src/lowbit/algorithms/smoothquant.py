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
activations, ``alpha -> 1``, to the weights, ``alpha -> 0``).

:class:`ChannelAbsMax` streams the per-channel ``max|X_j|`` over calibration
batches; :func:`smoothquant_scales` turns it and a weight into ``s``.  Channels
that never fire (``max|X_j| = 0``) or whose weight column is all zero keep
``s_j = 1``; ``s`` is clamped to ``[1e-5, 1e5]`` so that no factor makes a
column overflow or vanish in float32.

Example:
    >>> import numpy as np
    >>> from lowbit.algorithms import ChannelAbsMax, smoothquant_scales
    >>> x = np.array([[1.0, 100.0], [-2.0, 50.0]])
    >>> w = np.array([[0.5, 0.5], [1.0, -0.25]])
    >>> s = smoothquant_scales(ChannelAbsMax(2).add(x).absmax_, w, alpha=0.5)
    >>> s.round(3).tolist()
    [1.414, 14.142]
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from lowbit._arrays import as_float_array, check_finite
from lowbit.errors import EmptyInputError, NotCalibratedError, OptionError

__all__ = ["ChannelAbsMax", "smoothquant_scales", "S_MIN", "S_MAX"]

S_MIN = 1e-5
S_MAX = 1e5


def _rows(x: Any, width: int, what: str) -> np.ndarray:
    """``x`` as finite float64 rows of ``width`` columns (typed errors otherwise)."""
    shape = tuple(np.shape(x))
    if not shape or shape[-1] != width:
        raise OptionError(f"{what} must be shaped (..., {width}), got {shape}")
    flat, source = as_float_array(x, allow_empty=True)
    if flat.size == 0:
        raise EmptyInputError(f"{what} of shape {shape} has no rows")
    check_finite(flat, int(flat.size - np.count_nonzero(np.isfinite(flat))), source.shape)
    return flat.reshape(-1, width)


class ChannelAbsMax:
    """Streaming per-channel ``max |x|`` over batches shaped ``(..., channels)``.

    Args:
        channels: length of the last axis of every batch.

    Attributes:
        absmax_: float64 array ``(channels,)`` (after the first batch).
        n_samples_: rows seen.

    Raises:
        OptionError: ``channels`` is not a positive int.

    Example:
        >>> import numpy as np
        >>> ChannelAbsMax(3).add(np.array([[1.0, -4.0, 0.0]])).add(np.array([[2.0, 1.0, 0.0]])).absmax_.tolist()
        [2.0, 4.0, 0.0]
    """

    channels: int
    n_samples_: int
    _absmax: np.ndarray

    def __init__(self, channels: int) -> None:
        if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1:
            raise OptionError(f"channels must be a positive int, got {channels!r}")
        self.channels = int(channels)
        self.n_samples_ = 0
        self._absmax = np.zeros(self.channels, np.float64)

    def add(self, x: Any) -> ChannelAbsMax:
        """Fold a batch in; returns ``self``.

        Raises:
            OptionError: wrong last axis. EmptyInputError: no rows. NonFiniteError: NaN/Inf.

        Example:
            >>> import numpy as np
            >>> ChannelAbsMax(2).add(np.ones((4, 3, 2))).n_samples_
            12
        """
        rows = _rows(x, self.channels, "activations")
        np.maximum(self._absmax, np.abs(rows).max(axis=0), out=self._absmax)
        self.n_samples_ += rows.shape[0]
        return self

    @property
    def absmax_(self) -> np.ndarray:
        """A copy of the per-channel maxima.

        Raises:
            NotCalibratedError: no batch was added yet.
        """
        if self.n_samples_ == 0:
            raise NotCalibratedError("ChannelAbsMax has seen no data; call .add(activations) first")
        return self._absmax.copy()

    def __repr__(self) -> str:
        return f"ChannelAbsMax(channels={self.channels}, n_samples_={self.n_samples_})"


def smoothquant_scales(act_absmax: Any, weight: Any, alpha: float = 0.5) -> np.ndarray:
    """Per-input-channel smoothing factors ``s`` (divide inputs, multiply weight columns).

    Args:
        act_absmax: ``(in_features,)`` per-channel ``max|X_j|`` (e.g. ``ChannelAbsMax.absmax_``).
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
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= float(alpha) <= 1.0:
        raise OptionError(f"alpha must be a number in [0, 1] (0.5 balances activations and weights), got {alpha!r}")
    w_flat, w_src = as_float_array(weight)
    if len(w_src.shape) != 2:
        raise OptionError(f"weight must be 2-d (out_features, in_features), got shape {w_src.shape}")
    check_finite(w_flat, int(w_flat.size - np.count_nonzero(np.isfinite(w_flat))), w_src.shape)
    a = _rows(act_absmax, w_src.shape[1], "act_absmax").reshape(-1)
    if a.size != w_src.shape[1]:
        raise OptionError(f"act_absmax must be one value per input channel ({w_src.shape[1]}), got {a.size}")
    if np.any(a < 0):
        raise OptionError("act_absmax holds negative values; pass per-channel maxima of |x|")
    w_max = np.abs(w_flat.reshape(w_src.shape)).max(axis=0).astype(np.float64)
    alive = (a > 0) & (w_max > 0)
    s = np.ones_like(a)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        s[alive] = a[alive] ** float(alpha) / w_max[alive] ** (1.0 - float(alpha))
    return np.clip(s, S_MIN, S_MAX)
