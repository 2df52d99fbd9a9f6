"""lowbit.model._handlers: how the built-in configs replace each layer, through quantize_.

Round-to-nearest with group fallbacks, HQQ, and the data-driven GPTQ, AWQ and SmoothQuant
(quantize_(..., batches=...)) on the synthetic networks of conftest.py (Stack: outlier input
channels, the situation AWQ and SmoothQuant address).  Known answers come from plain float
computations on the same inputs: the float model's outputs and round-to-nearest's error.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lowbit  # noqa: E402
import lowbit.model as lm  # noqa: E402


@pytest.mark.parametrize("qtype, gran", [("int4", lowbit.PerChannel(0)), ("int3", lowbit.PerGroup(32)),
                                         ("uint4", lowbit.PerGroup(16))], ids=["int4-channel", "int3-g32", "uint4-g16"])
@pytest.mark.parametrize("algorithm", ["gptq", "awq"])
def test_data_algorithms_beat_round_to_nearest(stack, algorithm, qtype, gran, stack_batches, output_mse):
    calib, held_out = stack_batches(4, seed=1), stack_batches(4, seed=2)
    rtn, alg = copy.deepcopy(stack), copy.deepcopy(stack)
    lm.quantize_(rtn, lm.WeightOnly(qtype, gran))
    summary = lm.quantize_(alg, lm.WeightOnly(qtype, gran, algorithm=algorithm), batches=calib, progress=False)
    assert len(summary.rows) == 1 + 3 * 5 + 1
    assert all(algorithm in r.scheme and "-> rtn" not in r.scheme for r in summary.rows)
    err_rtn, err_alg = output_mse(rtn, stack, held_out), output_mse(alg, stack, held_out)
    print(f"{algorithm} {qtype} {gran}: output MSE rtn {err_rtn:.4g} -> {err_alg:.4g}")
    assert err_alg < 0.9 * err_rtn


def test_awq_layers_store_their_input_divisor(stack, stack_batches):
    D = stack.inp.out_features
    model = copy.deepcopy(stack)
    lm.quantize_(model, lm.WeightOnly("int4", lowbit.PerGroup(32), algorithm="awq"), batches=stack_batches(),
                 progress=False)
    q = model.blocks[0].q
    assert q.smooth_scale is not None and q.smooth_scale.shape == (D,)
    assert float(q.smooth_scale[:4].mean()) > float(q.smooth_scale[4:].mean())  # outlier channels protected
    state = model.state_dict()
    fresh = lowbit.nn.WeightOnlyLinear(D, D, qtype="int4", granularity="group:32", smooth=True)
    fresh.load_state_dict({k.removeprefix("blocks.0.q."): v for k, v in state.items() if k.startswith("blocks.0.q.")})
    x = torch.randn(5, D)
    assert torch.equal(fresh(x), q(x))


@pytest.mark.parametrize("config", [lm.Static(), lm.Dynamic(), lm.Dynamic(act_granularity="token")],
                         ids=["static", "dynamic-tensor", "dynamic-token"])
def test_smoothquant_beats_plain_w8a8_on_outlier_channels(stack, config, stack_batches, output_mse):
    """Scored on held-out batches: with the calibration rows themselves, a flattening alpha looks
    better than it is (static ranges then clip new inputs' tails)."""
    calib, held_out = stack_batches(16, seed=1), stack_batches(4, seed=2)
    errors, summaries = {}, {}
    for alpha in (None, 0.5, "auto"):
        model = copy.deepcopy(stack)
        cfg = dataclasses.replace(config, smoothquant=alpha)
        kw = {} if alpha is None else {"batches": calib, "progress": False}
        summaries[alpha] = lm.quantize_(model, cfg, **kw)
        if isinstance(cfg, lm.Static):
            lm.calibrate(model, calib, progress=False)
            lm.convert(model)
        errors[alpha] = output_mse(model, stack, held_out)
    print(f"{config.scheme} output MSE plain {errors[None]:.4g} alpha 0.5 {errors[0.5]:.4g} auto {errors['auto']:.4g}")
    assert "SmoothQuant(0.5)" in summaries[0.5].rows[0].scheme
    assert "SmoothQuant(auto): alpha" in summaries["auto"].rows[0].scheme
    assert errors[0.5] < 0.7 * errors[None]
    assert errors["auto"] < 0.7 * errors[None]


def test_layers_an_algorithm_does_not_take_keep_rtn_and_say_so():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    batches = [torch.randn(8, 1, 8, 8) for _ in range(2)]
    summary = lm.quantize_(net, lm.WeightOnly("int4", algorithm="gptq", algorithm_options={"act_order": True}),
                           batches=batches, progress=False)
    schemes = {r.name: r.scheme for r in summary.rows}
    assert schemes["0"] == "W4 int4 channel gptq -> rtn (gptq takes Linear layers that ran on the batches)"
    assert schemes["2"] == "W4 int4 channel gptq"


def test_rank_deficient_inputs_warn_and_finish():
    """A layer whose inputs span a 2-d subspace: GPTQ raises the dampening, warns, and still quantizes."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 16)).eval()
    basis = torch.randn(2, 32)
    batches = [torch.randn(64, 2) @ basis for _ in range(2)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lm.quantize_(net, lm.WeightOnly("int4", algorithm="gptq", algorithm_options={"damp": 0.0}), batches=batches,
                     progress=False)
    assert any("Cholesky" in str(w.message) for w in caught)
    assert isinstance(net[0], lowbit.nn.WeightOnlyLinear)
    assert torch.isfinite(net[0].dequantized_weight()).all()


@pytest.mark.parametrize("qtype, scale_format, baseline, max_ratio", [
    ("mxfp4", None, "fp4_e2m1", 2.0), ("nf4", "double8", "nf4", 1.1), ("int4", "kquant6", "int4", 1.1),
    ("uint4", "float16", "uint4", 1.02),
], ids=["mxfp4", "nf4-double8", "int4-kquant6", "uint4-float16"])
def test_weight_only_formats_and_scale_formats_in_models(stack, qtype, scale_format, baseline, max_ratio,
                                                         stack_batches, output_mse):
    """Compact scale storage (MX e8m0, double8, kquant6, float16) costs fewer bytes than float32 scales of the
    same blocks and little accuracy; MX layers default to blocks of 32 and keep a layer they do not fit float."""
    results = {}
    for name, fmt in ((qtype, scale_format), (baseline, None)):
        is_mx = lowbit.get_qtype(name).is_mx
        model = copy.deepcopy(stack)
        summary = lm.quantize_(model, lm.WeightOnly(name, None if is_mx else lowbit.PerGroup(32), scale_format=fmt),
                               exclude=["inp"])
        expected = fmt or lowbit.get_qtype(name).scale_format or "float32"
        assert model.blocks[0].up.weight_qtensor().scale_format == expected
        results[name, fmt] = (summary.bytes_after, output_mse(model, stack, stack_batches()))
    (b_fmt, e_fmt), (b_base, e_base) = results[qtype, scale_format], results[baseline, None]
    print(f"{qtype} {scale_format}: {b_fmt} bytes, MSE {e_fmt:.4g}; {baseline} float32 scales: {b_base}, {e_base:.4g}")
    assert b_fmt < b_base and e_fmt <= max_ratio * e_base


def test_mx_layers_that_do_not_fit_blocks_stay_float(stack):
    model = copy.deepcopy(stack)
    summary = lm.quantize_(model, lm.WeightOnly("mxfp4"))
    scheme = {r.name: r.scheme for r in summary.rows}["inp"]
    assert scheme == "W4 mxfp4 group:32 -> kept float (blocks of 32 do not divide 16)"
    assert isinstance(model.inp, nn.Linear) and isinstance(model.head, lowbit.nn.WeightOnlyLinear)


def test_algorithm_weights_restored_with_the_scale_format(stack, stack_batches):
    model = copy.deepcopy(stack)
    lm.quantize_(model, lm.WeightOnly("int4", lowbit.PerGroup(32), algorithm="gptq", scale_format="float16"),
                 batches=stack_batches(), progress=False)
    qt = model.blocks[1].down.weight_qtensor()
    assert qt.scale_format == "float16" and qt.bits_per_element == pytest.approx(4 + 16 / 32)
    assert torch.equal(torch.from_numpy(qt.scale.astype(np.float16).astype(np.float32)), torch.from_numpy(qt.scale))


def test_groups_that_do_not_divide_a_linear_are_ragged_and_a_conv_keeps_channels(net):
    summary = lm.quantize_(net, lm.WeightOnly("int4", lowbit.PerGroup(16)), include=["head", "conv", "encoder.0"])
    schemes = {r.name: r.scheme for r in summary.rows}
    assert schemes["encoder.0"] == "W4 int4 group:16"
    assert schemes["head"] == "W4 int4 group:16"  # 40 inputs: groups of 16, 16 and 8
    qt = net.head.weight_qtensor()
    assert qt.granularity == lowbit.PerGroup(16) and qt.scale.shape == (net.head.weight_shape[0], 3)
    assert schemes["conv"].endswith("-> channel (group 16 does not divide 3)")


@pytest.mark.parametrize("granularity, scheme",
                         [("group:64", "W4 uint4 group:64 hqq"), ("channel", "W4 uint4 channel hqq")])
def test_hqq_algorithm_is_never_worse_than_round_to_nearest(granularity, scheme):
    torch.manual_seed(0)
    layer = nn.Linear(512, 64)
    with torch.no_grad():
        layer.weight[torch.rand(64, 512) < 0.03] *= 10  # heavy-tailed weights
    net = nn.Sequential(layer).eval()
    rtn, hqq = copy.deepcopy(net), copy.deepcopy(net)
    lm.quantize_(rtn, lm.WeightOnly("uint4", granularity))
    summary = lm.quantize_(hqq, lm.WeightOnly("uint4", granularity, algorithm="hqq"))
    assert summary.rows[0].scheme == scheme
    w = layer.weight.detach()
    err = {name: float(((m[0].dequantized_weight() - w) ** 2).mean()) for name, m in (("rtn", rtn), ("hqq", hqq))}
    if granularity == "channel":  # HQQ's parameters would clip each row's extreme: min-max is kept
        assert err["hqq"] <= err["rtn"]
    else:
        assert err["hqq"] < 0.99 * err["rtn"]
