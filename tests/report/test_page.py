"""lowbit.report.html / report_data / lowbit report: files written, numbers from independent computations,
self-contained pages, refusals."""

from __future__ import annotations

import base64
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import lowbit
from lowbit.cli import main
from lowbit.errors import FileFormatError, OptionError
from lowbit.report import checkpoint_data, html, report_data


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    arrays = {f"layer{i}.weight": rng.standard_normal((16, 64)).astype(np.float32) for i in range(5)}
    arrays["layer3.weight"][0, 0] = 40.0  # an outlier: the worst tensor at low bits
    arrays["bias"] = np.ones(16, np.float32)  # 1-d: skipped by min_ndim=2
    path = tmp_path_factory.mktemp("w") / "w.npz"
    np.savez(path, **arrays)
    return path, arrays


def sqnr_db(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.astype(np.float64), y.astype(np.float64)
    return 10 * math.log10(float((x * x).sum()) / float(((x - y) ** 2).sum()))


def table_rows(page: str) -> list[list[str]]:
    """Every per-layer table, as lists of its row's first cell."""
    tables = re.findall(r'<table class="sortable layers">(.*?)</table>', page, re.S)
    return [re.findall(r"<tr><td>([^<]*)</td>", t) for t in tables]


@pytest.fixture(scope="module")
def written(weights, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One report of the file (rendering is the slow part), over an earlier run's leftovers."""
    folder = tmp_path_factory.mktemp("page")
    (folder / "r_files").mkdir()
    (folder / "r_files" / "histogram_9.png").write_bytes(b"stale")
    (folder / "r_files" / "notes.txt").write_text("mine")
    return html(weights[0], folder / "r.html", ["int8", "int4"])


def test_file_report_writes_page_and_pngs(weights, written: Path) -> None:
    page = written.read_text()
    pngs = sorted((written.parent / "r_files").glob("*.png"))
    assert [p.name for p in pngs] == ["error_vs_bits.png", "histogram_1.png", "histogram_2.png", "histogram_3.png",
                                      "sqnr_by_layer.png"]  # the stale histogram_9.png is gone
    assert (written.parent / "r_files" / "notes.txt").read_text() == "mine"
    inlined = [base64.b64decode(s) for s in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
    assert sorted(inlined) == sorted(p.read_bytes() for p in pngs)
    two_d = [n for n, a in weights[1].items() if a.ndim == 2]
    assert table_rows(page) == [two_d, two_d]
    assert "Weights of layer3.weight" in page and "Outliers" in page  # the outlier layer is explained


def test_file_report_numbers_match_an_independent_computation(weights) -> None:
    path, arrays = weights
    data = report_data(path, [lowbit.metrics.Scheme("int4", "channel")])
    for row in data.rows:
        w = arrays[row.tensor]
        approx = np.asarray(lowbit.quantize(w, "int4", granularity="channel").dequantize())
        assert row.sqnr_db == pytest.approx(sqnr_db(w, approx), rel=1e-9)
        assert row.max_abs_error == pytest.approx(float(np.abs(w - approx).max()))
        # int4 codes packed two per byte plus one float32 scale per row of 64
        assert row.nbytes == w.size // 2 + 4 * w.shape[0]
    assert data.worst_tensors(1) == ["layer3.weight"]


def test_page_is_self_contained(written: Path) -> None:
    page = written.read_text()
    assert not re.search(r'(src|href)="(?!data:)', page)  # no external script, image, font or stylesheet
    assert "http://" not in page and "https://" not in page


def test_checkpoint_against_its_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    from safetensors.numpy import save_file

    floats = {n: rng.standard_normal(shape).astype(np.float32) for n, shape in (("a", (8, 64)), ("b", (4, 32)))}

    save_file(floats, str(tmp_path / "float.safetensors"))
    stored = {n: lowbit.quantize(a, "int4", granularity="group:32") for n, a in floats.items()}
    lowbit.save(stored, tmp_path / "q.safetensors")
    data = checkpoint_data(tmp_path / "q.safetensors", tmp_path / "float.safetensors")
    for row in data.rows:
        assert row.sqnr_db == pytest.approx(sqnr_db(floats[row.tensor], np.asarray(stored[row.tensor].dequantize())))
        assert row.nbytes == stored[row.tensor].nbytes
    blind = html(tmp_path / "q.safetensors", tmp_path / "blind.html").read_text()
    assert blind.count('<td data-v="">n/a</td>') == 2 * 4  # SQNR, MSE, max error, cosine of two tensors
    assert "No float reference was given" in blind


def test_checkpoint_reference_must_hold_its_tensors(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"a": np.ones((4, 32), np.float32)}, str(tmp_path / "float.safetensors"))
    q = {n: lowbit.quantize(np.ones((4, 32), np.float32), "int8") for n in ("a", "b")}
    lowbit.save(q, tmp_path / "q.safetensors")
    with pytest.raises(FileFormatError, match=r"lacks the float tensor\(s\) \['b'\]"):
        checkpoint_data(tmp_path / "q.safetensors", tmp_path / "float.safetensors")


@pytest.mark.parametrize(("out", "kwargs", "match"), [
    ("r.txt", {}, "ending in .html"),
    ("missing/r.html", {}, "no such folder"),
    ("r.html", {"evaluator": object()}, "needs a model"),
    ("r.html", {"reference": "x.safetensors"}, "reference is for a lowbit checkpoint"),
], ids=["suffix", "folder", "evaluator-on-file", "reference-on-file"])
def test_refusals_write_nothing(weights, tmp_path: Path, out: str, kwargs: dict, match: str) -> None:
    with pytest.raises(OptionError, match=match):
        html(weights[0], tmp_path / out, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_output_that_is_a_folder_or_whose_figure_folder_is_a_file(weights, tmp_path: Path) -> None:
    (tmp_path / "a.html").mkdir()
    (tmp_path / "b_files").write_text("mine")
    for out in ("a.html", "b.html"):
        with pytest.raises(FileFormatError, match="is a folder or"):
            html(weights[0], tmp_path / out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b_files"]


def test_no_scheme_is_refused(weights) -> None:
    with pytest.raises(OptionError, match="at least one scheme"):
        report_data(weights[0], [])


def test_bad_source_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "x.npy").write_bytes(b"not numpy")
    with pytest.raises(FileFormatError):
        html(tmp_path / "x.npy", tmp_path / "r.html")
    with pytest.raises(OptionError, match="file path, a torch model"):
        html(42, tmp_path / "r.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_cli_report(weights, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.html"
    assert main(["report", str(weights[0]), "-o", str(out), "--qtype", "int8", "int4",
                 "--granularity", "tensor", "channel"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "Up to" in text
    assert len(table_rows(out.read_text())) == 4
    assert main(["report", str(weights[0]), "-o", str(tmp_path / "x.txt")]) == 2
    assert "ending in .html" in capsys.readouterr().err
    lowbit.save({"w": lowbit.quantize(np.ones((4, 32), np.float32), "int8")}, tmp_path / "q.safetensors")
    assert main(["report", str(tmp_path / "q.safetensors"), "-o", str(out), "--qtype", "int2", "--tensor", "w"]) == 2
    assert "--qtype --tensor cannot apply" in capsys.readouterr().err


def test_import_stays_light() -> None:
    code = ("import sys, lowbit.report, lowbit.report.cli; "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_table_cells_show_what_they_sort_by(written: Path, weights) -> None:
    page = written.read_text()
    first = re.search(r"<tr><td>layer0.weight</td>(.*?)</tr>", page).group(1)
    cells = re.findall(r'<td data-v="([^"]*)">([^<]*)</td>', first)
    assert len(cells) == 6
    row = report_data(weights[0], ["int8"]).rows[0]
    assert cells[5] == (repr(float(row.nbytes)), f"{row.nbytes:,}")  # bytes as an integer with separators
    assert float(cells[0][0]) == row.sqnr_db and cells[0][1] == f"{row.sqnr_db:.2f}"
