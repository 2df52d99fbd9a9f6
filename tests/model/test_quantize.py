"""lowbit.model._quantize: quantize_ on small synthetic networks: selection, swaps, state dicts, errors.

The configs' own validation is in test_config.py, the handlers (how each layer is replaced) in
test_handlers.py, calibration in test_calibrate.py.
"""

from __future__ import annotations

import copy
import io

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lowbit  # noqa: E402
import lowbit.model as lm  # noqa: E402
import lowbit.nn as lnn  # noqa: E402


def test_weight_only_swaps_every_supported_layer(net, net_inputs):
    ref = copy.deepcopy(net)
    summary = lm.quantize_(net, lm.WeightOnly("int4", lowbit.PerGroup(16)))
    assert [r.name for r in summary.rows] == ["emb", "conv", "encoder.0", "encoder.2", "head"]
    assert summary.bytes_after < summary.bytes_before / 3
    assert "total" in str(summary)
    ids, img = net_inputs()
    with torch.no_grad():
        cos = nn.functional.cosine_similarity(net(ids, img), ref(ids, img)).mean()
    assert cos > 0.98
    report = lm.error_report(net, ref, [(ids, img)])
    assert {r.name for r in report.rows} == {"emb", "conv", "encoder.0", "encoder.2", "head"}
    assert all(r.sqnr_db > 10 for r in report.rows)


def test_include_exclude_patterns(net):
    summary = lm.quantize_(net, lm.WeightOnly("int8"), include=["encoder.*", "head"], exclude=["encoder.2"])
    assert [r.name for r in summary.rows] == ["encoder.0", "head"]
    assert isinstance(net.encoder[2], nn.Linear) and not isinstance(net.encoder[0], nn.Linear)


def test_bad_selections_name_the_module_and_fix(net):
    with pytest.raises(lowbit.ModelError, match=r"'decoder\.\*' matches no module \(names look like: emb"):
        lm.quantize_(net, lm.WeightOnly("int8"), include=["decoder.*"])
    with pytest.raises(lowbit.ModelError, match=r"matches only LayerNorm .* \(supported: Linear, Conv2d, Embedding\)"):
        lm.quantize_(net, lm.WeightOnly("int8"), include=["norm"])
    with pytest.raises(lowbit.ModelError, match="found no module"):
        lm.quantize_(nn.Sequential(nn.ReLU()), lm.Dynamic())


def test_state_dict_round_trip(net, net_inputs, make_net):
    lm.quantize_(net, lm.WeightOnly("int4", lowbit.PerGroup(16)), include=["encoder.*", "head", "emb"])
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    fresh = make_net()
    lm.quantize_(fresh, lm.WeightOnly("int4", lowbit.PerGroup(16)), include=["encoder.*", "head", "emb"])
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    ids, img = net_inputs()
    with torch.no_grad():
        assert torch.equal(fresh(ids, img), net(ids, img))


def test_errors_name_the_fix(stack, stack_batches):
    model = copy.deepcopy(stack)
    with pytest.raises(lowbit.ModelError, match="needs calibration data"):
        lm.quantize_(model, lm.WeightOnly("int4", algorithm="gptq"))
    with pytest.raises(lowbit.OptionError, match="uses no calibration data"):
        lm.quantize_(model, lm.WeightOnly("int4"), batches=stack_batches())
    model.train()
    with pytest.raises(lowbit.ModelError, match="eval mode"):
        lm.quantize_(model, lm.WeightOnly("int4", algorithm="awq"), batches=stack_batches())
    with pytest.raises(lowbit.ModelError, match="at least one batch"):
        lm.quantize_(model.eval(), lm.Dynamic(smoothquant=0.5), batches=[])


def test_an_error_midway_leaves_the_model_as_it_was(stack, monkeypatch, stack_batches):
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
        lm.quantize_(model, lm.WeightOnly("int4", algorithm="awq"), batches=stack_batches(), progress=False)
    assert {n: type(m) for n, m in model.named_modules()} == before
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    x = stack_batches(1)[0]
    with torch.no_grad():
        torch.testing.assert_close(model(x), stack(x), rtol=0, atol=0)


class _Tied(nn.Module):
    """One Linear used at two places (``first`` and ``again``), around a float one."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Linear(16, 16)
        self.mid = nn.Linear(16, 16)
        self.again = self.first

    def forward(self, x):
        return self.again(torch.relu(self.mid(torch.relu(self.first(x)))))


def test_a_shared_module_is_quantized_once_for_every_place():
    model = _Tied()
    expected = lnn.WeightOnlyLinear.from_float(model.first, "int4", "group:8")
    summary = lm.quantize_(model, lm.WeightOnly("int4", "group:8"), exclude="mid")
    assert model.first is model.again and isinstance(model.first, lnn.WeightOnlyLinear)
    assert [(r.name, r.shared_with) for r in summary.rows] == [("first", ("again",))]
    assert "first (= again)" in str(summary)
    assert torch.equal(model.first.dequantized_weight(), expected.dequantized_weight())
    x = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.equal(model(x), expected(torch.relu(model.mid(torch.relu(expected(x))))))


def test_a_shared_module_selected_at_one_place_only_is_refused():
    model = _Tied()
    with pytest.raises(lowbit.ModelError, match=r"'first' is the same module object at 2 places \('first': "
                                                r"quantized, 'again': kept float\)"):
        lm.quantize_(model, lm.WeightOnly("int8"), exclude=["again"])
    plan = {"first": lm.WeightOnly("int8"), "again": lm.WeightOnly("int4"), "mid": None}
    with pytest.raises(lowbit.ModelError, match=r"'first': W8 int8 channel, 'again': W4 int4 channel"):
        lm.quantize_(model, plan)
    assert type(model.first) is nn.Linear and model.first is model.again  # left as it was


def test_a_shared_module_becomes_one_int8_layer_after_static_convert():
    model = _Tied().eval()
    lm.quantize_(model, lm.Static(), include=["first", "again"])
    assert model.first is model.again
    lm.calibrate(model, torch.randn(8, 16), progress=False)
    summary = lm.convert(model)
    assert model.first is model.again and isinstance(model.first, lnn.Int8Linear)
    assert [r.shared_with for r in summary.rows] == [("again",)]


def test_one_string_is_one_pattern(net):
    summary = lm.quantize_(net, lm.WeightOnly("int8"), include="encoder.*", exclude="encoder.2")
    assert [r.name for r in summary.rows] == ["encoder.0"]
    with pytest.raises(lowbit.OptionError, match=r"exclude patterns must be strings .* got 3"):
        lm.quantize_(net, lm.WeightOnly("int8"), exclude=["head", 3])
    with pytest.raises(lowbit.OptionError, match="include must be a glob pattern or a list of them, got int"):
        lm.quantize_(net, lm.WeightOnly("int8"), include=5)


def test_exclude_lm_head_as_a_string_keeps_it_float():
    model = nn.Sequential()
    model.add_module("body", nn.Linear(8, 8))
    model.add_module("lm_head", nn.Linear(8, 8))
    lm.quantize_(model, lm.WeightOnly("int8"), exclude="lm_head")
    assert type(model.lm_head) is nn.Linear and isinstance(model.body, lnn.WeightOnlyLinear)


def test_one_tensor_is_one_batch():
    torch.manual_seed(0)
    float_model = nn.Sequential(nn.Linear(16, 16)).eval()
    batch = torch.randn(2, 6, 16) * torch.linspace(0.1, 3, 16)

    def gptq(batches):
        model = copy.deepcopy(float_model)
        lm.quantize_(model, lm.WeightOnly("int4", algorithm="gptq"), batches=batches, progress=False)
        layer = model[0]
        assert isinstance(layer, lnn.WeightOnlyLinear)
        return layer.dequantized_weight()

    as_tensor = gptq(batch)
    assert torch.equal(as_tensor, gptq([batch]))
    assert not torch.equal(as_tensor, gptq(list(batch)))  # the sink weight needs (batch, sequence, features)
    model = nn.Sequential(nn.Linear(16, 4)).eval()
    lm.quantize_(model, lm.Static())
    assert lm.calibrate(model, torch.randn(5, 16), progress=False) == 1


def test_a_model_that_is_not_a_module_is_refused():
    with pytest.raises(lowbit.InputTypeError, match=r"quantize_ expects a torch\.nn\.Module as model, got NoneType"):
        lm.quantize_(None, lm.WeightOnly("int8"))
    with pytest.raises(lowbit.InputTypeError, match=r"convert expects a torch\.nn\.Module as model, got str"):
        lm.convert("model")
    with pytest.raises(lowbit.InputTypeError, match=r"calibrate expects a torch\.nn\.Module as model, got NoneType"):
        lm.calibrate(None, [torch.ones(1)])
