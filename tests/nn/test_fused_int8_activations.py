"""WeightOnlyLinear(activations="int8"): inputs quantized to int8 per block, exact int32 block sums.

Checked against an independent reference that quantizes the input the same way (torch ops, float64
product with the dequantized weight), and against the float path with the worst-case bound
``sum_k |w_nk| * max|x_block(k)| / 254``.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import lowbit.nn as lnn  # noqa: E402
from lowbit.errors import OptionError  # noqa: E402
from lowbit.nn import _fused  # noqa: E402

# (qtype, granularity, scale_format, zero_point): signed/affine 4- and 8-bit codes, scale formats,
# a float zero point (GGUF Q4_1), groups wider than one activation block (channel, group:512)
SCHEMES = [
    ("int4", "group:32", None, "int"),
    ("int4", "channel", "float16", "int"),
    ("uint4", "group:64", None, "int"),
    ("uint4", "group:32", "float16", "float"),
    ("uint4", "tensor", None, "int"),
    ("int4", "group:512", None, "int"),
    ("int8", "channel", None, "int"),
    ("uint8", "group:32", "bfloat16", "int"),
    ("int8", "group:256", "kquant6", "int"),
]
IDS = [f"{q}-{g}-{f}-{z}" for q, g, f, z in SCHEMES]


def _layer(qtype, gran, fmt=None, zero_point="int", k=1024, n=24, bias=True):
    torch.manual_seed(0)
    lin = torch.nn.Linear(k, n, bias=bias)
    return lnn.WeightOnlyLinear.from_float(lin, qtype, gran, scale_format=fmt, zero_point=zero_point,
                                           activations="int8")


def _block(layer):
    cols = layer.in_features if not hasattr(layer.granularity, "size") else layer.granularity.size
    return _fused.activation_block(cols)


def _quantized_input(x, block):
    """The input as the int8 path sees it: per block of ``block`` columns, rint(x * 127 / max|x|) * max|x| / 127."""
    m, k = x.shape
    xb = x.float().reshape(m, k // block, block)
    amax = xb.abs().amax(dim=-1, keepdim=True)
    inv = torch.where(amax > 0, torch.tensor(127.0) / amax, torch.zeros(()))
    codes = torch.round(xb * inv)  # float32 product, round half to even (as the kernel's np.rint)
    return (codes.double() * (amax / 127.0).double()).reshape(m, k)


@torch.no_grad()
def _reference(layer, xq):
    w = layer.dequantized_weight().double()
    return F.linear(xq, w, None if layer.bias is None else layer.bias.double())


def _rel_err(got, want):
    return float((got.detach().double() - want).abs().max() / max(float(want.abs().max()), 1e-30))


@pytest.mark.parametrize("qtype, gran, fmt, zp", SCHEMES, ids=IDS)
@pytest.mark.parametrize("rows", [1, 3, _fused.INT8_MAX_ROWS])
def test_equals_the_product_with_the_same_quantized_input(qtype, gran, fmt, zp, rows):
    layer = _layer(qtype, gran, fmt, zp)
    x = torch.randn(rows, 1024) * torch.linspace(0.1, 4.0, 1024)  # blocks of different ranges
    got = layer(x)
    assert _rel_err(got, _reference(layer, _quantized_input(x, _block(layer)))) < 1e-5


@pytest.mark.parametrize("qtype, gran, fmt, zp", SCHEMES[:3] + SCHEMES[6:7], ids=IDS[:3] + IDS[6:7])
def test_error_against_the_float_path_is_within_the_rounding_bound(qtype, gran, fmt, zp):
    layer = _layer(qtype, gran, fmt, zp)
    x = torch.randn(4, 1024)
    x[:, 5] = 30.0  # an outlier column widens its block's step
    got = layer(x).detach().double()
    exact = _reference(layer, x.double())
    block = _block(layer)
    step = x.abs().reshape(4, -1, block).amax(dim=-1).repeat_interleave(block, dim=1).double() / 254
    bound = step @ layer.dequantized_weight().double().abs().T  # sum_k |w_nk| * half a step of x_k
    err = (got - exact).abs()
    assert bool((err <= bound * (1 + 1e-4) + 1e-5 * exact.abs().max()).all())
    assert float(err.max()) > 0  # it is an approximation: the float path differs


def test_int8_activations_are_used_only_where_asked():
    plain = _layer("int4", "group:32")
    plain.activations = "float"
    x = torch.randn(2, 1024)
    assert _rel_err(plain(x), _reference(plain, x.double())) < 1e-5  # the float path: exact
    q8 = _layer("int4", "group:32")
    assert _rel_err(q8(x), _reference(q8, x.double())) > 1e-4
    for rows in (_fused.INT8_MAX_ROWS + 1, _fused.MAX_ROWS + 1):  # more rows: float kernels, then BLAS
        many = torch.randn(rows, 1024)
        assert _rel_err(q8(many), _reference(q8, many.double())) < 1e-5


@pytest.mark.parametrize("qtype", ["int4", "uint4", "int8", "uint8"])
@pytest.mark.parametrize("k, n", [(2, 1), (6, 5), (34, 3), (1030, 1)], ids=["k2n1", "k6n5", "k34n3", "k1030n1"])
def test_odd_shapes(qtype, k, n):
    layer = _layer(qtype, "channel", k=k, n=n)
    for rows in (1, 3):
        x = torch.randn(rows, k)
        assert _rel_err(layer(x), _reference(layer, _quantized_input(x, _block(layer)))) < 1e-5


def test_batch_zero_leading_dimensions_and_non_contiguous_inputs():
    layer = _layer("uint4", "group:64")
    assert layer(torch.randn(0, 1024)).shape == (0, 24)
    x = torch.randn(2, 1, 2, 1024)
    got = layer(x)
    assert got.shape == (2, 1, 2, 24)
    flat = x.reshape(-1, 1024)
    assert _rel_err(got.reshape(-1, 24), _reference(layer, _quantized_input(flat, 64))) < 1e-5
    view = torch.randn(1024, 6).t()[:3]
    assert not view.is_contiguous()
    assert _rel_err(layer(view), _reference(layer, _quantized_input(view.contiguous(), 64))) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs(dtype):
    layer = _layer("int4", "group:32")
    x = torch.randn(2, 1024).to(dtype)
    got = layer(x).detach()
    assert got.dtype == dtype
    want = _reference(layer, _quantized_input(x.float(), 32)).to(dtype)
    bound = 2 * torch.finfo(dtype).eps * float(want.abs().max())
    assert float((got.float() - want.float()).abs().max()) <= bound


def test_extreme_codes_do_not_overflow():
    layer = _layer("uint8", "channel", k=1030, n=2)
    with torch.no_grad():
        layer.weight_data.fill_(-1)  # every uint8 code 255: the largest int32 block sums
    x = torch.full((1, 1030), 3.0)
    x[0, ::2] = -3.0
    x[0, 1] = 3.0  # not all cancelling
    assert _rel_err(layer(x), _reference(layer, _quantized_input(x, 1030))) < 1e-5


def test_zero_and_non_finite_inputs_behave_as_the_float_path():
    layer = _layer("int4", "group:32")
    zero = torch.zeros(1, 1024)
    assert torch.equal(layer(zero), layer.bias.reshape(1, -1))
    x = torch.randn(2, 1024)
    x[0, 7] = float("nan")
    x[1, 100] = float("inf")
    got = layer(x)
    layer.activations = "float"
    want = layer(x)
    assert torch.equal(torch.isnan(got), torch.isnan(want)) and bool(torch.isnan(got[0]).all())


def test_the_option_is_validated_and_saved():
    with pytest.raises(OptionError, match="activations"):
        lnn.WeightOnlyLinear(64, 8, qtype="int4", activations="int4")
    with pytest.raises(OptionError, match="nf4"):
        lnn.WeightOnlyLinear(64, 8, qtype="nf4", granularity="group:32", activations="int8")
    with pytest.raises(OptionError, match="int3"):
        lnn.WeightOnlyLinear(64, 8, qtype="int3", activations="int8")
    layer = _layer("int4", "group:32")
    cfg = layer.config()
    assert cfg["activations"] == "int8" and "activations" not in lnn.WeightOnlyLinear(64, 8).config()
    again = lnn.WeightOnlyLinear(**cfg)
    again.load_state_dict(layer.state_dict())
    x = torch.randn(1, 1024)
    assert torch.equal(again(x), layer(x))
    assert "activations=int8" in repr(layer)


def test_activation_blocks():
    assert [_fused.activation_block(c) for c in (2, 32, 256, 512, 4096, 1030, 576, 1536)] == \
        [2, 32, 256, 256, 256, 1030, 64, 256]
    assert _fused.activation_block(2 * 65537) is None  # one block that wide could overflow int32


def test_the_model_config_sets_int8_activations_on_linear_layers():
    import lowbit.model as lm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    x = torch.randn(1, 64)
    q8 = lm.WeightOnly("int4", "group:32", activations="int8")
    assert q8.scheme == "W4 int4 group:32 int8 activations"
    lm.quantize_(net, q8, progress=False)
    layers = [m for m in net if isinstance(m, lnn.WeightOnlyLinear)]
    assert len(layers) == 2 and all(m.activations == "int8" for m in layers)
    with torch.no_grad():
        first = layers[0](x)
    assert _rel_err(first, _reference(layers[0], _quantized_input(x, 32))) < 1e-5
    with pytest.raises(OptionError, match="nf4"):
        lm.WeightOnly("nf4", "group:32", activations="int8")
    with pytest.raises(OptionError, match="activations"):
        lm.WeightOnly("int4", activations="fp8")


def test_int8_activations_survive_a_checkpoint(tmp_path):
    import lowbit.model as lm
    from lowbit.io.checkpoint import save

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    lm.quantize_(net, lm.WeightOnly("uint4", "group:32", activations="int8"), progress=False)
    save(net, tmp_path / "m.safetensors")
    skeleton = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    back = lm.load_quantized(tmp_path / "m.safetensors", skeleton)
    assert back[0].activations == "int8" and back[2].activations == "int8"
    x = torch.randn(1, 64)
    assert torch.equal(back(x), net(x))


def _ragged_quantized_input(x, block):
    """:func:`_quantized_input` with a shorter last block: zero columns change no block's max."""
    m, k = x.shape
    pad = -k % block
    return _quantized_input(torch.cat([x, torch.zeros(m, pad)], dim=1), block)[:, :k]


@pytest.mark.parametrize("qtype, gran, k", [("int4", "group:32", 200), ("uint4", "group:64", 200),
                                            ("int8", "group:32", 100), ("int4", "group:512", 576),
                                            ("uint8", "group:384", 1000)])
@pytest.mark.parametrize("rows", [1, 3])
def test_ragged_groups_equal_the_product_with_the_same_quantized_input(qtype, gran, k, rows):
    """Ragged weight groups: activation blocks tile each group and the last ones are shorter."""
    layer = _layer(qtype, gran, k=k, n=12)
    x = torch.randn(rows, k) * torch.linspace(0.1, 4.0, k)
    block = _fused.activation_block(int(gran.split(":")[1]))
    assert _rel_err(layer(x), _reference(layer, _ragged_quantized_input(x, block))) < 1e-5
