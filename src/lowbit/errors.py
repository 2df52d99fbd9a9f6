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

import contextlib
from collections.abc import Iterator

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
    "error_context",
]


class LowbitError(Exception):
    """Base class of every error lowbit raises on purpose."""

    def with_context(self, context: str) -> LowbitError:
        """A new error of the same type whose message starts with ``context`` (a layer, tensor or file).

        Example:
            >>> QTypeError("unknown qtype 'int99'").with_context("layer 'fc1'")
            QTypeError("layer 'fc1': unknown qtype 'int99'")
        """
        new = type(self)(f"{context}: {self}")
        new.__traceback__ = self.__traceback__
        return new


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


class NotCalibratedError(LowbitError, ValueError, AttributeError):
    """An estimator (or statistic) was asked for a result before it saw any data.

    Like scikit-learn's ``NotFittedError`` it is also a ValueError and an
    AttributeError: a fitted attribute does not exist before fitting."""


class OptionError(LowbitError, ValueError):
    """A keyword argument has a value outside its documented choices."""


class ModelError(LowbitError, ValueError):
    """A model-level request that cannot be carried out as asked (no matching module,
    unsupported layer, steps out of order, wrong train/eval mode)."""


@contextlib.contextmanager
def error_context(context: str) -> Iterator[None]:
    """Re-raise a :class:`LowbitError` raised inside the block with ``context`` prefixed, same type.

    The one way lowbit adds context (the layer, tensor or file at fault) to an
    error, at its public boundaries; other exceptions pass through untouched.

    Example:
        >>> import lowbit
        >>> with error_context("tensor 'w'"):
        ...     lowbit.get_qtype("int99")
        Traceback (most recent call last):
        ...
        lowbit.errors.QTypeError: tensor 'w': unknown qtype 'int99'; ...
    """
    try:
        yield
    except LowbitError as err:
        raise err.with_context(context) from None
