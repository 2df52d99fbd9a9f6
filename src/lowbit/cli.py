"""The ``lowbit`` command.  Thin: every choice list comes from a registry.

Example:
    $ lowbit compare model.safetensors --tensor 'encoder.*' --min-ndim 2 \\
          --qtype int8 int4 --granularity tensor channel group:128 --symmetry both
    $ lowbit quantize model_dir/ model_int4/ --qtype int4 --granularity group:64 --scale-format float16
    $ lowbit inspect model_int4/
    $ lowbit dequantize model_int4/ model_bf16/ --dtype bfloat16
    $ lowbit export gguf smollm2/ smollm2-q4_0.gguf --type q4_0
    $ lowbit export onnx minilm/ minilm-int8.onnx --scheme w8a8-dynamic
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Sequence
from typing import Any

from lowbit.errors import LowbitError, OptionError, error_context

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
    cmp.add_argument("file", help="a .npy, .npz or .safetensors file; or a .gguf file with --reference")
    cmp.add_argument("--reference", metavar="FLOAT_WEIGHTS",
                     help="with a .gguf FILE: the float .safetensors (file or model folder) it was made from; "
                     "prints what the GGUF quantization lost per tensor and overall")
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
    _add_checkpoint_commands(sub)
    _add_export_commands(sub)
    _add_from_modules(sub, _MODULE_COMMANDS)
    return parser


#: Commands that live beside their feature: each module defines HELP, DESCRIPTION, add_arguments(parser), run(args)
_MODULE_COMMANDS: dict[str, str] = {
    "report": "lowbit.report.cli",
    "plan": "lowbit.plan.cli",
}


def _add_from_modules(sub: Any, commands: dict[str, str]) -> None:
    """One sub-command per module: its HELP, DESCRIPTION, add_arguments(parser) and run(args) -> text."""
    import importlib

    for name, module_name in commands.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(p)
        p.set_defaults(func=module.run)


#: ``lowbit export TARGET``: each target's module defines HELP, DESCRIPTION, add_arguments(parser) and run(args)
_EXPORT_TARGETS = {"gguf": "lowbit.io.gguf.cli", "onnx": "lowbit.io.onnx.cli"}


def _add_export_commands(sub: Any) -> None:
    export = sub.add_parser("export", help="write a quantized model for a runtime: GGUF (llama.cpp) or ONNX",
                            description="Write a model in a runtime's own format, keeping lowbit's codes and scales.")
    targets = export.add_subparsers(dest="target", metavar="TARGET")
    targets.required = True
    _add_from_modules(targets, _EXPORT_TARGETS)


def _add_checkpoint_commands(sub: Any) -> None:
    from lowbit.formats import list_qtypes, list_scale_formats
    from lowbit.model.presets import PRESETS, list_presets, preset

    q = sub.add_parser(
        "quantize", help="quantize a safetensors checkpoint (file or model folder) into a lowbit checkpoint",
        description="Quantize the float tensors of a .safetensors file or a model folder, tensor by tensor in "
        "bounded memory; the folder's other files (config, tokenizer) are copied. The result loads with "
        "lowbit.load or lowbit.model.load_quantized.",
    )
    q.add_argument("input", help="a .safetensors file, or a folder with model.safetensors or shards and their index")
    q.add_argument("output", help="a .safetensors file (from a file) or a folder")
    q.add_argument("--preset", choices=list(PRESETS), metavar="PRESET",
                   help="a named scheme for a bits/weight budget (" + "; ".join(
                       f"{p.name}: <= {p.budget:g}, {preset(p.name).scheme}" for p in list_presets())
                   + "); it replaces the scheme flags below")
    q.add_argument("--qtype", default=None, metavar="QTYPE", help=f"format ({', '.join(list_qtypes())}; default int4)")
    q.add_argument("--granularity", default=None, metavar="G",
                   help="tensor, channel or group:SIZE along the last axis (default group:64); a size that does not "
                   "divide a matrix's rows gives a shorter last group (a conv kernel falls back to channel)")
    q.add_argument("--scale-format", default=None, choices=list_scale_formats(), metavar="FORMAT",
                   help=f"how scales are stored ({', '.join(list_scale_formats())})")
    q.add_argument("--symmetry", choices=["default", "sym", "asym"], default=None,
                   help="default: sym for signed formats, asym for unsigned")
    q.add_argument("--algorithm", choices=["rtn", "hqq"], default=None,
                   help="rtn (default): round to nearest; hqq: half-quadratic (2-d weights, affine)")
    q.add_argument("--zero-point", choices=["int", "float"], default=None,
                   help="int (default) or float: a float minimum per block, w = code * scale + min (unsigned "
                   "formats, float32/float16 scales; GGUF Q4_1's rule)")
    q.add_argument("--tensor", nargs="+", metavar="GLOB", help="only tensors matching these patterns")
    q.add_argument("--exclude", nargs="+", default=[], metavar="GLOB", help="tensors to keep in float")
    q.add_argument("--min-ndim", type=int, default=2, help="only tensors with at least this many dimensions (2)")
    q.add_argument("--resume", action="store_true", help="skip output shards already complete (checksums match)")
    q.add_argument("--plan", metavar="PLAN_JSON",
                   help="a plan from `lowbit plan`: each planned layer's weight takes its own scheme and nothing "
                   "else is quantized (the scheme flags above are then ignored)")
    q.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="one Ray task per shard on a cluster (pip install 'lowbit[ray]'); ADDRESS as ray.init takes "
                   "it, default RAY_ADDRESS or a local cluster; put --ray after IN OUT, or write --ray=ADDRESS. IN and "
                   "OUT must be on a filesystem every node sees")
    _output_flags(q)
    q.set_defaults(func=_quantize)
    ins = sub.add_parser("inspect", help="list the tensors of a checkpoint: format, bits/weight, bytes",
                         description="Per tensor its format, granularity, bits/weight and bytes, with totals "
                         "(headers only: instant for any size).")
    ins.add_argument("path", help="a .safetensors file or a model folder")
    ins.add_argument("--json", action="store_true", help="print one JSON document")
    ins.set_defaults(func=_inspect)
    dq = sub.add_parser("dequantize", help="turn a lowbit checkpoint back into a plain float checkpoint")
    dq.add_argument("input", help="a lowbit checkpoint (file or folder)")
    dq.add_argument("output", help="a .safetensors file or a folder")
    dq.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    _output_flags(dq)
    dq.set_defaults(func=_dequantize)


def _output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace an earlier output (otherwise an error)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--json", action="store_true", help="print a JSON summary")


def _summary_text(s: Any, verb: str) -> str:
    if s.skipped_shards and not (s.quantized or s.kept):
        return (f"nothing to do: all {s.skipped_shards} shard(s) already complete "
                f"({s.input_bytes / 1e6:,.1f} MB -> {s.output_bytes / 1e6:,.1f} MB)")
    lines = [f"{verb} {s.quantized} tensor(s), kept {s.kept}: {s.input_bytes / 1e6:,.1f} MB -> "
             f"{s.output_bytes / 1e6:,.1f} MB in {s.seconds:.1f} s ({s.mb_per_s:,.0f} MB/s of input)"]
    if s.quantized_elements:
        lines.append(f"quantized tensors: {s.bits_per_weight:.3f} bits/weight")
    if s.skipped_shards:
        lines.append(f"resumed: {s.skipped_shards} shard(s) already complete")
    lines += [f"  note: {n}" for n in s.notes[:20]]
    if len(s.notes) > 20:
        lines.append(f"  ... {len(s.notes) - 20} more notes (--json lists them all)")
    return "\n".join(lines)


_SCHEME_FLAGS = {"qtype": "int4", "granularity": "group:64", "scale_format": None, "symmetry": "default",
                 "algorithm": "rtn", "zero_point": "int"}


def _scheme_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The scheme flags given, with their defaults; none may be given beside --preset or --plan."""
    given = [k for k in _SCHEME_FLAGS if getattr(args, k) is not None]
    for other in ("preset", "plan"):
        if getattr(args, other) and given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise OptionError(f"--{other} sets each tensor's scheme; drop {flags}")
    return {k: default if getattr(args, k) is None else getattr(args, k) for k, default in _SCHEME_FLAGS.items()}


def _quantize(args: argparse.Namespace) -> str:
    import json

    from lowbit.io.convert import quantize_checkpoint

    flags = _scheme_flags(args)
    symmetric = {"default": None, "sym": True, "asym": False}[flags["symmetry"]]
    summary = quantize_checkpoint(args.input, args.output, qtype=flags["qtype"], granularity=flags["granularity"],
                                  scale_format=flags["scale_format"], symmetric=symmetric,
                                  algorithm=flags["algorithm"], zero_point=flags["zero_point"], preset=args.preset,
                                  include=args.tensor, exclude=args.exclude, min_ndim=args.min_ndim,
                                  resume=args.resume, overwrite=args.overwrite,
                                  progress=False if args.quiet else None,
                                  executor="local" if args.ray is None else "ray", ray_address=args.ray or None,
                                  plan=args.plan)
    return json.dumps(summary.to_dict(), indent=2) if args.json else _summary_text(summary, "quantized")


def _inspect(args: argparse.Namespace) -> str:
    from lowbit.io.inspect import inspect_checkpoint

    result = inspect_checkpoint(args.path)
    return result.to_json() if args.json else result.to_text()


def _dequantize(args: argparse.Namespace) -> str:
    import json

    from lowbit.io.convert import dequantize_checkpoint

    summary = dequantize_checkpoint(args.input, args.output, dtype=args.dtype, overwrite=args.overwrite,
                                    progress=False if args.quiet else None)
    return json.dumps(summary.to_dict(), indent=2) if args.json else _summary_text(summary, "dequantized")


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
    from lowbit.io import iter_tensors
    from lowbit.metrics import CompareTable, compare
    from lowbit.report import render_compare

    if args.reference is not None or str(args.file).lower().endswith(".gguf"):
        return _compare_gguf(args)
    schemes = _schemes(args)
    rows = []
    for name, array in iter_tensors(args.file, args.tensor, args.exclude, args.min_ndim):  # one tensor at a time
        with error_context(f"tensor {name!r} (shape {array.shape})"):
            rows.extend(compare(array, schemes, name=name).rows)
    fmt = "json" if args.json else "markdown" if args.markdown else "text"
    return render_compare(CompareTable(rows), fmt, long=args.long)


def _compare_gguf(args: argparse.Namespace) -> str:
    from lowbit.errors import OptionError

    if args.reference is None or not str(args.file).lower().endswith(".gguf"):
        raise OptionError("--reference compares a .gguf FILE with the float weights it came from; give both "
                          f"(got FILE={args.file!r}, --reference={args.reference!r})")
    from lowbit.io.gguf.compare import compare_gguf
    from lowbit.report import render_compare

    fmt = "json" if args.json else "markdown" if args.markdown else "text"
    return render_compare(compare_gguf(args.file, args.reference), fmt, long=True)


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
