"""The report's figures as PNG bytes (matplotlib, Agg backend, imported when a figure is drawn).

Example:
    >>> import numpy as np
    >>> png = histogram_png("w", np.random.default_rng(0).standard_normal(4096), "int4")
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Point", "pareto_front", "histogram_png", "sqnr_chart_png", "error_vs_bits_png", "CALIBRATION_METHODS",
           "clip_ranges"]

#: the range estimators whose clipping range each histogram marks
CALIBRATION_METHODS = ("minmax", "percentile", "mse", "entropy")
_STYLES = {"minmax": ("#444444", "-"), "percentile": ("#1f77b4", "--"), "mse": ("#d62728", "-."),
           "entropy": ("#2ca02c", ":")}
#: most schemes drawn as bar groups; more become a heatmap (one row per layer, one column per scheme)
MAX_BAR_SCHEMES = 8
_DPI = 90


@dataclass(frozen=True)
class Point:
    """One scheme on the error-vs-bits plane."""

    scheme: str
    bits: float
    value: float


def pareto_front(points: Sequence[Point], higher_is_better: bool = True) -> list[Point]:
    """The points no other point beats with fewer or equal bits, cheapest first.

    Example:
        >>> pts = [Point("a", 8, 40.0), Point("b", 4, 18.0), Point("c", 4.3, 17.0), Point("d", 2, 1.0)]
        >>> [p.scheme for p in pareto_front(pts)]
        ['d', 'b', 'a']
    """
    sign = 1.0 if higher_is_better else -1.0
    front: list[Point] = []
    for p in sorted((p for p in points if math.isfinite(p.value)), key=lambda p: (p.bits, -sign * p.value)):
        if not front or sign * p.value > sign * front[-1].value:
            front.append(p)
    return front


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def clip_ranges(values: np.ndarray, qtype: str) -> dict[str, tuple[float, float]]:
    """The clipping range each calibration method picks for ``values`` quantized to ``qtype`` (symmetric).

    Example:
        >>> r = clip_ranges(np.linspace(-1, 1, 1001), "int8")
        >>> r["minmax"]
        (-1.0, 1.0)
    """
    from lowbit.calibration import get_estimator

    flat = np.asarray(values, np.float32).reshape(-1)
    return {m: get_estimator(m).fit([flat]).clip_range(qtype, True) for m in CALIBRATION_METHODS}


def histogram_png(name: str, values: np.ndarray, qtype: str, kind: str = "weight") -> bytes:
    """Histogram of ``values`` on a log-count axis with each calibration method's clipping range marked."""
    plt = _pyplot()
    flat = np.asarray(values, np.float64).reshape(-1)
    ranges = clip_ranges(flat, qtype)
    std = float(flat.std())
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    counts, edges = np.histogram(flat, bins=200)
    ax.stairs(counts, edges, fill=True, color="#9ecae1")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.7)
    for method, (lo, hi) in ranges.items():
        color, style = _STYLES[method]
        for i, edge in enumerate((lo, hi)):
            ax.axvline(edge, color=color, linestyle=style, linewidth=1.4,
                       label=f"{method}: [{lo:.3g}, {hi:.3g}]" if i == 0 else None)
    ratio = float(np.abs(flat).max()) / std if std > 0 else math.inf
    ax.set_title(f"{name}: {kind} values (max|x| = {ratio:.1f} x std)", fontsize=10)
    ax.set_xlabel(f"{kind} value")
    ax.set_ylabel("count (log scale)")
    ax.legend(title=f"clipping range for {qtype}", fontsize=8, title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _short(names: Sequence[str]) -> list[str]:
    from lowbit.report.compare import _short_names

    table = _short_names(list(names))
    return [table[n] for n in names]


def sqnr_chart_png(layers: Sequence[str], schemes: Sequence[str], sqnr: dict[tuple[str, str], float]) -> bytes:
    """Per-layer SQNR: horizontal bars, one bar group per layer and one colour per scheme (a heatmap
    when there are more than MAX_BAR_SCHEMES schemes)."""
    if len(schemes) > MAX_BAR_SCHEMES:
        return _sqnr_heatmap(layers, schemes, sqnr)
    plt = _pyplot()
    n, k = len(layers), len(schemes)
    per_layer = max(0.2, 0.09 * k)
    fig, ax = plt.subplots(figsize=(8.5, 1.4 + n * per_layer))
    height = 0.8 / k
    y = np.arange(n)
    colors = plt.get_cmap("tab10")
    for j, s in enumerate(schemes):
        vals = [_finite(sqnr.get((layer, s), math.nan)) for layer in layers]
        ax.barh(y - 0.4 + (j + 0.5) * height, vals, height=height, color=colors(j % 10), label=s)
    ax.set_yticks(y, _short(layers), fontsize=8 if n <= 60 else 6)
    ax.invert_yaxis()
    ax.set_xlabel("weight SQNR (dB, higher is better)")
    ax.set_ylabel("layer")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(title="scheme", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title("Per-layer SQNR of the weights", fontsize=10)
    return _png(fig)


def _finite(v: float) -> float:
    return v if math.isfinite(v) else (0.0 if math.isnan(v) else math.copysign(200.0, v))


def _sqnr_heatmap(layers: Sequence[str], schemes: Sequence[str], sqnr: dict[tuple[str, str], float]) -> bytes:
    plt = _pyplot()
    grid = np.array([[_finite(sqnr.get((layer, s), math.nan)) for s in schemes] for layer in layers])
    n, k = grid.shape
    fig, ax = plt.subplots(figsize=(2.5 + 0.45 * k, 1.8 + 0.2 * n))
    image = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_xticks(range(k), list(schemes), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), _short(layers), fontsize=8 if n <= 60 else 6)
    ax.set_xlabel("scheme")
    ax.set_ylabel("layer")
    fig.colorbar(image, ax=ax, label="weight SQNR (dB, higher is better)", shrink=0.8)
    ax.set_title("Per-layer SQNR of the weights", fontsize=10)
    return _png(fig)


def error_vs_bits_png(points: Sequence[Point], metric: str, higher_is_better: bool = True) -> bytes:
    """Bits/weight vs the metric for every scheme, the Pareto front drawn and its points named."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    finite = [p for p in points if math.isfinite(p.value)]
    ax.scatter([p.bits for p in finite], [p.value for p in finite], color="#7f7f7f", s=22, label="scheme", zorder=2)
    front = pareto_front(finite, higher_is_better)
    ax.plot([p.bits for p in front], [p.value for p in front], color="#d62728", marker="o", drawstyle="steps-post",
            linewidth=1.5, label="Pareto front (best at that size or less)", zorder=3)
    for i, p in enumerate(front):
        ax.annotate(p.scheme, (p.bits, p.value), textcoords="offset points", xytext=(6, -12 if i % 2 else 6),
                    fontsize=8, color="#d62728")
    ax.set_xlabel("bits per weight (codes + scales + zero points as stored)")
    direction = "higher" if higher_is_better else "lower"
    ax.set_ylabel(f"{metric} ({direction} is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"Error vs size: {metric} over {len(finite)} schemes", fontsize=10)
    return _png(fig)
