"""lowbit.granularity: spellings, plan() layouts and their validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import lowbit
from _reference import block_index, granularity_spec
from lowbit.granularity import PerChannel, PerGroup, PerTensor, parse_granularity, plan


@pytest.mark.parametrize(
    "text,expected",
    [
        ("tensor", PerTensor()),
        ("channel", PerChannel(0)),
        ("channel:0", PerChannel(0)),
        ("channel:1", PerChannel(1)),
        ("channel:-1", PerChannel(-1)),
        ("group:64", PerGroup(64, -1)),
        ("group:32:0", PerGroup(32, 0)),
        ("group:8:-2", PerGroup(8, -2)),
        ("  Group:16 ", PerGroup(16, -1)),
        ("TENSOR", PerTensor()),
    ],
    ids=repr,
)
def test_parse_granularity_spellings(text, expected):
    assert parse_granularity(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "tensors", "tensor:0", "chan", "channel:x", "channel:1:2", "group", "group:", "group:x",
     "group:4:0:1", "per-tensor", "block:32"],
    ids=repr,
)  # fmt: skip
def test_parse_granularity_rejects_unknown_spellings(text):
    with pytest.raises(lowbit.GranularityError, match="tensor, channel"):
        parse_granularity(text)


@pytest.mark.parametrize(
    "gran",
    [PerTensor(), PerChannel(0), PerChannel(2), PerChannel(-1), PerGroup(128), PerGroup(64, 0), PerGroup(4, -2)],
    ids=str,
)
def test_str_round_trips_through_parse(gran):
    assert parse_granularity(str(gran)) == gran


def test_str_spellings():
    assert str(PerTensor()) == "tensor"
    assert str(PerChannel()) == "channel"
    assert str(PerChannel(1)) == "channel:1"
    assert str(PerGroup()) == "group:128"
    assert str(PerGroup(32, 0)) == "group:32:0"
    assert PerGroup() == PerGroup(size=128, axis=-1)
    assert PerChannel() == PerChannel(axis=0)


@pytest.mark.parametrize(
    "gran,shape,param_shape",
    [
        (PerTensor(), (3, 4), ()),
        (PerTensor(), (), ()),
        (PerTensor(), (7,), ()),
        (PerChannel(0), (3, 4, 5), (3,)),
        (PerChannel(1), (3, 4, 5), (4,)),
        (PerChannel(-1), (3, 4, 5), (5,)),
        (PerChannel(-3), (3, 4, 5), (3,)),
        (PerChannel(0), (6,), (6,)),
        (PerGroup(2), (3, 4), (3, 2)),
        (PerGroup(4), (3, 4), (3, 1)),
        (PerGroup(1), (3, 4), (3, 4)),
        (PerGroup(2, 0), (4, 3), (2, 3)),
        (PerGroup(2, 1), (2, 4, 3), (2, 2, 3)),
        (PerGroup(5, -1), (10,), (2,)),
        (PerGroup(128), (64, 256), (64, 2)),
    ],
    ids=lambda v: str(v).replace(" ", ""),
)
def test_plan_param_shapes(gran, shape, param_shape):
    layout = plan(gran, shape)
    assert layout.param_shape == param_shape
    assert layout.nparams == int(np.prod(param_shape, dtype=np.int64))
    assert int(np.prod(shape, dtype=np.int64)) == layout.P * layout.Q * layout.R * layout.T


LAYOUT_CASES = [
    ((2, 3, 4), PerTensor()),
    ((2, 3, 4), PerChannel(0)),
    ((2, 3, 4), PerChannel(1)),
    ((2, 3, 4), PerChannel(2)),
    ((5,), PerChannel(0)),
    ((2, 3, 4), PerGroup(2)),
    ((2, 3, 4), PerGroup(4, -1)),
    ((2, 3, 4), PerGroup(3, 1)),
    ((4, 3, 2), PerGroup(2, 0)),
    ((6, 4), PerGroup(3, 0)),
    ((6,), PerGroup(6)),
]


@pytest.mark.parametrize("shape,gran", LAYOUT_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_layout_assigns_the_reference_blocks(shape, gran):
    """Element ((p*Q + q)*R + r)*T + t uses parameter q*T + t: same blocks as np.indices says."""
    layout = plan(gran, shape)
    P, Q, R, T = layout.P, layout.Q, layout.R, layout.T
    from_layout = np.empty(P * Q * R * T, np.int64)
    for p, q, r, t in itertools.product(range(P), range(Q), range(R), range(T)):
        from_layout[((p * Q + q) * R + r) * T + t] = q * T + t
    pshape, ref = block_index(shape, granularity_spec(gran))
    assert layout.param_shape == pshape
    np.testing.assert_array_equal(from_layout, ref.reshape(-1))


@pytest.mark.parametrize("shape,gran", LAYOUT_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_blocks_get_their_own_scale(shape, gran):
    """Each block's scale is its absmax / 127, whatever the granularity (a constant block may
    use the documented single step, absmax itself, when no float32 scale reproduces it)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape) * rng.uniform(0.01, 100, shape)
    qt = lowbit.quantize(x, "int8", granularity=gran)
    pshape, idx = block_index(shape, granularity_spec(gran))
    n = max(1, int(np.prod(pshape)))
    absmax, lo, hi = np.zeros(n), np.full(n, np.inf), np.full(n, -np.inf)
    np.maximum.at(absmax, idx.reshape(-1), np.abs(x).reshape(-1))
    np.minimum.at(lo, idx.reshape(-1), x.reshape(-1))
    np.maximum.at(hi, idx.reshape(-1), x.reshape(-1))
    got = qt.scale.reshape(-1)
    expected = np.where((lo == hi) & np.isclose(got, absmax, rtol=1e-14, atol=0), absmax, absmax / 127)
    np.testing.assert_allclose(got, expected, rtol=1e-14)


@pytest.mark.parametrize(
    "gran,shape",
    [
        (PerChannel(2), (3, 4)),
        (PerChannel(-3), (3, 4)),
        (PerChannel(1), (5,)),
        (PerChannel(0), ()),
        (PerGroup(2, axis=2), (4, 4)),
        (PerGroup(2, axis=-3), (4, 4)),
        (PerGroup(1), ()),
    ],
    ids=lambda v: str(v).replace(" ", ""),
)
def test_axis_out_of_range(gran, shape):
    with pytest.raises(lowbit.GranularityError) as info:
        plan(gran, shape)
    msg = str(info.value)
    if shape:
        assert "out of range" in msg
        assert str(shape) in msg
    else:
        assert "PerTensor" in msg


@pytest.mark.parametrize("axis", [1.0, "0", None, True], ids=repr)
def test_axis_must_be_an_int(axis):
    with pytest.raises(lowbit.GranularityError, match="axis must be an int"):
        plan(PerChannel(axis), (3, 4))  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, -2, True, 2.0, "4", None], ids=repr)
def test_group_size_must_be_a_positive_int(size):
    with pytest.raises(lowbit.GranularityError, match=r"PerGroup size must be an int >= 1"):
        PerGroup(size)  # type: ignore[arg-type]  # checked when the granularity is made


@pytest.mark.parametrize(
    "shape,size,axis",
    [((3, 10), 4, -1), ((3, 7), 2, -1), ((12, 5), 5, 0), ((2, 9, 4), 2, 1), ((100,), 128, -1)],
    ids=lambda v: str(v).replace(" ", ""),
)
def test_group_size_not_dividing_gives_a_shorter_last_group(shape, size, axis):
    lay = plan(PerGroup(size, axis), shape)
    length = shape[axis]
    ngroups = -(-length // size)
    want = list(shape)
    want[axis] = ngroups
    assert lay.param_shape == tuple(want)
    assert lay.nparams == int(np.prod(want))
    bounds = lay.group_bounds()
    assert [e - s for s, e in bounds] == [size] * (length // size) + ([length % size] if length % size else [])
    assert bounds[-1][1] == length and all(b[1] == c[0] for b, c in itertools.pairwise(bounds))


def test_unknown_granularity_object():
    with pytest.raises(lowbit.GranularityError, match="PerTensor"):
        plan(3, (3, 4))  # type: ignore[arg-type]
    with pytest.raises(lowbit.GranularityError, match="cannot parse granularity 'chanel'"):
        lowbit.quantize(np.ones((3, 4), np.float32), "int8", granularity="chanel")
    with pytest.raises(lowbit.GranularityError, match="abstract"):
        lowbit.Granularity()


def test_granularities_are_frozen_and_hashable():
    assert len({PerTensor(), PerTensor(), PerChannel(0), PerChannel(0), PerGroup(4), PerGroup(4, 0)}) == 4
    with pytest.raises(AttributeError):
        PerGroup(4).size = 8  # type: ignore[misc]




@pytest.mark.parametrize(
    "name",
    [
        "int2",
        "int16",
        "int16_full",
        "int8",
        "int4",
        "int8_full",
        "uint8",
        "uint4",
    ],
)
def test_group_of_one_is_exact_for_symmetric_formats(name, rng):
    """Each element is its own block extreme, so it must come back exactly."""
    x = (rng.standard_normal((40, 50)) * np.exp(rng.uniform(-10, 10, (40, 50)))).astype(np.float32)
    got = lowbit.fake_quantize(x, name, granularity=PerGroup(1), symmetric=True)
    bad = got != x
    assert not bad.any(), f"{int(bad.sum())} of {x.size} values changed, e.g. {x[bad][:3].tolist()}"
