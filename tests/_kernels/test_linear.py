"""lowbit._kernels.linear's int8-activation kernels against independent NumPy references (int64 sums)."""

from __future__ import annotations

import numpy as np
import pytest

from lowbit._kernels import linear as kernels


def _numpy_quantize(x, block):
    m, k = x.shape
    xb = x.reshape(m, k // block, block)
    amax = np.abs(xb).max(axis=2, keepdims=True)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, np.float32(127.0) / amax, np.float32(0.0)).astype(np.float32)
    return np.rint(xb * inv).astype(np.int8).reshape(m, k), (amax / np.float32(127.0)).reshape(m, -1)


@pytest.mark.parametrize("block", [2, 6, 32, 128])
def test_quantize_blocks_matches_numpy(block):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 384)) * rng.uniform(0.01, 10, 384)).astype(np.float32)
    x[1, :block] = 0.0  # an all-zero block: scale 0, codes 0
    x[2, 3] = 0.5 * np.float32(2.0) ** -3  # values on a rounding tie stay deterministic
    q, sx, qs = kernels.quantize_blocks(x, block)
    want_q, want_s = _numpy_quantize(x, block)
    assert np.array_equal(q, want_q) and np.array_equal(sx, want_s)
    assert np.abs(q).max() <= 127 and sx[1, 0] == 0
    want_qs = want_q.reshape(3, -1, block).astype(np.int64).sum(axis=2) * want_s.astype(np.float64)
    np.testing.assert_allclose(qs, want_qs, rtol=1e-6, atol=1e-7)


def test_quantize_blocks_refuses_non_finite_inputs():
    x = np.ones((2, 8), np.float32)
    x[1, 3] = np.inf
    assert kernels.quantize_blocks(x, 4) is None
    x[1, 3] = np.nan
    assert kernels.quantize_blocks(x, 4) is None


def _expected(codes, q, sx, qs, scale, offset):
    """int64 group sums of codes * q, then the float64 combination."""
    n, groups = scale.shape
    dots = (codes[None, :, :].astype(np.int64) * q[:, None, :].astype(np.int64)).reshape(q.shape[0], n, groups, -1)
    per_group = dots.sum(axis=3) * sx[:, None, :].astype(np.float64)
    return ((per_group - offset[None] * qs[:, None, :]) * scale[None]).sum(axis=2)


@pytest.mark.parametrize("rows", [1, 4])
@pytest.mark.parametrize("k, cols, signed", [(256, 64, True), (512, 128, False), (70, 70, True)])
@pytest.mark.parametrize("threads", [1, 2])
def test_int4_kernel_equals_int64_sums(rows, k, cols, signed, threads):
    rng = np.random.default_rng(2)
    n = 37
    codes = rng.integers(-8, 8, (n, k)) if signed else rng.integers(0, 16, (n, k))
    packed = ((codes[:, 0::2] & 15) | ((codes[:, 1::2] & 15) << 4)).astype(np.uint8)
    q, sx, qs = kernels.quantize_blocks(rng.standard_normal((rows, k)).astype(np.float32), cols)
    scale = rng.uniform(0.5, 2, (n, k // cols)).astype(np.float32)
    zero = rng.integers(0, 3, (n, k // cols)).astype(np.float32)
    offset = zero + (8 if signed else 0)  # the kernel sums u = c + 8 for signed codes
    out = np.empty((rows, n), np.float32)
    kernels.linear_int4_q8(q, sx, qs, packed, scale, offset, 0x88 if signed else 0, out, threads)
    want = _expected(codes + (8 if signed else 0), q, sx, qs, scale, offset)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_int8_kernel_equals_int64_sums(rows, dtype):
    rng = np.random.default_rng(3)
    n, k, cols = 19, 768, 256
    info = np.iinfo(dtype)
    codes = rng.integers(info.min, info.max + 1, (n, k)).astype(dtype)
    codes[0] = info.max  # the extremes: the largest int32 block sums
    q, sx, qs = kernels.quantize_blocks(rng.standard_normal((rows, k)).astype(np.float32), cols)
    scale = rng.uniform(0.5, 2, (n, k // cols)).astype(np.float32)
    offset = np.full((n, k // cols), 3.0 if dtype == np.uint8 else 0.0, np.float32)
    out = np.empty((rows, n), np.float32)
    kernels.linear_int8_q8(q, sx, qs, codes, scale, offset, out, 2)
    want = _expected(codes, q, sx, qs, scale, offset)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
