"""lowbit.qparams: scale and zero point from block ranges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lowbit
from _reference import ALL_NAMES, qrange, symmetric_zero_and_steps
from lowbit.qparams import choose_qparams, symmetric_divisor


@pytest.mark.parametrize(
    "name,expected",
    [("int8", (0, 127)), ("int8_full", (0, 127)), ("int4", (0, 7)), ("int1", (0, 1)), ("int2", (0, 1)),
     ("uint8", (128, 127)), ("uint4", (8, 7)), ("uint2", (2, 1)), ("int16", (0, 32767)), ("uint16", (32768, 32767))],
)  # fmt: skip
def test_symmetric_divisor_by_hand(name, expected):
    assert symmetric_divisor(lowbit.get_qtype(name)) == expected


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if n != "uint1"])
def test_symmetric_divisor_every_format(name):
    assert symmetric_divisor(lowbit.get_qtype(name)) == symmetric_zero_and_steps(name)


def test_uint1_has_no_symmetric_form():
    with pytest.raises(lowbit.QTypeError, match="symmetric=False"):
        symmetric_divisor(lowbit.get_qtype("uint1"))
    with pytest.raises(lowbit.QTypeError):
        choose_qparams(np.array([-1.0]), np.array([1.0]), "uint1", symmetric=True)


@pytest.mark.parametrize("sdt", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["int8", "int4", "int16", "uint8", "uint4", "int8_full", "int1", "uint1", "int3_full"])
def test_affine_params_match_reference(name, sdt, rng):
    lo = -np.abs(rng.standard_normal(50)) * 10.0 ** rng.integers(-3, 4, 50)
    hi = np.abs(rng.standard_normal(50)) * 10.0 ** rng.integers(-3, 4, 50)
    lo[:5] = 0.0  # all-positive blocks: zero point at qmin
    hi[5:10] = 0.0  # all-negative blocks: zero point at qmax
    s, z = choose_qparams(lo, hi, name, symmetric=False, scale_dtype=sdt)
    qmin, qmax = qrange(name)
    assert s.dtype == sdt
    assert z.dtype == np.int64
    assert s.shape == z.shape == (50,)
    np.testing.assert_allclose(s, (hi - lo) / (qmax - qmin), rtol=8 * np.finfo(sdt).eps)
    np.testing.assert_array_equal(z, np.clip(qmin - np.rint(lo / s.astype(np.float64)), qmin, qmax))
    assert np.all(z[:5] == qmin)
    assert np.all(z[5:10] == qmax)
    assert np.all((z >= qmin) & (z <= qmax))


@pytest.mark.parametrize("sdt", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["int8", "int4", "int16", "int2", "int1", "uint8", "uint4", "int8_full"])
def test_symmetric_params_match_reference(name, sdt, rng):
    lo = -np.abs(rng.standard_normal(50)) * 10.0 ** rng.integers(-3, 4, 50)
    hi = np.abs(rng.standard_normal(50)) * 10.0 ** rng.integers(-3, 4, 50)
    s, z = choose_qparams(lo, hi, name, symmetric=True, scale_dtype=sdt)
    zp, steps = symmetric_zero_and_steps(name)
    np.testing.assert_allclose(s, np.maximum(-lo, hi) / steps, rtol=8 * np.finfo(sdt).eps)
    assert np.all(z == zp)


@pytest.mark.parametrize(
    "name,lo,hi",
    [("int4_full", -2.0, 18.0), ("uint8", -19.375, 112.375), ("int8_full", -0.625, 20.625)],
)
def test_zero_point_uses_the_stored_scale(name, lo, hi):
    """zero_point = qmin - round_half_even(lo / scale) with the scale that is stored (torch's observers
    do the same with their float32 scale).  Here lo / float32 scale lies just off a .5 tie."""
    qmin, qmax = qrange(name)
    x = np.array([lo, hi], np.float32)
    qt = lowbit.quantize(x, name, symmetric=False)
    s = np.float64(qt.scale)
    assert s == pytest.approx((hi - lo) / (qmax - qmin), rel=1e-6)
    ratio = lo / s
    assert abs(abs(ratio - np.floor(ratio)) - 0.5) < 1e-5  # a near-tie (float32 scale): the case that tells them apart
    assert int(qt.zero_point) == qmin - int(np.rint(ratio))


def test_range_is_widened_to_include_zero():
    # [2, 6] is treated as [0, 6]: 0 must be exactly representable
    s, z = choose_qparams(np.array([2.0]), np.array([6.0]), "uint8", symmetric=False, scale_dtype=np.float64)
    assert float(s[0]) == pytest.approx(6 / 255, rel=1e-15)
    assert int(z[0]) == 0
    s, z = choose_qparams(np.array([-6.0]), np.array([-2.0]), "uint8", symmetric=False, scale_dtype=np.float64)
    assert float(s[0]) == pytest.approx(6 / 255, rel=1e-15)
    assert int(z[0]) == 255
    x = np.array([2.0, 3.0, 6.0], np.float32)
    qt = lowbit.quantize(x, "uint8")
    assert int(qt.zero_point) == 0


@pytest.mark.parametrize(
    "name,symmetric",
    [(n, sym) for n in ["int8", "uint8", "int4", "uint4", "int16", "int1", "uint1"] for sym in (True, False)
     if not (n == "uint1" and sym)],
    ids=lambda v: {True: "sym", False: "affine"}.get(v, v) if isinstance(v, bool) else v,
)  # fmt: skip
def test_all_zero_block_gets_scale_one(name, symmetric):
    s, z = choose_qparams(np.zeros(3), np.zeros(3), name, symmetric=symmetric)
    assert np.all(s == 1.0)
    qmin, _ = qrange(name)
    expected_zp = symmetric_zero_and_steps(name)[0] if symmetric else qmin
    assert np.all(z == expected_zp)


def test_tiny_ranges_get_the_smallest_normal_scale():
    tiny32 = np.finfo(np.float32).tiny
    s, _ = choose_qparams(np.array([0.0]), np.array([tiny32]), "int8", symmetric=True)
    # the scale tiny/127 would be subnormal (1/scale overflows): the smallest normal scale instead
    assert float(s[0]) == tiny32 and np.isfinite(np.float32(1) / s[0])
    qt = lowbit.quantize(np.array([tiny32, -tiny32, 0.0], np.float32), "int8")
    assert qt.dequantize().tolist() == [tiny32, -tiny32, 0.0]


def test_default_scale_dtype_and_shapes():
    s, z = choose_qparams(np.array([[-1.0, -2.0]]), np.array([[1.0, 4.0]]), "int8", symmetric=True)
    assert s.dtype == np.float32
    assert s.shape == z.shape == (1, 2)
    np.testing.assert_allclose(s, [[1 / 127, 4 / 127]], rtol=1e-6)


def test_unknown_qtype():
    with pytest.raises(lowbit.QTypeError):
        choose_qparams(np.array([0.0]), np.array([1.0]), "int0", symmetric=True)


@pytest.mark.parametrize("name", ["uint8", "uint4", "uint1", "uint16", "int8", "int3", "int8_full", "int1"])
@given(
    lo=st.floats(-(2.0**60), 0.0, width=32, allow_subnormal=False),
    hi=st.floats(0.0, 2.0**60, width=32, allow_subnormal=False),
    t=st.floats(0.0, 1.0),
)
def test_affine_zero_is_exactly_representable(name, lo, hi, t):
    x = np.array([lo, hi, 0.0, lo + t * (hi - lo), -0.0], np.float32)
    qt = lowbit.quantize(x, name, symmetric=False)
    assert qt.codes[2] == qt.zero_point
    assert qt.codes[4] == qt.zero_point
    d = qt.dequantize()
    assert d[2] == 0.0
    assert d[4] == 0.0


def test_max_value_keeps_every_code_finite_in_the_result_dtype():
    # float16 results: (code - zp) * scale must stay within 65504 for every code
    s, z = choose_qparams(np.array([-65504.0]), np.array([65504.0]), "uint4", symmetric=False, max_value=65504.0)
    ends = (np.array([0, 15]) - z[0]) * np.float64(s[0])
    assert np.abs(ends).max() <= 65504 and np.abs(ends).max() >= 65504 * 14 / 15
    s, _ = choose_qparams(np.array([0.0]), np.array([65504.0]), "fp8_e4m3", symmetric=True, max_value=65504.0)
    assert 448 * np.float64(s[0]) <= 65504
    with pytest.raises(lowbit.OptionError, match="max_value"):
        choose_qparams(np.array([0.0]), np.array([1.0]), "int8", symmetric=True, max_value=0.0)


def test_affine_range_wider_than_float64_is_halved_not_inf():
    big = np.finfo(np.float64).max
    s, z = choose_qparams(np.array([-big]), np.array([big]), "uint8", symmetric=False, scale_dtype=np.float64)
    assert np.isfinite(s).all()
    ends = (np.array([0.0, 255.0]) - z[0]) * s[0]
    assert np.isfinite(ends).all() and ends[0] <= -0.99 * big


def test_offset_qparams_refuses_a_span_beyond_the_maximum():
    from lowbit.qparams import offset_qparams

    s, m = offset_qparams(np.array([0.0]), np.array([3.0e38]), "uint8")
    assert np.isfinite(np.float32(255) * s[0] + m[0])
    with pytest.raises(lowbit.OptionError, match="zero_point='int'"):
        offset_qparams(np.array([-3.0e38]), np.array([3.0e38]), "uint8")
