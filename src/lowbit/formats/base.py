"""QType: what a number format is, and the registry that names them.

Example:
    >>> from lowbit.formats import get_qtype
    >>> qt = get_qtype("int4")
    >>> (qt.qmin, qt.qmax, qt.bits)
    (-7, 7, 4)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lowbit.errors import QTypeError

__all__ = ["QType", "register_qtype", "get_qtype", "list_qtypes", "GRID_KINDS"]

# Kinds whose codes index a sorted table of values (``QType.grid``) instead of
# being the integers themselves: low-bit floats and codebooks such as nf4.
GRID_KINDS = ("float", "codebook")

_REGISTRY: dict[str, QType] = {}


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

    @property
    def is_grid(self) -> bool:
        """True for float and codebook formats (codes index ``grid``)."""
        return self.kind in GRID_KINDS

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
        qtype: a registered name such as ``"int8"`` or ``"uint4"``, or a QType.

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
    found = _REGISTRY.get(qtype.strip().lower())
    if found is None:
        raise QTypeError(
            f"unknown qtype {qtype!r}; registered qtypes are: {', '.join(_REGISTRY)}"
        )
    return found
