"""lowbit.nn quantization-aware training: LSQ fake quantizer, QAT layers, conversion.

Forward values are checked against ``lowbit.fake_quantize`` with the same
scale (NumPy kernels); gradients against the paper's autograd formulation
(``grad_scale`` and ``round_pass`` written with ``detach``), not against the
module's own backward.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

import lowbit
from lowbit import PerChannel
from lowbit.errors import GranularityError, InputTypeError, NonFiniteError, NotCalibratedError, OptionError, QTypeError

torch = pytest.importorskip("torch")
F = torch.nn.functional
lnn = pytest.importorskip("lowbit.nn")

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def lsq_reference(x, s, qmin, qmax, g, axis=None):
    """Esser et al. 2020, Figure 2 (with a per-channel broadcast)."""
    s_scaled = (s - s * g).detach() + s * g
    if axis is not None:
        shape = [1] * x.dim()
        shape[axis] = -1
        s_scaled = s_scaled.view(shape)
    v = torch.clamp(x / s_scaled, qmin, qmax)
    v = (v.round() - v).detach() + v
    return v * s_scaled


QTYPES = ["int2", "int3", "int4", "int8", "int4_full"]


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("axis", [None, 0, 1], ids=["tensor", "axis0", "axis1"])
def test_forward_equals_lowbit_fake_quantize(qtype, axis):
    qt = lowbit.get_qtype(qtype)
    x = torch.randn(6, 5) * 3
    n = 1 if axis is None else x.shape[axis]
    s = torch.rand(n).reshape(() if axis is None else (n,)) * 0.5 + 0.05
    y = lnn.lsq_fake_quantize(x, s, qt.qmin, qt.qmax, axis=axis)
    gran = lowbit.PerTensor() if axis is None else PerChannel(axis)
    want = lowbit.fake_quantize(x, qtype, granularity=gran, symmetric=True, scale=s.numpy())
    assert torch.equal(y, want)


@pytest.mark.parametrize("axis", [None, 0], ids=["tensor", "channel"])
def test_gradients_match_the_paper_formulation(axis):
    qt = lowbit.get_qtype("int3")
    x = (torch.randn(4, 32) * 2).requires_grad_()
    s = torch.full(() if axis is None else (4,), 0.4, requires_grad=True)
    g = 1 / math.sqrt((x.numel() if axis is None else 32) * qt.qmax)
    w = torch.randn(4, 32)
    (lnn.lsq_fake_quantize(x, s, qt.qmin, qt.qmax, axis=axis) * w).sum().backward()
    x2, s2 = x.detach().clone().requires_grad_(), s.detach().clone().requires_grad_()
    (lsq_reference(x2, s2, qt.qmin, qt.qmax, g, axis) * w).sum().backward()
    assert torch.allclose(x.grad, x2.grad)
    assert torch.allclose(s.grad, s2.grad, rtol=1e-4, atol=1e-6)
    assert bool((s.grad != 0).all())


def test_ste_masks_out_of_range_inputs():
    x = torch.tensor([-5.0, -3.0, -1.2, 0.0, 0.7, 3.0, 3.4, 9.0], requires_grad=True)
    y = lnn.lsq_fake_quantize(x, torch.tensor(1.0), -3, 3)
    y.sum().backward()
    assert y.tolist() == [-3.0, -3.0, -1.0, 0.0, 1.0, 3.0, 3.0, 3.0]
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_scale_gradient_known_answer():
    # inside: round(v) - v; outside: qmin / qmax; times g = 1 / sqrt(n * qmax)
    x = torch.tensor([0.3, -5.0, 5.0, 0.6])
    s = torch.tensor(1.0, requires_grad=True)
    lnn.lsq_fake_quantize(x, s, -1, 1).sum().backward()
    want = ((0.0 - 0.3) + (-1.0) + 1.0 + (1.0 - 0.6)) / math.sqrt(4 * 1)
    assert s.grad.item() == pytest.approx(want)


def test_init_rules():
    x = torch.randn(3, 40)
    fq = lnn.FakeQuantize("int4", axis=0, channels=3).initialize_(x)
    want = 2 * np.abs(x.numpy()).mean(axis=1) / math.sqrt(7)
    np.testing.assert_allclose(fq.scale.detach().numpy(), want, rtol=1e-6)
    mm = lnn.FakeQuantize("int8", method="minmax").initialize_(x)
    assert mm.scale.item() == pytest.approx(float(x.abs().max()) / 127, rel=1e-6)
    zero = lnn.FakeQuantize("int4", axis=0, channels=2).initialize_(torch.zeros(2, 5))
    assert zero.scale.tolist() == [1.0, 1.0]
    with pytest.raises(NonFiniteError):
        lnn.FakeQuantize("int4").initialize_(torch.tensor([1.0, float("inf")]))


def test_initialised_once_and_disabled_passthrough():
    fq = lnn.FakeQuantize("int4")
    fq(torch.ones(8))
    s = fq.scale.item()
    fq(torch.ones(8) * 100)
    assert fq.scale.item() == s and bool(fq.initialized)
    off = lnn.FakeQuantize("int2", enabled=False)
    x = torch.randn(3)
    assert off(x) is x and not bool(off.initialized)


def test_half_precision_input():
    fq = lnn.FakeQuantize("int4")
    x = torch.randn(16, dtype=torch.bfloat16, requires_grad=True)
    y = fq(x)
    y.float().sum().backward()
    assert y.dtype == torch.bfloat16 and x.grad.dtype == torch.bfloat16 and fq.scale.grad is not None


def test_qat_layer_scales_receive_gradients():
    qat = lnn.QATLinear.from_float(torch.nn.Linear(16, 8), weight_qtype="int4", act_qtype="int8")
    qat(torch.randn(4, 16)).pow(2).sum().backward()
    assert bool((qat.weight_fake_quant.scale.grad != 0).all())
    assert qat.act_fake_quant.scale.grad.item() != 0
    assert qat.weight.grad.abs().sum() > 0


def test_training_lowers_loss_of_a_2bit_layer():
    x = torch.randn(256, 16)
    y = x @ torch.randn(8, 16).T
    qat = lnn.QATLinear.from_float(torch.nn.Linear(16, 8), weight_qtype="int2")
    s0 = qat.weight_fake_quant.scale.detach().clone()
    opt = torch.optim.Adam(qat.parameters(), lr=1e-2)
    with torch.no_grad():
        loss0 = F.mse_loss(qat(x), y).item()
    for _ in range(300):
        opt.zero_grad()
        loss = F.mse_loss(qat(x), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = F.mse_loss(qat(x), y).item()
    assert final < 0.5 * loss0
    assert not torch.allclose(qat.weight_fake_quant.scale.detach(), s0)
    assert torch.equal(qat.to_quantized()(x), qat(x))  # converted layer keeps what was learned


def _train_a_little(qat, x, steps=20):
    opt = torch.optim.SGD(qat.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        qat(x).pow(2).mean().backward()
        opt.step()


@pytest.mark.parametrize("wq", ["int2", "int4", "int8"])
def test_linear_converts_bit_exactly_to_weight_only(wq):
    qat = lnn.QATLinear.from_float(torch.nn.Linear(16, 8), weight_qtype=wq)
    x = torch.randn(8, 16)
    _train_a_little(qat, x)
    q = qat.to_quantized()
    assert isinstance(q, lnn.WeightOnlyLinear) and q.qtype.name == wq
    assert torch.equal(q(x), qat(x))
    assert torch.equal(q.weight_scale, qat.weight_fake_quant.effective_scale())


def test_linear_converts_to_int8_with_learned_activation_scale():
    qat = lnn.QATLinear.from_float(torch.nn.Linear(32, 8), weight_qtype="int4", act_qtype="int8")
    x = torch.randn(16, 32)
    _train_a_little(qat, x)
    q = qat.to_quantized()
    assert isinstance(q, lnn.Int8Linear)
    assert q.act_scale.item() == qat.act_fake_quant.effective_scale().item()
    assert int(q.weight_t.abs().max()) <= 7  # int4 codes in int8 storage
    torch.testing.assert_close(q(x), qat(x).detach(), rtol=1e-4, atol=1e-5)
    assert isinstance(qat.to_quantized(weight_only=True), lnn.WeightOnlyLinear)


CONVS = [{"kernel_size": 3, "padding": 1}, {"kernel_size": 3, "stride": 2, "dilation": 2, "groups": 2}]


@pytest.mark.parametrize("cfg", CONVS, ids=["pad", "stride-dilation-groups"])
def test_conv_converts_bit_exactly_to_weight_only(cfg):
    qat = lnn.QATConv2d.from_float(torch.nn.Conv2d(4, 6, **cfg), weight_qtype="int3")
    x = torch.randn(2, 4, 9, 9)
    _train_a_little(qat, x, steps=5)
    q = qat.to_quantized()
    assert isinstance(q, lnn.WeightOnlyConv2d)
    assert torch.equal(q(x), qat(x))


def test_conv_converts_to_int8():
    qat = lnn.QATConv2d.from_float(torch.nn.Conv2d(3, 4, 3, padding=1), weight_qtype="int8", act_qtype="int8")
    x = torch.randn(2, 3, 8, 8)
    _train_a_little(qat, x, steps=5)
    q = qat.to_quantized()
    assert isinstance(q, lnn.Int8Conv2d)
    torch.testing.assert_close(q(x), qat(x).detach(), rtol=1e-4, atol=1e-5)
    grouped = lnn.QATConv2d(4, 4, 3, groups=2, act_qtype="int8")
    grouped(torch.randn(1, 4, 5, 5))
    with pytest.raises(OptionError, match="groups=1"):
        grouped.to_quantized()


def test_state_dict_roundtrip():
    qat = lnn.QATLinear.from_float(torch.nn.Linear(16, 8), weight_qtype="int2", act_qtype="int8")
    x = torch.randn(4, 16)
    _train_a_little(qat, x, steps=3)
    buf = io.BytesIO()
    torch.save(qat.state_dict(), buf)
    buf.seek(0)
    fresh = lnn.QATLinear(16, 8, weight_qtype="int2", act_qtype="int8")
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(fresh(x), qat(x))  # loaded scales are used, not re-initialised from x
    assert repr(fresh) == repr(qat)


def test_errors():
    for bad in ("uint4", "int16", "int1"):
        with pytest.raises(QTypeError, match="signed integer formats of 2 to 8 bits"):
            lnn.FakeQuantize(bad)
    with pytest.raises(OptionError, match="axis and channels"):
        lnn.FakeQuantize("int4", axis=0)
    with pytest.raises(OptionError, match="method must be 'lsq' or one of"):
        lnn.FakeQuantize("int4", method="magic")
    with pytest.raises(OptionError, match="no option"):
        lnn.FakeQuantize("int4", method="percentile", method_options={"percentil": 99.0})
    with pytest.deprecated_call(match="FakeQuantize\\(method=...\\)"):
        assert lnn.FakeQuantize("int4", init="mse").method == "mse"
    with pytest.raises(GranularityError, match=r"channels=x\.shape"):
        lnn.FakeQuantize("int4", axis=0, channels=3)(torch.randn(4, 2))
    with pytest.raises(InputTypeError, match="floating-point"):
        lnn.FakeQuantize("int4")(torch.ones(3, dtype=torch.int64))
    with pytest.raises(InputTypeError, match="floating-point"):
        lnn.QATLinear(2, 2)(torch.ones(1, 2, dtype=torch.int64))
    with pytest.raises(OptionError, match="padding_mode"):
        lnn.QATConv2d.from_float(torch.nn.Conv2d(2, 2, 3, padding_mode="replicate"))
    with pytest.raises(InputTypeError, match="Linear"):
        lnn.QATLinear.from_float(torch.nn.Conv2d(2, 2, 3))
    with pytest.raises(NotCalibratedError, match="forward pass"):
        lnn.QATLinear(4, 2, act_qtype="int8").to_quantized()
    qat4 = lnn.QATLinear(4, 2, act_qtype="int4")
    qat4(torch.randn(2, 4))
    with pytest.raises(OptionError, match="weight_only=True"):
        qat4.to_quantized()
    assert isinstance(qat4.to_quantized(weight_only=True), lnn.WeightOnlyLinear)
