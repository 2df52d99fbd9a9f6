"""lowbit.model.ladder: run_ladder and render_ladder."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lowbit.model as lm  # noqa: E402


def test_ladder_renders_every_rung(net, net_inputs):
    ids, img = net_inputs()

    def quality(m: nn.Module) -> dict[str, float]:
        with torch.no_grad():
            return {"cos": float(nn.functional.cosine_similarity(m(ids, img), net(ids, img)).mean())}

    rungs = lm.run_ladder(net, [("W8", lambda m: lm.quantize_(m, lm.WeightOnly("int8")))], quality, [(ids, img)])
    text = lm.render_ladder(rungs, "title")
    assert text.startswith("title") and "W8" in text and rungs[1].worst_layer
