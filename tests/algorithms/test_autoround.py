"""AutoRound: learned rounding offsets and clip factors on a block's output (lowbit.algorithms.autoround)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import lowbit
from lowbit.errors import EmptyInputError, GranularityError, NonFiniteError, OptionError

torch = pytest.importorskip("torch")

from lowbit.algorithms import RoundingScheme, autoround_block, autoround_quantize  # noqa: E402


class _Mlp(torch.nn.Module):
    """A residual MLP block with correlated inputs: what a transformer block's MLP looks like."""

    def __init__(self, width: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.up = torch.nn.Linear(width, hidden)
        self.down = torch.nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.nn.functional.gelu(self.up(x)))


def _data(seed: int = 0, batches: int = 3, width: int = 32) -> tuple[_Mlp, list, list]:
    torch.manual_seed(seed)
    block = _Mlp(width).eval()
    mix = torch.randn(width, width)
    xs = [torch.randn(2, 24, width) @ mix for _ in range(batches)]
    with torch.no_grad():
        ys = [block(x) for x in xs]
    return block, xs, ys


def _block_loss(block: torch.nn.Module, qts: dict, xs: list, ys: list) -> float:
    """The block's output error with the QTensors' dequantized weights, computed in float64 apart from the code."""
    trial = copy.deepcopy(block)
    for name, qt in qts.items():
        trial.get_submodule(name).weight.data = torch.from_numpy(np.asarray(qt.dequantize(), np.float32))
    with torch.no_grad():
        return float(sum(((trial(x).double() - y.double()) ** 2).mean() for x, y in zip(xs, ys, strict=True)))


@pytest.mark.parametrize(("qtype", "gran"), [("uint3", "group:16"), ("uint2", "group:16"), ("int4", "channel")],
                         ids=["uint3-g16", "uint2-g16", "int4-channel"])
def test_lowers_the_block_error_below_round_to_nearest(qtype, gran):
    block, xs, ys = _data()
    scheme = RoundingScheme(qtype, gran)
    learned = autoround_block(block, xs, ys, scheme, steps=40)
    rtn = autoround_block(block, xs, ys, scheme, steps=0)
    assert _block_loss(block, learned, xs, ys) < 0.95 * _block_loss(block, rtn, xs, ys)


def test_steps_zero_is_lowbits_round_to_nearest():
    block, xs, ys = _data()
    qts = autoround_block(block, xs, ys, RoundingScheme("uint4", "group:16", scale_format="float16"), steps=0)
    for name in ("up", "down"):
        ref = lowbit.quantize(block.get_submodule(name).weight.detach().numpy(), "uint4",
                              granularity=lowbit.PerGroup(16), scale_format="float16")
        assert np.array_equal(qts[name].codes, ref.codes)
        assert np.array_equal(qts[name].scale, ref.scale)


@pytest.mark.parametrize(("qtype", "gran", "symmetric", "scale_format"), [
    ("uint4", "group:16", None, "float16"), ("int4", "group:16", None, None), ("uint2", "channel", None, "bfloat16"),
    ("int8", "channel", None, "float16"), ("uint3", "group:16", True, "float16"), ("int3", "group:32", False, None),
], ids=["uint4-g16-f16", "int4-g16", "uint2-channel-bf16", "int8-channel-f16", "uint3-g16-sym-f16", "int3-g32-affine"])
def test_result_is_exactly_what_lowbit_stores(qtype, gran, symmetric, scale_format):
    block, xs, ys = _data(batches=2)
    qts = autoround_block(block, xs, ys, RoundingScheme(qtype, gran, symmetric, scale_format), steps=8, lr=0.05)
    qt_format = lowbit.get_qtype(qtype)
    for name, qt in qts.items():
        assert qt.qtype.name == qtype and qt.shape == tuple(block.get_submodule(name).weight.shape)
        assert qt.scale_format == (scale_format or "float32")
        scale = np.asarray(qt.scale, np.float32)
        if scale_format == "float16":
            assert np.array_equal(scale.astype(np.float16).astype(np.float32), scale)
        zero = np.asarray(qt.zero_point, np.int64)
        assert np.all((zero >= qt_format.qmin) & (zero <= qt_format.qmax))
        again = lowbit.quantize(qt.dequantize(), qtype, granularity=qt.granularity, symmetric=qt.symmetric,
                                scale=scale, zero_point=zero, scale_format=qt.scale_format)
        assert np.array_equal(again.codes, qt.codes)
        assert np.all(np.isfinite(qt.dequantize()))


@pytest.mark.parametrize(("gran", "scale_format"), [("group:16", "float16"), ("channel", None)],
                         ids=["g16-f16", "channel-f32"])
def test_float_zero_points_are_stored_offsets_and_beat_round_to_nearest(gran, scale_format):
    block, xs, ys = _data()
    scheme = RoundingScheme("uint2", gran, scale_format=scale_format, zero_point="float")
    learned = autoround_block(block, xs, ys, scheme, steps=40)
    rtn = autoround_block(block, xs, ys, scheme, steps=0)
    for name, qt in learned.items():
        ref = lowbit.quantize(block.get_submodule(name).weight.detach().numpy(), "uint2",
                              granularity=qt.granularity, scale_format=scale_format, zero_point="float")
        assert np.array_equal(rtn[name].codes, ref.codes) and np.array_equal(rtn[name].zero_point, ref.zero_point)
        assert qt.float_zero_point
        offsets = np.asarray(qt.zero_point)
        assert offsets.dtype == (np.float16 if scale_format == "float16" else np.float32)
        groups = offsets.size // qt.shape[0]
        codes = qt.codes.astype(np.float64).reshape(qt.shape[0], groups, -1)
        scale = np.asarray(qt.scale, np.float64).reshape(qt.shape[0], groups, 1)
        expect = (codes * scale + offsets.astype(np.float64).reshape(qt.shape[0], groups, 1)).reshape(qt.shape)
        np.testing.assert_allclose(qt.dequantize(), expect, rtol=1e-6, atol=1e-7)
    assert _block_loss(block, learned, xs, ys) < 0.95 * _block_loss(block, rtn, xs, ys)


def test_float_zero_points_refused_where_they_cannot_be_stored():
    block, xs, ys = _data(batches=1)
    with pytest.raises(OptionError, match="unsigned integer format"):
        autoround_block(block, xs, ys, RoundingScheme("int4", "group:16", zero_point="float"), steps=1)
    with pytest.raises(OptionError, match="scale_format"):
        autoround_block(block, xs, ys, RoundingScheme("uint4", "group:16", scale_format="kquant6",
                                                      zero_point="float"), steps=1)


@pytest.mark.parametrize(("qtype", "scale_format", "zero_point"), [
    ("uint2", "float16", "int"), ("uint3", "float16", "float"), ("int3", None, "int")],
    ids=["uint2", "uint3-fzp", "int3"])
def test_gptq_start_is_gptqs_weight_and_never_worse_than_rtn_or_gptq(qtype, scale_format, zero_point):
    from lowbit.algorithms.autoround import _gptq_starts, _LearnedWeight

    block, xs, ys = _data()
    scheme = RoundingScheme(qtype, "group:16", scale_format=scale_format, zero_point=zero_point)
    names = ["up", "down"]
    solved = _gptq_starts(block, names, dict.fromkeys(names, scheme), [((x,), {}) for x in xs])
    for name, (qt, rounded) in zip(names, solved, strict=True):
        lw = _LearnedWeight(block.get_submodule(name).weight, scheme, name, (qt, rounded))
        with torch.no_grad():  # V = 0, alpha = beta = 1 is GPTQ's own weight
            np.testing.assert_allclose(lw.weight().numpy(), qt.dequantize(), rtol=0, atol=1e-6)
    start = autoround_block(block, xs, ys, scheme, steps=0, init="gptq")
    rtn = autoround_block(block, xs, ys, scheme, steps=0)
    gptq = dict(zip(names, [qt for qt, _ in solved], strict=True))
    assert _block_loss(block, start, xs, ys) == min(_block_loss(block, rtn, xs, ys), _block_loss(block, gptq, xs, ys))
    learned = autoround_block(block, xs, ys, scheme, steps=40, init="gptq")
    assert _block_loss(block, learned, xs, ys) <= _block_loss(block, start, xs, ys)


def test_gptq_start_learns_below_gptq_and_below_learning_from_rtn_at_two_bits():
    block, xs, ys = _data()
    scheme = RoundingScheme("uint2", "group:16", scale_format="float16")
    gptq = _block_loss(block, autoround_block(block, xs, ys, scheme, steps=0, init="gptq"), xs, ys)
    from_gptq = _block_loss(block, autoround_block(block, xs, ys, scheme, steps=40, init="gptq"), xs, ys)
    from_rtn = _block_loss(block, autoround_block(block, xs, ys, scheme, steps=40), xs, ys)
    assert from_gptq < 0.95 * gptq and from_gptq < 0.7 * from_rtn


def test_never_worse_than_round_to_nearest_on_white_inputs():
    # uncorrelated inputs and a single linear layer: RTN is close to optimal and SignSGD can only lose
    rng = np.random.default_rng(1)
    x = rng.standard_normal((256, 64)).astype(np.float32)
    w = rng.standard_normal((16, 64)).astype(np.float32)
    qt = autoround_quantize(w, x, "int8", granularity="channel", steps=30, lr=0.2, min_clip=1.0)
    rtn = lowbit.fake_quantize(w, "int8", granularity=lowbit.PerChannel(0))
    err = lambda wq: float(np.sum((x.astype(np.float64) @ (w - wq).T) ** 2))  # noqa: E731
    assert err(qt.dequantize()) <= err(rtn) * (1 + 1e-6)


def test_non_finite_loss_stops_at_the_last_finite_state():
    block, xs, ys = _data(batches=2)
    calls = {"n": 0}

    class _Fails(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = block

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls["n"] += 1
            out = self.inner(x)
            return out * float("nan") if torch.is_grad_enabled() and calls["n"] > 6 else out

    with pytest.warns(RuntimeWarning, match="not finite at step"):
        qts = autoround_block(_Fails(), xs, ys, RoundingScheme("uint3", "group:16"), steps=20)
    assert set(qts) == {"inner.up", "inner.down"}
    assert all(np.all(np.isfinite(q.dequantize())) for q in qts.values())


def test_batches_are_split_into_sequences_only_where_the_block_agrees():
    from lowbit.algorithms.autoround import _check_data, _per_sequence

    block, xs, ys = _data(batches=2)
    calls, outs = _check_data(xs, ys)
    weights = [block.up.weight, block.down.weight]
    split_calls, split_outs = _per_sequence(block, ["up.weight", "down.weight"], weights, calls, outs)
    assert len(split_calls) == 4 and all(o.shape[0] == 1 for o in split_outs)

    class _Mixes(torch.nn.Module):  # couples the sequences of a batch: cannot be split
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return block(x) + x.mean(0, keepdim=True)

    with torch.no_grad():
        mixed = [_Mixes()(x) for x in xs]
    kept, _ = _per_sequence(_Mixes(), ["up.weight", "down.weight"], weights, *_check_data(xs, mixed))
    assert len(kept) == 2


@pytest.mark.parametrize(("options", "match"), [
    ({"steps": -1}, "steps"), ({"lr": 0.0}, "lr"), ({"lr": float("nan")}, "lr"), ({"min_clip": 0.0}, "min_clip"),
    ({"min_clip": 1.5}, "min_clip"), ({"checkpoints": 0}, "checkpoints"), ({"sink_weight": -2.0}, "sink_weight"),
    ({"steps": 2.5}, "steps"), ({"init": "awq"}, "init"),
])
def test_bad_options_are_refused(options, match):
    block, xs, ys = _data(batches=1)
    with pytest.raises(OptionError, match=match):
        autoround_block(block, xs, ys, RoundingScheme("uint4"), **options)


def test_bad_inputs_are_refused():
    block, xs, ys = _data(batches=2)
    with pytest.raises(OptionError, match="integer formats"):
        autoround_block(block, xs, ys, RoundingScheme("nf4"), steps=1)
    with pytest.raises(OptionError, match="no Linear layer"):
        autoround_block(block, xs, ys, {"mlp": RoundingScheme("uint4")}, steps=1)
    with pytest.raises(OptionError, match="2 input batches but 1 targets"):
        autoround_block(block, xs, ys[:1], RoundingScheme("uint4"), steps=1)
    with pytest.raises(EmptyInputError):
        autoround_block(block, [], [], RoundingScheme("uint4"), steps=1)
    with pytest.raises(NonFiniteError, match="target"):
        autoround_block(block, xs, [ys[0], ys[1] * float("inf")], RoundingScheme("uint4"), steps=1)
    with pytest.raises(GranularityError):
        autoround_block(block, xs, ys, RoundingScheme("uint4", "tensor"), steps=1)
    with pytest.raises(NonFiniteError, match="non-finite"):
        autoround_quantize(np.full((4, 8), np.nan), np.ones((4, 8)), "uint4", steps=1)
    with pytest.raises(OptionError, match="unknown options"):
        autoround_quantize(np.ones((4, 8)), np.ones((4, 8)), "uint4", step=1)


class _Chain(torch.nn.Module):
    """Three residual MLP blocks in a ModuleList and a head: the shape the sequential pass looks for."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(_Mlp() for _ in range(3))
        self.head = torch.nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            x = block(x)
        return self.head(x)


def test_weight_only_autoround_beats_rtn_on_a_model():
    import lowbit.model as lm

    torch.manual_seed(0)
    net = _Chain().eval()
    mix = torch.randn(32, 32)
    batches = [torch.randn(4, 16, 32) @ mix for _ in range(4)]
    with torch.no_grad():
        ref = [net(b) for b in batches]

    def error(algorithm: str, **data) -> tuple[float, object]:
        model = copy.deepcopy(net)
        summary = lm.quantize_(model, lm.WeightOnly("uint3", "group:16", algorithm=algorithm, scale_format="float16",
                                                    algorithm_options={"steps": 30} if data else {}), **data,
                               progress=False)
        with torch.no_grad():
            return sum(float(((model(b) - r) ** 2).mean()) for b, r in zip(batches, ref, strict=True)), (model, summary)

    rtn, _ = error("rtn")
    learned, (model, summary) = error("autoround", batches=batches)
    assert learned < rtn
    assert all(r.scheme == "W3 uint3 group:16 autoround float16 scales" for r in summary.rows)
    assert [r.name for r in summary.rows][-1] == "head"  # outside the blocks: learned on its own input rows
    assert model.layers[0].up.algorithm[0] == "autoround"


def test_weight_only_autoround_config_errors():
    import lowbit.model as lm
    from lowbit.errors import ModelError

    with pytest.raises(OptionError, match="steps"):
        lm.WeightOnly("uint4", algorithm="autoround", algorithm_options={"steps": -5})
    with pytest.raises(OptionError, match="not options of 'autoround'"):
        lm.WeightOnly("uint4", algorithm="autoround", algorithm_options={"iterations": 5})
    with pytest.raises(OptionError, match="integer formats"):
        lm.WeightOnly("nf4", algorithm="autoround")
    with pytest.raises(ModelError, match="needs calibration data"):
        lm.quantize_(_Chain().eval(), lm.WeightOnly("uint4", algorithm="autoround"))


@pytest.mark.model
def test_smollm2_block_lower_error_than_rtn():
    pytest.importorskip("transformers")
    import lowbit.model as lm
    from lowbit.zoo import load_smollm2, play_windows

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, tokenizer = load_smollm2()
    ids = play_windows(tokenizer, 2, 96, "macbeth")
    batches = [{"input_ids": ids[i : i + 1]} for i in range(2)]

    def hidden(m: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([m(**b, output_hidden_states=True).hidden_states[1] for b in batches])

    ref = hidden(model)
    errors = {}
    for algorithm in ("rtn", "autoround"):
        candidate = copy.deepcopy(model)
        data = {"batches": batches, "progress": False} if algorithm == "autoround" else {}
        lm.quantize_(candidate, lm.WeightOnly("uint3", "group:64", algorithm=algorithm, scale_format="float16",
                                              algorithm_options={"steps": 10} if data else {}),
                     include=["model.layers.0.*"], **data)
        errors[algorithm] = float(((hidden(candidate) - ref) ** 2).mean())
    assert errors["autoround"] < 0.9 * errors["rtn"]
