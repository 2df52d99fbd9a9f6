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
