"""QTensor: attributes, storage size, serialization."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import lowbit
from _reference import block_index, granularity_spec, parse_name, ref_pack, storage_dtype
from lowbit import PerChannel, PerGroup, PerTensor, QTensor


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 100, 101, 4097])
def test_nbytes_int4_per_tensor_symmetric(n, rng):
    x = rng.standard_normal(n).astype(np.float32)
    qt = lowbit.quantize(x, "int4")
    assert qt.nbytes == math.ceil(n / 2) + 4
    assert qt.bits_per_element == pytest.approx(8 * (math.ceil(n / 2) + 4) / n)


@pytest.mark.parametrize("n", [1, 5, 64, 101])
def test_nbytes_affine_adds_zero_point_storage(n, rng):
    x = rng.standard_normal(n).astype(np.float32)
    assert lowbit.quantize(x, "uint4").nbytes == math.ceil(n / 2) + 4 + 1  # uint8 zero point
    assert lowbit.quantize(x, "int4", symmetric=False).nbytes == math.ceil(n / 2) + 4 + 1
    assert lowbit.quantize(x, "uint12").nbytes == math.ceil(12 * n / 8) + 4 + 2  # uint16 zero point
    assert lowbit.quantize(x, "uint8").nbytes == n + 4 + 1
    assert lowbit.quantize(x, "int16").nbytes == 2 * n + 4


@pytest.mark.parametrize(
    "name,gran,symmetric,dtype",
    [
        ("int8", PerChannel(0), None, np.float32),
        ("uint3", PerChannel(1), None, np.float32),
        ("int4", PerGroup(8), None, np.float64),
        ("uint16", PerGroup(4, 0), None, np.float64),
        ("int5", PerTensor(), False, np.float32),
        ("int1", PerChannel(0), None, np.float32),
    ],
    ids=lambda v: str(v) if not isinstance(v, type) else v.__name__,
)
def test_nbytes_general_formula(name, gran, symmetric, dtype, rng):
    shape = (8, 24)
    x = rng.standard_normal(shape).astype(dtype)
    qt = lowbit.quantize(x, name, granularity=gran, symmetric=symmetric)
    bits, signed, _ = parse_name(name)
    pshape, _ = block_index(shape, granularity_spec(gran))
    nparams = int(np.prod(pshape, dtype=np.int64))
    sym = signed if symmetric is None else symmetric
    expected = math.ceil(x.size * bits / 8) + nparams * np.dtype(dtype).itemsize
    if not sym:
        expected += nparams * storage_dtype(name).itemsize
    assert qt.nbytes == expected
    assert qt.bits_per_element == pytest.approx(8 * expected / x.size)


@pytest.mark.parametrize(
    "name,gran,shape,scale_shape",
    [
        ("int8", PerTensor(), (3, 4), ()),
        ("uint4", PerChannel(0), (3, 4), (3,)),
        ("int4", PerChannel(-1), (3, 4), (4,)),
        ("int3", PerChannel(1), (2, 3, 4), (3,)),
        ("int4", PerGroup(2), (3, 4), (3, 2)),
        ("uint8", PerGroup(3, 0), (6, 2, 5), (2, 2, 5)),
    ],
    ids=lambda v: str(v).replace(" ", ""),
)
def test_attributes(name, gran, shape, scale_shape, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    qt = lowbit.quantize(x, name, granularity=gran)
    assert qt.shape == shape
    assert qt.dtype == "float32"
    assert qt.numel == int(np.prod(shape))
    assert qt.qtype is lowbit.get_qtype(name)
    assert qt.granularity == gran
    assert qt.scale.shape == scale_shape
    assert qt.zero_point.shape == scale_shape
    assert qt.zero_point.dtype == storage_dtype(name)
    assert qt.codes.shape == shape
    assert qt.codes.dtype == storage_dtype(name)
    bits = parse_name(name)[0]
    if bits in (8, 16):
        assert qt.data.dtype == storage_dtype(name)
        np.testing.assert_array_equal(qt.data, qt.codes.reshape(-1))
    else:
        assert qt.data.dtype == np.uint8
        assert qt.data.ndim == 1
        np.testing.assert_array_equal(qt.data, ref_pack(qt.codes, bits))
    r = repr(qt)
    assert name in r and str(gran) in r and str(shape) in r


def test_dequantize_method_equals_function(rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    qt = lowbit.quantize(x, "int4", granularity=PerGroup(4))
    np.testing.assert_array_equal(qt.dequantize(), lowbit.dequantize(qt))


def test_qtensor_is_frozen(rng):
    qt = lowbit.quantize(rng.standard_normal(8).astype(np.float32), "int8")
    with pytest.raises(dataclasses.FrozenInstanceError):
        qt.scale = np.float32(1.0)  # type: ignore[misc]


# --------------------------------------------------------------------------- to_dict / from_dict

ROUND_TRIP_CASES = [
    ("int8", PerTensor(), "float32", (5, 6)),
    ("uint4", PerChannel(0), "float64", (5, 6)),
    ("int3", PerGroup(3), "float16", (5, 6)),
    ("int12", PerChannel(1), "float32", (2, 3, 4)),
    ("uint1", PerGroup(2, 0), "float32", (4, 3)),
    ("int8_full", PerTensor(), "float64", ()),
]


@pytest.mark.parametrize("name,gran,dtype,shape", ROUND_TRIP_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_to_dict_from_dict_round_trip(name, gran, dtype, shape, rng):
    x = np.asarray(rng.standard_normal(shape)).astype(dtype)
    qt = lowbit.quantize(x, name, granularity=gran)
    d = qt.to_dict()
    assert set(d) == {"data", "scale", "zero_point", "meta"}
    meta = d["meta"]
    assert json.loads(json.dumps(meta)) == meta  # plain JSON metadata
    assert meta["qtype"] == name
    assert meta["granularity"] == str(gran)
    assert meta["shape"] == list(shape)
    assert meta["dtype"] == dtype
    assert meta["kind"] == "numpy"
    assert meta["symmetric"] is qt.symmetric
    assert meta["format_version"] == 3
    assert meta["scale_format"] == "float32"
    # simulate a file: copies of the arrays, metadata through JSON
    stored = {k: np.array(v, copy=True) for k, v in d.items() if k != "meta"}
    stored["meta"] = json.loads(json.dumps(meta))
    back = QTensor.from_dict(stored)
    assert back.qtype is qt.qtype
    assert back.granularity == gran
    assert back.shape == shape
    assert back.dtype == dtype
    assert back.symmetric is qt.symmetric
    np.testing.assert_array_equal(back.codes, qt.codes)
    np.testing.assert_array_equal(back.scale, qt.scale)
    np.testing.assert_array_equal(back.zero_point, qt.zero_point)
    out = back.dequantize()
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, qt.dequantize())
    assert back.nbytes == qt.nbytes


def test_from_dict_torch_kind_gives_torch_back():
    torch = pytest.importorskip("torch")
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    qt = lowbit.quantize(x, "int4", granularity=PerChannel(0))
    back = QTensor.from_dict(qt.to_dict())
    out = back.dequantize()
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, qt.dequantize())


def _good_dict(rng):
    x = rng.standard_normal((3, 8)).astype(np.float32)
    return lowbit.quantize(x, "uint4", granularity=PerChannel(0)).to_dict()


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda d: d.pop("data"), id="missing-data"),
        pytest.param(lambda d: d.pop("meta"), id="missing-meta"),
        pytest.param(lambda d: d["meta"].pop("shape"), id="missing-shape"),
        pytest.param(lambda d: d["meta"].pop("qtype"), id="missing-qtype"),
        pytest.param(lambda d: d["meta"].update(format_version=4), id="newer-version"),
        pytest.param(lambda d: d["meta"].pop("scale_format"), id="missing-scale-format"),
        pytest.param(lambda d: d["meta"].update(scale_format="float64"), id="unknown-scale-format"),
        pytest.param(lambda d: d.update(scale=d["scale"].astype(np.float16)), id="scale-dtype"),
        pytest.param(lambda d: d["meta"].update(qtype="int99"), id="unknown-qtype"),
        pytest.param(lambda d: d["meta"].update(granularity="rows"), id="unknown-granularity"),
        pytest.param(lambda d: d.update(data=d["data"][:-1]), id="short-data"),
        pytest.param(lambda d: d.update(scale=d["scale"][:2]), id="short-scale"),
        pytest.param(lambda d: d["meta"].update(shape=[3, 9]), id="shape-mismatch"),
        pytest.param(lambda d: d["meta"].update(shape="3x8"), id="bad-shape"),
    ],
)
def test_from_dict_rejects_invalid(corrupt, rng):
    d = _good_dict(rng)
    corrupt(d)
    with pytest.raises(lowbit.FileFormatError):
        QTensor.from_dict(d)


@pytest.mark.parametrize("name,gran,dtype,shape", ROUND_TRIP_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_version_1_dicts_are_still_read(name, gran, dtype, shape, rng):
    """A dict as lowbit wrote it before scale formats existed: float ``scale``, no ``scale_format``."""
    x = np.asarray(rng.standard_normal(shape)).astype(dtype)
    qt = lowbit.quantize(x, name, granularity=gran)
    v1 = {"data": qt.data.copy(), "scale": qt.scale.copy(), "zero_point": qt.zero_point.copy(),
          "meta": {"format_version": 1, "qtype": name, "granularity": str(gran), "symmetric": qt.symmetric,
                   "kind": "numpy", "dtype": dtype, "shape": list(shape)}}
    back = QTensor.from_dict(v1)
    assert back.scale_format == "float32" and back.nbytes == qt.nbytes
    np.testing.assert_array_equal(back.dequantize(), qt.dequantize())
    assert back.to_dict()["meta"]["format_version"] == 3


def test_version_2_fp4_means_the_bitsandbytes_table(rng):
    """Before version 3, "fp4" named bitsandbytes' table; it is now the OCP E2M1 float and the table is fp4_bnb."""
    x = rng.standard_normal((4, 64)).astype(np.float32)
    bnb = lowbit.quantize(x, "fp4_bnb", granularity=lowbit.PerGroup(64))
    v2 = bnb.to_dict()
    v2["meta"].update(format_version=2, qtype="fp4")
    back = QTensor.from_dict(v2)
    assert back.qtype.name == "fp4_bnb"
    np.testing.assert_array_equal(back.dequantize(), bnb.dequantize())
    e2m1 = lowbit.quantize(x, "fp4", granularity=lowbit.PerGroup(64))
    assert e2m1.to_dict()["meta"]["qtype"] == "fp4_e2m1"  # canonical names only
    assert QTensor.from_dict(e2m1.to_dict()).qtype.name == "fp4_e2m1"


def test_file_format_error_is_a_value_error(rng):
    d = _good_dict(rng)
    d["meta"]["format_version"] = 99
    with pytest.raises(ValueError, match="newer"):
        QTensor.from_dict(d)


def test_from_dict_rejects_zero_point_of_wrong_shape(rng):
    d = _good_dict(rng)
    d["zero_point"] = np.array(7, np.uint8)  # per-channel tensor with 3 channels needs shape (3,)
    with pytest.raises(lowbit.FileFormatError):
        QTensor.from_dict(d)


def test_from_dict_rejects_data_of_wrong_dtype(rng):
    d = _good_dict(rng)
    d["data"] = d["data"].astype(np.float32)  # packed bytes must be uint8
    with pytest.raises(lowbit.FileFormatError):
        QTensor.from_dict(d)


def test_from_dict_granularity_not_fitting_shape_is_a_file_format_error(rng):
    d = _good_dict(rng)
    d["meta"]["granularity"] = "channel:5"
    with pytest.raises(lowbit.FileFormatError):
        QTensor.from_dict(d)


def test_stored_scale_arrays_are_required_for_other_scale_formats(rng):
    qt = lowbit.quantize(rng.standard_normal(8).astype(np.float32), "int8")
    with pytest.raises(lowbit.OptionError, match="scale_arrays"):
        QTensor(qt.data, qt.scale, qt.zero_point, qt.qtype, qt.granularity, qt.symmetric, qt.source, "float16")


# -- issue 16: every QTensor is validated before a kernel touches it ------------------------------------------------
def _issue16_dict(**changes):
    import numpy as np

    qt = lowbit.quantize(np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32), "uint4", granularity="channel")
    d = qt.to_dict()
    d["meta"] = dict(d["meta"])
    for key, value in changes.items():
        (d["meta"] if key in d["meta"] else d)[key] = value
    return d


def test_issue16_one_byte_of_codes_for_1e8_int4_elements_is_refused_at_construction():
    import numpy as np

    from lowbit._arrays import Source
    from lowbit.qtensor import QTensor

    with pytest.raises(lowbit.FileFormatError, match=r"data is uint8\(1,\) \(want uint8 \(50000000,\)\)"):
        QTensor(np.zeros(1, np.uint8), np.ones((), np.float32), np.zeros((), np.int8), lowbit.get_qtype("int4"),
                lowbit.PerTensor(), True, Source("numpy", "float32", (10**8,)))


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"scale": [1.0, 1.0, 1.0]}, r"scale is float\d+\(3,\)"),
    ({"zero_point": [200, 3]}, r"zero_point 200 is outside uint4's codes \[0, 15\]"),
    ({"scale": [-1.0, 1.0]}, "not finite and positive .*-1.0"),
    ({"scale": [0.0, 1.0]}, "not finite and positive .*0.0"),
    ({"scale": [float("nan"), 1.0]}, "not finite and positive .*nan"),
    ({"format_version": 2.5}, r"format_version must be an integer 1\.\.3, got 2\.5"),
    ({"format_version": True}, r"format_version must be an integer 1\.\.3, got True"),
    ({"kind": "tensorflow"}, "kind must be one of numpy, torch, got 'tensorflow'"),
    ({"shape": "64"}, "shape must be a list of non-negative ints"),
    ({"symmetric": "false"}, "symmetric must be true or false"),
], ids=["3-scales", "zp-200", "negative-scale", "zero-scale", "nan-scale", "version-2.5", "version-true",
        "kind-tensorflow", "shape-string", "symmetric-string"])
def test_issue16_from_dict_refuses_out_of_range_fields(changes, fragment):
    import numpy as np

    from lowbit.qtensor import QTensor

    d = _issue16_dict(**changes)
    for key in ("scale", "zero_point"):
        if isinstance(d[key], list):
            d[key] = np.array(d[key], np.float32 if key == "scale" else np.uint8)
    with pytest.raises(lowbit.FileFormatError, match=fragment):
        QTensor.from_dict(d)


def test_issue16_grid_codes_past_the_value_table_are_refused_from_dicts():
    import numpy as np

    from lowbit.qtensor import QTensor

    qt = lowbit.quantize(np.linspace(-1, 1, 64, dtype=np.float32), "fp4_bnb")  # 15 values, 4-bit codes
    d = qt.to_dict()
    d["data"] = np.full_like(d["data"], 0xFF)
    with pytest.raises(lowbit.FileFormatError, match=r"code 15 is outside the format's codes 0\.\.14"):
        QTensor.from_dict(d)


def test_issue16_gguf_style_negative_and_zero_scales_stay_readable():
    """llama.cpp's Q4_0 stores d = max / -8 and d = 0 for zero blocks; int4_full keeps them (GGUF reads)."""
    import numpy as np

    from lowbit._arrays import Source
    from lowbit.qtensor import QTensor

    codes = np.array([-8, 7] * 32, np.int8)
    from lowbit._kernels import pack_codes

    qt = QTensor(pack_codes(codes, 4), np.array([-0.25, 0.0], np.float32), np.zeros(2, np.int8),
                 lowbit.get_qtype("int4_full"), lowbit.PerGroup(32), True, Source("numpy", "float32", (64,)))
    expected = codes.astype(np.float64) * np.repeat([-0.25, 0.0], 32)  # float64 reference
    assert np.array_equal(qt.dequantize(), expected.astype(np.float32))
    with pytest.raises(lowbit.FileFormatError, match="not finite"):
        QTensor(qt.data, np.array([np.inf, 1.0], np.float32), qt.zero_point, qt.qtype, qt.granularity, True,
                qt.source)
