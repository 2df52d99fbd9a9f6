"""lowbit.model._calibrate (and _observed): Static's prepare -> calibrate -> convert, in order, on Net.

Known answers: the float model's outputs (integer layers must stay close to them) and the step order."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lowbit  # noqa: E402
import lowbit.model as lm  # noqa: E402


def test_dynamic_and_static_compute_in_integers(net, net_inputs):
    ref = copy.deepcopy(net)
    dyn = copy.deepcopy(net)
    lm.quantize_(dyn, lm.Dynamic(act_granularity="token"), include=["encoder.*", "head"])
    lm.quantize_(net, lm.Static(), include=["encoder.*", "head", "conv"])
    with pytest.raises(lowbit.ModelError, match="convert before calibrate: observers of"):
        lm.convert(net)
    batches = [net_inputs(16, seed) for seed in range(4)]
    with pytest.raises(lowbit.ModelError, match="training mode"):
        lm.calibrate(net.train(), batches, progress=False)
    assert lm.calibrate(net.eval(), batches, progress=False) == 4
    summary = lm.convert(net)
    assert [r.name for r in summary.rows] == ["conv", "encoder.0", "encoder.2", "head"]
    ids, img = net_inputs(32, 9)
    with torch.no_grad():
        want = ref(ids, img)
        for m in (net, dyn):
            assert nn.functional.cosine_similarity(m(ids, img), want).mean() > 0.99


def test_calibrate_before_prepare(net, net_inputs):
    with pytest.raises(lowbit.ModelError, match="calibrate before prepare"):
        lm.calibrate(net, [net_inputs()], progress=False)
    with pytest.raises(lowbit.ModelError, match="run quantize_"):
        lm.convert(net)
