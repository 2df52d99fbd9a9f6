"""lowbit.io.onnx: export to ONNX and run in ONNX Runtime.

Known answers: ONNX Runtime (an independent implementation) must reproduce lowbit's own outputs;
the stored initializers are read back with onnx.numpy_helper and compared with the QTensor's
codes and scales.  Real-model parity tests are marked ``model``."""

from __future__ import annotations

import argparse
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

import lowbit.model as lm  # noqa: E402
from lowbit.errors import FileFormatError, GranularityError, ModelError, OptionError  # noqa: E402
from lowbit.io.onnx import _probe, _write, cli, export_onnx  # noqa: E402


def _mlp(seed: int = 0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.GELU(), torch.nn.Linear(48, 8)).eval()


def _run(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: np.asarray(v) for k, v in feeds.items()})[0]


def _initializers(path):
    model = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}, model


WEIGHT_ONLY = [("int4", "group:16"), ("int4", "channel"), ("uint4", "group:16"), ("int4_full", "tensor"),
               ("int8", "channel"), ("uint8", "group:16"),
               # ragged groups (64 -> 48: 32 + 16 and 48 + 16): MatMulNBits pads the last block with zero codes
               ("int4", "group:32"), ("uint4", "group:48"), ("uint8", "group:32")]


@pytest.mark.parametrize(("qtype", "gran"), WEIGHT_ONLY, ids=[f"{q}-{g}" for q, g in WEIGHT_ONLY])
def test_weight_only_linear_matches_lowbit_at_batch_1_and_4(tmp_path, qtype, gran):
    net = _mlp()
    lm.quantize_(net, lm.WeightOnly(qtype, gran))
    path = tmp_path / "w.onnx"
    summary = export_onnx(net, path, torch.randn(2, 64))
    assert summary.nodes["MatMulNBits"] == 2 and summary.cosine is not None and summary.cosine > 0.9999
    for rows in (1, 4):  # batch 1 included: onnxruntime#29853 hits single rows of asymmetric 4-bit weights
        x = torch.randn(rows, 64)
        with torch.no_grad():
            want = net(x).numpy()
        np.testing.assert_allclose(_run(path, {"input": x}), want, rtol=1e-4, atol=1e-5)


def _unpack_nbits(packed: np.ndarray, bits: int, k: int) -> np.ndarray:
    rows = packed.reshape(packed.shape[0], -1)
    if bits == 4:
        rows = np.stack([rows & 0x0F, rows >> 4], axis=-1).reshape(rows.shape[0], -1)
    return rows[:, :k].astype(np.int16)


@pytest.mark.parametrize(("qtype", "gran"), [("int4", "group:32"), ("uint4", "group:16"), ("int8", "channel"),
                                             ("uint4", "group:48")])
def test_matmulnbits_initializers_are_lowbits_codes_and_scales(tmp_path, qtype, gran):
    net = _mlp(1)
    lm.quantize_(net, lm.WeightOnly(qtype, gran))
    export_onnx(net, tmp_path / "w.onnx", torch.randn(2, 64), verify=False)
    inits, model = _initializers(tmp_path / "w.onnx")
    nodes = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    for node, layer in zip(nodes, (net[0], net[2]), strict=True):
        qt = layer.weight_qtensor()
        attrs = {a.name: a.i for a in node.attribute}
        offset = 2 ** (qt.qtype.bits - 1) if qt.qtype.signed else 0
        codes = _unpack_nbits(inits[node.input[1]], attrs["bits"], attrs["K"]) - offset
        np.testing.assert_array_equal(codes, qt.codes.astype(np.int16))
        block = attrs["block_size"]
        scales = inits[node.input[2]].reshape(qt.shape[0], -1)
        want = qt.scale.reshape(qt.shape[0], -1)
        size = getattr(qt.granularity, "size", None)
        repeat = size // block if size else scales.shape[1]
        blocks = scales.shape[1]  # ragged groups: the last group's blocks stop at the padded end of the row
        assert blocks == -(-qt.shape[1] // block)
        np.testing.assert_array_equal(scales, np.repeat(want, repeat, axis=1)[:, :blocks])  # bit-exact float32
        if len(node.input) > 3:
            zp = _unpack_nbits(inits[node.input[3]], attrs["bits"], scales.shape[1]) - offset
            want_zp = np.repeat(qt.zero_point.reshape(qt.shape[0], -1), repeat, axis=1)[:, :blocks]
            np.testing.assert_array_equal(zp, want_zp)
        else:
            assert not qt.zero_point.any() if qt.qtype.signed else (qt.zero_point == offset).all()


@pytest.mark.parametrize("act", ["tensor", "token"])
def test_w8a8_dynamic_is_exact_and_shares_activation_codes(tmp_path, act):
    net = _mlp(2)
    lm.quantize_(net, lm.Dynamic(act_granularity=act))
    summary = export_onnx(net, tmp_path / "d.onnx", torch.randn(3, 64))
    assert summary.nodes["MatMulInteger"] == 2 and "DynamicQuantizeLinear" not in summary.nodes
    x = torch.randn(5, 64) * 3
    with torch.no_grad():
        want = net(x).numpy()
    # per tensor: bit-identical; per token: the scales are applied in another order (one rounding apart)
    np.testing.assert_allclose(_run(tmp_path / "d.onnx", {"input": x}), want, rtol=2e-6, atol=1e-6)
    inits, model = _initializers(tmp_path / "d.onnx")
    mm = next(n for n in model.graph.node if n.op_type == "MatMulInteger")
    np.testing.assert_array_equal(inits[mm.input[1]], net[0].weight.numpy().T)  # int8 codes (K, N), as stored


def test_w8a8_static_is_qdq_with_lowbits_scales(tmp_path):
    net = _mlp(3)
    lm.quantize_(net, lm.Static())
    lm.calibrate(net, [torch.randn(16, 64) for _ in range(2)], progress=False)
    lm.convert(net)
    summary = export_onnx(net, tmp_path / "s.onnx", torch.randn(2, 64))
    assert summary.nodes["QuantizeLinear"] == 2 and summary.nodes["DequantizeLinear"] == 4
    inits, model = _initializers(tmp_path / "s.onnx")
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    assert inits[q.input[1]] == np.float32(net[0].act_scale) and inits[q.input[2]].dtype == np.int8
    assert summary.nodes["Clip"] == 2  # lowbit's codes stop at -127, QuantizeLinear's at -128
    x = torch.randn(64, 64) * 4  # far outside the calibrated range: codes saturate on both sides
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(_run(tmp_path / "s.onnx", {"input": x}), want, rtol=1e-5, atol=1e-6)


class _Cnn(torch.nn.Module):  # type: ignore[name-defined]
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.mark.parametrize("scheme", ["dynamic", "static", "int4", "int8"])
def test_cnn_exports_conv_and_gemm(tmp_path, scheme):
    net = _Cnn().eval()
    x = torch.randn(2, 3, 6, 6)
    if scheme == "dynamic":
        lm.quantize_(net, lm.Dynamic())
    elif scheme == "static":
        lm.quantize_(net, lm.Static())
        lm.calibrate(net, [torch.randn(4, 3, 6, 6)], progress=False)
        lm.convert(net)
    else:
        lm.quantize_(net, lm.WeightOnly(scheme))
    summary = export_onnx(net, tmp_path / "c.onnx", x)
    assert summary.nodes["Conv"] == 1 and set(summary.layers) == {"conv", "fc"}
    axes = onnx.load(str(tmp_path / "c.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert axes[0].dim_param == "batch" and axes[2].dim_value == 6
    x = torch.randn(3, 3, 6, 6)
    with torch.no_grad():
        want = net(x).numpy()
    got = _run(tmp_path / "c.onnx", {"input": x})
    assert np.abs(got - want).max() <= 2e-3 * np.abs(want).max()


@pytest.mark.parametrize("gran", ["channel", "group:8", "group:6"])  # group:6: ragged, 6 + 6 + 4 per row
def test_embedding_table_is_dequantize_linear_of_the_codes(tmp_path, gran):
    torch.manual_seed(5)
    net = torch.nn.Sequential(torch.nn.Embedding(20, 16), torch.nn.Linear(16, 4)).eval()
    lm.quantize_(net, lm.WeightOnly("uint4", gran), include=["0"])  # group:8 is too small for MatMulNBits
    ids = torch.tensor([[1, 2, 3], [4, 5, 19]])
    export_onnx(net, tmp_path / "e.onnx", ids)
    with torch.no_grad():
        want = net(ids).numpy()
    np.testing.assert_allclose(_run(tmp_path / "e.onnx", {"input": ids}), want, rtol=1e-5, atol=1e-6)
    inits, model = _initializers(tmp_path / "e.onnx")
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear")
    qt = net[0].weight_qtensor()
    np.testing.assert_array_equal(inits[dq.input[0]].astype(np.int16), qt.codes.astype(np.int16))
    np.testing.assert_array_equal(inits[dq.input[1]], qt.scale)


@pytest.mark.parametrize(("qtype", "gran", "why"), [
    ("nf4", None, "nf4"), ("fp8_e4m3", None, "fp8_e4m3"), ("int3", None, "int3"), ("mxfp4", None, "mxfp4"),
    ("int4", "group:8", "group size 8"),
])
def test_unsupported_schemes_are_refused_before_any_file(tmp_path, qtype, gran, why):
    net = _mlp()
    lm.quantize_(net, lm.WeightOnly(qtype, gran))
    with pytest.raises(OptionError, match=why) as info:
        export_onnx(net, tmp_path / "x.onnx", torch.randn(1, 64))
    assert "supported: weight-only int4" in str(info.value) and "0 (WeightOnly" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_unconverted_static_model_is_refused(tmp_path):
    net = _mlp()
    lm.quantize_(net, lm.Static())
    with pytest.raises(OptionError, match="not an inference layer"):
        export_onnx(net, tmp_path / "x.onnx", torch.randn(1, 64))
    assert list(tmp_path.iterdir()) == []


def test_bad_options_are_refused(tmp_path):
    net = _mlp()
    with pytest.raises(OptionError, match="accuracy_level"):
        export_onnx(net, tmp_path / "x.onnx", torch.randn(1, 64), accuracy_level=7)
    with pytest.raises(FileFormatError, match="does not exist"):
        export_onnx(net, tmp_path / "nope" / "x.onnx", torch.randn(1, 64))


def test_asymmetric_int4_at_batch_1_follows_the_probe(tmp_path, monkeypatch):
    """onnxruntime#29853: where the probe finds batch 1 wrong, asymmetric int4 is refused, naming the issue."""
    net = _mlp(6)
    lm.quantize_(net, lm.WeightOnly("uint4", "group:16"))
    x = torch.randn(1, 64)
    if _probe.asymmetric_nbits_ok():
        export_onnx(net, tmp_path / "a.onnx", x)
        with torch.no_grad():
            np.testing.assert_allclose(_run(tmp_path / "a.onnx", {"input": x}), net(x).numpy(), rtol=1e-4, atol=1e-5)
        (tmp_path / "a.onnx").unlink()
    monkeypatch.setattr(_probe, "asymmetric_nbits_ok", lambda: False)
    with pytest.raises(OptionError, match="29853"):
        export_onnx(net, tmp_path / "a.onnx", x)
    assert list(tmp_path.iterdir()) == []
    symmetric = _mlp(6)
    lm.quantize_(symmetric, lm.WeightOnly("int4", "group:16"))
    assert export_onnx(symmetric, tmp_path / "s.onnx", x).nodes["MatMulNBits"] == 2  # no zero points: not affected


def test_failure_after_the_temp_file_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    net = _mlp()
    lm.quantize_(net, lm.WeightOnly("int4", "group:16"))
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous")

    def broken(tmp):
        assert tmp.exists() and tmp.parent == tmp_path  # the temp file is in the destination folder
        raise ModelError("simulated failure while loading the temp file")

    monkeypatch.setattr(_write, "_session", broken)
    with pytest.raises(ModelError, match="simulated"):
        export_onnx(net, path, torch.randn(1, 64))
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"] and path.read_bytes() == b"previous"


def test_verification_refuses_outputs_that_differ(tmp_path, monkeypatch):
    from lowbit.io.onnx import export as export_module

    net = _mlp()
    lm.quantize_(net, lm.WeightOnly("int4"))
    monkeypatch.setattr(export_module, "_reference", lambda model, ex: [-np.ones((1, 8), np.float32)])
    with pytest.raises(ModelError, match="cosine"):
        export_onnx(net, tmp_path / "m.onnx", torch.randn(1, 64))
    assert list(tmp_path.iterdir()) == []


def test_cli_parses_schemes_and_refuses_bad_input(tmp_path):
    assert cli.parse_scheme("w8a8-dynamic-token") == ("dynamic", "int8", "token")
    assert cli.parse_scheme("int4:group:32") == ("weight-only", "int4", "group:32")
    for bad in ("nf4", "w8a8"):
        with pytest.raises(OptionError, match="QTYPE"):
            cli.parse_scheme(bad)
    for bad in ("int4:32", "int4:group:0", "int4:g32"):  # granularities in lowbit's one spelling only
        with pytest.raises(GranularityError):
            cli.parse_scheme(bad)
    args = argparse.Namespace(model=str(tmp_path), output=str(tmp_path / "o.onnx"), scheme="int4:group:32",
                              accuracy_level=0, calibration=64, exclude=[])
    with pytest.raises(FileFormatError, match=r"config\.json"):
        cli.run(args)


# -- real models --------------------------------------------------------------------------------------------

def _pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    w = mask[..., None].astype(np.float32)
    p = (hidden * w).sum(1) / np.maximum(w.sum(1), 1e-9)
    return p / np.linalg.norm(p, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def minilm():
    from lowbit import zoo

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        model, tokenizer = zoo.load_minilm()
    texts = zoo.sentences(64)
    return model, tokenizer, texts, zoo.embed(model, tokenizer, texts).numpy()


def _ort_embed(path, tokenizer, texts):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    parts = []
    for i in range(0, len(texts), 32):
        b = tokenizer(texts[i : i + 32], padding=True, truncation=True, max_length=256, return_tensors="np")
        parts.append(_pooled(session.run(["last_hidden_state"], dict(b))[0], b["attention_mask"]))
    return np.concatenate(parts)


def _quantizer_mismatches(path, q, feeds) -> dict[str, int]:
    """Per quantizer (named by its layer): how many of ONNX Runtime's int8 activation codes differ from
    ``lowbit.nn.quantize_activations`` of the very float input ONNX Runtime quantized."""
    from lowbit.nn import quantize_activations

    proto = onnx.load(str(path))
    made = {o: n for n in proto.graph.node for o in n.output}
    points = []
    for n in proto.graph.node:
        if n.op_type == "QuantizeLinear":  # its input is Clip(x) (static) or Mul(x, 1 / s) (dynamic)
            points.append((n.name.rsplit(".", 1)[0], made[n.input[0]].input[0], n.output[0]))
    names = [v for _, x, c in points for v in (x, c)]
    proto.graph.output.extend(onnx.helper.make_empty_tensor_value_info(v) for v in names)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip(names, session.run(names, feeds), strict=True))
    found = {}
    for layer, x, codes in points:
        xo = torch.from_numpy(got[x])
        want = quantize_activations(xo.reshape(-1, xo.shape[-1]), q.get_submodule(layer).act_scale)[0].numpy()
        c = got[codes].astype(np.int16) - (128 if got[codes].dtype == np.uint8 else 0)
        found[layer] = int((c.reshape(want.shape) != want).sum())
    return found


@pytest.mark.model
@pytest.mark.parametrize("scheme", ["int4", "w8a8-dynamic", "w8a8-static"])
def test_minilm_embeddings_in_onnx_runtime(tmp_path, minilm, scheme):
    from lowbit import zoo

    model, tok, texts, fp32 = minilm
    q = copy.deepcopy(model)
    if scheme == "int4":
        lm.quantize_(q, lm.WeightOnly("int4", "group:32"), progress=False)
    elif scheme == "w8a8-dynamic":
        lm.quantize_(q, lm.Dynamic(), progress=False)
    else:
        lm.quantize_(q, lm.Static(), progress=False)
        lm.calibrate(q, [dict(tok(texts[i : i + 32], padding=True, return_tensors="pt")) for i in (0, 32)],
                     progress=False)
        lm.convert(q)
    export_onnx(q, tmp_path / "m.onnx", dict(tok(texts[:2], padding=True, return_tensors="pt")))
    ours = zoo.embed(q, tok, texts).numpy()
    theirs = _ort_embed(tmp_path / "m.onnx", tok, texts)
    cos = (ours * theirs).sum(1)
    if scheme == "int4":
        assert cos.min() >= 0.9999
        return
    # W8A8: every int8 quantizer of the graph gives lowbit's codes exactly on ONNX Runtime's own input
    batch = dict(tok(texts[32:], padding=True, truncation=True, max_length=256, return_tensors="np"))
    mismatches = _quantizer_mismatches(tmp_path / "m.onnx", q, batch)
    assert len(mismatches) >= 24 and not any(mismatches.values()), mismatches
    # but end to end the 0.9999 target is out of reach of any implementation that does not round
    # torch's float operators bit for bit (see lowbit.io.onnx.export, "W8A8 parity"): a ~3e-7 input
    # difference at one rounding tie flips one code, and the flips grow ~5x per quantizer.  lowbit
    # against itself (torch's sdpa vs eager attention) reaches only min 0.984 (dynamic) / 0.9966
    # (static) here, so the export is held to the quality of lowbit's model instead
    assert cos.mean() >= 0.99 and cos.min() >= 0.95
    assert (theirs * fp32).sum(1).mean() >= (ours * fp32).sum(1).mean() - 0.005


@pytest.mark.model
def test_mnist_cnn_predicts_the_same_classes(tmp_path):
    from lowbit import zoo

    model = zoo.load_mnist_cnn()
    images, _ = zoo.mnist_split("test")
    images = images[:512]
    lm.quantize_(model, lm.Static(), progress=False)
    lm.calibrate(model, [images[:256]], progress=False)
    lm.convert(model)
    export_onnx(model, tmp_path / "mnist.onnx", images[:2])
    with torch.no_grad():
        want = model(images).argmax(1).numpy()
    got = _run(tmp_path / "mnist.onnx", {"input": images}).argmax(1)
    assert (got == want).mean() >= 0.998
