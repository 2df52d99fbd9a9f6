"""``lowbit export gguf``: a llama model folder or lowbit checkpoint as a GGUF file for llama.cpp.

Light to import: the export itself is imported when the command runs.

Example:
    $ lowbit export gguf smollm2/ smollm2-q4_k_m.gguf --type q4_k_m --tokenizer-pre smollm
"""

from __future__ import annotations

import argparse

from lowbit.io.gguf._types import GGUF_TYPES

__all__ = ["HELP", "DESCRIPTION", "add_arguments", "run"]

HELP = "write a llama model (float folder or lowbit checkpoint) as a GGUF file for llama.cpp"
DESCRIPTION = (
    "Write a Hugging Face llama model folder, or a lowbit checkpoint of one, as a GGUF file. Float matrices are "
    "quantized to --type by llama.cpp's reference rules (the bytes llama.cpp and gguf-py write); tensors lowbit "
    "already quantized keep their codes when a GGUF block type holds them exactly (int4 group:32 float16 scales "
    "is Q4_0, uint4 group:32 float16 scales with zero_point='float' is Q4_1, ...). Tokenizer and metadata come "
    "from the folder's tokenizer.json and config.json.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("model", help="a model folder (config.json, tokenizer.json, safetensors) or lowbit checkpoint")
    p.add_argument("out", help="the .gguf file to write")
    p.add_argument("--type", choices=GGUF_TYPES, default=None,
                   help="GGUF type of float matrices (q4_k_m: llama.cpp's mix); default: the types of a lowbit "
                   "checkpoint's own schemes, f32 for floats")
    p.add_argument("--tokenizer-pre", default="default", metavar="NAME",
                   help="llama.cpp's pre-tokenizer name, e.g. smollm, llama-bpe (default: default)")
    p.add_argument("--name", default=None, help="general.name (default: the folder name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")


def run(args: argparse.Namespace) -> str:
    """Export and return the summary text."""
    from lowbit.io.gguf.writer import export_gguf

    summary = export_gguf(args.model, args.out, args.type, name=args.name, tokenizer_pre=args.tokenizer_pre,
                          overwrite=args.overwrite)
    return summary.to_text()
