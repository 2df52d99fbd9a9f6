"""quantize / dequantize / fake_quantize against the float64 reference.

Property tests (hypothesis) run for every integer format and draw the
granularity, dtype and symmetry; a deterministic test covers every
format x granularity x dtype combination once.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lowbit
from _checks import check_codes_and_dequant, check_params
from _reference import (
    ALL_NAMES,
    PROPERTY_NAMES,
    block_index,
    granularity_spec,
    parse_name,
    qrange,
    ref_dequant,
    ref_qparams,
)
from lowbit import PerChannel, PerGroup, PerTensor

GRAN_KINDS = ["tensor", "channel0", "channel-1", "channel_mid3d", "group_last", "group_axis0", "group_ragged"]


def default_symmetric(name: str) -> bool:
    return parse_name(name)[1]


def symmetric_options(name: str) -> list[bool | None]:
    return [None, False] if name == "uint1" else [None, True, False]


def resolve_symmetric(name: str, symmetric: bool | None) -> bool:
    return default_symmetric(name) if symmetric is None else symmetric


# --------------------------------------------------------------------------- strategies

_dims = st.integers(1, 5)


@st.composite
def shapes_and_granularity(draw, kind: str | None = None):
    kind = kind or draw(st.sampled_from(GRAN_KINDS))
    if kind == "tensor":
        return tuple(draw(st.lists(_dims, min_size=0, max_size=3))), PerTensor()
    if kind in ("channel0", "channel-1"):
        return tuple(draw(st.lists(_dims, min_size=1, max_size=3))), PerChannel(0 if kind == "channel0" else -1)
    if kind == "channel_mid3d":
        return tuple(draw(st.lists(_dims, min_size=3, max_size=3))), PerChannel(1)
    size = draw(st.sampled_from([1, 2, 3, 4, 8, 16]))
    length = draw(st.integers(1, 3 * size))  # a size that does not divide the axis: a shorter last group
    rest = draw(st.lists(st.integers(1, 4), min_size=0, max_size=2))
    if kind == "group_ragged":
        return (*rest, length), PerGroup(size, draw(st.sampled_from([-1, 0])))
    if kind == "group_last":
        return (*rest, length), PerGroup(size, -1)
    return (length, *rest), PerGroup(size, 0)


def _elements(dtype) -> st.SearchStrategy:
    width = 32 if dtype == np.float32 else 64
    # no subnormal block ranges: below ~1e-36 lowbit treats a block as all-zero (scale 1)
    return st.floats(-(2.0**100), 2.0**100, width=width, allow_subnormal=False).map(
        lambda v: 0.0 if abs(v) < 1e-20 else v
    )


@st.composite
def cases(draw, name: str, kind: str | None = None):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape, gran = draw(shapes_and_granularity(kind))
    x = draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))
    symmetric = draw(st.sampled_from(symmetric_options(name)))
    return x, gran, symmetric


# --------------------------------------------------------------------------- nearest rounding


@pytest.mark.parametrize("name", PROPERTY_NAMES)
@given(data=st.data())
def test_nearest_codes_params_and_error_bound(name, data):
    x, gran, symmetric = data.draw(cases(name))
    qt = lowbit.quantize(x, name, granularity=gran, symmetric=symmetric)
    sym = resolve_symmetric(name, symmetric)
    assert qt.symmetric is sym
    assert qt.qtype.name == name
    assert qt.granularity == gran
    spec = granularity_spec(gran)
    check_params(x, qt, name, spec, sym)
    check_codes_and_dequant(x, qt, name, spec)


def _deterministic_input(kind: str, dtype, rng) -> tuple[np.ndarray, object]:
    shape, gran = {
        "tensor": ((6, 16), PerTensor()),
        "channel0": ((6, 16), PerChannel(0)),
        "channel-1": ((16, 6), PerChannel(-1)),
        "channel_mid3d": ((3, 5, 8), PerChannel(1)),
        "group_last": ((3, 32), PerGroup(8)),
        "group_axis0": ((12, 5), PerGroup(4, axis=0)),
        "group_ragged": ((3, 5, 11), PerGroup(4, axis=1)),  # groups of 4, 1 along axis 1
    }[kind]
    x = rng.standard_normal(shape) * np.exp(rng.uniform(-4, 4, shape))
    x.reshape(-1)[::7] = 0.0
    x.reshape(-1)[3] = 0.5  # exact ties happen for power-of-two scales
    return x.astype(dtype), gran


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kind", GRAN_KINDS)
@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_format_granularity_dtype(name, kind, dtype, rng):
    x, gran = _deterministic_input(kind, dtype, rng)
    spec = granularity_spec(gran)
    for symmetric in symmetric_options(name):
        qt = lowbit.quantize(x, name, granularity=gran, symmetric=symmetric)
        check_params(x, qt, name, spec, resolve_symmetric(name, symmetric))
        check_codes_and_dequant(x, qt, name, spec)


@pytest.mark.parametrize(
    "shape,gran",
    [
        ((5, 7001), PerTensor()),
        ((5, 7001), PerChannel(0)),
        ((5, 7001), PerChannel(1)),
        ((7001, 5), PerChannel(1)),
        ((3, 11, 1021), PerChannel(1)),
        ((5, 7000), PerGroup(8)),
        ((5, 7000), PerGroup(5, axis=0)),
        ((40, 1000), PerGroup(20, axis=0)),
        ((5, 7001), PerGroup(64)),  # ragged: 109 groups of 64 and one of 25 per row
        ((41, 1000), PerGroup(20, axis=0)),  # ragged along axis 0: the last group has one row
    ],
    ids=lambda v: str(v).replace(" ", ""),
)
@pytest.mark.parametrize("name", ["int8", "uint8", "int4", "uint3", "int12", "uint1", "int16_full"])
def test_multi_chunk_tensors(name, shape, gran, rng):
    """Tensors larger than one kernel chunk (16384 elements), blocks crossing chunk edges."""
    x = (rng.standard_normal(shape) * rng.uniform(0.1, 10, shape[-1])).astype(np.float32)
    spec = granularity_spec(gran)
    qt = lowbit.quantize(x, name, granularity=gran)
    sym = default_symmetric(name)
    check_params(x, qt, name, spec, sym)
    check_codes_and_dequant(x, qt, name, spec)
    np.testing.assert_array_equal(lowbit.fake_quantize(x, name, granularity=gran), qt.dequantize())


@pytest.mark.parametrize("name", ["int8", "uint8", "int3", "uint5", "int16", "int8_full", "uint1", "int1"])
@given(data=st.data())
def test_explicit_scale_and_zero_point_clip(name, data):
    """With a fixed (too small) scale the values beyond the grid saturate at qmin/qmax."""
    x, gran, symmetric = data.draw(cases(name))
    spec = granularity_spec(gran)
    sym = resolve_symmetric(name, symmetric)
    pshape, _ = block_index(x.shape, spec)
    ref_s, _, _, _ = ref_qparams(x, name, spec, sym)
    factor = data.draw(st.floats(0.05, 2.0))
    scale = (ref_s * factor).reshape(pshape)
    qmin, qmax = qrange(name)
    zp = None if sym else data.draw(hnp.arrays(np.int64, pshape, elements=st.integers(qmin, qmax)))
    qt = lowbit.quantize(x, name, granularity=gran, symmetric=sym, scale=scale, zero_point=zp)
    dt = np.float64 if x.dtype == np.float64 else np.float32
    np.testing.assert_array_equal(qt.scale, scale.astype(dt))
    if zp is not None:
        np.testing.assert_array_equal(qt.zero_point.astype(np.int64), zp)
    check_codes_and_dequant(x, qt, name, spec)


def test_docstring_examples_by_hand():
    # rows [0.1, -0.4] and [0.25, 0.8]: scales 0.4/127 and 0.8/127
    x = np.array([[0.1, -0.4], [0.25, 0.8]], np.float32)
    qt = lowbit.quantize(x, "int8", granularity=PerChannel(axis=0))
    assert qt.codes.tolist() == [[32, -127], [40, 127]]  # 31.75 -> 32, 39.6875 -> 40
    # [-1, 0, 2] -> uint8 affine, scale 3/255, zero point 85
    qt = lowbit.quantize(np.array([-1.0, 0.0, 2.0], np.float32), "uint8")
    assert qt.codes.tolist() == [0, 85, 255]
    assert int(qt.zero_point) == 85
    assert float(qt.scale) == pytest.approx(3 / 255, rel=1e-6)
    # int2 is -1..1: scale 1, 0.3 -> 0
    assert lowbit.fake_quantize(np.array([0.3, -1.0], np.float32), "int2").tolist() == [0.0, -1.0]
    # int4 is -7..7 and the scale is float32(1/7) (slightly above 1/7), so 0.5 / scale is
    # just below the tie 3.5: 0.5 * float32(1 / float32(1/7)) = 3.4999998 -> 3 (as torch does)
    qt = lowbit.quantize(np.array([0.5, -1.0, 1.0], np.float32), "int4")
    s = np.float32(1 / 7)
    assert float(qt.scale) == s
    assert np.float32(0.5) * (np.float32(1) / s) < np.float32(3.5)
    assert qt.codes.tolist() == [3, -7, 7]


def test_ties_round_half_to_even():
    # scale 1 exactly (absmax 127): x.5 values are exact ties
    x = np.array([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5], np.float32)
    qt = lowbit.quantize(x, "int8")
    assert float(qt.scale) == 1.0
    assert qt.codes.tolist() == [127, 0, 2, 2, 0, -2, -2, 126]


def test_defaults():
    x = np.linspace(-1, 3, 50, dtype=np.float32)
    qt = lowbit.quantize(x)
    assert qt.qtype.name == "int8"
    assert qt.granularity == PerTensor()
    assert qt.symmetric is True
    assert lowbit.quantize(x, "uint8").symmetric is False
    sym_u = lowbit.quantize(x, "uint8", symmetric=True)
    assert int(sym_u.zero_point) == 128
    assert float(sym_u.scale) == pytest.approx(3 / 127, rel=1e-6)
    assert lowbit.quantize(x, "int8", symmetric=False).symmetric is False


# --------------------------------------------------------------------------- stochastic rounding


@pytest.mark.parametrize("name", PROPERTY_NAMES)
@settings(max_examples=25)
@given(data=st.data(), seed=st.integers(0, 2**64 - 1))
def test_stochastic_bounds_and_reproducible(name, data, seed):
    x, gran, symmetric = data.draw(cases(name))
    spec = granularity_spec(gran)
    q1 = lowbit.quantize(x, name, granularity=gran, symmetric=symmetric, rounding="stochastic", rng=seed)
    check_codes_and_dequant(x, q1, name, spec, stochastic=True)
    q2 = lowbit.quantize(x, name, granularity=gran, symmetric=symmetric, rounding="stochastic", rng=seed)
    np.testing.assert_array_equal(q1.codes, q2.codes)
    fq = lowbit.fake_quantize(x, name, granularity=gran, symmetric=symmetric, rounding="stochastic", rng=seed)
    np.testing.assert_array_equal(fq, q1.dequantize())


@pytest.mark.parametrize("name", ["int8", "uint8", "int4", "uint4", "int2", "int16", "uint1"])
def test_stochastic_seed_changes_result(name, rng):
    x = rng.standard_normal((8, 512)).astype(np.float32)
    kw = dict(granularity=PerChannel(0), rounding="stochastic")
    a = lowbit.quantize(x, name, rng=1, **kw).codes
    b = lowbit.quantize(x, name, rng=2, **kw).codes
    assert np.array_equal(a, lowbit.quantize(x, name, rng=1, **kw).codes)
    assert not np.array_equal(a, b)
    g1 = lowbit.quantize(x, name, rng=np.random.default_rng(7), **kw).codes
    g2 = lowbit.quantize(x, name, rng=np.random.default_rng(7), **kw).codes
    np.testing.assert_array_equal(g1, g2)
    assert not np.array_equal(
        lowbit.quantize(x, name, rng=None, **kw).codes, lowbit.quantize(x, name, rng=None, **kw).codes
    )
    # every stochastic error is strictly below one step on ordinary data
    qt = lowbit.quantize(x, name, rng=3, **kw)
    err = np.abs(qt.dequantize().astype(np.float64) - x)
    assert np.all(err < np.asarray(qt.scale, np.float64)[:, None])


def test_stochastic_rounding_is_unbiased():
    n = 200_000
    x = np.full(n, 0.3, np.float64)
    qt = lowbit.quantize(x, "int8", scale=1.0, rounding="stochastic", rng=123)
    codes = qt.codes.astype(np.int64)
    assert set(np.unique(codes).tolist()) == {0, 1}
    # mean of Bernoulli(0.3): standard error sqrt(0.21 / n) ~ 0.001
    assert abs(codes.mean() - 0.3) < 0.006
    near = lowbit.quantize(x, "int8", scale=1.0).codes
    assert np.all(near == 0)


# --------------------------------------------------------------------------- idempotence, fake_quantize


@pytest.mark.parametrize("name", PROPERTY_NAMES)
@given(data=st.data())
def test_requantize_with_same_params_is_identity(name, data):
    x, gran, symmetric = data.draw(cases(name))
    q = lowbit.quantize(x, name, granularity=gran, symmetric=symmetric)
    q2 = lowbit.quantize(
        q.dequantize(), name, granularity=gran, symmetric=q.symmetric, scale=q.scale, zero_point=q.zero_point
    )
    np.testing.assert_array_equal(q2.codes, q.codes)
    np.testing.assert_array_equal(q2.dequantize(), q.dequantize())


SYMMETRIC_CASES = [(n, None) for n in PROPERTY_NAMES if parse_name(n)[1]] + [
    (n, True) for n in PROPERTY_NAMES if not parse_name(n)[1] and n != "uint1"
]


@pytest.mark.parametrize("name,symmetric", SYMMETRIC_CASES, ids=[f"{n}-sym" for n, _ in SYMMETRIC_CASES])
@given(data=st.data())
def test_requantize_symmetric_with_recomputed_params_is_identity(name, symmetric, data):
    x, gran, _ = data.draw(cases(name))
    q = lowbit.quantize(x, name, granularity=gran, symmetric=symmetric)
    q2 = lowbit.quantize(q.dequantize(), name, granularity=gran, symmetric=symmetric)
    np.testing.assert_array_equal(q2.codes, q.codes)


@pytest.mark.parametrize("name", PROPERTY_NAMES)
@given(data=st.data())
def test_fake_quantize_equals_dequantize_of_quantize(name, data):
    x, gran, symmetric = data.draw(cases(name))
    fq = lowbit.fake_quantize(x, name, granularity=gran, symmetric=symmetric)
    dq = lowbit.dequantize(lowbit.quantize(x, name, granularity=gran, symmetric=symmetric))
    assert fq.dtype == x.dtype
    assert fq.shape == x.shape
    np.testing.assert_array_equal(fq, dq)


# --------------------------------------------------------------------------- kinds, dtypes, shapes


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("name", ["int8", "uint4", "int16"])
def test_numpy_kinds_and_dtypes_round_trip(name, dtype, rng):
    x = rng.standard_normal((4, 6)).astype(dtype)
    qt = lowbit.quantize(x, name, granularity=PerChannel(0))
    assert qt.dtype == dtype
    assert qt.shape == (4, 6)
    assert qt.scale.dtype == (np.float64 if dtype == "float64" else np.float32)
    d = qt.dequantize()
    assert type(d) is np.ndarray
    assert d.dtype == np.dtype(dtype)
    assert d.shape == x.shape
    # reference: (code - zp) * scale in float64, rounded to the working precision, then to the dtype
    work = np.float64 if dtype == "float64" else np.float32
    ref = ref_dequant(qt.codes, qt.scale, qt.zero_point, ("channel", 0), work).astype(dtype)
    np.testing.assert_array_equal(d, ref)
    assert lowbit.fake_quantize(x, name, granularity=PerChannel(0)).dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_torch_kinds_and_dtypes_round_trip(dtype):
    torch = pytest.importorskip("torch")
    tdt = getattr(torch, dtype)
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(0)).to(tdt)
    qt = lowbit.quantize(x, "int4", granularity=PerGroup(4))
    assert qt.dtype == dtype
    assert qt.shape == (5, 8)
    d = qt.dequantize()
    assert isinstance(d, torch.Tensor)
    assert d.dtype == tdt
    assert tuple(d.shape) == (5, 8)
    assert d.device.type == "cpu"
    work = np.float64 if dtype == "float64" else np.float32
    ref = ref_dequant(qt.codes, qt.scale, qt.zero_point, ("group", 4, -1), work)
    np.testing.assert_array_equal(d.to(torch.float64).numpy(), torch.from_numpy(ref).to(tdt).double().numpy())
    fq = lowbit.fake_quantize(x, "int4", granularity=PerGroup(4))
    assert isinstance(fq, torch.Tensor)
    assert fq.dtype == tdt
    assert torch.equal(fq, d)


def test_torch_requires_grad_and_noncontiguous_inputs():
    torch = pytest.importorskip("torch")
    base = torch.randn(6, 10, generator=torch.Generator().manual_seed(1))
    x = base.t()  # non-contiguous view
    assert not x.is_contiguous()
    qt = lowbit.quantize(x.requires_grad_(False), "int8", granularity=PerChannel(0))
    ref = lowbit.quantize(np.ascontiguousarray(x.numpy()), "int8", granularity=PerChannel(0))
    np.testing.assert_array_equal(qt.codes, ref.codes)
    g = base.clone().requires_grad_(True)
    d = lowbit.fake_quantize(g, "int8")
    assert isinstance(d, torch.Tensor)
    assert d.shape == g.shape


@pytest.mark.parametrize(
    "value",
    [np.float32(1.5), np.array(-2.25, np.float64), np.float16(0.75), 3.0],
    ids=["np.float32", "0-d float64", "np.float16", "python float"],
)
@pytest.mark.parametrize("name", ["int8", "uint8", "int4", "uint4", "int16"])
def test_zero_dimensional_inputs(value, name):
    qt = lowbit.quantize(value, name)
    assert qt.shape == ()
    assert qt.codes.shape == ()
    assert qt.scale.shape == ()
    d = qt.dequantize()
    assert d.shape == ()
    # a single value is its own block extreme: it comes back exactly
    assert float(d) == float(value)
    assert lowbit.fake_quantize(value, name).shape == ()


def test_zero_dimensional_torch():
    torch = pytest.importorskip("torch")
    qt = lowbit.quantize(torch.tensor(2.5), "int8")
    d = qt.dequantize()
    assert isinstance(d, torch.Tensor)
    assert d.shape == ()
    assert d.item() == 2.5


def test_non_contiguous_numpy_views(rng):
    base = rng.standard_normal((8, 12)).astype(np.float32)
    for view in (base.T, base[::2, ::-3], base[:, 1:7]):
        assert not view.flags.c_contiguous
        got = lowbit.quantize(view, "int4", granularity=PerChannel(0))
        want = lowbit.quantize(np.ascontiguousarray(view), "int4", granularity=PerChannel(0))
        np.testing.assert_array_equal(got.codes, want.codes)
        np.testing.assert_array_equal(got.dequantize(), want.dequantize())
        assert got.shape == view.shape


def test_quantize_does_not_modify_input(rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    before = x.copy()
    lowbit.quantize(x, "int4", granularity=PerGroup(4))
    lowbit.fake_quantize(x, "uint3", rounding="stochastic", rng=1)
    np.testing.assert_array_equal(x, before)


# --------------------------------------------------------------------------- out= buffers


@pytest.mark.parametrize("name", ["int8", "uint8", "int16", "uint16"])
def test_quantize_out_buffer_holds_codes(name, rng):
    x = rng.standard_normal((3, 40)).astype(np.float32)
    out = np.full(x.size, 99, lowbit.get_qtype(name).storage_dtype)
    qt = lowbit.quantize(x, name, granularity=PerChannel(0), out=out)
    assert np.shares_memory(qt.codes, out)
    np.testing.assert_array_equal(out.reshape(x.shape), qt.codes)
    np.testing.assert_array_equal(qt.codes, lowbit.quantize(x, name, granularity=PerChannel(0)).codes)


@pytest.mark.parametrize("name", ["int4", "uint3", "int1", "int12"])
def test_quantize_out_buffer_holds_packed_bytes(name, rng):
    x = rng.standard_normal(37).astype(np.float32)
    bits = parse_name(name)[0]
    out = np.zeros((37 * bits + 7) // 8, np.uint8)
    qt = lowbit.quantize(x, name, out=out)
    assert np.shares_memory(qt.data, out)
    np.testing.assert_array_equal(qt.codes, lowbit.quantize(x, name).codes)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_dequantize_out_buffer_is_used(dtype, rng):
    x = rng.standard_normal((5, 6)).astype(dtype)
    qt = lowbit.quantize(x, "int4", granularity=PerChannel(1))
    out = np.full(30, np.nan, dtype)
    d = lowbit.dequantize(qt, out=out)
    assert np.shares_memory(d, out)
    assert d.shape == (5, 6)
    np.testing.assert_array_equal(out.reshape(5, 6), qt.dequantize())
    out2 = np.full((5, 6), np.nan, dtype)
    d2 = qt.dequantize(out=out2)
    assert np.shares_memory(d2, out2)
    np.testing.assert_array_equal(out2, d)


# ---- float zero point: x = code * scale + offset (GGUF Q4_1 / Q5_1) ----

def _q4_1_grid(rng: np.random.Generator, rows: int, cols: int, bits: int = 4) -> np.ndarray:
    """Weights that sit exactly on a Q4_1-style grid: float16 scale and minimum per group of 32,
    every group using its lowest and highest code (as GGUF Q4_1 weights do)."""
    qmax = 2**bits - 1
    codes = rng.integers(0, qmax + 1, (rows, cols // 32, 32))
    codes[..., 0], codes[..., 1] = 0, qmax
    d = rng.uniform(0.001, 0.05, (rows, cols // 32, 1)).astype(np.float16).astype(np.float32)
    m = rng.uniform(-0.4, -0.01, (rows, cols // 32, 1)).astype(np.float16).astype(np.float32)
    return (codes.astype(np.float32) * d + m).reshape(rows, cols)


@pytest.mark.parametrize("qtype,bits", [("uint4", 4), ("uint5", 5)])
def test_float_zero_point_is_lossless_on_a_gguf_min_grid(qtype: str, bits: int) -> None:
    w = _q4_1_grid(np.random.default_rng(1), 16, 128, bits)
    flt = lowbit.quantize(w, qtype, granularity="group:32", zero_point="float", scale_format="float16")
    assert flt.float_zero_point and flt.zero_point.dtype == np.float16
    np.testing.assert_array_equal(flt.dequantize(), w)
    integer = lowbit.quantize(w, qtype, granularity="group:32", scale_format="float16")  # integer zero points
    assert np.abs(integer.dequantize() - w).max() > 1e-4  # ...cannot hold a float minimum


@pytest.mark.parametrize("gran", ["tensor", "channel", "group:16"])
def test_float_zero_point_error_is_half_a_step(gran: str) -> None:
    w = np.random.default_rng(2).standard_t(3, (8, 64)).astype(np.float32)
    qt = lowbit.quantize(w, "uint4", granularity=gran, zero_point="float")
    layout = lowbit.granularity.plan(qt.granularity, w.shape)
    step = np.broadcast_to(qt.scale.reshape(layout.param_shape), layout.param_shape)
    err = np.abs(qt.dequantize() - w)
    assert err.max() <= step.max() / 2 * (1 + 1e-5)
    assert qt.codes.min() == 0 and qt.codes.max() == 15
    np.testing.assert_array_equal(lowbit.fake_quantize(w, "uint4", granularity=gran, zero_point="float"),
                                  qt.dequantize())


def test_float_zero_point_constant_block_is_exact() -> None:
    w = np.full((2, 32), -3.25, np.float32)
    np.testing.assert_array_equal(lowbit.quantize(w, "uint4", zero_point="float").dequantize(), w)


@pytest.mark.parametrize("kwargs,match", [
    ({"qtype": "int4"}, "unsigned integer"),
    ({"qtype": "nf4"}, "unsigned integer"),
    ({"qtype": "uint4", "symmetric": True}, "symmetric"),
    ({"qtype": "uint4", "scale_format": "double8"}, "scale_format"),
    ({"qtype": "uint4", "method": "mse"}, "minmax"),
    ({"qtype": "uint4", "scale": 0.1}, "scale="),
])
def test_float_zero_point_refusals(kwargs: dict, match: str) -> None:
    with pytest.raises(lowbit.OptionError, match=match):
        lowbit.quantize(np.ones(32, np.float32), zero_point="float", **kwargs)


def test_zero_point_kind_is_validated() -> None:
    with pytest.raises(lowbit.OptionError, match="zero_point must be one of"):
        lowbit.quantize(np.ones(4, np.float32), "uint4", zero_point="floaty")
    ints = lowbit.quantize(np.arange(4.0), "uint4", zero_point="int")
    assert not ints.float_zero_point and ints.zero_point.dtype == np.uint8


def test_float_zero_point_beyond_float16_is_refused() -> None:
    with pytest.raises(lowbit.OptionError, match="float16"):
        lowbit.quantize(np.array([-1e6, 1e6], np.float32), "uint8", zero_point="float", scale_format="float16")


def test_float_zero_point_dict_round_trip_and_mismatch() -> None:
    from lowbit.qtensor import QTensor

    qt = lowbit.quantize(np.random.default_rng(3).standard_normal((4, 64)), "uint4", granularity="group:32",
                         zero_point="float")
    d = qt.to_dict()
    assert d["meta"]["zero_point_kind"] == "float" and d["zero_point"].dtype == np.float64
    np.testing.assert_array_equal(QTensor.from_dict(d).dequantize(), qt.dequantize())
    del d["meta"]["zero_point_kind"]
    with pytest.raises(lowbit.FileFormatError, match="zero_point_kind"):
        QTensor.from_dict(d)


# -- hostile inputs: values near the float maximum, subnormals, zero-range blocks (issue 16) --------------------

F32_MAX = float(np.finfo(np.float32).max)


@pytest.mark.parametrize(
    "values, dtype, qtype",
    [
        ([0.0, F32_MAX], np.float32, "int8"),
        ([-F32_MAX, F32_MAX], np.float32, "int8"),
        ([-F32_MAX, F32_MAX, 1.0], np.float32, "uint8"),
        ([-65504, 65504, 1], np.float16, "uint4"),
        ([-65504, 65504, 1], np.float16, "int4"),
        ([-1e308, 1e308, 1.0], np.float64, "uint4"),
        ([-1.7976931348623157e308, 1.7976931348623157e308], np.float64, "int8"),
        ([-1.7976931348623157e308, 1.7976931348623157e308], np.float64, "uint1"),
        ([0.0, -F32_MAX], np.float32, "fp8_e4m3"),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_values_near_the_float_maximum_dequantize_finite(values, dtype, qtype):
    x = np.array(values, dtype)
    qt = lowbit.quantize(x, qtype)
    y = qt.dequantize()
    assert y.dtype == x.dtype and np.isfinite(y).all()
    np.testing.assert_array_equal(lowbit.fake_quantize(x, qtype), y)
    # the extremes come back within one step of themselves (half a step plus the zero point's rounding)
    ext = np.argmax(np.abs(x.astype(np.float64)))
    if qtype != "uint1":
        step = float(np.max(qt.scale)) * (1.0 if qt.qtype.kind == "int" else 32.0)
        assert abs(float(y[ext]) - float(x[ext])) <= step * 1.001


def test_float32_maximum_int8_is_one_ulp_below_and_exact_elsewhere():
    y = lowbit.quantize(np.array([0.0, F32_MAX], np.float32), "int8").dequantize()
    assert y[0] == 0.0 and y[1] == np.nextafter(np.float32(F32_MAX), np.float32(0))


def test_explicit_scale_whose_codes_overflow_is_refused():
    with pytest.raises(lowbit.OptionError, match="float16's largest value"):
        lowbit.quantize(np.array([1.0, 2.0], np.float16), "int8", scale=1000.0)
    with pytest.raises(lowbit.OptionError, match="smaller scale"):
        lowbit.quantize(np.array([1.0], np.float32), "int8", scale=1e38)


def test_float_zero_point_near_the_maximum():
    y = lowbit.quantize(np.array([-1e308, 7e307, 0.0]), "uint4", zero_point="float").dequantize()
    assert np.isfinite(y).all() and y[0] == -1e308
    # a range wider than the float maximum: code * scale itself overflows, refused with the fix
    for x in (np.array([-F32_MAX, F32_MAX], np.float32), np.array([-1e308, 1e308])):
        with pytest.raises(lowbit.OptionError, match="zero_point='int'"):
            lowbit.quantize(x, "uint8", zero_point="float")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_subnormal_inputs_get_a_normal_scale(dtype):
    tiny = np.finfo(dtype).tiny
    x = np.array([0.0, 3 * tiny, -100 * tiny], dtype)
    qt = lowbit.quantize(x, "int8")
    assert qt.scale == tiny and np.isfinite(dtype(1) / qt.scale)
    np.testing.assert_array_equal(qt.dequantize(), x)  # multiples of the smallest normal are exact
    sub = np.array([0.0, tiny / 4, -tiny / 8], dtype)  # below half a step: 0, never inf/NaN
    np.testing.assert_array_equal(lowbit.fake_quantize(sub, "uint8"), np.zeros(3, dtype))


@pytest.mark.parametrize("gran", [PerChannel(0), PerGroup(2)], ids=["channel", "group2"])
@pytest.mark.parametrize("qtype", ["int4", "uint4", "nf4"])
def test_zero_range_channels_and_groups_round_trip_exactly(gran, qtype):
    x = np.array([[1.5, 1.5], [0.0, 0.0], [-3.0, -3.0], [1e-30, 1e-30]], np.float32)
    y = lowbit.quantize(x, qtype, granularity=gran).dequantize()
    np.testing.assert_array_equal(y, x)


def test_an_estimator_axis_in_method_options_is_refused() -> None:
    """The granularity decides the ranges' axis; an estimator axis would be silently overridden."""
    with pytest.raises(lowbit.OptionError, match="granularity="):
        lowbit.quantize(np.ones((4, 8), np.float32), "int8", method="mse", method_options={"axis": 0})


# --------------------------------------------------------------------------- ragged groups

# formats of every family: signed/unsigned integers (packed and byte-wide), a float zero point, grid formats
RAGGED_FORMATS = [("int4", {}), ("uint3", {}), ("int8", {}), ("uint4", {"zero_point": "float"}), ("nf4", {}),
                  ("fp8_e4m3", {}), ("int5", {"scale_format": "float16"})]


@st.composite
def ragged_cases(draw):
    ndim = draw(st.integers(1, 3))
    shape = list(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(-ndim, ndim - 1))
    size = draw(st.integers(1, 9))
    shape[axis] = draw(st.integers(1, 3 * size + 2))  # often not a multiple of size: a shorter last group
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    x = draw(hnp.arrays(dtype, tuple(shape), elements=st.floats(-1e3, 1e3, width=32 if dtype == np.float32 else 64)))
    return x, size, axis


@pytest.mark.parametrize("name, options", RAGGED_FORMATS, ids=[n + "".join(o) for n, o in RAGGED_FORMATS])
@settings(max_examples=40, deadline=None)
@given(case=ragged_cases())
def test_ragged_groups_equal_quantizing_each_group_on_its_own(name, options, case):
    """A size that does not divide the axis: every group, the shorter last one included, gets the codes,
    scale and zero point it gets when quantized alone (independent of its neighbours)."""
    x, size, axis = case
    gran = PerGroup(size, axis)
    qt = lowbit.quantize(x, name, granularity=gran, **options)
    length = x.shape[axis]
    assert qt.scale.shape == tuple(-(-length // size) if i == axis % x.ndim else s for i, s in enumerate(x.shape))
    codes, deq = [], []
    for start in range(0, length, size):
        part = np.ascontiguousarray(np.take(x, range(start, min(start + size, length)), axis=axis))
        alone = lowbit.quantize(part, name, granularity=gran, **options)  # one group along the axis
        codes.append(alone.codes)
        deq.append(alone.dequantize())
        idx = start // size
        np.testing.assert_array_equal(np.take(qt.scale, [idx], axis=axis), alone.scale)
        np.testing.assert_array_equal(np.take(qt.zero_point, [idx], axis=axis), alone.zero_point)
    np.testing.assert_array_equal(qt.codes, np.concatenate(codes, axis=axis))
    np.testing.assert_array_equal(qt.dequantize(), np.concatenate(deq, axis=axis))
    np.testing.assert_array_equal(lowbit.fake_quantize(x, name, granularity=gran, **options), qt.dequantize())
    back = lowbit.QTensor.from_dict(qt.to_dict())
    assert back.granularity == gran and back.scale.shape == qt.scale.shape
    np.testing.assert_array_equal(back.dequantize(), qt.dequantize())


def test_ragged_param_shapes_are_validated():
    x = np.arange(20, dtype=np.float32).reshape(2, 10)
    qt = lowbit.quantize(x, "int4", granularity="group:4")  # groups of 4, 4, 2
    assert qt.scale.shape == (2, 3)
    d = qt.to_dict()
    d["scale"] = d["scale"][:, :2]  # floor(10 / 4) groups: the old, wrong count
    with pytest.raises(lowbit.FileFormatError, match=r"\(2, 3\)"):
        lowbit.QTensor.from_dict(d)
    with pytest.raises(lowbit.OptionError, match=r"\(2, 3\)"):
        lowbit.quantize(x, "int4", granularity="group:4", scale=np.ones((2, 2)))
    fixed = lowbit.quantize(x, "int8", granularity="group:4", scale=np.array([[1.0, 2.0, 4.0]] * 2))
    np.testing.assert_array_equal(fixed.dequantize()[0], [0, 1, 2, 3, 4, 4, 6, 8, 8, 8])
