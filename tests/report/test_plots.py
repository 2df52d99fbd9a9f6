"""lowbit.report.plots: the Pareto front against a brute-force definition, clip ranges, PNG output."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from lowbit.calibration import get_estimator
from lowbit.report.plots import (
    CALIBRATION_METHODS,
    MAX_BAR_SCHEMES,
    Point,
    clip_ranges,
    error_vs_bits_png,
    histogram_png,
    pareto_front,
    sqnr_chart_png,
    zoom_half_width,
)


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def dominated(p: Point, others: list[Point], higher: bool) -> bool:
    """Another point at no more bits that is at least as good, and strictly better in one of the two."""
    better = (lambda a, b: a >= b) if higher else (lambda a, b: a <= b)
    return any(q is not p and q.bits <= p.bits and better(q.value, p.value)
               and (q.bits < p.bits or q.value != p.value) for q in others)


@pytest.mark.parametrize("higher", [True, False], ids=["higher-better", "lower-better"])
@pytest.mark.parametrize("seed", range(5))
def test_pareto_front_is_exactly_the_non_dominated_points(seed: int, higher: bool) -> None:
    rng = np.random.default_rng(seed)
    pts = [Point(f"s{i}", float(b), float(v)) for i, (b, v) in
           enumerate(zip(rng.choice([2, 3, 4, 4.25, 8], 12), rng.integers(0, 6, 12), strict=True))]
    front = pareto_front(pts, higher)
    expected = {p.scheme for p in pts if not dominated(p, pts, higher)}
    # ties (same bits and value) keep one representative
    assert {(p.bits, p.value) for p in front} == {(p.bits, p.value) for p in pts if p.scheme in expected}
    assert [p.bits for p in front] == sorted(p.bits for p in front)


def test_pareto_front_ignores_non_finite_values() -> None:
    pts = [Point("a", 4, float("nan")), Point("b", 8, 30.0), Point("c", 2, float("inf"))]
    assert [p.scheme for p in pareto_front(pts)] == ["b"]


def test_clip_ranges_are_the_estimators_own() -> None:
    x = np.random.default_rng(1).standard_normal(5000)
    x[0] = 25.0
    ranges = clip_ranges(x, "int4")
    assert list(ranges) == list(CALIBRATION_METHODS)
    for method, r in ranges.items():
        assert r == get_estimator(method).fit([x.astype(np.float32)]).clip_range("int4", True)
    assert ranges["minmax"][1] == pytest.approx(25.0)
    assert ranges["mse"][1] < 10  # a clipping method does not stretch to the outlier


def test_histogram_and_charts_are_pngs() -> None:
    x = np.random.default_rng(2).standard_normal(2000)
    assert png_size(histogram_png("w", x, "int8", "activation"))[0] > 300
    layers = [f"encoder.layer.{i}.dense.weight" for i in range(40)]
    few = [f"s{j}" for j in range(3)]
    many = [f"s{j}" for j in range(MAX_BAR_SCHEMES + 1)]
    sqnr = {(n, s): 10.0 + i + j for (i, n), (j, s) in itertools.product(enumerate(layers), enumerate(many))}
    bars, heat = sqnr_chart_png(layers, few, sqnr), sqnr_chart_png(layers, many, sqnr)
    assert png_size(bars)[1] > png_size(heat)[1] / 4  # tall enough for 40 labelled layers
    assert png_size(heat)[0] > 300
    pts = [Point("a", 4.0, 0.9), Point("b", 8.0, 0.99)]
    assert png_size(error_vs_bits_png(pts, "mean cos"))[0] > 300



def test_zoom_panel_only_for_outlier_dominated_tensors() -> None:
    x = np.random.default_rng(3).standard_normal(20_000)
    assert zoom_half_width(x, clip_ranges(x, "int4")) is None
    x[:4] = 80.0
    half = zoom_half_width(x, clip_ranges(x, "int4"))
    assert half is not None and np.mean(np.abs(x) <= half) >= 0.999 and half < 80.0 / 2
    inner = [hi for m, (_, hi) in clip_ranges(x, "int4").items() if m != "minmax" and hi < 40.0]
    assert all(half >= 1.1 * hi for hi in inner)  # the ranges that stop short of the outliers are in view
