"""Low-bit floating-point formats: fp8 (E4M3, E5M2), fp6 (E3M2, E2M3), fp4 (E2M1).

Each format is a grid format (``kind="float"``): its codes are indices into the
sorted table of its *finite* values, with +0 and -0 collapsed into one value so
every code stands for a distinct number.  The value of exponent field ``e`` and
mantissa field ``m`` with bias ``2^(E-1) - 1`` is ``(1 + m / 2^M) * 2^(e - bias)``,
or ``m / 2^M * 2^(1 - bias)`` for the subnormals (``e == 0``).

Which bit patterns are not finite numbers (facts of the specifications):

* ``"ieee"`` — the all-ones exponent holds Inf/NaN (fp8 E5M2, as IEEE 754); max 57344.
* ``"fn"`` — only all-ones exponent *and* mantissa is NaN, no Inf (OCP fp8 E4M3,
  ``torch.float8_e4m3fn``); max 448.
* ``"none"`` — every pattern is finite (OCP MX fp6 E3M2 / E2M3 and fp4 E2M1).

Rounding to the nearest grid value with ties to the even *mantissa* (IEEE
round-to-nearest-even) is done by :mod:`lowbit._kernels.grid`.

Example:
    >>> from lowbit.formats import get_qtype
    >>> get_qtype("fp4_e2m1").grid[7:]
    (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
    >>> get_qtype("fp4").name
    'fp4_e2m1'
    >>> get_qtype("fp8_e4m3").grid[-1], get_qtype("fp8_e5m2").grid[-1]
    (448.0, 57344.0)
"""

from __future__ import annotations

from lowbit.errors import QTypeError
from lowbit.formats.base import QType, register_alias, register_qtype

__all__ = ["float_grid", "float_qtype", "SPECIALS"]

SPECIALS = ("ieee", "fn", "none")


def float_grid(exp_bits: int, man_bits: int, specials: str = "none") -> tuple[float, ...]:
    """Sorted finite values of a sign/exponent/mantissa format, ±0 collapsed.

    Args:
        exp_bits: exponent bits E (>= 1).
        man_bits: mantissa bits M (>= 0).
        specials: ``"ieee"``, ``"fn"`` or ``"none"`` (see the module docstring).

    Returns:
        The values as a tuple of Python floats, ascending.

    Raises:
        QTypeError: bad widths or an unknown ``specials``.

    Example:
        >>> float_grid(2, 1)[7:]
        (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
    """
    if specials not in SPECIALS:
        raise QTypeError(f"specials must be one of {SPECIALS}, got {specials!r}")
    if exp_bits < 1 or man_bits < 0 or 1 + exp_bits + man_bits > 16:
        raise QTypeError(f"float formats need 1 <= E and 0 <= M with 1 + E + M <= 16, got E={exp_bits} M={man_bits}")
    bias = 2 ** (exp_bits - 1) - 1
    top = 2**exp_bits - 1
    positive = set()
    for e in range(top + 1):
        for m in range(2**man_bits):
            if specials == "ieee" and e == top:
                continue
            if specials == "fn" and e == top and m == 2**man_bits - 1:
                continue
            frac = m / 2**man_bits
            positive.add(frac * 2.0 ** (1 - bias) if e == 0 else (1.0 + frac) * 2.0 ** (e - bias))
    return tuple(sorted(v + 0.0 for v in {-v for v in positive} | positive))  # + 0.0 turns -0.0 into 0.0


def float_qtype(name: str, exp_bits: int, man_bits: int, specials: str = "none") -> QType:
    """Build and register the float grid format ``name``.

    The code width is ``1 + exp_bits + man_bits``; codes are unsigned grid indices.

    Raises:
        QTypeError: bad widths, or ``name`` already registered as another format.

    Example:
        >>> float_qtype("fp6_e3m2", 3, 2).bits
        6
    """
    grid = float_grid(exp_bits, man_bits, specials)
    bits = 1 + exp_bits + man_bits
    return register_qtype(QType(name, "float", bits, False, False, 0, len(grid) - 1, grid))


def _register_defaults() -> None:
    float_qtype("fp8_e4m3", 4, 3, "fn")
    float_qtype("fp8_e5m2", 5, 2, "ieee")
    float_qtype("fp6_e3m2", 3, 2)
    float_qtype("fp6_e2m3", 2, 3)
    float_qtype("fp4_e2m1", 2, 1)
    register_alias("fp4", "fp4_e2m1")  # torch's float4_e2m1fn_x2, MX and NVFP4 elements; bitsandbytes' is fp4_bnb


_register_defaults()
