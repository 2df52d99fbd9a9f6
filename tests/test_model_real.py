"""Acceptance on real pretrained models that ship offline: the MNIST CNN and all-MiniLM-L6-v2.

The ladders are the ones `make demo` prints (scripts/demo_models.py), so the
figures asserted here are the figures a user sees.
"""

from __future__ import annotations

import os
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.model

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "scripts"))


def _by_name(rungs):
    return {r.name: r for r in rungs}


@pytest.fixture(scope="module")
def mnist():
    from demo_models import QAT_STEPS, mnist_ladder

    return _by_name(mnist_ladder(QAT_STEPS))


@pytest.fixture(scope="module")
def minilm():
    from demo_models import minilm_ladder

    return _by_name(minilm_ladder())


def _acc(rung):
    return rung.metrics["accuracy %"]


def test_mnist_int8_within_0_3_points(mnist):
    fp32 = _acc(mnist["fp32"])
    assert fp32 == pytest.approx(99.05, abs=0.005)
    assert _acc(mnist["W8 channel"]) >= fp32 - 0.3
    assert _acc(mnist["W8A8 static (lowbit)"]) >= fp32 - 0.3
    assert _acc(mnist["W8A8 static (lowbit)"]) >= _acc(mnist["W8A8 static (torch.ao x86)"])
    assert mnist["W8 channel"].nbytes < mnist["fp32"].nbytes / 3.5


def test_mnist_low_bits_and_qat_recovery(mnist):
    fp32 = _acc(mnist["fp32"])
    w4, w3, w2 = (_acc(mnist[f"W{b} channel"]) for b in (4, 3, 2))
    assert w4 >= fp32 - 0.5 and min(w4, w3) > w2  # (rounding noise may even gain a few test images)
    qat = next(r for name, r in mnist.items() if name.startswith("W2 channel QAT"))
    lost = fp32 - w2
    assert lost > 1.0, "W2 PTQ should lose accuracy for QAT to recover"
    assert _acc(qat) - w2 >= 0.9 * lost


def test_minilm_ladder(minilm):
    ch, ten, g32 = minilm["W8 channel"], minilm["W8 tensor"], minilm["W4 group:32 (uint4 affine)"]
    assert ch.metrics["mean cos"] >= 0.999
    assert ten.metrics["mean cos"] < ch.metrics["mean cos"] and ten.metrics["min cos"] < ch.metrics["min cos"]
    # Per weight (see `make demo`'s first table) the FFN down projections (output.dense) carry the
    # outliers; through the network the worst output is an attention or FFN output projection.
    assert ten.worst_layer.endswith("output.dense"), ten.worst_layer
    assert g32.metrics["mean cos"] >= 0.95
    static = minilm["W8A8 static (lowbit)"]
    assert 0.5 < static.metrics["mean cos"] <= 1.0
