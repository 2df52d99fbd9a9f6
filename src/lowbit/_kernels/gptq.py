"""GPTQ's column loop inside one block of columns, rows in parallel.

:func:`gptq_columns` quantizes columns ``k0 .. k1-1`` of a block ``w1`` (out x
block) one after another.  Each column is rounded exactly as lowbit's
per-channel/per-group kernel rounds (in the scale dtype:
``clip(rint(w * (1/s) + zp), qmin, qmax)``, then ``(code - zp) * s``), its
error ``e = (w - q) / U[k, k]`` is recorded and ``e * U[k, k+1:]`` is
subtracted from the later columns of the block.  Rows never interact, so each
row runs the whole column loop on its own, in parallel, in contiguous memory;
the arithmetic is the same as NumPy's ``w1[:, k+1:] -= np.outer(e, U[k, k+1:])``
(one rounding for the product, one for the difference).

The blocks, the choice of a group's scale when its first column is reached
and the lazy update of the later blocks stay in :mod:`lowbit.algorithms.gptq`;
:func:`lower_inverse` inverts the small diagonal blocks of its triangular
inverse (row-oriented forward substitution, no LAPACK call per block).

Example:
    >>> import numpy as np
    >>> from lowbit._kernels.gptq import gptq_columns
    >>> w1 = np.array([[0.3, 0.6]]); err = np.zeros((1, 2)); q = np.zeros((1, 2))
    >>> u = np.array([[1.0, 0.5], [0.0, 1.0]])
    >>> one = np.ones((1, 1)); zero = np.zeros((1, 1)); groups = np.zeros(2, np.int64)
    >>> gptq_columns(w1, err, q, u, 0, 2, one, one, zero, None, groups, np.array([-7.0, 7.0]))
    >>> q.tolist(), float(w1[0, 1])  # column 0 rounds to 0, its error 0.3 moves 0.15 off column 1
    ([[0.0, 0.0]], 0.44999999999999996)
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["gptq_columns", "clip_errors", "lower_inverse"]


@njit(cache=True)
def _row_columns(row, err, q, upper, k0, k1, scale, inv, zp, off, group_of, qmin, qmax, cast):  # pragma: no cover
    """The column loop for one row (all arguments are that row's slices)."""
    width = row.size
    for k in range(k0, k1):
        g = group_of[k]
        s = scale[g]
        z = zp[g]
        w = row[k]
        cast[0] = w  # rounds the float64 weight to the scale dtype
        code = min(max(np.rint(cast[0] * inv[g] + z), qmin), qmax)
        qv = np.float64((code - z) * s) if off is None else np.float64(code * s + off[g])  # float zero point
        e = (w - qv) / upper[k, k]
        q[k] = qv
        err[k] = e
        rest = row[k + 1 :]
        uk = upper[k, k + 1 :]
        for c in range(width - k - 1):
            rest[c] -= e * uk[c]


@njit(parallel=True, cache=True)
def gptq_columns(w1, err, q, upper, k0, k1, scale, inv, zp, off, group_of, qlim):  # pragma: no cover - compiled
    """Quantize columns ``k0 <= k < k1`` of the block ``w1`` in place.

    Args:
        w1: (out, block) float64 block of the weight, updated in place.
        err: (out, block) float64, receives ``(w - q) / U[k, k]`` per column.
        q: (out, block) float64, receives the quantized values.
        upper: (block, block) float64 block of the Cholesky factor ``U`` of ``H^-1``.
        k0, k1: the columns to process.
        scale, inv, zp: (out, groups) scale, ``1/scale`` and zero point, all in the
            scale dtype (float32 or float64); column ``k`` uses group ``group_of[k]``.
        off: None, or (out, groups) float offsets in the scale dtype (float zero points:
            ``zp`` is then ``qmin - offset / scale`` for rounding and a code means
            ``code * scale + offset``, as lowbit's kernels compute them).
        group_of: (block,) int64.
        qlim: ``[qmin, qmax]`` in the scale dtype.
    """
    rows = w1.shape[0]
    for r in prange(rows):
        cast = np.empty(1, qlim.dtype)
        o = None if off is None else off[r]
        _row_columns(w1[r], err[r], q[r], upper, k0, k1, scale[r], inv[r], zp[r], o, group_of, qlim[0], qlim[1],
                     cast)


@njit(parallel=True, cache=True)
def clip_errors(cols, wts, scale, zp, off, qmin, qmax, out_err):  # pragma: no cover - compiled
    """Weighted squared rounding error of every row of ``cols`` under every candidate (scale, zero point).

    Candidate ``f`` of row ``r`` rounds ``x`` to ``c = clip(rint(x / scale + zp))`` and
    reconstructs ``(c - zp) * scale`` (``off`` None) or ``c * scale + off`` (float zero points).

    Args:
        cols: (rows, k) float64 weights. wts: (k,) float64 weights of the columns.
        scale, zp: (candidates, rows) float64. off: None or (candidates, rows) float64.
        qmin, qmax: the code range. out_err: (candidates, rows) float64 result.

    Example:
        >>> e = np.empty((2, 1))
        >>> clip_errors(np.array([[0.0, 1.0, 3.0]]), np.ones(3), np.array([[0.2], [0.1]]), np.zeros((2, 1)),
        ...             None, 0.0, 15.0, e)
        >>> e.round(2).tolist()  # 3.0 clips at 15 * 0.1 = 1.5 under the second candidate
        [[0.0], [2.25]]
    """
    nf, rows = scale.shape
    k = cols.shape[1]
    for r in prange(rows):
        for f in range(nf):
            s = scale[f, r]
            inv = 1.0 / s
            z = zp[f, r]
            acc = 0.0
            for j in range(k):
                x = cols[r, j]
                c = min(max(np.rint(x * inv + z), qmin), qmax)
                e = x - ((c - z) * s if off is None else c * s + off[f, r])
                acc += wts[j] * e * e
            out_err[f, r] = acc


@njit(cache=True)
def lower_inverse(lower, out):  # pragma: no cover - compiled
    """``out = lower^-1`` for a lower-triangular float64 matrix (upper part of ``out`` set to 0).

    Row ``i`` of the inverse is ``-(sum_{k<i} L[i, k] X[k, :]) / L[i, i]`` plus ``1 / L[i, i]``
    on the diagonal; each step is a contiguous AXPY over a previous row.

    Example:
        >>> x = np.empty((2, 2))
        >>> lower_inverse(np.array([[2.0, 0.0], [1.0, 4.0]]), x)
        >>> x.tolist()
        [[0.5, 0.0], [-0.125, 0.25]]
    """
    n = lower.shape[0]
    for i in range(n):
        acc = out[i]
        for j in range(n):
            acc[j] = 0.0
        for k in range(i):
            lik = lower[i, k]
            xk = out[k]
            for j in range(k + 1):
                acc[j] += lik * xk[j]
        d = lower[i, i]
        for j in range(i):
            acc[j] = -acc[j] / d
        acc[i] = 1.0 / d
