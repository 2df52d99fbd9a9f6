"""lowbit.model.presets: named schemes per bits/weight budget, in quantize_, the CLI, checkpoints and plans."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lowbit
import lowbit.model as lm
from lowbit import cli
from lowbit.errors import OptionError
from lowbit.io.convert import quantize_checkpoint
from lowbit.model.presets import PRESETS, is_preset, list_presets, preset
from lowbit.plan import parse_candidate


def _net(width: int = 576, out: int = 192) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(width, out), torch.nn.ReLU(), torch.nn.Linear(out, width)).eval()


def _weight_bits(net: torch.nn.Module, summary: lm.Summary) -> float:
    """Stored bits per weight of the quantized layers (the bias stays float and is left out)."""
    weights = sum(m.weight.numel() for m in _net().modules() if isinstance(m, torch.nn.Linear))
    biases = sum(m.bias.numel() * 4 for m in _net().modules() if isinstance(m, torch.nn.Linear))
    return (summary.bytes_after - biases) * 8 / weights


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("calibrated", [False, True])
def test_every_preset_stays_inside_its_budget(name, calibrated):
    net = _net()
    batches = [torch.randn(16, 576)] if calibrated else None
    summary = lm.quantize_(net, name, batches=batches)
    assert {r.scheme for r in summary.rows} == {preset(name, calibrated=calibrated).scheme}
    assert _weight_bits(net, summary) <= PRESETS[name].budget


def test_presets_go_from_most_to_fewest_bits_and_differ_in_form():
    budgets = [p.budget for p in list_presets()]
    assert budgets == sorted(budgets, reverse=True) and len(set(budgets)) == len(budgets)
    assert all(preset(p.name).embeddings is False for p in list_presets())
    assert is_preset(" W4 ") and not is_preset("int4") and not is_preset(4)


def test_quantize_with_a_preset_equals_its_config():
    a, b = _net(), _net()
    lm.quantize_(a, "w3")
    lm.quantize_(b, preset("w3"))
    x = torch.randn(4, 576)
    assert torch.equal(a(x), b(x))


def test_unknown_preset_lists_the_presets():
    with pytest.raises(OptionError, match="presets: w8"):
        preset("w5")
    with pytest.raises(OptionError, match="w8, w4, w3, w2"):
        lm.quantize_(_net(), "w5")


def test_checkpoint_preset_is_the_data_free_form(tmp_path):
    from safetensors.numpy import save_file

    w = np.random.default_rng(1).standard_normal((64, 128)).astype(np.float32)
    save_file({"fc.weight": w}, tmp_path / "m.safetensors")
    assert cli.main(["quantize", str(tmp_path / "m.safetensors"), str(tmp_path / "p.safetensors"),
                     "--preset", "w4", "--quiet"]) == 0
    quantize_checkpoint(tmp_path / "m.safetensors", tmp_path / "e.safetensors", qtype="uint4",
                        granularity="group:32", scale_format="kquant6", algorithm="hqq")
    got, want = lowbit.load(tmp_path / "p.safetensors"), lowbit.load(tmp_path / "e.safetensors")
    assert np.array_equal(got["fc.weight"].dequantize(), want["fc.weight"].dequantize())


def test_checkpoint_preset_refuses_scheme_flags(tmp_path, capsys):
    from safetensors.numpy import save_file

    save_file({"fc.weight": np.ones((8, 64), np.float32)}, tmp_path / "m.safetensors")
    assert cli.main(["quantize", str(tmp_path / "m.safetensors"), str(tmp_path / "o.safetensors"),
                     "--preset", "w4", "--qtype", "int8"]) != 0
    assert "drop --qtype" in capsys.readouterr().err


def test_checkpoint_float_zero_point_equals_quantize(tmp_path):
    from safetensors.numpy import save_file

    w = np.random.default_rng(2).standard_normal((32, 96)).astype(np.float32)
    save_file({"fc.weight": w}, tmp_path / "m.safetensors")
    assert cli.main(["quantize", str(tmp_path / "m.safetensors"), str(tmp_path / "o.safetensors"), "--qtype",
                     "uint4", "--granularity", "group:32", "--scale-format", "float16", "--zero-point", "float",
                     "--quiet"]) == 0
    want = lowbit.quantize(w, "uint4", granularity="group:32", scale_format="float16", zero_point="float")
    got = lowbit.load(tmp_path / "o.safetensors")["fc.weight"]
    assert got.float_zero_point and np.array_equal(got.dequantize(), want.dequantize())
    with pytest.raises(OptionError, match="zero_point='float' needs"):
        quantize_checkpoint(tmp_path / "m.safetensors", tmp_path / "x.safetensors", qtype="int4",
                            zero_point="float")


def test_a_preset_is_a_plan_candidate():
    c = parse_candidate("W2")
    assert c.spec == "w2" and c.config == preset("w2")


def test_checkpoint_hqq_with_float_zero_points_equals_hqq_quantize(tmp_path):
    from safetensors.numpy import save_file

    from lowbit.algorithms import hqq_quantize

    w = np.random.default_rng(3).standard_normal((16, 128)).astype(np.float32)
    save_file({"fc.weight": w}, tmp_path / "m.safetensors")
    quantize_checkpoint(tmp_path / "m.safetensors", tmp_path / "o.safetensors", qtype="uint3", granularity="group:64",
                        scale_format="float16", algorithm="hqq", zero_point="float")
    got = lowbit.load(tmp_path / "o.safetensors")["fc.weight"]
    want = hqq_quantize(w, "uint3", granularity="group:64", scale_format="float16", zero_point="float")
    assert got.float_zero_point and np.array_equal(got.dequantize(), want.dequantize())
