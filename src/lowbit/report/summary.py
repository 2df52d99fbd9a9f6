"""Plain-language findings of a report: the best scheme under each size, and why the worst layers are worst.

The same findings serve the top of the HTML page and the terminal (``make demo``'s short summary).

Example:
    >>> import numpy as np, lowbit
    >>> from lowbit.report.data import ReportData
    >>> w = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    >>> data = ReportData("w", lowbit.compare(w, ["int8", "int4"], name="w").rows, weights={"w": w})
    >>> print(best_under_each_size(data)[0])
    Up to 4.03 bits/weight: int4 tensor sym (weight SQNR 15.5 dB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lowbit.report.data import ReportData
from lowbit.report.plots import Point, pareto_front

__all__ = ["Finding", "curve_points", "curve_metric", "best_under_each_size", "worst_layers", "short_summary",
           "outlier_ratio"]

#: max|w| / std above which a tensor's range is called outlier-dominated
OUTLIER_RATIO = 10.0


def curve_metric(data: ReportData) -> tuple[str, bool]:
    """The metric the error-vs-bits curve uses and its direction: the model metric, else the weights' SQNR.

    Example:
        >>> curve_metric(ReportData("empty", []))
        ('weight SQNR dB', True)
    """
    if data.metric and any(data.metric in m.metrics for m in data.models):
        return data.metric, data.higher_is_better
    return "weight SQNR dB", True


def curve_points(data: ReportData) -> list[Point]:
    """One point per scheme: bits/weight and the model metric (where evaluated) or the aggregate weight SQNR.

    Example:
        >>> from lowbit.report.data import ModelResult
        >>> curve_points(ReportData("m", [], models=[ModelResult("W4", 10, 4.0, {"acc": 0.9})], metric="acc"))
        [Point(scheme='W4', bits=4.0, value=0.9)]
    """
    metric, _ = curve_metric(data)
    if metric == data.metric:
        return [Point(m.scheme, m.bits_per_weight, m.metrics[metric]) for m in data.models if metric in m.metrics]
    return [Point(a.scheme, a.bits_per_element, a.sqnr_db) for a in data.aggregates()]


def _value(metric: str, v: float) -> str:
    if metric.endswith("dB"):
        return f"{metric.removesuffix(' dB')} {v:.1f} dB"
    return f"{metric} {v:.4g}"


def best_under_each_size(data: ReportData) -> list[str]:
    """One sentence per Pareto point: at this many bits/weight or fewer, the best scheme and its metric.

    Example:
        >>> from lowbit.report.data import ModelResult
        >>> best_under_each_size(ReportData("m", [], models=[ModelResult("W4", 10, 4.0, {"acc": 0.9})], metric="acc"))
        ['Up to 4.00 bits/weight: W4 (acc 0.9).']
    """
    metric, higher = curve_metric(data)
    return [f"Up to {p.bits:.2f} bits/weight: {p.scheme} ({_value(metric, p.value)})."
            for p in pareto_front(curve_points(data), higher)]


def outlier_ratio(values: np.ndarray) -> float:
    """max|x| / std of a tensor (inf for a constant one).

    Example:
        >>> outlier_ratio(np.array([1.0, -1.0, 1.0, -1.0]))
        1.0
    """
    flat = np.asarray(values, np.float64).reshape(-1)
    std = float(flat.std())
    return float(np.abs(flat).max()) / std if std > 0 else math.inf


@dataclass(frozen=True)
class Finding:
    """One of the worst layers: the scheme under which it falls furthest below the typical layer, its SQNR
    there, how far below the median layer, and what its values look like."""

    layer: str
    scheme: str
    sqnr_db: float
    below_median_db: float
    ratio: float
    lo: float
    hi: float

    def sentence(self) -> str:
        """The plain-language explanation."""
        below = f", {self.below_median_db:.1f} dB below the median layer" if self.below_median_db > 0.05 else ""
        head = f"{self.layer}: weight SQNR {self.sqnr_db:.1f} dB under {self.scheme}{below}. "
        span = f"values span [{self.lo:.3g}, {self.hi:.3g}] and the largest is {self.ratio:.1f} x the std"
        if self.ratio >= OUTLIER_RATIO:
            return head + (f"Outliers: {span}, so a range that covers them leaves few levels for the bulk of "
                           "the weights; finer groups or a clipping method (mse, percentile) help.")
        return head + f"No strong outliers ({span}): the error is the format's resolution; use more bits here."


def worst_layers(data: ReportData) -> list[Finding]:
    """The layers drawn as histograms (the worst), each where it falls furthest below the median layer.

    Example:
        >>> import lowbit
        >>> rng = np.random.default_rng(0)
        >>> w = {"a": rng.standard_normal((8, 64)), "b": rng.standard_normal((8, 64))}
        >>> w["b"][0, 0] = 50.0
        >>> rows = [r for n, x in w.items() for r in lowbit.compare(x, ["int4"], name=n).rows]
        >>> [(f.layer, f.ratio > OUTLIER_RATIO) for f in worst_layers(ReportData("w", rows, weights={"b": w["b"]}))]
        [('b', True)]
    """
    deficits = data.deficits()
    findings = []
    for name, values in data.weights.items():
        mine = [r for r in data.rows if r.tensor == name and (name, r.scheme) in deficits]
        if not mine:
            continue
        worst = min(mine, key=lambda r: (deficits[(name, r.scheme)], r.sqnr_db))
        flat = np.asarray(values).reshape(-1)
        findings.append(Finding(name, worst.scheme, worst.sqnr_db, -deficits[(name, worst.scheme)],
                                outlier_ratio(flat), float(flat.min()), float(flat.max())))
    return findings


def short_summary(data: ReportData) -> str:
    """One line per scheme for a terminal: size, metric, worst layer.

    Example:
        >>> import numpy as np, lowbit
        >>> w = np.linspace(-1, 1, 512, dtype=np.float32).reshape(8, 64)
        >>> print(short_summary(ReportData("w", lowbit.compare(w, ["int8"], name="w").rows)))
        int8 tensor sym   8.06 bits/w    0.5 KB  SQNR  48.1 dB  worst w (48.1 dB)
    """
    from lowbit.report.compare import _short_names

    aggs = data.aggregates()
    short = _short_names([a.worst_tensor for a in aggs])
    width = max((len(a.scheme) for a in aggs), default=0)
    return "\n".join(
        f"{a.scheme:<{width}}  {a.bits_per_element:5.2f} bits/w  {_size(a.nbytes):>8}  SQNR {a.sqnr_db:5.1f} dB  "
        f"worst {short[a.worst_tensor]} ({a.worst_sqnr_db:.1f} dB)" for a in aggs)


def _size(nbytes: int) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if nbytes >= div or unit == "KB":
            return f"{nbytes / div:.1f} {unit}"
    return f"{nbytes} B"  # pragma: no cover
