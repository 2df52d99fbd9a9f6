"""Bit-level helpers shared by the kernels: packing codes and a counter-based RNG.

Packed layout (every width except 8 and 16): code ``i`` occupies bits
``[i*b, (i+1)*b)`` of a little-endian bit stream, i.e. the first code sits in
the low bits of the first byte.  Signed codes are stored as their low ``b``
two's-complement bits.  Eight codes always fill exactly ``b`` bytes, so any
run that starts at a multiple of 8 codes starts on a byte boundary.

Example:
    >>> import numpy as np
    >>> from lowbit._kernels._bits import pack_codes, unpack_codes
    >>> packed = pack_codes(np.array([1, -2, 3], np.int8), 4)
    >>> unpack_codes(packed, 3, 4, True).tolist()
    [1, -2, 3]
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["pack_codes", "unpack_codes", "PACK_ALIGN"]

PACK_ALIGN = 8
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(inline="always", cache=True)
def uniform01(seed, index):  # pragma: no cover - compiled
    """SplitMix64 hash of (seed, index) mapped to [0, 1) with 24 random bits."""
    z = seed + np.uint64(index) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return np.float32(z >> np.uint64(40)) * np.float32(5.9604644775390625e-08)


@njit(inline="always", cache=True)
def pack_run(codes, count, bits, out, byte0):  # pragma: no cover - compiled
    """Pack ``codes[:count]`` (ints) into ``out`` starting at byte ``byte0``."""
    mask = (1 << bits) - 1
    if bits == 4:
        half = count // 2
        ob = out[byte0 : byte0 + half]
        cs = codes[: 2 * half]
        for j in range(half):
            ob[j] = (cs[2 * j] & 15) | ((cs[2 * j + 1] & 15) << 4)
        if count % 2:
            out[byte0 + half] = codes[count - 1] & 15
        return
    if bits == 2:
        nfull = count // 4
        for j in range(nfull):
            k = 4 * j
            out[byte0 + j] = (
                (codes[k] & 3) | ((codes[k + 1] & 3) << 2) | ((codes[k + 2] & 3) << 4) | ((codes[k + 3] & 3) << 6)
            )
    elif bits == 1:
        nfull = count // 8
        for j in range(nfull):
            k = 8 * j
            acc = 0
            for m in range(8):
                acc |= (codes[k + m] & 1) << m
            out[byte0 + j] = acc
    else:
        nfull = count // 8
        for j in range(nfull):
            acc = np.uint64(0)
            for m in range(8):
                acc |= np.uint64(codes[8 * j + m] & mask) << np.uint64(m * bits)
            if bits < 8:
                for m in range(bits):
                    out[byte0 + j * bits + m] = np.uint8(acc >> np.uint64(8 * m) & np.uint64(255))
            else:
                _pack_wide(codes, 8 * j, 8, bits, out, byte0 + j * bits)
        nfull *= 8
        rest = count - nfull
        if rest:
            _pack_wide(codes, nfull, rest, bits, out, byte0 + nfull * bits // 8)
        return
    per_byte = 8 // bits
    done = nfull * per_byte
    if done < count:
        acc = 0
        for m in range(count - done):
            acc |= (codes[done + m] & mask) << (m * bits)
        out[byte0 + nfull] = acc


@njit(inline="always", cache=True)
def _pack_wide(codes, start, count, bits, out, byte0):  # pragma: no cover - compiled
    mask = (1 << bits) - 1
    acc = 0
    nbits = 0
    pos = byte0
    for m in range(count):
        acc |= (codes[start + m] & mask) << nbits
        nbits += bits
        while nbits >= 8:
            out[pos] = acc & 255
            acc >>= 8
            nbits -= 8
            pos += 1
    if nbits:
        out[pos] = acc & 255


@njit(inline="always", cache=True)
def unpack_run(data, byte0, count, bits, signed, codes):  # pragma: no cover - compiled
    """Unpack ``count`` codes starting at byte ``byte0`` into the int array ``codes``."""
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)
    if bits == 4:
        db = data[byte0 : byte0 + (count + 1) // 2]
        for j in range(count // 2):
            byte = np.int32(db[j])
            lo4 = byte & 15
            hi4 = byte >> 4
            codes[2 * j] = lo4 - ((lo4 & sign) << 1) if signed else lo4
            codes[2 * j + 1] = hi4 - ((hi4 & sign) << 1) if signed else hi4
        if count % 2:
            v = np.int32(db[count // 2]) & 15
            codes[count - 1] = v - ((v & sign) << 1) if signed else v
        return
    if bits == 2 or bits == 1:
        per_byte = 8 // bits
        full = count // per_byte
        db = data[byte0 : byte0 + (count + per_byte - 1) // per_byte]
        for j in range(full):  # whole bytes: fixed inner trip count, zero-based slices
            byte = np.int32(db[j])
            out = codes[j * per_byte : (j + 1) * per_byte]
            for m in range(per_byte):
                v = (byte >> (m * bits)) & mask
                out[m] = v - ((v & sign) << 1) if signed else v
        for j in range(full * per_byte, count):
            v = (np.int32(db[j // per_byte]) >> ((j % per_byte) * bits)) & mask
            codes[j] = v - ((v & sign) << 1) if signed else v
        return
    acc = 0
    nbits = 0
    pos = byte0
    for j in range(count):
        while nbits < bits:
            acc |= np.int32(data[pos]) << nbits
            pos += 1
            nbits += 8
        v = acc & mask
        acc >>= bits
        nbits -= bits
        codes[j] = v - ((v & sign) << 1) if signed else v


_CHUNK = 1 << 14


@njit(parallel=True, cache=True)
def _pack_kernel(codes, bits, out):  # pragma: no cover - compiled
    n = codes.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(nchunks):
        start = c * _CHUNK
        count = min(_CHUNK, n - start)
        pack_run(codes[start:], count, bits, out, start * bits // 8)


@njit(parallel=True, cache=True)
def _unpack_kernel(data, n, bits, signed, out):  # pragma: no cover - compiled
    nchunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(nchunks):
        start = c * _CHUNK
        count = min(_CHUNK, n - start)
        unpack_run(data, start * bits // 8, count, bits, signed, out[start:])


def pack_codes(codes: np.ndarray, bits: int, out: np.ndarray | None = None) -> np.ndarray:
    """Pack integer codes (any shape, read in C order) into ``ceil(n*bits/8)`` bytes.

    Args:
        codes: integer array whose values fit in ``bits`` bits (signed or unsigned).
        bits: 1..16.
        out: optional uint8 buffer of the packed size to write into.

    Returns:
        The uint8 array of packed bytes.

    Example:
        >>> pack_codes(np.array([1, 2, 3, 0], np.uint8), 2).tolist()
        [57]
    """
    flat = np.ascontiguousarray(codes).reshape(-1)
    nbytes = (flat.size * bits + 7) // 8
    if out is None:
        out = np.empty(nbytes, np.uint8)
    if flat.size:
        _pack_kernel(flat, bits, out)
    return out


def unpack_codes(
    data: np.ndarray, count: int, bits: int, signed: bool, out: np.ndarray | None = None
) -> np.ndarray:
    """Unpack ``count`` codes of ``bits`` bits from packed bytes.

    Args:
        data: uint8 packed bytes.
        count: number of codes.
        bits: 1..16.
        signed: sign-extend the codes.
        out: optional int array of length ``count`` to write into.

    Returns:
        int8/uint8 (bits <= 8) or int16/uint16 codes, 1-D.

    Example:
        >>> unpack_codes(np.array([57], np.uint8), 4, 2, False).tolist()
        [1, 2, 3, 0]
    """
    if out is None:
        dtype = (np.int8 if signed else np.uint8) if bits <= 8 else (np.int16 if signed else np.uint16)
        out = np.empty(count, dtype)
    if count:
        _unpack_kernel(data, count, bits, signed, out)
    return out
