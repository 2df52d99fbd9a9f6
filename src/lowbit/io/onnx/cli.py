"""``lowbit export onnx MODEL_DIR OUT.onnx --scheme SCHEME``: quantize a transformers model folder and export it.

The input is a transformers model folder (``config.json``, weights, tokenizer), read offline
(``local_files_only``).  The model is quantized with lowbit as ``--scheme`` says and written
with :func:`lowbit.io.onnx.export_onnx` (inputs ``input_ids``, ``attention_mask``,
``token_type_ids`` with dynamic batch and sequence axes).  Light to import: torch,
transformers and onnx are imported by :func:`run` only.

Schemes: ``w8a8-dynamic`` (per-tensor activation scales), ``w8a8-dynamic-token`` (per token),
``w8a8-static`` (activation ranges calibrated on ``--calibration`` sentences of lowbit's
corpus), or a weight-only format with an optional granularity in lowbit's one spelling:
``int4:group:32``, ``uint4:group:64``, ``int8`` (per channel, ``int8:channel``).

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> p.parse_args(["m/", "m.onnx", "--scheme", "int4:group:32"]).scheme
    'int4:group:32'
    >>> parse_scheme("uint4:group:64")
    ('weight-only', 'uint4', 'group:64')
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lowbit.errors import FileFormatError, OptionError

__all__ = ["HELP", "DESCRIPTION", "add_arguments", "run", "parse_scheme", "W8A8_SCHEMES"]

HELP = "write a quantized transformers model as ONNX for ONNX Runtime (CPU)"
DESCRIPTION = (
    "Quantize a transformers model folder with lowbit and write it as one .onnx file that ONNX Runtime runs "
    "on the CPU, with lowbit's own codes and scales: weight-only Linear layers as MatMulNBits, W8A8 as QDQ "
    "(static) or exact int8 activation codes + MatMulInteger (dynamic). The file is checked, loaded and run "
    "in ONNX Runtime before it replaces OUT."
)
#: W8A8 scheme names -> (mode, activation granularity)
W8A8_SCHEMES = {"w8a8-dynamic": ("dynamic", "tensor"), "w8a8-dynamic-token": ("dynamic", "token"),
                "w8a8-static": ("static", "tensor")}
_EXAMPLE = ["lowbit writes this model for ONNX Runtime.", "A second, somewhat longer sentence pads the first."]


def parse_scheme(text: str) -> tuple[str, str, str]:
    """(mode, qtype or "int8", granularity) of a ``--scheme`` value.

    Raises:
        OptionError: not a W8A8 scheme name nor ``QTYPE[:GRANULARITY]`` (the message lists the choices).
        GranularityError: a granularity lowbit does not parse.

    Example:
        >>> parse_scheme("w8a8-static"), parse_scheme("int8")
        (('static', 'int8', 'tensor'), ('weight-only', 'int8', 'channel'))
    """
    from lowbit.io.onnx._support import SUPPORTED_QTYPES

    if text in W8A8_SCHEMES:
        mode, act = W8A8_SCHEMES[text]
        return mode, "int8", act
    from lowbit.granularity import as_granularity

    qtype, _, gran = text.partition(":")
    if qtype in SUPPORTED_QTYPES:
        return "weight-only", qtype, str(as_granularity(gran or "channel"))
    raise OptionError(f"--scheme {text!r} is not one of {', '.join(W8A8_SCHEMES)} or QTYPE[:GRANULARITY] with QTYPE "
                      f"in {', '.join(SUPPORTED_QTYPES)} (e.g. int4:group:32, uint4:group:64, int8)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``lowbit export onnx`` arguments."""
    parser.add_argument("model", help="a transformers model folder (config.json, weights, tokenizer)")
    parser.add_argument("output", help="the .onnx file to write (replaced atomically)")
    parser.add_argument("--scheme", default="w8a8-dynamic", metavar="SCHEME",
                        help=f"{', '.join(W8A8_SCHEMES)}, or weight-only QTYPE[:GRANULARITY] such as int4:group:32, "
                        "uint4:group:64, "
                        "int8 (default: w8a8-dynamic)")
    parser.add_argument("--accuracy-level", type=int, default=0, choices=(0, 1, 2, 3, 4),
                        help="MatMulNBits accuracy_level: 0 computes in float32 from the exact weights (default), "
                        "4 rounds activations to int8 (more error: min cosine 0.9991 on MiniLM; "
                        "not faster at batch 32 here)")
    parser.add_argument("--calibration", type=int, default=64, metavar="N",
                        help="sentences of lowbit's corpus that calibrate w8a8-static (default 64)")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="PATTERN",
                        help="module names or glob patterns to keep in float (e.g. pooler.dense)")


def _load(folder: Path) -> tuple[Any, Any]:
    if not (folder / "config.json").is_file():
        raise FileFormatError(f"{str(folder)!r} is not a transformers model folder (no config.json)")
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise FileFormatError(f"reading a model folder needs transformers ({err}); pip install transformers") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as err:
        raise FileFormatError(f"cannot load the model in {str(folder)!r}: {err}") from None
    return model.eval(), tokenizer


def _quantize(model: Any, tokenizer: Any, scheme: tuple[str, str, str], args: argparse.Namespace) -> str:
    import lowbit.model as lm

    mode, qtype, gran = scheme
    if mode == "weight-only":
        config: Any = lm.WeightOnly(qtype, gran)
    elif mode == "dynamic":
        config = lm.Dynamic(act_granularity=gran)
    else:
        config = lm.Static()
    lm.quantize_(model, config, exclude=args.exclude, progress=False)
    if mode == "static":
        from lowbit.zoo import sentences

        if args.calibration < 1:
            raise OptionError(f"--calibration must be a positive number of sentences, got {args.calibration}")
        texts = sentences(args.calibration)
        batches = [dict(tokenizer(texts[i : i + 16], padding=True, truncation=True, max_length=256,
                                  return_tensors="pt")) for i in range(0, len(texts), 16)]
        lm.calibrate(model, batches, progress=False)
        lm.convert(model)
    return str(config.scheme)


def run(args: argparse.Namespace) -> str:
    """Quantize ``args.model`` as ``args.scheme`` says and export it to ``args.output``; returns the summary text.

    Raises:
        FileFormatError: not a model folder, or the output folder does not exist.
        OptionError: a bad scheme, or a layer ONNX Runtime cannot run.
    """
    from lowbit.io.onnx.export import export_onnx

    scheme = parse_scheme(args.scheme)
    out = Path(args.output)
    if not out.parent.is_dir():
        raise FileFormatError(f"the folder of {str(out)!r} does not exist; create it first")
    model, tokenizer = _load(Path(args.model))
    label = _quantize(model, tokenizer, scheme, args)
    example = dict(tokenizer(_EXAMPLE, padding=True, return_tensors="pt"))
    summary = export_onnx(model, out, example, accuracy_level=args.accuracy_level)
    return f"scheme: {label}\n{summary}"
