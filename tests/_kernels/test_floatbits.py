"""Bit-level float helpers of the kernels (lowbit._kernels._floatbits) against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from lowbit._kernels._floatbits import POW_HUGE, POW_TINY, exponent, pow2, pow_pos


@njit(cache=False)
def _apply_pow(x, p, out):
    for i in range(x.size):
        out[i] = pow_pos(x[i], p)


@njit(cache=False)
def _exponents(x, out):
    for i in range(x.size):
        out[i] = exponent(x[i])


@njit(cache=False)
def _powers32(e, out):
    for i in range(e.size):
        out[i] = pow2(e[i], np.float32(1))


@pytest.mark.parametrize("p", [1e-3, 0.1, 0.5, 0.7, 0.999, 1.0])
def test_pow_pos_relative_error(p, rng):
    x = np.concatenate([
        np.exp2(rng.uniform(-999, 999, 100_000)), np.abs(rng.standard_normal(10_000)) * 1e-3,
        [1.0, 2.0, 0.5, np.sqrt(2.0), np.nextafter(np.sqrt(2.0), 0), np.nextafter(np.sqrt(2.0), 2), POW_TINY, POW_HUGE],
    ])
    out = np.empty_like(x)
    _apply_pow(x, p, out)
    assert np.max(np.abs(out / x**p - 1)) < 1e-10


def test_pow_pos_ends():
    x = np.array([0.0, POW_TINY / 2, 5e-324, 2.0**1023, np.finfo(np.float64).max])
    out = np.empty_like(x)
    _apply_pow(x, 0.7, out)
    assert out[:3].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(out[3:], POW_HUGE**0.7, rtol=1e-10)  # saturates


def test_exponent_and_pow2_match_frexp_and_ldexp(rng):
    x = np.concatenate([np.exp2(rng.uniform(-1020, 1020, 1000)), [1.0, 1.5, np.nextafter(2.0, 0), 2.0]])
    got = np.empty(x.size, np.int64)
    _exponents(x, got)
    np.testing.assert_array_equal(got, np.frexp(x)[1] - 1)
    x32 = np.array([0.0, 1e-45, 1.0, 3.0, 3.4e38], np.float32)  # zero and subnormals report -bias
    got32 = np.empty(x32.size, np.int64)
    _exponents(x32, got32)
    assert got32.tolist() == [-127, -127, 0, 1, 127]
    e = np.arange(-126, 128, dtype=np.int64)
    out = np.empty(e.size, np.float32)
    _powers32(e, out)
    np.testing.assert_array_equal(out, np.ldexp(np.float32(1), e))
