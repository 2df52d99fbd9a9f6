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
           "clip_ranges", "zoom_half_width"]

#: the range estimators whose clipping range each histogram marks
CALIBRATION_METHODS = ("minmax", "percentile", "mse", "entropy")
_STYLES = {"minmax": ("#444444", "-"), "percentile": ("#1f77b4", "--"), "mse": ("#d62728", "-."),
           "entropy": ("#2ca02c", ":")}
#: most schemes drawn as bar groups; more become a heatmap (one row per layer, one column per scheme)
MAX_BAR_SCHEMES = 8
_DPI = 100
#: max|x| / std above which a histogram adds a panel zoomed on the bulk of the values
OUTLIER_ZOOM = 10.0
#: most points named on the error-vs-bits plot (beyond it only the Pareto front is named)
MAX_NAMED_POINTS = 12
#: most heatmap cells that get their value written in them
MAX_LABELLED_CELLS = 1200


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


def clip_ranges(values: np.ndarray, qtype: str, symmetric: bool = True) -> dict[str, tuple[float, float]]:
    """The clipping range each calibration method picks for ``values`` quantized to ``qtype``.

    Example:
        >>> r = clip_ranges(np.linspace(-1, 1, 1001), "int8")
        >>> r["minmax"]
        (-1.0, 1.0)
    """
    from lowbit.calibration import get_estimator

    flat = np.asarray(values, np.float32).reshape(-1)
    return {m: get_estimator(m).fit([flat]).clip_range(qtype, symmetric) for m in CALIBRATION_METHODS}


def histogram_png(name: str, values: np.ndarray, qtype: str, kind: str = "weight", symmetric: bool = True) -> bytes:
    """Histogram of ``values`` on a log-count axis with each calibration method's clipping range marked.

    An outlier-dominated tensor (max|x| over OUTLIER_ZOOM x its std) gets a second panel zoomed on the bulk,
    where the clipping methods' ranges differ.

    ``symmetric=False`` draws the ranges of an affine format (activations after a ReLU are all >= 0).

    Example:
        >>> histogram_png("x", np.linspace(-1, 1, 500), "int4", "activation", symmetric=False)[1:4]
        b'PNG'
    """
    plt = _pyplot()
    flat = np.asarray(values, np.float64).reshape(-1)
    ranges = clip_ranges(flat, qtype, symmetric)
    std = float(flat.std())
    ratio = float(np.abs(flat).max()) / std if std > 0 else math.inf
    half = zoom_half_width(flat, ranges)
    zoom = half is not None
    fig, axes = plt.subplots(1, 2 if zoom else 1, figsize=(10, 3.6), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1]} if zoom else None)
    _histogram_panel(axes[0][0], flat, ranges, kind, legend=True)
    axes[0][0].set_title("all values" if zoom else "", fontsize=9)
    if half is not None:
        bulk = flat[np.abs(flat) <= half]
        _histogram_panel(axes[0][1], bulk, ranges, kind, legend=False)
        axes[0][1].set_xlim(-half if flat.min() < 0 else -0.02 * half, half)
        axes[0][1].set_title(f"zoom on |x| <= {half:.3g} (all but {flat.size - bulk.size:,} values)", fontsize=9)
    fig.suptitle(f"{name}: {kind} values, {flat.size:,} of them (max|x| = {ratio:.1f} x std)", fontsize=11)
    title = f"clipping range for {qtype} {'symmetric' if symmetric else 'affine'}"
    fig.legend(*axes[0][0].get_legend_handles_labels(), title=title, fontsize=8, title_fontsize=8,
               loc="upper center", ncol=4, bbox_to_anchor=(0.5, 0.0), frameon=False)
    return _png(fig)


def zoom_half_width(flat: np.ndarray, ranges: dict[str, tuple[float, float]]) -> float | None:
    """Half-width of the zoom panel on the bulk of an outlier-dominated tensor (max|x| > OUTLIER_ZOOM x std),
    else None: 1.5 x the 99.9th percentile of |x|, widened to show the clipping ranges that stop short of the
    outliers (under half of max|x|).

    Example:
        >>> x = np.random.default_rng(0).standard_normal(10_000)
        >>> zoom_half_width(x, {}) is None
        True
        >>> x[:5] = 100.0
        >>> 3 < zoom_half_width(x, {"mse": (-2.0, 2.0)}) < 10
        True
    """
    std = float(flat.std()) if flat.size else 0.0
    top = float(np.abs(flat).max()) if flat.size else 0.0
    if std == 0 or top <= OUTLIER_ZOOM * std:
        return None
    half = max([1.5 * float(np.quantile(np.abs(flat), 0.999)),
                *(1.1 * max(abs(lo), abs(hi)) for m, (lo, hi) in ranges.items()
                  if m != "minmax" and max(abs(lo), abs(hi)) < 0.5 * top)])
    return half if half > 0 and half < top else None


def _histogram_panel(ax: Any, flat: np.ndarray, ranges: dict[str, tuple[float, float]], kind: str,
                     legend: bool) -> None:
    counts, edges = np.histogram(flat, bins=200)
    ax.stairs(counts, edges, fill=True, color="#9ecae1")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.7)
    for method, (lo, hi) in ranges.items():
        color, style = _STYLES[method]
        for i, edge in enumerate((lo, hi)):
            ax.axvline(edge, color=color, linestyle=style, linewidth=1.4,
                       label=f"{method}: [{lo:.3g}, {hi:.3g}]" if legend and i == 0 else None)
    ax.set_xlabel(f"{kind} value")
    ax.set_ylabel("count (log scale)")
    ax.grid(axis="x", alpha=0.3)


def _short(names: Sequence[str]) -> list[str]:
    from lowbit.report.compare import _short_names

    table = _short_names(list(names))
    return [table[n] for n in names]


def sqnr_chart_png(layers: Sequence[str], schemes: Sequence[str], sqnr: dict[tuple[str, str], float]) -> bytes:
    """Per-layer SQNR: horizontal bars, one bar group per layer and one colour per scheme (a heatmap
    when there are more than MAX_BAR_SCHEMES schemes).

    Example:
        >>> sqnr_chart_png(["a", "b"], ["int8"], {("a", "int8"): 40.0, ("b", "int8"): 38.5})[1:4]
        b'PNG'
    """
    if len(schemes) > MAX_BAR_SCHEMES:
        return _sqnr_heatmap(layers, schemes, sqnr)
    plt = _pyplot()
    n, k = len(layers), len(schemes)
    per_layer = max(0.2, 0.09 * k)
    fig, ax = plt.subplots(figsize=(10, 1.2 + n * per_layer))
    height = 0.8 / k
    y = np.arange(n)
    colors = plt.get_cmap("tab10")
    for j, s in enumerate(schemes):
        vals = [_finite(sqnr.get((layer, s), math.nan)) for layer in layers]
        ax.barh(y - 0.4 + (j + 0.5) * height, vals, height=height, color=colors(j % 10), label=s)
    ax.set_yticks(y, _short(layers), fontsize=8 if n <= 60 else 6)
    ax.set_ylim(n - 0.5, -0.5)  # first layer on top, no empty margins
    ax.set_xlabel("weight SQNR (dB, higher is better)")
    if n > 20:  # a tall chart: the scale at the top as well
        ax.tick_params(axis="x", labeltop=True)
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
    ax.set_xticks(range(k), list(schemes), rotation=45, ha="left", fontsize=8)
    ax.xaxis.tick_top()  # scheme names above the first layer, where reading starts
    ax.xaxis.set_label_position("top")
    ax.set_yticks(range(n), _short(layers), fontsize=8 if n <= 60 else 6)
    if n * k <= MAX_LABELLED_CELLS:
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                    color="black" if v > 0.6 * np.nanmax(grid) else "white")
    ax.set_xlabel("scheme")
    ax.set_ylabel("layer")
    label = "weight SQNR in dB" + (" (the number in each cell)" if n * k <= MAX_LABELLED_CELLS else "")
    fig.colorbar(image, ax=ax, label=label + ", higher is better", shrink=0.8)
    return _png(fig)


def error_vs_bits_png(points: Sequence[Point], metric: str, higher_is_better: bool = True) -> bytes:
    """Bits/weight (log scale) vs the metric for every scheme, the Pareto front drawn; points are named
    (only the front's when there are more than MAX_NAMED_POINTS).

    Example:
        >>> error_vs_bits_png([Point("W8", 8.0, 0.99), Point("W4", 4.0, 0.95)], "cosine")[1:4]
        b'PNG'
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.8))
    finite = [p for p in points if math.isfinite(p.value)]
    front = pareto_front(finite, higher_is_better)
    on_front = {id(p) for p in front}
    ax.scatter([p.bits for p in finite], [p.value for p in finite], color="#7f7f7f", s=24, zorder=2,
               label="scheme")
    ax.plot([p.bits for p in front], [p.value for p in front], color="#d62728", marker="o", drawstyle="steps-post",
            linewidth=1.5, label="Pareto front (best at that size or less)", zorder=3)
    named = finite if len(finite) <= MAX_NAMED_POINTS else front
    for i, p in enumerate(sorted(named, key=lambda p: (p.bits, p.value))):
        ax.annotate(p.scheme, (p.bits, p.value), textcoords="offset points", xytext=(7, -11 if i % 2 else 5),
                    fontsize=8, color="#d62728" if id(p) in on_front else "#555555")
    ax.set_xscale("log", base=2)
    ticks = sorted({b for b in (2, 3, 4, 5, 6, 8, 12, 16, 24, 32) if min(p.bits for p in finite) * 0.9 <= b
                    <= max(p.bits for p in finite) * 1.1}) if finite else []
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.margins(x=0.12, y=0.08)
    ax.set_xlabel("bits per weight, log scale (codes + scales + zero points as stored)")
    direction = "higher" if higher_is_better else "lower"
    ax.set_ylabel(f"{metric}\n({direction} is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    shown = "" if named is finite else f"; {len(finite) - len(named)} points off the front are in the table"
    ax.set_title(f"Error vs size: {metric} over {len(finite)} schemes{shown}", fontsize=10)
    return _png(fig)
