"""plan_model end to end on a tiny model: measured errors, budgets, applying the plan."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

import lowbit.model as lm  # noqa: E402
from lowbit.errors import ModelError, OptionError  # noqa: E402
from lowbit.plan import load_plan, measure_sensitivity, parse_candidates, plan_from_table, plan_model  # noqa: E402

CANDIDATES = "int8,int4:g16,int2:g16"


def relative_mse(model, reference, batches):
    """The planner's mse metric computed independently: sum of squared output error over float energy."""
    with torch.no_grad():
        err = sum(float(((model(x).double() - reference(x).double()) ** 2).sum()) for x in batches)
        energy = sum(float((reference(x).double() ** 2).sum()) for x in batches)
    return err / energy


def test_measured_error_is_the_model_output_error_of_that_layer_alone(tiny, batches):
    """Every measured number equals quantize_ of that one layer followed by a full, uncached model run."""
    cands = parse_candidates(CANDIDATES)
    table = measure_sensitivity(tiny, cands, batches, metric="mse", mode="measured")
    assert [r.name for r in table.layers] == ["inp", "blocks.0.up", "blocks.0.down", "blocks.1.up",
                                              "blocks.1.down", "blocks.2.up", "blocks.2.down", "head"]
    assert not table.notes  # the block cache reproduced the float output
    for row in table.layers[::3]:
        for j, c in enumerate(cands):
            q = copy.deepcopy(tiny)
            lm.quantize_(q, c.config, include=[row.name])
            per_batch = sum(relative_mse(q, tiny, [x]) for x in batches) / len(batches)
            assert row.errors[j] == pytest.approx(per_batch, rel=1e-6), (row.name, c.spec)
            assert row.bytes[j] == lm.size_report(q).total_bytes - lm.size_report(tiny).total_bytes \
                + row.weights * 4  # the layer's weight bytes as stored (bias unchanged)


def test_model_left_unchanged(tiny, batches):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    plan_model(tiny, CANDIDATES, batches, budget_bits=5.0, metric="mse")
    after = tiny.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_anchored_predicts_from_the_measured_anchor(tiny, batches):
    cands = parse_candidates(CANDIDATES)
    anchored = measure_sensitivity(tiny, cands, batches, metric="mse")
    measured = measure_sensitivity(tiny, cands, batches, metric="mse", mode="measured")
    for a, m in zip(anchored.layers, measured.layers, strict=True):
        assert a.measured == [False, False, True]  # int2 has the largest layer-output error
        assert a.errors[2] == pytest.approx(m.errors[2], rel=1e-9)
        assert a.errors[0] < a.errors[1] < a.errors[2]
        ratio = a.output_errors[1] / a.output_errors[2]
        assert a.errors[1] == pytest.approx(a.errors[2] * ratio, rel=1e-9)


@pytest.mark.parametrize("budget", [4.1, 4.6, 5.5, 7.0, 9.0])
def test_budget_is_met_and_plan_applies(tiny, batches, tmp_path, budget):
    cands = parse_candidates(CANDIDATES)
    table = measure_sensitivity(tiny, cands, batches, metric="mse", mode="measured")
    plan = plan_from_table(table, budget_bits=budget)
    assert plan.bits_per_weight <= budget
    plan.save(tmp_path / "plan.json")
    q = copy.deepcopy(tiny)
    summary = lm.quantize_(q, str(tmp_path / "plan.json"))
    schemes = {row.name: row.scheme for row in summary.rows}
    for name, choice in plan.layers.items():
        assert schemes[name].startswith(load_plan(tmp_path / "plan.json").config_for(name).scheme)
        assert q.get_submodule(name).nbytes - q.get_submodule(name).bias.numel() * 4 == choice.bytes
    assert relative_mse(q, tiny, batches) >= 0


def test_more_budget_never_predicts_more_error(tiny, batches):
    table = measure_sensitivity(tiny, parse_candidates(CANDIDATES), batches, metric="mse", mode="measured")
    errors = [plan_from_table(table, budget_bits=b).predicted_error for b in (4.1, 4.5, 5.0, 6.0, 8.5)]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < errors[0]


def test_byte_budget(tiny, batches):
    plan = plan_model(tiny, CANDIDATES, batches, budget_bytes=9000, metric="mse")
    assert plan.total_bytes <= 9000 and plan.budget_bytes == 9000


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"budget_bits": 1.0}, "below the cheapest plan"),
    ({"budget_bytes": 100}, "below the cheapest plan"),
    ({}, "exactly one budget"),
    ({"budget_bits": 4.0, "budget_bytes": 100}, "exactly one budget"),
    ({"budget_bits": float("nan")}, "finite number"),
    ({"budget_bits": 4.0, "metric": "psnr"}, "metric must be"),
    ({"budget_bits": 4.0, "mode": "guess"}, "mode must be"),
])
def test_bad_budgets_and_options(tiny, batches, kwargs, match):
    with pytest.raises(OptionError, match=match):
        plan_model(tiny, CANDIDATES, batches, **{"metric": "mse", **kwargs})


def test_bad_candidate_spec_fails_before_measuring(tiny, batches):
    with pytest.raises(OptionError, match="int4:bogus"):
        plan_model(tiny, "int8,int4:bogus", batches, budget_bits=4.0)


def test_plan_naming_a_missing_layer(tiny, batches, tmp_path):
    plan = plan_model(tiny, "int8,int4:g16", batches, budget_bits=7.0, metric="mse")
    plan.save(tmp_path / "plan.json")
    other = torch.nn.Sequential(torch.nn.Linear(8, 8))
    with pytest.raises(ModelError, match="matches no module"):
        lm.quantize_(other, tmp_path / "plan.json")


def test_training_mode_and_no_batches(tiny, batches):
    with pytest.raises(ModelError, match="at least one"):
        plan_model(tiny, "int8", [], budget_bits=9.0)
    tiny.train()
    with pytest.raises(ModelError, match="eval mode"):
        plan_model(tiny, "int8", batches, budget_bits=9.0)


def test_tied_weight_is_left_out(batches):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)).eval()
    net[1].weight = net[0].weight
    table = measure_sensitivity(net, parse_candidates("int8"), batches, metric="mse")
    assert [r.name for r in table.layers] == ["2"]
    assert any("shared with 1" in n for n in table.notes)
