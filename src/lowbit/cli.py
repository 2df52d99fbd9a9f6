"""The ``lowbit`` command.  Thin: every choice list comes from a registry.

Example:
    $ lowbit compare model.safetensors --tensor 'encoder.*' --min-ndim 2 \\
          --qtype int8 int4 --granularity tensor channel group:128 --symmetry both
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Sequence
from typing import Any

from lowbit.errors import LowbitError, error_context

__all__ = ["main", "build_parser"]

_SYMMETRY = {"default": (None,), "sym": (True,), "asym": (False,), "both": (True, False)}


def _version() -> str:
    from lowbit import __version__

    return f"lowbit {__version__}"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``lowbit`` command (for docs and tests).

    Example:
        >>> build_parser().parse_args(["compare", "w.npy"]).qtype
        ['int8', 'uint8', 'int4']
    """
    from lowbit.calibration import list_estimators
    from lowbit.formats import list_qtypes, list_scale_formats, qtype_aliases

    parser = argparse.ArgumentParser(
        prog="lowbit", description="Quantize tensors to low-bit formats on the CPU and show what was lost."
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    cmp = sub.add_parser(
        "compare",
        help="quantize every tensor of a file with several schemes and tabulate the error",
        description="Quantize tensors from a .npy, .npz or .safetensors file with every combination of "
        "--qtype x --granularity x --symmetry and print the error of each (SQNR, MSE, max error, size).",
    )
    cmp.add_argument("file", help="a .npy, .npz or .safetensors file")
    cmp.add_argument("--tensor", nargs="+", metavar="NAME", help="tensor names or glob patterns (default: all)")
    cmp.add_argument("--exclude", nargs="+", default=[], metavar="PATTERN", help="glob patterns of tensors to skip")
    cmp.add_argument("--min-ndim", type=int, default=0, help="only tensors with at least this many dimensions")
    cmp.add_argument(
        "--qtype", nargs="+", default=["int8", "uint8", "int4"], metavar="QTYPE",
        help=f"formats to try (registered: {', '.join(list_qtypes())}; aliases: "
        f"{', '.join(f'{a}={n}' for a, n in qtype_aliases().items())})",
    )
    cmp.add_argument(
        "--granularity", nargs="+", default=["tensor"], metavar="G",
        help="tensor, channel[:AXIS], group:SIZE[:AXIS] or token (default: tensor), as everywhere in lowbit; "
        "MX formats always use their blocks of 32 along the last axis",
    )
    cmp.add_argument(
        "--scale-format", nargs="+", default=None, choices=list_scale_formats(), metavar="FORMAT",
        help=f"how scales are stored, several to compare ({', '.join(list_scale_formats())}; default float32); "
        "MX formats always use e8m0",
    )
    cmp.add_argument(
        "--method", nargs="+", default=["minmax"], choices=list_estimators(), metavar="METHOD",
        help=f"how the clipping range is estimated, several to compare ({', '.join(list_estimators())}); "
        "methods other than minmax need tensor, channel or token granularity; float, codebook and MX formats "
        "use minmax",
    )
    cmp.add_argument(
        "--symmetry", choices=list(_SYMMETRY), default="default",
        help="sym (scale only), asym (zero point), both, or default (sym for signed, asym for unsigned formats); "
        "float, codebook and MX formats are always scale-only",
    )
    out = cmp.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON document")
    out.add_argument("--markdown", action="store_true", help="print a Markdown table")
    cmp.add_argument("--long", action="store_true", help="one row per tensor and scheme with every metric")
    cmp.set_defaults(func=_compare)
    return parser


def _schemes(args: argparse.Namespace) -> list[Any]:
    """Every combination of the options, each format taking only the choices it has (deduplicated by name)."""
    from lowbit.formats import get_qtype
    from lowbit.granularity import as_granularity
    from lowbit.metrics import Scheme

    grans = [as_granularity(g) for g in args.granularity]
    schemes: dict[str, Any] = {}
    for qt in (get_qtype(q) for q in args.qtype):
        fixed = qt.is_grid or qt.is_mx
        combos = itertools.product(
            [None] if qt.is_mx else grans,
            (None,) if fixed else _SYMMETRY[args.symmetry],
            ["minmax"] if fixed else args.method,
            [None] if qt.is_mx or not args.scale_format else args.scale_format,
        )
        for g, s, m, f in combos:
            scheme = Scheme(qt, g, s, m, f)
            schemes.setdefault(scheme.name, scheme)
    return list(schemes.values())


def _compare(args: argparse.Namespace) -> str:
    from lowbit.io import load_tensors
    from lowbit.metrics import CompareTable, compare
    from lowbit.report import render_compare

    schemes = _schemes(args)
    tensors = load_tensors(args.file, args.tensor, args.exclude, args.min_ndim)
    rows = []
    for name, array in tensors.items():
        with error_context(f"tensor {name!r} (shape {array.shape})"):
            rows.extend(compare(array, schemes, name=name).rows)
    fmt = "json" if args.json else "markdown" if args.markdown else "text"
    return render_compare(CompareTable(rows), fmt, long=args.long)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lowbit`` command; returns the exit status.

    Errors lowbit raises on bad input are printed as one line (exit status 2).

    Example:
        >>> main(["--version"])  # doctest: +SKIP
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        text = args.func(args)
    except LowbitError as err:
        print(f"lowbit {args.command}: error: {err}", file=sys.stderr)
        return 2
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `lowbit compare ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
