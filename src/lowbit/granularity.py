"""Granularity: which elements share one scale (and zero point).

A granularity is data (a frozen dataclass).  ``plan`` validates it against a
shape once and normalises it to a :class:`BlockLayout`, the single internal
description every kernel understands: the C-ordered tensor is viewed as
``(P, Q, R, T)`` and there is one parameter per ``(q, t)``, shared over
``p`` and ``r``.

Example:
    >>> from lowbit.granularity import PerGroup, plan
    >>> plan(PerGroup(size=4), (2, 8))
    BlockLayout(P=1, Q=4, R=4, T=1, param_shape=(2, 2))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lowbit.errors import GranularityError

__all__ = ["Granularity", "PerTensor", "PerChannel", "PerGroup", "BlockLayout", "plan", "parse_granularity"]


@dataclass(frozen=True)
class PerTensor:
    """One scale for the whole tensor.

    Example:
        >>> PerTensor()
        PerTensor()
    """

    def __str__(self) -> str:
        return "tensor"


@dataclass(frozen=True)
class PerChannel:
    """One scale per index along ``axis`` (output channels of a weight are axis 0).

    Example:
        >>> str(PerChannel(axis=0))
        'channel'
    """

    axis: int = 0

    def __str__(self) -> str:
        return "channel" if self.axis == 0 else f"channel:{self.axis}"


@dataclass(frozen=True)
class PerGroup:
    """One scale per run of ``size`` consecutive elements along ``axis``.

    The group size must divide the length of that axis (no padding).

    Example:
        >>> str(PerGroup(128))
        'group:128'
    """

    size: int = 128
    axis: int = -1

    def __str__(self) -> str:
        return f"group:{self.size}" if self.axis == -1 else f"group:{self.size}:{self.axis}"


Granularity = PerTensor | PerChannel | PerGroup


@dataclass(frozen=True)
class BlockLayout:
    """The ``(P, Q, R, T)`` view of a C-contiguous tensor; params have ``param_shape``.

    Element ``((p*Q + q)*R + r)*T + t`` uses parameter ``q*T + t``.
    """

    P: int
    Q: int
    R: int
    T: int
    param_shape: tuple[int, ...]

    @property
    def nparams(self) -> int:
        """Number of (scale, zero point) pairs."""
        return self.Q * self.T


def _normalise_axis(axis: int, shape: tuple[int, ...], what: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise GranularityError(f"{what} axis must be an int, got {axis!r}")
    ndim = len(shape)
    if not -ndim <= axis < ndim:
        raise GranularityError(
            f"{what} axis {axis} is out of range for a tensor of shape {shape} "
            f"(valid axes: {-ndim}..{ndim - 1})" if ndim else
            f"{what} needs at least one dimension, but the tensor is 0-d; use PerTensor()"
        )
    return axis % ndim


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def plan(granularity: Granularity, shape: tuple[int, ...]) -> BlockLayout:
    """Validate ``granularity`` against ``shape`` and return its block layout.

    Args:
        granularity: PerTensor(), PerChannel(axis) or PerGroup(size, axis).
        shape: the tensor's shape.

    Returns:
        The normalised BlockLayout.

    Raises:
        GranularityError: axis out of range, group size not positive or not
            dividing the axis (the message lists sizes that would).

    Example:
        >>> plan(PerChannel(0), (3, 5)).param_shape
        (3,)
    """
    shape = tuple(int(s) for s in shape)
    numel = math.prod(shape)
    if isinstance(granularity, PerTensor):
        return BlockLayout(1, 1, numel, 1, ())
    if isinstance(granularity, PerChannel):
        axis = _normalise_axis(granularity.axis, shape, "PerChannel")
        outer, chans, inner = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :])
        if inner == 1:
            return BlockLayout(1, 1, outer, chans, (chans,))
        return BlockLayout(outer, chans, inner, 1, (chans,))
    if isinstance(granularity, PerGroup):
        size = granularity.size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise GranularityError(f"PerGroup size must be a positive int, got {size!r}")
        axis = _normalise_axis(granularity.axis, shape, "PerGroup")
        length = shape[axis]
        if length % size:
            sizes = [d for d in _divisors(length) if d > 1][-6:]
            raise GranularityError(
                f"group size {size} does not divide axis {axis} of length {length} "
                f"(shape {shape}); use a size that divides {length}, e.g. {sizes}, "
                "or PerChannel()"
            )
        outer, inner, ngroups = math.prod(shape[:axis]), math.prod(shape[axis + 1 :]), length // size
        param_shape = (*shape[:axis], ngroups, *shape[axis + 1 :])
        return BlockLayout(1, outer * ngroups, size, inner, param_shape)
    raise GranularityError(
        f"granularity must be PerTensor(), PerChannel(axis) or PerGroup(size, axis), got {granularity!r}"
    )


def parse_granularity(text: str) -> Granularity:
    """Parse the CLI spelling: ``tensor``, ``channel[:AXIS]``, ``group:SIZE[:AXIS]``.

    Raises:
        GranularityError: the text is not one of those spellings.

    Example:
        >>> parse_granularity("group:64")
        PerGroup(size=64, axis=-1)
    """
    parts = text.strip().lower().split(":")
    try:
        if parts[0] == "tensor" and len(parts) == 1:
            return PerTensor()
        if parts[0] == "channel" and len(parts) <= 2:
            return PerChannel(int(parts[1]) if len(parts) == 2 else 0)
        if parts[0] == "group" and len(parts) in (2, 3):
            return PerGroup(int(parts[1]), int(parts[2]) if len(parts) == 3 else -1)
    except ValueError:
        pass
    raise GranularityError(
        f"cannot parse granularity {text!r}; use tensor, channel[:AXIS] or group:SIZE[:AXIS]"
    )
