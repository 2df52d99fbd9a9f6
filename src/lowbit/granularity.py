"""Granularity: which elements share one scale (and zero point).

A granularity is data: a frozen dataclass, or its one string form, accepted the
same way by every entry point (``lowbit.quantize``, the model configs, the
``lowbit.nn`` layers, the algorithms and the CLI):

=====================  ==========================  ===========================================
object                 string                      one scale per ...
=====================  ==========================  ===========================================
``PerTensor()``        ``"tensor"``                tensor
``PerChannel(axis)``   ``"channel"``, ``"channel:1"``  index along ``axis`` (weights: output channel)
``PerGroup(size, axis)``  ``"group:64"``, ``"group:64:0"``  run of ``size`` elements along ``axis``
``PerToken()``         ``"token"``                 row (every index of all axes but the last; activations)
=====================  ==========================  ===========================================

:func:`as_granularity` turns either spelling into the object and raises
:class:`~lowbit.errors.GranularityError` for anything else, everywhere.
``plan`` validates a granularity against a shape once and normalises it to a
:class:`BlockLayout`, the single internal description every kernel
understands: the C-ordered tensor is viewed as ``(P, Q, R, T)`` and there is
one parameter per ``(q, t)``, shared over ``p`` and ``r``.  A group size that does
not divide its axis gives a shorter last group (ragged groups): the layout then
carries the axis length ``N`` and each run of ``N`` elements (times ``T``) is cut
into ``G = ceil(N / R)`` groups, ``start = g*R; end = min(start + R, N)``.

Example:
    >>> from lowbit.granularity import PerGroup, as_granularity, plan
    >>> as_granularity("group:4") == PerGroup(4)
    True
    >>> plan(PerGroup(size=4), (2, 8))
    BlockLayout(P=1, Q=4, R=4, T=1, param_shape=(2, 2), N=4)
    >>> plan(PerGroup(size=4), (2, 6))  # ragged: groups of 4 and 2 per row
    BlockLayout(P=1, Q=4, R=4, T=1, param_shape=(2, 2), N=6)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from lowbit.errors import GranularityError

__all__ = ["Granularity", "PerTensor", "PerChannel", "PerGroup", "PerToken", "as_granularity", "parse_granularity"]

SPELLINGS = "tensor, channel[:AXIS], group:SIZE[:AXIS] or token"


def _int(value: Any, what: str, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (low is not None and value < low):
        need = "an int" if low is None else f"an int >= {low}"
        raise GranularityError(f"{what} must be {need}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Granularity:
    """Base class of the granularities (which elements share one scale).

    Example:
        >>> isinstance(PerToken(), Granularity), str(PerChannel(1))
        (True, 'channel:1')
    """

    def __post_init__(self) -> None:
        if type(self) is Granularity:
            raise GranularityError(f"Granularity is abstract; use one of {SPELLINGS}")


@dataclass(frozen=True)
class PerTensor(Granularity):
    """One scale for the whole tensor.

    Example:
        >>> PerTensor(), str(PerTensor())
        (PerTensor(), 'tensor')
    """

    def __str__(self) -> str:
        return "tensor"


@dataclass(frozen=True)
class PerChannel(Granularity):
    """One scale per index along ``axis`` (output channels of a weight are axis 0).

    Example:
        >>> str(PerChannel(axis=0))
        'channel'
    """

    axis: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "axis", _int(self.axis, "PerChannel axis"))

    def __str__(self) -> str:
        return "channel" if self.axis == 0 else f"channel:{self.axis}"


@dataclass(frozen=True)
class PerGroup(Granularity):
    """One scale per run of ``size`` consecutive elements along ``axis``.

    A size that does not divide the length of that axis gives a shorter last group
    (``ceil(length / size)`` groups; no padding is stored).

    Example:
        >>> str(PerGroup(128))
        'group:128'
    """

    size: int = 128
    axis: int = -1

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _int(self.size, "PerGroup size", low=1))
        object.__setattr__(self, "axis", _int(self.axis, "PerGroup axis"))

    def __str__(self) -> str:
        return f"group:{self.size}" if self.axis == -1 else f"group:{self.size}:{self.axis}"


@dataclass(frozen=True)
class PerToken(Granularity):
    """One scale per token: per index of every axis but the last (the features).

    The activation granularity of dynamic W8A8 (one scale per row of a
    ``(tokens, features)`` input); on a 2-d tensor it equals ``PerChannel(0)``.

    Example:
        >>> str(PerToken())
        'token'
    """

    def __str__(self) -> str:
        return "token"


@dataclass(frozen=True)
class BlockLayout:
    """The ``(P, Q, R, T)`` view of a C-contiguous tensor; params have ``param_shape``.

    Regular layouts (``N == R``): element ``((p*Q + q)*R + r)*T + t`` uses parameter
    ``q*T + t``.  Ragged layouts (``N`` not a multiple of ``R``; ``N == 0`` in the
    constructor means ``R``): the tensor is ``(P, Q // G, N, T)`` with ``G = ceil(N / R)``
    groups per run of ``N``; element ``((p*O + o)*N + n)*T + t`` uses parameter
    ``(o*G + n // R)*T + t``.  Group ``g`` covers ``n`` in ``[g*R, min(g*R + R, N))``:
    every group has ``R`` elements along the axis but the last, which has ``N - (G-1)*R``.
    A regular layout is the ragged one with ``G = 1``, so kernels take ``(Q, R, T, N)``
    (:attr:`dims`) and walk one loop for both.

    Example:
        >>> lay = plan(PerGroup(4), (3, 10))
        >>> lay.G, lay.ragged, lay.nparams, lay.group_bounds()
        (3, True, 9, [(0, 4), (4, 8), (8, 10)])
    """

    P: int
    Q: int
    R: int
    T: int
    param_shape: tuple[int, ...]
    N: int = 0

    def __post_init__(self) -> None:
        if not self.N:
            object.__setattr__(self, "N", self.R)

    @property
    def G(self) -> int:
        """Groups per run of ``N`` (1 for a regular layout)."""
        return -(-self.N // self.R) if self.R else 1

    @property
    def ragged(self) -> bool:
        """Whether the last group of each run is shorter than ``R``."""
        return self.N != self.R

    @property
    def dims(self) -> tuple[int, int, int, int]:
        """``(Q, R, T, N)``, the arguments every block kernel takes."""
        return self.Q, self.R, self.T, self.N

    @property
    def nparams(self) -> int:
        """Number of (scale, zero point) pairs."""
        return self.Q * self.T

    def group_bounds(self) -> list[tuple[int, int]]:
        """``(start, end)`` along the grouped run of each of its ``G`` groups.

        Example:
            >>> plan(PerGroup(3), (7,)).group_bounds()
            [(0, 3), (3, 6), (6, 7)]
        """
        return [(g * self.R, min(g * self.R + self.R, self.N)) for g in range(self.G)]


def parse_granularity(text: str) -> Granularity:
    """Parse the string form: ``tensor``, ``channel[:AXIS]``, ``group:SIZE[:AXIS]`` or ``token``.

    Raises:
        GranularityError: the text is not one of those spellings.

    Example:
        >>> parse_granularity("group:64")
        PerGroup(size=64, axis=-1)
    """
    if not isinstance(text, str):
        raise GranularityError(f"a granularity string must be a str, got {type(text).__name__}")
    kind, *args = text.strip().lower().split(":")
    try:
        numbers_ = [int(a) for a in args]
    except ValueError:
        numbers_ = None
    if numbers_ is not None:
        if kind == "tensor" and not numbers_:
            return PerTensor()
        if kind == "token" and not numbers_:
            return PerToken()
        if kind == "channel" and len(numbers_) <= 1:
            return PerChannel(*numbers_)
        if kind == "group" and len(numbers_) in (1, 2):
            return PerGroup(*numbers_)
    raise GranularityError(f"cannot parse granularity {text!r}; use {SPELLINGS}")


def as_granularity(
    granularity: Granularity | str | None,
    default: Granularity | None = None,
    *,
    allowed: tuple[type[Granularity], ...] | None = None,
    what: str = "granularity",
) -> Granularity:
    """The granularity object for an object, its string form, or None (``default``).

    Args:
        granularity: a Granularity, its string (``"group:64"``), or None.
        default: returned for None (None itself is an error when there is no default).
        allowed: the granularity classes this entry point takes (all when None).
        what: the argument's name, for messages (``"act_granularity"``).

    Raises:
        GranularityError: not a granularity or string of one, or a kind this entry
            point does not take (the message lists the spellings it does).

    Example:
        >>> as_granularity("channel"), as_granularity(None, PerTensor())
        (PerChannel(axis=0), PerTensor())
        >>> as_granularity("token", allowed=(PerTensor, PerChannel, PerGroup))
        Traceback (most recent call last):
        ...
        lowbit.errors.GranularityError: granularity 'token' is not taken here; use tensor, channel[:AXIS] or ...
    """
    if granularity is None and default is not None:
        return default
    if isinstance(granularity, str):
        gran = parse_granularity(granularity)
    elif isinstance(granularity, Granularity) and type(granularity) is not Granularity:
        gran = granularity
    else:
        raise GranularityError(
            f"{what} must be a granularity ({SPELLINGS}, or PerTensor(), PerChannel(axis), PerGroup(size, axis), "
            f"PerToken()), got {granularity!r}"
        )
    if allowed is not None and not isinstance(gran, allowed):
        raise GranularityError(f"{what} {str(gran)!r} is not taken here; use {_spellings(allowed)}")
    return gran


_SPELLING = {PerTensor: "tensor", PerChannel: "channel[:AXIS]", PerGroup: "group:SIZE[:AXIS]", PerToken: "token"}


def _spellings(allowed: tuple[type[Granularity], ...]) -> str:
    names = [_SPELLING.get(cls, cls.__name__) for cls in allowed]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _normalise_axis(axis: int, shape: tuple[int, ...], what: str) -> int:
    ndim = len(shape)
    if not -ndim <= axis < ndim:
        raise GranularityError(
            f"{what} axis {axis} is out of range for a tensor of shape {shape} "
            f"(valid axes: {-ndim}..{ndim - 1})" if ndim else
            f"{what} needs at least one dimension, but the tensor is 0-d; use PerTensor()"
        )
    return axis % ndim


def _channel_layout(axis: int, shape: tuple[int, ...]) -> BlockLayout:
    outer, chans, inner = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :])
    if inner == 1:
        return BlockLayout(1, 1, outer, chans, (chans,))
    return BlockLayout(outer, chans, inner, 1, (chans,))


def _group_layout(gran: PerGroup, shape: tuple[int, ...]) -> BlockLayout:
    size = gran.size
    axis = _normalise_axis(gran.axis, shape, "PerGroup")
    length = shape[axis]
    outer, inner, ngroups = math.prod(shape[:axis]), math.prod(shape[axis + 1 :]), -(-length // size)
    param_shape = (*shape[:axis], ngroups, *shape[axis + 1 :])
    if length % size == 0:
        return BlockLayout(1, outer * ngroups, size, inner, param_shape)
    if ngroups == 1:  # one group shorter than the size: the whole axis
        return BlockLayout(1, outer, length, inner, param_shape)
    return BlockLayout(1, outer * ngroups, size, inner, param_shape, length)


def plan(granularity: Granularity | str, shape: tuple[int, ...]) -> BlockLayout:
    """Validate ``granularity`` against ``shape`` and return its block layout.

    Args:
        granularity: a granularity or its string form.
        shape: the tensor's shape.

    Returns:
        The normalised BlockLayout.

    Raises:
        GranularityError: axis out of range, per-token on a 0-d tensor.  A group
            size that does not divide its axis is not an error: the last group is shorter.

    Example:
        >>> plan(PerChannel(0), (3, 5)).param_shape, plan("token", (2, 3, 4)).param_shape
        ((3,), (2, 3))
    """
    gran = as_granularity(granularity)
    shape = tuple(int(s) for s in shape)
    numel = math.prod(shape)
    if isinstance(gran, PerTensor):
        return BlockLayout(1, 1, numel, 1, ())
    if isinstance(gran, PerChannel):
        return _channel_layout(_normalise_axis(gran.axis, shape, "PerChannel"), shape)
    if isinstance(gran, PerToken):
        if not shape:
            raise GranularityError("PerToken needs a tensor of at least one dimension (tokens, ..., features)")
        return BlockLayout(1, math.prod(shape[:-1]), shape[-1], 1, shape[:-1])
    if isinstance(gran, PerGroup):
        return _group_layout(gran, shape)
    raise GranularityError(f"granularity {gran!r} has no block layout; use {SPELLINGS}")
