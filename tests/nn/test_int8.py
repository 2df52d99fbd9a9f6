"""lowbit.nn W8A8 modules against a NumPy reference of the integer formula.

Reference: activation codes ``clip(rint(x * f32(1 / s)), -127, 127)`` in NumPy
float32 (``s = f32(absmax) / 127``; 1 for an all-zero input), int64 matrix
products, and ``acc * (s_x * s_w) + b`` in float64.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

import lowbit
from lowbit import PerTensor
from lowbit.errors import InputTypeError, NonFiniteError, OptionError

torch = pytest.importorskip("torch")
F = torch.nn.functional
lnn = pytest.importorskip("lowbit.nn")

pytestmark = pytest.mark.torch


def ref_codes(x: np.ndarray, scale=None, per_row=False):
    """int64 codes and float32 scales (shaped (M, 1) or ()), NumPy only."""
    x = x.astype(np.float32)
    if scale is None:
        amax = np.abs(x).max(axis=1, keepdims=True) if per_row else np.abs(x).max()
        s = np.asarray(amax, np.float32) / np.float32(127)
        s = np.where(s > 0, s, np.float32(1)).astype(np.float32)
    else:
        s = np.asarray(scale, np.float32)
    inv = (np.float32(1) / s).astype(np.float32)
    return np.clip(np.rint(x * inv), -127, 127).astype(np.int64), s


def ref_linear(module, x: np.ndarray, per_row=False):
    """(acc int64, y float64) of the W8A8 formula with the module's weight codes and scales."""
    static = None if module.act_scale is None else module.act_scale.numpy()
    codes, s_x = ref_codes(x, static, per_row)
    acc = codes @ module.weight.numpy().T.astype(np.int64)
    s_w = module.weight_scale.numpy().astype(np.float64)
    y = acc.astype(np.float64) * (s_x.astype(np.float64) * s_w)
    if module.bias is not None:
        y += module.bias.detach().numpy().astype(np.float64)
    return acc, y


def cosine(a, b):
    return float(F.cosine_similarity(a.detach().flatten().double(), b.detach().flatten().double(), dim=0))


MODES = [("tensor", None), ("token", None), ("tensor", 0.02)]
MODE_IDS = ["dynamic-tensor", "dynamic-token", "static"]


@pytest.mark.parametrize(("gran", "act_scale"), MODES, ids=MODE_IDS)
def test_linear_matches_integer_reference(gran, act_scale):
    lin = torch.nn.Linear(48, 24)
    q = lnn.Int8Linear.from_float(lin, act_scale=act_scale, act_granularity=gran)
    x = torch.randn(2, 5, 48)
    x2 = x.reshape(-1, 48)
    acc_ref, y_ref = ref_linear(q, x2.numpy(), per_row=gran == "token")
    codes, s_x = lnn.quantize_activations(x2, q.act_scale, gran)
    want_codes, want_s = ref_codes(x2.numpy(), None if act_scale is None else act_scale, gran == "token")
    assert np.array_equal(codes.numpy(), want_codes) and np.array_equal(s_x.numpy(), want_s)
    acc = lnn.int8_matmul(codes, q.weight.t())
    assert acc.dtype == torch.int32 and np.array_equal(acc.numpy().astype(np.int64), acc_ref)
    y = q(x)
    assert y.shape == (2, 5, 24)
    np.testing.assert_allclose(y.detach().reshape(-1, 24).numpy(), y_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("gran", "act_scale"), MODES[:2], ids=MODE_IDS[:2])
@pytest.mark.parametrize("wgran", [None, PerTensor()], ids=["w-channel", "w-tensor"])
def test_linear_close_to_float(gran, act_scale, wgran):
    lin = torch.nn.Linear(128, 64)
    q = lnn.Int8Linear.from_float(lin, act_scale, gran, wgran)
    x = torch.randn(16, 128)
    assert cosine(q(x), lin(x)) > 0.999


def test_weight_codes_are_lowbit_int8_per_channel():
    lin = torch.nn.Linear(16, 4)
    q = lnn.Int8Linear.from_float(lin)
    qt = lowbit.quantize(lin.weight.detach(), "int8", granularity=lowbit.PerChannel(0))
    assert q.weight.is_contiguous() and q.weight.shape == (4, 16)
    assert np.array_equal(q.weight.numpy(), qt.codes)
    assert np.array_equal(q.weight_scale.numpy(), qt.scale)
    assert int(q.weight.abs().max()) == 127


CONVS = [
    {"kernel_size": 3},
    {"kernel_size": (3, 2), "stride": 2, "padding": 1},
    {"kernel_size": 3, "dilation": 2, "padding": (2, 1), "bias": False},
    {"kernel_size": 4, "padding": "same"},
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("cfg", CONVS, ids=["plain", "stride-pad", "dilation", "same-even-kernel"])
def test_conv_matches_float64_reference(cfg):
    conv = torch.nn.Conv2d(3, 5, **cfg)
    q = lnn.Int8Conv2d.from_float(conv)
    x = torch.randn(2, 3, 9, 8)
    codes, s_x = ref_codes(x.numpy().reshape(1, -1))
    xq = torch.from_numpy(codes.reshape(x.shape).astype(np.float64))
    w = torch.from_numpy(q.weight.numpy().reshape(conv.weight.shape).astype(np.float64))
    acc = F.conv2d(xq, w, None, conv.stride, conv.padding, conv.dilation)  # exact integers in float64
    y_ref = acc * (float(s_x) * torch.from_numpy(q.weight_scale.numpy().astype(np.float64)).view(1, -1, 1, 1))
    if conv.bias is not None:
        y_ref += conv.bias.detach().double().view(1, -1, 1, 1)
    y = q(x)
    assert y.shape == conv(x).shape and y.is_contiguous()
    np.testing.assert_allclose(y.detach().numpy(), y_ref.detach().numpy(), rtol=1e-5, atol=1e-5)
    assert cosine(y, conv(x)) > 0.999


def test_conv_token_mode_unbatched_input_and_static():
    conv = torch.nn.Conv2d(4, 6, 3, padding=1)
    x = torch.randn(4, 7, 7)
    for q in (lnn.Int8Conv2d.from_float(conv, act_granularity="token"), lnn.Int8Conv2d.from_float(conv, 0.03)):
        y = q(x)
        assert y.shape == (6, 7, 7)
        assert cosine(y, conv(x)) > 0.999


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64], ids=str)
def test_output_has_input_dtype(dtype):
    lin = torch.nn.Linear(32, 8)
    q = lnn.Int8Linear.from_float(lin)
    x = torch.randn(4, 32)
    y = q(x.to(dtype))
    assert y.dtype == dtype
    assert cosine(y, lin(x)) > 0.99


def test_zero_and_empty_inputs():
    lin = torch.nn.Linear(8, 3)
    for gran in ("tensor", "token"):
        q = lnn.Int8Linear.from_float(lin, act_granularity=gran)
        assert torch.equal(q(torch.zeros(2, 8)), lin.bias.detach().expand(2, 3))
        assert q(torch.zeros(0, 8)).shape == (0, 3)


def test_nonfinite_input_raises():
    q = lnn.Int8Linear.from_float(torch.nn.Linear(4, 2), act_scale=0.1)
    with pytest.raises(NonFiniteError):
        q(torch.tensor([[1.0, float("nan"), 0.0, 0.0]]))


def test_nbytes():
    q = lnn.Int8Linear(64, 32)
    assert q.nbytes == 64 * 32 + 32 * 4 + 32 * 4
    assert lnn.Int8Linear(64, 32, bias=False, act_scale=1.0, weight_granularity="tensor").nbytes == 64 * 32 + 4 + 4
    assert lnn.Int8Conv2d(3, 8, 3).nbytes == 27 * 8 + 8 * 4 + 8 * 4


def test_state_dict_roundtrip():
    x = torch.randn(3, 16)
    xc = torch.randn(1, 2, 6, 6)
    cases = [
        (lnn.Int8Linear.from_float(torch.nn.Linear(16, 4), act_scale=0.04), lnn.Int8Linear(16, 4, act_scale=1.0), x),
        (lnn.Int8Linear.from_float(torch.nn.Linear(16, 4), act_granularity="token"),
         lnn.Int8Linear(16, 4, act_granularity="token"), x),
        (lnn.Int8Conv2d.from_float(torch.nn.Conv2d(2, 3, 3, stride=2)), lnn.Int8Conv2d(2, 3, 3, stride=2), xc),
    ]
    for trained, fresh, inp in cases:
        buf = io.BytesIO()
        torch.save(trained.state_dict(), buf)
        buf.seek(0)
        fresh.load_state_dict(torch.load(buf, weights_only=True))
        assert torch.equal(fresh(inp), trained(inp))
        assert repr(fresh) == repr(trained)


def test_bad_settings_raise_option_errors():
    with pytest.raises(OptionError, match="groups=2"):
        lnn.Int8Conv2d.from_float(torch.nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(OptionError, match="padding_mode='reflect'"):
        lnn.Int8Conv2d(4, 4, 3, padding_mode="reflect")
    with pytest.raises(lowbit.GranularityError, match="act_granularity='tensor'"):
        lnn.Int8Linear(4, 2, act_scale=0.1, act_granularity="token")
    with pytest.raises(lowbit.GranularityError, match="act_granularity 'channel' is not taken here; use tensor or"):
        lnn.Int8Linear(4, 2, act_granularity="channel")
    with pytest.raises(OptionError, match="act_scale"):
        lnn.Int8Linear(4, 2, act_scale=0.0)
    with pytest.raises(lowbit.GranularityError, match="weight_granularity"):
        lnn.Int8Linear(4, 2, weight_granularity="group:2")
    with pytest.raises(InputTypeError, match="floating-point"):
        lnn.Int8Linear(4, 2)(torch.ones(1, 4, dtype=torch.int32))
    with pytest.raises(InputTypeError, match="Linear"):
        lnn.Int8Linear.from_float(torch.nn.Embedding(3, 3))


def test_activation_codes_use_multiply_by_inverse_scale():
    # near-ties where rint(x * f32(1/s)) and rint(x / s) differ: the module follows lowbit.quantize
    s = np.float32(0.1)
    x = ((np.arange(-126, 126) + 0.5) * np.float64(s)).astype(np.float32)
    x = np.nextafter(x, np.float32(-np.inf))
    by_inverse = np.rint(x * (np.float32(1) / s))
    assert (by_inverse != np.rint(x / s)).any()  # the case really discriminates
    codes, _ = lnn.quantize_activations(torch.from_numpy(x).reshape(1, -1), 0.1)
    assert np.array_equal(codes.numpy().reshape(-1), by_inverse)
    qt = lowbit.quantize(x, "int8", scale=s)
    assert np.array_equal(qt.codes, by_inverse)


@pytest.mark.parametrize("m, k, n", [(64, 4096, 48), (3, 1536, 5), (0, 8, 4), (1, 1, 1)])
def test_int8_matmul_is_exact_at_the_extremes(m, k, n):
    """Equal to torch._int_mm (and to an int64 product) with codes at +-127, where float32 would round."""
    g = torch.Generator().manual_seed(k)
    a = (torch.randint(0, 2, (m, k), generator=g, dtype=torch.int8) * 254 - 127).to(torch.int8)
    b = (torch.randint(0, 2, (k, n), generator=g, dtype=torch.int8) * 254 - 127).to(torch.int8)
    a[:, : k // 2] = 127
    b[: k // 2] = 127  # a long run of maximal products: partial sums beyond 2^24
    got = lnn.int8_matmul(a, b)
    assert got.dtype == torch.int32 and got.shape == (m, n)
    assert torch.equal(got.long(), a.long() @ b.long())
    if m >= 17 and k % 8 == 0 and n % 8 == 0:  # the shapes torch._int_mm accepts on CPU
        assert torch.equal(got, torch._int_mm(a, b))


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf"), "big"], ids=repr)
def test_static_activation_scale_must_be_finite_and_positive(scale):
    with pytest.raises(OptionError, match="static activation scale must be a finite float > 0"):
        lnn.quantize_activations(torch.randn(4, 8), scale=scale)


def test_static_activation_scale_must_be_one_usable_number():
    with pytest.raises(OptionError, match=r"must be one number, got shape \(2,\)"):
        lnn.quantize_activations(torch.randn(4, 8), scale=torch.tensor([0.1, 0.2]))
    with pytest.raises(OptionError, match="reciprocal overflows float32"):
        lnn.quantize_activations(torch.randn(4, 8), scale=1e-45)
    codes, s = lnn.quantize_activations(torch.tensor([[0.5, -1.0]]), scale=torch.tensor(0.5))
    assert codes.tolist() == [[1, -2]] and float(s) == 0.5


def test_int8_layer_sizes_are_refused_naming_each():
    with pytest.raises(OptionError, match=r"Int8Linear sizes must be positive ints, got in_features=-1, "
                                          r"out_features=0"):
        lnn.Int8Linear(-1, 0)
    with pytest.raises(OptionError, match=r"Int8Conv2d: in_channels must be a positive int, got 0"):
        lnn.Int8Conv2d(0, 4, 3)
