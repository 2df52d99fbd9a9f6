"""lowbit.nn.qat: QAT layers (QATLinear, QATConv2d), their training and their conversion.

A converted layer must reproduce the QAT forward bit for bit (weight-only) or
closely (int8 activations); the LSQ fake quantizer itself is tested in
test_fake_quant.py.
"""

from __future__ import annotations

import io

import pytest

from lowbit.errors import InputTypeError, NotCalibratedError, OptionError

torch = pytest.importorskip("torch")
F = torch.nn.functional
lnn = pytest.importorskip("lowbit.nn")

pytestmark = pytest.mark.torch


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
def test_linear_converts_bit_exactly_to_weight_only(wq, assert_close):
    qat = lnn.QATLinear.from_float(torch.nn.Linear(16, 8), weight_qtype=wq)
    x = torch.randn(8, 16)
    _train_a_little(qat, x)
    q = qat.to_quantized()
    assert isinstance(q, lnn.WeightOnlyLinear) and q.qtype.name == wq
    assert torch.equal(q.dequantized_weight(), qat.weight_fake_quant(qat.weight).detach())  # the same weight
    assert_close(q(x), qat(x))  # the fused kernels sum in another order than F.linear
    assert torch.equal(q.weight_scale, qat.weight_fake_quant.effective_scale())


def test_linear_converts_to_int8_with_learned_activation_scale():
    qat = lnn.QATLinear.from_float(torch.nn.Linear(32, 8), weight_qtype="int4", act_qtype="int8")
    x = torch.randn(16, 32)
    _train_a_little(qat, x)
    q = qat.to_quantized()
    assert isinstance(q, lnn.Int8Linear)
    assert q.act_scale.item() == qat.act_fake_quant.effective_scale().item()
    assert int(q.weight.abs().max()) <= 7  # int4 codes in int8 storage
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


def test_bad_layer_sizes_are_refused():
    with pytest.raises(OptionError, match=r"QATLinear sizes must be positive ints, got in_features=-1"):
        lnn.QATLinear(-1, 4)
    with pytest.raises(OptionError, match=r"QATConv2d: kernel_size must be an int >= 1 or a pair of them, got \(3,\)"):
        lnn.QATConv2d(3, 4, (3,))
