"""lowbit._kernels._bits: bit packing against a NumPy bit-stream reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lowbit
from _reference import ref_pack, ref_unpack
from lowbit._kernels import pack_codes, unpack_codes

BITS = list(range(1, 17))


def code_dtype(bits: int, signed: bool) -> np.dtype:
    if bits <= 8:
        return np.dtype(np.int8 if signed else np.uint8)
    return np.dtype(np.int16 if signed else np.uint16)


def code_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


@st.composite
def code_arrays(draw, bits: int, signed: bool):
    lo, hi = code_range(bits, signed)
    n = draw(st.integers(0, 300))
    return draw(hnp.arrays(code_dtype(bits, signed), n, elements=st.integers(lo, hi)))


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("bits", BITS)
@given(data=st.data())
def test_pack_unpack_identity(bits, signed, data):
    codes = data.draw(code_arrays(bits, signed))
    n = codes.size
    packed = pack_codes(codes, bits)
    assert packed.dtype == np.uint8
    assert packed.size == (n * bits + 7) // 8
    np.testing.assert_array_equal(packed, ref_pack(codes, bits))
    back = unpack_codes(packed, n, bits, signed)
    assert back.dtype == code_dtype(bits, signed)
    np.testing.assert_array_equal(back, codes)
    np.testing.assert_array_equal(ref_unpack(packed, n, bits, signed), codes)


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("bits", BITS)
def test_long_runs_cross_chunk_boundaries(bits, signed, rng):
    lo, hi = code_range(bits, signed)
    n = 3 * (1 << 14) + 13  # three kernel chunks and a ragged tail
    codes = rng.integers(lo, hi + 1, n).astype(code_dtype(bits, signed))
    packed = pack_codes(codes, bits)
    np.testing.assert_array_equal(packed, ref_pack(codes, bits))
    np.testing.assert_array_equal(unpack_codes(packed, n, bits, signed), codes)


@pytest.mark.parametrize("bits", BITS)
def test_unpack_of_reference_stream(bits, rng):
    """Decode bytes written by the reference (not by pack_codes) for both signednesses."""
    n = 77
    raw = rng.integers(0, 2**bits, n)
    data = ref_pack(raw, bits)
    np.testing.assert_array_equal(unpack_codes(data, n, bits, False), raw)
    signed = np.where(raw >= 2 ** (bits - 1), raw - 2**bits, raw)
    np.testing.assert_array_equal(unpack_codes(data, n, bits, True), signed)


def test_hand_packed_examples():
    assert pack_codes(np.array([1, 2, 3, 0], np.uint8), 2).tolist() == [0b00111001]  # 1 | 2<<2 | 3<<4
    assert pack_codes(np.array([1, -2, 3], np.int8), 4).tolist() == [0xE1, 0x03]  # -2 -> 0b1110
    assert pack_codes(np.array([1, 0, 1, 1, 0, 0, 0, 1, 1], np.uint8), 1).tolist() == [0b10001101, 1]
    assert pack_codes(np.array([-1], np.int16), 12).tolist() == [0xFF, 0x0F]
    assert pack_codes(np.array([5, 6], np.uint8), 3).tolist() == [5 | (6 << 3)]
    assert unpack_codes(np.array([0xE1, 0x03], np.uint8), 3, 4, True).tolist() == [1, -2, 3]


def test_out_buffers(rng):
    codes = rng.integers(-4, 4, 21).astype(np.int8)
    out = np.zeros((21 * 3 + 7) // 8, np.uint8)
    res = pack_codes(codes, 3, out=out)
    assert res is out
    np.testing.assert_array_equal(out, ref_pack(codes, 3))
    dst = np.zeros(21, np.int8)
    res = unpack_codes(out, 21, 3, True, out=dst)
    assert res is dst
    np.testing.assert_array_equal(dst, codes)


def test_multidimensional_codes_are_read_in_c_order(rng):
    codes = rng.integers(0, 8, (3, 5)).astype(np.uint8)
    np.testing.assert_array_equal(pack_codes(codes, 3), ref_pack(codes.reshape(-1), 3))
    np.testing.assert_array_equal(pack_codes(codes.T, 3), ref_pack(np.ascontiguousarray(codes.T).reshape(-1), 3))


@pytest.mark.parametrize("name", ["int1", "uint1", "int2", "uint3", "int4", "uint5", "int7_full", "int12", "uint15"])
def test_quantize_writes_the_reference_bit_stream(name, rng):
    """QTensor.data of packed formats is exactly the little-endian stream of its codes."""
    x = rng.standard_normal((7, 13)).astype(np.float32)  # 91 codes: not a multiple of 8
    qt = lowbit.quantize(x, name, granularity=lowbit.PerChannel(0))
    bits = qt.qtype.bits
    assert qt.data.size == (91 * bits + 7) // 8
    np.testing.assert_array_equal(qt.data, ref_pack(qt.codes, bits))
    np.testing.assert_array_equal(qt.codes.reshape(-1), ref_unpack(qt.data, 91, bits, qt.qtype.signed))
