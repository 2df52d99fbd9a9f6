"""lowbit._kernels.gptq: GPTQ's column loop (gptq_columns) against a NumPy transcription, bit for bit.

The NumPy reference rounds each column as lowbit's per-channel kernel does, in the scale's
dtype (``clip(rint(w * (1/s) + zp))``, then ``(code - zp) * s``), records ``(w - q) / U[k, k]``
and applies ``w[:, k+1:] -= outer(e, U[k, k+1:])`` -- one rounding for the product, one for
the difference, which is what the kernel's row loop computes.  lower_inverse (the other
kernel here) is tested through GPTQ's triangular inverse in algorithms/test_gptq.py
(test_lower_triangular_inverse), and the whole algorithm against a naive float64 GPTQ there.
"""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit._kernels.gptq import clip_errors, gptq_columns

OUT, BLOCK, GROUP = 16, 12, 4


def _problem(sdt, name, rng):
    qt = lowbit.get_qtype(name)
    w = rng.standard_normal((OUT, BLOCK))
    a = rng.standard_normal((BLOCK, BLOCK)) / np.sqrt(BLOCK)
    upper = np.linalg.cholesky(np.linalg.inv(a @ a.T + np.eye(BLOCK))).T.copy()  # positive diagonal
    groups = np.repeat(np.arange(BLOCK // GROUP), GROUP).astype(np.int64)
    g = w.reshape(OUT, -1, GROUP)
    scale, zero = lowbit.choose_qparams(g.min(axis=2), g.max(axis=2), qt, symmetric=qt.signed, scale_dtype=sdt)
    scale = scale.astype(sdt)
    inv = (sdt(1) / scale).astype(sdt)
    zp = zero.astype(sdt)
    qlim = np.array([qt.qmin, qt.qmax], sdt)
    return w, upper, scale, inv, zp, groups, qlim


def _offsets(sdt, rng):
    """uint4 groups with float zero points: scale (max - min) / 15, offset = min, and the kernel's
    rounding term ``qmin - offset / scale`` as lowbit.quantize computes it."""
    w = rng.standard_normal((OUT, BLOCK))
    g = w.reshape(OUT, -1, GROUP)
    off = g.min(axis=2).astype(sdt)
    scale = ((g.max(axis=2) - g.min(axis=2)) / 15).astype(sdt)
    inv = (sdt(1) / scale).astype(sdt)
    zp = (sdt(0) - off * inv).astype(sdt)
    return w, scale, inv, zp, off


def _numpy_columns(w, upper, k0, k1, scale, inv, zp, groups, qlim, off=None):
    w = w.copy()
    err, q = np.zeros_like(w), np.zeros_like(w)
    sdt = scale.dtype.type
    for k in range(k0, k1):
        g = groups[k]
        code = np.clip(np.rint(w[:, k].astype(sdt) * inv[:, g] + zp[:, g]), qlim[0], qlim[1])
        if off is None:
            qv = ((code - zp[:, g]) * scale[:, g]).astype(np.float64)
        else:
            qv = (code * scale[:, g] + off[:, g]).astype(np.float64)
        e = (w[:, k] - qv) / upper[k, k]
        q[:, k], err[:, k] = qv, e
        w[:, k + 1 :] -= np.outer(e, upper[k, k + 1 :])
    return w, err, q


@pytest.mark.parametrize("name", ["int4", "uint3", "int8"])
@pytest.mark.parametrize("sdt", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("k0", "k1"), [(0, BLOCK), (0, 5), (5, BLOCK), (3, 8), (11, 12)])
def test_columns_equal_the_numpy_transcription(k0, k1, sdt, name, rng):
    w, upper, scale, inv, zp, groups, qlim = _problem(sdt, name, rng)
    w1, err, q = w.copy(), np.zeros_like(w), np.zeros_like(w)
    gptq_columns(w1, err, q, upper, k0, k1, scale, inv, zp, None, groups, qlim)
    ref_w, ref_err, ref_q = _numpy_columns(w, upper, k0, k1, scale, inv, zp, groups, qlim)
    np.testing.assert_array_equal(q, ref_q)
    np.testing.assert_array_equal(err, ref_err)
    np.testing.assert_array_equal(w1, ref_w)
    np.testing.assert_array_equal(w1[:, :k0], w[:, :k0])  # columns before k0 are not touched


def test_two_runs_equal_one(rng):
    w, upper, scale, inv, zp, groups, qlim = _problem(np.float32, "int4", rng)
    once = [w.copy(), np.zeros_like(w), np.zeros_like(w)]
    gptq_columns(once[0], once[1], once[2], upper, 0, BLOCK, scale, inv, zp, None, groups, qlim)
    twice = [w.copy(), np.zeros_like(w), np.zeros_like(w)]
    for k0, k1 in ((0, 7), (7, BLOCK)):
        gptq_columns(twice[0], twice[1], twice[2], upper, k0, k1, scale, inv, zp, None, groups, qlim)
    for a, b in zip(once, twice, strict=True):
        np.testing.assert_array_equal(a, b)


def test_identity_factor_is_round_to_nearest(rng):
    """With U = I no error moves: every column is lowbit's own per-group round to nearest of w."""
    w, _, scale, inv, zp, groups, qlim = _problem(np.float32, "int4", rng)
    q = np.zeros_like(w)
    gptq_columns(w.copy(), np.zeros_like(w), q, np.eye(BLOCK), 0, BLOCK, scale, inv, zp, None, groups, qlim)
    rtn = lowbit.fake_quantize(w.astype(np.float32), "int4", granularity=lowbit.PerGroup(GROUP), scale=scale)
    np.testing.assert_array_equal(q, rtn.astype(np.float64))



@pytest.mark.parametrize("sdt", [np.float32, np.float64], ids=["f32", "f64"])
def test_float_zero_points_equal_the_numpy_transcription(sdt, rng):
    _, upper, *_ = _problem(sdt, "uint4", rng)
    w, scale, inv, zp, off = _offsets(sdt, rng)
    groups = np.repeat(np.arange(BLOCK // GROUP), GROUP).astype(np.int64)
    qlim = np.array([0, 15], sdt)
    w1, err, q = w.copy(), np.zeros_like(w), np.zeros_like(w)
    gptq_columns(w1, err, q, upper, 0, BLOCK, scale, inv, zp, off, groups, qlim)
    ref_w, ref_err, ref_q = _numpy_columns(w, upper, 0, BLOCK, scale, inv, zp, groups, qlim, off)
    np.testing.assert_array_equal(q, ref_q)
    np.testing.assert_array_equal(err, ref_err)
    np.testing.assert_array_equal(w1, ref_w)


def test_identity_factor_with_float_zero_points_is_lowbit_rounding(rng):
    """With U = I, float zero points round each column as lowbit.quantize(scale=, zero_point=offsets) does."""
    w, scale, inv, zp, off = _offsets(np.float32, rng)
    groups = np.repeat(np.arange(BLOCK // GROUP), GROUP).astype(np.int64)
    q = np.zeros_like(w)
    gptq_columns(w.copy(), np.zeros_like(w), q, np.eye(BLOCK), 0, BLOCK, scale, inv, zp, off, groups,
                 np.array([0, 15], np.float32))
    ref = lowbit.quantize(w.astype(np.float32), "uint4", granularity=lowbit.PerGroup(GROUP), scale=scale,
                          zero_point=off)
    np.testing.assert_array_equal(q.astype(np.float32), ref.dequantize())


@pytest.mark.parametrize("offsets", [False, True], ids=["int-zero", "float-zero"])
def test_clip_errors_equal_numpy(offsets, rng):
    cols = rng.standard_normal((5, 32))
    wts = rng.random(32)
    scale = rng.uniform(0.1, 0.4, (3, 5))
    zp = rng.uniform(2, 12, (3, 5)) if offsets else rng.integers(0, 16, (3, 5)).astype(np.float64)
    off = -zp * scale if offsets else None
    got = np.empty((3, 5))
    clip_errors(cols, wts, scale, zp, off, 0.0, 15.0, got)
    code = np.clip(np.rint(cols[None] * (1.0 / scale[..., None]) + zp[..., None]), 0, 15)
    rec = code * scale[..., None] + off[..., None] if offsets else (code - zp[..., None]) * scale[..., None]
    np.testing.assert_allclose(got, np.sum(wts * (cols[None] - rec) ** 2, axis=2), rtol=1e-12)
