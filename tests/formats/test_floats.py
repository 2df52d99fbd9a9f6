"""lowbit.formats.floats: low-bit floats (fp8/fp6/fp4), and what every grid format shares.

The table-independent grid tests (shape of the grid, round trip, packed storage,
unsupported options) run over every grid format, codebooks included; the codebooks'
own tables and the Codebook constructor are in test_codebook.py.

Oracles are independent of lowbit's kernels: torch's float8 casts (bit-exact
RNE), the OCP value tables written out by hand, and float64 NumPy
nearest-value searches.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lowbit
from lowbit import PerChannel, PerGroup, PerTensor, QTensor
from lowbit.errors import OptionError
from lowbit.formats import get_qtype

# every grid format: the tests that are not about one table run for the codebooks (test_codebook.py) too
GRID_NAMES = ["fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1", "nf4", "fp4_bnb"]


def _torch_finite_values(dtype: torch.dtype) -> np.ndarray:
    """Every finite value of a torch float8 dtype, ±0 collapsed, from its 256 bit patterns."""
    v = torch.arange(256, dtype=torch.uint8).view(dtype).float().numpy()
    return np.unique(v[np.isfinite(v)])


@pytest.mark.parametrize(
    "name,bits,size,top",
    [("fp8_e4m3", 8, 253, 448.0), ("fp8_e5m2", 8, 247, 57344.0), ("fp6_e3m2", 6, 63, 28.0),
     ("fp6_e2m3", 6, 63, 7.5), ("fp4_e2m1", 4, 15, 6.0), ("nf4", 4, 16, 1.0), ("fp4_bnb", 4, 15, 1.0)],
)
def test_grid_shape(name, bits, size, top):
    qt = get_qtype(name)
    g = np.asarray(qt.grid)
    assert (qt.bits, g.size, qt.qmin, qt.qmax, g.max(), g.min()) == (bits, size, 0, size - 1, top, -top)
    assert np.all(np.diff(g) > 0) and np.count_nonzero(g == 0) == 1
    assert qt.kind in ("float", "codebook") and qt.is_grid and qt.storage_dtype == np.uint8


@pytest.mark.parametrize("name,dtype", [("fp8_e4m3", torch.float8_e4m3fn), ("fp8_e5m2", torch.float8_e5m2)])
def test_fp8_grid_is_torchs_finite_values(name, dtype):
    np.testing.assert_array_equal(np.asarray(get_qtype(name).grid), _torch_finite_values(dtype))


def test_fp4_and_fp6_tables():
    pos = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    assert list(get_qtype("fp4_e2m1").grid) == sorted({-v for v in pos} | set(pos))
    assert list(get_qtype("fp6_e2m3").grid[31:34]) == [0.0, 0.125, 0.25]  # subnormal step 2^-3
    assert get_qtype("fp6_e3m2").grid[32] == 0.0625  # subnormal step 2^-4


@pytest.mark.parametrize("log2_scale", [0, -3, 5])
@pytest.mark.parametrize("name,dtype", [("fp8_e4m3", torch.float8_e4m3fn), ("fp8_e5m2", torch.float8_e5m2)])
def test_fp8_bit_exact_with_torch_cast(name, dtype, log2_scale, rng):
    """Power-of-two scale, so x * (1/scale) is exact and both sides round the same numbers.

    Inputs: random magnitudes over the whole exponent range, every exact midpoint
    between neighbouring grid values (ties, subnormal ones included) and values
    beyond the maximum.  Torch's e5m2 cast overflows to inf from the midpoint above
    the maximum on, where lowbit saturates: those are compared to the maximum instead.
    """
    g = np.asarray(get_qtype(name).grid)
    mids = (g[:-1] + g[1:]) / 2
    top = g[-1]
    mags = np.exp2(rng.uniform(np.log2(g[g > 0].min()) - 2, np.log2(top) + 0.2, 4000))
    y = np.concatenate([mags * rng.choice([-1, 1], mags.size), mids, [top * 1.03, -top * 1.2, top * 4, 0.0]])
    y = y.astype(np.float32)
    scale = 2.0**log2_scale
    x = (y * np.float32(scale)).astype(np.float32)
    got = lowbit.dequantize(lowbit.quantize(x, name, scale=scale))
    ref = torch.from_numpy(y).to(dtype).float().numpy() * np.float32(scale)
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(got[finite], ref[finite])
    assert np.all(np.abs(got[~finite]) == top * scale) and np.all(np.abs(y[~finite]) > top)
    tie = np.isin(y, mids.astype(np.float32))
    assert tie.sum() >= len(mids) - 2 and np.array_equal(got[tie], ref[tie])  # RNE on the mantissa


@pytest.mark.parametrize("name", GRID_NAMES)
@pytest.mark.parametrize(
    "gran", [PerTensor(), PerChannel(0), PerGroup(32)], ids=["tensor", "channel", "group32"]
)
def test_round_trip_error_and_codes(name, gran, rng):
    """|x - x̂| <= half the local grid gap times scale; codes = float64 nearest search."""
    x = (rng.standard_normal((6, 96)) * rng.uniform(0.1, 10, (6, 1))).astype(np.float32)
    qt = lowbit.quantize(x, name, granularity=gran)
    g = np.asarray(get_qtype(name).grid)
    codes = qt.codes.astype(np.int64)
    assert codes.shape == x.shape and codes.min() >= 0 and codes.max() <= g.size - 1
    s = qt.scale.astype(np.float64)  # broadcast to every element
    s = np.repeat(s, 32, axis=-1) if isinstance(gran, PerGroup) else s.reshape(-1, 1) if s.ndim else s
    y = x.astype(np.float64) / s
    assert np.all(np.abs(y) <= g.max() * (1 + 1e-6))
    nearest = np.abs(y[..., None] - g).argmin(-1)
    clear = np.abs(np.abs(y - g[nearest]) - np.sort(np.abs(y[..., None] - g), -1)[..., 1]) > 1e-4 * s.max()
    np.testing.assert_array_equal(codes[clear], nearest[clear])
    lo = np.clip(np.searchsorted(g, y) - 1, 0, g.size - 2)
    gap = g[lo + 1] - g[lo]
    err = np.abs(lowbit.dequantize(qt).astype(np.float64) - x)
    assert np.all(err <= gap / 2 * s * (1 + 1e-5) + 1e-12)
    np.testing.assert_array_equal(lowbit.fake_quantize(x, name, granularity=gran), lowbit.dequantize(qt))


@pytest.mark.parametrize("name", GRID_NAMES)
@pytest.mark.parametrize("n", [1, 7, 64, 1001])
def test_packed_storage_and_serialization(name, n, rng):
    qt = get_qtype(name)
    x = rng.standard_normal(n).astype(np.float32)
    q = lowbit.quantize(x, name, granularity=PerGroup(64) if n % 64 == 0 else PerTensor())
    assert q.data.dtype == (np.uint8 if qt.packed else qt.storage_dtype)
    assert q.nbytes == math.ceil(n * qt.bits / 8) + q.scale.size * 4  # codes + float32 scales, no zero point
    back = QTensor.from_dict(q.to_dict())
    np.testing.assert_array_equal(back.codes, q.codes)
    np.testing.assert_array_equal(back.dequantize(), q.dequantize())


def test_torch_input_keeps_kind_dtype_and_zero_input_is_exact():
    t = torch.linspace(-3, 3, 50, dtype=torch.bfloat16)
    out = lowbit.fake_quantize(t, "fp4_e2m1")
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bfloat16 and out.shape == t.shape
    z = np.zeros((4, 8), np.float32)
    for name in GRID_NAMES:
        np.testing.assert_array_equal(lowbit.dequantize(lowbit.quantize(z, name, granularity=PerChannel(0))), z)


@pytest.mark.parametrize(
    "kwargs",
    [{"symmetric": False}, {"method": "percentile"}, {"method": "mse"}, {"rounding": "stochastic"},
     {"scale": 1.0, "zero_point": 3}],
    ids=["affine", "percentile", "mse", "stochastic", "zero_point"],
)
@pytest.mark.parametrize("name", ["fp8_e4m3", "nf4"])
def test_unsupported_options_raise(name, kwargs):
    x = np.linspace(-1, 1, 16, dtype=np.float32)
    with pytest.raises(OptionError, match=name):
        lowbit.quantize(x, name, **kwargs)
    with pytest.raises(OptionError):
        lowbit.fake_quantize(x, name, **kwargs)
