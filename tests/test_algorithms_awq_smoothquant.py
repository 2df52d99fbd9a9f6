"""AWQ, SmoothQuant and the activation statistics they read, as plain functions on arrays.

Known answers are plain float computations: the streamed statistics against
numpy over all rows at once, SmoothQuant's factors against the paper's formula,
and the searches against round-to-nearest / no smoothing, scored by the layer's
output error (SmoothQuant's on rows the search never saw).
"""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit.algorithms import ActivationStatistics, awq_quantize, search_smoothing, smoothquant_scales


def _outlier_rows(n: int = 512, width: int = 64, seed: int = 0) -> np.ndarray:
    """Rows whose channels 0..3 are 30x larger than the rest (the case AWQ and SmoothQuant address)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, width)) * np.where(np.arange(width) < 4, 30.0, 1.0)).astype(np.float32)


def _int8(v: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(v / scale), -127, 127) * scale


def _w8a8_error(w: np.ndarray, x: np.ndarray, s: np.ndarray, one_scale: bool = False) -> float:
    """Reference W8A8 output error: dynamic int8 activations, one scale per row (or for all rows)."""
    ws, xs = w * s, x / s
    wq = _int8(ws, np.abs(ws).max(axis=1, keepdims=True) / 127)
    xq = _int8(xs, np.abs(xs).max(axis=None if one_scale else 1, keepdims=True) / 127)
    return float(np.sum((x @ w.T - xq @ wq.T) ** 2))


def test_statistics_stream_equals_all_rows_at_once():
    x = _outlier_rows(300, 8)
    st = ActivationStatistics(8, max_rows=50)
    for chunk in np.array_split(x, 7):
        st.add(chunk.reshape(-1, 1, 8) if len(chunk) % 2 else chunk)
    np.testing.assert_allclose(st.absmax_, np.abs(x).max(axis=0))
    np.testing.assert_allclose(st.mean_abs_, np.abs(x).astype(np.float64).mean(axis=0), rtol=1e-6)
    sample = st.sample_
    assert sample.shape == (50, 8) and st.n_samples_ == 300
    assert all(any(np.array_equal(r, y) for y in x) for r in sample)  # rows of the input, not made up
    again = ActivationStatistics(8, max_rows=50)
    for chunk in np.array_split(x, 7):
        again.add(chunk)
    np.testing.assert_array_equal(again.sample_, sample)  # same batches, same seed -> same sample


def test_statistics_errors():
    with pytest.raises(lowbit.NotCalibratedError, match="seen no data"):
        _ = ActivationStatistics(4).absmax_
    with pytest.raises(lowbit.OptionError, match=r"\(\.\.\., 4\)"):
        ActivationStatistics(4).add(np.ones((2, 3)))
    with pytest.raises(lowbit.NonFiniteError):
        ActivationStatistics(2).add(np.array([[1.0, np.nan]]))
    with pytest.raises(lowbit.OptionError, match="max_rows"):
        ActivationStatistics(2, max_rows=-1)


def test_smoothquant_scales_follow_the_formula():
    x = _outlier_rows(64, 16)
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
def test_search_smoothing_picks_a_candidate_that_does_well_on_new_rows(activations):
    x, new = _outlier_rows(seed=0), _outlier_rows(seed=1)
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


@pytest.mark.parametrize("group_size", [None, 16])
def test_awq_beats_round_to_nearest_on_salient_channels(group_size):
    x = _outlier_rows()
    w = np.random.default_rng(5).standard_normal((48, 64)).astype(np.float32)
    gran = lowbit.PerChannel(0) if group_size is None else lowbit.PerGroup(group_size)
    rtn = lowbit.fake_quantize(w, "int4", granularity=gran)
    qt, s = awq_quantize(w, x, "int4", granularity=gran)
    awq = qt.dequantize() / s
    err_rtn, err_awq = (float(np.sum((x @ (w - v).T) ** 2)) for v in (rtn, awq))
    print(f"int4 {group_size}: output error RTN {err_rtn:.4g} AWQ {err_awq:.4g}")
    assert err_awq < 0.8 * err_rtn
    assert qt.qtype.name == "int4" and s.shape == (64,) and np.all(s > 0)


def test_awq_with_alpha_zero_and_no_clip_is_round_to_nearest():
    x = _outlier_rows(64, 32)
    w = np.random.default_rng(6).standard_normal((8, 32)).astype(np.float32)
    qt, s = awq_quantize(w, x, "int4", granularity="channel", grid=1, clip=False)
    np.testing.assert_array_equal(s, np.ones(32, np.float32))
    np.testing.assert_array_equal(qt.dequantize(), lowbit.fake_quantize(w, "int4", granularity=lowbit.PerChannel(0)))


def test_awq_errors():
    w = np.ones((4, 8), np.float32)
    with pytest.raises(lowbit.OptionError):
        awq_quantize(w, np.ones((4, 7)), "int4", granularity="channel")
    with pytest.raises(lowbit.GranularityError, match="group size 3 does not divide in_features=8"):
        awq_quantize(w, np.ones((4, 8)), "int4", granularity="group:3")
    with pytest.raises(lowbit.EmptyInputError):
        awq_quantize(w, np.ones((0, 8)), "int4", granularity="channel")
    with pytest.raises(lowbit.NonFiniteError):
        awq_quantize(w, np.full((2, 8), np.inf), "int4", granularity="channel")
