"""Quality of ``lowbit plan``: planned mixed precision vs the best uniform scheme at the same bits/weight.

For each model: measure the per-layer sensitivity once (timed, the same call ``lowbit plan``
makes), plan at each budget, then evaluate the float model, every candidate applied uniformly
to the same layers, and each plan, on held-out data:

* SmolLM2-135M: perplexity on 8 windows of 256 tokens of *Hamlet* (calibration: 2 windows of
  128 tokens of *Macbeth*); metric KL.
* all-MiniLM-L6-v2: mean cosine between float and quantized sentence embeddings of 512
  sentences ``lowbit.zoo.sentences(640)[128:]`` (calibration: the first 128); metric 1 - cosine.

Bits/weight are the stored bytes (codes + scales + zero points) of the planned layers'
weights x 8 over their weights, for plans and uniform schemes alike.  The "best uniform"
of a budget is the best candidate whose bits/weight do not exceed the plan's.

``--validate`` also measures every candidate of the layers of a few blocks (``mode="measured"``)
and prints the Spearman rank correlation of the anchored predictions against those measurements.

Run: ``.venv/bin/python benchmarks/plan_quality.py [--model smollm2 minilm] [--budgets 4.5 3.5] [--validate]``.
Not part of ``make test``.  Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import lowbit.model as lm
from _timing import CpuMonitor
from lowbit.plan import parse_candidates, plan_from_table
from lowbit.plan.candidates import DEFAULT_CANDIDATES
from lowbit.plan.sensitivity import measure_sensitivity
from lowbit.plan.subjects import load_subject, pooled_embedding, sentence_batches


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for v in np.unique(x):  # average ranks of ties
        ranks[x == v] = ranks[x == v].mean()
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (Pearson of the ranks, ties averaged)."""
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    return float(np.corrcoef(ra, rb)[0, 1])


def evaluator(name: str, subject):
    """``evaluate(model) -> (label, value, higher_is_better)`` on data held out from calibration."""
    if name == "smollm2":
        from lowbit.zoo import hamlet_windows, perplexity

        windows = hamlet_windows(subject.tokenizer, n_windows=8, window=256)
        return lambda m: ("Hamlet ppl", perplexity(m, windows), False)
    from lowbit.zoo import sentences

    batches = sentence_batches(subject.tokenizer, sentences(640)[128:])
    with torch.no_grad():
        ref = torch.cat([pooled_embedding(subject.model, b) for b in batches])

    def cosine(m):
        with torch.no_grad():
            got = torch.cat([pooled_embedding(m, b) for b in batches])
        return "mean cosine", float(torch.nn.functional.cosine_similarity(got, ref).mean()), True

    return cosine


def apply(model, mapping):
    q = copy.deepcopy(model)
    lm.quantize_(q, mapping)
    return q.eval()


def validate(subject, candidates, table, blocks: list[str]) -> None:
    start = time.perf_counter()
    include = [f"*layers.{b}.*" for b in blocks] + [f"*layer.{b}.*" for b in blocks]
    measured = measure_sensitivity(subject.model, candidates, subject.batches, metric=subject.metric,
                                   mode="measured", include=include, exclude=subject.exclude,
                                   output=subject.output, progress=False)
    anchored = {r.name: r for r in table.layers}
    pred, real, pred_na, real_na = [], [], [], []
    for r in measured.layers:
        a = anchored[r.name]
        for j in range(len(candidates)):
            if candidates[j].is_float:
                continue
            pred.append(a.errors[j])
            real.append(r.errors[j])
            if not a.measured[j]:
                pred_na.append(a.errors[j])
                real_na.append(r.errors[j])
    within = [spearman([anchored[r.name].errors[j] for r in measured.layers], [r.errors[j] for r in measured.layers])
              for j in range(len(candidates)) if not candidates[j].is_float]
    seconds = time.perf_counter() - start
    print(f"validation on {len(measured.layers)} layers (blocks {', '.join(blocks)}), {seconds:.0f} s:"
          f" Spearman anchored vs measured: all pairs {spearman(pred, real):.3f} (n={len(pred)}), predicted-only pairs "
          f"{spearman(pred_na, real_na):.3f} (n={len(pred_na)}), across layers per candidate "
          + ", ".join(f"{c.spec} {v:.3f}" for c, v in zip([c for c in candidates if not c.is_float], within,
                                                          strict=True)))


def run(name: str, budgets: list[float], spec: str, do_validate: bool) -> None:
    subject = load_subject(name)
    candidates = parse_candidates(spec)
    mon = CpuMonitor()
    mon.start()
    own = sum(os.times()[:2])
    table = measure_sensitivity(subject.model, candidates, subject.batches, metric=subject.metric,
                                exclude=subject.exclude, output=subject.output, progress=False)
    own = sum(os.times()[:2]) - own
    other = mon.stop()
    load = f"; this process used {own:.0f} CPU s"
    if other is not None:
        load += f", other processes {other[0] / other[1]:.2f} of the {os.cpu_count()} CPUs meanwhile"
    print(f"\n## {name}: sensitivity of {len(table.layers)} layers x {len(candidates)} candidates "
          f"(anchored, metric {table.metric}): {table.seconds:.0f} s{load}")
    for note in table.notes:
        print(f"note: {note}")
    evaluate = evaluator(name, subject)
    weights = sum(r.weights for r in table.layers)
    label, ref, higher = evaluate(subject.model)
    rows = [("float", 32.0, ref)]
    for j, c in enumerate(candidates):
        bpw = 8 * sum(r.bytes[j] for r in table.layers) / weights
        rows.append((f"uniform {c.spec}", bpw, evaluate(apply(subject.model, {r.name: c.config
                                                                               for r in table.layers}))[1]))
    print(f"| scheme | bits/weight | {label} |\n|---|---|---|")
    for n, bpw, v in rows:
        print(f"| {n} | {bpw:.3f} | {v:.4f} |")
    for budget in budgets:
        plan = plan_from_table(table, budget_bits=budget)
        value = evaluate(apply(subject.model, plan))[1]
        uniform = [(n, b, v) for n, b, v in rows[1:] if b <= budget + 1e-9]
        best = (max if higher else min)(uniform, key=lambda r: r[2]) if uniform else None
        used = {}
        for choice in plan.layers.values():
            used[choice.candidate] = used.get(choice.candidate, 0) + 1
        verdict = "n/a" if best is None else ("plan better" if (value > best[2] if higher else value < best[2])
                                              else "plan NOT better")
        best_text = "none at or below" if best is None else f"{best[0]} ({best[1]:.3f} b/w) {best[2]:.4f}"
        print(f"| plan @ {budget} | {plan.bits_per_weight:.3f} | {value:.4f} | best uniform: {best_text} | {verdict} "
              f"| mix: {', '.join(f'{k} x{v}' for k, v in used.items())} |")
    if do_validate:
        blocks = ["0", "14", "29"] if name == "smollm2" else ["0", "1", "2", "3", "4", "5"]
        validate(subject, candidates, table, blocks)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="+", default=["minilm", "smollm2"], choices=["minilm", "smollm2"])
    p.add_argument("--budgets", nargs="+", type=float, default=[4.5, 3.5])
    p.add_argument("--candidates", default=DEFAULT_CANDIDATES)
    p.add_argument("--validate", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(2)
    for name in args.model:
        run(name, args.budgets, args.candidates, args.validate)


if __name__ == "__main__":
    main()
