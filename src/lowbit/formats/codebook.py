"""Codebook formats: codes index an arbitrary sorted table of values (e.g. nf4).

``nf4`` is the 4-bit NormalFloat of QLoRA (Dettmers et al., 2023, "QLoRA:
Efficient Finetuning of Quantized LLMs", section 3): quantiles of N(0, 1)
normalised to [-1, 1], built asymmetrically from 8 positive and 7 negative
levels plus an exact zero.  The constants are the float32 values of the
bitsandbytes NF4 table (``bitsandbytes.functional``, the same 16 numbers that
its CUDA ``dDequantizeNF4`` returns for codes 0..15), so lowbit's nf4 codes
mean the same thing as bitsandbytes' codes.

``fp4_bnb`` is bitsandbytes' FP4 (the other 4-bit type of QLoRA): the 15 values
its CUDA dequantizer ``dDequantizeFP4Tree`` returns, ±{0, 0.005208333333,
0.16666667, 0.25, 0.33333333, 0.5, 0.66666667, 1.0} (float32 literals there,
the same float32 numbers here).  It is an E2M1 float normalised to a maximum
of 1 with bitsandbytes' own subnormal, unlike the OCP ``fp4_e2m1``.  lowbit
numbers the codes in sorted order (code 0 is -1.0, code 7 is 0.0, code 14 is
1.0), *not* by bitsandbytes' sign/exponent/mantissa bit patterns, and rounds
a value exactly between two neighbours to the even code (bitsandbytes'
quantizer sends it to the smaller magnitude); otherwise the nearest value,
as bitsandbytes' ``dQuantizeFP4`` thresholds (the midpoints) choose.  Plain
``fp4`` names the OCP E2M1 float (``fp4_e2m1``), the meaning torch
(``float4_e2m1fn_x2``), MX and NVFP4 give it.

Example:
    >>> from lowbit.formats import Codebook
    >>> qt = Codebook("cb3", [-1.0, -0.25, 0.0, 0.5, 1.0])
    >>> qt.bits, qt.qmax, qt.kind
    (3, 4, 'codebook')
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lowbit.errors import QTypeError
from lowbit.formats.base import QType, register_qtype

__all__ = ["Codebook", "NF4_VALUES", "FP4_BNB_VALUES"]

NF4_VALUES = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)

_FP4_BNB_POSITIVE = (5.208333333e-03, 0.16666667, 0.25, 0.33333333, 0.5, 0.66666667, 1.0)
FP4_BNB_VALUES = tuple(
    sorted([0.0] + [float(np.float32(v)) * sign for v in _FP4_BNB_POSITIVE for sign in (1.0, -1.0)])
)


def Codebook(name: str, values: Sequence[float]) -> QType:
    """Build and register a codebook format whose codes index ``values``.

    Args:
        name: registry name (lower case, e.g. ``"nf4"``).
        values: 2..65536 distinct finite numbers, not all zero; they are sorted,
            and code ``i`` means the ``i``-th smallest.

    Returns:
        The QType (``kind="codebook"``, ``bits = ceil(log2(len(values)))``).

    Raises:
        QTypeError: too few/many values, duplicates, non-finite or all-zero values,
            a bad name, or a different format already registered under ``name``.

    Example:
        >>> Codebook("ternary", [0.0, 1.0, -1.0]).grid
        (-1.0, 0.0, 1.0)
    """
    if not isinstance(name, str) or not name.strip() or name != name.strip().lower():
        raise QTypeError(f"codebook name must be a non-empty lower-case string, got {name!r}")
    try:
        grid = tuple(sorted(float(v) for v in values))
    except (TypeError, ValueError) as err:
        raise QTypeError(f"codebook {name!r}: values must be numbers ({err})") from None
    if not 2 <= len(grid) <= 2**16:
        raise QTypeError(f"codebook {name!r} needs 2..65536 values, got {len(grid)}")
    if not all(math.isfinite(v) for v in grid):
        raise QTypeError(f"codebook {name!r} holds non-finite values; give finite numbers")
    if len(set(grid)) != len(grid):  # 0.0 == -0.0, so signed zeros count as duplicates
        raise QTypeError(f"codebook {name!r} holds duplicate values; every code must mean a distinct number")
    if max(abs(v) for v in grid) == 0.0:
        raise QTypeError(f"codebook {name!r} is all zero; it cannot scale any range")
    bits = max(1, math.ceil(math.log2(len(grid))))
    return register_qtype(QType(name, "codebook", bits, False, False, 0, len(grid) - 1, grid))


Codebook("nf4", NF4_VALUES)
Codebook("fp4_bnb", FP4_BNB_VALUES)
