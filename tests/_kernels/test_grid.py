"""Grid-format rounding kernels (lowbit._kernels.grid) against an independent NumPy reference.

The reference rounds with ``np.searchsorted`` over float64 midpoints of the
format's grid (read from ``QType.grid``) plus the tie rule written out here:
a value exactly on a midpoint goes to the neighbour of even parity, counted
from the code of zero for float formats (IEEE's even mantissa) and from code 0
for codebooks.  Values beyond the ends saturate.  For a 16-bit float grid
(E5M10) NumPy's own float16 cast is a second, unrelated oracle.

Every registered grid format is covered by iterating ``lowbit.list_qtypes()``,
so formats added later (MX elements, codebooks) are tested without edits here.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lowbit
from lowbit import PerChannel, PerGroup
from lowbit._kernels.grid import (
    COUNT,
    COUNT_MAX,
    FLOAT,
    SEARCH,
    dequantize_grid_kernel,
    fake_quantize_grid_kernel,
    grid_tables,
    quantize_grid_kernel,
    rounding_plan,
    thresholds,
)
from lowbit.errors import InputTypeError
from lowbit.formats import Codebook, QType, get_qtype
from lowbit.formats.floats import float_grid
from lowbit.granularity import plan

DTYPES = [np.float32, np.float64]
# the library's grid formats (other test modules register codebooks named test_*)
GRID_NAMES = [n for n in lowbit.list_qtypes() if get_qtype(n).is_grid and not n.startswith("test_")]
_rng = np.random.default_rng(5)
CUSTOM = [
    Codebook("test_grid_cb3", [-0.5, 0.0, 2.0]),  # uneven, 2 thresholds (count remainder only)
    Codebook("test_grid_fp4_values", get_qtype("fp4_e2m1").grid),  # fp4's values, codebook (even-code) ties
    Codebook("test_grid_cb33", np.sort(_rng.standard_normal(33))),  # COUNT_MAX thresholds
    Codebook("test_grid_cb34", np.sort(_rng.standard_normal(34))),  # one more: the binary search
    Codebook("test_grid_cb300", np.sort(_rng.standard_normal(300)) * 3),
    # values closer together than a float32 ulp, and far beyond the float32 range
    Codebook("test_grid_close", [-1e300, -2.0, 0.0, 1.0, 1.0 + 1e-12, 1.0 + 3e-12, 4.0, 1e300]),
]
# unregistered float grids: fp16 (E5M10), one with no subnormal step below 1 (E3M1 with specials),
# and an exponent-only grid (M = 0), which the direct path does not serve


def float_format(name: str, exp_bits: int, man_bits: int, specials: str = "none") -> QType:
    """An unregistered float grid format."""
    grid = float_grid(exp_bits, man_bits, specials)
    return QType(name, "float", 1 + exp_bits + man_bits, False, False, 0, len(grid) - 1, grid)


EXTRA_FLOATS = [float_format("test_e5m10", 5, 10, "ieee"), float_format("test_e3m1_fn", 3, 1, "fn"),
                float_format("test_e3m0", 3, 0)]
ALL = [get_qtype(n) for n in GRID_NAMES] + EXTRA_FLOATS
IDS = [q.name for q in ALL]


def reference_codes(y: np.ndarray, qt: QType) -> np.ndarray:
    """Nearest grid index of each y (exact float64 comparisons), ties by the format's parity rule."""
    g = np.asarray(qt.grid, np.float64)
    mids = (g[:-1] + g[1:]) / 2
    y = np.asarray(y, np.float64)
    below = np.searchsorted(mids, y, side="left")  # midpoints strictly below y
    on_mid = (below < mids.size) & (mids[np.minimum(below, mids.size - 1)] == y)
    origin = int(np.flatnonzero(g == 0.0)[0]) if qt.kind == "float" else 0
    return below + (on_mid & ((below - origin) % 2 == 1))


def edge_values(qt: QType, dtype) -> np.ndarray:
    """Grid values, midpoints and their neighbours, ends, beyond the ends, zeros, tiny values; both signs."""
    dt = np.dtype(dtype)
    g = np.asarray(qt.grid, np.float64)
    mids = (g[:-1] + g[1:]) / 2
    top = np.abs(g).max()
    info = np.finfo(dt)
    small = np.abs(g[g != 0]).min()
    with np.errstate(over="ignore"):
        m = mids.astype(dt)
        parts = [
            g.astype(dt), m, np.nextafter(m, dt.type(np.inf)), np.nextafter(m, dt.type(-np.inf)),
            np.nextafter(mids, np.inf).astype(dt), np.nextafter(mids, -np.inf).astype(dt),
            np.array([top, top * 1.0001, top * 1.5, top * 2, top * 1e6, small / 2, small / 3, small / 4,
                      small * 0.75, 1e-30, 0.0, -0.0], np.float64).astype(dt),
            np.array([info.max, info.tiny, info.smallest_subnormal, info.smallest_subnormal * 3], dt),
        ]
    y = np.concatenate(parts)
    y = y[np.isfinite(y)]
    return np.concatenate([y, -y]).astype(dt)


def kernel_codes(y: np.ndarray, qt: QType, inv: np.ndarray | None = None, layout=(1, None, 1)) -> np.ndarray:
    """Unpacked codes straight from the kernel (16-bit layout holds every grid's codes)."""
    _, mids, tie = grid_tables(qt)
    n = y.size
    out = np.empty(n, np.uint16)
    Q, R, T = layout
    inv = np.ones(1, y.dtype) if inv is None else inv
    R = n if R is None else R
    quantize_grid_kernel(y, out, inv, mids, tie, Q, R, T, R, 16)
    return out.astype(np.int64)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("qt", ALL + CUSTOM, ids=IDS + [q.name for q in CUSTOM])
def test_edge_values_match_reference(qt, dtype):
    y = edge_values(qt, dtype)
    np.testing.assert_array_equal(kernel_codes(y, qt), reference_codes(y, qt))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("qt", ALL + CUSTOM, ids=IDS + [q.name for q in CUSTOM])
def test_random_magnitudes_match_reference(qt, dtype, rng):
    """Log-uniform magnitudes from far below the smallest step to far above the top, both signs."""
    g = np.abs(np.asarray(qt.grid, np.float64))
    lo, hi = np.log2(g[g > 0].min()) - 4, np.log2(g.max()) + 2
    y = np.exp2(rng.uniform(max(lo, -140), min(hi, 120), 20000)) * rng.choice([-1.0, 1.0], 20000)
    y = y.astype(dtype)
    np.testing.assert_array_equal(kernel_codes(y, qt), reference_codes(y, qt))


@given(data=st.data())
def test_any_float_matches_reference(data):
    """Any finite float32/float64 (subnormals included) rounds as the reference, in every grid format."""
    qt = data.draw(st.sampled_from(ALL + CUSTOM), label="qtype")
    width = data.draw(st.sampled_from([32, 64]), label="width")
    values = data.draw(
        st.lists(st.floats(allow_nan=False, allow_infinity=False, width=width), min_size=1, max_size=64)
    )
    dt = np.float32 if width == 32 else np.float64
    bound = float(np.asarray(min(2 * max(np.abs(qt.grid)), float(np.finfo(dt).max) / 2), dt))
    near = data.draw(st.lists(st.floats(-bound, bound, width=width), max_size=64), label="near")
    y = np.array(values + near, dt)
    np.testing.assert_array_equal(kernel_codes(y, qt), reference_codes(y, qt))


@given(
    exp_bits=st.integers(1, 5),
    man_bits=st.integers(0, 6),
    specials=st.sampled_from(["none", "fn", "ieee"]),
    width=st.sampled_from([32, 64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_float_format_matches_reference(exp_bits, man_bits, specials, width, seed):
    """Float grids of every small shape, including ones with only subnormals or no mantissa (M = 0:
    not the even-mantissa rule of the direct path, so they must be recognised and rounded otherwise)."""
    from lowbit.formats.floats import float_grid

    if len(float_grid(exp_bits, man_bits, specials)) < 3:  # a 1-value "format" is refused by QType itself
        return
    qt = float_format("test_float", exp_bits, man_bits, specials)
    grid = qt.grid
    dt = np.float32 if width == 32 else np.float64
    r = np.random.default_rng(seed)
    top = grid[-1]
    y = np.concatenate([edge_values(qt, dt), (r.uniform(-1.2, 1.2, 500) * top).astype(dt)])
    np.testing.assert_array_equal(kernel_codes(y, qt), reference_codes(y, qt))
    if exp_bits >= 2 and man_bits >= 1:  # the direct path serves every float grid with a mantissa
        assert rounding_plan(*grid_tables(qt)[1:], dt).mode == FLOAT


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_fp16_grid_equals_numpy_float16_cast(dtype, rng):
    """E5M10 with IEEE specials is float16: inside the finite range the codes are NumPy's RNE cast."""
    qt = EXTRA_FLOATS[0]
    g = np.asarray(qt.grid)
    top = g[-1]
    mids = (g[:-1] + g[1:]) / 2
    y = np.concatenate([
        np.exp2(rng.uniform(-26, 16, 50000)) * rng.choice([-1, 1], 50000), mids, np.nextafter(mids, 0),
    ]).astype(dtype)
    y = y[np.abs(y) < top + 16]  # float16 overflows to inf from top + 16 (half a step) on; lowbit saturates
    assert rounding_plan(*grid_tables(qt)[1:], dtype).mode == FLOAT
    got = g[kernel_codes(y, qt)]
    np.testing.assert_array_equal(got, y.astype(np.float16).astype(np.float64))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_every_registered_float_format_takes_the_direct_path(dtype):
    """The fast path serves every registered float grid (fp8/fp6/fp4 and the MX elements)."""
    floats = [n for n in GRID_NAMES if get_qtype(n).kind == "float"]
    assert {"fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1"} <= set(floats)
    for name in floats:
        params = rounding_plan(*grid_tables(get_qtype(name))[1:], dtype).params
        assert params[0] == FLOAT, name
        assert get_qtype(name).grid[params[1]] == 0.0  # code of zero


def test_plans_of_codebooks():
    modes = {q.name: rounding_plan(*grid_tables(q)[1:], np.float32).mode for q in CUSTOM}
    assert modes["test_grid_fp4_values"] == COUNT  # same values as fp4_e2m1, but even-code ties
    assert modes["test_grid_cb33"] == COUNT and modes["test_grid_cb34"] == SEARCH
    assert modes["test_grid_cb300"] == SEARCH
    assert rounding_plan(*grid_tables(get_qtype("nf4"))[1:], np.float64).mode == COUNT
    assert len(get_qtype("test_grid_cb33").grid) - 1 == COUNT_MAX


def test_ties_of_float_and_codebook_with_the_same_values():
    """fp4_e2m1 ties to the even mantissa, the codebook with its values to the even code."""
    y = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.25, -5.0], np.float32)
    fp4 = get_qtype("fp4_e2m1").grid
    assert [fp4[c] for c in kernel_codes(y, get_qtype("fp4_e2m1"))] == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 0.0, -4.0]
    cb = get_qtype("test_grid_fp4_values")
    assert [fp4[c] for c in kernel_codes(y, cb)] == [0.5, 0.5, 1.5, 1.5, 3.0, 3.0, 6.0, -0.5, -6.0]


def test_thresholds_are_exact_in_float32():
    mids = np.array([0.25, 1.0 + 2.0**-30, 3.0])
    tie = np.array([0, 2, 3], np.int32)  # 0.25 ties down, the others up
    t = thresholds(mids, tie, np.float32)
    assert t.dtype == np.float32
    assert t.tolist() == [float(np.nextafter(np.float32(0.25), np.float32(1))), 1.0 + 2.0**-23, 3.0]
    t64 = thresholds(mids, tie, np.float64)
    assert t64.tolist() == [float(np.nextafter(0.25, 1.0)), 1.0 + 2.0**-30, 3.0]


@pytest.mark.parametrize("qt", [*ALL, CUSTOM[0], CUSTOM[4]], ids=[*IDS, CUSTOM[0].name, CUSTOM[4].name])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_scaled_layouts_pack_and_dequantize(qt, dtype, rng):
    """Per-row scales (T == 1) and per-column scales (T > 1): codes of the product x * inv rounded
    in x's dtype, packed at the format's width; dequantize and fake-quantize are grid[code] * scale."""
    rows, cols = 37, 24
    x = (rng.standard_normal((rows, cols)) * 3).astype(dtype)
    g = np.asarray(qt.grid, np.float64)
    for axis in (0, 1):  # scale per row, then per column
        inv = rng.uniform(0.2, 4, x.shape[axis]).astype(dtype)
        lay = plan(PerChannel(axis), x.shape)
        y = x * (inv[:, None] if axis == 0 else inv[None, :])  # rounded in dtype, like the kernel
        want = reference_codes(y.reshape(-1), qt)
        got = kernel_codes(x.reshape(-1), qt, inv, lay.dims[:3])
        np.testing.assert_array_equal(got, want)
        _, mids, tie = grid_tables(qt)
        size, dt = (qt.packed_nbytes(x.size), np.uint8) if qt.packed else (x.size, qt.storage_dtype)
        packed = np.empty(size, dt)
        quantize_grid_kernel(x.reshape(-1), packed, inv, mids, tie, *lay.dims, qt.bits)
        scale = (dtype(1) / inv).astype(dtype)
        back = np.empty(x.size, dtype)
        dequantize_grid_kernel(packed, x.size, back, scale, g.astype(dtype), *lay.dims, qt.bits)
        sb = scale[:, None] if axis == 0 else scale[None, :]
        expect = (g.astype(dtype)[want.reshape(x.shape)] * sb).reshape(-1)
        np.testing.assert_array_equal(back, expect)
        fake = np.empty(x.size, dtype)
        fake_quantize_grid_kernel(x.reshape(-1), fake, inv, mids, tie, scale, g.astype(dtype), *lay.dims)
        np.testing.assert_array_equal(fake, expect)


@pytest.mark.parametrize("n", [1, 3, 4, 5, 8, 13, 16384 + 7, 40003])
@pytest.mark.parametrize("name", ["fp6_e3m2", "fp4_e2m1", "nf4", "fp8_e5m2", "test_grid_cb3", "test_grid_cb300"])
def test_public_round_trip_over_chunks(name, n, rng):
    """lowbit.quantize with scale=1: codes are the reference's; lengths cross the packing and chunk edges."""
    qt = get_qtype(name)
    top = float(np.abs(np.asarray(qt.grid)).max())
    x = (rng.standard_normal(n) * top / 2).astype(np.float32)
    q = lowbit.quantize(x, name, scale=1.0)
    want = reference_codes(x, qt)
    np.testing.assert_array_equal(q.codes.astype(np.int64), want)
    np.testing.assert_array_equal(lowbit.dequantize(q), np.asarray(qt.grid, np.float32)[want])
    np.testing.assert_array_equal(lowbit.fake_quantize(x, name, scale=1.0), np.asarray(qt.grid, np.float32)[want])


@pytest.mark.parametrize("name", GRID_NAMES)
def test_public_group_scales(name, rng):
    """Every registered grid format through lowbit.quantize with group-32 absmax scales: the codes are
    the reference's on x * (1/scale) as the library computes it (float32 reciprocal, float32 product)."""
    qt = get_qtype(name)
    x = (rng.standard_normal((8, 64)) * rng.uniform(0.01, 100, (8, 1))).astype(np.float32)
    q = lowbit.quantize(x, name, granularity=PerGroup(32))
    scale = np.repeat(np.asarray(q.scale, np.float32).reshape(8, 2), 32, axis=1)
    y = x * (np.float32(1) / scale)
    np.testing.assert_array_equal(q.codes.astype(np.int64), reference_codes(y, qt))


def test_plan_rejects_other_dtypes():
    _, mids, tie = grid_tables(get_qtype("nf4"))
    for bad in (np.float16, np.int32):
        with pytest.raises(InputTypeError, match="float32 or float64"):
            rounding_plan(mids, tie, bad)
        with pytest.raises(InputTypeError, match="float32 or float64"):
            thresholds(mids, tie, bad)
