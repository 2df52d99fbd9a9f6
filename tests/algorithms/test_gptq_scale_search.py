"""GPTQ's scale search (scale_search="mse" / "hqq") against min-max, with errors computed here in NumPy."""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit.algorithms import gptq_quantize
from lowbit.algorithms.gptq import CLIP_FACTORS
from lowbit.errors import OptionError


@pytest.fixture(scope="module")
def layer():
    rng = np.random.default_rng(11)
    w = rng.standard_normal((48, 256))
    w[rng.random(w.shape) < 0.02] *= 6  # outliers: where shrinking the range pays
    x = rng.standard_normal((2048, 256)) @ (rng.standard_normal((256, 256)) / 16 + 0.3 * np.eye(256))
    return w, x, 2.0 / 2048 * x.T @ x


def _out_err(x, w, qt):
    return float(np.sum((x @ (w - qt.dequantize()).T) ** 2))


@pytest.mark.parametrize("qtype, gran, zero_point", [
    ("uint4", "group:64", "int"), ("uint3", "group:64", "float"), ("uint2", "group:16", "int"),
    ("int4", "channel", "int"),
])
def test_mse_search_lowers_the_output_error(layer, qtype, gran, zero_point):
    w, x, h = layer
    kw = {"granularity": gran, "zero_point": zero_point, "scale_format": "float16"}
    plain = gptq_quantize(w, h, qtype, scale_search="none", **kw)
    searched = gptq_quantize(w, h, qtype, scale_search="mse", **kw)
    assert _out_err(x, w, searched) < 0.97 * _out_err(x, w, plain)


@pytest.mark.parametrize("search", ["mse", "hqq"])
def test_identity_hessian_blocks_never_worse_than_min_max(layer, search):
    """With H = I no error moves, so each group is rounded to nearest with the searched parameters:
    none may have a larger squared error than min-max (factor 1 and min-max are candidates)."""
    w = layer[0][:16]
    qt = gptq_quantize(w, np.eye(256), "uint3", granularity="group:32", scale_search=search)
    rtn = lowbit.fake_quantize(w, "uint3", granularity="group:32")
    err = lambda r: np.sum((w - np.asarray(r, np.float64)).reshape(-1, 32) ** 2, axis=1)  # noqa: E731
    assert np.all(err(qt.dequantize()) <= err(rtn) * (1 + 1e-9))
    assert np.sum(err(qt.dequantize())) < np.sum(err(rtn))


def test_mse_search_picks_the_best_shrink_of_each_group():
    """With H = I, the scale of each row equals the best of the shrunk min-max scales found by brute force."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 32))
    qt = gptq_quantize(w, np.eye(32), "uint4", scale_search="mse")  # per channel
    best = []
    for row in w:
        errs = []
        for f in CLIP_FACTORS:
            r = lowbit.fake_quantize(row[None], "uint4", granularity="channel", scale=lowbit.choose_qparams(
                np.array([row.min() * f]), np.array([row.max() * f]), "uint4", symmetric=False,
                scale_dtype=np.float64)[0], zero_point=lowbit.choose_qparams(
                np.array([row.min() * f]), np.array([row.max() * f]), "uint4", symmetric=False)[1])
            errs.append(np.sum((row - r) ** 2))
        best.append(min(errs))
    got = np.sum((w - qt.dequantize()) ** 2, axis=1)
    np.testing.assert_allclose(got, best, rtol=1e-5)


def test_search_result_is_lowbit_quantization(layer):
    w, _, h = layer
    for search in ("mse", "hqq"):
        qt = gptq_quantize(w, h, "uint4", granularity="group:64", scale_search=search, scale_format="float16")
        again = lowbit.quantize(qt.dequantize(), "uint4", granularity="group:64", scale=qt.scale,
                                zero_point=qt.zero_point, scale_format="float16")
        np.testing.assert_array_equal(again.codes, qt.codes)


def test_bad_scale_search_is_refused():
    with pytest.raises(OptionError, match="scale_search"):
        gptq_quantize(np.ones((2, 8)), np.eye(8), "uint4", scale_search="best")
    with pytest.raises(OptionError, match="affine"):
        gptq_quantize(np.ones((2, 8)), np.eye(8), "int4", scale_search="hqq")
    with pytest.raises(OptionError, match="scale_search"):
        gptq_quantize(np.ones((2, 8)), np.eye(8), "uint4", scale_search=None)


def test_weight_only_checks_scale_search_when_made():
    from lowbit.model import WeightOnly

    assert WeightOnly("uint4", "group:64", algorithm="gptq", algorithm_options={"scale_search": "hqq"})
    with pytest.raises(OptionError, match="scale_search"):
        WeightOnly("uint4", "group:64", algorithm="gptq", algorithm_options={"scale_search": "best"})


@pytest.mark.parametrize("fmt, gran", [("kquant6", "group:32"), ("kquant6", "group:48"), ("kquant6", "channel"),
                                       ("e8m0", "group:32")])
def test_scale_formats_that_share_parameters_store_what_gptq_rounded_with(layer, fmt, gran):
    """kquant6 scales share a super-scale: GPTQ chooses them all (a float32 pass), stores them together,
    and rounds with the stored scales, so the QTensor holds GPTQ's weight on its own grid."""
    w, x, h = layer
    qt = gptq_quantize(w, h, "uint2", granularity=gran, scale_format=fmt)
    assert qt.scale_format == fmt
    again = lowbit.quantize(qt.dequantize(), "uint2", granularity=gran, scale=qt.scale, zero_point=qt.zero_point,
                            scale_format=fmt)
    assert np.array_equal(again.codes, qt.codes)
    rtn = lowbit.quantize(w, "uint2", granularity=gran, scale_format=fmt)
    assert _out_err(x, w, qt) < 0.8 * _out_err(x, w, rtn)


def test_shared_scale_formats_cost_little_against_float16(layer):
    """The stored kquant6 scales (6 bits under a float16 super-scale) lose little of float16's GPTQ."""
    w, x, h = layer
    f16 = gptq_quantize(w, h, "uint2", granularity="group:32", scale_format="float16")
    k6 = gptq_quantize(w, h, "uint2", granularity="group:32", scale_format="kquant6")
    assert _out_err(x, w, k6) < 1.1 * _out_err(x, w, f16)
    assert k6.nbytes < f16.nbytes


def test_double8_is_refused_as_its_scales_move_when_stored_again(layer):
    w, _, h = layer
    with pytest.raises(OptionError, match="double8"):
        gptq_quantize(w, h, "uint4", granularity="group:32", scale_format="double8")
