"""Renamed public names keep working for one release, with a DeprecationWarning naming the new one.

Every message says "deprecated in lowbit 0.2" so a test run can turn lowbit's own
deprecations (and only them) into errors.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_renamed("observer=", "method=")
    >>> str(caught[0].message)
    'observer= is deprecated in lowbit 0.2 and will be removed in 0.3; use method='
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["warn_renamed", "renamed_attributes"]

SINCE, REMOVED_IN = "0.2", "0.3"


def _outside_lowbit() -> int:
    """The stacklevel of the first frame outside lowbit, so the warning points at the user's line."""
    level = 1
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and str(frame.f_globals.get("__name__", "")).split(".")[0] == "lowbit":
        level, frame = level + 1, frame.f_back
    return level


def warn_renamed(old: str, new: str) -> None:
    """Warn that ``old`` is deprecated and ``new`` replaces it, attributed to the user's code."""
    warnings.warn(
        f"{old} is deprecated in lowbit {SINCE} and will be removed in {REMOVED_IN}; use {new}",
        DeprecationWarning,
        stacklevel=_outside_lowbit(),
    )


def renamed_attributes(module: str, renames: dict[str, tuple[str, Callable[[], Any]]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves old names: ``{old: (new spelling, loader of the object)}``.

    Example:
        >>> get = renamed_attributes("m", {"old": ("m.new", lambda: 42)})
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     get("old")
        42
    """

    def __getattr__(name: str) -> Any:
        if name in renames:
            new, load = renames[name]
            warn_renamed(f"{module}.{name}", new)
            return load()
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
