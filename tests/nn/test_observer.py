"""lowbit.nn.Observer: an identity module that calibrates a lowbit range estimator."""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit.calibration import MinMax, Percentile
from lowbit.errors import NotCalibratedError, OptionError

torch = pytest.importorskip("torch")
lnn = pytest.importorskip("lowbit.nn")

pytestmark = pytest.mark.torch


def test_returns_input_and_matches_the_estimator_fed_directly():
    torch.manual_seed(0)
    batches = [torch.randn(4, 8, requires_grad=True) for _ in range(3)]
    obs = lnn.Observer("percentile", method_options={"percentile": 99.0})
    for b in batches:
        assert obs(b) is b
    ref = Percentile(percentile=99.0).fit([b.detach().numpy() for b in batches])
    assert obs.clip_range() == ref.clip_range()
    s, z = obs.qparams("uint8")
    rs, rz = ref.qparams("uint8")
    assert np.array_equal(s, rs) and np.array_equal(z, rz)


def test_per_channel_instance_and_known_answer():
    obs = lnn.Observer(MinMax(axis=1))
    obs(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
    lo, hi = obs.clip_range()
    assert lo.tolist() == [1.0, -2.0] and hi.tolist() == [3.0, 0.5]
    s, z = obs.qparams("int8")
    assert s.tolist() == pytest.approx([3 / 127, 2 / 127]) and z.tolist() == [0, 0]


def test_not_calibrated_and_disabled():
    obs = lnn.Observer()
    with pytest.raises(NotCalibratedError):
        obs.qparams("int8")
    off = lnn.Observer(enabled=False)
    off(torch.ones(3))
    with pytest.raises(NotCalibratedError):
        off.clip_range()


def test_bad_estimators():
    with pytest.raises(OptionError, match="registered estimators"):
        lnn.Observer("nope")
    with pytest.raises(OptionError, match="no option"):
        lnn.Observer("minmax", {"percentile": 3})
    with pytest.raises(OptionError, match="instance"):
        lnn.Observer(MinMax(), {"axis": 0})
    with pytest.raises(OptionError, match="name or a RangeEstimator"):
        lnn.Observer(42)
    with pytest.raises(lowbit.InputTypeError):
        lnn.Observer()(torch.ones(3, dtype=torch.int32))


def test_deprecated_spellings_still_work():
    with pytest.deprecated_call(match="Observer\\(method, method_options"):
        obs = lnn.Observer("percentile", percentile=90.0)
    with pytest.deprecated_call(match="Observer\\(method=...\\)"):
        assert isinstance(lnn.Observer(estimator="mse").estimator, lowbit.calibration.MSE)
    obs(torch.arange(101.0))
    with pytest.deprecated_call(match="clip_range"):
        assert obs.range_("uint8") == (10.0, 90.0)
