"""OCP Microscaling (MX) formats: blocks of 32 elements share one E8M0 power-of-two scale.

The OCP Microscaling Formats (MX) Specification v1.0 defines an MX block as
32 consecutive elements ``P_i`` of an element format plus one shared scale
``X`` stored as E8M0 (an 8-bit biased exponent: ``X = 2^(byte - 127)``,
byte 0xFF is NaN, so ``X`` ranges over ``2^-127 .. 2^127``); the block means
``X * P_i``.  Its conversion rule (section 6.3) picks

    X = 2^(floor(log2(amax)) - emax_elem)

where ``amax`` is the block's largest magnitude and ``emax_elem`` the exponent
of the element format's largest normal number (e4m3: 8, e5m2: 15, e3m2: 4,
e2m3: 2, e2m1: 2, int8: 0), and rounds each ``V / X`` to the element format
with round-to-nearest-even, *saturating* at the element's largest value.

In lowbit an MX format is a QType whose elements are those of an existing
format (the fp8/fp6/fp4 grids, or narrow ``int8`` for ``mxint8``) with
``block_size=32`` and ``scale_format="e8m0"``, so quantization reuses the
grid and integer kernels unchanged.  Conventions:

* ``QTensor.scale`` is the effective multiplier of the codes or grid values:
  ``X`` for the float elements, ``X * 2^-6`` for ``mxint8`` (whose elements
  are 8-bit two's complement integers ``k`` meaning ``k / 64``, used
  symmetrically in -127..127 as Microsoft's microxcaling reference clamps to
  ±max normal).  The stored E8M0 byte is always the spec's ``X``.
* An all-zero block stores ``X = 1`` (byte 127) and round-trips exactly
  (any ``X`` would; 1 is lowbit's convention for all-zero blocks).
* ``X`` is clamped to the E8M0 range; for ``mxint8`` it is at least ``2^-121``
  so that ``1 / (X * 2^-6)`` is a finite float32 (this only differs from the
  spec for blocks whose largest magnitude is below ``2^-121``).
* ``granularity=None`` means ``PerGroup(32, axis=-1)``; ``PerGroup(32, axis)``
  along another axis is accepted; the axis length must be a multiple of 32
  (no padding).
* Aliases: ``mxfp8`` is ``mxfp8_e4m3`` (the element format used for weights
  and activations in inference; E5M2 is meant for gradients) and ``mxfp6`` is
  ``mxfp6_e2m3`` (one more mantissa bit than E3M2; its 2^2 range is all an
  absmax-scaled block needs, so it loses less on weights; the README gives the
  measurement).

Example:
    >>> import numpy as np, lowbit
    >>> x = np.linspace(-1, 1, 64, dtype=np.float32)
    >>> qt = lowbit.quantize(x, "mxfp4")
    >>> qt.granularity, qt.scale.tolist(), qt.bits_per_element
    (PerGroup(size=32, axis=-1), [0.25, 0.25], 4.25)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lowbit.formats.base import QType, get_qtype, register_alias, register_qtype

__all__ = ["MX_BLOCK", "E8M0_BIAS", "E8M0_EXP_RANGE", "mx_qtype"]

MX_BLOCK = 32
E8M0_BIAS = 127
E8M0_EXP_RANGE = (-127, 127)  # 0xFF (exponent 128) is NaN


def mx_qtype(name: str, element: str | QType, implicit_exp: int = 0) -> QType:
    """Build and register the MX format ``name`` with the given element format.

    Args:
        name: registry name, e.g. ``"mxfp4"``.
        element: the element format (its grid or integer range is reused).
        implicit_exp: the element's fixed scale ``2^implicit_exp`` (``mxint8``: -6).

    Returns:
        The QType (``block_size=32``, ``scale_format="e8m0"``).

    Example:
        >>> mx_qtype("mxfp4", "fp4_e2m1").grid == get_qtype("fp4_e2m1").grid
        True
    """
    base = get_qtype(element)
    return register_qtype(
        replace(base, name=name, block_size=MX_BLOCK, scale_format="e8m0", implicit_exp=implicit_exp)
    )


def mx_exponents(amax: np.ndarray, qtype: QType) -> np.ndarray:
    """Shared exponents ``floor(log2(amax)) - emax`` of MX blocks, clamped to E8M0 (int64).

    Args:
        amax: largest magnitude of each block (finite, >= 0).
        qtype: the MX format (its ``emax`` and ``implicit_exp`` are used).

    Returns:
        ``log2(X)`` per block: all-zero blocks get 0 (``X = 1``); the lower clamp is
        ``max(-127, -127 - implicit_exp)`` so ``X * 2^implicit_exp >= 2^-127``.

    Example:
        >>> mx_exponents(np.array([1.0, 6.0, 7.0, 0.0]), get_qtype("mxfp4")).tolist()
        [-2, 0, 0, 0]
    """
    a = np.asarray(amax, np.float64)
    _, e = np.frexp(a)  # a = m * 2^e with m in [0.5, 1): floor(log2 a) = e - 1, exact
    lo = max(E8M0_EXP_RANGE[0], E8M0_EXP_RANGE[0] - qtype.implicit_exp)
    exps = np.clip(e.astype(np.int64) - 1 - qtype.emax, lo, E8M0_EXP_RANGE[1])
    return np.where(a > 0, exps, 0)


def _register_defaults() -> None:
    mx_qtype("mxfp8_e4m3", "fp8_e4m3")
    mx_qtype("mxfp8_e5m2", "fp8_e5m2")
    mx_qtype("mxfp6_e3m2", "fp6_e3m2")
    mx_qtype("mxfp6_e2m3", "fp6_e2m3")
    mx_qtype("mxfp4", "fp4_e2m1")
    mx_qtype("mxint8", "int8", implicit_exp=-6)
    register_alias("mxfp8", "mxfp8_e4m3")
    register_alias("mxfp6", "mxfp6_e2m3")


_register_defaults()
