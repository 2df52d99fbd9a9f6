"""Side-by-side weight-quantization quality: lowbit against HQQ, bitsandbytes, torchao and optimum-quanto.

Every method quantizes the same layers of the same float32 models in one process, and is scored
on the same held-out data:

* SmolLM2-135M: every decoder Linear (``model.layers.*``; embeddings, norms and the tied head stay
  float).  Perplexity on 8 windows of 512 tokens of *Hamlet*, plus llama.cpp's quality metrics
  against the float32 model on the same tokens: mean KL divergence of the next-token distribution
  (KL(fp32 || quantized), nats per token) and top-1 agreement.  Data-driven lowbit algorithms
  calibrate on windows of *Macbeth* (other text).
* all-MiniLM-L6-v2: every encoder Linear (``encoder.*``).  Mean cosine between float and
  quantized sentence embeddings of ``lowbit.zoo.sentences(640)[128:]``; calibration on the first 128.

Bits/weight are the bytes each method stores for the quantized layers' weights (codes, scales,
zero points, code maps, packed state; biases not counted) x 8 / their weight count, read from the
stored tensors: the peer's packed tensors, lowbit's layer buffers.  torchao's CPU path keeps one
int8 per code; its rows also give the bits with codes packed at their width ("packed").  Peers are
scored through float32 matmuls on the weights their own dequantization returns (weight-only
quality, like lowbit's float-activation layers).  Quantization times are wall seconds on a shared
machine: noisy.

lowbit rows are spec strings ``ALGORITHM:QTYPE:GRANULARITY[:KEY=VALUE...]`` (granularity
``channel`` or ``gN``); a key that is a ``WeightOnly`` field (``scale_format``, ``zero_point``,
``symmetric``, ``method``) goes to ``WeightOnly``, any other to ``algorithm_options``; ``:batches``
gives calibration batches to an algorithm that takes them optionally (HQQ); ``preset:w4`` and
``preset:w4:calibrated`` are the presets' two forms.  An algorithm,
option or peer that fails shows its error in the table.

Budgets (the targets of issue 14): at <= 4.5 and <= 3.5 bits/weight, and 2 bits at <= 2.5,
lowbit's best row must cut the best peer's gap to fp32 (perplexity - fp32's; 1 - cosine) at
least in half, with no more stored bits/weight than that peer's row.  Peer rows of a budget are
those of its code width (4, 3, 2 bits) whatever their bits/weight.

Run: ``.venv/bin/python benchmarks/quality_peers.py [--model smollm2 minilm] [--peers hqq ...]
[--rows SPEC ...] [--add-rows SPEC ...] [--eval-windows 8] [--json PATH]``; ``--from-json PATH ...``
prints the tables of saved runs again.  Quick check:
``--model minilm --peers hqq --rows rtn:uint4:g64 --sentences 160``.
Needs ``pip install -c constraints.txt '.[peers]'``.  Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import fnmatch
import importlib.metadata
import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _peers import PACKAGES, PeerMethod, missing, peer_methods, versions
from _timing import CpuMonitor

LOWBIT_ROWS = [
    "rtn:int8:channel",
    "rtn:uint4:g64:scale_format=float16",
    "preset:w4",  # hqq:uint4:g32:scale_format=kquant6
    "preset:w4:calibrated",  # autoround:uint4:g32:scale_format=kquant6
    "gptq:uint4:g64:scale_format=float16",
    "preset:w3",  # hqq:uint3:g32:scale_format=kquant6
    "preset:w3:calibrated",  # autoround:uint3:g32:scale_format=kquant6
    "gptq:uint3:g64:scale_format=float16",
    "preset:w2",  # hqq:uint2:g32:scale_format=kquant6
    "preset:w2:calibrated",  # autoround:uint2:g32:scale_format=kquant6:init=gptq
    "gptq:uint2:g64:scale_format=float16",
]
"""lowbit's rows; add one line (or pass ``--add-rows``) for a new algorithm or option."""

WEIGHT_ONLY_FIELDS = ("scale_format", "zero_point", "symmetric", "method", "activations")


@dataclass(frozen=True)
class Budget:
    """A target: peer rows of ``peer_bits`` code width against lowbit rows at <= ``max_bpw``."""

    label: str
    peer_bits: int
    max_bpw: float
    target: bool  # one of issue 14's targets (the ~8-bit budget is shown for information)


BUDGETS = [Budget("~8 bpw", 8, 8.5, False), Budget("<= 4.5 bpw", 4, 4.5, True),
           Budget("<= 3.5 bpw", 3, 3.5, True), Budget("2-bit, lowbit <= 2.5 bpw", 2, 2.5, True)]


@dataclass
class Row:
    """One method on one model."""

    model: str
    method: str
    source: str  # "fp32", "lowbit" or the peer's name
    bits: int  # code width (32 for fp32)
    bpw: float | None = None  # stored bits per weight of the quantized layers
    packed_bpw: float | None = None  # codes counted at their width (differs for unpacked codes only)
    metrics: dict[str, float] = field(default_factory=dict)
    gap: float | None = None
    seconds: float | None = None
    error: str | None = None
    note: str = ""


# --------------------------------------------------------------------------- models and metrics


@dataclass
class Subject:
    """A float model, the names of the Linear layers every method quantizes, calibration and scoring."""

    name: str
    model: Any
    include: list[str]
    targets: list[str]
    batches: list
    score: Any  # score(model) -> dict of metrics
    gap_of: Any  # gap_of(metrics, fp32 metrics) -> float (0 = fp32)


def _linear_names(model: Any, patterns: list[str]) -> list[str]:
    return [n for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def smollm2_subject(eval_windows: int, calib_windows: int, window: int) -> Subject:
    """SmolLM2-135M, Hamlet windows for perplexity/KL/top-1, Macbeth windows for calibration."""
    from lowbit.zoo import hamlet_windows, load_smollm2, play_windows

    model, tokenizer = load_smollm2()
    windows = hamlet_windows(tokenizer, eval_windows, window)
    calib = [{"input_ids": w} for w in play_windows(tokenizer, calib_windows, window, "macbeth").split(2)]
    score = NextTokenScore(model, windows)
    return Subject("SmolLM2-135M", model, ["model.layers.*"], _linear_names(model, ["model.layers.*"]), calib,
                   score, lambda m, ref: m["ppl"] - ref["ppl"])


class NextTokenScore:
    """Perplexity, KL(fp32 || model) per token and top-1 agreement with the float model on fixed windows."""

    def __init__(self, reference: Any, windows: torch.Tensor, batch_size: int = 2) -> None:
        self.batches = list(windows.long().split(batch_size))
        with torch.no_grad():
            self.ref = [torch.log_softmax(self._logits(reference, b), -1) for b in self.batches]

    @staticmethod
    def _logits(model: Any, batch: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=batch, use_cache=False).logits[:, :-1, :].float()
        return logits.reshape(-1, logits.shape[-1])

    def __call__(self, model: Any) -> dict[str, float]:
        nll = kl = agree = 0.0
        count = 0
        with torch.no_grad():
            for batch, ref in zip(self.batches, self.ref, strict=True):
                logp = torch.log_softmax(self._logits(model, batch), -1)
                if not torch.isfinite(logp).all():
                    raise FloatingPointError("the quantized model produced NaN or infinite logits")
                target = batch[:, 1:].reshape(-1)
                nll += float(-logp.gather(1, target[:, None]).double().sum())
                kl += float((ref.exp() * (ref - logp)).sum(-1).double().sum())
                agree += float((ref.argmax(-1) == logp.argmax(-1)).sum())
                count += target.numel()
        mean = nll / count
        return {"ppl": math.exp(mean) if mean < 700 else math.inf, "kl": kl / count, "top1": agree / count}


def minilm_subject(n_sentences: int, n_calibration: int) -> Subject:
    """all-MiniLM-L6-v2, held-out sentences for cosine, the first ``n_calibration`` for calibration."""
    from lowbit.plan.subjects import sentence_batches
    from lowbit.zoo import embed, load_minilm, sentences

    model, tokenizer = load_minilm()
    texts = sentences(n_sentences)
    held_out = texts[n_calibration:]
    reference = embed(model, tokenizer, held_out)

    def score(m: Any) -> dict[str, float]:
        got = embed(m, tokenizer, held_out)
        if not torch.isfinite(got).all():
            raise FloatingPointError("the quantized model produced NaN or infinite embeddings")
        return {"cosine": float(torch.nn.functional.cosine_similarity(got, reference).mean())}

    return Subject("all-MiniLM-L6-v2", model, ["encoder.*"], _linear_names(model, ["encoder.*"]),
                   sentence_batches(tokenizer, texts[:n_calibration]), score, lambda m, ref: 1.0 - m["cosine"])


# --------------------------------------------------------------------------- methods


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or repr(err)
    return f"{type(err).__name__}: {text[:140]}"


def parse_spec(spec: str) -> Any:
    """``gptq:uint4:g64:scale_format=float16:damp=0.01`` (or ``preset:w4[:calibrated]``) -> a ``WeightOnly``."""
    import lowbit
    import lowbit.model as lm

    if spec.startswith("preset:"):  # preset:w4 or preset:w4:calibrated
        from lowbit.model.presets import preset

        _, name, *form = spec.split(":")
        return preset(name, calibrated=form == ["calibrated"])
    algorithm, qtype, gran, *options = spec.split(":")
    granularity = lowbit.PerChannel(0) if gran == "channel" else lowbit.PerGroup(int(gran.removeprefix("g")))
    fields: dict[str, Any] = {}
    algorithm_options: dict[str, Any] = {}
    for item in options:
        key, _, text = item.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare word: a format or option name
        (fields if key in WEIGHT_ONLY_FIELDS else algorithm_options)[key] = value
    return lm.WeightOnly(qtype, granularity, algorithm=algorithm, algorithm_options=algorithm_options,
                         embeddings=False, **fields)


def _weight_bytes(module: Any) -> int:
    from lowbit.model.reports import tensor_nbytes

    return sum(tensor_nbytes(v) for k, v in module.state_dict().items() if k != "bias")


def run_lowbit(subject: Subject, spec: str) -> tuple[Any, Row]:
    """Quantize a copy of the subject's model with one lowbit spec; the model and its row (metrics not yet)."""
    import lowbit.model as lm
    from lowbit.formats import get_qtype
    from lowbit.model.config import DATA_ALGORITHMS

    row = Row(subject.name, spec, "lowbit", 0)
    try:
        calibrate = ":batches" in spec  # e.g. hqq:uint4:g64:batches: HQQ's activation-aware form
        config = parse_spec(spec.replace(":batches", ""))
        row.bits = get_qtype(config.qtype).bits
        candidate = copy.deepcopy(subject.model)
        calibrate = calibrate or config.algorithm in DATA_ALGORITHMS
        data = {"batches": subject.batches, "progress": False} if calibrate else {}
        start = time.perf_counter()
        lm.quantize_(candidate, config, include=subject.include, **data)
        row.seconds = time.perf_counter() - start
    except Exception as err:  # an algorithm or option that does not exist (yet) is a row, not a crash
        row.error = _short(err)
        return None, row
    modules = dict(candidate.named_modules())
    stored = sum(_weight_bytes(modules[n]) for n in subject.targets)
    left_float = sum(isinstance(modules[n], torch.nn.Linear) for n in subject.targets)
    weights = sum(subject.model.get_submodule(n).weight.numel() for n in subject.targets)
    row.bpw = row.packed_bpw = 8 * stored / weights
    notes = [config.scheme] if spec.startswith("preset:") else []
    if left_float:
        notes.append(f"{left_float} of {len(subject.targets)} layers left float")
    row.note = "; ".join(notes)
    return candidate, row


def run_peer(subject: Subject, method: PeerMethod) -> tuple[Any, Row]:
    """Quantize every target layer of a copy of the model with one peer method (weights dequantized in place)."""
    row = Row(subject.name, method.label, method.peer, method.bits)
    row.error = missing(method.peer)
    if row.error:
        return None, row
    candidate = copy.deepcopy(subject.model)
    stored = packed = weights = 0
    seconds = 0.0
    try:
        for name in subject.targets:
            layer = candidate.get_submodule(name)
            start = time.perf_counter()
            got = method.quantize(layer)
            seconds += time.perf_counter() - start
            if tuple(got.weight.shape) != tuple(layer.weight.shape):
                raise ValueError(f"{name}: dequantized shape {tuple(got.weight.shape)} != {tuple(layer.weight.shape)}")
            with torch.no_grad():
                layer.weight.copy_(got.weight)
            stored, packed, weights = stored + got.stored_bytes, packed + got.packed_bytes, weights + got.weight.numel()
    except Exception as err:  # no CPU kernel, unsupported shape, ...: its error in the table
        row.error = _short(err)
        return None, row
    row.seconds = seconds
    row.bpw, row.packed_bpw = 8 * stored / weights, 8 * packed / weights
    return candidate, row


def score_row(subject: Subject, model: Any, row: Row, reference: dict[str, float]) -> None:
    """Fill the row's metrics and gap (or its error)."""
    if model is None:
        return
    try:
        row.metrics = subject.score(model.eval())
        row.gap = subject.gap_of(row.metrics, reference)
    except Exception as err:
        row.error = _short(err)


# --------------------------------------------------------------------------- output


def _num(value: float | None, digits: int) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _bits_text(row: Row) -> str:
    if row.bpw is None:
        return "—"
    text = f"{row.bpw:.3f}"
    return text if abs(row.packed_bpw - row.bpw) < 1e-9 else f"{text} ({row.packed_bpw:.3f} packed)"


def _note(row: Row) -> str:
    return f"error: {row.error}" if row.error else row.note


def print_table(rows: list[Row], lm_metrics: bool) -> None:
    if lm_metrics:
        print("| method | source | bits/weight | Hamlet ppl | ppl - fp32 | KL to fp32 | top-1 agree | quantize s "
              "| note |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            m = r.metrics
            print(f"| {r.method} | {r.source} | {_bits_text(r)} | {_num(m.get('ppl'), 2)} | {_num(r.gap, 2)} "
                  f"| {_num(m.get('kl'), 4)} | {_num(m.get('top1'), 4)} | {_num(r.seconds, 1)} | {_note(r)} |")
    else:
        print("| method | source | bits/weight | mean cosine | 1 - cosine | quantize s | note |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r.method} | {r.source} | {_bits_text(r)} | {_num(r.metrics.get('cosine'), 4)} "
                  f"| {_num(r.gap, 4)} | {_num(r.seconds, 1)} | {_note(r)} |")


def _order(row: Row) -> tuple:
    return (-row.bits, row.source == "lowbit", row.bpw if row.bpw is not None else 99.0)


def budget_verdict(rows: list[Row], budget: Budget) -> dict[str, Any]:
    """Best peer row of the budget's code width, best lowbit row at <= its bits/weight, and the verdict."""
    ok = [r for r in rows if r.error is None and r.gap is not None]
    peers = [r for r in ok if r.source not in ("lowbit", "fp32") and r.bits == budget.peer_bits]
    ours = [r for r in ok if r.source == "lowbit" and r.bpw <= budget.max_bpw + 1e-9]
    peer = min(peers, key=lambda r: r.gap, default=None)
    fair = [r for r in ours if peer is None or r.bpw <= peer.packed_bpw + 1e-9]  # no more bits than the peer
    best = min(fair or ours, key=lambda r: r.gap, default=None)  # none: the budget's best, marked as storing more
    out: dict[str, Any] = {"budget": budget.label, "target": budget.target,
                           "peer": None if peer is None else asdict(peer),
                           "lowbit": None if best is None else asdict(best)}
    if peer is None or best is None:
        out["verdict"] = "n/a"
        return out
    ratio = best.gap / peer.gap if peer.gap > 0 else math.inf
    fewer_bits = best.bpw <= peer.packed_bpw + 1e-9
    out.update(ratio=ratio, fewer_bits=fewer_bits, verdict="PASS" if ratio <= 0.5 and fewer_bits else "FAIL")
    return out


def print_summary(name: str, rows: list[Row]) -> list[dict[str, Any]]:
    verdicts = [budget_verdict(rows, b) for b in BUDGETS]
    print(f"\n{name}: lowbit's best vs the best peer per budget (gap = distance to fp32; target: lowbit's gap "
          f"<= 0.5 x the peer's, at no more bits/weight)")
    for v in verdicts:
        if v["verdict"] == "n/a":
            print(f"  {v['budget']:26s} n/a (no successful {'peer' if v['peer'] is None else 'lowbit'} row)")
            continue
        p, ours = v["peer"], v["lowbit"]
        tag = v["verdict"] if v["target"] else f"({v['verdict']}, not a target)"
        bits = "" if v["fewer_bits"] else f"; lowbit stores more bits ({ours['bpw']:.3f} > {p['packed_bpw']:.3f})"
        print(f"  {v['budget']:26s} peer {p['method']} ({p['bpw']:.3f} b/w) gap {p['gap']:.4g} | lowbit "
              f"{ours['method']} ({ours['bpw']:.3f} b/w) gap {ours['gap']:.4g} | ratio {v['ratio']:.3f}{bits} "
              f"-> {tag}")
    return verdicts


def versions_line() -> str:
    names = {"lowbit": "lowbit", "torch": "torch", "transformers": "transformers", **{d: d for d in PACKAGES.values()}}
    found = {}
    for label, dist in names.items():
        try:
            found[label] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[label] = "not installed"
    found.update(versions())
    return ", ".join(f"{k} {v}" for k, v in found.items())


# --------------------------------------------------------------------------- main


def _spec_bits(spec: str) -> int:
    try:
        from lowbit.formats import get_qtype

        return get_qtype(parse_spec(spec).qtype).bits
    except Exception:
        return 0  # shown with its error after the others


def run_model(subject: Subject, specs: list[str], methods: list[PeerMethod], save: Any = None) -> list[Row]:
    """Every peer method and lowbit spec on one subject, widest codes first; ``save(rows)`` after each row."""
    monitor = CpuMonitor()
    monitor.start()
    reference = subject.score(subject.model)
    rows = [Row(subject.name, "fp32", "fp32", 32, 32.0, 32.0, reference, 0.0)]
    jobs = [(m.bits, 0, m) for m in methods] + [(_spec_bits(s), 1, s) for s in specs]
    for _, kind, item in sorted(jobs, key=lambda j: (-j[0], j[1])):
        model, row = run_peer(subject, item) if kind == 0 else run_lowbit(subject, item)
        score_row(subject, model, row, reference)
        del model
        rows.append(row)
        print(f"  {row.method:45s} {_bits_text(row):24s} gap {_num(row.gap, 4):>10s}  {_note(row)}", flush=True)
        if save is not None:
            save(rows)
    other = monitor.stop()
    print(f"\n### {subject.name}: {len(subject.targets)} Linear layers quantized ({', '.join(subject.include)})")
    if other is not None:
        print(f"(wall {other[1]:.0f} s; other processes used {other[0] / other[1]:.2f} of the {os.cpu_count()} CPUs "
              f"meanwhile: times are noisy)")
    return rows


def report_model(name: str, rows: list[Row]) -> list[dict[str, Any]]:
    """Print one model's table (fp32 first, then by code width) and its per-budget summary."""
    rows = [r for r in rows if r.source == "fp32"] + sorted((r for r in rows if r.source != "fp32"), key=_order)
    print_table(rows, lm_metrics=any("ppl" in r.metrics for r in rows))
    return print_summary(name, rows)


def print_targets(verdicts: dict[str, list[dict[str, Any]]]) -> None:
    if len(verdicts) < 2:
        return
    print("\nTargets (both models must pass):")
    for k, budget in enumerate(BUDGETS):
        if budget.target:
            each = [v[k]["verdict"] for v in verdicts.values()]
            overall = "n/a (not measured on every model)" if "n/a" in each else (
                "PASS" if all(x == "PASS" for x in each) else "FAIL")
            detail = ", ".join(f"{m}: {v[k]['verdict']}" for m, v in verdicts.items())
            print(f"  {budget.label:26s} {overall}  ({detail})")


def write_json(path: Path, results: dict[str, Any]) -> None:
    from lowbit.io._atomic import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")


def from_json(paths: list[Path]) -> int:
    """Print the tables, summaries and targets of saved runs (rows of one or more ``--json`` files).

    Runs of the same model in several files (e.g. the peers in one process, lowbit's rows in
    another, on the same data) are merged into one table: a method seen again replaces the
    earlier row, fp32 is kept once; runs on other data (windows, sentences) are refused."""
    models: dict[str, dict[str, Any]] = {}
    for path in paths:
        results = json.loads(path.read_text(encoding="utf-8"))
        print(f"versions ({path.name}): {results['versions']}")
        for name, data in results["models"].items():
            merged = models.setdefault(name, {"setup": data.get("setup"), "rows": {}})
            if data.get("setup") != merged["setup"]:
                raise SystemExit(f"{path}: {name} was measured on other data ({data.get('setup')!r}) than in the "
                                 f"files before it ({merged['setup']!r}); only runs on the same data merge")
            merged["rows"].update({r["method"]: r for r in data["rows"]})
    verdicts = {}
    for name, merged in models.items():
        print(f"\n### {name}" + (f" ({merged['setup']})" if merged["setup"] else ""))
        verdicts[name] = report_model(name, [Row(**r) for r in merged["rows"].values()])
    print_targets(verdicts)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", default=["smollm2", "minilm"], choices=["smollm2", "minilm"])
    parser.add_argument("--rows", nargs="*", default=None, metavar="SPEC",
                        help="lowbit rows (replaces the default list; none: no lowbit rows)")
    parser.add_argument("--add-rows", nargs="*", default=[], metavar="SPEC", help="lowbit rows added to the list")
    parser.add_argument("--peers", nargs="*", default=list(PACKAGES), choices=list(PACKAGES),
                        help="peers to run (none: no peer rows)")
    parser.add_argument("--peer-match", nargs="*", default=None, metavar="TEXT",
                        help="only peer rows whose label contains one of these")
    parser.add_argument("--all-peer-rows", action="store_true", help="also the slow peer rows that lead no budget")
    parser.add_argument("--eval-windows", type=int, default=8)
    parser.add_argument("--calib-windows", type=int, default=16)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--sentences", type=int, default=640, help="sentences in all (held out: after calibration)")
    parser.add_argument("--calib-sentences", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="save the raw rows (after every row) and verdicts")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None, metavar="PATH",
                        help="print the tables and verdicts of saved --json files (several: one per model) and exit")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.from_json:
        return from_json(args.from_json)
    specs = (LOWBIT_ROWS if args.rows is None else args.rows) + args.add_rows
    methods = peer_methods(args.peers, args.peer_match, args.all_peer_rows)
    print(f"versions: {versions_line()}", flush=True)
    results: dict[str, Any] = {"versions": versions_line(), "models": {}}
    verdicts: dict[str, list[dict[str, Any]]] = {}
    for name in args.model:
        if name == "smollm2":
            subject = smollm2_subject(args.eval_windows, args.calib_windows, args.window)
            setup = (f"{args.eval_windows} Hamlet windows of {args.window} tokens; lowbit calibration "
                     f"{args.calib_windows} Macbeth windows")
        else:
            subject = minilm_subject(args.sentences, args.calib_sentences)
            setup = (f"{args.sentences - args.calib_sentences} held-out sentences; lowbit calibration "
                     f"{args.calib_sentences} sentences")
        print(f"\n{subject.name}: {setup}", flush=True)

        def save(rows: list[Row], name: str = subject.name, setup: str = setup) -> None:
            results["models"][name] = {"setup": setup, "rows": [asdict(r) for r in rows]}
            if args.json is not None:
                write_json(args.json, results)

        rows = run_model(subject, specs, methods, save)
        verdicts[subject.name] = report_model(subject.name, rows)
        results["models"][subject.name]["budgets"] = verdicts[subject.name]
    print_targets(verdicts)
    if args.json is not None:
        write_json(args.json, results)
        print(f"\nrows saved to {args.json}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
