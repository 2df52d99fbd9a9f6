"""lowbit.model.load_quantized: a saved model's layers rebuilt in a skeleton give the same outputs, bit for bit."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lowbit  # noqa: E402
import lowbit.model as lm  # noqa: E402
import lowbit.nn as lnn  # noqa: E402


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 32, padding_idx=0)
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.body = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32))
        self.head = nn.Linear(40, 4)
        self.norm = nn.LayerNorm(32)

    def forward(self, ids: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.body(self.emb(ids).mean(dim=1)))
        return self.head(torch.cat([h, self.conv(img).mean(dim=(2, 3))], dim=1))


def _net() -> Net:
    torch.manual_seed(0)
    return Net().eval()


def _inputs(n: int = 6):
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, 50, (n, 5), generator=g), torch.randn(n, 1, 8, 8, generator=g)


def _batches():
    return [_inputs(8) for _ in range(3)]


def _check(net: nn.Module, path, meta: bool) -> nn.Module:
    if meta:
        with torch.device("meta"):
            skeleton = Net()
    else:
        torch.manual_seed(99)  # other float values, which the checkpoint must overwrite
        skeleton = Net()
    back = lm.load_quantized(path, skeleton).eval()
    for (name, a), (_, b) in zip(net.named_modules(), back.named_modules(), strict=True):
        assert type(a) is type(b), name
    ids, img = _inputs()
    with torch.no_grad():
        assert torch.equal(back(ids, img), net(ids, img))
    return back


CONFIGS = {
    "weight-only int4 g16": (lm.WeightOnly("int4", "group:16", scale_format="float16"), False),
    "weight-only nf4 double8": (lm.WeightOnly("nf4", "group:16", scale_format="double8"), False),
    "weight-only uint4 hqq": (lm.WeightOnly("uint4", "group:16", algorithm="hqq"), False),
    "dynamic W8A8 per token": (lm.Dynamic(act_granularity="token"), False),
    "gptq int4": (lm.WeightOnly("int4", algorithm="gptq"), True),
    "awq int4 (smooth_scale)": (lm.WeightOnly("int4", "group:16", algorithm="awq"), True),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("meta", [False, True], ids=["cpu-skeleton", "meta-skeleton"])
@pytest.mark.parametrize("shards", [None, 2000], ids=["one-file", "sharded"])
def test_saved_models_load_back_bit_for_bit(tmp_path, name, meta, shards):
    config, data = CONFIGS[name]
    net = _net()
    lm.quantize_(net, config, **({"batches": _batches(), "progress": False} if data else {}))
    lowbit.save(net, tmp_path / "m", max_shard_size=shards)
    back = _check(net, tmp_path / "m", meta)
    ckpt = lowbit.io.open_checkpoint(tmp_path / "m")
    algorithm = config.algorithm if isinstance(config, lm.WeightOnly) else "rtn"
    assert ckpt.tensors["body.0.weight"]["algorithm"] == algorithm
    if "awq" in name:
        assert back.body[0].smooth_scale is not None


def test_static_w8a8_keeps_its_activation_scales(tmp_path):
    net = _net()
    lm.quantize_(net, lm.Static(smoothquant=0.5), batches=_batches(), progress=False)
    lm.calibrate(net, _batches(), progress=False)
    lm.convert(net)
    lowbit.save(net, tmp_path / "m.safetensors")
    back = _check(net, tmp_path / "m.safetensors", meta=True)
    assert float(back.body[0].act_scale) == float(net.body[0].act_scale)
    assert torch.equal(back.body[0].smooth_scale, net.body[0].smooth_scale)


def test_a_checkpoint_from_a_file_becomes_weight_only_layers(tmp_path):
    """``lowbit quantize`` knows no layers: the skeleton's Linear/Conv2d/Embedding take the quantized weights."""
    from lowbit.io.checkpoint import save
    from lowbit.io.convert import quantize_checkpoint

    net = _net()
    save({k: v for k, v in net.state_dict().items()}, tmp_path / "float.safetensors")
    quantize_checkpoint(tmp_path / "float.safetensors", tmp_path / "q.safetensors", qtype="int4",
                        granularity="group:16", progress=False)
    ref = copy.deepcopy(net)
    lm.quantize_(ref, lm.WeightOnly("int4", "group:16"))
    back = _check(ref, tmp_path / "q.safetensors", meta=True)
    assert isinstance(back.conv, lnn.WeightOnlyConv2d) and isinstance(back.emb, lnn.WeightOnlyEmbedding)


def test_mismatched_skeletons_are_refused(tmp_path):
    net = _net()
    lm.quantize_(net, lm.WeightOnly("int8"))
    lowbit.save(net, tmp_path / "m.safetensors")
    wrong = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(lowbit.ModelError, match="skeleton has no module"):
        lm.load_quantized(tmp_path / "m.safetensors", wrong)
    smaller = Net()
    smaller.body[0] = nn.Linear(32, 16)
    with pytest.raises(lowbit.ModelError, match=r"body\.0"):
        lm.load_quantized(tmp_path / "m.safetensors", smaller)
    extra = Net()
    extra.more = nn.Linear(2, 2)
    with pytest.raises(lowbit.ModelError, match="missing"):
        lm.load_quantized(tmp_path / "m.safetensors", extra)


def test_unfinished_layers_cannot_be_saved(tmp_path):
    net = _net()
    lm.quantize_(net, lm.Static())
    with pytest.raises(lowbit.ModelError, match="calibrate and convert first"):
        lowbit.save(net, tmp_path / "m.safetensors")
    qat = _net()
    lm.quantize_(qat, lm.QAT(lm.WeightOnly("int4")))
    with pytest.raises(lowbit.ModelError, match="step='convert'"):
        lowbit.save(qat, tmp_path / "m.safetensors")
