"""lowbit._kernels.quant: the fused quantize / dequantize / fake-quantize kernels, through lowbit's public calls.

The kernels split the flat tensor into chunks of CHUNK (16384) elements and walk runs that
share one parameter (T == 1) or consecutive parameters (T > 1); sub-byte codes are packed
chunk by chunk.  Here every case crosses chunk boundaries at odd places, with odd bit widths,
and is checked against the float64 reference of ``_reference`` (codes, dequantized values)
and its independent bit packer (``ref_unpack`` of the stored bytes).
"""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from _checks import check_codes_and_dequant, check_params
from _reference import granularity_spec, parse_name, ref_dequant, ref_unpack
from lowbit import PerChannel, PerGroup, PerTensor
from lowbit._kernels.quant import CHUNK

NAMES = ["int3", "uint5", "int7", "uint11", "int13_full", "int8", "uint16"]

LAYOUTS = [
    pytest.param((CHUNK - 1,), PerTensor(), id="tensor-chunk-1"),
    pytest.param((CHUNK,), PerTensor(), id="tensor-chunk"),
    pytest.param((CHUNK + 1,), PerTensor(), id="tensor-chunk+1"),
    pytest.param((2 * CHUNK + 3,), PerTensor(), id="tensor-2chunks+3"),
    pytest.param((7, 2341), PerChannel(0), id="rows-across-chunks"),
    pytest.param((2341, 7), PerChannel(-1), id="lanes-across-chunks"),
    pytest.param((7, 2345), PerGroup(5), id="groups-of-5"),
    pytest.param((8, 2049), PerGroup(4, axis=0), id="group-lanes"),
]


def _input(shape, dtype, rng) -> np.ndarray:
    x = rng.standard_normal(shape) * np.exp(rng.uniform(-3, 3, shape[-1]))
    x.reshape(-1)[::13] = 0.0
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("shape", "gran"), LAYOUTS)
@pytest.mark.parametrize("name", NAMES)
def test_codes_bytes_and_values_match_the_reference_across_chunks(name, shape, gran, dtype, rng):
    x = _input(shape, dtype, rng)
    spec = granularity_spec(gran)
    bits, signed, _ = parse_name(name)
    qt = lowbit.quantize(x, name, granularity=gran)
    check_params(x, qt, name, spec, signed)
    check_codes_and_dequant(x, qt, name, spec)
    if bits not in (8, 16):  # packed: the stored bytes are the reference bit stream of the codes
        assert qt.data.dtype == np.uint8 and qt.data.size == -(-x.size * bits // 8)
        np.testing.assert_array_equal(ref_unpack(qt.data, x.size, bits, signed), qt.codes.reshape(-1))
    want = ref_dequant(qt.codes, qt.scale, qt.zero_point, spec, dtype)
    np.testing.assert_array_equal(lowbit.fake_quantize(x, name, granularity=gran), want)
    out = np.full(x.size, np.nan, dtype)
    assert lowbit.dequantize(qt, out=out) is not None
    np.testing.assert_array_equal(out.reshape(shape), want)


@pytest.mark.parametrize("split", [CHUNK - 1, CHUNK, CHUNK + 1, 3])
@pytest.mark.parametrize("name", ["int3", "uint5", "int8", "uint11"])
def test_chunking_is_invisible(name, split, rng):
    """With the scale given, quantizing two pieces (which the kernel chunks differently) and joining
    the codes gives the codes of the whole."""
    x = rng.standard_normal(2 * CHUNK + 5).astype(np.float32)
    kw = dict(scale=0.01, zero_point=None if parse_name(name)[1] else 2 ** (parse_name(name)[0] - 1))
    whole = lowbit.quantize(x, name, **kw).codes
    parts = np.concatenate([lowbit.quantize(x[:split], name, **kw).codes, lowbit.quantize(x[split:], name, **kw).codes])
    np.testing.assert_array_equal(whole, parts)


@pytest.mark.parametrize(("shape", "gran"), [LAYOUTS[3], LAYOUTS[5], LAYOUTS[7]])
@pytest.mark.parametrize("name", ["int3", "uint5", "int8", "uint11"])
def test_stochastic_rounding_across_chunks(name, shape, gran, rng):
    """Codes are the floor or the ceiling of x / scale + zero point; fake_quantize draws the same
    numbers as quantize for the same seed (the uniform of each element is a hash of its flat index)."""
    x = _input(shape, np.float32, rng)
    spec = granularity_spec(gran)
    kw = dict(granularity=gran, rounding="stochastic", rng=12345)
    qt = lowbit.quantize(x, name, **kw)
    check_codes_and_dequant(x, qt, name, spec, stochastic=True)
    np.testing.assert_array_equal(lowbit.fake_quantize(x, name, **kw), qt.dequantize())
    nearest = lowbit.quantize(x, name, granularity=gran).codes
    assert 0 < np.mean(qt.codes != nearest) < 0.75  # it does not just round to nearest
