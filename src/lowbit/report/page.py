"""The HTML report: one self-contained page (PNGs inlined as base64, no network resources), the PNGs beside it.

Example:
    >>> import numpy as np, tempfile, os
    >>> from lowbit.report import html
    >>> d = tempfile.mkdtemp()
    >>> np.save(os.path.join(d, "w.npy"), np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32))
    >>> page = html(os.path.join(d, "w.npy"), os.path.join(d, "report.html"), ["int8", "int4"])  # doctest: +SKIP
    >>> sorted(p.name for p in (page.parent / "report_files").iterdir())  # doctest: +SKIP
    ['error_vs_bits.png', 'histogram_1.png', 'sqnr_by_layer.png']
"""

from __future__ import annotations

import base64
import html as _html
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lowbit.errors import FileFormatError, OptionError
from lowbit.metrics import CompareRow
from lowbit.report.data import ReportData

__all__ = ["html", "render_page", "report_data"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#222;line-height:1.45;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.muted{color:#666;font-size:.9em}img{max-width:100%;height:auto;display:block;margin:8px 0 20px}
table{border-collapse:collapse;font-size:.85em;margin:8px 0 16px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f3f3f3;cursor:pointer;user-select:none}th:first-child,td:first-child{text-align:left}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
tr:nth-child(even) td{background:#fafafa}details{margin:6px 0}summary{cursor:pointer;font-weight:600}
.finding{margin:4px 0}
"""

# Click a header to sort its table by that column (numbers by data-v, text otherwise); click again to reverse.
_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var desc = th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(desc ? "desc" : "asc");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
        var c = (x === null || y === null) ? a.cells[col].textContent.localeCompare(b.cells[col].textContent)
              : (x === "" ? 1 : y === "" ? -1 : parseFloat(x) - parseFloat(y));
        return desc ? -c : c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

_LAYER_COLUMNS = (("SQNR dB", "sqnr_db", "{:.2f}"), ("MSE", "mse", "{:.3g}"), ("max error", "max_abs_error", "{:.3g}"),
                  ("cosine", "cosine", "{:.6f}"), ("bits/weight", "bits_per_element", "{:.3f}"),
                  ("bytes", "nbytes", "{:,.0f}"))


def _e(text: Any) -> str:
    return _html.escape(str(text), quote=True)


def _num_cell(value: float, fmt: str) -> str:
    if isinstance(value, float) and math.isnan(value):
        return '<td data-v="">n/a</td>'
    shown = fmt.format(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    key = value if math.isfinite(value) else (1e300 if value > 0 else -1e300)
    return f'<td data-v="{key!r}">{shown}</td>'


def _layer_table(rows: list[CompareRow]) -> str:
    head = "<tr><th>layer</th>" + "".join(f"<th>{_e(c)}</th>" for c, _, _ in _LAYER_COLUMNS) + "</tr>"
    body = "".join(
        f"<tr><td>{_e(r.tensor)}</td>" + "".join(_num_cell(float(getattr(r, a)), f) for _, a, f in _LAYER_COLUMNS)
        + "</tr>" for r in rows)
    return f'<table class="sortable layers"><thead>{head}</thead><tbody>{body}</tbody></table>'


def _model_table(data: ReportData) -> str:
    keys = list(dict.fromkeys(k for m in data.models for k in m.metrics))
    base = data.models[0].nbytes
    head = "".join(f"<th>{_e(c)}</th>" for c in ["scheme", "bytes", "ratio", "bits/weight", *keys])
    body = "".join(
        f"<tr><td>{_e(m.scheme)}</td>{_num_cell(float(m.nbytes), '{:,.0f}')}{_num_cell(base / m.nbytes, '{:.2f}x')}"
        f"{_num_cell(m.bits_per_weight, '{:.3f}')}"
        + "".join(_metric_cell(float(m.metrics.get(k, math.nan))) for k in keys) + "</tr>"
        for m in data.models)
    return f'<table class="sortable models"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _metric_cell(value: float) -> str:
    return _num_cell(value, "{:.4f}" if not math.isfinite(value) or abs(value) < 10 else "{:.2f}")


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _figures(data: ReportData) -> dict[str, tuple[str, bytes]]:
    """File name -> (caption, PNG) for every figure the data supports."""
    from lowbit.report import plots
    from lowbit.report.summary import curve_metric, curve_points

    figs: dict[str, tuple[str, bytes]] = {}
    points = curve_points(data)
    if points:
        metric, higher = curve_metric(data)
        figs["error_vs_bits.png"] = ("Error vs bits per weight", plots.error_vs_bits_png(points, metric, higher))
    sqnr = {(r.tensor, r.scheme): r.sqnr_db for r in data.rows if not math.isnan(r.sqnr_db)}
    if sqnr:
        layers = [t for t in data.tensors if any((t, s) in sqnr for s in data.schemes)]
        figs["sqnr_by_layer.png"] = ("Per-layer SQNR", plots.sqnr_chart_png(layers, data.schemes, sqnr))
    for i, (name, values) in enumerate(data.weights.items(), 1):
        figs[f"histogram_{i}.png"] = (f"Weights of {name}", plots.histogram_png(name, values, data.range_qtype))
    for i, (name, values) in enumerate(data.activations.items(), 1):
        figs[f"activations_{i}.png"] = (f"Inputs of {name}",  # activations: 8-bit affine, as W4A8 and W8A8 store them
                                        plots.histogram_png(name, values, "int8", "activation", symmetric=False))
    return figs


def _summary_html(data: ReportData) -> str:
    from lowbit.report.summary import best_under_each_size, worst_layers

    best = "".join(f"<li>{_e(s)}</li>" for s in best_under_each_size(data))
    worst = "".join(f'<li class="finding">{_e(f.sentence())}</li>' for f in worst_layers(data))
    notes = "".join(f'<p class="muted">{_e(n)}</p>' for n in data.notes)
    return (f"<h2>Summary</h2><p>The best scheme at each size (a scheme is listed when nothing smaller beats "
            f"it):</p><ul>{best}</ul><p>The worst layers, and why:</p><ul>{worst}</ul>{notes}")


def render_page(data: ReportData, figures: Mapping[str, tuple[str, bytes]]) -> str:
    """The HTML text of a report (figures inlined).

    Example:
        >>> import numpy as np, lowbit
        >>> rows = lowbit.compare(np.linspace(-1, 1, 64, dtype=np.float32), ["int8"], name="w").rows
        >>> text = render_page(ReportData("demo", rows), {})
        >>> text.count("<tr><td>w</td>")
        1
    """
    parts = [f"<h1>lowbit report: {_e(data.title)}</h1>",
             f'<p class="muted">{len(data.tensors)} layers or tensors, {len(data.schemes)} scheme(s). Errors are '
             "the weights' (dequantized vs float); bits/weight counts codes, scales and zero points as stored.</p>",
             _summary_html(data)]
    if data.models:
        parts.append(f"<h2>Whole model, per scheme</h2>{_model_table(data)}")
    captions = {"error_vs_bits.png": "Error vs size", "sqnr_by_layer.png": "Per-layer SQNR"}
    for key, title in captions.items():
        if key in figures:
            parts.append(f"<h2>{title}</h2>{_img(figures[key][1], figures[key][0])}")
    hist = [(c, png) for k, (c, png) in figures.items() if k not in captions]
    if hist:
        parts.append("<h2>Histograms of the worst layers, with each calibration method's clipping range</h2>"
                     + "".join(_img(png, c) for c, png in hist))
    parts.append("<h2>Per layer</h2><p class=\"muted\">Click a column header to sort.</p>")
    for i, scheme in enumerate(data.schemes):
        mine = [r for r in data.rows if r.scheme == scheme]
        parts.append(f"<details{' open' if i == 0 else ''}><summary>{_e(scheme)} ({len(mine)} layers)</summary>"
                     f"{_layer_table(mine)}</details>")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>lowbit report: {_e(data.title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n"
            f"<script>{_JS}</script>\n</body></html>\n")


def _is_model(source: Any) -> bool:
    return hasattr(source, "named_modules") and hasattr(source, "state_dict")


def _is_checkpoint(path: Path) -> bool:
    if path.is_dir():
        return True
    if path.suffix.lower() != ".safetensors":
        return False
    from lowbit.io import open_checkpoint

    return bool(open_checkpoint(path).tensors)


def report_data(source: Any, schemes: Any = None, *, reference: str | os.PathLike[str] | None = None,
                evaluator: Any = None, plan: str | os.PathLike[str] | None = None, title: str | None = None,
                include: Iterable[str] | None = None, exclude: Iterable[str] = (), min_ndim: int = 2) -> ReportData:
    """Measure a source (tensor file, lowbit checkpoint, model, or ReportData already made); see :func:`html`.

    Example:
        >>> import numpy as np, tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "w.npy"); np.save(p, np.ones((4, 8), np.float32))
        >>> report_data(p, ["int8"]).schemes
        ['int8 tensor sym']
    """
    from lowbit.report.data import checkpoint_data, tensor_file_data

    if isinstance(source, ReportData):
        return source
    if _is_model(source):
        from lowbit.report.models import model_data

        if schemes is None:
            import lowbit.model as lm

            schemes = [lm.WeightOnly("int8"), lm.WeightOnly("int4", "group:64")]
        return model_data(source, schemes, evaluator, plan, title)
    if plan is not None or evaluator is not None:
        raise OptionError("a plan or an evaluator needs a model (lowbit.report.html(model, ...)); a file report "
                          "measures the tensors themselves")
    if not isinstance(source, (str, os.PathLike)):
        raise OptionError("report source must be a file path, a torch model or ReportData, got "
                          f"{type(source).__name__}")
    path = Path(source)
    if _is_checkpoint(path):
        if schemes:
            raise OptionError(f"{path} is a lowbit checkpoint: its stored schemes are reported; drop the schemes "
                              "(or report on the float file with schemes)")
        return checkpoint_data(path, reference, title)
    if reference is not None:
        raise OptionError("reference is for a lowbit checkpoint; a float tensor file is its own reference")
    return tensor_file_data(path, schemes, include, exclude, min_ndim, title)


def _write_bytes(path: Path, payload: bytes) -> None:
    from lowbit.io._atomic import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_bytes(payload)


def html(source: Any, out: str | os.PathLike[str] = "report.html", schemes: Any = None, *,
         reference: str | os.PathLike[str] | None = None, evaluator: Any = None,
         plan: str | os.PathLike[str] | None = None, title: str | None = None, include: Iterable[str] | None = None,
         exclude: Iterable[str] = (), min_ndim: int = 2) -> Path:
    """Write an HTML report of what quantization loses, and its PNGs in a folder beside it.

    Args:
        source: a .npy/.npz/.safetensors tensor file, a lowbit checkpoint (file or folder), a float
            ``torch.nn.Module``, or :class:`~lowbit.report.data.ReportData` made already.
        out: the ``.html`` file; its figures go to ``<stem>_files/`` beside it.
        schemes: for files, :class:`~lowbit.metrics.Scheme` objects or format names (default int8, int4);
            for models, configs such as ``WeightOnly("int4", "group:64")`` or a dict name -> config,
            plan dict or callable (default int8 per channel and int4 group:64).
        reference: for a checkpoint, the float ``.safetensors`` it was quantized from.
        evaluator: for models, :class:`~lowbit.report.models.Evaluator` (metric and batches).
        plan: for models, a ``lowbit plan`` JSON file, reported as one more scheme.
        title: the page title.
        include, exclude, min_ndim: tensor selection in files (as ``lowbit compare``).

    Returns:
        The path of the HTML file.

    Raises:
        OptionError: options that do not fit the source, an ``out`` that is not ``.html`` or whose
            folder is missing. FileFormatError, ModelError: as the readers and model_data raise.

    Example:
        >>> import numpy as np, tempfile, os
        >>> d = tempfile.mkdtemp(); p = os.path.join(d, "w.npy")
        >>> np.save(p, np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32))
        >>> html(p, os.path.join(d, "r.html"), ["int8", "int4"]).name  # doctest: +SKIP
        'r.html'
    """
    target = Path(out)
    if target.suffix.lower() not in (".html", ".htm"):
        raise OptionError(f"{target}: the report is an HTML file; give a path ending in .html")
    if not target.parent.is_dir():
        raise OptionError(f"{target.parent}: no such folder for the report; create it first")
    folder = target.with_name(target.stem + "_files")
    if target.is_dir() or (folder.exists() and not folder.is_dir()):
        raise FileFormatError(f"{target} is a folder or {folder.name} is a file; give another .html path")
    data = report_data(source, schemes, reference=reference, evaluator=evaluator, plan=plan, title=title,
                       include=include, exclude=exclude, min_ndim=min_ndim)
    figures = _figures(data)  # every figure drawn before anything is written
    folder.mkdir(exist_ok=True)
    for stale in folder.glob("*.png"):
        if stale.name not in figures:
            stale.unlink()
    for name, (_, png) in figures.items():
        _write_bytes(folder / name, png)
    _write_bytes(target, render_page(data, figures).encode("utf-8"))
    return target
