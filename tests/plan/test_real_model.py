"""The planner on all-MiniLM-L6-v2 (one block, a few sentences: kept small)."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.mark.model
def test_minilm_last_block(tmp_path):
    import lowbit.model as lm
    from lowbit.plan import plan_model
    from lowbit.plan.subjects import load_subject, pooled_embedding

    subject = load_subject("minilm", n_calibration=8)
    plan = plan_model(subject.model, "int8,int4:g32,int2:g32", subject.batches, budget_bits=5.0,
                      metric=subject.metric, mode="measured", include=["encoder.layer.5.*"], output=subject.output,
                      progress=False)
    assert len(plan.layers) == 6 and plan.bits_per_weight <= 5.0
    for name, row in plan.sensitivity.items():  # fewer bits, more error, on every layer of the real model
        assert row["int8"]["error"] < row["int4:g32"]["error"] < row["int2:g32"]["error"], name
    plan.save(tmp_path / "plan.json")
    q = copy.deepcopy(subject.model)
    lm.quantize_(q, tmp_path / "plan.json")
    batch = subject.batches[0]
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(pooled_embedding(q, batch), pooled_embedding(subject.model, batch))
    assert float(cos.mean()) > 0.9
