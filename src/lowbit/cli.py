"""The ``lowbit`` command.  Thin: every choice list comes from a registry.

Example:
    $ lowbit compare model.safetensors --tensor 'encoder.*' --min-ndim 2 \\
          --qtype int8 int4 --granularity tensor channel group:128 --symmetry both
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from lowbit.errors import LowbitError

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
    from lowbit.calibration import list_methods
    from lowbit.formats import list_qtypes

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
        help=f"formats to try (registered: {', '.join(list_qtypes())})",
    )
    cmp.add_argument(
        "--granularity", nargs="+", default=["tensor"], metavar="G",
        help="tensor, channel[:AXIS] or group:SIZE[:AXIS] (default: tensor)",
    )
    cmp.add_argument(
        "--method", nargs="+", default=["minmax"], choices=list_methods(), metavar="METHOD",
        help=f"how the clipping range is estimated, several to compare ({', '.join(list_methods())}); "
        "methods other than minmax need tensor or channel granularity",
    )
    cmp.add_argument(
        "--symmetry", choices=list(_SYMMETRY), default="default",
        help="sym (scale only), asym (zero point), both, or default (sym for signed, asym for unsigned formats)",
    )
    out = cmp.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON document")
    out.add_argument("--markdown", action="store_true", help="print a Markdown table")
    cmp.add_argument("--long", action="store_true", help="one row per tensor and scheme with every metric")
    cmp.set_defaults(func=_compare)
    return parser


def _compare(args: argparse.Namespace) -> str:
    from lowbit.formats import get_qtype
    from lowbit.granularity import parse_granularity
    from lowbit.io import load_tensors
    from lowbit.metrics import CompareTable, Scheme, compare
    from lowbit.report import render_compare

    qtypes = [get_qtype(q) for q in args.qtype]
    grans = [parse_granularity(g) for g in args.granularity]
    schemes = [
        Scheme(q, g, s, m) for q in qtypes for g in grans for s in _SYMMETRY[args.symmetry] for m in args.method
    ]
    tensors = load_tensors(args.file, args.tensor, args.exclude, args.min_ndim)
    rows = []
    for name, array in tensors.items():
        try:
            rows.extend(compare(array, schemes, name=name).rows)
        except LowbitError as err:
            raise type(err)(f"tensor {name!r} (shape {array.shape}): {err}") from None
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
