"""lowbit.report.models: each scheme on a copy of a model, per-layer weight error, model metric, activations."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

import lowbit.model as lm  # noqa: E402
from lowbit.errors import ModelError, OptionError  # noqa: E402
from lowbit.report import Evaluator, html, model_data  # noqa: E402


def make_net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).eval()
    with torch.no_grad():
        net[0].weight[0, 0] = 3.0  # an outlier in the first layer
    return net


BATCHES = [torch.randn(16, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)]


def output_cosine(reference: torch.nn.Module):
    def metric(m: torch.nn.Module) -> float:
        with torch.no_grad():
            a, b = reference(BATCHES[0]).flatten(), m(BATCHES[0]).flatten()
        return float(a @ b / (a.norm() * b.norm()))
    return metric


def sqnr_db(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.astype(np.float64), y.astype(np.float64)
    return 10 * math.log10(float((x * x).sum()) / float(((x - y) ** 2).sum()))


def test_layers_sizes_and_metric() -> None:
    net = make_net()
    before = copy.deepcopy(net.state_dict())
    data = model_data(net, {"w8": lm.WeightOnly("int8"), "w4": lm.WeightOnly("int4", "group:16")},
                      Evaluator(output_cosine(net), BATCHES, name="output cosine"))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the float model is untouched
    assert data.tensors == ["0", "2"] and data.schemes == ["w8", "w4"]
    assert [m.scheme for m in data.models] == ["fp32", "w8", "w4"]
    assert data.models[0].bits_per_weight == 32.0 and data.models[0].metrics["output cosine"] == pytest.approx(1.0)
    assert data.models[1].metrics["output cosine"] > data.models[2].metrics["output cosine"] > 0.9
    # per-layer numbers against the layer quantized on its own
    alone = copy.deepcopy(net)
    lm.quantize_(alone, lm.WeightOnly("int4", "group:16"))
    for row in (r for r in data.rows if r.scheme == "w4"):
        w = net.get_submodule(row.tensor).weight.detach().numpy()
        deq = alone.get_submodule(row.tensor).dequantized_weight().numpy()
        assert row.sqnr_db == pytest.approx(sqnr_db(w, deq), rel=1e-9)
    assert set(data.activations) == set(data.weights) and data.activations["0"].size == 16 * 32
    assert data.range_qtype == "int4"


def test_smoothquant_layers_are_compared_as_they_compute() -> None:
    """A SmoothQuant layer stores W * s; without dividing s back its 'error' would be the smoothing itself."""
    net = make_net()
    data = model_data(net, {"sq": lm.Dynamic(smoothquant=0.5)}, Evaluator(output_cosine(net), BATCHES))
    assert min(r.sqnr_db for r in data.rows) > 30


def test_static_config_is_calibrated_and_converted(tmp_path: Path) -> None:
    net = make_net()
    out = html(net, tmp_path / "m.html", {"static": lm.Static(), "w4 via callable":
                                          lambda m: lm.quantize_(m, lm.WeightOnly("int4"))},
               evaluator=Evaluator(output_cosine(net), BATCHES, name="output cosine"))
    page = out.read_text()
    assert "Whole model, per scheme" in page and page.count("<h2>") >= 6
    assert sorted(p.name for p in (tmp_path / "m_files").iterdir()) == [
        "activations_1.png", "activations_2.png", "error_vs_bits.png", "histogram_1.png", "histogram_2.png",
        "sqnr_by_layer.png"]


def test_refusals() -> None:
    net = make_net()
    with pytest.raises(OptionError, match="needs calibration batches"):
        model_data(net, [lm.WeightOnly("int4", algorithm="gptq")])
    with pytest.raises(OptionError, match="at least one scheme"):
        model_data(net, [])
    with pytest.raises(ModelError, match="quantized no layer"):
        model_data(net, {"nothing": lambda m: None})
    with pytest.raises(ModelError, match="eval mode"):
        model_data(make_net().train(), [lm.WeightOnly("int8")])


def test_plan_file_is_one_more_scheme(tmp_path: Path) -> None:
    plan_api = pytest.importorskip("lowbit.plan")
    net = make_net()
    plan = plan_api.Plan({"0": plan_api.LayerChoice("int8", 2048, 2048, 0.0),
                          "2": plan_api.LayerChoice("int4:g16", 320, 512, 0.1)}, ["int8", "int4:g16"], 6.0, None, "mse")
    plan.save(tmp_path / "plan.json")
    data = model_data(net, [lm.WeightOnly("int8")], plan=tmp_path / "plan.json")
    assert data.schemes == ["W8 int8 channel", "plan (plan.json)"]
    mine = {r.tensor: (r.qtype, r.granularity) for r in data.rows if r.scheme == "plan (plan.json)"}
    assert mine == {"0": ("int8", "channel"), "2": ("int4", "group:16")}
