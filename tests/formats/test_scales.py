"""Scale formats: stored scale arrays, their meaning, and codes computed with the stored scales.

Oracles: NumPy's and torch's float16/bfloat16 conversions, a float64 re-implementation
of each two-level format written from its description (QLoRA double quantization,
llama.cpp-style 6-bit sub-scales), an independent bit packer (``_reference.ref_unpack``),
and a NumPy re-quantization with the decoded scales.
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
from _reference import ref_unpack
from lowbit import PerChannel, PerGroup, PerTensor, QTensor
from lowbit.errors import FileFormatError, OptionError
from lowbit.formats import get_qtype, get_scale_format, list_scale_formats

FORMATS = ["float32", "float16", "bfloat16", "e8m0", "double8", "kquant6"]
F32 = np.dtype(np.float32)


# --------------------------------------------------------------------------- independent decoders


def ref_decode(name: str, arrays: dict, n: int, sdt=np.float64) -> np.ndarray:
    """Flat scales the stored arrays mean, written from each format's description.

    Evaluated in float64 and rounded once to the scale dtype ``sdt`` (double8's
    ``mean + code * block_scale`` is not exact in float32)."""
    return _ref_decode64(name, arrays, n).astype(sdt)


def _ref_decode64(name: str, arrays: dict, n: int) -> np.ndarray:
    if name == "float32":
        return np.asarray(arrays["scale"], np.float64).reshape(-1)
    if name == "float16":
        return np.asarray(arrays["scale_f16"]).astype(np.float64).reshape(-1)
    if name == "bfloat16":
        bits = torch.from_numpy(np.asarray(arrays["scale_bf16"]).view(np.int16).reshape(-1).copy())
        return bits.view(torch.bfloat16).double().numpy()
    if name == "e8m0":
        return np.array([2.0 ** (int(b) - 127) for b in np.asarray(arrays["scale_e8m0"]).reshape(-1)])
    if name == "double8":
        codes = np.asarray(arrays["scale_codes"], np.float64).reshape(-1)
        block = np.asarray(arrays["scale_block_scale"], np.float64)[np.arange(n) // 256]
        return float(arrays["scale_mean"]) + codes * block
    if name == "kquant6":
        codes = ref_unpack(arrays["scale_codes"], n, 6, False)
        return codes * np.asarray(arrays["scale_super"], np.float64)[np.arange(n) // 8]
    raise AssertionError(name)


def ref_encode_kquant6(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, float16 super-scales): super = smallest float16 >= max(group of 8) / 63."""
    flat = s.reshape(-1).astype(np.float64)
    supers, codes = [], []
    for g in range(0, flat.size, 8):
        part = flat[g : g + 8]
        target = max(part.max() / 63, 2.0**-24)
        d = np.float16(target)
        while float(d) < target:
            d = np.nextafter(d, np.float16(np.inf))
        supers.append(d)
        codes.extend(np.clip(np.rint(part / float(d)), 1, 63))
    return np.array(codes), np.array(supers, np.float16)


def ref_encode_double8(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """(int8 codes, float32 block scales, float32 mean) of QLoRA double quantization, blocks of 256."""
    flat = s.reshape(-1).astype(np.float64)
    mean = np.float32(flat.mean())
    codes, block_scales = [], []
    for b in range(0, flat.size, 256):
        r = flat[b : b + 256] - float(mean)
        c = np.float32(np.abs(r).max() / 127) if np.abs(r).max() > 0 else np.float32(1.0)
        block_scales.append(c)
        q = np.clip(np.rint(r / float(c)), -127, 127)
        lowest = math.floor(-float(mean) / float(c)) + 1  # smallest code with mean + code * c > 0
        codes.extend(np.maximum(q, lowest))
    return np.array(codes), np.array(block_scales, np.float32), mean


# --------------------------------------------------------------------------- registry


def test_registry_lists_and_rejects_unknown_names():
    assert list_scale_formats() == FORMATS
    assert get_scale_format(" Float16 ").name == "float16"
    fmt = get_scale_format("kquant6")
    assert get_scale_format(fmt) is fmt
    for bad in ["fp8", "", None, 3]:
        with pytest.raises(OptionError, match="registered scale formats are: float32, float16, bfloat16, e8m0"):
            get_scale_format(bad)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="scale_format 'e4m3'"):
        lowbit.quantize(np.ones(4, np.float32), "int8", scale_format="e4m3")


# --------------------------------------------------------------------------- encode/decode vs references


def test_float16_and_bfloat16_round_to_nearest_even_like_numpy_and_torch(rng):
    s = np.exp2(rng.uniform(-20, 15, 5000)).astype(np.float32)
    for name, ref in [("float16", torch.float16), ("bfloat16", torch.bfloat16)]:
        fmt = get_scale_format(name)
        dec = fmt.decode(fmt.encode(s, F32), s.shape, F32)
        np.testing.assert_array_equal(dec, torch.from_numpy(s).to(ref).float().numpy())
    np.testing.assert_array_equal(get_scale_format("float16").encode(s, F32)["scale_f16"], s.astype(np.float16))


def test_float16_clamps_to_its_range_instead_of_zero_or_inf():
    fmt = get_scale_format("float16")
    dec = fmt.decode(fmt.encode(np.array([1e-12, 1e9]), F32), (2,), F32)
    assert dec.tolist() == [2.0**-24, 65504.0]


def test_e8m0_rounds_up_to_a_power_of_two(rng):
    s = np.exp2(rng.uniform(-100, 100, 2000))
    s = s[np.abs(np.log2(s) - np.rint(np.log2(s))) > 1e-6]  # away from exact powers, where log2 is safe
    s = np.concatenate([s, [1.0, 0.5, 2.0**-127, 2.0**127, 2.0**-200, 2.0**200]])
    fmt = get_scale_format("e8m0")
    arrays = fmt.encode(s, np.dtype(np.float64))
    want = np.exp2(np.clip(np.ceil(np.log2(s)), -127, 127))
    np.testing.assert_array_equal(fmt.decode(arrays, s.shape, np.dtype(np.float64)), want)
    np.testing.assert_array_equal(ref_decode("e8m0", arrays, s.size), want)


@pytest.mark.parametrize("n", [1, 7, 255, 256, 257, 1000], ids=lambda n: f"n{n}")
def test_double8_matches_reference(n, rng):
    s = np.abs(rng.standard_normal(n)).astype(np.float32) + 0.01
    fmt = get_scale_format("double8")
    arrays = fmt.encode(s, F32)
    codes, block_scales, mean = ref_encode_double8(s)
    assert arrays["scale_codes"].dtype == np.int8 and arrays["scale_block_scale"].shape == (-(-n // 256),)
    np.testing.assert_array_equal(arrays["scale_codes"], codes)
    np.testing.assert_array_equal(arrays["scale_block_scale"], block_scales)
    assert arrays["scale_mean"] == mean and arrays["scale_mean"].shape == ()
    dec = fmt.decode(arrays, s.shape, F32)
    np.testing.assert_array_equal(dec, ref_decode("double8", arrays, n).astype(np.float32))
    half_step = np.repeat(block_scales.astype(np.float64), 256)[:n] / 2
    assert np.all(np.abs(dec.astype(np.float64) - s) <= half_step * (1 + 1e-6) + 1e-7)


@pytest.mark.parametrize("n", [1, 8, 9, 64, 100], ids=lambda n: f"n{n}")
def test_kquant6_matches_reference(n, rng):
    s = np.exp2(rng.uniform(-12, 2, n)).astype(np.float32)
    fmt = get_scale_format("kquant6")
    arrays = fmt.encode(s, F32)
    codes, supers = ref_encode_kquant6(s)
    assert arrays["scale_codes"].shape == (math.ceil(6 * n / 8),)
    np.testing.assert_array_equal(ref_unpack(arrays["scale_codes"], n, 6, False), codes)
    np.testing.assert_array_equal(arrays["scale_super"], supers)
    assert codes.min() >= 1 and codes.max() <= 63 and np.all(codes.reshape(-1)[: n] > 0)
    dec = fmt.decode(arrays, s.shape, F32)
    np.testing.assert_array_equal(dec, ref_decode("kquant6", arrays, n).astype(np.float32))


# --------------------------------------------------------------------------- decoded scales are always usable


def test_tampered_stored_values_decode_to_finite_scales():
    """Zero, NaN and Inf decode to usable scales; a negative float16/float32 value is kept (GGUF's Q4_0 stores
    ``d = max / -8``), and QTensor validation refuses it for every format but the signed full-range ones."""
    tiny = float(np.finfo(np.float32).tiny)
    f16 = get_scale_format("float16").decode({"scale_f16": np.array([0, -1, np.nan, np.inf], np.float16)}, (4,), F32)
    assert f16.tolist() == [tiny, -1.0, tiny, float(np.finfo(np.float32).max)]
    e8 = get_scale_format("e8m0").decode({"scale_e8m0": np.array([255, 0, 254], np.uint8)}, (3,), F32)
    assert e8.tolist() == [2.0**-127, 2.0**-127, 2.0**127]
    d8 = get_scale_format("double8").decode(
        {"scale_codes": np.array([-127, 5], np.int8), "scale_block_scale": np.array([1.0], np.float32),
         "scale_mean": np.array(2.0, np.float32)}, (2,), F32)
    assert d8.tolist() == [tiny, 7.0]
    kq = get_scale_format("kquant6").decode(
        {"scale_codes": np.array([0b11000000, 0], np.uint8), "scale_super": np.array([0.5], np.float16)}, (2,), F32)
    assert kq.tolist() == [tiny, 1.5]  # code 0 (never written by lowbit) -> smallest normal; code 3 -> 1.5


def test_tampered_dict_dequantizes_to_finite_values(rng):
    d = lowbit.quantize(rng.standard_normal((4, 64)).astype(np.float32), "int4", granularity=PerGroup(32),
                        scale_format="double8").to_dict()
    d["scale_mean"] = np.array(np.nan, np.float32)
    out = QTensor.from_dict(d).dequantize()
    assert np.all(np.isfinite(out))


# --------------------------------------------------------------------------- the essential rule

QTYPES = ["int4", "uint4", "int8", "nf4", "fp8_e4m3"]
GRANS = [PerTensor(), PerChannel(0), PerGroup(16)]


def _reconstruct(qt: QTensor) -> np.ndarray:
    """Float64 values from the codes and the *stored* scale arrays only (independent decoder)."""
    s = ref_decode(qt.scale_format, qt.stored_scale, qt.scale.size, qt.scale.dtype).reshape(qt.scale.shape)
    s = s.astype(np.float64)
    if isinstance(qt.granularity, PerGroup):
        s = np.repeat(s, qt.granularity.size, axis=-1)
    elif isinstance(qt.granularity, PerChannel):
        s = s[:, None]
    codes = qt.codes.astype(np.int64)
    if qt.qtype.is_grid:
        return np.asarray(qt.qtype.grid)[codes] * s
    zp = qt.zero_point.astype(np.int64)
    zp = np.repeat(zp, qt.granularity.size, -1) if isinstance(qt.granularity, PerGroup) else (
        zp[:, None] if isinstance(qt.granularity, PerChannel) else zp)
    return (codes - zp) * s


@pytest.mark.parametrize("gran", GRANS, ids=str)
@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_dequantize_is_what_the_stored_bytes_mean(fmt, qtype, gran, rng):
    x = (rng.standard_normal((12, 64)) * np.exp2(rng.integers(-6, 6, (12, 1)))).astype(np.float32)
    qt = lowbit.quantize(x, qtype, granularity=gran, scale_format=fmt)
    assert qt.scale_format == fmt
    got = lowbit.dequantize(qt)
    np.testing.assert_array_equal(got, _reconstruct(qt).astype(np.float32))
    np.testing.assert_array_equal(lowbit.fake_quantize(x, qtype, granularity=gran, scale_format=fmt), got)
    # the codes are those of quantizing with the decoded scales (and the zero points refitted to them)
    same = lowbit.quantize(x, qtype, granularity=gran, scale=qt.scale, zero_point=qt.zero_point,
                           symmetric=None if get_qtype(qtype).is_grid else qt.symmetric)
    np.testing.assert_array_equal(qt.codes, same.codes)
    if not qt.symmetric:
        lo = np.minimum(x.min() if isinstance(gran, PerTensor) else (
            x.min(axis=1) if isinstance(gran, PerChannel) else x.reshape(12, 4, 16).min(-1)), 0)
        q = get_qtype(qtype)
        want_zp = np.clip(q.qmin - np.rint(lo / qt.scale.astype(np.float64)), q.qmin, q.qmax)
        np.testing.assert_array_equal(qt.zero_point, want_zp)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_serialization_round_trip(fmt, dtype, rng):
    x = rng.standard_normal((6, 512)).astype(dtype)
    qt = lowbit.quantize(x, "uint4", granularity=PerGroup(8), scale_format=fmt)
    d = qt.to_dict()
    assert d["meta"]["scale_format"] == fmt and d["meta"]["format_version"] == 3
    assert set(d) - {"data", "zero_point", "meta"} == set(qt.stored_scale)
    stored = {k: np.array(v) for k, v in d.items() if k != "meta"}
    stored["meta"] = json.loads(json.dumps(d["meta"]))
    back = QTensor.from_dict(stored)
    assert back.scale_format == fmt and back.nbytes == qt.nbytes
    np.testing.assert_array_equal(back.scale, qt.scale)
    out = back.dequantize()
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, qt.dequantize())
    assert qt.scale.dtype == (np.float64 if dtype == "float64" else np.float32)


def test_from_dict_validates_stored_arrays(rng):
    d = lowbit.quantize(rng.standard_normal((4, 64)).astype(np.float32), "int4", granularity=PerGroup(32),
                        scale_format="kquant6").to_dict()
    with pytest.raises(FileFormatError, match="scale_super"):
        QTensor.from_dict({k: v for k, v in d.items() if k != "scale_super"})
    with pytest.raises(FileFormatError, match=r"scale_codes is uint8\(5,\)"):
        QTensor.from_dict(dict(d, scale_codes=d["scale_codes"][:5]))
    with pytest.raises(FileFormatError, match="unexpected entries"):
        QTensor.from_dict(dict(d, scale=np.ones((4, 2), np.float32)))
    with pytest.raises(FileFormatError, match="scale_format"):
        QTensor.from_dict(dict(d, meta={**d["meta"], "scale_format": "int3"}))


# --------------------------------------------------------------------------- sizes: bits per weight


def test_bits_per_weight_of_qlora_and_kquant_layouts(rng):
    w = rng.standard_normal((1024, 1024)).astype(np.float32)
    n = w.size
    nf4 = lowbit.quantize(w, "nf4", granularity=PerGroup(64))
    dq = lowbit.quantize(w, "nf4", granularity=PerGroup(64), scale_format="double8")
    assert nf4.bits_per_element == 4.5
    nscales = n // 64
    assert dq.nbytes == n // 2 + nscales + 4 * -(-nscales // 256) + 4
    assert dq.bits_per_element == pytest.approx(4.127, abs=5e-4)  # QLoRA: 4 + 8/64 + 32/(64*256)
    k = lowbit.quantize(w, "int4", granularity=PerGroup(32), scale_format="kquant6")
    assert k.bits_per_element == 4 + 6 / 32 + 16 / 256  # 4.25, as llama.cpp Q4_K's scale part
    ku = lowbit.quantize(w, "uint4", granularity=PerGroup(32), scale_format="kquant6")
    assert ku.bits_per_element == 4 + 6 / 32 + 16 / 256 + 8 / 32  # + one uint8 zero point per group
    assert lowbit.quantize(w, "int4", granularity=PerGroup(32), scale_format="float16").bits_per_element == 4.5
    assert lowbit.quantize(w, "int4", granularity=PerGroup(32), scale_format="bfloat16").bits_per_element == 4.5
    assert lowbit.quantize(w, "int4", granularity=PerGroup(32), scale_format="e8m0").bits_per_element == 4.25


def test_compare_and_scheme_carry_the_scale_format(rng):
    x = rng.standard_normal((64, 256)).astype(np.float32)
    rows = lowbit.compare(x, [lowbit.Scheme("nf4", PerGroup(64)),
                              lowbit.Scheme("nf4", PerGroup(64), scale_format="double8"), "mxfp4"]).rows
    assert [r.scheme for r in rows] == ["nf4 group:64 sym", "nf4 group:64 sym double8", "mxfp4 group:32 sym e8m0"]
    assert [r.scale_format for r in rows] == ["float32", "double8", "e8m0"]
    assert rows[1].nbytes < rows[0].nbytes and rows[2].bits_per_element == 4.25
    want = lowbit.dequantize(lowbit.quantize(x, "nf4", granularity=PerGroup(64), scale_format="double8"))
    assert rows[1].sse == pytest.approx(float(np.sum((want.astype(np.float64) - x) ** 2)), rel=1e-9)


def test_float32_default_is_unchanged(rng):
    x = rng.standard_normal((8, 64)).astype(np.float32)
    a = lowbit.quantize(x, "uint4", granularity=PerGroup(16))
    b = lowbit.quantize(x, "uint4", granularity=PerGroup(16), scale_format="float32")
    assert a.scale_format == "float32" and a.scale_arrays is None and a.stored_scale["scale"] is a.scale
    for f in ("data", "scale", "zero_point"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


@given(data=st.data())
def test_property_decoded_scales_are_close_positive_and_codes_match(data):
    fmt = data.draw(st.sampled_from(FORMATS))
    s = data.draw(hnp.arrays(np.float32, st.integers(1, 600),
                             elements=st.floats(2.0**-60, 2.0**60, width=32)))
    f = get_scale_format(fmt)
    arrays = f.encode(s, F32)
    dec = f.decode(arrays, s.shape, F32).astype(np.float64)
    assert np.all(np.isfinite(dec) & (dec > 0))
    np.testing.assert_array_equal(dec, ref_decode(fmt, arrays, s.size).astype(np.float32))
    ratio = dec / s
    if fmt in ("float32",):
        assert np.all(ratio == 1)
    elif fmt == "float16":
        normal = (s >= 2.0**-14) & (s <= 65504)
        assert np.all(np.abs(ratio[normal] - 1) <= 2.0**-11)
    elif fmt == "bfloat16":
        assert np.all(np.abs(ratio - 1) <= 2.0**-8)
    elif fmt == "e8m0":
        assert np.all((ratio >= 1) & (ratio < 2))
    # a QTensor stores exactly these arrays and dequantizes with exactly these scales
    x = np.repeat(s, 4).reshape(-1, 4) * np.array([1.0, -0.5, 0.25, 0.0], np.float32)
    qt = lowbit.quantize(x.astype(np.float32), "int8", granularity=PerChannel(0), scale_format=fmt)
    np.testing.assert_array_equal(lowbit.dequantize(qt), _reconstruct(qt).astype(np.float32))
