"""lowbit.report.summary and ReportData's choices: the best scheme under each size, the worst layers and why,
the terminal lines."""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit.metrics import Scheme
from lowbit.report import ModelResult, ReportData, short_summary
from lowbit.report.summary import best_under_each_size, outlier_ratio, worst_layers


@pytest.fixture(scope="module")
def data() -> ReportData:
    rng = np.random.default_rng(0)
    tensors = {f"t{i}": rng.standard_normal((8, 128)).astype(np.float32) for i in range(4)}
    tensors["t2"][3, 7] = 60.0  # outlier-dominated
    schemes = [Scheme("int8", "channel"), Scheme("int4", "channel"), Scheme("int4", "tensor")]
    rows = [r for n, w in tensors.items() for r in lowbit.compare(w, schemes, name=n).rows]
    d = ReportData("t", rows)
    d.weights = {n: tensors[n] for n in d.worst_tensors(2)}
    return d


def test_worst_tensor_is_the_outlier_one_and_explained(data: ReportData) -> None:
    assert data.worst_tensors(1) == ["t2"]
    findings = {f.layer: f for f in worst_layers(data)}
    t2 = findings["t2"]
    assert t2.ratio == pytest.approx(outlier_ratio(data.weights["t2"])) and t2.ratio > 10
    assert t2.hi == 60.0 and "Outliers" in t2.sentence()
    median = float(np.median([r.sqnr_db for r in data.rows if r.scheme == t2.scheme]))
    assert t2.below_median_db == pytest.approx(median - t2.sqnr_db)
    other = next(f for n, f in findings.items() if n != "t2")
    assert "No strong outliers" in other.sentence()


def test_best_under_each_size_walks_the_front(data: ReportData) -> None:
    lines = best_under_each_size(data)
    # per-tensor int4 is smallest; per-channel int4 beats it at a few more bits; int8 beats both
    assert [line.split(": ", 1)[1].split(" (")[0] for line in lines] == [
        "int4 tensor sym", "int4 channel sym", "int8 channel sym"]


def test_short_summary_one_line_per_scheme(data: ReportData) -> None:
    lines = short_summary(data).splitlines()
    assert len(lines) == len(data.schemes)
    for line, scheme in zip(lines, data.schemes, strict=True):
        mine = [r for r in data.rows if r.scheme == scheme]
        worst = min(mine, key=lambda r: r.sqnr_db)
        bits = 8 * sum(r.nbytes for r in mine) / sum(r.numel for r in mine)
        assert line.startswith(scheme) and f"{bits:.2f} bits/w" in line and f"worst {worst.tensor} " in line


def test_model_metric_drives_the_curve() -> None:
    from types import SimpleNamespace as Rung

    rungs = [Rung(name="fp32", nbytes=1000, metrics={"acc": 0.99}), Rung(name="W8", nbytes=250, metrics={"acc": 0.99}),
             Rung(name="W4", nbytes=125, metrics={"acc": 0.97}), Rung(name="W4b", nbytes=130, metrics={"acc": 0.95})]
    models = ModelResult.from_rungs(rungs)
    assert [m.bits_per_weight for m in models] == [32.0, 8.0, 4.0, 4.16]
    d = ReportData("m", [], models=models, metric="acc")
    assert [line.split(": ")[1] for line in best_under_each_size(d)] == ["W4 (acc 0.97).", "W8 (acc 0.99)."]
    with pytest.raises(lowbit.errors.OptionError):
        ModelResult.from_rungs([])
