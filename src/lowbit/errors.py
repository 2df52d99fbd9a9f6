"""The exceptions lowbit raises on bad input.

Every error a user can trigger is a :class:`LowbitError`.  Each subclass also
derives from the matching built-in (``ValueError`` or ``TypeError``) so code
that already catches those keeps working.

Example:
    >>> import lowbit
    >>> try:
    ...     lowbit.get_qtype("int99")
    ... except lowbit.LowbitError as err:
    ...     print(type(err).__name__)
    QTypeError
"""

from __future__ import annotations

__all__ = [
    "LowbitError",
    "QTypeError",
    "GranularityError",
    "NonFiniteError",
    "EmptyInputError",
    "InputTypeError",
    "FileFormatError",
    "NotCalibratedError",
    "OptionError",
    "ModelError",
]


class LowbitError(Exception):
    """Base class of every error lowbit raises on purpose."""


class QTypeError(LowbitError, ValueError):
    """An unknown number format name or an impossible format (bits outside 1..16)."""


class GranularityError(LowbitError, ValueError):
    """A granularity that does not fit the tensor (axis out of range, bad group size)."""


class NonFiniteError(LowbitError, ValueError):
    """The input holds NaN or infinite values, which have no quantized code."""


class EmptyInputError(LowbitError, ValueError):
    """The input has no elements (or is 0-d where a shape is needed)."""


class InputTypeError(LowbitError, TypeError):
    """The input is not a floating-point NumPy array or CPU torch tensor."""


class FileFormatError(LowbitError, ValueError):
    """A file lowbit was asked to read is missing, unreadable or of an unknown format."""


class NotCalibratedError(LowbitError, RuntimeError):
    """An estimator was asked for a result before it saw any data."""


class OptionError(LowbitError, ValueError):
    """A keyword argument has a value outside its documented choices."""


class ModelError(LowbitError, ValueError):
    """A model-level request that cannot be carried out as asked (no matching module,
    unsupported layer, steps out of order, wrong train/eval mode)."""
