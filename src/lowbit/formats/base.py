"""QType: what a number format is, and the registry that names them.

Example:
    >>> from lowbit.formats import get_qtype
    >>> qt = get_qtype("int4")
    >>> (qt.qmin, qt.qmax, qt.bits)
    (-7, 7, 4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lowbit.errors import QTypeError

__all__ = ["QType", "register_qtype", "register_alias", "get_qtype", "list_qtypes", "qtype_aliases", "GRID_KINDS"]

# Kinds whose codes index a sorted table of values (``QType.grid``) instead of
# being the integers themselves: low-bit floats and codebooks such as nf4.
GRID_KINDS = ("float", "codebook")

_REGISTRY: dict[str, QType] = {}
_ALIASES: dict[str, str] = {}


@dataclass(frozen=True)
class QType:
    """A quantized number format.

    Attributes:
        name: registry name, e.g. ``"int4"``.
        kind: ``"int"`` for integer formats; ``"float"`` or ``"codebook"`` for grid
            formats, whose unsigned code ``c`` stands for ``grid[c]``.
        bits: bits per code, 1..16.
        signed: whether codes may be negative.
        narrow: signed range without the most negative code (symmetric around 0).
        qmin: smallest code.
        qmax: largest code.
        grid: sorted representable values of a grid format (empty for integers).
        block_size: for block-scaled formats (OCP MX), the number of consecutive
            elements along an axis that share one scale (32); 0 for the formats
            that take any granularity.
        scale_format: the only scale format a block-scaled format stores its
            scales in (``"e8m0"`` for MX); ``""`` when any is allowed.
        implicit_exp: the element format's own fixed scale ``2^implicit_exp``
            (``mxint8``: -6, so code ``k`` means ``k / 64`` times the stored scale).

    Example:
        >>> QType("int3", "int", 3, True, True, -3, 3).levels
        7
    """

    name: str
    kind: str
    bits: int
    signed: bool
    narrow: bool
    qmin: int
    qmax: int
    grid: tuple[float, ...] = ()
    block_size: int = 0
    scale_format: str = ""
    implicit_exp: int = 0

    @property
    def is_grid(self) -> bool:
        """True for float and codebook formats (codes index ``grid``)."""
        return self.kind in GRID_KINDS

    @property
    def is_mx(self) -> bool:
        """True for block-scaled formats (OCP MX: blocks of ``block_size`` share one E8M0 scale)."""
        return self.block_size > 0

    @property
    def max_value(self) -> float:
        """Largest magnitude an element can take at stored scale 1 (``grid`` or codes times ``2^implicit_exp``).

        Example:
            >>> get_qtype("fp4_e2m1").max_value, get_qtype("int4").max_value
            (6.0, 7.0)
        """
        if self.is_grid:
            return max(abs(self.grid[0]), abs(self.grid[-1]))
        return math.ldexp(max(abs(self.qmin), abs(self.qmax)), self.implicit_exp)

    @property
    def emax(self) -> int:
        """Exponent of the largest element, ``floor(log2(max_value))`` (OCP MX: e4m3 8, e2m1 2, int8 0).

        Example:
            >>> get_qtype("fp8_e4m3").emax, get_qtype("fp8_e5m2").emax
            (8, 15)
        """
        return math.frexp(self.max_value)[1] - 1

    @property
    def levels(self) -> int:
        """Number of distinct codes, ``qmax - qmin + 1``."""
        return self.qmax - self.qmin + 1

    @property
    def storage_dtype(self) -> np.dtype:
        """NumPy dtype that holds one unpacked code (int8/uint8/int16/uint16)."""
        if self.bits <= 8:
            return np.dtype(np.int8 if self.signed else np.uint8)
        return np.dtype(np.int16 if self.signed else np.uint16)

    @property
    def packed(self) -> bool:
        """True when codes are bit-packed (every width except 8 and 16)."""
        return self.bits not in (8, 16)

    def packed_nbytes(self, numel: int) -> int:
        """Bytes that ``numel`` codes occupy once packed.

        Example:
            >>> get_qtype("int4").packed_nbytes(5)
            3
        """
        return (numel * self.bits + 7) // 8

    def __str__(self) -> str:
        return self.name


def register_qtype(qtype: QType) -> QType:
    """Add a format to the registry under ``qtype.name`` and return it.

    Raises:
        QTypeError: a different format is already registered under that name.

    Example:
        >>> register_qtype(get_qtype("int4")).name
        'int4'
    """
    known = _REGISTRY.get(qtype.name)
    if known is not None and known != qtype:
        raise QTypeError(f"a different qtype is already registered as {qtype.name!r}")
    _REGISTRY[qtype.name] = qtype
    return qtype


def register_alias(alias: str, name: str) -> None:
    """Let ``get_qtype(alias)`` return the registered format ``name`` (e.g. ``mxfp8`` -> ``mxfp8_e4m3``).

    Aliases are not listed by :func:`list_qtypes` (each format has one name); see :func:`qtype_aliases`.

    Raises:
        QTypeError: ``name`` is not registered, or ``alias`` already names a format or another alias.

    Example:
        >>> register_alias("mxfp8", "mxfp8_e4m3")  # registering the same alias again is allowed
        >>> get_qtype("mxfp8").name
        'mxfp8_e4m3'
    """
    if name not in _REGISTRY:
        raise QTypeError(f"cannot alias {alias!r} to {name!r}: no format is registered under {name!r}")
    if alias in _REGISTRY or _ALIASES.get(alias, name) != name:
        raise QTypeError(f"{alias!r} already names {_ALIASES.get(alias, alias)!r}; choose another alias")
    _ALIASES[alias] = name


def qtype_aliases() -> dict[str, str]:
    """Every alias and the format name it stands for.

    Example:
        >>> qtype_aliases()["mxfp6"]
        'mxfp6_e2m3'
    """
    return dict(_ALIASES)


def list_qtypes() -> list[str]:
    """Names of every registered format, in registration order.

    Example:
        >>> "uint8" in list_qtypes()
        True
    """
    return list(_REGISTRY)


def get_qtype(qtype: str | QType) -> QType:
    """Look a format up by name (or pass a QType through).

    Args:
        qtype: a registered name such as ``"int8"`` or ``"uint4"`` (or an alias
            such as ``"mxfp8"``), or a QType.

    Returns:
        The QType.

    Raises:
        QTypeError: the name is not registered; the message lists the known names.

    Example:
        >>> get_qtype("uint8").qmax
        255
    """
    if isinstance(qtype, QType):
        return qtype
    if not isinstance(qtype, str):
        raise QTypeError(f"qtype must be a name or a QType, got {type(qtype).__name__}")
    key = qtype.strip().lower()
    found = _REGISTRY.get(_ALIASES.get(key, key))
    if found is None:
        aliases = ", ".join(f"{a} ({n})" for a, n in _ALIASES.items())
        raise QTypeError(
            f"unknown qtype {qtype!r}; registered qtypes are: {', '.join(_REGISTRY)}"
            + (f"; aliases: {aliases}" if aliases else "")
        )
    return found
