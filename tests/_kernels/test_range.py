"""lowbit._kernels.range: block_minmax (per-block min/max and non-finite count) against NumPy.

The kernel reduces the floats' bit patterns as ordered integers and only falls back to a
NaN-aware float pass when it sees a key at or beyond +-inf; both are checked here on the
layouts that take each of its code paths (short rows, long rows split into pieces, lanes of
T > 1 parameters), with the reference min/max computed per block by ``_reference`` (float64
``np.minimum.at`` over ``np.indices`` blocks) and the non-finite values counted by np.isfinite.
The public caller, lowbit.quantize, must raise NonFiniteError naming the first positions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import lowbit
from _reference import block_index, block_reduce, granularity_spec
from lowbit import PerChannel, PerGroup, PerTensor
from lowbit._kernels import block_minmax
from lowbit.granularity import plan

# (shape, granularity): the kernel path each takes is named in the id
LAYOUTS = [
    pytest.param((50, 1000), PerChannel(0), id="short-rows"),
    pytest.param((300_001,), PerTensor(), id="one-long-row-split"),
    pytest.param((2, 140_000), PerChannel(0), id="long-rows-split"),
    pytest.param((100_000, 3), PerChannel(-1), id="lanes"),
    pytest.param((4000, 50), PerGroup(4, axis=0), id="group-lanes"),
    pytest.param((6, 7, 1001), PerGroup(7, axis=1), id="group-3d"),
    pytest.param((50, 1001), PerGroup(64), id="ragged-rows"),  # groups of 64 and a last one of 41
    pytest.param((1001, 30), PerGroup(64, axis=0), id="ragged-lanes"),
    pytest.param((3, 10, 7), PerGroup(4, axis=1), id="ragged-3d"),
]


def _data(shape, dtype, rng) -> np.ndarray:
    """Mixed magnitudes and signs, an all-negative and an all-positive block, signed zeros, the extremes."""
    n = math.prod(shape)
    x = rng.standard_normal(n) * np.exp(rng.uniform(-30, 30, n))
    x[: n // 10] = -np.abs(x[: n // 10]) - 1.0
    x[n // 10 : n // 5] = np.abs(x[n // 10 : n // 5]) + 1.0
    info = np.finfo(dtype)
    x[5::97] = -0.0
    x[7::101] = 0.0
    x[11] = float(info.max)
    x[-3] = -float(info.max)
    x[n // 2] = float(info.smallest_subnormal)
    x[n // 2 + 1] = -float(info.smallest_subnormal)
    return x.astype(dtype).reshape(shape)


def _reference(x: np.ndarray, gran) -> tuple[np.ndarray, np.ndarray]:
    pshape, bidx = block_index(x.shape, granularity_spec(gran))
    finite = np.isfinite(x)
    n = max(1, math.prod(pshape))
    lo = block_reduce(np.where(finite | np.isinf(x), x, np.inf), bidx, n, "min")
    hi = block_reduce(np.where(finite | np.isinf(x), x, -np.inf), bidx, n, "max")
    return lo, hi


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("shape", "gran"), LAYOUTS)
def test_minmax_equals_numpy_on_every_path(shape, gran, dtype, rng):
    x = _data(shape, dtype, rng)
    lo, hi, bad = block_minmax(x.reshape(-1), plan(gran, shape))
    ref_lo, ref_hi = _reference(x, gran)
    assert bad == 0 and lo.dtype == hi.dtype == dtype
    np.testing.assert_array_equal(lo.astype(np.float64), ref_lo)
    np.testing.assert_array_equal(hi.astype(np.float64), ref_hi)


def _negative_nan(dtype) -> np.ndarray:
    """A NaN with its sign bit set (its ordered-integer key lies below -inf's, not above +inf's)."""
    bits = np.array([0xFFC00001], np.uint32) if dtype == np.float32 else np.array([0xFFF8000000000001], np.uint64)
    return bits.view(dtype)[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("shape", "gran"), LAYOUTS)
def test_non_finite_values_are_counted_and_the_rest_reduced(shape, gran, dtype, rng):
    x = _data(shape, dtype, rng).reshape(-1)
    n = x.size
    where = {n // 3: np.nan, n // 3 + 1: _negative_nan(dtype), 2 * n // 3: np.inf, n - 1: -np.inf}
    for i, v in where.items():
        x[i] = v
    x = x.reshape(shape)
    assert np.isnan(x.reshape(-1)[n // 3 + 1]) and np.signbit(x.reshape(-1)[n // 3 + 1])
    lo, hi, bad = block_minmax(x.reshape(-1), plan(gran, shape))
    assert bad == int((~np.isfinite(x)).sum()) == 4
    ref_lo, ref_hi = _reference(x, gran)  # NaN ignored, +-inf kept
    np.testing.assert_array_equal(lo.astype(np.float64), ref_lo)
    np.testing.assert_array_equal(hi.astype(np.float64), ref_hi)


@pytest.mark.parametrize("value", ["negative-nan", "inf", "-inf"])
@pytest.mark.parametrize(("shape", "gran"), LAYOUTS)
def test_quantize_finds_a_single_non_finite_value_and_names_its_position(shape, gran, value, rng):
    x = _data(shape, np.float32, rng)
    pos = tuple(s - 1 - s // 3 for s in shape)
    x[pos] = {"negative-nan": _negative_nan(np.float32), "inf": np.inf, "-inf": -np.inf}[value]
    with pytest.raises(lowbit.NonFiniteError, match=r"1 non-finite value\(s\) \((1 NaN, 0|0 NaN, 1) Inf\)") as info:
        lowbit.quantize(x, "int8", granularity=gran)
    assert str(pos).replace(" ", "") in str(info.value).replace(" ", "")


def test_quantize_lists_non_finite_positions_in_c_order(rng):
    x = rng.standard_normal((100_000, 3)).astype(np.float32)
    x[99_999, 0] = -np.inf
    x[77_777, 2] = np.nan
    x[3, 1] = np.inf
    with pytest.raises(lowbit.NonFiniteError, match="3 non-finite") as info:
        lowbit.quantize(x, "int4", granularity=PerChannel(-1))
    msg = str(info.value)
    assert msg.index("(3, 1)") < msg.index("(77777, 2)") < msg.index("(99999, 0)")


@pytest.mark.parametrize(("shape", "gran"), LAYOUTS)
def test_affine_scales_of_quantize_are_the_numpy_ranges(shape, gran, rng):
    """The public caller: uint8 affine scale = (max(hi, 0) - min(lo, 0)) / 255 of each block's NumPy range."""
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 2.0)).astype(np.float32)
    qt = lowbit.quantize(x, "uint8", granularity=gran, symmetric=False)
    lo, hi = _reference(x, gran)
    want = (np.maximum(hi, 0) - np.minimum(lo, 0)) / 255
    np.testing.assert_allclose(np.asarray(qt.scale, np.float64).reshape(-1), want, rtol=4e-7)


def test_the_layouts_take_the_paths_they_are_named_for():
    from lowbit._kernels.range import _nsplit

    paths = {}
    for p in LAYOUTS:
        shape, gran = p.values
        layout = plan(gran, shape)
        kind = "lanes" if layout.T > 1 else "split" if _nsplit(layout) > 1 else "short"
        paths[p.id] = f"ragged-{kind}" if layout.ragged else kind  # ragged: one task per group, rows or lanes
    assert paths == {"short-rows": "short", "one-long-row-split": "split", "long-rows-split": "split",
                     "lanes": "lanes", "group-lanes": "lanes", "group-3d": "lanes", "ragged-rows": "ragged-short",
                     "ragged-lanes": "ragged-lanes", "ragged-3d": "ragged-lanes"}
