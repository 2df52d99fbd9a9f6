"""Plan JSON files: round trip, the scheme lookup for checkpoint tensors, refused files."""

from __future__ import annotations

import json

import pytest

from lowbit.errors import FileFormatError
from lowbit.plan import LayerChoice, Plan, load_plan


def make_plan() -> Plan:
    layers = {"model.layers.0.mlp.up_proj": LayerChoice("int4:g32", 80, 256, 0.5),
              "model.layers.0.mlp.down_proj": LayerChoice("float", 1024, 256, 0.0),
              "odd[name]*": LayerChoice("int2:g16:float16", 48, 128, 1.5)}
    sens = {"model.layers.0.mlp.up_proj": {"int4:g32": {"bytes": 80, "error": 0.5, "measured": True}}}
    return Plan(layers, ["float", "int4:g32", "int2:g16:float16"], 4.0, None, "kl", sens)


def test_round_trip(tmp_path):
    plan = make_plan()
    plan.save(tmp_path / "p.json")
    back = load_plan(tmp_path / "p.json")
    assert back == plan
    assert back.bits_per_weight == pytest.approx(8 * (80 + 1024 + 48) / 640)
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]  # no temporary left


def test_document_records_budget_and_version(tmp_path):
    import lowbit

    make_plan().save(tmp_path / "p.json")
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["budget"] == {"bits_per_weight": 4.0, "bytes": None}
    assert doc["lowbit_version"] == lowbit.__version__
    assert doc["layers"]["model.layers.0.mlp.up_proj"]["scheme"]["granularity"] == "group:32"
    assert doc["predicted_error"] == pytest.approx(2.0)


def test_scheme_for_checkpoint_tensors():
    plan = make_plan()
    up = plan.scheme_for("model.layers.0.mlp.up_proj.weight")
    assert up == {"qtype": "int4", "granularity": "group:32", "symmetric": None, "scale_format": None,
                  "algorithm": "rtn", "zero_point": "int"}
    assert plan.scheme_for("model.layers.0.mlp.up_proj.bias") is None
    assert plan.scheme_for("model.layers.0.mlp.down_proj.weight") is None  # kept float
    assert plan.scheme_for("model.norm.weight") is None  # not planned
    assert plan.scheme_for("odd[name]*.weight")["scale_format"] == "float16"


def test_patterns_match_only_their_layer():
    import fnmatch

    patterns = list(make_plan())
    assert [p for p in patterns if fnmatch.fnmatchcase("odd[name]*", p)] == [patterns[2]]
    assert not fnmatch.fnmatchcase("oddnname]xyz", patterns[2])


@pytest.mark.parametrize(("text", "match"), [
    ("not json", "cannot read"),
    ("[1, 2]", "not a lowbit plan"),
    ('{"format": "lowbit-plan", "version": 99}', "version 99"),
    ('{"format": "lowbit-plan", "version": 1, "budget": {}, "sensitivity": {}, "candidates": [], "metric": "kl",'
     ' "layers": {"a": {"candidate": "int4"}}}', "'bytes'"),
    ('{"format": "lowbit-plan", "version": 1, "budget": {}, "sensitivity": {}, "candidates": [], "metric": "kl",'
     ' "layers": {"a": {"candidate": "int99", "bytes": 1, "weights": 1, "error": 0}}}', "int99"),
])
def test_bad_files_are_refused(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(FileFormatError, match=match):
        load_plan(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileFormatError, match="cannot read"):
        load_plan(tmp_path / "none.json")
    with pytest.raises(FileFormatError, match="does not exist"):
        make_plan().save(tmp_path / "no" / "p.json")
