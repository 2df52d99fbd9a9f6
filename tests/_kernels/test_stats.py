"""lowbit._kernels.stats: the one-pass error sums behind lowbit.metrics, against NumPy float64.

The kernel splits the arrays into chunks of 65536 elements (partial sums per chunk, then
NumPy adds them) and accumulates in float64 whatever the input dtype; the sizes here span
several chunks and a ragged tail, and the data has a large offset so that a float32
accumulation would be off by orders of magnitude more than the tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

from lowbit import metrics
from lowbit._kernels import error_stats

N = 3 * 65536 + 17


def _pair(dtype, rng):
    x = (1e4 + rng.standard_normal(N)).astype(dtype)
    y = (x.astype(np.float64) + rng.standard_normal(N) * 1e-2).astype(dtype)
    return x, y


def _numpy(x, y) -> tuple[float, float, float, float, float]:
    a, b = x.astype(np.float64), y.astype(np.float64)
    d = a - b
    return float(d @ d), float(a @ a), float(b @ b), float(a @ b), float(np.abs(d).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_kernel_sums_equal_float64_numpy(dtype, rng):
    x, y = _pair(dtype, rng)
    got = error_stats(x, y)
    want = _numpy(x, y)
    assert all(isinstance(v, float) for v in got)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_inputs_of_two_dtypes_are_read_as_they_are(rng):
    x = (1e3 + rng.standard_normal(N)).astype(np.float32)
    y = x.astype(np.float64) + rng.standard_normal(N) * 1e-3  # float64: not rounded to x's dtype
    np.testing.assert_allclose(error_stats(x, y), _numpy(x, y), rtol=1e-12, atol=0)


@pytest.mark.parametrize("where", [0, 65535, 65536, 2 * 65536 + 1, N - 1])
def test_the_largest_error_is_found_in_any_chunk(where, rng):
    x, y = _pair(np.float32, rng)
    y[where] = x[where] + np.float32(7.5)
    _, _, _, _, mad = error_stats(x, y)
    assert mad == float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()) == pytest.approx(7.5, rel=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16], ids=["f32", "f64", "f16"])
def test_metrics_error_stats_is_numpy_in_float64(dtype, rng):
    """The public caller, on 2-d inputs (125 x 1573 = N elements); float16 is read exactly, as float32."""
    if dtype == np.float16:
        x, y = (rng.standard_normal(N) * 100).astype(dtype), (rng.standard_normal(N) * 100).astype(dtype)
    else:
        x, y = _pair(dtype, rng)
    st = metrics.error_stats(x.reshape(125, 1573), y.reshape(125, 1573))
    sse, sxx, syy, sxy, mad = _numpy(x, y)
    assert st.numel == N
    assert st.sse == pytest.approx(sse, rel=1e-12)
    assert st.signal == pytest.approx(sxx, rel=1e-12)
    assert st.max_abs_error == mad
    assert st.cosine == pytest.approx(sxy / np.sqrt(sxx * syy), rel=1e-12)
    assert st.mse == pytest.approx(sse / N, rel=1e-12)
