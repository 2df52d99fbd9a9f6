"""Perplexity of SmolLM2-135M on Hamlet under weight-quantization schemes (round-to-nearest, GPTQ, AWQ, HQQ).

Every decoder Linear layer (``model.layers.*``) is quantized; embeddings, norms and
the tied output head stay float.  Data-driven algorithms calibrate on windows of
*Macbeth* (disjoint from the *Hamlet* evaluation text).  Each rung starts from a
fresh copy of the float model; quantization time and perplexity are printed as
they finish.

Run: ``.venv/bin/python scripts/quality_smollm2.py [RUNG ...]`` where a rung is
``ALGORITHM:QTYPE:GRANULARITY[:OPTION=VALUE...]``, e.g. ``gptq:int4:channel``,
``rtn:int3:group:128`` is written ``rtn:int3:g128``, ``awq:uint4:g128:sink_weight=8``.
``scale_format=float16`` and ``zero_point=float`` set those ``WeightOnly`` fields (``hqq:uint4:g64:
scale_format=float16:zero_point=float``); ``data=1`` gives the calibration batches to an
algorithm that takes them optionally (HQQ's activation-aware form).
Without arguments it runs the table of issue 5.
"""

from __future__ import annotations

import argparse
import ast
import copy
import sys
import time
import warnings
from typing import Any

import torch

import lowbit
import lowbit.model as lm
from lowbit.model.config import DATA_ALGORITHMS
from lowbit.zoo import hamlet_windows, load_smollm2, perplexity, play_windows

DEFAULT_RUNGS = [
    "rtn:int4:channel", "hqq:uint4:channel", "gptq:int4:channel", "awq:int4:channel",
    "rtn:int4:g128", "hqq:uint4:g128", "gptq:int4:g128", "awq:int4:g128",
    "rtn:int3:g128", "hqq:uint3:g128", "gptq:int3:g128", "awq:int3:g128",
]


CONFIG_FIELDS = ("scale_format", "zero_point")  # rung options that are WeightOnly fields, not algorithm options


def parse_rung(text: str) -> tuple[str, lm.WeightOnly, bool]:
    """``gptq:int4:g128:act_order=True`` -> (label, config, give the batches)."""
    algorithm, qtype, gran, *options = text.split(":")
    granularity = lowbit.PerChannel(0) if gran == "channel" else lowbit.PerGroup(int(gran.removeprefix("g")))
    opts: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    data = algorithm in DATA_ALGORITHMS
    for item in options:
        key, _, value = item.partition("=")
        if key in CONFIG_FIELDS:
            fields[key] = value
        elif key == "data":
            data = bool(ast.literal_eval(value))
        else:
            opts[key] = ast.literal_eval(value)  # numbers and booleans typed on the command line
    return text, lm.WeightOnly(qtype, granularity, algorithm=algorithm, algorithm_options=opts, **fields), data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rungs", nargs="*", default=DEFAULT_RUNGS)
    parser.add_argument("--eval-windows", type=int, default=8)
    parser.add_argument("--calib-windows", type=int, default=16)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--no-fp32", action="store_true", help="skip the float baseline")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="transformers")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model, tokenizer = load_smollm2()
    evaluation = hamlet_windows(tokenizer, args.eval_windows, args.window)
    calib = [{"input_ids": w} for w in play_windows(tokenizer, args.calib_windows, args.window, "macbeth").split(2)]
    print(f"SmolLM2-135M, perplexity on {args.eval_windows} Hamlet windows of {args.window} tokens; "
          f"calibration {args.calib_windows} Macbeth windows", flush=True)
    if not args.no_fp32:
        print(f"{'fp32':60s} ppl {perplexity(model, evaluation):9.2f}", flush=True)
    for text in args.rungs:
        label, config, wants_data = parse_rung(text)
        candidate = copy.deepcopy(model)
        start = time.perf_counter()
        data = {"batches": calib, "progress": False} if wants_data else {}
        summary = lm.quantize_(candidate, config, include=["model.layers.*"], **data)
        seconds = time.perf_counter() - start
        fallback = sum("->" in r.scheme for r in summary.rows)
        note = f"  ({fallback} of {len(summary.rows)} layers per-channel: group does not divide)" if fallback else ""
        print(f"{label:60s} ppl {perplexity(candidate, evaluation):9.2f}  quantize {seconds:6.1f} s  "
              f"{summary.bytes_after / 2**20:6.1f} MiB{note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
