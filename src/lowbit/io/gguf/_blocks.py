"""GGUF's legacy block types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1): llama.cpp's reference quantizers, exact packing of
lowbit codes, and decoding into codes and scales.

Each block holds 32 consecutive values of a row with a float16 scale ``d`` (and, for ``_1``
types, a float16 minimum ``m``):

======  ==========================  =================================  =====================
type    bytes per block             value                              rounding (reference)
======  ==========================  =================================  =====================
Q8_0    2 + 32                      ``d * q``, q in -128..127            half away from zero
Q4_0    2 + 16                      ``d * (q - 8)``, q in 0..15          ``trunc(x / d + 8.5)``
Q4_1    2 + 2 + 16                  ``d * q + m``, q in 0..15            ``trunc((x - m) / d + 0.5)``
Q5_0    2 + 4 + 16                  ``d * (q - 16)``, q in 0..31         ``trunc(x / d + 16.5)``
Q5_1    2 + 2 + 4 + 16              ``d * q + m``, q in 0..31            ``trunc((x - m) / d + 0.5)``
======  ==========================  =================================  =====================

The reference quantizers divide by the float32 scale and store it rounded to float16 afterwards,
exactly as llama.cpp's ``quantize_row_*_ref`` and gguf-py do, so their bytes match byte for byte.
4-bit codes are packed two per byte, the low nibbles holding the block's first 16 values and the
high nibbles the last 16; Q5 types keep the fifth bits in a 32-bit little-endian mask.

Example:
    >>> import numpy as np
    >>> x = np.linspace(-1, 1, 32, dtype=np.float32)
    >>> blocks = quantize_legacy(x, "Q4_0")
    >>> blocks.shape
    (1, 18)
    >>> codes, scale, offset = decode_legacy(blocks, "Q4_0")
    >>> float(np.abs(codes * scale[:, None] - x).max())  # half a step, but +1 clips to 7/8 (Q4_0's -8..7)
    0.125
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lowbit.errors import OptionError

__all__ = ["LEGACY_TYPES", "BlockType", "quantize_legacy", "pack_legacy", "decode_legacy"]

QK = 32


@dataclass(frozen=True)
class BlockType:
    """One legacy block type: code width, whether it stores a minimum, and the code offset of ``_0`` types."""

    name: str
    bits: int
    has_min: bool

    @property
    def nbytes(self) -> int:
        """Bytes per block of 32 values."""
        codes = QK if self.bits == 8 else QK // 2 + (4 if self.bits == 5 else 0)
        return 2 + (2 if self.has_min else 0) + codes

    @property
    def centre(self) -> int:
        """Stored code of the value 0 in symmetric types (8 for Q4_0, 16 for Q5_0, 0 for Q8_0 and ``_1`` types)."""
        return 0 if (self.has_min or self.bits == 8) else 1 << (self.bits - 1)


LEGACY_TYPES = {t.name: t for t in (BlockType("Q8_0", 8, False), BlockType("Q4_0", 4, False),
                                    BlockType("Q4_1", 4, True), BlockType("Q5_0", 5, False),
                                    BlockType("Q5_1", 5, True))}


def _type(name: str) -> BlockType:
    try:
        return LEGACY_TYPES[name.upper()]
    except KeyError:
        raise OptionError(f"unknown legacy GGUF block type {name!r}; known: {', '.join(LEGACY_TYPES)}") from None


def _blocks(x: np.ndarray) -> np.ndarray:
    flat = np.ascontiguousarray(x, np.float32).reshape(-1)
    if flat.size % QK:
        raise OptionError(f"GGUF block types need a multiple of {QK} values per row; got {flat.size} values")
    return flat.reshape(-1, QK)


def _inverse(d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)


def _reference_codes(blocks: np.ndarray, bt: BlockType) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(stored codes, float32 scale, float32 minimum or None) by llama.cpp's reference rules."""
    qmax = (1 << bt.bits) - 1
    if bt.bits == 8:
        d = (np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)).astype(np.float32)
        a = np.abs(blocks * _inverse(d))
        whole = np.floor(a)
        q = np.sign(blocks) * (whole + (a - whole >= np.float32(0.5)))  # C's roundf: half away from zero
        return q.astype(np.int8), d[:, 0], None
    if bt.has_min:
        lo = blocks.min(axis=1, keepdims=True)
        d = ((blocks.max(axis=1, keepdims=True) - lo) / np.float32(qmax)).astype(np.float32)
        v = (blocks - lo) * _inverse(d) + np.float32(0.5)
        return np.minimum(np.trunc(v), qmax).astype(np.uint8), d[:, 0], lo[:, 0]
    pick = np.abs(blocks).argmax(axis=1)[:, None]  # first element of largest magnitude, sign kept
    d = (np.take_along_axis(blocks, pick, axis=1) / np.float32(-bt.centre)).astype(np.float32)
    v = blocks * _inverse(d) + np.float32(bt.centre + 0.5)
    return np.clip(np.trunc(v), 0, qmax).astype(np.uint8), d[:, 0], None


def _pack(codes: np.ndarray, d: np.ndarray, m: np.ndarray | None, bt: BlockType) -> np.ndarray:
    """Lay out stored codes (n, 32), scales (and minima) as the type's block bytes."""
    parts: list[np.ndarray] = [d.astype(np.float16).view(np.uint8).reshape(-1, 2)]
    if m is not None:
        parts.append(m.astype(np.float16).view(np.uint8).reshape(-1, 2))
    if bt.bits == 8:
        parts.append(codes.astype(np.int8).view(np.uint8))
        return np.concatenate(parts, axis=1)
    q = codes.astype(np.uint8)
    if bt.bits == 5:
        high = ((q >> 4) & 1).astype(np.uint32) << np.arange(QK, dtype=np.uint32)
        parts.append(np.bitwise_or.reduce(high, axis=1).astype("<u4").view(np.uint8).reshape(-1, 4))
    parts.append((q[:, :16] & 0x0F) | ((q[:, 16:] & 0x0F) << 4))
    return np.concatenate(parts, axis=1)


def quantize_legacy(x: np.ndarray, type_name: str) -> np.ndarray:
    """Quantize float values (rows of a multiple of 32) to a legacy GGUF block type, as llama.cpp's reference does.

    Args:
        x: float array whose size is a multiple of 32 (blocks run along the flattened array).
        type_name: ``"Q8_0"``, ``"Q4_0"``, ``"Q4_1"``, ``"Q5_0"`` or ``"Q5_1"``.

    Returns:
        uint8 array shaped ``(blocks, bytes per block)``, identical to ``gguf.quants.quantize``.

    Raises:
        OptionError: an unknown type or a size that is not a multiple of 32.

    Example:
        >>> quantize_legacy(np.ones(32, np.float32), "Q8_0")[0, :4].tolist()  # float16 1/127, then codes
        [8, 32, 127, 127]
    """
    bt = _type(type_name)
    codes, d, m = _reference_codes(_blocks(x), bt)
    return _pack(codes, d, m, bt)


def pack_legacy(codes: np.ndarray, scale: np.ndarray, offset: np.ndarray | None, type_name: str) -> np.ndarray:
    """Pack codes that already sit on a block type's grid (lowbit's, from any algorithm) without re-quantizing.

    Args:
        codes: signed codes (``_0`` types: -8..7 for Q4_0, -16..15 for Q5_0, -128..127 for Q8_0) or
            unsigned ones (``_1`` types), 32 per block, in block order.
        scale: one float16-exact scale per block.
        offset: one float16-exact minimum per block for ``_1`` types, else None.
        type_name: the block type.

    Returns:
        The block bytes, ``(blocks, bytes per block)``.

    Example:
        >>> b = pack_legacy(np.arange(-8, 8).repeat(2), np.array([0.5]), None, "Q4_0")
        >>> decode_legacy(b, "Q4_0")[0][0, :3].tolist()
        [-8, -8, -7]
    """
    bt = _type(type_name)
    c = np.asarray(codes).reshape(-1, QK).astype(np.int32)
    return _pack(c + bt.centre, np.asarray(scale, np.float32), None if offset is None else np.asarray(offset), bt)


def decode_legacy(blocks: np.ndarray, type_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Codes, scales and minima of legacy blocks: ``value = code * scale (+ minimum)``.

    Returns:
        ``(codes (blocks, 32), scale float32 (blocks,), minimum float32 (blocks,) or None)``; codes are
        centred (int8, e.g. -8..7 for Q4_0) for ``_0`` types and unsigned (uint8) for ``_1`` types, so
        ``codes * scale + minimum`` in float32 equals gguf-py's dequantization bit for bit.

    Example:
        >>> codes, d, m = decode_legacy(quantize_legacy(np.arange(32, dtype=np.float32), "Q4_1"), "Q4_1")
        >>> codes[0, :4].tolist(), float(m[0])
        ([0, 0, 1, 1], 0.0)
    """
    bt = _type(type_name)
    b = np.ascontiguousarray(blocks, np.uint8).reshape(-1, bt.nbytes)
    d = b[:, :2].copy().view(np.float16).astype(np.float32)[:, 0]
    pos = 2
    m = None
    if bt.has_min:
        m = b[:, 2:4].copy().view(np.float16).astype(np.float32)[:, 0]
        pos = 4
    if bt.bits == 8:
        return b[:, pos:].view(np.int8).copy(), d, m
    high = np.zeros((b.shape[0], QK), np.uint8)
    if bt.bits == 5:
        mask = b[:, pos:pos + 4].copy().view("<u4")
        high = (((mask >> np.arange(QK, dtype=np.uint32)) & 1) << 4).astype(np.uint8)
        pos += 4
    qs = b[:, pos:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1) | high
    if bt.has_min:
        return q, d, m
    return (q.astype(np.int16) - bt.centre).astype(np.int8), d, None
