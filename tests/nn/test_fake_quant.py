"""lowbit.nn.fake_quant: the LSQ fake quantizer (lsq_fake_quantize, lsq_init_scale, FakeQuantize).

Forward values are checked against ``lowbit.fake_quantize`` with the same
scale (NumPy kernels); gradients against the paper's autograd formulation
(``grad_scale`` and ``round_pass`` written with ``detach``), not against the
module's own backward; initial scales against NumPy (mean |x|, np.percentile).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import lowbit
from lowbit import PerChannel
from lowbit.errors import GranularityError, InputTypeError, NonFiniteError, OptionError, QTypeError

torch = pytest.importorskip("torch")
lnn = pytest.importorskip("lowbit.nn")

pytestmark = pytest.mark.torch


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


def test_fake_quantize_errors():
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


# --------------------------------------------------------------------------- beyond the moved tests


@pytest.mark.parametrize("qtype", ["int2", "int4", "int8", "int8_full"])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1], ids=["tensor", "axis0", "axis1", "axis2", "axis-1"])
def test_forward_with_ties_on_3d_inputs_equals_lowbit_fake_quantize(qtype, axis):
    """Power-of-two scales and inputs at exact .5 ties of the grid (and beyond it): bit for bit the
    codes and values of lowbit.fake_quantize with the same scale."""
    qt = lowbit.get_qtype(qtype)
    shape = (3, 4, 5)
    n = 1 if axis is None else shape[axis]
    s = 2.0 ** torch.randint(-4, 2, (n,)).float()
    s = s.reshape(()) if axis is None else s
    bshape = [1, 1, 1]
    if axis is not None:
        bshape[axis] = n
    k = torch.randint(qt.qmin - 3, qt.qmax + 3, shape).float()
    k[0, 0, 0] = -0.5  # and one zero
    x = (k + 0.5) * s.reshape(bshape)  # every other value a tie, some beyond the grid
    y = lnn.lsq_fake_quantize(x, s, qt.qmin, qt.qmax, axis=axis)
    gran = lowbit.PerTensor() if axis is None else PerChannel(axis)
    want = lowbit.fake_quantize(x, qtype, granularity=gran, symmetric=True, scale=s.numpy())
    assert torch.equal(y, want)
    even = torch.clamp(torch.round(k + 0.5), qt.qmin, qt.qmax)  # torch.round: half to even
    assert torch.equal(y, even * s.reshape(bshape))


@pytest.mark.parametrize("axis", [1, -1], ids=["axis1", "axis-1"])
def test_gradients_match_the_paper_formulation_on_other_axes(axis):
    qt = lowbit.get_qtype("int4")
    x = (torch.randn(2, 3, 8) * 2).requires_grad_()
    n = x.shape[axis]
    s = (torch.rand(n) * 0.3 + 0.1).requires_grad_()
    w = torch.randn(2, 3, 8)
    g = 1 / math.sqrt(x.numel() / n * qt.qmax)
    (lnn.lsq_fake_quantize(x, s, qt.qmin, qt.qmax, axis=axis) * w).sum().backward()
    x2, s2 = x.detach().clone().requires_grad_(), s.detach().clone().requires_grad_()
    (lsq_reference(x2, s2, qt.qmin, qt.qmax, g, axis % 3) * w).sum().backward()
    assert torch.allclose(x.grad, x2.grad)
    torch.testing.assert_close(s.grad, s2.grad, rtol=1e-4, atol=1e-6)


def test_explicit_grad_scale_is_used():
    qt = lowbit.get_qtype("int3")
    x = torch.randn(5, 7) * 2
    s = torch.tensor(0.3, requires_grad=True)
    lnn.lsq_fake_quantize(x, s, qt.qmin, qt.qmax, grad_scale=0.25).sum().backward()
    s2 = torch.tensor(0.3, requires_grad=True)
    lsq_reference(x, s2, qt.qmin, qt.qmax, 0.25).sum().backward()
    assert s.grad.item() == pytest.approx(s2.grad.item(), rel=1e-5)
    assert s.grad.item() != 0


@pytest.mark.parametrize("qtype", ["int2", "int3", "int8", "int8_full"])
def test_lsq_init_is_twice_mean_abs_over_sqrt_qmax(qtype):
    qmax = lowbit.get_qtype(qtype).qmax
    x = torch.randn(4, 6, 5) * torch.tensor([0.1, 1.0, 10.0, 3.0, 0.5, 2.0]).reshape(1, 6, 1)
    a = np.abs(x.double().numpy())
    per_tensor = lnn.FakeQuantize(qtype).initialize_(x)
    assert per_tensor.scale.item() == pytest.approx(2 * a.mean() / math.sqrt(qmax), rel=1e-6)
    per_channel = lnn.FakeQuantize(qtype, axis=1, channels=6)
    per_channel(x)  # the first forward initialises from its input
    np.testing.assert_allclose(per_channel.scale.detach().numpy(), 2 * a.mean(axis=(0, 2)) / math.sqrt(qmax),
                               rtol=1e-6)
    assert bool(per_channel.initialized)
    x[:, 2] = 0.0  # an all-zero channel gets scale 1
    assert lnn.lsq_init_scale(x, qtype, axis=1)[2].item() == 1.0


@pytest.mark.parametrize("percentile", [99.0, 90.0])
def test_estimator_init_uses_that_estimator_and_its_options(percentile):
    x = torch.randn(3, 2000) * torch.tensor([[1.0], [5.0], [0.2]])
    a = np.abs(x.double().numpy())
    fq = lnn.FakeQuantize("int8", method="percentile", method_options={"percentile": percentile}).initialize_(x)
    assert fq.scale.item() == pytest.approx(np.percentile(a, percentile) / 127, rel=1e-6)
    per_channel = lnn.FakeQuantize("int4", axis=0, channels=3, method="percentile",
                                   method_options={"percentile": percentile}).initialize_(x)
    np.testing.assert_allclose(per_channel.scale.detach().numpy(), np.percentile(a, percentile, axis=1) / 7,
                               rtol=1e-6)
    minmax = lnn.FakeQuantize("int4", axis=0, channels=3, method="minmax").initialize_(x)
    np.testing.assert_allclose(minmax.scale.detach().numpy(), a.max(axis=1) / 7, rtol=1e-6)
    assert bool((per_channel.scale < minmax.scale).all())  # the option was used, not the default range
