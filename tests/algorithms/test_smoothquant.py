"""lowbit.algorithms.smoothquant: SmoothQuant's factors against the paper's formula, and the search for its
migration strength scored by a float64 W8A8 reference on rows the search never saw."""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit.algorithms import search_smoothing, smoothquant_scales


def _int8(v: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(v / scale), -127, 127) * scale


def _w8a8_error(w: np.ndarray, x: np.ndarray, s: np.ndarray, one_scale: bool = False) -> float:
    """Reference W8A8 output error: dynamic int8 activations, one scale per row (or for all rows)."""
    ws, xs = w * s, x / s
    wq = _int8(ws, np.abs(ws).max(axis=1, keepdims=True) / 127)
    xq = _int8(xs, np.abs(xs).max(axis=None if one_scale else 1, keepdims=True) / 127)
    return float(np.sum((x @ w.T - xq @ wq.T) ** 2))


def test_smoothquant_scales_follow_the_formula(outlier_rows):
    x = outlier_rows(64, 16)
    w = np.random.default_rng(1).standard_normal((8, 16))
    a = np.abs(x).max(axis=0).astype(np.float64)
    for alpha in (0.0, 0.5, 0.85, 1.0):
        expected = a**alpha / np.abs(w).max(axis=0) ** (1 - alpha)
        np.testing.assert_allclose(smoothquant_scales(a, w, alpha), expected, rtol=1e-12)
    with pytest.raises(lowbit.OptionError, match=r"alpha must be a number in \[0, 1\]"):
        smoothquant_scales(a, w, 1.2)
    with pytest.raises(lowbit.OptionError, match=r"act_absmax must be shaped \(\.\.\., 16\)"):
        smoothquant_scales(a[:3], w)


@pytest.mark.parametrize("activations", ["token", "tensor"])
def test_search_smoothing_picks_a_candidate_that_does_well_on_new_rows(activations, outlier_rows):
    x, new = outlier_rows(seed=0), outlier_rows(seed=1)
    w = np.random.default_rng(2).standard_normal((32, 64)).astype(np.float32)
    a = np.abs(x).max(axis=0)
    s, alpha = search_smoothing(w, x, a, act_granularity=activations, static=False)
    assert s is not None and alpha is not None and 0 < alpha <= 1
    np.testing.assert_array_equal(s, smoothquant_scales(a, w, alpha))  # applied with all rows' maxima
    one_scale = activations == "tensor"
    chosen = _w8a8_error(w, new, s, one_scale)
    best = min(_w8a8_error(w, new, smoothquant_scales(a, w, k / 10), one_scale) for k in range(11))
    assert chosen <= 1.1 * best
    assert chosen < 0.5 * _w8a8_error(w, new, np.ones(64), one_scale)  # smoothing the outliers pays off


def test_search_smoothing_leaves_a_layer_alone_when_smoothing_cannot_help():
    x = np.random.default_rng(3).standard_normal((256, 32)).astype(np.float32)
    w = np.random.default_rng(4).standard_normal((16, 32)).astype(np.float32)
    w[:, 0] *= 200.0  # the weight, not the activation, has the outlier column
    # alpha = 0 moves all the difficulty into the activations: channel 0 would become 200x larger
    s, alpha = search_smoothing(w, x, np.abs(x).max(axis=0), act_granularity=lowbit.PerToken(), static=False,
                                alphas=(0.0,))
    assert s is None and alpha is None
    with pytest.raises(lowbit.GranularityError, match="'channel' is not taken here; use tensor or token"):
        search_smoothing(w, x, np.abs(x).max(axis=0), act_granularity="channel", static=False)
    with pytest.raises(lowbit.GranularityError, match="static activation scale is one per tensor"):
        search_smoothing(w, x, np.abs(x).max(axis=0), act_granularity="token")
    with pytest.deprecated_call(match="act_granularity= and static="):
        old = search_smoothing(w, x, np.abs(x).max(axis=0), activations="token", alphas=(0.0,))
    assert old == (None, None)
    with pytest.raises(lowbit.OptionError, match="at least 2 rows"):
        search_smoothing(w, x[:1], np.abs(x).max(axis=0))
