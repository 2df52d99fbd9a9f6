"""Data-driven whole-model quantization: GPTQ, AWQ and SmoothQuant through quantize_(..., batches=...).

The synthetic models are small transformer-like stacks (a ModuleList of residual
blocks whose q/k/v-style projections read the same tensor) with a few input
channels carrying large activations, the situation AWQ and SmoothQuant address.
Known answers come from plain float computations on the same inputs.
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
from lowbit.algorithms import ActivationStatistics, HessianAccumulator  # noqa: E402
from lowbit.model._collect import layer_statistics  # noqa: E402

D = 64


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.up, self.down = nn.Linear(D, 2 * D), nn.Linear(2 * D, D)

    def forward(self, h: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        attn = torch.tanh(self.q(h)) * self.k(h) + self.v(h)
        return h + scale * self.down(torch.relu(self.up(h + attn)))


class Stack(nn.Module):
    """Embedding-like input projection, 3 blocks in a ModuleList, a head; keyword arg passed to blocks."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(16, D)
        self.blocks = nn.ModuleList([Block() for _ in range(3)])
        self.head = nn.Linear(D, 8)
        self.gain = torch.ones(D)
        self.gain[:4] = 25.0  # outlier channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x) * self.gain
        for block in self.blocks:
            h = block(h, scale=0.5)
        return self.head(h)


def _batches(n: int = 4, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(32, 16, generator=g) for _ in range(n)]


def _output_mse(model: nn.Module, reference: nn.Module, batches: list[torch.Tensor]) -> float:
    with torch.no_grad():
        return float(sum(((model(b) - reference(b)) ** 2).mean() for b in batches) / len(batches))


@pytest.fixture(scope="module")
def stack() -> Stack:
    return Stack().eval()


@pytest.mark.parametrize("qtype, gran", [("int4", lowbit.PerChannel(0)), ("int3", lowbit.PerGroup(32)),
                                         ("uint4", lowbit.PerGroup(16))], ids=["int4-channel", "int3-g32", "uint4-g16"])
@pytest.mark.parametrize("algorithm", ["gptq", "awq"])
def test_data_algorithms_beat_round_to_nearest(stack, algorithm, qtype, gran):
    calib, held_out = _batches(4, seed=1), _batches(4, seed=2)
    rtn, alg = copy.deepcopy(stack), copy.deepcopy(stack)
    lm.quantize_(rtn, lm.WeightOnly(qtype, gran))
    summary = lm.quantize_(alg, lm.WeightOnly(qtype, gran, algorithm=algorithm), batches=calib, progress=False)
    assert len(summary.rows) == 1 + 3 * 5 + 1
    assert all(algorithm in r.scheme and "-> rtn" not in r.scheme for r in summary.rows)
    err_rtn, err_alg = _output_mse(rtn, stack, held_out), _output_mse(alg, stack, held_out)
    print(f"{algorithm} {qtype} {gran}: output MSE rtn {err_rtn:.4g} -> {err_alg:.4g}")
    assert err_alg < 0.9 * err_rtn


def test_awq_layers_store_their_input_divisor(stack):
    model = copy.deepcopy(stack)
    lm.quantize_(model, lm.WeightOnly("int4", lowbit.PerGroup(32), algorithm="awq"), batches=_batches(), progress=False)
    q = model.blocks[0].q
    assert q.smooth_scale is not None and q.smooth_scale.shape == (D,)
    assert float(q.smooth_scale[:4].mean()) > float(q.smooth_scale[4:].mean())  # outlier channels protected
    state = model.state_dict()
    fresh = lowbit.nn.WeightOnlyLinear(D, D, qtype="int4", granularity="group:32", smooth=True)
    fresh.load_state_dict({k.removeprefix("blocks.0.q."): v for k, v in state.items() if k.startswith("blocks.0.q.")})
    x = torch.randn(5, D)
    assert torch.equal(fresh(x), q(x))


def test_sequential_blocks_see_the_quantized_blocks_before_them(stack):
    """The Hessian GPTQ used for block 2 comes from block 2's inputs with blocks 0 and 1 already quantized
    (and block 2 itself, and the layers outside the blocks, still float)."""
    model = copy.deepcopy(stack)
    batches = _batches(3)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    seen = {}
    for name, module, stat in layer_statistics(model, layers, batches, lambda n, m: HessianAccumulator(m.in_features),
                                               sequential=True, progress=False):
        seen[name] = stat.hessian
        new = lowbit.nn.WeightOnlyLinear.from_float(module, "int3")
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
    assert list(seen)[-2:] == ["inp", "head"]  # layers outside the blocks come last

    def up_inputs(net: nn.Module) -> np.ndarray:
        inputs = []
        hook = net.blocks[2].up.register_forward_pre_hook(lambda m, a: inputs.append(a[0].reshape(-1, D)))
        with torch.no_grad():
            for b in batches:
                net(b)
        hook.remove()
        return torch.cat(inputs).double().numpy()

    expected = copy.deepcopy(stack)
    expected.blocks[0], expected.blocks[1] = model.blocks[0], model.blocks[1]
    x = up_inputs(expected)
    np.testing.assert_allclose(seen["blocks.2.up"], 2 * x.T @ x / x.shape[0], rtol=1e-9, atol=1e-9)
    x_float = up_inputs(stack)
    assert not np.allclose(seen["blocks.2.up"], 2 * x_float.T @ x_float / x.shape[0], rtol=1e-3)  # could fail


def test_layers_reading_one_tensor_share_one_statistic(stack):
    layers = [(n, m) for n, m in stack.named_modules() if isinstance(m, nn.Linear)]
    factory = lambda n, m: ActivationStatistics(m.in_features, max_rows=0)  # noqa: E731
    stats = {n: s for n, _, s in layer_statistics(stack, layers, _batches(2), factory, progress=False)}
    assert stats["blocks.1.q"] is stats["blocks.1.k"] is stats["blocks.1.v"]
    assert stats["blocks.1.up"] is not stats["blocks.1.q"] and stats["blocks.1.down"] is not stats["blocks.1.up"]
    assert stats["blocks.1.q"].n_samples_ == 64  # each input counted once per batch


def test_parallel_module_list_falls_back_to_one_float_pass():
    """A ModuleList whose members all read the same input is not a chain: stats come from the float model."""

    class Parallel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.heads = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return sum(head(x) for head in self.heads)

    model = Parallel().eval()
    layers = list((f"heads.{i}", h) for i, h in enumerate(model.heads))
    x = torch.randn(10, 8)
    factory = lambda n, m: ActivationStatistics(8, max_rows=0)  # noqa: E731
    out = list(layer_statistics(model, layers, [x], factory, sequential=True, progress=False))
    for _, _, stat in out:
        np.testing.assert_allclose(stat.absmax_, x.abs().amax(0).double().numpy())


@pytest.mark.parametrize("config", [lm.Static(), lm.Dynamic(), lm.Dynamic(act_granularity="token")],
                         ids=["static", "dynamic-tensor", "dynamic-token"])
def test_smoothquant_beats_plain_w8a8_on_outlier_channels(stack, config):
    """Scored on held-out batches: with the calibration rows themselves, a flattening alpha looks
    better than it is (static ranges then clip new inputs' tails)."""
    calib, held_out = _batches(16, seed=1), _batches(4, seed=2)
    errors, summaries = {}, {}
    for alpha in (None, 0.5, "auto"):
        model = copy.deepcopy(stack)
        cfg = dataclasses.replace(config, smoothquant=alpha)
        kw = {} if alpha is None else {"batches": calib, "progress": False}
        summaries[alpha] = lm.quantize_(model, cfg, **kw)
        if isinstance(cfg, lm.Static):
            lm.calibrate(model, calib, progress=False)
            lm.convert(model)
        errors[alpha] = _output_mse(model, stack, held_out)
    print(f"{config.scheme} output MSE plain {errors[None]:.4g} alpha 0.5 {errors[0.5]:.4g} auto {errors['auto']:.4g}")
    assert "SmoothQuant(0.5)" in summaries[0.5].rows[0].scheme
    assert "SmoothQuant(auto): alpha" in summaries["auto"].rows[0].scheme
    assert errors[0.5] < 0.7 * errors[None]
    assert errors["auto"] < 0.7 * errors[None]


def test_smoothquant_preserves_the_float_product():
    """Int8Linear with smoothing on an exactly representable case: x/s and W*s stay exact."""
    lin = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0, -1.0, 0.5], [0.25, -0.5, 1.0, 1.0]]))
    s = torch.tensor([2.0, 0.5, 1.0, 4.0])
    q = lowbit.nn.Int8Linear.from_float(lin, smooth_scale=s, weight_granularity="tensor")
    assert torch.equal(q.smooth_scale, s)
    x = torch.tensor([[2.0, -1.0, 0.0, 4.0]])
    torch.testing.assert_close(q(x), lin(x), rtol=0.02, atol=0.02)


def test_errors_name_the_fix(stack):
    model = copy.deepcopy(stack)
    with pytest.raises(lowbit.ModelError, match="needs calibration data"):
        lm.quantize_(model, lm.WeightOnly("int4", algorithm="gptq"))
    with pytest.raises(lowbit.OptionError, match="uses no calibration data"):
        lm.quantize_(model, lm.WeightOnly("int4"), batches=_batches())
    model.train()
    with pytest.raises(lowbit.ModelError, match="eval mode"):
        lm.quantize_(model, lm.WeightOnly("int4", algorithm="awq"), batches=_batches())
    with pytest.raises(lowbit.ModelError, match="at least one batch"):
        lm.quantize_(model.eval(), lm.Dynamic(smoothquant=0.5), batches=[])
    with pytest.raises(lowbit.OptionError, match="integer formats"):
        lm.WeightOnly("nf4", lowbit.PerGroup(64), algorithm="gptq")
    with pytest.raises(lowbit.OptionError, match=r"PerChannel\(0\) or PerGroup"):
        lm.WeightOnly("int4", lowbit.PerTensor(), algorithm="awq")
    with pytest.raises(lowbit.OptionError, match="it takes: damp, act_order, block_size, sink_weight"):
        lm.WeightOnly("int4", algorithm="gptq", algorithm_options={"dampening": 0.1})
    with pytest.raises(lowbit.OptionError, match="alpha in"):
        lm.Static(smoothquant=1.5)
    with pytest.raises(lowbit.OptionError, match="smooth=True"):
        lowbit.nn.WeightOnlyLinear(4, 2).set_smooth_scale([1.0] * 4)
    with pytest.raises(lowbit.OptionError, match="finite and > 0"):
        lowbit.nn.WeightOnlyLinear(4, 2, smooth=True).set_smooth_scale([1.0, 0.0, 1.0, 1.0])


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
def test_weight_only_formats_and_scale_formats_in_models(stack, qtype, scale_format, baseline, max_ratio):
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
        results[name, fmt] = (summary.bytes_after, _output_mse(model, stack, _batches()))
    (b_fmt, e_fmt), (b_base, e_base) = results[qtype, scale_format], results[baseline, None]
    print(f"{qtype} {scale_format}: {b_fmt} bytes, MSE {e_fmt:.4g}; {baseline} float32 scales: {b_base}, {e_base:.4g}")
    assert b_fmt < b_base and e_fmt <= max_ratio * e_base


def test_mx_layers_that_do_not_fit_blocks_stay_float(stack):
    model = copy.deepcopy(stack)
    summary = lm.quantize_(model, lm.WeightOnly("mxfp4"))
    scheme = {r.name: r.scheme for r in summary.rows}["inp"]
    assert scheme == "W4 mxfp4 group:32 -> kept float (blocks of 32 do not divide 16)"
    assert isinstance(model.inp, nn.Linear) and isinstance(model.head, lowbit.nn.WeightOnlyLinear)


def test_algorithm_weights_restored_with_the_scale_format(stack):
    model = copy.deepcopy(stack)
    lm.quantize_(model, lm.WeightOnly("int4", lowbit.PerGroup(32), algorithm="gptq", scale_format="float16"),
                 batches=_batches(), progress=False)
    qt = model.blocks[1].down.weight_qtensor()
    assert qt.scale_format == "float16" and qt.bits_per_element == pytest.approx(4 + 16 / 32)
    assert torch.equal(torch.from_numpy(qt.scale.astype(np.float16).astype(np.float32)), torch.from_numpy(qt.scale))


def test_sink_weight_counts_the_first_position_of_each_sequence_more():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 4)).eval()
    x = torch.randn(3, 5, 8)
    (_, _, stat), = layer_statistics(net, [("0", net[0])], [x], lambda n, m: HessianAccumulator(8),
                                     progress=False, sink_weight=4.0)
    w = torch.ones(3, 5, 1)
    w[:, 0] = 4.0
    rows, weights = x.reshape(-1, 8).double().numpy(), w.reshape(-1).double().numpy()
    expected = 2 * (rows * weights[:, None]).T @ rows / rows.shape[0]
    np.testing.assert_allclose(stat.hessian, expected, rtol=1e-12)
    with pytest.raises(lowbit.OptionError, match="sink_weight must be"):
        lm.WeightOnly("int4", algorithm="gptq", algorithm_options={"sink_weight": 0})


def test_an_error_midway_leaves_the_model_as_it_was(stack, monkeypatch):
    import lowbit.algorithms

    model = copy.deepcopy(stack)
    before = {n: type(m) for n, m in model.named_modules()}
    real, calls = lowbit.algorithms.awq_quantize, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:  # in the second block, after six layers were replaced
            raise lowbit.OptionError("made to fail")
        return real(*args, **kwargs)

    monkeypatch.setattr(lowbit.algorithms, "awq_quantize", failing)
    with pytest.raises(lowbit.OptionError, match=r"module 'blocks\.1\.\w+' .*made to fail"):
        lm.quantize_(model, lm.WeightOnly("int4", algorithm="awq"), batches=_batches(), progress=False)
    assert {n: type(m) for n, m in model.named_modules()} == before
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    x = _batches(1)[0]
    with torch.no_grad():
        torch.testing.assert_close(model(x), stack(x), rtol=0, atol=0)
