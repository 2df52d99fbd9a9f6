"""Integer formats of 1 to 16 bits, signed and unsigned.

Signed formats are *narrow* by default (``int8`` is -127..127, so the grid is
symmetric around zero as symmetric quantization expects); the ``intN_full``
names give the full two's-complement range (``int8_full`` is -128..127, the
range of ``torch.qint8``).  ``int1`` has no narrow form and is -1..0.

Example:
    >>> from lowbit.formats import int_qtype
    >>> q = int_qtype(8, signed=True, narrow=False)
    >>> (q.name, q.qmin, q.qmax)
    ('int8_full', -128, 127)
"""

from __future__ import annotations

from lowbit.errors import QTypeError
from lowbit.formats.base import QType, register_qtype

__all__ = ["int_qtype", "MIN_BITS", "MAX_BITS"]

MIN_BITS = 1
MAX_BITS = 16


def int_qtype(bits: int, signed: bool = True, narrow: bool | None = None) -> QType:
    """Build (and register) the integer format with the given width.

    Args:
        bits: 1..16.
        signed: two's-complement codes when True, 0..2^bits-1 when False.
        narrow: drop the most negative signed code; default True for signed
            formats of 2 bits or more. Ignored (False) for unsigned formats.

    Returns:
        The QType, e.g. ``int4`` = -7..7, ``int4_full`` = -8..7, ``uint4`` = 0..15.

    Raises:
        QTypeError: bits outside 1..16, or a narrow 1-bit format.

    Example:
        >>> int_qtype(4).qmin, int_qtype(4, signed=False).qmax
        (-7, 15)
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise QTypeError(f"integer formats have {MIN_BITS}..{MAX_BITS} bits, got {bits!r}")
    if not signed:
        return register_qtype(QType(f"uint{bits}", "int", bits, False, False, 0, 2**bits - 1))
    if narrow is None:
        narrow = bits >= 2
    if narrow and bits == 1:
        raise QTypeError("int1 has only the codes -1 and 0 and cannot be narrow; use narrow=False")
    half = 2 ** (bits - 1)
    if narrow:
        return register_qtype(QType(f"int{bits}", "int", bits, True, True, -(half - 1), half - 1))
    name = "int1" if bits == 1 else f"int{bits}_full"
    return register_qtype(QType(name, "int", bits, True, False, -half, half - 1))


def _register_defaults() -> None:
    for bits in range(MIN_BITS, MAX_BITS + 1):
        int_qtype(bits, signed=True)
        int_qtype(bits, signed=False)
    for bits in range(2, MAX_BITS + 1):
        int_qtype(bits, signed=True, narrow=False)


_register_defaults()
