"""A ladder: one float model, many schemes, one table of size and quality.

Each rung copies the float model, applies a transform (a ``quantize_`` call,
a QAT run, a peer library's workflow ...), measures it with the caller's
``evaluate`` function and compares every changed layer with the float one.

Example:
    >>> import torch, lowbit.model as lm
    >>> net = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).eval()
    >>> x = torch.randn(64, 16)
    >>> def quality(m):
    ...     with torch.no_grad():
    ...         return {"out cos": float(torch.nn.functional.cosine_similarity(m(x), net(x)).mean())}
    >>> rungs = run_ladder(net, [("W4", lambda m: lm.quantize_(m, lm.WeightOnly("int4")))], quality, [x])
    >>> [r.name for r in rungs], rungs[1].nbytes < rungs[0].nbytes
    (['fp32', 'W4'], True)
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lowbit._text import format_table
from lowbit.errors import ModelError
from lowbit.model.reports import error_report, size_report

__all__ = ["Rung", "run_ladder", "render_ladder"]


@dataclass(frozen=True)
class Rung:
    """One scheme's result."""

    name: str
    nbytes: int
    metrics: dict[str, float]
    worst_layer: str = ""
    worst_sqnr_db: float = float("nan")
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)


def run_ladder(
    model: Any,
    steps: Sequence[tuple[str, Callable[[Any], Any]]],
    evaluate: Callable[[Any], dict[str, float]],
    error_batches: Sequence[Any],
) -> list[Rung]:
    """Evaluate the float model, then each ``(name, transform)`` on a fresh copy of it.

    ``transform(copy)`` changes the copy in place or returns a replacement
    model (for workflows that build a new module).  The worst layer is the one
    with the lowest output SQNR against the float model on ``error_batches``.

    Raises:
        ModelError: the float model is in training mode.
    """
    if model.training:
        raise ModelError("run_ladder needs the float model in eval mode; call model.eval()")
    rungs = [Rung("fp32", size_report(model).total_bytes, evaluate(model))]
    for name, transform in steps:
        start = time.perf_counter()
        candidate = copy.deepcopy(model)
        replaced = transform(candidate)
        if replaced is not None and hasattr(replaced, "forward") and hasattr(replaced, "eval"):
            candidate = replaced
        candidate.eval()
        seconds = time.perf_counter() - start
        metrics = evaluate(candidate)
        try:
            report = error_report(candidate, model, error_batches)
            worst, worst_db = report.worst.name, report.worst.sqnr_db
        except ModelError:  # a peer workflow whose layer names differ: no per-layer comparison
            worst, worst_db = "", float("nan")
        rungs.append(Rung(name, size_report(candidate).total_bytes, metrics, worst, worst_db, seconds))
    return rungs


def render_ladder(rungs: Sequence[Rung], title: str = "") -> str:
    """Aligned table: scheme, bytes, ratio to fp32, each metric, worst layer and its SQNR.

    Example:
        >>> print(render_ladder([Rung("fp32", 100, {"acc %": 99.0})]))
        scheme  bytes  ratio  acc %  worst layer (SQNR dB)
        ------  -----  -----  -----  ---------------------
        fp32      100  1.00x  99.00
    """
    keys = list(dict.fromkeys(k for r in rungs for k in r.metrics))
    base = rungs[0].nbytes if rungs else 1
    body = []
    for r in rungs:
        worst = f"{r.worst_layer} ({r.worst_sqnr_db:.1f})" if r.worst_layer else ""
        cells = [f"{r.metrics[k]:.4f}" if abs(r.metrics.get(k, 0)) < 10 else f"{r.metrics[k]:.2f}" for k in keys]
        body.append([r.name, f"{r.nbytes:,}", f"{base / r.nbytes:.2f}x", *cells, worst])
    table = format_table(["scheme", "bytes", "ratio", *keys, "worst layer (SQNR dB)"], body)
    return f"{title}\n{table}" if title else table
