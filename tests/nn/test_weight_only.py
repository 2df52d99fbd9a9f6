"""lowbit.nn.weight_only: WeightOnlyLinear and WeightOnlyConv2d: outputs, formats, state dicts and errors.

The packed storage they share is tested in test_packed.py, WeightOnlyEmbedding in test_embedding.py.

The reference output is the float layer applied to ``lowbit.fake_quantize``'d
weights (one fused quantize+dequantize pass, not the module's unpack/dequantize
of stored buffers), so every comparison is exact.
"""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit import PerChannel, PerGroup, PerTensor
from lowbit.errors import GranularityError, InputTypeError, OptionError, QTypeError

torch = pytest.importorskip("torch")
F = torch.nn.functional
lnn = pytest.importorskip("lowbit.nn")

pytestmark = pytest.mark.torch

def _gran(g):
    return PerChannel(0) if g is None else lowbit.granularity.parse_granularity(g) if isinstance(g, str) else g


def test_linear_equals_fake_quantized_weights(scheme, fq_weight, assert_close):
    qtype, gran, sym = scheme
    lin = torch.nn.Linear(32, 6)
    q = lnn.WeightOnlyLinear.from_float(lin, qtype, gran, sym)
    x = torch.randn(5, 32)
    assert_close(q(x), F.linear(x, fq_weight(lin, qtype, gran, sym), lin.bias))
    assert torch.equal(q.dequantized_weight(), fq_weight(lin, qtype, gran, sym))


def test_linear_method_option_and_3d_input(fq_weight, assert_close):
    lin = torch.nn.Linear(16, 4, bias=False)
    q = lnn.WeightOnlyLinear.from_float(lin, "int4", method="percentile", method_options={"percentile": 99.0})
    x = torch.randn(2, 3, 16)
    want = F.linear(x, fq_weight(lin, "int4", None, None, method="percentile", method_options={"percentile": 99.0}))
    assert_close(q(x), want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64], ids=str)
def test_linear_casts_weight_to_input_dtype(dtype, fq_weight, assert_close):
    lin = torch.nn.Linear(16, 4)
    q = lnn.WeightOnlyLinear.from_float(lin, "int4")
    x = torch.randn(3, 16).to(dtype)
    y = q(x)
    assert y.dtype == dtype
    assert_close(y, F.linear(x, fq_weight(lin, "int4", None, None).to(dtype), lin.bias.detach().to(dtype)))


def test_linear_input_gradient_flows():
    q = lnn.WeightOnlyLinear.from_float(torch.nn.Linear(8, 3), "int4")
    x = torch.randn(2, 8, requires_grad=True)
    q(x).sum().backward()
    assert torch.allclose(x.grad, q.dequantized_weight().sum(0).expand(2, 8))


CONVS = [
    {"in_channels": 4, "out_channels": 6, "kernel_size": 3},
    {"in_channels": 4, "out_channels": 6, "kernel_size": (3, 2), "stride": 2, "padding": 1},
    {"in_channels": 4, "out_channels": 8, "kernel_size": 3, "dilation": 2, "groups": 2, "bias": False},
    {"in_channels": 4, "out_channels": 4, "kernel_size": 3, "groups": 4, "padding": "same"},
]


@pytest.mark.parametrize("cfg", CONVS, ids=["plain", "stride-pad", "dilation-groups", "depthwise-same"])
@pytest.mark.parametrize(("qtype", "gran"), [("int4", None), ("uint8", PerTensor())], ids=["int4-ch", "uint8-t"])
def test_conv_equals_fake_quantized_weights(cfg, qtype, gran, fq_weight):
    conv = torch.nn.Conv2d(**cfg)
    q = lnn.WeightOnlyConv2d.from_float(conv, qtype, gran)
    x = torch.randn(2, 4, 9, 8)
    want = F.conv2d(x, fq_weight(conv, qtype, gran, None), conv.bias, conv.stride, conv.padding, conv.dilation,
                    conv.groups)
    assert torch.equal(q(x), want)


def test_state_dict_roundtrip_linear_conv_embedding(roundtrip):
    x = torch.randn(2, 4, 7, 7)
    cases = [
        (lnn.WeightOnlyLinear.from_float(torch.nn.Linear(8, 5), "uint4", "group:4"),
         lnn.WeightOnlyLinear(8, 5, qtype="uint4", granularity="group:4"), torch.randn(3, 8)),
        (lnn.WeightOnlyConv2d.from_float(torch.nn.Conv2d(4, 6, 3, stride=2, groups=2), "int2"),
         lnn.WeightOnlyConv2d(4, 6, 3, stride=2, groups=2, qtype="int2"), x),
        (lnn.WeightOnlyEmbedding.from_float(torch.nn.Embedding(9, 4), "uint12", symmetric=False),
         lnn.WeightOnlyEmbedding(9, 4, qtype="uint12", symmetric=False), torch.tensor([1, 8, 1])),
    ]
    for trained, fresh, inp in cases:
        assert all(isinstance(v, torch.Tensor) for v in trained.state_dict().values())
        loaded = roundtrip(trained, fresh)
        assert torch.equal(loaded(inp), trained(inp)), type(trained).__name__
        assert repr(loaded) == repr(trained)


def test_extra_repr_names_the_format():
    q = lnn.WeightOnlyConv2d(3, 4, 3, padding="same", qtype="int4", granularity="group:3")
    assert "qtype=int4" in repr(q) and "granularity=group:3" in repr(q) and "padding='same'" in repr(q)


@pytest.mark.parametrize("mode", ["reflect", "circular"])
def test_conv_padding_mode_other_than_zeros(mode):
    with pytest.raises(OptionError, match=f"padding_mode={mode!r}"):
        lnn.WeightOnlyConv2d.from_float(torch.nn.Conv2d(2, 2, 3, padding=1, padding_mode=mode))


@pytest.mark.parametrize("qtype", ["nf4", "fp8_e4m3", "mxfp4"])
def test_scale_only_formats_refuse_affine_at_construction(qtype):
    with pytest.raises(lowbit.OptionError, match="scale-only"):
        lnn.WeightOnlyLinear(64, 2, qtype=qtype, symmetric=False)
    with pytest.raises(lowbit.OptionError, match="scale-only"):
        lowbit.quantize(np.ones((2, 64), np.float32), qtype, symmetric=False)
    assert lnn.WeightOnlyLinear(64, 2, qtype=qtype, symmetric=True).weight_zero_point is None


def test_bad_inputs_raise_typed_errors():
    q = lnn.WeightOnlyLinear(4, 2)
    with pytest.raises(InputTypeError, match="floating-point"):
        q(torch.ones(2, 4, dtype=torch.int64))
    with pytest.raises(InputTypeError, match="Linear"):
        lnn.WeightOnlyLinear.from_float(torch.nn.Conv2d(2, 2, 1))
    with pytest.raises(InputTypeError, match="Conv2d"):
        lnn.WeightOnlyConv2d.from_float(torch.nn.Linear(2, 2))
    with pytest.raises(GranularityError, match=r"WeightOnlyLinear weight \(2, 6\).*out of range"):
        lnn.WeightOnlyLinear(6, 2, granularity=PerGroup(4, axis=2))
    assert lnn.WeightOnlyLinear(6, 2, granularity=PerGroup(4)).weight_scale.shape == (2, 2)  # ragged: 4 + 2
    with pytest.raises(QTypeError, match="WeightOnlyLinear"):
        lnn.WeightOnlyLinear(6, 2, qtype="int99")
    with pytest.raises(OptionError, match="groups"):
        lnn.WeightOnlyConv2d(3, 4, 3, groups=2)
    with pytest.raises(GranularityError, match="granularity"):
        lnn.WeightOnlyLinear(6, 2, granularity=3)
    with pytest.raises(GranularityError, match="'token' is not taken here"):
        lnn.WeightOnlyLinear(6, 2, granularity="token")


def test_nonfinite_weight_names_the_layer():
    lin = torch.nn.Linear(4, 2)
    with torch.no_grad():
        lin.weight[0, 1] = float("nan")
    with pytest.raises(lowbit.NonFiniteError, match=r"from_float\(Linear\) weight \(2, 4\)"):
        lnn.WeightOnlyLinear.from_float(lin)


# --------------------------------------------------------------------------- new formats and scale formats

# (qtype, granularity, scale_format); None granularity = the layer default (MX: PerGroup(32))
STORED = [
    ("mxfp4", None, None),
    ("mxfp8", None, None),
    ("mxfp6_e3m2", None, None),
    ("mxint8", None, None),
    ("nf4", "group:16", "double8"),
    ("fp4", None, None),
    ("int4", "group:16", "kquant6"),
    ("uint4", "group:16", "kquant6"),
    ("uint4", "group:32", "bfloat16"),
    ("int8", None, "float16"),
    ("int4", "group:32", "e8m0"),
]
STORED_IDS = [f"{q}-{g or 'default'}-{f or 'default'}" for q, g, f in STORED]
SCALE_BUFFERS = {
    None: {"weight_scale": torch.float32}, "float16": {"weight_scale_f16": torch.float16},
    "bfloat16": {"weight_scale_bf16": torch.int16}, "e8m0": {"weight_scale_e8m0": torch.uint8},
    "double8": {"weight_scale_codes": torch.int8, "weight_scale_block_scale": torch.float32,
                "weight_scale_mean": torch.float32},
    "kquant6": {"weight_scale_codes": torch.uint8, "weight_scale_super": torch.float16},
}


def _stored_fq(weight, qtype, gran, fmt):
    g = None if gran is None and lowbit.get_qtype(qtype).is_mx else _gran(gran)
    return lowbit.fake_quantize(weight.detach().float(), qtype, granularity=g, scale_format=fmt)


@pytest.mark.parametrize(("qtype", "gran", "fmt"), STORED, ids=STORED_IDS)
def test_new_formats_and_scale_formats_linear(qtype, gran, fmt, roundtrip, assert_close):
    lin = torch.nn.Linear(64, 6)
    q = lnn.WeightOnlyLinear.from_float(lin, qtype, gran, scale_format=fmt)
    x = torch.randn(5, 64)
    assert_close(q(x), F.linear(x, _stored_fq(lin.weight, qtype, gran, fmt), lin.bias))
    sd = q.state_dict()
    want = SCALE_BUFFERS["e8m0" if lowbit.get_qtype(qtype).is_mx else fmt]
    assert {k: v.dtype for k, v in sd.items() if k.startswith("weight_scale")} == want
    # real bytes: codes + stored scales (+ zero points) + float32 bias, as the QTensor counts them
    g = None if gran is None and lowbit.get_qtype(qtype).is_mx else _gran(gran)
    qt = lowbit.quantize(lin.weight.detach(), qtype, granularity=g, scale_format=fmt)
    assert q.nbytes == qt.nbytes + 6 * 4 == sum(t.numel() * t.element_size() for t in sd.values())
    fresh = lnn.WeightOnlyLinear(64, 6, qtype=qtype, granularity=gran, scale_format=fmt)
    loaded = roundtrip(q, fresh)
    assert torch.equal(loaded(x), q(x)) and repr(loaded) == repr(q)
    assert loaded.weight_qtensor().scale_format == qt.scale_format


@pytest.mark.parametrize(("qtype", "gran", "fmt"), [STORED[i] for i in (0, 4, 6)],
                         ids=[STORED_IDS[i] for i in (0, 4, 6)])
def test_new_formats_conv_and_embedding(qtype, gran, fmt, roundtrip):
    conv = torch.nn.Conv2d(8, 4, (2, 2))  # weight (4, 8, 2, 2): group along the last axis needs size 2
    cgran = "group:2" if gran else None
    if lowbit.get_qtype(qtype).is_mx:
        conv = torch.nn.Conv2d(32, 4, 1)  # weight (4, 32, 1, 1): MX blocks along axis 1
        cgran = PerGroup(32, axis=1)
    qc = lnn.WeightOnlyConv2d.from_float(conv, qtype, cgran, scale_format=fmt)
    x = torch.randn(2, conv.in_channels, 5, 5)
    want = F.conv2d(x, _stored_fq(conv.weight, qtype, cgran, fmt), conv.bias)
    assert torch.equal(qc(x), want)
    emb = torch.nn.Embedding(10, 64)
    qe = lnn.WeightOnlyEmbedding.from_float(emb, qtype, gran, scale_format=fmt)
    idx = torch.tensor([[1, 9], [3, 3]])
    assert torch.equal(qe(idx), F.embedding(idx, _stored_fq(emb.weight, qtype, gran, fmt)))
    fresh = lnn.WeightOnlyEmbedding(10, 64, qtype=qtype, granularity=gran, scale_format=fmt)
    assert torch.equal(roundtrip(qe, fresh)(idx), qe(idx))


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: lnn.WeightOnlyLinear(-1, 4), r"WeightOnlyLinear sizes must be positive ints, got in_features=-1$"),
        (lambda: lnn.WeightOnlyLinear(0, 2.5), r"got in_features=0, out_features=2\.5$"),
        (lambda: lnn.WeightOnlyLinear(True, 4), r"got in_features=True$"),
        (lambda: lnn.WeightOnlyConv2d(3, -4, -1, stride=0),
         r"WeightOnlyConv2d: out_channels must be a positive int, got -4; kernel_size must be an int >= 1 or a "
         r"pair of them, got -1; stride must be an int >= 1 or a pair of them, got 0$"),
    ],
    ids=["linear-negative", "linear-zero-and-float", "linear-bool", "conv-every-problem"],
)
def test_bad_layer_sizes_are_refused_naming_each(build, match):
    with pytest.raises(OptionError, match=match):
        build()


def test_numpy_int_sizes_are_accepted():
    layer = lnn.WeightOnlyLinear(np.int64(8), np.int32(4))
    assert (layer.in_features, layer.out_features) == (8, 4) and type(layer.in_features) is int
