"""lowbit.io.checkpoint: save/load round trips (dicts and models), shards and index, atomic writes, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lowbit
from lowbit.io import checkpoint


def _tensors():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 128)).astype(np.float32)
    return {
        "a.weight": lowbit.quantize(w, "int4", granularity="group:32", scale_format="float16"),
        "b.weight": lowbit.quantize(w, "uint4", granularity="channel"),
        "c.weight": lowbit.quantize(w, "nf4", granularity="group:64", scale_format="double8"),
        "d.weight": lowbit.quantize(w.astype(np.float64), "int8"),
        "norm": np.ones(8, np.float32),
        "ids": np.arange(5, dtype=np.int64),
    }


def _same(a, b):
    if isinstance(a, lowbit.QTensor):
        assert isinstance(b, lowbit.QTensor)
        assert (a.qtype, str(a.granularity), a.symmetric, a.scale_format, a.shape, a.dtype) == \
               (b.qtype, str(b.granularity), b.symmetric, b.scale_format, b.shape, b.dtype)
        np.testing.assert_array_equal(a.codes, b.codes)
        for key in a.stored_scale:
            np.testing.assert_array_equal(a.stored_scale[key], b.stored_scale[key])
        np.testing.assert_array_equal(a.dequantize(), b.dequantize())
    else:
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


@pytest.mark.parametrize("where", ["file", "folder", "shards"])
def test_round_trip_is_bit_identical(tmp_path, where):
    tensors = _tensors()
    path = tmp_path / ("m.safetensors" if where == "file" else "m")
    written = lowbit.save(tensors, path, max_shard_size=1500 if where == "shards" else None)
    if where == "shards":
        assert written[-1].name == checkpoint.INDEX_NAME and len(written) > 2
        index = json.loads(written[-1].read_text())
        assert set(index["weight_map"].values()) == {p.name for p in written[:-1]}
    back = lowbit.load(path)
    assert list(back) == list(tensors)
    for name in tensors:
        _same(tensors[name], back[name])
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temporary file left


@pytest.mark.parametrize("where", ["file", "shards"])
def test_ragged_groups_round_trip_bit_identical(tmp_path, where):
    """Groups that do not divide their axis (the last one shorter) are stored and read back as they are."""
    w = np.random.default_rng(1).standard_normal((8, 128)).astype(np.float32)
    tensors = {"r.weight": lowbit.quantize(w, "uint3", granularity="group:48", scale_format="float16"),  # 48, 48, 32
               "r0.weight": lowbit.quantize(w, "int5", granularity="group:3:0"),  # along axis 0: 3, 3, 2 rows
               "z.weight": lowbit.quantize(w, "uint4", granularity="group:40", zero_point="float")}
    path = tmp_path / ("m.safetensors" if where == "file" else "m")
    lowbit.save(tensors, path, max_shard_size=1 if where == "shards" else None)
    back = lowbit.load(path)
    assert back["r.weight"].scale.shape == (8, 3) and back["r0.weight"].scale.shape == (3, 128)
    for name in tensors:
        _same(tensors[name], back[name])


def test_load_needs_no_torch(tmp_path):
    import subprocess
    import sys

    lowbit.save(_tensors(), tmp_path / "m.safetensors")
    code = ("import sys, lowbit; d = lowbit.load(sys.argv[1]); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(len(d))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.safetensors")], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "6"


def test_a_quantized_tensor_never_spans_shards(tmp_path):
    written = lowbit.save(_tensors(), tmp_path / "m", max_shard_size=1)  # every tensor in its own shard
    ckpt = checkpoint.open_checkpoint(tmp_path / "m")
    for name, info in ckpt.tensors.items():
        assert len({ckpt.where[e] for e in info["arrays"].values()}) == 1, name
    assert len(written) == 7


def test_size_parsing_and_refusals(tmp_path):
    assert checkpoint.parse_size("2GB") == 2 * 10**9 and checkpoint.parse_size("1MiB") == 2**20
    with pytest.raises(lowbit.OptionError, match="max_shard_size"):
        checkpoint.parse_size("lots")
    with pytest.raises(lowbit.OptionError, match="give a folder"):
        lowbit.save(_tensors(), tmp_path / "one.safetensors", max_shard_size=100)
    with pytest.raises(lowbit.OptionError, match="dict of tensors or a torch model"):
        lowbit.save([1, 2], tmp_path / "x.safetensors")
    for name in ("model.bin", "model.pt", "weights.pth"):
        (tmp_path / name).write_bytes(b"\x80\x04not really")
        with pytest.raises(lowbit.FileFormatError, match=r"pickle.*refuses"):
            lowbit.load(tmp_path / name)
    (tmp_path / "empty").mkdir()
    with pytest.raises(lowbit.FileFormatError, match=r"no model\.safetensors"):
        lowbit.load(tmp_path / "empty")
    with pytest.raises(lowbit.FileFormatError, match="no such file"):
        lowbit.load(tmp_path / "missing.safetensors")


def test_tampered_metadata_is_refused(tmp_path):
    from lowbit.io._safetensors import SafetensorsFile, SafetensorsWriter

    lowbit.save({"w": _tensors()["a.weight"]}, tmp_path / "m.safetensors")
    f = SafetensorsFile(tmp_path / "m.safetensors")
    doc = json.loads(f.metadata["lowbit"])

    def rewrite(new_doc, drop=()):
        names = [n for n in f.names if n not in drop]
        with SafetensorsWriter(tmp_path / "t.safetensors", [(n, f.dtype(n), f.shape(n)) for n in names],
                               {"format": "lowbit", "lowbit": json.dumps(new_doc)}) as w:
            for n in names:
                w.write(n, f.array(n))
        return tmp_path / "t.safetensors"

    future = {**doc, "format_version": 99}
    with pytest.raises(lowbit.FileFormatError, match="upgrade lowbit"):
        lowbit.load(rewrite(future))
    with pytest.raises(lowbit.FileFormatError, match="lacks its arrays"):
        lowbit.load(rewrite(doc, drop=("w.scale_f16",)))
    bad_shape = json.loads(json.dumps(doc))
    bad_shape["tensors"]["w"]["shape"] = [8, 64]
    with pytest.raises(lowbit.FileFormatError, match="quantized tensor 'w'"):
        lowbit.load(rewrite(bad_shape))
    unknown = json.loads(json.dumps(doc))
    unknown["tensors"]["w"]["qtype"] = "int99"
    with pytest.raises(lowbit.FileFormatError, match="int99"):
        lowbit.load(rewrite(unknown))


def test_an_unknown_codebook_is_registered_from_its_table(tmp_path):
    qt = lowbit.quantize(np.linspace(-1, 1, 64, dtype=np.float32), lowbit.formats.Codebook("spec_cb3",
                                                                                           [-1, -0.3, 0, 0.4, 1]))
    lowbit.save({"w": qt}, tmp_path / "m.safetensors")
    doc = json.loads(checkpoint.open_checkpoint(tmp_path / "m.safetensors").files["m.safetensors"].metadata["lowbit"])
    assert doc["tensors"]["w"]["grid"] == [-1.0, -0.3, 0.0, 0.4, 1.0]
    np.testing.assert_array_equal(lowbit.load(tmp_path / "m.safetensors")["w"].dequantize(), qt.dequantize())


def test_saving_again_into_a_folder_leaves_no_stale_shard_or_index(tmp_path):
    tensors = _tensors()
    lowbit.save(tensors, tmp_path / "m", max_shard_size=1)  # six shards and an index
    lowbit.save({"norm": tensors["norm"]}, tmp_path / "m")  # now one model.safetensors
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.safetensors"]
    assert list(lowbit.load(tmp_path / "m")) == ["norm"]
    lowbit.save(tensors, tmp_path / "m", max_shard_size=1500)
    assert "model.safetensors" not in {p.name for p in (tmp_path / "m").iterdir()}
    assert list(lowbit.load(tmp_path / "m")) == list(tensors)


class _Tied:
    """A model whose output head shares the embedding's weight (as most language models do)."""

    @staticmethod
    def build(device="cpu"):
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = torch.nn.Embedding(50, 64, device=device)
                self.mid = torch.nn.Linear(64, 64, device=device)
                self.head = torch.nn.Linear(64, 50, bias=False, device=device)
                self.head.weight = self.emb.weight

            def forward(self, ids):
                return self.head(torch.relu(self.mid(self.emb(ids))))

        return Net()


def test_tied_weights_are_stored_once_and_come_back_tied(tmp_path):
    torch = pytest.importorskip("torch")
    import lowbit.model as lm
    from lowbit.io.inspect import inspect_checkpoint

    torch.manual_seed(0)
    net = _Tied.build()
    lm.quantize_(net, lm.WeightOnly("int4", "group:32"), include=["mid"])
    path = tmp_path / "tied.safetensors"
    lowbit.save(net, path)
    f = lowbit.io.open_checkpoint(path)
    assert "head.weight" not in f.where and f.aliases == {"head.weight": "emb.weight"}
    back = lowbit.load(path)
    assert back["head.weight"] is back["emb.weight"]
    np.testing.assert_array_equal(back["head.weight"], net.emb.weight.detach().numpy())
    assert "head.weight shares emb.weight" in inspect_checkpoint(path).to_text()

    skeleton = lm.load_quantized(path, _Tied.build(device="meta"))
    assert skeleton.head.weight.data_ptr() == skeleton.emb.weight.data_ptr()
    ids = torch.arange(50).reshape(5, 10)
    with torch.no_grad():
        torch.testing.assert_close(skeleton(ids), net(ids), rtol=0, atol=0)


def test_aliases_that_point_nowhere_are_refused(tmp_path):
    from lowbit.io._safetensors import SafetensorsWriter

    doc = {"format_version": 1, "tensors": {}, "aliases": {"head.weight": "missing"}}
    path = tmp_path / "bad.safetensors"
    with SafetensorsWriter(path, [("emb.weight", "F32", (2,))], {"format": "lowbit", "lowbit": json.dumps(doc)}) as w:
        w.write("emb.weight", np.ones(2, np.float32))
    with pytest.raises(lowbit.FileFormatError, match="aliases"):
        lowbit.load(path)
    doc["aliases"] = {"emb.weight": "emb.weight"}
    with SafetensorsWriter(path, [("emb.weight", "F32", (2,))], {"format": "lowbit", "lowbit": json.dumps(doc)}) as w:
        w.write("emb.weight", np.ones(2, np.float32))
    with pytest.raises(lowbit.FileFormatError, match="name stored tensors"):
        lowbit.load(path)


@pytest.mark.parametrize(("path", "value", "fragment"), [
    (("format_version",), 2.5, "format_version 2.5"),
    (("format_version",), True, "format_version True"),
    (("modules",), [], "'modules' and 'aliases' are objects"),
    (("tensors", "w", "arrays"), ["w.data"], "lack an 'arrays' object"),
    (("tensors", "w", "arrays", "data"), ["w.data"], "lack an 'arrays' object"),
    (("tensors", "w", "shape"), "8", "'shape' must be a list of non-negative ints"),
    (("tensors", "w", "shape"), [2**40, 2**40], "needs 604462909807314587353088"),
    (("tensors", "w", "symmetric"), "yes", "'symmetric' must be true or false"),
], ids=["version-2.5", "version-true", "modules-list", "arrays-list", "array-name-list", "shape-string",
        "shape-huge", "symmetric-string"])
def test_issue16_hostile_lowbit_metadata_is_a_file_format_error(tmp_path, path, value, fragment):
    """Fields of the lowbit metadata that raised TypeError/OverflowError, or allocated by a claimed shape."""
    from lowbit.io._safetensors import SafetensorsFile, SafetensorsWriter

    lowbit.save({"w": _tensors()["a.weight"]}, tmp_path / "m.safetensors")
    f = SafetensorsFile(tmp_path / "m.safetensors")
    doc = json.loads(f.metadata["lowbit"])
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with SafetensorsWriter(tmp_path / "t.safetensors", [(n, f.dtype(n), f.shape(n)) for n in f.names],
                           {"format": "lowbit", "lowbit": json.dumps(doc)}) as w:
        for n in f.names:
            w.write(n, f.array(n))
    with pytest.raises(lowbit.FileFormatError, match=fragment):
        lowbit.load(tmp_path / "t.safetensors")
