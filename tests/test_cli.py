"""The `lowbit` command: compare over .npy/.npz/.safetensors, JSON, errors, --help/--version."""

from __future__ import annotations

import json
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
        (["--granularity", "group:7"], "does not divide"),
        (["--granularity", "blocks"], "cannot parse granularity"),
        (["--tensor", "nothing.*"], "no floating-point tensor matches"),
    ],
    ids=["bad-qtype", "group-not-dividing", "bad-granularity", "no-match"],
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
