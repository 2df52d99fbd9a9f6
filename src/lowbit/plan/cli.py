"""``lowbit plan``: a mixed-precision plan for a model under a bits-per-weight or byte budget.

Light to import: the planner and torch load when the command runs.

Example:
    $ lowbit plan smollm2 --budget 4.5 -o smollm2-plan.json
    $ lowbit plan minilm --budget 3.5 --candidates int8,int4:g32,int3:g32,int2:g16:float16 -o minilm-plan.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lowbit.errors import FileFormatError

__all__ = ["HELP", "DESCRIPTION", "add_arguments", "run"]

HELP = "choose a scheme per layer (mixed precision) under a bits/weight or byte budget; write a plan JSON"
DESCRIPTION = (
    "Measure how much the model's output changes when only one layer takes each candidate scheme (KL of the "
    "next-token distribution for causal LMs, 1 - cosine of the sentence embedding for encoders), then choose one "
    "candidate per Linear layer that minimises the summed change within the budget (an exact knapsack). The "
    "budget's bits per weight are the stored bytes of the planned layers' weights (codes + scales + zero points, "
    "biases not counted) times 8, over their number of weights; a weight tied to another module (lm_head sharing "
    "the embedding) and MiniLM's pooler are not planned. Causal LMs calibrate on Macbeth (lowbit evaluates on "
    "Hamlet), encoders on the first sentences of lowbit.zoo.sentences. The plan JSON is read by "
    "lowbit.model.quantize_(model, 'plan.json') and lowbit.plan.load_plan.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    from lowbit.plan.candidates import DEFAULT_CANDIDATES

    p.add_argument("model", help="smollm2, minilm (from lowbit.zoo) or a Hugging Face model folder")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget", type=float, metavar="BITS",
                        help="average bits per weight over the planned layers' weights, scales and zero points "
                        "included (e.g. 4.5)")
    budget.add_argument("--budget-bytes", type=int, metavar="N", help="stored bytes of the planned layers' weights")
    p.add_argument("--candidates", default=DEFAULT_CANDIDATES, metavar="LIST",
                   help="comma-separated QTYPE[:gSIZE][:asym|:sym][:SCALE_FORMAT][:hqq], or float (keep the layer "
                   f"float); default {DEFAULT_CANDIDATES}")
    p.add_argument("-o", "--output", required=True, metavar="PLAN_JSON", help="where to write the plan")
    p.add_argument("--calibration", type=int, default=None, metavar="N",
                   help="calibration windows (causal LMs, default 2) or sentences (encoders, default 128)")
    p.add_argument("--seq-len", type=int, default=128, metavar="T", help="tokens per calibration window (128)")
    p.add_argument("--sensitivity", choices=["anchored", "measured"], default="anchored",
                   help="anchored (default): measure one candidate per layer, predict the others from the layer's "
                   "output error; measured: run the model for every layer and candidate (slower)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="GLOB", help="layers to leave out of the plan")
    p.add_argument("--overwrite", action="store_true", help="replace an existing plan file")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--json", action="store_true", help="print the plan document instead of the summary")


def run(args: argparse.Namespace) -> str:
    """Plan, write the file and return the summary text."""
    from lowbit.plan.candidates import parse_candidates
    from lowbit.plan.planner import plan_model
    from lowbit.plan.subjects import load_subject

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise FileFormatError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise FileFormatError(f"cannot write {out}: folder {out.parent} does not exist")
    candidates = parse_candidates(args.candidates)  # bad specs fail before the model loads
    subject = load_subject(args.model, args.calibration, args.seq_len)
    plan = plan_model(subject.model, candidates, subject.batches, budget_bits=args.budget,
                      budget_bytes=args.budget_bytes, metric=subject.metric, mode=args.sensitivity,
                      exclude=[*subject.exclude, *args.exclude], output=subject.output,
                      progress=False if args.quiet else None)
    plan.save(out)
    if args.json:
        return json.dumps(plan.to_dict(), indent=1)
    return f"{plan.summary()}\nwrote {out}"
