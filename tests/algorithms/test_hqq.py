"""HQQ (lowbit.algorithms.hqq) against round-to-nearest min-max and float64 references.

Error figures are computed here from ``lowbit.dequantize`` of the result with
plain NumPy, independently of the module's own scoring.
"""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit.algorithms import hqq_quantize
from lowbit.algorithms.hqq import shrink_lp
from lowbit.errors import NonFiniteError, OptionError, QTypeError


@pytest.fixture(scope="module")
def heavy_tailed() -> np.ndarray:
    """Gaussian 256x1024 weights with 3% of entries scaled by 10 (outliers)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((256, 1024)).astype(np.float32)
    w[rng.random(w.shape) < 0.03] *= 10
    return w


def lp_error(w: np.ndarray, r: np.ndarray, p: float = 0.7) -> float:
    return float(np.mean(np.abs(w.astype(np.float64) - np.asarray(r, np.float64)) ** p))


def mse(w: np.ndarray, r: np.ndarray) -> float:
    return float(np.mean((w.astype(np.float64) - np.asarray(r, np.float64)) ** 2))


def granularity(group_size: int | None) -> lowbit.PerChannel | lowbit.PerGroup:
    return lowbit.PerChannel(axis=0) if group_size is None else lowbit.PerGroup(group_size)


def reference_dequant(qt: lowbit.QTensor, group_size: int | None) -> np.ndarray:
    """(code - zero_point) * scale in float64, parameters expanded by hand."""
    out_f, in_f = qt.shape
    size = in_f if group_size is None else group_size
    codes = qt.codes.astype(np.float64).reshape(out_f, in_f // size, size)
    scale = qt.scale.astype(np.float64).reshape(out_f, in_f // size, 1)
    zero = qt.zero_point.astype(np.float64).reshape(out_f, in_f // size, 1)
    return ((codes - zero) * scale).reshape(out_f, in_f)


@pytest.fixture(scope="module")
def gaussian() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((256, 1024)).astype(np.float32)


# (qtype, group size, max MSE ratio HQQ/RTN); measured 0.979, 0.979, 0.902 and 1.000 on this fixture.
# Per channel, HQQ's parameters almost always clip some of the row's extremes, so min-max is kept.
CASES = [
    pytest.param("uint4", 64, 0.99, id="uint4-g64"),
    pytest.param("uint3", 64, 0.99, id="uint3-g64"),
    pytest.param("uint2", 16, 0.92, id="uint2-g16"),
    pytest.param("uint4", None, 1.0 + 1e-9, id="uint4-channel"),
]


@pytest.mark.parametrize("qtype, group_size, mse_bound", CASES)
def test_beats_round_to_nearest(gaussian, qtype, group_size, mse_bound):
    w = gaussian
    rtn = lowbit.fake_quantize(w, qtype, granularity=granularity(group_size), symmetric=False)
    hqq = lowbit.dequantize(hqq_quantize(w, qtype, granularity=granularity(group_size)))
    assert mse(w, hqq) / mse(w, rtn) <= mse_bound
    assert lp_error(w, hqq) <= lp_error(w, rtn)


@pytest.mark.parametrize("qtype, group_size", [("uint4", 64), ("uint3", 64), ("uint4", None), ("int4", 128)])
def test_valid_qtensor_and_no_block_worse(heavy_tailed, qtype, group_size):
    w = heavy_tailed[:64]
    qt = hqq_quantize(w, qtype, granularity=granularity(group_size))
    fmt = lowbit.get_qtype(qtype)
    assert isinstance(qt, lowbit.QTensor)
    assert qt.shape == w.shape and qt.qtype == fmt and qt.granularity == granularity(group_size)
    codes = qt.codes
    assert codes.min() >= fmt.qmin and codes.max() <= fmt.qmax
    assert qt.zero_point.min() >= fmt.qmin and qt.zero_point.max() <= fmt.qmax
    assert np.all(np.isfinite(qt.scale) & (qt.scale > 0))
    deq = lowbit.dequantize(qt)
    np.testing.assert_allclose(deq, reference_dequant(qt, group_size), rtol=1e-6, atol=1e-6)
    # every block's squared error is at most that of min-max round-to-nearest, and every
    # weight is within half a min-max step (nothing clipped)
    rtn = lowbit.fake_quantize(w, qtype, granularity=granularity(group_size), symmetric=False)
    size = w.shape[1] if group_size is None else group_size
    blocks = w.astype(np.float64).reshape(-1, size)
    err = lambda r: np.sum((blocks - r.reshape(-1, size)) ** 2, axis=1)  # noqa: E731
    assert np.all(err(deq) <= err(rtn) * (1 + 1e-9) + 1e-12)
    s0, _ = lowbit.choose_qparams(blocks.min(1), blocks.max(1), fmt, symmetric=False)
    assert np.all(np.abs(blocks - deq.reshape(-1, size)).max(axis=1) <= 0.5 * s0 * (1 + 1e-6))


@pytest.mark.parametrize("qtype, group_size", [("uint4", 64), ("uint3", 32), ("uint2", 32)])
def test_kquant6_no_run_of_eight_blocks_worse(heavy_tailed, qtype, group_size):
    """kquant6 stores 8 consecutive scales under one super-scale, so mixed HQQ / min-max scales are re-rounded
    per run of 8 blocks: no such run ends up worse than round to nearest, and the whole is better."""
    w = heavy_tailed[:64] * np.exp(np.random.default_rng(1).standard_normal((64, 1))).astype(np.float32)
    qt = hqq_quantize(w, qtype, granularity=granularity(group_size), scale_format="kquant6")
    rtn = lowbit.quantize(w, qtype, granularity=granularity(group_size), scale_format="kquant6")
    assert qt.scale_format == "kquant6"
    again = lowbit.quantize(w, qtype, granularity=granularity(group_size), scale=qt.scale, zero_point=qt.zero_point,
                            scale_format="kquant6")
    np.testing.assert_array_equal(again.dequantize(), qt.dequantize())  # stored as scored
    runs = lambda q: np.add.reduceat(  # noqa: E731
        ((w.astype(np.float64) - q.dequantize()) ** 2).reshape(-1, group_size).sum(axis=1),
        np.arange(0, w.size // group_size, 8))
    assert np.all(runs(qt) <= runs(rtn) * (1 + 1e-9) + 1e-12)
    assert mse(w, qt.dequantize()) < mse(w, rtn.dequantize())


def test_double8_never_worse_than_round_to_nearest_in_all(heavy_tailed):
    w = heavy_tailed[:64]
    qt = hqq_quantize(w, "uint4", granularity="group:64", scale_format="double8")
    rtn = lowbit.quantize(w, "uint4", granularity="group:64", scale_format="double8")
    assert mse(w, qt.dequantize()) <= mse(w, rtn.dequantize())


def _numpy_hqq_params(w: np.ndarray, qtype: str, group_size: int, p=0.7, beta0=10.0, kappa=1.01, iterations=20):
    """The two half-quadratic phases in plain float64 NumPy (exact pow, one chunk of all blocks),
    steered by the l_p error, keeping the parameters of lowest squared error, then the per-block
    choice between HQQ and min-max parameters by squared error and the largest error."""
    fmt = lowbit.get_qtype(qtype)
    g = w.astype(np.float64).reshape(-1, group_size)
    s0, z0 = lowbit.choose_qparams(g.min(1), g.max(1), fmt, symmetric=False)
    s0, z0 = s0.astype(np.float64)[:, None], z0.astype(np.float64)[:, None]

    def codes(s, z):
        return np.clip(np.rint(g / s + z), fmt.qmin, fmt.qmax)

    def sq(s, z):
        return np.sum((g - s * (codes(s, z) - z)) ** 2, axis=1, keepdims=True)

    def phase(s, z, update_zero):
        best_s, best_z, best_err, prev, beta = s, z, np.full(s.shape, np.inf), np.inf, beta0
        for it in range(iterations + 1):
            q = codes(s, z)
            e = g - s * (q - z)
            err = np.sum(np.abs(e) ** p, axis=1, keepdims=True)
            sq_err = np.sum(e * e, axis=1, keepdims=True)
            better = sq_err < best_err
            best_s, best_z = np.where(better, s, best_s), np.where(better, z, best_z)
            best_err = np.minimum(sq_err, best_err)
            if it == iterations or err.sum() >= prev:
                break
            prev = err.sum()
            w_e = np.array([0.0 if v == 0 else np.sign(v) * max(abs(v) - abs(v) ** (p - 1) / beta, 0.0)
                            for v in e.ravel().tolist()]).reshape(e.shape)
            if update_zero:
                z = np.mean(q - (g - w_e) / s, axis=1, keepdims=True)
            else:
                d = q - z
                s = np.sum((g - w_e) * d, axis=1, keepdims=True) / np.sum(d * d, axis=1, keepdims=True)
            beta *= kappa
        return best_s, best_z

    _, z_real = phase(s0, z0, True)
    z_int = np.clip(np.rint(z_real), fmt.qmin, fmt.qmax)
    s_hqq = phase(s0, z_int, False)[0].astype(np.float32).astype(np.float64)
    top_err = np.abs(g - s_hqq * (codes(s_hqq, z_int) - z_int)).max(axis=1, keepdims=True)
    keep = (sq(s_hqq, z_int) < sq(s0, z0)) & (top_err <= 0.5 * s0)
    return np.where(keep, s_hqq, s0).ravel(), np.where(keep, z_int, z0).ravel()


@pytest.mark.parametrize("qtype, group_size", [("uint4", 64), ("uint3", 32), ("int4", 128)])
def test_parameters_match_numpy_reference(heavy_tailed, qtype, group_size):
    """The fused kernel runs the same iterations as a plain NumPy transcription (16 rows: one chunk)."""
    w = heavy_tailed[:16]
    qt = hqq_quantize(w, qtype, granularity=granularity(group_size))
    ref_s, ref_z = _numpy_hqq_params(w, qtype, group_size)
    got_s = np.asarray(qt.scale, np.float64).ravel()
    got_z = np.asarray(qt.zero_point, np.float64).ravel()
    same = (got_s == ref_s) & (got_z == ref_z)
    assert same.mean() >= 0.99, f"{same.mean():.3f} of blocks identical"
    np.testing.assert_allclose(got_s, ref_s, rtol=1e-6)


def test_torch_input_round_trips_kind():
    torch = pytest.importorskip("torch")
    w = torch.randn(16, 128, generator=torch.Generator().manual_seed(0))
    qt = hqq_quantize(w, "uint4", granularity="group:32")
    out = qt.dequantize()
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (16, 128)


def test_zero_and_constant_weights_are_exact():
    zeros = np.zeros((4, 64), np.float32)
    assert np.array_equal(lowbit.dequantize(hqq_quantize(zeros, "uint4", granularity="group:32")), zeros)
    const = np.full((3, 64), -0.25, np.float64)
    assert np.array_equal(lowbit.dequantize(hqq_quantize(const, "uint4", granularity="channel")), const)


def test_one_iteration_without_early_stop_runs():
    w = np.random.default_rng(3).standard_normal((8, 64))
    qt = hqq_quantize(w, "uint2", granularity="group:16", iterations=1, early_stop=False, lp_norm=1.0)
    assert qt.codes.max() <= 3


def test_shrink_matches_scalar_formula():
    x = np.array([-3.0, -0.5, -0.01, 0.0, 0.02, 0.4, 2.0])
    for p, beta in [(1.0, 10.0), (0.7, 10.0), (0.5, 3.0)]:
        expected = [0.0 if v == 0 else np.sign(v) * max(abs(v) - abs(v) ** (p - 1) / beta, 0.0) for v in x.tolist()]
        np.testing.assert_allclose(shrink_lp(x, beta, p), expected, rtol=0, atol=1e-15)
    assert shrink_lp(np.array([-2.0, 0.05, 3.0]), 10.0, 1.0).tolist() == pytest.approx([-1.9, 0.0, 2.9])


BAD = [
    pytest.param({"iterations": 0}, id="iterations-zero"),
    pytest.param({"iterations": 2.5}, id="iterations-float"),
    pytest.param({"lp_norm": 0.0}, id="lp-zero"),
    pytest.param({"lp_norm": 1.5}, id="lp-above-one"),
    pytest.param({"beta": 0.0}, id="beta-zero"),
    pytest.param({"kappa": 0.5}, id="kappa-below-one"),
]


@pytest.mark.parametrize("kwargs", BAD)
def test_bad_options_raise_option_error(kwargs):
    with pytest.raises(OptionError):
        hqq_quantize(np.ones((4, 64), np.float32), "uint4", **kwargs)


@pytest.mark.parametrize("granularity", ["group:48:0", "group:0", "group:x", True, "tensor", "token"])
def test_bad_granularity_raises_granularity_error(granularity):
    with pytest.raises(lowbit.GranularityError):
        hqq_quantize(np.ones((4, 64), np.float32), "uint4", granularity=granularity)


def test_bad_inputs():
    with pytest.raises(OptionError, match="2-D"):
        hqq_quantize(np.ones((2, 4, 64), np.float32), "uint4")
    with pytest.raises(QTypeError):
        hqq_quantize(np.ones((4, 64), np.float32), "uint99")
    w = np.ones((4, 64), np.float32)
    w[1, 3] = np.nan
    with pytest.raises(NonFiniteError):
        hqq_quantize(w, "uint4")
    ragged = hqq_quantize(np.ones((4, 100), np.float32), "uint4", granularity="group:64")  # 64 + 36: no error
    assert ragged.scale.shape == (4, 2)
