"""Number formats: the QType registry, integer, low-bit float, codebook and MX formats; scale formats.

Example:
    >>> from lowbit.formats import get_qtype
    >>> get_qtype("uint4").levels
    16
"""

from lowbit.formats.base import (
    GRID_KINDS,
    QType,
    get_qtype,
    list_qtypes,
    qtype_aliases,
    register_alias,
    register_qtype,
)
from lowbit.formats.integer import MAX_BITS, MIN_BITS, int_qtype

# isort: split
# Registration order is import order: integers, floats, codebooks, then MX formats.
from lowbit.formats.floats import float_grid, float_qtype

# isort: split
from lowbit.formats.codebook import FP4_BNB_VALUES, NF4_VALUES, Codebook

# isort: split
from lowbit.formats.mx import MX_BLOCK, mx_qtype

# isort: split
from lowbit.formats.scales import (
    ScaleFormat,
    get_scale_format,
    list_scale_formats,
    register_scale_format,
    scale_format_for,
)

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
    "FP4_BNB_VALUES",
    "register_alias",
    "qtype_aliases",
    "MX_BLOCK",
    "mx_qtype",
    "ScaleFormat",
    "get_scale_format",
    "list_scale_formats",
    "register_scale_format",
    "scale_format_for",
]
