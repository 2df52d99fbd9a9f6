"""Number formats: the QType registry and the integer formats.

Example:
    >>> from lowbit.formats import get_qtype
    >>> get_qtype("uint4").levels
    16
"""

from lowbit.formats.base import QType, get_qtype, list_qtypes, register_qtype
from lowbit.formats.integer import MAX_BITS, MIN_BITS, int_qtype

__all__ = [
    "QType",
    "get_qtype",
    "list_qtypes",
    "register_qtype",
    "int_qtype",
    "MIN_BITS",
    "MAX_BITS",
]
