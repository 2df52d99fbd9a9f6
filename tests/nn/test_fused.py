"""lowbit.nn._fused: WeightOnlyLinear's fused kernels against the dequantize path, for every format family."""

from __future__ import annotations

import tracemalloc

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import lowbit.nn as lnn  # noqa: E402
from lowbit.nn import _fused  # noqa: E402

# (qtype, granularity, scale_format): integer 4/8-bit signed and affine, grid 4/8-bit, MX, scale formats
FUSED = [
    ("int4", "channel", None),
    ("int4", "group:32", "float16"),
    ("uint4", "group:64", None),
    ("uint4", "tensor", None),
    ("int8", "channel", None),
    ("uint8", "group:32", "bfloat16"),
    ("int8", "group:256", "kquant6"),
    ("nf4", "group:64", "double8"),
    ("fp4", "group:32", None),
    ("fp8_e4m3", "channel", None),
    ("fp8_e5m2", "group:128", None),
    ("mxfp4", None, None),
    ("mxfp8", None, None),
    ("mxint8", None, None),
]
IDS = [f"{q}-{g}-{f}" for q, g, f in FUSED]


def _layer(qtype, gran, fmt, k=256, n=24, bias=True, symmetric=None):
    torch.manual_seed(0)
    lin = torch.nn.Linear(k, n, bias=bias)
    return lnn.WeightOnlyLinear.from_float(lin, qtype, gran, symmetric, scale_format=fmt)


def _reference(layer, x):
    """The dequantize path: F.linear of the float32 weight the stored codes mean, in float64."""
    w = layer.dequantized_weight().double()
    b = None if layer.bias is None else layer.bias.double()
    return F.linear(x.double(), w, b)


def _rel_err(got, want):
    got, want = got.detach(), want.detach()
    return float((got.double() - want).abs().max() / max(float(want.abs().max()), 1e-30))


@pytest.mark.parametrize("qtype, gran, fmt", FUSED, ids=IDS)
@pytest.mark.parametrize("rows", [1, 3, 8])
def test_fused_equals_the_dequantize_path(qtype, gran, fmt, rows):
    layer = _layer(qtype, gran, fmt)
    assert _fused.kernel_plan(layer) is not None
    x = torch.randn(rows, 256)
    got = layer(x)
    assert _rel_err(got, _reference(layer, x)) < 1e-5


@pytest.mark.parametrize("qtype", ["int4", "uint4", "int8", "nf4"])
@pytest.mark.parametrize("k, n", [(2, 1), (6, 5), (34, 3), (1030, 1)], ids=["k2n1", "k6n5", "k34n3", "k1030n1"])
def test_odd_shapes(qtype, k, n):
    layer = _layer(qtype, "channel", None, k=k, n=n)
    for rows in (1, 5):
        x = torch.randn(rows, k)
        assert _rel_err(layer(x), _reference(layer, x)) < 1e-5


def test_batch_zero_and_leading_dimensions():
    layer = _layer("int4", "group:32", None)
    assert layer(torch.randn(0, 256)).shape == (0, 24)
    x = torch.randn(2, 1, 3, 256)
    got = layer(x)
    assert got.shape == (2, 1, 3, 24)
    assert _rel_err(got.reshape(-1, 24), _reference(layer, x.reshape(-1, 256))) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_round_once(dtype):
    layer = _layer("int4", "group:32", None)
    x = torch.randn(2, 256).to(dtype)
    got = layer(x).detach()
    assert got.dtype == dtype
    want = _reference(layer, x.float()).detach().to(dtype)  # in float32, rounded to the input's dtype once
    bound = 2 * torch.finfo(dtype).eps * float(want.abs().max())
    assert float((got.float() - want.float()).abs().max()) <= bound


def test_non_contiguous_inputs():
    layer = _layer("uint4", "group:64", None)
    base = torch.randn(256, 6)
    x = base.t()[:3]  # a transposed, sliced view
    assert not x.is_contiguous()
    assert _rel_err(layer(x), _reference(layer, x.contiguous())) < 1e-5


def test_unsupported_layers_and_many_rows_take_the_dequantize_path():
    assert _fused.kernel_plan(_layer("int3", "channel", None)) is None  # 3-bit codes span bytes
    assert _fused.kernel_plan(_layer("uint12", "channel", None)) is None
    assert _fused.kernel_plan(_layer("int4", "group:2", None, k=6, n=2)) is not None
    layer = _layer("int4", "group:32", None)
    x = torch.randn(_fused.MAX_ROWS + 1, 256)
    assert _fused.fused_linear(layer, x) is None
    assert _rel_err(layer(x), _reference(layer, x)) < 1e-5


def test_gradients_and_float64_take_the_dequantize_path():
    layer = _layer("int4", "group:32", None)
    x = torch.randn(2, 256, requires_grad=True)
    layer(x).sum().backward()
    want = layer.dequantized_weight().sum(dim=0)
    assert torch.allclose(x.grad, want.expand(2, -1))
    x64 = torch.randn(2, 256, dtype=torch.float64)
    assert torch.equal(layer(x64), F.linear(x64, layer.dequantized_weight().double(), layer.bias.double()))


def test_the_scale_cache_follows_the_buffers():
    layer = _layer("int4", "group:32", "float16")
    x = torch.randn(1, 256)
    first = layer(x)
    other = _layer("int4", "group:32", "float16")
    with torch.no_grad():
        other.weight_scale_f16.mul_(2)  # an in-place change of a scale buffer
    layer.load_state_dict(other.state_dict())
    assert _rel_err(layer(x), _reference(layer, x)) < 1e-5
    assert not torch.allclose(layer(x), first)


def test_a_forward_pass_never_builds_the_float_weight():
    layer = _layer("int4", "group:64", None, k=2048, n=512)
    x = torch.randn(1, 2048)
    layer(x)  # compile / warm the caches
    float_weight = 2048 * 512 * 4
    tracemalloc.start()
    try:
        layer(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < float_weight / 8, peak
    tracemalloc.start()
    try:  # the check can fail: the dequantize path does build it
        layer(torch.randn(_fused.MAX_ROWS + 1, 2048))
        _, peak_dequant = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_dequant >= float_weight


def test_kernel_plan_names_the_kernel():
    assert _fused.kernel_plan(_layer("uint4", "group:64", None)) == ("int4", 64)
    assert _fused.kernel_plan(_layer("fp8_e4m3", "channel", None)) == ("lut8", 256)


# ragged groups: a group size that does not divide in_features; the last group of each row is shorter
RAGGED = [("int4", "group:32", None), ("uint4", "group:64", "float16"), ("nf4", "group:48", None),
          ("uint8", "group:32", None), ("fp8_e4m3", "group:128", None), ("int8", "group:512", None)]


@pytest.mark.parametrize("qtype, gran, fmt", RAGGED, ids=[f"{q}-{g}-{f}" for q, g, f in RAGGED])
@pytest.mark.parametrize("k", [200, 576])
def test_ragged_groups_fused_equal_the_dequantized_matmul(qtype, gran, fmt, k):
    layer = _layer(qtype, gran, fmt, k=k, n=20)
    size = int(gran.split(":")[1])
    assert layer.weight_qtensor().scale.shape == (20, -(-k // size))
    kind = ("lut" if layer.qtype.is_grid else "int") + str(layer.qtype.bits)
    assert _fused.kernel_plan(layer) == (kind, min(size, k))
    for rows in (1, 5):
        x = torch.randn(rows, k)
        assert _rel_err(layer(x), _reference(layer, x)) < 1e-5


def test_ragged_float_zero_point_fused():
    torch.manual_seed(1)
    layer = lnn.WeightOnlyLinear.from_float(torch.nn.Linear(100, 6), "uint4", "group:32", zero_point="float",
                                            scale_format="float16")
    x = torch.randn(3, 100)
    assert _fused.kernel_plan(layer) == ("int4", 32)
    assert _rel_err(layer(x), _reference(layer, x)) < 1e-5
