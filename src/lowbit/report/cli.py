"""``lowbit report``: an HTML page of what quantization loses, per tensor, with plots.

Light to import: the measurements and matplotlib are imported when the command runs.

Example:
    $ lowbit report model.safetensors -o report.html --tensor 'encoder.*' --qtype int8 int4 \\
          --granularity channel group:64
    $ lowbit report model_int4/ --reference model.safetensors -o int4.html
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["HELP", "DESCRIPTION", "add_arguments", "run"]

HELP = "write an HTML report (tables, histograms, SQNR and error-vs-bits plots) of a file's quantization error"
DESCRIPTION = (
    "Quantize the tensors of a .npy, .npz or .safetensors file with every combination of --qtype x --granularity x "
    "--symmetry x --method x --scale-format (as lowbit compare), or read a lowbit checkpoint's stored tensors and "
    "compare them with --reference, and write one self-contained HTML page: a plain-language summary, per-tensor "
    "SQNR, MSE, max error, cosine, bits/weight and bytes (sortable), histograms of the worst tensors with each "
    "calibration method's clipping range, a per-tensor SQNR chart and the error-vs-bits curve with its Pareto front. "
    "The PNGs are also written to a folder beside the page (<name>_files/). Needs matplotlib (the report extra).")


#: the scheme and selection options with their defaults (a checkpoint report takes none of them)
_SCHEME_DEFAULTS: dict[str, object] = {"qtype": ["int8", "int4"], "granularity": ["channel"], "scale_format": None,
                                       "method": ["minmax"], "symmetry": "default", "tensor": None, "exclude": [],
                                       "min_ndim": 2}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (the scheme options are those of ``lowbit compare``; a checkpoint's own
    stored schemes are reported instead)."""
    from lowbit.calibration import list_estimators
    from lowbit.cli import _SYMMETRY
    from lowbit.formats import list_qtypes, list_scale_formats

    p.add_argument("file", help="a .npy, .npz or .safetensors file, or a lowbit checkpoint (file or folder)")
    p.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default report.html); "
                   "its PNGs go to <name>_files/ beside it")
    p.add_argument("--reference", metavar="FLOAT_WEIGHTS",
                   help="with a lowbit checkpoint: the float .safetensors it was quantized from (the error columns)")
    p.add_argument("--title", help="page title (default: the file name)")
    p.add_argument("--tensor", nargs="+", metavar="NAME", help="tensor names or glob patterns (default: all)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="PATTERN", help="glob patterns of tensors to skip")
    p.add_argument("--min-ndim", type=int, default=2, help="only tensors with at least this many dimensions (2)")
    p.add_argument("--qtype", nargs="+", default=_SCHEME_DEFAULTS["qtype"], metavar="QTYPE",
                   help=f"formats to try (default int8 int4; registered: {', '.join(list_qtypes())})")
    p.add_argument("--granularity", nargs="+", default=["channel"], metavar="G",
                   help="tensor, channel[:AXIS] or group:SIZE[:AXIS] (default channel)")
    p.add_argument("--scale-format", nargs="+", default=None, choices=list_scale_formats(), metavar="FORMAT",
                   help=f"how scales are stored ({', '.join(list_scale_formats())}; default float32)")
    p.add_argument("--method", nargs="+", default=["minmax"], choices=list_estimators(), metavar="METHOD",
                   help=f"how the clipping range is estimated ({', '.join(list_estimators())})")
    p.add_argument("--symmetry", choices=list(_SYMMETRY), default="default",
                   help="sym, asym, both, or default (sym for signed, asym for unsigned formats)")


def run(args: argparse.Namespace) -> str:
    """Write the report; return where it is and its summary."""
    from lowbit.cli import _schemes
    from lowbit.errors import OptionError
    from lowbit.report.data import checkpoint_data
    from lowbit.report.page import _is_checkpoint, html, report_data
    from lowbit.report.summary import best_under_each_size

    if _is_checkpoint(Path(args.file)):
        given = [f"--{k.replace('_', '-')}" for k, default in _SCHEME_DEFAULTS.items() if getattr(args, k) != default]
        if given:
            raise OptionError(f"{args.file} is a lowbit checkpoint: its stored tensors are reported, so "
                              f"{' '.join(given)} cannot apply; drop them, or report on the float file instead")
        data = checkpoint_data(args.file, args.reference, args.title)
    else:
        data = report_data(args.file, _schemes(args), reference=args.reference,
                           title=args.title, include=args.tensor, exclude=args.exclude, min_ndim=args.min_ndim)
    page = html(data, args.output)
    lines = [f"wrote {page} ({len(data.tensors)} tensors x {len(data.schemes)} scheme(s)); "
             f"figures in {page.with_name(page.stem + '_files')}/", *best_under_each_size(data)]
    return "\n".join(lines)
