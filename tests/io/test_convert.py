"""lowbit.io.convert: streaming checkpoint quantization equals lowbit.quantize, folders, resume, kill safety."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import lowbit
from lowbit import cli
from lowbit.io import convert
from lowbit.io._safetensors import SafetensorsFile, SafetensorsWriter


def _write(path: Path, tensors: dict[str, np.ndarray], bf16: tuple[str, ...] = ()) -> None:
    entries = []
    for name, a in tensors.items():
        entries.append((name, "BF16" if name in bf16 else {"float32": "F32", "float16": "F16", "float64": "F64",
                                                           "int64": "I64"}[a.dtype.name], a.shape))
    with SafetensorsWriter(path, entries) as w:
        for name, a in tensors.items():
            w.write(name, (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16) if name in bf16 else a)


def _bf16(a: np.ndarray) -> np.ndarray:
    """float32 values that bfloat16 holds exactly (the low 16 bits cleared)."""
    return (a.astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)


@pytest.fixture
def model_file(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"emb.weight": rng.standard_normal((40, 64)).astype(np.float32),
               "l1.weight": _bf16(rng.standard_normal((37, 96))), "l1.bias": rng.standard_normal(37).astype(np.float32),
               "conv.weight": rng.standard_normal((8, 3, 3, 3)).astype(np.float16),
               "odd.weight": rng.standard_normal((5, 70)).astype(np.float32), "ids": np.arange(7, dtype=np.int64)}
    path = tmp_path / "in.safetensors"
    _write(path, tensors, bf16=("l1.weight",))
    return path, tensors


def _valid(case: tuple) -> bool:
    try:
        convert.QuantizeOptions(*case).check()
    except lowbit.LowbitError:  # MX formats take e8m0 scales only
        return False
    return True


CASES = [c for c in itertools.product(["int4", "uint4", "nf4", "int8", "mxfp4"], ["group:32", "channel", "tensor"],
                                      [None, "float16", "double8", "kquant6"]) if _valid(c)]


@pytest.mark.parametrize("qtype, gran, fmt", CASES, ids=[f"{q}-{g}-{f}" for q, g, f in CASES])
def test_streaming_equals_quantize_of_the_whole_tensor(model_file, tmp_path, monkeypatch, qtype, gran, fmt):
    src, tensors = model_file
    monkeypatch.setattr(convert, "_CHUNK", 700)  # several blocks of rows per tensor
    out = tmp_path / "out.safetensors"
    summary = convert.quantize_checkpoint(src, out, qtype=qtype, granularity=gran, scale_format=fmt, progress=False)
    got = lowbit.load(out)
    for name, x in tensors.items():
        if name in ("ids", "l1.bias"):
            np.testing.assert_array_equal(got[name], x)
            continue
        info = convert._plan_tensor(name, SafetensorsFile(src), convert.QuantizeOptions(qtype, gran, fmt))[0]
        if info is None:  # an MX block that does not divide: kept float
            np.testing.assert_array_equal(got[name], x.astype(np.float32))
            continue
        want = lowbit.quantize(x, qtype, granularity=info["granularity"], scale_format=fmt,
                               symmetric=info["symmetric"])
        qt = got[name]
        np.testing.assert_array_equal(qt.data, want.data, err_msg=name)
        for key in want.stored_scale:
            np.testing.assert_array_equal(qt.stored_scale[key], want.stored_scale[key], err_msg=name)
        np.testing.assert_array_equal(qt.dequantize(), want.dequantize())
    assert summary.quantized + summary.kept == len(tensors)


def test_selection_fallbacks_and_notes(model_file, tmp_path):
    src, _ = model_file
    s = convert.quantize_checkpoint(src, tmp_path / "o.safetensors", qtype="int4", granularity="group:32",
                                    exclude=["emb.*"], progress=False)
    got = lowbit.load(tmp_path / "o.safetensors")
    assert isinstance(got["l1.weight"], lowbit.QTensor) and not isinstance(got["emb.weight"], lowbit.QTensor)
    assert str(got["odd.weight"].granularity) == "group:32"  # 32 does not divide 70: groups of 32, 32, 6
    assert got["odd.weight"].scale.shape == (5, 3)
    assert str(got["conv.weight"].granularity) == "channel"  # a conv kernel: the width 3 keeps channels
    assert not any("odd.weight" in n for n in s.notes)
    assert any("conv.weight: channel (group 32 does not divide 3)" in n for n in s.notes)
    assert s.quantized == 3 and s.kept == 3 and 4.0 < s.bits_per_weight < 6
    only = convert.quantize_checkpoint(src, tmp_path / "p.safetensors", include=["l1.*"], min_ndim=1,
                                       progress=False)
    assert only.quantized == 2  # the weight and (min_ndim 1) its bias


@pytest.mark.parametrize("fmt", ["float16", "kquant6"])
def test_hqq_runs_block_by_block(model_file, tmp_path, monkeypatch, fmt):
    """HQQ's early stop is judged per chunk of rows, so blocks of 8 rows give HQQ of each block (not bit for bit
    the whole-tensor run, whose chunks differ) and its quality. kquant6's super-scales (8 consecutive scales)
    never cross blocks of 8 rows, so its stored arrays concatenate too."""
    from lowbit.algorithms import hqq_quantize

    src, tensors = model_file
    monkeypatch.setattr(convert, "_CHUNK", 700)  # blocks of 8 rows of 96
    convert.quantize_checkpoint(src, tmp_path / "h.safetensors", qtype="uint4", granularity="group:32",
                                algorithm="hqq", scale_format=fmt, progress=False)
    got = lowbit.load(tmp_path / "h.safetensors")["l1.weight"]
    assert got.scale_format == fmt
    x = tensors["l1.weight"]
    parts = []
    for r in range(0, x.shape[0], 8):
        parts.append(hqq_quantize(x[r : r + 8], "uint4", granularity="group:32", scale_format=fmt).dequantize())
    np.testing.assert_array_equal(got.dequantize(), np.concatenate(parts))
    whole = hqq_quantize(x, "uint4", granularity="group:32").dequantize()
    rtn = lowbit.fake_quantize(x, "uint4", granularity="group:32")
    err = {k: float(np.abs(v - x).mean()) for k, v in (("blocks", got.dequantize()), ("whole", whole), ("rtn", rtn))}
    assert err["blocks"] < err["rtn"] and err["blocks"] < 1.02 * err["whole"], err
    ckpt = lowbit.io.open_checkpoint(tmp_path / "h.safetensors")
    assert ckpt.tensors["l1.weight"]["algorithm"] == "hqq" and ckpt.tensors["conv.weight"]["algorithm"] == "rtn"


def test_bad_options_and_inputs_fail_before_any_output(model_file, tmp_path):
    src, _ = model_file
    out = tmp_path / "never.safetensors"
    for kwargs in ({"qtype": "int99"}, {"granularity": "group:32:0"}, {"granularity": "token"},
                   {"algorithm": "gptq"}, {"qtype": "nf4", "symmetric": False},
                   {"algorithm": "hqq", "scale_format": "double8", "qtype": "uint4"}):
        with pytest.raises(lowbit.LowbitError):
            convert.quantize_checkpoint(src, out, progress=False, **kwargs)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(src.read_bytes()[:-10])
    with pytest.raises(lowbit.FileFormatError, match=r"broken\.safetensors"):
        convert.quantize_checkpoint(broken, out, progress=False)
    nan = tmp_path / "nan.safetensors"
    _write(nan, {"w": np.full((4, 64), np.nan, np.float32)})
    with pytest.raises(lowbit.NonFiniteError, match=r"nan.safetensors: tensor 'w'"):
        convert.quantize_checkpoint(nan, out, progress=False)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _model_folder(root: Path, shards: int = 4, rows: int = 512) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir()
    weight_map = {}
    for i in range(1, shards + 1):
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        tensors = {f"layers.{i}.{k}.weight": rng.standard_normal((rows, 1024)).astype(np.float32) for k in range(4)}
        tensors[f"layers.{i}.norm"] = np.ones(1024, np.float32)
        _write(root / name, tensors)
        weight_map.update({k: name for k in tensors})
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (root / "config.json").write_text('{"model_type": "test"}')
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    return root


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.safetensors")}


def test_a_model_folder_becomes_a_sharded_lowbit_folder(tmp_path):
    src = _model_folder(tmp_path / "src", shards=3, rows=64)
    out = tmp_path / "out"
    s = convert.quantize_checkpoint(src, out, qtype="int4", granularity="group:64", progress=False)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        [*(p.name for p in src.glob("*.safetensors")), "model.safetensors.index.json", "config.json", "tokenizer"])
    assert (out / "tokenizer" / "vocab.txt").read_text() == "a\nb\n"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["weight_map"]["layers.1.0.weight.data"] == "model-00001-of-00003.safetensors"
    assert s.quantized == 12 and s.kept == 3 and s.skipped_shards == 0
    again = convert.quantize_checkpoint(src, out, qtype="int4", granularity="group:64", resume=True, progress=False)
    assert again.skipped_shards == 3
    other = convert.quantize_checkpoint(src, out, qtype="int4", granularity="group:32", resume=True, progress=False)
    assert other.skipped_shards == 0  # other options: nothing is reused


def test_dequantize_back_to_a_plain_checkpoint(model_file, tmp_path):
    src, _ = model_file
    q = tmp_path / "q.safetensors"
    convert.quantize_checkpoint(src, q, qtype="int8", granularity="channel", progress=False)
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"{dtype}.safetensors"
        convert.dequantize_checkpoint(q, out, dtype=dtype, progress=False)
        f = SafetensorsFile(out)
        assert f.metadata == {"format": "pt"} and f.dtype("l1.weight") == {"float32": "F32", "bfloat16": "BF16"}[dtype]
        back = lowbit.load(out)["l1.weight"]
        deq = lowbit.load(q)["l1.weight"].dequantize()
        if dtype == "float32":
            np.testing.assert_array_equal(back, deq)
        else:
            np.testing.assert_allclose(back, deq, rtol=2**-8)
    with pytest.raises(lowbit.OptionError):
        convert.dequantize_checkpoint(q, tmp_path / "x.safetensors", dtype="int8", progress=False)


def _run_cli(args: list[str]) -> subprocess.Popen:
    code = "import sys; from lowbit.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_killed_runs_leave_nothing_that_passes_for_complete_and_resume_finishes(tmp_path):
    src = _model_folder(tmp_path / "src", shards=4, rows=1024)
    clean = tmp_path / "clean"
    args = ["quantize", str(src), "", "--qtype", "int4", "--granularity", "group:64", "--scale-format", "double8",
            "--quiet", "--resume"]
    start = time.perf_counter()
    assert _run_cli([*args[:2], str(clean), *args[3:]]).wait() == 0
    duration = time.perf_counter() - start
    want = _digests(clean)
    out = tmp_path / "out"
    rng = random.Random(0)
    for _ in range(10):
        proc = _run_cli([*args[:2], str(out), *args[3:]])
        time.sleep(rng.uniform(0.0, duration))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not out.exists():
            continue
        visible = [p for p in out.iterdir() if not p.name.startswith(".")]
        for p in visible:
            if p.suffix == ".safetensors":  # every visible shard is complete and exactly the clean one
                assert hashlib.sha256(p.read_bytes()).hexdigest() == want[p.name], p.name
        if (out / "model.safetensors.index.json").exists():  # the index only once every shard is there
            assert _digests(out) == want
    assert _run_cli([*args[:2], str(out), *args[3:]]).wait() == 0
    assert _digests(out) == want
    assert json.loads((out / "model.safetensors.index.json").read_text()) == \
        json.loads((clean / "model.safetensors.index.json").read_text())
    for leftover in (p for p in out.iterdir() if p.name.startswith(".") and p.suffix == ".tmp"):
        os.unlink(leftover)  # temporaries of killed runs: hidden, never mistaken for shards


def test_overwrite_replaces_a_folder_without_leaving_old_shards(tmp_path):
    three = _model_folder(tmp_path / "three", shards=3, rows=64)
    two = _model_folder(tmp_path / "two", shards=2, rows=64)
    out = tmp_path / "out"
    convert.quantize_checkpoint(three, out, progress=False)
    with pytest.raises(lowbit.FileFormatError, match="--overwrite"):
        convert.quantize_checkpoint(two, out, progress=False)
    with pytest.raises(lowbit.FileFormatError, match="would overwrite the input"):
        convert.quantize_checkpoint(two, two, progress=False, overwrite=True)
    convert.quantize_checkpoint(two, out, progress=False, overwrite=True)
    assert sorted(p.name for p in out.glob("*.safetensors")) == sorted(p.name for p in two.glob("*.safetensors"))
    assert set(lowbit.load(out)) == {f"layers.{i}.{k}.weight" for i in (1, 2) for k in range(4)} | {
        "layers.1.norm", "layers.2.norm"}  # nothing of the three-shard model is left


def _plan(tmp_path: Path, layers: dict[str, str]) -> Path:
    from lowbit.plan import LayerChoice, Plan

    plan = Plan({name: LayerChoice(spec, 0, 1, 0.0) for name, spec in layers.items()}, sorted(set(layers.values())),
                4.5, None, "mse")
    plan.save(tmp_path / "plan.json")
    return tmp_path / "plan.json"


def test_a_plan_gives_each_layer_its_own_scheme(model_file, tmp_path):
    """`lowbit quantize --plan`: the planned layers' weights take their own schemes (byte for byte what
    lowbit.quantize gives), a layer planned float and everything unplanned stay float."""
    path, tensors = model_file
    plan = _plan(tmp_path, {"emb": "int8", "l1": "uint4:g32:float16:hqq", "odd": "float"})
    out = tmp_path / "out.safetensors"
    assert cli.main(["quantize", str(path), str(out), "--plan", str(plan), "--quiet"]) == 0
    got = lowbit.load(out)
    emb = got["emb.weight"]
    want = lowbit.quantize(tensors["emb.weight"], "int8", granularity=lowbit.PerChannel(0))
    assert emb.qtype.name == "int8" and np.array_equal(emb.data, want.data) and np.array_equal(emb.scale, want.scale)
    l1 = got["l1.weight"]
    assert (l1.qtype.name, str(l1.granularity), l1.scale_format) == ("uint4", "group:32", "float16")
    np.testing.assert_array_equal(l1.dequantize(), lowbit.load(_hqq_alone(tmp_path, path))["l1.weight"].dequantize())
    for name in ("odd.weight", "conv.weight", "l1.bias", "ids"):
        assert isinstance(got[name], np.ndarray), name


def _hqq_alone(tmp_path: Path, path: Path) -> Path:
    """The same layer quantized by the flags instead of a plan (the reference for the planned one)."""
    out = tmp_path / "hqq.safetensors"
    convert.quantize_checkpoint(path, out, qtype="uint4", granularity="group:32", scale_format="float16",
                                algorithm="hqq", include=["l1.weight"], progress=False)
    return out


def test_a_plan_for_another_model_is_refused_before_any_output(model_file, tmp_path):
    path, _ = model_file
    out = tmp_path / "out.safetensors"
    with pytest.raises(lowbit.OptionError, match=r"not in the checkpoint, e\.g\. model\.layers\.0\.mlp"):
        convert.quantize_checkpoint(path, out, plan=_plan(tmp_path, {"model.layers.0.mlp": "int4"}), progress=False)
    assert not out.exists()
