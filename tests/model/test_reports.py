"""lowbit.model.reports: size_report counts the packed bytes, error_report refuses what it cannot compare."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

import lowbit  # noqa: E402
import lowbit.model as lm  # noqa: E402


def test_size_report_counts_packed_bytes(net):
    before = lm.size_report(net).total_bytes
    floats = sum(p.numel() * 4 for p in net.parameters())
    assert before == floats
    lm.quantize_(net, lm.WeightOnly("int4"), include=["encoder.*"])
    after = lm.size_report(net)
    w = net.encoder[0]
    assert after.total_bytes < before and "total" in str(after)
    assert w.nbytes >= 64 * 32 // 2


def test_error_report_needs_eval_and_a_difference(net, net_inputs):
    with pytest.raises(lowbit.ModelError, match="same layer types"):
        lm.error_report(net, copy.deepcopy(net), [net_inputs()])
    with pytest.raises(lowbit.ModelError, match="training mode"):
        lm.error_report(net.train(), copy.deepcopy(net), [net_inputs()])
