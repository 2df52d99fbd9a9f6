"""One-pass error statistics in float64 accumulation (for lowbit.metrics)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["error_stats"]

_CHUNK = 1 << 16


@njit(parallel=True, cache=True)
def _stats_kernel(x, y, partial):  # pragma: no cover - compiled
    n = x.size
    nchunks = partial.shape[0]
    for c in prange(nchunks):
        lo = c * n // nchunks
        hi = (c + 1) * n // nchunks
        sse = 0.0
        sxx = 0.0
        syy = 0.0
        sxy = 0.0
        mad = 0.0
        for i in range(lo, hi):
            a = np.float64(x[i])
            b = np.float64(y[i])
            d = a - b
            sse += d * d
            sxx += a * a
            syy += b * b
            sxy += a * b
            mad = max(mad, abs(d))
        partial[c, 0] = sse
        partial[c, 1] = sxx
        partial[c, 2] = syy
        partial[c, 3] = sxy
        partial[c, 4] = mad


def error_stats(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float, float]:
    """Sums over two flat float arrays of equal size, accumulated in float64.

    Returns:
        ``(sum (x-y)^2, sum x^2, sum y^2, sum x*y, max |x-y|)``.

    Example:
        >>> error_stats(np.array([1.0, 2.0]), np.array([1.0, 1.5]))
        (0.25, 5.0, 3.25, 4.0, 0.5)
    """
    nchunks = max(1, min(1024, x.size // _CHUNK))
    partial = np.empty((nchunks, 5), np.float64)
    _stats_kernel(x, y, partial)
    sse, sxx, syy, sxy = (float(v) for v in partial[:, :4].sum(axis=0))
    return sse, sxx, syy, sxy, float(partial[:, 4].max())
