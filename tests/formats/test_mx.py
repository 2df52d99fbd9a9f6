"""OCP Microscaling (MX) formats: shared E8M0 block scales and element rounding.

The oracles are independent of lowbit's kernels and of its grid tables: a float64
NumPy implementation of the MX v1.0 conversion rule written from the spec
(shared exponent ``floor(log2 amax) - emax``, element rounding by exponent and
mantissa with round-half-even, saturation), the spec's emax and max-normal
values typed in by hand, and torch's float8 casts for the fp8 elements.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lowbit
from lowbit import PerChannel, PerGroup, PerTensor, QTensor
from lowbit.errors import FileFormatError, GranularityError, OptionError, QTypeError
from lowbit.formats import get_qtype, list_qtypes, qtype_aliases, register_alias

# name: (exponent bits, mantissa bits, max normal, emax) of the element, from the OCP MX v1.0 tables
FLOAT_ELEMENTS = {
    "mxfp8_e4m3": (4, 3, 448.0, 8),
    "mxfp8_e5m2": (5, 2, 57344.0, 15),
    "mxfp6_e3m2": (3, 2, 28.0, 4),
    "mxfp6_e2m3": (2, 3, 7.5, 2),
    "mxfp4": (2, 1, 6.0, 2),
}
MX_NAMES = [*FLOAT_ELEMENTS, "mxint8"]
ELEMENT_BITS = {"mxfp8_e4m3": 8, "mxfp8_e5m2": 8, "mxfp6_e3m2": 6, "mxfp6_e2m3": 6, "mxfp4": 4, "mxint8": 8}
TORCH_FP8 = {"mxfp8_e4m3": torch.float8_e4m3fn, "mxfp8_e5m2": torch.float8_e5m2}


# --------------------------------------------------------------------------- float64 reference of the spec


def ref_round_float(y: np.ndarray, ebits: int, mbits: int, max_normal: float) -> np.ndarray:
    """Round to an (ebits, mbits) float with ties to even and saturation at max_normal (float64)."""
    emin = 2 - 2 ** (ebits - 1)  # 1 - bias
    a = np.abs(y)
    _, ex = np.frexp(a)
    e = np.maximum(ex - 1, emin)  # exponent of the binade (subnormals share emin)
    quantum = np.ldexp(1.0, e - mbits)
    r = np.minimum(np.rint(a / quantum) * quantum, max_normal)
    return np.copysign(r, y)


def ref_shared_exponent(amax: np.ndarray, emax: int, lowest: int = -127) -> np.ndarray:
    """floor(log2 amax) - emax clamped to [lowest, 127]; 0 (X = 1) for all-zero blocks."""
    _, ex = np.frexp(amax)
    return np.where(amax > 0, np.clip(ex - 1 - emax, lowest, 127), 0)


def ref_mx(x: np.ndarray, name: str, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """(dequantized values, shared exponents) of the MX rule on blocks of 32 along ``axis``, float64."""
    v = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    blocks = v.reshape(*v.shape[:-1], v.shape[-1] // 32, 32)
    amax = np.abs(blocks).max(axis=-1, keepdims=True)
    if name == "mxint8":
        exps = ref_shared_exponent(amax, 0, lowest=-121)
        y = blocks / np.ldexp(1.0, exps)
        elems = np.clip(np.rint(y * 64), -127, 127) / 64
    else:
        ebits, mbits, top, emax = FLOAT_ELEMENTS[name]
        exps = ref_shared_exponent(amax, emax)
        elems = ref_round_float(blocks / np.ldexp(1.0, exps), ebits, mbits, top)
    out = (elems * np.ldexp(1.0, exps)).reshape(v.shape)
    return np.moveaxis(out, -1, axis), np.moveaxis(exps[..., 0], -1, axis)


def blocks_of_many_magnitudes(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Gaussian blocks scaled by 2^-30..2^30, with one all-zero block and a few exact powers of two."""
    x = rng.standard_normal((rows, cols)) * np.exp2(rng.integers(-30, 30, (rows, cols // 32))).repeat(32, axis=1)
    x[0, :32] = 0.0
    x[1, 5] = 2.0**7  # amax exactly a power of two
    return x


# --------------------------------------------------------------------------- registry


def test_mx_qtypes_are_registered_with_their_element_grids():
    for name, elem in [("mxfp8_e4m3", "fp8_e4m3"), ("mxfp8_e5m2", "fp8_e5m2"), ("mxfp6_e3m2", "fp6_e3m2"),
                       ("mxfp6_e2m3", "fp6_e2m3"), ("mxfp4", "fp4_e2m1")]:
        qt = get_qtype(name)
        assert (qt.kind, qt.bits, qt.grid) == ("float", ELEMENT_BITS[name], get_qtype(elem).grid)
        assert (qt.block_size, qt.scale_format, qt.is_mx, qt.emax) == (32, "e8m0", True, FLOAT_ELEMENTS[name][3])
    q8 = get_qtype("mxint8")
    assert (q8.kind, q8.bits, q8.qmin, q8.qmax, q8.implicit_exp, q8.emax) == ("int", 8, -127, 127, -6, 0)
    assert not get_qtype("fp8_e4m3").is_mx and get_qtype("int8").block_size == 0
    assert set(MX_NAMES) <= set(list_qtypes())


def test_aliases_resolve_and_are_not_listed():
    assert get_qtype("mxfp8") is get_qtype("mxfp8_e4m3")
    assert get_qtype(" MXFP6 ") is get_qtype("mxfp6_e2m3")
    assert get_qtype("fp4") is get_qtype("fp4_e2m1")  # torch, MX and NVFP4's meaning; bitsandbytes' is fp4_bnb
    assert qtype_aliases() == {"fp4": "fp4_e2m1", "mxfp8": "mxfp8_e4m3", "mxfp6": "mxfp6_e2m3"}
    assert "mxfp8" not in list_qtypes() and "mxfp6" not in list_qtypes() and "fp4" not in list_qtypes()
    with pytest.raises(QTypeError, match="already names"):
        register_alias("mxfp8", "mxfp8_e5m2")
    with pytest.raises(QTypeError, match="already names"):
        register_alias("int4", "int8")
    with pytest.raises(QTypeError, match="no format"):
        register_alias("my_alias", "int99")
    with pytest.raises(QTypeError, match="aliases: fp4 \\(fp4_e2m1\\), mxfp8 \\(mxfp8_e4m3\\)"):
        get_qtype("mxfp9")


# --------------------------------------------------------------------------- element rounding vs the spec


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", MX_NAMES)
def test_matches_float64_spec_reference(name, dtype, rng):
    x = blocks_of_many_magnitudes(rng, 16, 256).astype(dtype)
    qt = lowbit.quantize(x, name)
    want, exps = ref_mx(x, name)
    got = lowbit.dequantize(qt)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got.astype(np.float64), want)
    np.testing.assert_array_equal(qt.stored_scale["scale_e8m0"], exps + 127)
    implicit = -6 if name == "mxint8" else 0
    np.testing.assert_array_equal(qt.scale.astype(np.float64), np.ldexp(1.0, exps + implicit))
    assert qt.granularity == PerGroup(32) and qt.scale_format == "e8m0"
    np.testing.assert_array_equal(lowbit.fake_quantize(x, name), got)


@pytest.mark.parametrize("name", list(FLOAT_ELEMENTS))
def test_ties_and_saturation_follow_the_spec(name):
    """Every midpoint between neighbouring element values, in blocks whose amax fixes X = 2^3.

    Each block holds X * 2^emax (so floor(log2 amax) - emax = 3), midpoints and
    values between the max normal and 2^(emax+1) (which saturate)."""
    ebits, mbits, top, emax = FLOAT_ELEMENTS[name]
    pos = np.unique(np.abs(ref_round_float(np.linspace(0, top, 20001), ebits, mbits, top)))
    grid = np.concatenate([-pos[::-1], pos[1:]])
    mids = (grid[:-1] + grid[1:]) / 2
    beyond = np.linspace(top, 2.0 ** (emax + 1), 9)[1:-1]
    vals = np.concatenate([mids, beyond, -beyond])
    per_block = 31
    nblocks = -(-vals.size // per_block)
    body = np.zeros(nblocks * per_block)
    body[: vals.size] = vals
    x = np.concatenate([np.full((nblocks, 1), 2.0**emax), body.reshape(nblocks, per_block)], axis=1) * 8.0
    got = lowbit.dequantize(lowbit.quantize(x.astype(np.float32), name)).astype(np.float64)
    np.testing.assert_array_equal(got, ref_round_float(x / 8.0, ebits, mbits, top) * 8.0)
    assert np.all(np.abs(got[:, 1:].reshape(-1)[mids.size: vals.size]) == top * 8.0)  # saturated


@pytest.mark.parametrize("name", list(TORCH_FP8))
def test_mxfp8_elements_equal_torch_float8_casts(name, rng):
    """Elements = torch's float8 cast of V/X (after the spec's saturation to the max normal)."""
    x = blocks_of_many_magnitudes(rng, 32, 512).astype(np.float32)
    qt = lowbit.quantize(x, name)
    X = np.repeat(np.ldexp(np.float32(1.0), qt.stored_scale["scale_e8m0"].astype(np.int32) - 127), 32, axis=1)
    top = FLOAT_ELEMENTS[name][2]
    y = np.clip(x / X, -top, top).astype(np.float32)  # exact: X is a power of two, no underflow here
    elems = torch.from_numpy(y).to(TORCH_FP8[name]).float().numpy()
    np.testing.assert_array_equal(lowbit.dequantize(qt), elems * X)


def test_all_zero_block_stores_x_1_and_round_trips():
    x = np.zeros((2, 64), np.float32)
    x[1, 32:] = np.linspace(-3, 3, 32)
    for name in MX_NAMES:
        qt = lowbit.quantize(x, name)
        assert qt.stored_scale["scale_e8m0"][0].tolist() == [127, 127]
        out = lowbit.dequantize(qt)
        assert np.array_equal(out[0], np.zeros(64)) and np.array_equal(out[1, :32], np.zeros(32))


def test_shared_exponent_clamps_to_the_e8m0_range():
    x = np.zeros((3, 32), np.float64)
    x[0, 0] = 2.0**300  # floor(log2) - emax far above 127: X = 2^127, elements saturate
    x[1, 0] = 2.0**-300  # far below -127: X = 2^-127
    x[2, 0] = 2.0**-125  # mxint8 keeps X >= 2^-121 so 1 / (X / 64) is a finite float32
    fp4 = lowbit.quantize(x, "mxfp4")
    assert fp4.stored_scale["scale_e8m0"][:, 0].tolist() == [254, 0, 0]
    assert lowbit.dequantize(fp4)[0, 0] == 6.0 * 2.0**127
    i8 = lowbit.quantize(x, "mxint8")
    assert i8.stored_scale["scale_e8m0"][:, 0].tolist() == [254, 6, 6]
    assert lowbit.dequantize(i8)[2, 0] == 2.0**-125  # 16/64 * 2^-121


@pytest.mark.parametrize("axis", [0, 1, -3], ids=lambda a: f"axis{a}")
def test_blocks_along_another_axis(axis, rng):
    x = rng.standard_normal((64, 32, 96)).astype(np.float32)
    got = lowbit.dequantize(lowbit.quantize(x, "mxfp6_e3m2", granularity=PerGroup(32, axis=axis)))
    np.testing.assert_array_equal(got.astype(np.float64), ref_mx(x, "mxfp6_e3m2", axis=axis)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", ["mxfp4", "mxfp8", "mxint8"])
def test_torch_tensors_in_and_out(name, dtype):
    t = torch.randn(8, 64, generator=torch.Generator().manual_seed(1)).to(dtype)
    out = lowbit.fake_quantize(t, name)
    assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == t.shape
    want = ref_mx(t.float().numpy(), get_qtype(name).name)[0]
    assert torch.equal(out, torch.from_numpy(want).to(dtype))
    assert torch.equal(lowbit.quantize(t, name).dequantize(), out)


@pytest.mark.parametrize("name", MX_NAMES)
def test_storage_size_and_serialization(name, rng):
    x = rng.standard_normal((4, 96)).astype(np.float32)
    qt = lowbit.quantize(x, name)
    bits = ELEMENT_BITS[name]
    assert qt.nbytes == math.ceil(x.size * bits / 8) + x.size // 32  # codes + one byte per block
    assert qt.bits_per_element == bits + 0.25
    d = qt.to_dict()
    assert set(d) == {"data", "zero_point", "scale_e8m0", "meta"} and d["meta"]["scale_format"] == "e8m0"
    stored = {k: np.array(v) for k, v in d.items() if k != "meta"}
    stored["meta"] = json.loads(json.dumps(d["meta"]))
    back = QTensor.from_dict(stored)
    assert back.qtype is qt.qtype and back.granularity == PerGroup(32)
    np.testing.assert_array_equal(back.codes, qt.codes)
    np.testing.assert_array_equal(back.scale, qt.scale)
    np.testing.assert_array_equal(back.dequantize(), qt.dequantize())


def test_from_dict_rejects_mx_with_other_scale_storage(rng):
    d = lowbit.quantize(rng.standard_normal((2, 32)).astype(np.float32), "mxfp4").to_dict()
    bad = dict(d, meta={**d["meta"], "scale_format": "float32"})
    with pytest.raises(FileFormatError, match="e8m0"):
        QTensor.from_dict(bad)
    with pytest.raises(FileFormatError, match="scale_e8m0"):
        QTensor.from_dict(dict(d, scale_e8m0=d["scale_e8m0"].astype(np.int16)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"granularity": PerTensor()}, r"PerGroup\(32"),
        ({"granularity": PerChannel(0)}, r"PerGroup\(32"),
        ({"granularity": PerGroup(16)}, r"block of 32"),
        ({"symmetric": False}, "scale-only"),
        ({"scale": 1.0}, "drop scale="),
        ({"method": "mse"}, "minmax"),
        ({"rounding": "stochastic"}, "nearest"),
        ({"scale_format": "float16"}, "e8m0"),
        ({"scale_format": "e9m9"}, "registered scale formats are: float32"),
    ],
    ids=["tensor", "channel", "group16", "affine", "scale", "mse", "stochastic", "float16", "unknown"],
)
@pytest.mark.parametrize("name", ["mxfp4", "mxint8"])
def test_unsupported_options_raise(name, kwargs, match):
    x = np.ones((2, 64), np.float32)
    error = GranularityError if "granularity" in kwargs else OptionError
    with pytest.raises(error, match=match):
        lowbit.quantize(x, name, **kwargs)
    with pytest.raises(error, match=match):
        lowbit.fake_quantize(x, name, **kwargs)


def test_axis_not_a_multiple_of_32_names_the_fix():
    with pytest.raises(GranularityError, match=r"mxfp4 needs blocks of 32 along axis -1, which has length 48.*pad"):
        lowbit.quantize(np.ones((2, 48), np.float32), "mxfp4")


@given(data=st.data())
def test_property_random_blocks_match_reference(data):
    name = data.draw(st.sampled_from(MX_NAMES))
    rows = data.draw(st.integers(1, 3))
    nblocks = data.draw(st.integers(1, 3))
    x = data.draw(hnp.arrays(np.float32, (rows, 32 * nblocks),
                             elements=st.floats(-(2.0**100), 2.0**100, width=32, allow_subnormal=False)))
    want = ref_mx(x, name)[0]
    qt = lowbit.quantize(x, name)
    np.testing.assert_array_equal(lowbit.dequantize(qt).astype(np.float64), want)
    back = QTensor.from_dict(qt.to_dict())
    np.testing.assert_array_equal(back.dequantize(), lowbit.dequantize(qt))


def test_zero_d_input_names_the_fix():
    with pytest.raises(GranularityError, match="0-d tensor"):
        lowbit.quantize(np.float32(1.0), "mxfp4")
