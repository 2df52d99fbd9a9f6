"""Bad input: every error is a LowbitError with a useful message; degenerate tensors behave."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import lowbit
from lowbit import PerChannel, PerGroup, PerTensor, errors

ENTRY_POINTS = {
    "quantize": lambda x, **kw: lowbit.quantize(x, **kw),
    "fake_quantize": lambda x, **kw: lowbit.fake_quantize(x, **kw),
}


# --------------------------------------------------------------------------- hierarchy


@pytest.mark.parametrize(
    "cls,builtin",
    [
        (errors.QTypeError, ValueError),
        (errors.GranularityError, ValueError),
        (errors.NonFiniteError, ValueError),
        (errors.EmptyInputError, ValueError),
        (errors.InputTypeError, TypeError),
        (errors.OptionError, ValueError),
        (errors.FileFormatError, ValueError),
        (errors.NotCalibratedError, ValueError),
        (errors.NotCalibratedError, AttributeError),
    ],
    ids=lambda v: v.__name__,
)
def test_error_hierarchy(cls, builtin):
    assert issubclass(cls, lowbit.LowbitError)
    assert issubclass(cls, builtin)
    assert getattr(lowbit, cls.__name__) is cls


def test_every_exported_error_is_a_lowbit_error():
    for name in errors.__all__:
        cls = getattr(errors, name)
        if cls is lowbit.LowbitError or not isinstance(cls, type):
            continue
        assert issubclass(cls, lowbit.LowbitError)
        assert issubclass(cls, (ValueError, TypeError))


def test_error_context_prefixes_lowbit_errors_only():
    with pytest.raises(lowbit.QTypeError, match=r"^layer 'fc': unknown qtype 'int99'") as info, \
            errors.error_context("layer 'fc'"):
        lowbit.get_qtype("int99")
    assert info.value.__cause__ is None and info.value.__traceback__ is not None
    with pytest.raises(KeyError) as other, errors.error_context("layer 'fc'"):  # not lowbit's: untouched
        raise KeyError("x")
    assert other.value.args == ("x",)


# --------------------------------------------------------------------------- non-finite


@pytest.mark.parametrize("entry", list(ENTRY_POINTS), ids=str)
def test_non_finite_values_are_counted_and_located(entry):
    x = np.zeros((3, 4), np.float32)
    x[1, 2] = np.nan
    x[0, 3] = np.inf
    x[2, 0] = -np.inf
    with pytest.raises(lowbit.NonFiniteError) as info:
        ENTRY_POINTS[entry](x)
    msg = str(info.value)
    assert "3 non-finite" in msg
    assert "1 NaN" in msg
    assert "2 Inf" in msg
    assert "(3, 4)" in msg  # the shape
    # first offending positions in C order
    assert msg.index("(0, 3)") < msg.index("(1, 2)") < msg.index("(2, 0)")


@pytest.mark.parametrize("gran", [PerTensor(), PerChannel(0), PerChannel(1), PerGroup(2), PerGroup(5, 0)], ids=str)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=["float16", "float32", "float64"])
def test_single_nan_found_with_every_granularity(gran, dtype):
    x = np.ones((5, 6), dtype)
    x[4, 5] = np.nan
    with pytest.raises(lowbit.NonFiniteError, match=r"1 non-finite.*\(4, 5\)"):
        lowbit.quantize(x, "int4", granularity=gran)


def test_many_non_finite_values_count_all_list_first_few():
    x = np.arange(100, dtype=np.float64)
    x[10:40] = np.nan
    with pytest.raises(lowbit.NonFiniteError) as info:
        lowbit.quantize(x)
    msg = str(info.value)
    assert "30 non-finite" in msg
    assert "(10,)" in msg
    assert "(39,)" not in msg  # only the first few positions are listed


def test_non_finite_in_large_tensor():
    x = np.ones(300_000, np.float32)
    x[123_456] = np.inf
    with pytest.raises(lowbit.NonFiniteError, match=r"123456"):
        lowbit.quantize(x, "int8")


def test_non_finite_torch():
    torch = pytest.importorskip("torch")
    x = torch.tensor([[1.0, float("nan")], [float("inf"), 2.0]], dtype=torch.bfloat16)
    with pytest.raises(lowbit.NonFiniteError, match=r"2 non-finite.*\(0, 1\)"):
        lowbit.quantize(x)


# --------------------------------------------------------------------------- empty and wrong types


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4, 2)], ids=str)
@pytest.mark.parametrize("entry", list(ENTRY_POINTS), ids=str)
def test_empty_input(shape, entry):
    with pytest.raises(lowbit.EmptyInputError, match=re.escape(str(shape))):
        ENTRY_POINTS[entry](np.zeros(shape, np.float32))


def test_empty_torch():
    torch = pytest.importorskip("torch")
    with pytest.raises(lowbit.EmptyInputError):
        lowbit.quantize(torch.empty(0))
    with pytest.raises(lowbit.EmptyInputError):
        lowbit.quantize([])


@pytest.mark.parametrize(
    "x",
    [
        np.arange(6),
        np.arange(6, dtype=np.int8),
        np.arange(6, dtype=np.uint16),
        np.array([True, False]),
        np.array([1 + 2j, 3j], np.complex64),
        np.array(["a", "b"]),
        [1, 2, 3],
        np.array([object(), None], dtype=object),
        "1.5",
    ],
    ids=["int64", "int8", "uint16", "bool", "complex64", "str", "int-list", "object", "string"],
)
@pytest.mark.parametrize("entry", list(ENTRY_POINTS), ids=str)
def test_non_float_numpy_input(x, entry):
    with pytest.raises(lowbit.InputTypeError) as info:
        ENTRY_POINTS[entry](x)
    assert "float" in str(info.value)
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("dtype", ["int64", "int32", "int8", "uint8", "bool", "complex64"])
def test_non_float_torch_input(dtype):
    torch = pytest.importorskip("torch")
    x = torch.zeros(4, dtype=getattr(torch, dtype))
    with pytest.raises(lowbit.InputTypeError, match=dtype):
        lowbit.quantize(x)


def test_dequantize_wants_a_qtensor():
    with pytest.raises(lowbit.InputTypeError, match="QTensor"):
        lowbit.dequantize(np.zeros(3, np.float32))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- formats, granularity, options


@pytest.mark.parametrize("bits", [0, 17, -8, 64])
def test_bits_out_of_range(bits):
    with pytest.raises(lowbit.QTypeError, match=r"1\.\.16"):
        lowbit.int_qtype(bits)
    with pytest.raises(lowbit.QTypeError):
        lowbit.int_qtype(bits, signed=False)


@pytest.mark.parametrize("name", ["int0", "int17", "uint32", "int99", "float8", "int1_full", "nf5", ""])
def test_unknown_qtype_lists_registered_names(name):
    with pytest.raises(lowbit.QTypeError) as info:
        lowbit.quantize(np.ones(4, np.float32), name)
    msg = str(info.value)
    assert repr(name) in msg
    for known in ("int1", "int8", "uint8", "int16", "uint16", "int4_full", "int16_full"):
        assert re.search(rf"\b{known}\b", msg), known
    with pytest.raises(ValueError):
        lowbit.get_qtype(name)


def test_uint1_symmetric_is_refused():
    with pytest.raises(lowbit.QTypeError, match="symmetric=False"):
        lowbit.quantize(np.ones(4, np.float32), "uint1", symmetric=True)


@pytest.mark.parametrize(
    "gran,shape",
    [(PerChannel(2), (3, 4)), (PerChannel(-3), (3, 4)), (PerGroup(2, 3), (3, 4)), (PerChannel(0), ())],
    ids=lambda v: str(v).replace(" ", ""),
)
@pytest.mark.parametrize("entry", list(ENTRY_POINTS), ids=str)
def test_axis_out_of_range(gran, shape, entry):
    with pytest.raises(lowbit.GranularityError):
        ENTRY_POINTS[entry](np.ones(shape, np.float32), granularity=gran)


def test_group_size_not_dividing_gives_a_shorter_last_group_and_bad_axes_name_the_shape():
    qt = lowbit.quantize(np.arange(30, dtype=np.float32).reshape(3, 10), "int4", granularity=PerGroup(4))
    assert qt.scale.shape == (3, 3)  # groups of 4, 4 and 2 per row: ceil(10 / 4)
    with pytest.raises(lowbit.GranularityError, match=r"axis 2 is out of range for a tensor of shape \(3, 10\)"):
        lowbit.quantize(np.zeros((3, 10), np.float32), "int4", granularity=PerGroup(4, axis=2))


@pytest.mark.parametrize("rounding", ["up", "Nearest", "floor", "", None], ids=repr)
@pytest.mark.parametrize("entry", list(ENTRY_POINTS), ids=str)
def test_bad_rounding_mode(rounding, entry):
    with pytest.raises(lowbit.OptionError, match="rounding"):
        ENTRY_POINTS[entry](np.ones(4, np.float32), rounding=rounding)


@pytest.mark.parametrize(
    "rng_arg", ["seed", 1.5, True, np.random.RandomState(0)], ids=["str", "float", "bool", "RandomState"]
)
def test_bad_rng(rng_arg):
    with pytest.raises(lowbit.OptionError, match="rng"):
        lowbit.quantize(np.ones(4, np.float32), rounding="stochastic", rng=rng_arg)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale": 0.0},
        {"scale": -1.0},
        {"scale": np.nan},
        {"scale": np.inf},
        {"scale": [0.1, 0.2]},  # per-tensor needs one scale
        {"scale": 0.1, "zero_point": 0.5},
        {"scale": 0.1, "zero_point": 256},
        {"scale": 0.1, "zero_point": -1},
    ],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()),
)
def test_bad_explicit_qparams(kwargs):
    with pytest.raises(lowbit.OptionError):
        lowbit.quantize(np.ones(4, np.float32), "uint8", **kwargs)


def test_explicit_scale_shape_must_fit_granularity():
    x = np.ones((3, 4), np.float32)
    with pytest.raises(lowbit.OptionError, match=r"\(3,\)"):
        lowbit.quantize(x, "int8", granularity=PerChannel(0), scale=np.ones(4))
    qt = lowbit.quantize(x, "int8", granularity=PerChannel(0), scale=0.5)  # a scalar broadcasts
    np.testing.assert_array_equal(qt.scale, np.full(3, 0.5, np.float32))


@pytest.mark.parametrize(
    "out",
    [
        np.empty(12, np.int16),  # wrong dtype
        np.empty(11, np.int8),  # wrong size
        np.empty((4, 6), np.int8)[:, ::2],  # not contiguous
        [0] * 12,  # not an array
    ],
    ids=["dtype", "size", "strided", "list"],
)
def test_bad_quantize_out(out):
    with pytest.raises(lowbit.OptionError, match="out="):
        lowbit.quantize(np.ones(12, np.float32), "int8", out=out)


def test_bad_dequantize_out():
    qt = lowbit.quantize(np.ones(12, np.float32), "int8")
    with pytest.raises(lowbit.OptionError):
        lowbit.dequantize(qt, out=np.empty(12, np.float64))
    with pytest.raises(lowbit.OptionError):
        qt.dequantize(out=np.empty(13, np.float32))


# --------------------------------------------------------------------------- degenerate tensors

ZERO_CASES = [
    ("int8", None), ("int8", False), ("uint8", None), ("uint8", True), ("int4", None), ("uint4", None),
    ("int1", None), ("int1", False), ("uint1", None), ("int16", None), ("uint16", True), ("int3_full", False),
]  # fmt: skip
GRANS = [PerTensor(), PerChannel(0), PerChannel(-1), PerGroup(2), PerGroup(3, 0)]


@pytest.mark.parametrize("name,symmetric", ZERO_CASES, ids=[f"{n}-{s}" for n, s in ZERO_CASES])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=["float16", "float32", "float64"])
def test_all_zero_tensors_come_back_as_exact_zeros_without_warnings(name, symmetric, dtype):
    x = np.zeros((6, 4), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for gran in GRANS:
            qt = lowbit.quantize(x, name, granularity=gran, symmetric=symmetric)
            assert np.all(qt.codes == qt.zero_point.reshape(-1)[0])
            d = qt.dequantize()
            assert d.dtype == x.dtype
            np.testing.assert_array_equal(d, x)
            assert not np.signbit(d).any()
            np.testing.assert_array_equal(lowbit.fake_quantize(x, name, granularity=gran, symmetric=symmetric), x)
            np.testing.assert_array_equal(lowbit.quantize(x, name, granularity=gran, rounding="stochastic", rng=0,
                                                          symmetric=symmetric).dequantize(), x)  # fmt: skip


def test_all_zero_torch_without_warnings():
    torch = pytest.importorskip("torch")
    x = torch.zeros(3, 8, dtype=torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = lowbit.fake_quantize(x, "int4", granularity=PerGroup(4))
    assert torch.equal(d, x)


CONSTANTS = [3.7, -2.5, 1e-3, 1e30]
CONSTANT_FORMATS = ["int8", "int4", "int2", "int3", "int16", "int8_full", "int4_full", "uint8", "uint4", "uint2",
                    "uint16", "int1", "uint1"]  # fmt: skip


CONSTANT_CASES = [
    (v, n, sym)
    for v in CONSTANTS
    for n in CONSTANT_FORMATS
    for sym in (True, False)
    # uint1 has no symmetric form (QTypeError, tested above); symmetric int1 is -1..0 and has
    # no code for a positive value (test_symmetric_int1_cannot_hold_positive_values)
    if not (sym and (n == "uint1" or (n == "int1" and v > 0)))
]


@pytest.mark.parametrize(
    "value,name,symmetric",
    CONSTANT_CASES,
    ids=[f"{v!r}-{n}-{'sym' if s else 'affine'}" for v, n, s in CONSTANT_CASES],
)
def test_constant_tensors_round_trip_exactly(value, name, symmetric):
    x = np.full((6, 4), value, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for gran in GRANS:
            qt = lowbit.quantize(x, name, granularity=gran, symmetric=symmetric)
            np.testing.assert_array_equal(qt.dequantize(), x, err_msg=str(gran))
            np.testing.assert_array_equal(lowbit.fake_quantize(x, name, granularity=gran, symmetric=symmetric), x)


def test_symmetric_int1_cannot_hold_positive_values():
    """int1 is -1..0; symmetric use gives scale = absmax, so positives saturate at code 0."""
    qt = lowbit.quantize(np.array([1.0, -1.0, 0.5], np.float32), "int1")
    assert qt.codes.tolist() == [0, -1, 0]
    assert qt.dequantize().tolist() == [0.0, -1.0, 0.0]
    # affine int1 over [0, 1]: scale 1, zero point -1, the grid is {0, 1}
    qa = lowbit.quantize(np.array([1.0, 0.25, 0.0], np.float32), "int1", symmetric=False)
    assert int(qa.zero_point) == -1
    assert qa.dequantize().tolist() == [1.0, 0.0, 0.0]


def test_constant_channels_next_to_zero_channels():
    x = np.zeros((4, 5), np.float32)
    x[1] = 7.25
    x[3] = -1e-3
    for name in ("int8", "uint8", "int4", "uint4"):
        np.testing.assert_array_equal(lowbit.fake_quantize(x, name, granularity=PerChannel(0)), x)


def test_dequantize_out_only_for_numpy_float32_or_float64_results():
    qt = lowbit.quantize(np.ones(8, np.float16), "int8")
    with pytest.raises(lowbit.OptionError, match="numpy float16"):
        lowbit.dequantize(qt, out=np.empty(8, np.float32))
    qt32 = lowbit.quantize(np.ones(8, np.float32), "int8")
    with pytest.raises(lowbit.OptionError, match="float32 NumPy array with 8 elements"):
        lowbit.dequantize(qt32, out=np.empty(7, np.float32))
