"""lowbit.nn._packed: PackedWeightModule, the packed-weight base of the weight-only layers, through WeightOnlyLinear.

Oracles: the QTensor that lowbit.quantize makes of the same weight (its stored arrays,
byte for byte), torch's own byte counts of the buffers, and torch's load_state_dict.
"""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit import PerChannel, PerGroup, PerTensor
from lowbit.errors import OptionError

torch = pytest.importorskip("torch")
lnn = pytest.importorskip("lowbit.nn")

pytestmark = pytest.mark.torch


def test_nbytes_counts_real_storage(scheme):
    qtype, gran, sym = scheme
    lin = torch.nn.Linear(32, 6)
    q = lnn.WeightOnlyLinear.from_float(lin, qtype, gran, sym)
    qt = lowbit.quantize(lin.weight.detach(), qtype, granularity=lowbit.as_granularity(gran, PerChannel(0)),
                         symmetric=sym)
    assert q.nbytes == qt.nbytes + 6 * 4
    assert sum(t.numel() * t.element_size() for t in q.state_dict().values()) == q.nbytes


def test_nbytes_int4_known_answer():
    q = lnn.WeightOnlyLinear.from_float(torch.nn.Linear(64, 16), "int4")
    assert q.nbytes == 64 * 16 // 2 + 16 * 4 + 16 * 4  # codes + scales + bias


def test_state_dict_of_another_configuration_is_refused():
    trained = lnn.WeightOnlyLinear.from_float(torch.nn.Linear(8, 4), "uint8")
    with pytest.raises(RuntimeError, match=r"weight_data is torch.uint8 .* torch.int8"):
        lnn.WeightOnlyLinear(8, 4, qtype="int8").load_state_dict(trained.state_dict())
    with pytest.raises(RuntimeError, match="weight_zero_point"):  # affine state into a symmetric module
        lnn.WeightOnlyLinear(8, 4, qtype="uint8", symmetric=True).load_state_dict(trained.state_dict())


def test_weight_qtensor_shares_the_buffers():
    q = lnn.WeightOnlyLinear.from_float(torch.nn.Linear(16, 2), "int4")
    qt = q.weight_qtensor()
    assert qt.nbytes + 2 * 4 == q.nbytes
    assert np.shares_memory(qt.data, q.weight_data.numpy())


def test_scale_format_mismatches_are_refused():
    trained = lnn.WeightOnlyLinear.from_float(torch.nn.Linear(64, 4), "int4", "group:32", scale_format="kquant6")
    with pytest.raises(RuntimeError, match="weight_scale_super"):
        lnn.WeightOnlyLinear(64, 4, qtype="int4", granularity="group:32").load_state_dict(trained.state_dict())
    qt = lowbit.quantize(torch.randn(4, 64), "int4", granularity=PerGroup(32), scale_format="float16")
    with pytest.raises(OptionError, match="scale_format 'float16' \\(module has 'kquant6'\\)"):
        trained.load_qtensor(qt)
    with pytest.raises(OptionError, match=r"WeightOnlyLinear weight \(4, 64\).*e8m0"):
        lnn.WeightOnlyLinear(64, 4, qtype="mxfp4", scale_format="float16")
    with pytest.raises(OptionError, match="registered scale formats"):
        lnn.WeightOnlyLinear(64, 4, scale_format="nope")
    assert "scale_format=kquant6" in repr(trained)
    assert "scale_format" not in repr(lnn.WeightOnlyLinear(64, 4, qtype="mxfp4"))  # e8m0 is MX's own


def test_load_qtensor_refuses_another_configuration():
    layer = lnn.WeightOnlyLinear.from_float(torch.nn.Linear(8, 4), "int4")
    with pytest.raises(lowbit.OptionError, match=r"qtype 'int8' \(module has 'int4'\)"):
        layer.load_qtensor(lowbit.quantize(torch.ones(4, 8), "int8", granularity=lowbit.PerChannel(0)))


# --------------------------------------------------------------------------- the buffers are the QTensor's arrays

# (qtype, granularity, symmetric, scale_format): packed and whole-byte codes, 16-bit codes whose uint16
# zero points travel as int16, affine and symmetric, and every stored scale format
STORAGE = [
    ("int4", "group:16", None, None),
    ("uint4", "channel", None, None),
    ("int8", "tensor", None, None),
    ("uint12", "channel", False, None),
    ("int16", "group:32", None, None),
    ("int4", "group:16", None, "float16"),
    ("uint4", "group:16", None, "bfloat16"),
    ("nf4", "group:16", None, "double8"),
    ("int4", "group:16", None, "kquant6"),
    ("uint4", "group:32", None, "kquant6"),
    ("int4", "group:32", None, "e8m0"),
    ("mxfp4", None, None, None),
]
STORAGE_IDS = [f"{q}-{g}-{s}-{f}" for q, g, s, f in STORAGE]


def _layer_and_qtensor(qtype, gran, sym, fmt):
    lin = torch.nn.Linear(64, 6)
    q = lnn.WeightOnlyLinear.from_float(lin, qtype, gran, sym, scale_format=fmt)
    qt = lowbit.quantize(lin.weight.detach().float(), qtype, granularity=q.granularity, symmetric=sym,
                         scale_format=fmt)
    return lin, q, qt


def _bytes(a) -> np.ndarray:
    a = a.detach().contiguous().numpy() if isinstance(a, torch.Tensor) else np.ascontiguousarray(a)
    return a.reshape(-1).view(np.uint8)


@pytest.mark.parametrize(("qtype", "gran", "sym", "fmt"), STORAGE, ids=STORAGE_IDS)
def test_buffers_are_exactly_the_qtensors_stored_arrays(qtype, gran, sym, fmt):
    """weight_data is QTensor.data, weight_<key> is QTensor.stored_scale[key] (weight_scale is QTensor.scale
    for float32 scales) and weight_zero_point is QTensor.zero_point, byte for byte; nothing else is stored."""
    _, q, qt = _layer_and_qtensor(qtype, gran, sym, fmt)
    buffers = dict(q.named_buffers())
    assert q.scale_format == qt.scale_format
    np.testing.assert_array_equal(_bytes(buffers.pop("weight_data")), _bytes(qt.data))
    if qt.scale_format == "float32":
        scale = buffers.pop("weight_scale")
        assert scale.dtype == torch.float32 and tuple(scale.shape) == qt.scale.shape
        np.testing.assert_array_equal(scale.numpy(), qt.scale)
    else:
        for key, arr in qt.stored_scale.items():
            buf = buffers.pop(f"weight_{key}")
            assert buf.element_size() == arr.itemsize and tuple(buf.shape) == arr.shape, key
            np.testing.assert_array_equal(_bytes(buf), _bytes(arr), err_msg=key)
    if qt.symmetric:
        assert q.weight_zero_point is None
        buffers.pop("weight_zero_point", None)
    else:
        np.testing.assert_array_equal(_bytes(buffers.pop("weight_zero_point")), _bytes(qt.zero_point))
    assert buffers == {}


@pytest.mark.parametrize(("qtype", "gran", "sym", "fmt"), STORAGE, ids=STORAGE_IDS)
def test_weight_qtensor_round_trips(qtype, gran, sym, fmt):
    lin, q, qt = _layer_and_qtensor(qtype, gran, sym, fmt)
    got = q.weight_qtensor()
    assert (got.qtype, got.granularity, got.symmetric, got.scale_format, got.shape) == (
        qt.qtype, qt.granularity, qt.symmetric, qt.scale_format, qt.shape)
    np.testing.assert_array_equal(got.codes, qt.codes)
    np.testing.assert_array_equal(got.scale, qt.scale)
    np.testing.assert_array_equal(got.zero_point, qt.zero_point)
    deq = got.dequantize()
    assert isinstance(deq, torch.Tensor) and deq.dtype == torch.float32
    assert torch.equal(deq, torch.from_numpy(np.asarray(qt.dequantize())))
    fresh = lnn.WeightOnlyLinear(64, 6, qtype=qtype, granularity=gran, symmetric=sym, scale_format=fmt)
    fresh.load_qtensor(got)
    fresh.bias.data.copy_(lin.bias.detach())
    for (name, a), (_, b) in zip(q.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    x = torch.randn(3, 64)
    assert torch.equal(fresh(x), q(x))


# --------------------------------------------------------------------------- load_qtensor refuses other configurations


def test_load_qtensor_names_every_difference():
    layer = lnn.WeightOnlyLinear(16, 4, qtype="int4", granularity="group:8", scale_format="float16")
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    w = torch.randn(4, 16)
    same = dict(granularity=PerGroup(8), scale_format="float16")
    cases = {
        "qtype 'int3' (module has 'int4')": lowbit.quantize(w, "int3", **same),
        "granularity 'channel' (module has 'group:8')": lowbit.quantize(w, "int4", granularity=PerChannel(0),
                                                                         scale_format="float16"),
        "symmetric False (module has True)": lowbit.quantize(w, "int4", symmetric=False, **same),
        "scale_format 'float32' (module has 'float16')": lowbit.quantize(w, "int4", granularity=PerGroup(8)),
        "shape (8, 16) (module has (4, 16))": lowbit.quantize(torch.randn(8, 16), "int4", **same),
    }
    for message, qt in cases.items():
        with pytest.raises(OptionError) as info:
            layer.load_qtensor(qt)
        assert str(info.value) == f"WeightOnlyLinear.load_qtensor: {message}"
    everything = lowbit.quantize(torch.randn(16, 8), "uint4", granularity=PerTensor())
    with pytest.raises(OptionError) as info:
        layer.load_qtensor(everything)
    text = str(info.value)
    for field in ("qtype 'uint4'", "granularity 'tensor'", "symmetric False", "scale_format 'float32'",
                  "shape (16, 8)"):
        assert field in text
    assert text.count("; ") == 4
    for name, value in layer.state_dict().items():  # nothing was stored
        assert torch.equal(value, before[name]), name


# --------------------------------------------------------------------------- nbytes


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("smooth", [False, True])
@pytest.mark.parametrize("fmt", [None, "float16", "double8", "kquant6"])
def test_nbytes_is_the_sum_of_the_buffer_and_parameter_bytes(fmt, smooth, bias):
    q = lnn.WeightOnlyLinear.from_float(torch.nn.Linear(64, 8, bias=bias), "uint4", "group:16", scale_format=fmt)
    if smooth:
        q = lnn.WeightOnlyLinear(64, 8, bias=bias, qtype="uint4", granularity="group:16", scale_format=fmt,
                                 smooth=True)
    tensors = list(q.state_dict().values())
    assert q.nbytes == sum(t.numel() * t.element_size() for t in tensors)
    qt = q.weight_qtensor()
    assert q.nbytes == qt.nbytes + (8 * 4 if bias else 0) + (64 * 4 if smooth else 0)


# --------------------------------------------------------------------------- state dicts of another configuration


@pytest.mark.parametrize(
    ("saved", "built", "buffer"),
    [
        ({"qtype": "uint8"}, {"qtype": "int8"}, "weight_data is torch.uint8"),
        ({"qtype": "int8"}, {"qtype": "uint8", "symmetric": True}, "weight_data is torch.int8"),
        ({"qtype": "int4"}, {"qtype": "int3"}, "size mismatch for weight_data"),
        ({"qtype": "uint16"}, {"qtype": "int16"}, "weight_zero_point"),
        ({"qtype": "int4", "granularity": "group:16"}, {"qtype": "int4", "granularity": "group:32"},
         "size mismatch for weight_scale"),
        ({"qtype": "int4", "granularity": "group:16", "scale_format": "double8"},
         {"qtype": "int4", "granularity": "group:16", "scale_format": "kquant6"}, "weight_scale_codes is torch.int8"),
        ({"qtype": "int4", "granularity": "group:16", "scale_format": "float16"},
         {"qtype": "int4", "granularity": "group:16", "scale_format": "bfloat16"}, "weight_scale_bf16"),
        ({"qtype": "int4", "granularity": "channel"}, {"qtype": "int4", "granularity": "group:16"},
         "size mismatch for weight_scale"),
    ],
    ids=["uint8-int8", "int8-uint8", "int4-int3", "uint16-int16", "group16-group32", "double8-kquant6",
         "float16-bfloat16", "channel-group16"],
)
def test_state_dict_of_another_configuration_is_refused_naming_the_buffer(saved, built, buffer):
    trained = lnn.WeightOnlyLinear.from_float(torch.nn.Linear(64, 4), **saved)
    fresh = lnn.WeightOnlyLinear(64, 4, **built)
    with pytest.raises(RuntimeError, match=buffer):
        fresh.load_state_dict(trained.state_dict())


@pytest.mark.parametrize(
    "saved, fresh, buffer",
    [
        (dict(qtype="uint8"), dict(qtype="int8"), r"weight_data is torch\.uint8"),
        (dict(qtype="int4", scale_format="float32"), dict(qtype="int4", scale_format="float16"), "weight_scale"),
    ],
    ids=["codes", "float-scales"],
)
def test_a_refused_state_dict_leaves_the_module_unchanged(saved, fresh, buffer):
    trained = lnn.WeightOnlyLinear.from_float(torch.nn.Linear(8, 4), **saved)
    module = lnn.WeightOnlyLinear(8, 4, **fresh)
    sd = trained.state_dict()
    if "float16" in fresh.values():  # the same buffer names, a float of another dtype: cast silently before
        sd = {k.replace("weight_scale", "weight_scale_f16"): v for k, v in sd.items()}
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(RuntimeError, match=buffer):
        module.load_state_dict(sd)
    for name, value in module.state_dict().items():
        assert torch.equal(value, before[name]), name
