"""Float zero points in HQQ (the authors' form) and GPTQ: the results are lowbit's own quantization.

Every result must be exactly ``lowbit.quantize(w, qtype, granularity=..., scale=qt.scale,
zero_point=qt.zero_point, scale_format=...)`` (codes and dequantized values, byte for byte),
its float zero points must be the stored (float16 or float32) values, and no block may be
worse than min-max round to nearest in the same format.  Errors are computed here with NumPy.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lowbit
from lowbit.algorithms import gptq_quantize, hqq_quantize
from lowbit.errors import OptionError


@st.composite
def weights(draw):
    """(weight, qtype, group size or None, scale format): small float32/float64 matrices, some with outliers."""
    qtype = draw(st.sampled_from(["uint2", "uint3", "uint4", "uint8"]))
    size = draw(st.sampled_from([8, 16, 32]))
    groups = draw(st.integers(1, 3))
    out = draw(st.integers(1, 5))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((out, size * groups)) * draw(st.sampled_from([1e-3, 1.0, 30.0]))
    w[rng.random(w.shape) < 0.05] *= 8  # a few outliers
    w += draw(st.sampled_from([0.0, 0.5]))  # some blocks all positive: the minimum is not 0
    group = draw(st.sampled_from([size, None]))
    return w.astype(dtype), qtype, group, draw(st.sampled_from(["float16", "float32"]))


def _gran(group):
    return lowbit.PerChannel(0) if group is None else lowbit.PerGroup(group)


def _same_as_core(qt, w, qtype, group, fmt):
    """``qt`` is lowbit.quantize of ``w`` with its own parameters, and holds stored float zero points."""
    again = lowbit.quantize(w, qtype, granularity=_gran(group), scale=qt.scale, zero_point=qt.zero_point,
                            scale_format=fmt)
    np.testing.assert_array_equal(again.codes, qt.codes)
    np.testing.assert_array_equal(again.dequantize(), qt.dequantize())
    assert qt.float_zero_point and qt.scale_format == fmt
    want = np.float16 if fmt == "float16" else w.dtype
    assert qt.zero_point.dtype == want and np.all(np.isfinite(qt.zero_point))
    if fmt == "float16":  # scales are float16 values too
        np.testing.assert_array_equal(qt.scale, np.asarray(qt.scale).astype(np.float16).astype(qt.scale.dtype))


def _block_sq(w, r, size):
    return np.sum((w.astype(np.float64) - np.asarray(r, np.float64)).reshape(-1, size) ** 2, axis=1)


@settings(max_examples=20, deadline=None)
@given(case=weights())
def test_hqq_float_zero_point_is_core_quantization_and_never_worse(case):
    w, qtype, group, fmt = case
    qt = hqq_quantize(w, qtype, granularity=_gran(group), zero_point="float", scale_format=fmt)
    _same_as_core(qt, w, qtype, group, fmt)
    rtn = lowbit.fake_quantize(w, qtype, granularity=_gran(group), zero_point="float", scale_format=fmt)
    size = w.shape[1] if group is None else group
    assert np.all(_block_sq(w, qt.dequantize(), size) <= _block_sq(w, rtn, size))


@settings(max_examples=10, deadline=None)
@given(case=weights(), act=st.integers(0, 2**32 - 1))
def test_gptq_float_zero_point_is_core_quantization(case, act):
    w, qtype, group, fmt = case
    x = np.random.default_rng(act).standard_normal((64, w.shape[1]))
    h = 2.0 / 64 * x.T @ x
    for search in ("none", "mse", "hqq"):
        qt = gptq_quantize(w, h, qtype, granularity=_gran(group), zero_point="float", scale_format=fmt,
                           scale_search=search)
        _same_as_core(qt, qt.dequantize(), qtype, group, fmt)  # GPTQ's weight, on lowbit's grid


def test_hqq_float_zero_point_is_the_authors_form():
    """The scale is min-max's as stored and the offset ``-z * s`` moves the grid by a real amount:
    most blocks keep HQQ's offset, which is not the block minimum, and the error drops."""
    w = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
    qt = hqq_quantize(w, "uint4", granularity="group:64", zero_point="float", scale_format="float16")
    rtn = lowbit.quantize(w, "uint4", granularity="group:64", zero_point="float", scale_format="float16")
    np.testing.assert_array_equal(qt.scale, rtn.scale)
    moved = qt.zero_point != rtn.zero_point
    assert moved.mean() > 0.5
    err = lambda r: float(np.sum((w - r) ** 2))  # noqa: E731
    assert err(qt.dequantize()) < 0.95 * err(rtn.dequantize())


def test_gptq_float_zero_point_beats_integer_zero_point_on_output_error():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((32, 128))
    x = rng.standard_normal((1024, 128)) @ (rng.standard_normal((128, 128)) / 11 + 0.3 * np.eye(128))
    h = 2.0 / 1024 * x.T @ x
    err = lambda qt: float(np.sum((x @ (w - qt.dequantize()).T) ** 2))  # noqa: E731
    f = gptq_quantize(w, h, "uint3", granularity="group:32", zero_point="float")
    i = gptq_quantize(w, h, "uint3", granularity="group:32")
    rtn = lowbit.fake_quantize(w, "uint3", granularity="group:32", zero_point="float")
    assert err(f) < float(np.sum((x @ (w - rtn).T) ** 2))
    assert err(f) < err(i)


BAD = [
    pytest.param({"qtype": "int4", "zero_point": "float"}, "unsigned", id="signed-format"),
    pytest.param({"qtype": "uint4", "zero_point": "float", "scale_format": "double8"}, "float16",
                 id="scale-format"),
    pytest.param({"qtype": "uint4", "zero_point": "floaty"}, "zero_point", id="unknown-kind"),
]


@pytest.mark.parametrize("kwargs, match", BAD)
def test_refusals_are_option_errors(kwargs, match):
    w = np.ones((2, 32), np.float32)
    with pytest.raises(OptionError, match=match):
        hqq_quantize(w, granularity="group:16", **kwargs)
    with pytest.raises(OptionError, match=match):
        gptq_quantize(w, np.eye(32), granularity="group:16", **kwargs)


def test_gptq_float_zero_point_refuses_symmetric():
    with pytest.raises(OptionError, match="symmetric"):
        gptq_quantize(np.ones((2, 32)), np.eye(32), "uint4", symmetric=True, zero_point="float")


def test_weight_only_takes_float_zero_points_for_hqq_gptq_and_autoround_only():
    from lowbit.model import WeightOnly

    for algorithm in ("hqq", "gptq", "autoround"):
        cfg = WeightOnly("uint4", "group:64", algorithm=algorithm, scale_format="float16", zero_point="float")
        assert cfg.scheme.endswith("float16 scales float zero point")
    with pytest.raises(OptionError, match="algorithm"):
        WeightOnly("uint4", "group:64", algorithm="awq", scale_format="float16", zero_point="float")
    with pytest.raises(OptionError, match="unsigned"):
        WeightOnly("int4", "group:64", algorithm="gptq", zero_point="float")


@pytest.mark.parametrize("algorithm", ["hqq", "gptq", "autoround"])
def test_quantize_model_with_float_zero_points(algorithm):
    torch = pytest.importorskip("torch")
    import lowbit.model as lm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8)).eval()
    batches = [torch.randn(16, 64) for _ in range(2)]
    ref = net(batches[0])
    cfg = lm.WeightOnly("uint4", "group:32", algorithm=algorithm, scale_format="float16", zero_point="float")
    summary = lm.quantize_(net, cfg, batches=batches, progress=False)
    assert all(r.scheme == cfg.scheme for r in summary.rows)
    qt = net[0].weight_qtensor()
    assert qt.float_zero_point and qt.zero_point.dtype == np.float16
    out = net(batches[0])
    assert float(torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0).detach()) > 0.98
