"""Number formats: the QType registry, integer, low-bit float and codebook formats.

Example:
    >>> from lowbit.formats import get_qtype
    >>> get_qtype("uint4").levels
    16
"""

from lowbit.formats.base import GRID_KINDS, QType, get_qtype, list_qtypes, register_qtype
from lowbit.formats.integer import MAX_BITS, MIN_BITS, int_qtype

# isort: split
# Registration order is import order: integers first, then floats, then codebooks.
from lowbit.formats.floats import float_grid, float_qtype

# isort: split
from lowbit.formats.codebook import NF4_VALUES, Codebook

__all__ = [
    "QType",
    "get_qtype",
    "list_qtypes",
    "register_qtype",
    "int_qtype",
    "MIN_BITS",
    "MAX_BITS",
    "GRID_KINDS",
    "float_grid",
    "float_qtype",
    "Codebook",
    "NF4_VALUES",
]
