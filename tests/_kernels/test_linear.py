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


# --------------------------------------------------------------------------- ragged groups


def _ragged_weight(rng, n, k, cols, kind):
    """Codes ``(N, K)``, their stored form, per-group scale/offset ``(N, ceil(K / cols))`` and the float64 weight
    they mean (group ``g`` covers columns ``g*cols .. min(g*cols + cols, K) - 1``)."""
    groups = -(-k // cols)
    scale = rng.uniform(0.5, 2, (n, groups)).astype(np.float32)
    group_of = np.arange(k) // cols
    if kind in ("int4", "lut4"):
        codes = rng.integers(0, 16, (n, k))
        stored = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    else:
        codes = rng.integers(0, 256, (n, k))
        stored = codes.astype(np.uint8)
    if kind.startswith("lut"):
        lut = rng.standard_normal(16 if kind == "lut4" else 256).astype(np.float32)
        offset = np.zeros((n, groups), np.float32)
        values = lut[codes].astype(np.float64)
    else:
        lut = None
        offset = rng.integers(0, 9, (n, groups)).astype(np.float32)
        values = codes - offset[:, group_of].astype(np.float64)
    return stored, scale, offset, lut, values * scale[:, group_of]


@pytest.mark.parametrize("kind", ["int4", "lut4", "int8", "lut8"])
@pytest.mark.parametrize("k, cols", [(70, 32), (576, 128), (10, 4), (6, 64)], ids=["70g32", "576g128", "10g4", "6g64"])
@pytest.mark.parametrize("rows", [1, 3])
def test_float_kernels_take_ragged_groups(kind, k, cols, rows):
    """The last group of each row is shorter; the kernels walk ``end = min(start + cols, K)``."""
    rng = np.random.default_rng(k + cols)
    n = 9
    cols = min(cols, k)
    w, scale, offset, lut, want_w = _ragged_weight(rng, n, k, cols, kind)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    out = np.empty((rows, n), np.float32)
    for threads in (1, 2):
        if kind in ("int4", "lut4"):
            xe, xo, xs = kernels.split_even_odd(x, cols // 2)
            assert xs.shape == (rows, -(-k // cols))
            if kind == "int4":
                kernels.linear_int4(xe, xo, xs, w, scale, offset, 0, out, threads, cols // 2)
            else:
                kernels.linear_lut4(xe, xo, w, scale, lut, out, threads, cols // 2)
        elif kind == "int8":
            kernels.linear_int8(x, kernels.group_sums(x, cols), w, scale, offset, out, threads, cols)
        else:
            kernels.linear_lut8(x, w, scale, lut, out, threads, cols)
        want = x.astype(np.float64) @ want_w.T
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("block", [4, 32, 100])
def test_quantize_blocks_with_a_shorter_last_block(block):
    rng = np.random.default_rng(block)
    k = 3 * block - 2 if block > 4 else 10
    x = rng.standard_normal((2, k)).astype(np.float32)
    q, sx, _ = kernels.quantize_blocks(x, block)
    assert sx.shape == (2, -(-k // block))
    pad = -k % block  # the last block alone equals it quantized as a block of its own
    want_q, want_s = _numpy_quantize(np.concatenate([x, np.zeros((2, pad), np.float32)], axis=1), block)
    np.testing.assert_array_equal(q, want_q[:, :k])
    np.testing.assert_array_equal(sx, want_s)


@pytest.mark.parametrize("kind", ["int4", "int8"])
@pytest.mark.parametrize("rows", [1, 3])
def test_int8_activation_kernels_take_ragged_groups(kind, rows):
    rng = np.random.default_rng(5)
    n, k, cols = 7, 80, 32  # groups of 32, 32, 16
    codes = rng.integers(-8, 8, (n, k)) if kind == "int4" else rng.integers(-128, 128, (n, k))
    q, sx, qs = kernels.quantize_blocks(rng.standard_normal((rows, k)).astype(np.float32), cols)
    scale = rng.uniform(0.5, 2, (n, 3)).astype(np.float32)
    offset = rng.integers(0, 3, (n, 3)).astype(np.float32)
    out = np.empty((rows, n), np.float32)
    pad = -k % cols
    if kind == "int4":
        packed = ((codes[:, 0::2] & 15) | ((codes[:, 1::2] & 15) << 4)).astype(np.uint8)
        kernels.linear_int4_q8(q, sx, qs, packed, scale, offset + 8, 0x88, out, 2, cols)
        u, off = codes + 8, offset + 8
    else:
        kernels.linear_int8_q8(q, sx, qs, codes.astype(np.int8), scale, offset, out, 2, cols)
        u, off = codes, offset
    # the reference pads both operands with zeros to whole blocks: zero products change no sum
    want = _expected(np.pad(u, ((0, 0), (0, pad))), np.pad(q, ((0, 0), (0, pad))), sx, qs, scale, off)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
