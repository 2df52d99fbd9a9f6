"""lowbit.nn._smooth: SmoothedInput, the per-input-channel divisor of smoothed layers."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lowbit  # noqa: E402


def test_smoothquant_preserves_the_float_product():
    """Int8Linear with smoothing on an exactly representable case: x/s and W*s stay exact."""
    lin = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0, -1.0, 0.5], [0.25, -0.5, 1.0, 1.0]]))
    s = torch.tensor([2.0, 0.5, 1.0, 4.0])
    q = lowbit.nn.Int8Linear.from_float(lin, smooth_scale=s, weight_granularity="tensor")
    assert torch.equal(q.smooth_scale, s)
    x = torch.tensor([[2.0, -1.0, 0.0, 4.0]])
    torch.testing.assert_close(q(x), lin(x), rtol=0.02, atol=0.02)


def test_set_smooth_scale_errors_name_the_fix():
    with pytest.raises(lowbit.OptionError, match="smooth=True"):
        lowbit.nn.WeightOnlyLinear(4, 2).set_smooth_scale([1.0] * 4)
    with pytest.raises(lowbit.OptionError, match="finite and > 0"):
        lowbit.nn.WeightOnlyLinear(4, 2, smooth=True).set_smooth_scale([1.0, 0.0, 1.0, 1.0])
