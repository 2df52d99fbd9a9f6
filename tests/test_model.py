"""lowbit.model on small synthetic networks: selection, swaps, reports, steps in order, errors."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lowbit  # noqa: E402
import lowbit.model as lm  # noqa: E402


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(50, 32)
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.encoder = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32))
        self.head = nn.Linear(32 + 8, 4)
        self.norm = nn.LayerNorm(32)

    def forward(self, ids: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.encoder(self.emb(ids).mean(dim=1)))
        c = self.conv(img).mean(dim=(2, 3))
        return self.head(torch.cat([h, c], dim=1))


def _inputs(n: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 50, (n, 7), generator=g), torch.randn(n, 1, 8, 8, generator=g)


@pytest.fixture
def net() -> Net:
    return Net().eval()


def test_weight_only_swaps_every_supported_layer(net):
    ref = copy.deepcopy(net)
    summary = lm.quantize_(net, lm.WeightOnly("int4", lowbit.PerGroup(16)))
    assert [r.name for r in summary.rows] == ["emb", "conv", "encoder.0", "encoder.2", "head"]
    assert summary.bytes_after < summary.bytes_before / 3
    assert "total" in str(summary)
    ids, img = _inputs()
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
    with pytest.raises(lowbit.OptionError):
        lm.WeightOnly("int4", algorithm="gptq-ish")
    with pytest.raises(lowbit.QTypeError):
        lm.WeightOnly("int33")
    with pytest.raises(lowbit.OptionError, match="weight_qtype='int4' is not int8"):
        lm.Dynamic(weight_qtype="int4")
    with pytest.raises(lowbit.GranularityError, match="act_granularity 'channel' is not taken here"):
        lm.Dynamic(act_granularity="channel")
    with pytest.raises(lowbit.GranularityError, match="act_granularity 'token' is not taken here; use tensor"):
        lm.Static(act_granularity="token")
    with pytest.raises(lowbit.OptionError, match="unknown method 'median'"):
        lm.Static(method="median")
    with pytest.raises(lowbit.OptionError, match="no option"):
        lm.Static(method="percentile", method_options={"percentil": 99.0})


def test_dynamic_and_static_compute_in_integers(net):
    ref = copy.deepcopy(net)
    dyn = copy.deepcopy(net)
    lm.quantize_(dyn, lm.Dynamic(act_granularity="token"), include=["encoder.*", "head"])
    lm.quantize_(net, lm.Static(), include=["encoder.*", "head", "conv"])
    with pytest.raises(lowbit.ModelError, match="convert before calibrate: observers of"):
        lm.convert(net)
    batches = [_inputs(16, seed) for seed in range(4)]
    with pytest.raises(lowbit.ModelError, match="training mode"):
        lm.calibrate(net.train(), batches, progress=False)
    assert lm.calibrate(net.eval(), batches, progress=False) == 4
    summary = lm.convert(net)
    assert [r.name for r in summary.rows] == ["conv", "encoder.0", "encoder.2", "head"]
    ids, img = _inputs(32, 9)
    with torch.no_grad():
        want = ref(ids, img)
        for m in (net, dyn):
            assert nn.functional.cosine_similarity(m(ids, img), want).mean() > 0.99


def test_calibrate_before_prepare(net):
    with pytest.raises(lowbit.ModelError, match="calibrate before prepare"):
        lm.calibrate(net, [_inputs()], progress=False)
    with pytest.raises(lowbit.ModelError, match="run quantize_"):
        lm.convert(net)


def test_qat_prepare_train_convert():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    student = copy.deepcopy(teacher)
    xs = [torch.randn(64, 16) for _ in range(8)]
    data = [(x, teacher(x).detach()) for x in xs]
    ptq = copy.deepcopy(teacher)
    lm.quantize_(ptq, lm.WeightOnly("int2"))
    lm.quantize_(student, lm.QAT(lm.WeightOnly("int2"), step="prepare"))
    losses = lm.train(student, data, nn.functional.mse_loss, steps=300, lr=3e-3)
    assert np.mean(losses[-20:]) < np.mean(losses[:20])
    lm.quantize_(student, lm.QAT(lm.WeightOnly("int2"), step="convert"))
    x = torch.randn(256, 16)
    with torch.no_grad():
        err_qat = nn.functional.mse_loss(student(x), teacher(x))
        err_ptq = nn.functional.mse_loss(ptq(x), teacher(x))
    assert err_qat < err_ptq


def test_state_dict_round_trip(net):
    lm.quantize_(net, lm.WeightOnly("int4", lowbit.PerGroup(16)), include=["encoder.*", "head", "emb"])
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    fresh = Net().eval()
    lm.quantize_(fresh, lm.WeightOnly("int4", lowbit.PerGroup(16)), include=["encoder.*", "head", "emb"])
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    ids, img = _inputs()
    with torch.no_grad():
        assert torch.equal(fresh(ids, img), net(ids, img))


def test_size_report_counts_packed_bytes(net):
    before = lm.size_report(net).total_bytes
    floats = sum(p.numel() * 4 for p in net.parameters())
    assert before == floats
    lm.quantize_(net, lm.WeightOnly("int4"), include=["encoder.*"])
    after = lm.size_report(net)
    w = net.encoder[0]
    assert after.total_bytes < before and "total" in str(after)
    assert w.nbytes >= 64 * 32 // 2


def test_error_report_needs_eval_and_a_difference(net):
    with pytest.raises(lowbit.ModelError, match="same layer types"):
        lm.error_report(net, copy.deepcopy(net), [_inputs()])
    with pytest.raises(lowbit.ModelError, match="training mode"):
        lm.error_report(net.train(), copy.deepcopy(net), [_inputs()])


def test_ladder_renders_every_rung(net):
    ids, img = _inputs()

    def quality(m: nn.Module) -> dict[str, float]:
        with torch.no_grad():
            return {"cos": float(nn.functional.cosine_similarity(m(ids, img), net(ids, img)).mean())}

    rungs = lm.run_ladder(net, [("W8", lambda m: lm.quantize_(m, lm.WeightOnly("int8")))], quality, [(ids, img)])
    text = lm.render_ladder(rungs, "title")
    assert text.startswith("title") and "W8" in text and rungs[1].worst_layer


def test_groups_that_do_not_divide_fall_back_to_channels_and_say_so(net):
    summary = lm.quantize_(net, lm.WeightOnly("int4", lowbit.PerGroup(16)), include=["head", "conv", "encoder.0"])
    schemes = {r.name: r.scheme for r in summary.rows}
    assert schemes["encoder.0"] == "W4 int4 group:16"
    assert schemes["head"] == "W4 int4 group:16 -> channel (group 16 does not divide 40)"
    assert schemes["conv"].endswith("(group 16 does not divide 3)")
    assert lm.WeightOnly("int4", granularity="group:16") == lm.WeightOnly("int4", lowbit.PerGroup(16))
    with pytest.raises(lowbit.GranularityError, match="granularity 'token' is not taken here"):
        lm.WeightOnly("int4", granularity="token")


def test_hqq_algorithm_beats_round_to_nearest_on_outlier_weights():
    torch.manual_seed(0)
    layer = nn.Linear(512, 64)
    with torch.no_grad():
        layer.weight[torch.rand(64, 512) < 0.03] *= 10  # heavy-tailed weights
    net = nn.Sequential(layer).eval()
    rtn, hqq = copy.deepcopy(net), copy.deepcopy(net)
    lm.quantize_(rtn, lm.WeightOnly("uint4"))
    summary = lm.quantize_(hqq, lm.WeightOnly("uint4", algorithm="hqq"))
    assert summary.rows[0].scheme == "W4 uint4 channel hqq"
    w = layer.weight.detach()
    err = {name: float(((m[0].dequantized_weight() - w) ** 2).mean()) for name, m in (("rtn", rtn), ("hqq", hqq))}
    assert err["hqq"] < err["rtn"]
    with pytest.raises(lowbit.OptionError, match="algorithm='hqq' optimises"):
        lm.WeightOnly("uint4", algorithm="hqq", method="mse")


def test_load_qtensor_refuses_another_configuration():
    layer = lowbit.nn.WeightOnlyLinear.from_float(nn.Linear(8, 4), "int4")
    with pytest.raises(lowbit.OptionError, match=r"qtype 'int8' \(module has 'int4'\)"):
        layer.load_qtensor(lowbit.quantize(torch.ones(4, 8), "int8", granularity=lowbit.PerChannel(0)))
