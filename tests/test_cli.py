"""The `lowbit` command: compare over .npy/.npz/.safetensors, JSON, errors, --help/--version."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from lowbit.cli import main


@pytest.fixture
def weights(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "layer.0.weight": rng.standard_normal((64, 256)).astype(np.float32),
        "layer.1.weight": (rng.standard_normal((32, 128)) * 5).astype(np.float32),
        "layer.0.bias": rng.standard_normal(64).astype(np.float32),
    }
    path = tmp_path / "w.safetensors"
    save_file(arrays, str(path))
    return path, arrays


def _sqnr(x, y):
    x = x.astype(np.float64)
    return 10 * np.log10(np.sum(x * x) / np.sum((x - y) ** 2))


def test_json_is_one_document_with_independent_numbers(weights, capsys):
    path, arrays = weights
    status = main(["compare", str(path), "--tensor", "layer.0.weight", "--qtype", "int8", "uint4", "--json"])
    assert status == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["scheme"]: r for r in doc["rows"]}
    assert set(rows) == {"int8 tensor sym", "uint4 tensor asym"}
    w = arrays["layer.0.weight"].astype(np.float64)
    scale = np.float32(np.abs(w).max() / 127)
    ref = np.clip(np.rint(w / scale), -127, 127) * scale
    assert rows["int8 tensor sym"]["sqnr_db"] == pytest.approx(_sqnr(w, ref), abs=0.01)
    assert rows["int8 tensor sym"]["nbytes"] == w.size + 4
    assert rows["uint4 tensor asym"]["nbytes"] == w.size // 2 + 4 + 1
    assert doc["aggregate"][0]["tensors"] == 1


def test_text_pivot_and_aggregate_over_many_tensors(weights, capsys):
    path, _ = weights
    main(["compare", str(path), "--min-ndim", "2", "--qtype", "int8", "int4",
          "--granularity", "tensor", "channel", "group:32", "--symmetry", "both"])
    out = capsys.readouterr().out
    assert "int8 SQNR dB" in out and "int4 SQNR dB" in out
    assert "All 2 tensors, per scheme:" in out
    assert "group:32 asym" in out and "bias" not in out
    first_column = [line.split()[0] for line in out.splitlines() if line.startswith(("0.", "1."))]
    assert "0.weight" in first_column and "1.weight" in first_column


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_numpy_files(tmp_path, capsys, suffix):
    x = np.linspace(-1, 1, 256, dtype=np.float32).reshape(16, 16)
    path = tmp_path / f"t{suffix}"
    if suffix == ".npy":
        np.save(path, x)
    else:
        np.savez(path, t=x, ids=np.arange(3))
    assert main(["compare", str(path), "--qtype", "int8", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["tensor"] for r in rows] == ["t"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--qtype", "int99"], "unknown qtype 'int99'"),
        (["--granularity", "group:7:5"], "out of range"),
        (["--granularity", "blocks"], "cannot parse granularity"),
        (["--tensor", "nothing.*"], "no floating-point tensor matches"),
    ],
    ids=["bad-qtype", "group-axis-out-of-range", "bad-granularity", "no-match"],
)
def test_bad_input_is_one_line_and_status_2(weights, capsys, args, message):
    path, _ = weights
    assert main(["compare", str(path), "--min-ndim", "2", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_missing_and_unsupported_files(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "missing.npy")]) == 2
    assert "no such file" in capsys.readouterr().err
    other = tmp_path / "w.txt"
    other.write_text("1 2 3")
    assert main(["compare", str(other)]) == 2
    assert "unsupported file type" in capsys.readouterr().err


def test_nan_tensor_names_the_tensor(tmp_path, capsys):
    x = np.ones((4, 4), np.float32)
    x[2, 1] = np.nan
    np.savez(tmp_path / "n.npz", bad=x)
    assert main(["compare", str(tmp_path / "n.npz")]) == 2
    err = capsys.readouterr().err
    assert "'bad'" in err and "1 non-finite" in err and "(2, 1)" in err


def test_version_and_help_from_a_real_process():
    for args in (["--version"], ["--help"], ["compare", "--help"]):
        done = subprocess.run([sys.executable, "-m", "lowbit.cli", *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    version = subprocess.run([sys.executable, "-m", "lowbit.cli", "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("lowbit ")
    helptext = subprocess.run([sys.executable, "-m", "lowbit.cli", "compare", "--help"], capture_output=True, text=True)
    assert "--granularity" in helptext.stdout and "int4_full" in helptext.stdout


def test_scale_formats_and_mx_qtypes(weights, capsys):
    """MX formats take their own blocks whatever --granularity says; --scale-format multiplies the rest."""
    path, arrays = weights
    args = ["compare", str(path), "--tensor", "layer.0.weight", "--qtype", "nf4", "mxfp4", "mxfp8", "int4",
            "--granularity", "group:64", "--scale-format", "float32", "double8", "--symmetry", "both", "--json"]
    assert main(args) == 0
    rows = {r["scheme"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert list(rows) == [
        "nf4 group:64 sym", "nf4 group:64 sym double8", "mxfp4 group:32 sym e8m0", "mxfp8_e4m3 group:32 sym e8m0",
        "int4 group:64 sym", "int4 group:64 sym double8", "int4 group:64 asym", "int4 group:64 asym double8",
    ]
    w = arrays["layer.0.weight"]
    n = w.size
    assert rows["nf4 group:64 sym"]["nbytes"] == n // 2 + 4 * n // 64
    assert rows["nf4 group:64 sym double8"]["nbytes"] == n // 2 + n // 64 + 4 + 4  # codes, 1 block scale, mean
    assert rows["mxfp4 group:32 sym e8m0"]["bits_per_element"] == 4.25
    assert rows["mxfp4 group:32 sym e8m0"]["scale_format"] == "e8m0"
    # independent check of one MX row: spec rule in float64 (fp4 e2m1 elements, X = 2^(floor(log2 amax) - 2))
    blocks = w.astype(np.float64).reshape(-1, 32)
    X = np.exp2(np.floor(np.log2(np.abs(blocks).max(1, keepdims=True))) - 2)
    grid = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6])
    y = np.abs(blocks) / X
    idx = np.abs(y[..., None] - grid).argmin(-1)  # no exact ties in Gaussian data
    ref = np.sign(blocks) * grid[idx] * X
    assert rows["mxfp4 group:32 sym e8m0"]["sqnr_db"] == pytest.approx(_sqnr(blocks, ref), abs=1e-6)


def test_help_lists_scale_formats_and_aliases():
    helptext = subprocess.run([sys.executable, "-m", "lowbit.cli", "compare", "--help"], capture_output=True, text=True)
    text = " ".join(helptext.stdout.split())
    assert "--scale-format" in text and "kquant6" in text and "double8" in text and "mxfp8=mxfp8_e4m3" in text


def test_unknown_scale_format_is_an_argparse_error(weights, capsys):
    path, _ = weights
    with pytest.raises(SystemExit):
        main(["compare", str(path), "--scale-format", "fp3"])
    assert "invalid choice: 'fp3'" in capsys.readouterr().err


# --------------------------------------------------------------------------- quantize / inspect / dequantize


@pytest.fixture
def float_file(tmp_path):
    rng = np.random.default_rng(3)
    arrays = {"w": rng.standard_normal((64, 128)).astype(np.float32), "b": np.zeros(64, np.float32)}
    path = tmp_path / "float.safetensors"
    save_file(arrays, str(path))
    return path, arrays


def test_quantize_inspect_dequantize_from_the_command_line(float_file, tmp_path, capsys):
    import lowbit

    src, arrays = float_file
    q = tmp_path / "q.safetensors"
    assert main(["quantize", str(src), str(q), "--qtype", "int4", "--granularity", "group:32", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    qt = lowbit.load(q)["w"]
    np.testing.assert_array_equal(qt.codes, lowbit.quantize(arrays["w"], "int4", granularity="group:32").codes)
    stored = sum(np.asarray(a).nbytes for a in (qt.data, qt.scale))  # packed codes + float32 scales
    assert (summary["quantized"], summary["kept"]) == (1, 1)
    assert summary["input_bytes"] == src.stat().st_size and summary["output_bytes"] == q.stat().st_size
    assert summary["bits_per_weight"] == pytest.approx(8 * stored / arrays["w"].size) == pytest.approx(5.0)

    assert main(["inspect", str(q), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {t["name"]: t for t in doc["tensors"]}
    assert rows["w"]["quantized"] and rows["w"]["format"] == "int4 group:32 sym" and rows["w"]["nbytes"] == stored
    assert not rows["b"]["quantized"] and rows["b"]["nbytes"] == 64 * 4
    assert doc["totals"]["quantized_tensors"] == 1 and doc["totals"]["bytes"] == stored + 64 * 4
    assert main(["inspect", str(q)]) == 0
    text = capsys.readouterr().out
    assert "int4 group:32 sym" in text and "2 tensors in 1 file(s)" in text and "5.000 bits/weight" in text

    back = tmp_path / "back.safetensors"
    assert main(["dequantize", str(q), str(back), "--dtype", "float32", "--quiet"]) == 0
    assert "dequantized 1 tensor(s), kept 1" in capsys.readouterr().out
    np.testing.assert_array_equal(lowbit.load(back)["w"], qt.dequantize())


def _one_line_error(capsys, command: str, fragment: str) -> None:
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"lowbit {command}: error: ") and fragment in err, err


def test_checkpoint_commands_fail_in_one_line_and_write_nothing(float_file, tmp_path, capsys):
    src, _ = float_file
    out = tmp_path / "out.safetensors"
    pickle = tmp_path / "pytorch_model.bin"
    pickle.write_bytes(b"\x80\x04K\x01.")
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(src.read_bytes()[:-100])
    cases = [
        (["quantize", str(pickle), str(out)], "safetensors.torch.save_file"),
        (["quantize", str(truncated), str(out)], "cut.safetensors"),
        (["quantize", str(src), str(out), "--qtype", "int99"], "unknown qtype 'int99'"),
        (["quantize", str(src), str(src)], "would overwrite the input"),
        (["quantize", str(tmp_path / "none"), str(out)], "no such file or folder"),
        (["inspect", str(truncated)], "cut.safetensors"),
        (["dequantize", str(src), str(out), "--dtype", "float32"], "no quantized tensor"),
    ]
    for args, fragment in cases:
        assert main(args) == 2, args
        _one_line_error(capsys, args[0], fragment)
        assert not out.exists()


def test_an_existing_output_is_replaced_only_when_asked(float_file, tmp_path, capsys):
    src, _ = float_file
    q = tmp_path / "q.safetensors"
    assert main(["quantize", str(src), str(q), "--qtype", "int8"]) == 0
    first = q.read_bytes()
    capsys.readouterr()
    assert main(["quantize", str(src), str(q), "--qtype", "int4"]) == 2
    _one_line_error(capsys, "quantize", "--overwrite")
    assert q.read_bytes() == first
    assert main(["quantize", str(q), str(tmp_path / "again.safetensors")]) == 2
    _one_line_error(capsys, "quantize", "already quantized")
    assert main(["quantize", str(src), str(q), "--qtype", "int4", "--overwrite"]) == 0
    assert q.read_bytes() != first


def test_progress_shows_on_a_terminal_and_quiet_turns_it_off(float_file, tmp_path):
    import pty

    src, _ = float_file
    code = "import sys; from lowbit.cli import main; sys.exit(main(sys.argv[1:]))"
    shown = {}
    for flag in ("", "--quiet"):
        leader, follower = pty.openpty()
        out = tmp_path / f"p{flag}.safetensors"
        proc = subprocess.Popen([sys.executable, "-c", code, "quantize", str(src), str(out), *([flag] if flag else [])],
                                stdout=subprocess.DEVNULL, stderr=follower, env={**os.environ, "COLUMNS": "160"})
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait() == 0
        os.close(leader)
        shown[flag] = b"".join(chunks).decode(errors="replace")
    bar = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown[""])  # without the terminal's colour codes
    assert re.search(r"quantize .* \d+\.\d/33\.\d kB .* w\r", bar), bar  # bytes done of all, then the tensor
    assert shown["--quiet"] == ""


def test_resume_of_a_finished_run_says_there_is_nothing_to_do(float_file, tmp_path, capsys):
    src, _ = float_file
    args = ["quantize", str(src), str(tmp_path / "out"), "--qtype", "int4", "--resume"]
    assert main(args) == 0
    assert "quantized 1 tensor(s), kept 1" in capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("nothing to do: all 1 shard(s) already complete")
