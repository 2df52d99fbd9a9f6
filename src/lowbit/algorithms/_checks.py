"""Argument checks shared by the weight algorithms (not public).

Example:
    >>> weight_granularity("group:32", _UNSET, (4, 64), "gptq_quantize")
    (PerGroup(size=32, axis=-1), 32)
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from lowbit._arrays import as_float_array, check_finite
from lowbit._deprecation import warn_renamed
from lowbit.errors import EmptyInputError, GranularityError, OptionError
from lowbit.granularity import Granularity, PerChannel, PerGroup, as_granularity

__all__ = ["positive_int", "as_rows", "weight_granularity", "group_parts"]


def positive_int(value: Any, name: str, low: int = 1) -> int:
    """``value`` as an int >= ``low`` (OptionError otherwise).

    Example:
        >>> positive_int(3, "rows")
        3
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise OptionError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def as_rows(x: Any, width: int, what: str) -> np.ndarray:
    """``x`` shaped ``(..., width)`` as finite float rows ``(n, width)`` (float32 or float64).

    Raises:
        OptionError: the last axis is not ``width`` long. EmptyInputError: no rows.
        NonFiniteError: NaN/Inf. InputTypeError: not a float array or CPU tensor.

    Example:
        >>> as_rows(np.ones((2, 3, 4)), 4, "x").shape
        (6, 4)
    """
    shape = tuple(np.shape(x))
    if not shape or shape[-1] != width:
        raise OptionError(f"{what} must be shaped (..., {width}), got {shape}")
    flat, source = as_float_array(x, allow_empty=True)
    if flat.size == 0:
        raise EmptyInputError(f"{what} of shape {shape} has no rows")
    check_finite(flat, int(flat.size - np.count_nonzero(np.isfinite(flat))), source.shape)
    return flat.reshape(-1, width)


_UNSET: Any = object()
_PER_CHANNEL = PerChannel(0)


def weight_granularity(
    granularity: Granularity | str | None, group_size: Any, shape: tuple[int, ...], where: str,
    default: Granularity = _PER_CHANNEL,
) -> tuple[Granularity, int]:
    """The granularity of a ``(out_features, in_features)`` weight algorithm, and its block length.

    The algorithms take ``PerChannel(0)`` (one scale per output channel) or
    ``PerGroup(size)`` (groups of input columns), as objects or strings, and
    ``default`` for None; the deprecated ``group_size=`` (None: per channel)
    still works, with a warning.

    Raises:
        GranularityError: another granularity. OptionError: both spellings.  A group size
            that does not divide ``in_features`` is taken: the last group is shorter.

    Example:
        >>> weight_granularity(PerChannel(0), _UNSET, (2, 64), "hqq_quantize")
        (PerChannel(axis=0), 64)
    """
    if group_size is not _UNSET:
        if granularity is not None:
            raise OptionError(f"{where}: give granularity= only (group_size= is its deprecated spelling)")
        new = "granularity=PerChannel(0)" if group_size is None else f"granularity=PerGroup({group_size})"
        warn_renamed(f"{where}(group_size=...)", new)
        if group_size is not None:
            positive_int(group_size, "group_size")
        granularity = PerChannel(0) if group_size is None else PerGroup(int(group_size))
    gran = as_granularity(granularity, default, allowed=(PerChannel, PerGroup))
    if len(shape) != 2:
        raise OptionError(f"{where} expects a 2-d weight (out_features, in_features), got shape {shape}")
    n_in = shape[1]
    if isinstance(gran, PerChannel):
        if gran.axis not in (0, -2):
            raise GranularityError(f"{where} takes PerChannel(0) (one scale per output channel), got {gran!r}")
        return PerChannel(0), n_in
    if not isinstance(gran, PerGroup) or gran.axis not in (-1, 1):
        raise GranularityError(f"{where} groups input columns: PerGroup(size) along axis -1, got {gran!r}")
    return PerGroup(gran.size), gran.size  # a size that does not divide in_features: a shorter last group


def group_parts(w: np.ndarray, size: int) -> list[tuple[int, int, np.ndarray]]:
    """The groups of ``size`` columns of a 2-d weight as equal-width parts: ``(g0, g1, rows)``.

    ``rows`` holds the blocks of groups ``g0 .. g1 - 1`` one per row, in parameter order (row-major
    over ``(out_features, g1 - g0)``).  A size that divides ``in_features`` gives one part; otherwise
    a second part holds the shorter last group of every row (ragged groups), so a per-block
    algorithm runs on each part and writes its results into columns ``g0:g1`` of the
    ``(out_features, groups)`` parameters.

    Example:
        >>> [(g0, g1, r.shape) for g0, g1, r in group_parts(np.zeros((2, 10)), 4)]
        [(0, 2, (4, 4)), (2, 3, (2, 2))]
    """
    out, n = w.shape
    full = n // size
    parts = [(0, full, w[:, : full * size].reshape(out * full, size))] if full else []
    if n % size:
        parts.append((full, full + 1, np.ascontiguousarray(w[:, full * size :])))
    return parts
