"""QType: what a number format is, and the registry that names them.

Example:
    >>> from lowbit.formats import get_qtype
    >>> qt = get_qtype("int4")
    >>> (qt.qmin, qt.qmax, qt.bits)
    (-7, 7, 4)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowbit.errors import QTypeError

__all__ = ["QType", "register_qtype", "register_alias", "get_qtype", "list_qtypes", "qtype_aliases", "GRID_KINDS"]

# Kinds whose codes index a sorted table of values (``QType.grid``) instead of
# being the integers themselves: low-bit floats and codebooks such as nf4.
GRID_KINDS = ("float", "codebook")

_REGISTRY: dict[str, QType] = {}
_ALIASES: dict[str, str] = {}
_DERIVED: Any = None  # default of qmin/qmax: the full code range of ``bits`` (see QType)
MAX_QTYPE_BITS = 16


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

    ``narrow``, ``qmin`` and ``qmax`` may be left out: the code range is then the
    whole range of ``bits`` (``-2^(bits-1)..2^(bits-1)-1``, without the most
    negative code when ``narrow``; ``0..2^bits-1`` unsigned; ``0..len(grid)-1``
    for grid formats).  Every field is checked when the QType is built.

    Raises:
        QTypeError: bits outside 1..16, an unknown kind, ``qmin >= qmax``, codes
            that do not fit in ``bits``, or a grid that does not match the codes;
            the message lists every problem at once.

    Example:
        >>> QType("int3", "int", 3, True, True, -3, 3).levels
        7
        >>> QType("user5", "int", 5, signed=True).qmin
        -16
        >>> QType("bad", "int", 4, True, qmin=7, qmax=-8)
        Traceback (most recent call last):
        ...
        lowbit.errors.QTypeError: invalid QType 'bad': qmin=7 must be below qmax=-8 (a format needs at least two codes)
    """

    name: str
    kind: str
    bits: int
    signed: bool
    narrow: bool = False
    qmin: int = _DERIVED
    qmax: int = _DERIVED
    grid: tuple[float, ...] = ()
    block_size: int = 0
    scale_format: str = ""
    implicit_exp: int = 0

    def __post_init__(self) -> None:
        problems = _qtype_problems(self)
        if problems:
            raise QTypeError(f"invalid QType {self.name!r}: " + "; ".join(problems))

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


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _code_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    """The codes that ``bits`` hold: two's complement (narrow: without the most negative) or unsigned."""
    if not signed:
        return 0, 2**bits - 1
    half = 2 ** (bits - 1)
    return -half + int(narrow), half - 1


def _as_grid(grid: Any) -> tuple[float, ...] | None:
    try:
        return tuple(float(v) for v in grid) if isinstance(grid, (tuple, list, np.ndarray)) else None
    except (TypeError, ValueError):
        return None


def _field_problems(qt: QType) -> list[str]:
    """Problems of the fields that do not depend on each other (normalising numpy scalars in place)."""
    fix, problems = object.__setattr__, []
    if not isinstance(qt.name, str) or not qt.name.strip():
        problems.append(f"name must be a non-empty str, got {qt.name!r}")
    if qt.kind not in ("int", *GRID_KINDS):
        problems.append(f"kind must be one of {('int', *GRID_KINDS)}, got {qt.kind!r}")
    for flag in ("signed", "narrow"):
        if not isinstance(getattr(qt, flag), (bool, np.bool_)):
            problems.append(f"{flag} must be True or False, got {getattr(qt, flag)!r}")
        else:
            fix(qt, flag, bool(getattr(qt, flag)))
    if not (_is_int(qt.bits) and 1 <= qt.bits <= MAX_QTYPE_BITS):
        problems.append(f"bits must be an int in 1..{MAX_QTYPE_BITS}, got {qt.bits!r}")
    grid = _as_grid(qt.grid)
    if grid is None:
        problems.append(f"grid must be a tuple of floats, got {qt.grid!r}")
    for name, low in (("block_size", 0), ("implicit_exp", None)):
        value = getattr(qt, name)
        if not _is_int(value) or (low is not None and value < low):
            problems.append(f"{name} must be an int{'' if low is None else f' >= {low}'}, got {value!r}")
    if not isinstance(qt.scale_format, str):
        problems.append(f"scale_format must be a str, got {qt.scale_format!r}")
    if not problems:
        fix(qt, "bits", int(qt.bits))
        fix(qt, "grid", grid)
        fix(qt, "block_size", int(qt.block_size))
        fix(qt, "implicit_exp", int(qt.implicit_exp))
    return problems


def _range_problems(qt: QType) -> list[str]:
    """Problems of the code range of a QType whose other fields are valid (deriving a range left out)."""
    if qt.is_grid and len(qt.grid) < 2:
        return [f"a {qt.kind} format needs a grid of at least two values (its codes index it), got {len(qt.grid)}"]
    lo, hi = (0, len(qt.grid) - 1) if qt.is_grid else _code_range(qt.bits, qt.signed, qt.narrow)
    object.__setattr__(qt, "qmin", lo if qt.qmin is _DERIVED else qt.qmin)
    object.__setattr__(qt, "qmax", hi if qt.qmax is _DERIVED else qt.qmax)
    bad = [f"{end} must be an int, got {getattr(qt, end)!r}" for end in ("qmin", "qmax")
           if not _is_int(getattr(qt, end))]
    if bad:
        return bad
    object.__setattr__(qt, "qmin", int(qt.qmin))
    object.__setattr__(qt, "qmax", int(qt.qmax))
    problems = []
    if qt.qmin >= qt.qmax:
        problems.append(f"qmin={qt.qmin} must be below qmax={qt.qmax} (a format needs at least two codes)")
    lo, hi = _code_range(qt.bits, qt.signed, False)
    if not lo <= min(qt.qmin, qt.qmax) or not max(qt.qmin, qt.qmax) <= hi:
        kind = "signed" if qt.signed else "unsigned"
        problems.append(f"codes {qt.qmin}..{qt.qmax} do not fit in {qt.bits} {kind} bits ({lo}..{hi})")
    if not qt.is_grid:
        return problems + (["an int format has no grid (grid=())"] if qt.grid else [])
    if (qt.qmin, qt.qmax) != (0, len(qt.grid) - 1):
        problems.append(f"a {qt.kind} format's codes index its grid: qmin=0, qmax=len(grid)-1={len(qt.grid) - 1}, "
                        f"got {qt.qmin}..{qt.qmax}")
    if not np.all(np.isfinite(qt.grid)) or np.any(np.diff(qt.grid) <= 0):
        problems.append("grid must be finite and strictly increasing")
    return problems


def _qtype_problems(qt: QType) -> list[str]:
    """Every reason ``qt`` is not a usable format (the range is checked once the other fields are valid)."""
    return _field_problems(qt) or _range_problems(qt)


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
