"""Activation-aware HQQ (hqq_quantize(x_mean_sq=...)) and its calibrated form in quantize_.

The layer's output error ``|| X (W - W_q)^T ||^2`` and the weighted block errors are computed
here with NumPy from ``lowbit.dequantize`` of the results.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import lowbit
from lowbit.algorithms import ActivationStatistics, hqq_quantize
from lowbit.algorithms.hqq import column_weights
from lowbit.errors import OptionError


@pytest.fixture(scope="module")
def layer():
    """A 64x256 weight and inputs whose features have very different scales (some 10x, some 0.1x)."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal((64, 256)).astype(np.float32)
    feature_scale = np.exp(rng.uniform(np.log(0.1), np.log(10.0), 256))
    x = (rng.standard_normal((1024, 256)) * feature_scale).astype(np.float32)
    return w, x


def _out_err(x, w, r):
    return float(np.sum((x.astype(np.float64) @ (w.astype(np.float64) - np.asarray(r, np.float64)).T) ** 2))


@pytest.mark.parametrize("qtype, gran, zero_point", [
    ("uint4", "group:64", "int"), ("uint3", "group:64", "float"), ("uint4", "channel", "int"),
])
def test_activation_aware_lowers_output_error(layer, qtype, gran, zero_point):
    w, x = layer
    stats = ActivationStatistics(256, max_rows=0).partial_fit(x)
    kw = {"granularity": gran, "zero_point": zero_point, "scale_format": "float16"}
    aware = hqq_quantize(w, qtype, x_mean_sq=stats.mean_sq_, **kw).dequantize()
    free = hqq_quantize(w, qtype, **kw).dequantize()
    rtn = lowbit.fake_quantize(w, qtype, granularity=gran, symmetric=False, zero_point=zero_point,
                               scale_format="float16")
    assert _out_err(x, w, aware) < _out_err(x, w, free)
    assert _out_err(x, w, aware) <= _out_err(x, w, rtn)


def test_no_block_worse_than_rtn_in_the_weighted_error(layer):
    w, x = layer
    d = np.mean(x.astype(np.float64) ** 2, axis=0)
    qt = hqq_quantize(w, "uint4", granularity="group:32", x_mean_sq=d)
    rtn = lowbit.fake_quantize(w, "uint4", granularity="group:32", symmetric=False)
    c = column_weights(d, 256).reshape(8, 32)

    def blocks(r):
        e = (w.astype(np.float64) - np.asarray(r, np.float64)).reshape(64, 8, 32)
        return np.sum(e * e * c, axis=2)

    assert np.all(blocks(qt.dequantize()) <= blocks(rtn))
    again = lowbit.quantize(w, "uint4", granularity="group:32", scale=qt.scale, zero_point=qt.zero_point)
    np.testing.assert_array_equal(again.codes, qt.codes)


def test_equal_statistics_are_the_data_free_result(layer):
    w, _ = layer
    free = hqq_quantize(w, "uint4", granularity="group:64")
    flat = hqq_quantize(w, "uint4", granularity="group:64", x_mean_sq=np.full(256, 3.5))
    zeros = hqq_quantize(w, "uint4", granularity="group:64", x_mean_sq=np.zeros(256))
    for other in (flat, zeros):
        np.testing.assert_array_equal(other.codes, free.codes)
        np.testing.assert_array_equal(other.scale, free.scale)


@pytest.mark.parametrize("bad", [np.ones(3), -np.ones(256), np.full(256, np.nan), np.ones((2, 128))])
def test_bad_statistics_raise_option_error(layer, bad):
    with pytest.raises(OptionError, match="x_mean_sq"):
        hqq_quantize(layer[0], "uint4", x_mean_sq=bad)


def test_mean_sq_statistic_matches_numpy():
    x = np.random.default_rng(0).standard_normal((3, 7, 5)).astype(np.float32)
    st = ActivationStatistics(5, max_rows=0).partial_fit(x[:1]).partial_fit(x[1:])
    np.testing.assert_allclose(st.mean_sq_, np.mean(x.reshape(-1, 5).astype(np.float64) ** 2, axis=0), rtol=1e-12)


def test_quantize_model_uses_batches_when_given():
    """HQQ stays data-free without batches and becomes activation-aware with them (a different result)."""
    torch = pytest.importorskip("torch")
    import lowbit.model as lm

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8)).eval()
    scale = torch.exp(torch.linspace(-2.5, 2.5, 64))
    batches = [torch.randn(32, 64) * scale for _ in range(2)]
    cfg = lm.WeightOnly("uint4", "group:32", algorithm="hqq", scale_format="float16", zero_point="float")
    free, aware = copy.deepcopy(base), copy.deepcopy(base)
    lm.quantize_(free, cfg, progress=False)
    lm.quantize_(aware, cfg, batches=batches, progress=False)
    w = base[0].weight.detach().numpy()
    x = torch.cat(batches).numpy()
    err = lambda m: _out_err(x, w, m[0].dequantized_weight().detach().numpy())  # noqa: E731
    assert err(aware) < err(free)
    expected = hqq_quantize(base[0].weight.detach(), "uint4", granularity="group:32", zero_point="float",
                            scale_format="float16", x_mean_sq=np.mean(x.astype(np.float64) ** 2, axis=0))
    np.testing.assert_array_equal(aware[0].weight_qtensor().codes, expected.codes)
    with pytest.raises(lowbit.LowbitError, match="uses no calibration data"):
        lm.quantize_(copy.deepcopy(base), lm.WeightOnly("uint4", "group:32"), batches=batches)
