"""Tests of lowbit.algorithms.gptq: GPTQ against round-to-nearest and a naive float64 reference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lowbit
from lowbit.algorithms import HessianAccumulator, gptq_quantize
from lowbit.algorithms import gptq as gptq_module
from lowbit.errors import NonFiniteError, NotCalibratedError, OptionError

OUT, IN, N = 64, 256, 2048


@pytest.fixture(scope="module")
def layer():
    rng = np.random.default_rng(1234)
    w = rng.standard_normal((OUT, IN))
    mix = rng.standard_normal((IN, IN)) / np.sqrt(IN)
    x = rng.standard_normal((N, IN)) @ (mix + 0.3 * np.eye(IN))  # correlated inputs
    h = 2.0 / N * (x.T @ x)
    return w, x, h


def _out_err(x, w, wq):
    return float(np.sum((x @ (w - wq).T) ** 2))


def _gran(group_size):
    return lowbit.PerChannel(0) if group_size is None else lowbit.PerGroup(group_size)


CASES = [
    pytest.param("int4", None, False, id="int4-channel"),
    pytest.param("int3", 32, False, id="int3-group32"),
    pytest.param("int4", None, True, id="int4-channel-actorder"),
    pytest.param("int3", 32, True, id="int3-group32-actorder"),
    pytest.param("uint4", 64, False, id="uint4-affine-group64"),
]


@pytest.mark.parametrize("qtype, group_size, act_order", CASES)
def test_beats_round_to_nearest(layer, qtype, group_size, act_order):
    w, x, h = layer
    qt = gptq_quantize(w, h, qtype, granularity=_gran(group_size), act_order=act_order)
    rtn = lowbit.fake_quantize(w, qtype, granularity=_gran(group_size))
    ratio = _out_err(x, w, qt.dequantize()) / _out_err(x, w, rtn)
    print(f"GPTQ/RTN output error ratio {qtype} group={group_size} act_order={act_order}: {ratio:.3f}")
    assert ratio <= 0.8
    assert qt.granularity == _gran(group_size)
    q = lowbit.get_qtype(qtype)
    assert q.qmin <= qt.codes.min() and qt.codes.max() <= q.qmax


@pytest.mark.parametrize("qtype, group_size", [("int4", None), ("int3", 32), ("uint4", 64)])
def test_dequantized_is_on_the_grid(layer, qtype, group_size):
    w, _, h = layer
    qt = gptq_quantize(w, h, qtype, granularity=_gran(group_size))
    deq = qt.dequantize()
    # the QTensor re-quantizes its own output to the same codes (lowbit's rounding) ...
    again = lowbit.quantize(deq, qtype, granularity=_gran(group_size), scale=qt.scale, zero_point=qt.zero_point)
    assert np.array_equal(again.codes, qt.codes)
    # ... and dequantizes to (code - zero point) * scale, computed here independently
    gs = IN if group_size is None else group_size
    scale = np.repeat(np.asarray(qt.scale, np.float64).reshape(OUT, -1), gs, axis=1)
    zp = np.repeat(np.asarray(qt.zero_point, np.float64).reshape(OUT, -1), gs, axis=1)
    np.testing.assert_allclose(deq, (qt.codes - zp) * scale, rtol=1e-6, atol=0)


def _naive_gptq(w, h, qtype, damp=0.01):
    """Column-by-column OBS update with an explicit inverse Hessian (no Cholesky, no blocks)."""
    q_t = lowbit.get_qtype(qtype)
    w = w.copy()
    h = h + damp * np.mean(np.diag(h)) * np.eye(h.shape[0])
    hinv = np.linalg.inv(h)
    s, z = lowbit.choose_qparams(w.min(1), w.max(1), q_t, symmetric=q_t.signed, scale_dtype=np.float64)
    zf = z.astype(np.float64)
    q = np.zeros_like(w)
    for i in range(w.shape[1]):
        codes = np.clip(np.rint(w[:, i] * (1.0 / s) + zf), q_t.qmin, q_t.qmax)
        q[:, i] = (codes - zf) * s
        e = (w[:, i] - q[:, i]) / hinv[i, i]
        w[:, i + 1 :] -= np.outer(e, hinv[i, i + 1 :])
        hinv = hinv - np.outer(hinv[:, i], hinv[i, :]) / hinv[i, i]
    return q


def test_matches_naive_reference():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((16, 48))
    x = rng.standard_normal((400, 48)) @ rng.standard_normal((48, 48))
    h = 2 / 400 * x.T @ x
    ref = _naive_gptq(w, h, "int4")
    for block in (1, 5, 128):
        got = gptq_quantize(w, h, "int4", block_size=block, scale_search="none").dequantize()
        assert np.mean(got != ref) <= 0.01, f"block_size={block}"


def test_identity_hessian_is_round_to_nearest(layer):
    w, _, _ = layer
    for group_size in (None, 32):
        got = gptq_quantize(w, np.eye(IN), "int4", granularity=_gran(group_size), act_order=True,
                            scale_search="none").dequantize()
        np.testing.assert_array_equal(got, lowbit.fake_quantize(w, "int4", granularity=_gran(group_size)))


def test_identity_hessian_float32_is_round_to_nearest(layer):
    """float32 weights are rounded in float32, as lowbit's kernel rounds them."""
    w = layer[0].astype(np.float32) * np.float32(3.7)
    for group_size, act_order in [(None, False), (32, True)]:
        got = gptq_quantize(w, np.eye(IN), "int3", granularity=_gran(group_size), act_order=act_order,
                            scale_search="none").dequantize()
        np.testing.assert_array_equal(got, lowbit.fake_quantize(w, "int3", granularity=_gran(group_size)))


@pytest.mark.parametrize("n", [1, 7, 128, 129, 300, 515])
def test_lower_triangular_inverse(n):
    rng = np.random.default_rng(n)
    lower = np.tril(rng.standard_normal((n, n))) / np.sqrt(n) + np.diag(rng.uniform(1, 3, n))  # well conditioned
    inv = gptq_module._lower_inverse(lower)
    assert np.all(np.triu(inv, 1) == 0)
    np.testing.assert_allclose(inv @ lower, np.eye(n), rtol=0, atol=1e-11)
    np.testing.assert_allclose(inv, np.linalg.inv(lower), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("damp", [0.0, 0.01])
def test_inverse_cholesky_factor(layer, damp):
    """U is upper triangular with a positive diagonal and U^T U is the inverse of the dampened H."""
    h = layer[2]
    upper = gptq_module._inverse_cholesky(h, damp)
    assert np.all(np.tril(upper, -1) == 0) and np.all(np.diag(upper) > 0)
    hd = h + damp * np.mean(np.diag(h)) * np.eye(IN)
    ref = np.linalg.cholesky(np.linalg.inv(hd)).T  # independent: explicit inverse, then Cholesky
    np.testing.assert_allclose(upper, ref, rtol=1e-7, atol=1e-10 * np.abs(ref).max())
    np.testing.assert_allclose(upper.T @ upper @ hd, np.eye(IN), atol=1e-8)


def test_accumulator_chunks_and_dtypes(monkeypatch, layer):
    """Batches larger than the conversion chunk, float32 rows: same Hessian as float64 NumPy."""
    _, x, _ = layer
    monkeypatch.setattr(gptq_module, "_ROWS_ELEMENTS", 300 * IN)  # 300-row chunks
    x32 = x.astype(np.float32)
    acc = HessianAccumulator(IN).partial_fit(x32[:1000]).partial_fit(x32[1000:])
    ref = 2.0 / N * (x32.astype(np.float64).T @ x32.astype(np.float64))
    np.testing.assert_allclose(acc.hessian_, ref, rtol=1e-12, atol=1e-12)


def test_accumulator_rejects_non_finite_batch_without_changing_state(layer):
    _, x, h = layer
    acc = HessianAccumulator(IN).partial_fit(x)
    bad = x[:500].copy()
    bad[-1, -1] = np.inf
    with pytest.raises(NonFiniteError):
        acc.partial_fit(bad)
    assert acc.n_samples_ == N
    np.testing.assert_allclose(acc.hessian_, h, rtol=0, atol=1e-10)


def test_float32_weight_keeps_float32(layer):
    w, _, h = layer
    qt = gptq_quantize(w.astype(np.float32), h, "int4", granularity="group:64")
    assert qt.dequantize().dtype == np.float32 and qt.scale.dtype == np.float32


def test_streaming_hessian_equals_one_shot(layer):
    _, x, h = layer
    acc = HessianAccumulator(IN)
    for chunk in np.array_split(x, [100, 101, 900, 1500]):
        acc.partial_fit(chunk)
    assert acc.n_samples_ == N
    np.testing.assert_allclose(acc.hessian_, h, rtol=0, atol=1e-10)
    acc3 = HessianAccumulator(IN).partial_fit(x.reshape(8, N // 8, IN).astype(np.float64))
    np.testing.assert_allclose(acc3.hessian_, h, rtol=0, atol=1e-10)


def test_accumulator_errors():
    acc = HessianAccumulator(4)
    with pytest.raises(NotCalibratedError, match="partial_fit"):
        _ = acc.hessian_
    with pytest.raises(OptionError, match=r"\(\.\.\., 4\)"):
        acc.partial_fit(np.ones((3, 5)))
    with pytest.raises(lowbit.EmptyInputError):
        acc.partial_fit(np.ones((0, 4)))
    with pytest.raises(lowbit.NonFiniteError):
        acc.partial_fit(np.array([[1.0, np.nan, 0, 0]]))
    with pytest.raises(OptionError):
        HessianAccumulator(0)


def test_rank_deficient_hessian_warns_and_finishes():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((512, 10)) @ rng.standard_normal((10, IN))  # only 10 directions
    w = rng.standard_normal((OUT, IN))
    h = HessianAccumulator(IN).partial_fit(x).hessian_
    with pytest.warns(RuntimeWarning, match=r"Cholesky.*damp=0"):
        qt = gptq_quantize(w, h, "int4", damp=0.0)
    assert np.all(np.isfinite(qt.dequantize()))
    with warnings.catch_warnings():  # the default dampening copes without a warning
        warnings.simplefilter("error")
        qt = gptq_quantize(w, h, "int3", granularity="group:32", act_order=True)
    assert np.all(np.isfinite(qt.dequantize()))


def test_dead_inputs_get_zero_weight(layer):
    w, x, _ = layer
    x = x.copy()
    x[:, [3, 100]] = 0.0
    h = 2 / N * x.T @ x
    qt = gptq_quantize(w, h, "int4", granularity="group:32")
    deq = qt.dequantize()
    assert np.all(deq[:, [3, 100]] == 0) and np.all(np.isfinite(deq))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"granularity": "group:0"}, "PerGroup size"),
        ({"granularity": "tensor"}, "'tensor' is not taken here"),
        ({"granularity": "channel:1"}, r"PerChannel\(0\)"),
        ({"damp": -1.0}, "damp"),
        ({"damp": float("nan")}, "damp"),
        ({"block_size": 0}, "block_size"),
    ],
    ids=["group-zero", "tensor", "channel-axis1", "damp-negative", "damp-nan", "block-zero"],
)
def test_bad_arguments(layer, kwargs, match):
    w, _, h = layer
    kwargs = {"qtype": "int4", **kwargs}
    with pytest.raises(lowbit.LowbitError, match=match) as info:
        gptq_quantize(w, h, **kwargs)
    want = lowbit.GranularityError if "granularity" in kwargs else OptionError
    assert isinstance(info.value, want)


def test_group_size_is_deprecated_but_still_works(layer):
    w, _, h = layer
    with pytest.deprecated_call(match="granularity=PerGroup\\(32\\)"):
        old = gptq_quantize(w, h, "int4", group_size=32)
    assert np.array_equal(old.codes, gptq_quantize(w, h, "int4", granularity="group:32").codes)
    with pytest.raises(OptionError, match="give granularity= only"):
        gptq_quantize(w, h, "int4", granularity="group:32", group_size=32)


def test_shape_mismatch_names_both_shapes(layer):
    w, _, h = layer
    with pytest.raises(OptionError, match=r"\(128, 128\).*\(64, 256\)"):
        gptq_quantize(w, h[:128, :128], "int4")
    with pytest.raises(OptionError, match="2-d"):
        gptq_quantize(w[0], h, "int4")


def test_all_zero_calibration_data_falls_back_to_round_to_nearest():
    w = np.random.default_rng(3).standard_normal((8, 32)).astype(np.float32)
    h = HessianAccumulator(32).partial_fit(np.zeros((16, 32), np.float32)).hessian_
    with pytest.warns(RuntimeWarning, match="Hessian of this \\(8, 32\\) weight is all zero"):
        qt = gptq_quantize(w, h, "int4", granularity="group:16", scale_search="none")
    rtn = lowbit.quantize(w, "int4", granularity=lowbit.PerGroup(16))
    np.testing.assert_array_equal(qt.dequantize(), rtn.dequantize())
    assert np.any(qt.dequantize())


def test_activations_whose_squares_overflow_are_refused_and_not_added():
    acc = HessianAccumulator(4).partial_fit(np.ones((3, 4)))
    before = acc.hessian_
    with pytest.raises(NonFiniteError, match=r"reach \|x\| = 1e\+200: their squared sums overflow float64"):
        acc.partial_fit(np.full((8, 4), 1e200))
    assert acc.n_samples_ == 3
    np.testing.assert_array_equal(acc.hessian_, before)
    acc.partial_fit(np.full((1, 4), 1e150))  # large but representable: accepted
    assert np.isfinite(acc.hessian_).all() and acc.n_samples_ == 4
