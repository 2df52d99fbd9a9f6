"""HQQ's half-quadratic iterations, fused: one pass over a block's weights per iteration.

Each row of ``g`` is one block (a group, or a whole output channel) with its
own scale ``s`` and zero point ``z``.  One iteration of :func:`hqq_blocks`
computes, per element, the code ``q = clip(rint(g / s + z))``, the error
``e = g - s (q - z)``, ``|e|^p`` (summed: the block's ``l_p`` error) and the
shrunk error ``W_e = sign(e) max(|e| - |e|^(p-1) / beta, 0)``, and per block
only the sums that the closed-form update needs: ``z = mean(q - (g - W_e) / s)``
(phase 1) or ``s = <g - W_e, q - z> / <q - z, q - z>`` (phase 2).  Nothing is
stored per element.  Rows are taken in chunks whose total ``l_p`` error decides
early stopping, as in :mod:`lowbit.algorithms.hqq`, and chunks run in parallel.

Every element may carry a weight (activation-aware HQQ: the mean square of its
input feature): the errors are then weighted sums and the closed-form updates
weighted least squares; the shrink step is unchanged.  With all weights 1 this
is the data-free HQQ.

The ``l_p`` error steers the iterations; the parameters kept are those with the
lowest (weighted) *squared* error seen.  The choice between these candidates and
min-max parameters is made by :mod:`lowbit.algorithms.hqq` on the reconstruction
as stored.

``|e|^p`` comes from :func:`~lowbit._kernels._floatbits.pow_pos` (vectorised,
relative error < 1e-10) and sums may be reassociated, so the errors compared are
exact to about 1e-10 relative.

Example:
    >>> import numpy as np
    >>> from lowbit._kernels.hqq import hqq_blocks
    >>> g = np.array([[0.0, 0.1, 0.2, 0.9]])
    >>> s, z = np.array([0.06]), np.array([0.0])
    >>> out_s, out_z = np.empty(1), np.empty(1)
    >>> hqq_blocks(g, np.ones((1, 4)), s, z, 0, 15, 0.7, 10.0, 1.01, 20, True, 64, False, out_s, out_z)
    >>> bool(out_s[0] > 0 and 0 <= out_z[0] <= 15)
    True
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from lowbit._kernels._floatbits import pow_pos

__all__ = ["hqq_blocks"]

_FAST = {"reassoc", "contract", "nsz"}  # reductions vectorise; no assumption about NaN/Inf


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _zero_pass(row, wt, s, z, qmin, qmax, p, beta):  # pragma: no cover - compiled
    """(weighted l_p error, weighted squared error, weighted least-squares zero point) of one block."""
    err = 0.0
    sq = 0.0
    num = 0.0
    wsum = 0.0
    for i in range(row.size):
        x = row[i]
        c = wt[i]
        q = min(max(np.rint(x / s + z), qmin), qmax)
        e = x - s * (q - z)
        ax = abs(e)
        axp = pow_pos(ax, p)
        err += c * axp
        sq += c * e * e
        w = max(ax - axp / (ax * beta), 0.0) if ax > 0 else 0.0
        num += c * (q - (x - (w if e >= 0 else -w)) / s)
        wsum += c
    return err, sq, num / wsum


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _scale_pass(row, wt, s, z, qmin, qmax, p, beta):  # pragma: no cover - compiled
    """(weighted l_p error, weighted squared error, numerator, denominator of the least-squares scale)."""
    err = 0.0
    sq = 0.0
    num = 0.0
    den = 0.0
    for i in range(row.size):
        x = row[i]
        c = wt[i]
        q = min(max(np.rint(x / s + z), qmin), qmax)
        d = q - z
        e = x - s * d
        ax = abs(e)
        axp = pow_pos(ax, p)
        err += c * axp
        sq += c * e * e
        w = max(ax - axp / (ax * beta), 0.0) if ax > 0 else 0.0
        num += c * (x - (w if e >= 0 else -w)) * d
        den += c * d * d
    return err, sq, num, den


@njit(inline="always", cache=True, error_model="numpy")
def _half_quadratic(g, wts, first, s0, z0, qmin, qmax, p, beta, kappa, iterations, early_stop, update_zero, best_s,
                    best_z):  # pragma: no cover - compiled
    """Alternate shrink and closed-form update of z (update_zero) or s over the rows of g.

    Row ``r`` is block ``first + r``, whose elements are weighted by ``wts[(first + r) % len(wts)]``.
    The iterations follow HQQ's l_p objective (early stopping on the total l_p error); the (s, z)
    kept per row is the one seen with the lowest weighted squared error, into best_s / best_z."""
    rows = g.shape[0]
    nw = wts.shape[0]
    s = s0.copy()
    z = z0.copy()
    best_err = np.full(rows, np.inf)
    nxt = np.empty(rows)
    prev = np.inf
    for it in range(iterations + 1):
        total = 0.0
        for r in range(rows):
            wt = wts[(first + r) % nw]
            if update_zero:
                err, sq, new_z = _zero_pass(g[r], wt, s[r], z[r], qmin, qmax, p, beta)
                nxt[r] = new_z if np.isfinite(new_z) else z[r]
            else:
                err, sq, num, den = _scale_pass(g[r], wt, s[r], z[r], qmin, qmax, p, beta)
                new_s = num / den
                nxt[r] = new_s if den > 0 and np.isfinite(new_s) and new_s > 0 else s[r]
            if sq < best_err[r]:
                best_err[r] = sq
                best_s[r] = s[r]
                best_z[r] = z[r]
            total += err
        if it == iterations or (early_stop and total >= prev):
            break
        prev = total
        for r in range(rows):
            if update_zero:
                z[r] = nxt[r]
            else:
                s[r] = nxt[r]
        beta *= kappa


@njit(parallel=True, cache=True, error_model="numpy")
def hqq_blocks(g, wts, s0, z0, qmin, qmax, p, beta, kappa, iterations, early_stop, chunk_rows, float_zero, out_s,
               out_z):  # pragma: no cover - compiled
    """HQQ's candidate parameters for every row (block) of the float64 matrix ``g``.

    Phase 1 optimises a real zero point with the scale fixed at ``s0``.  With
    ``float_zero`` that is the result (the authors' form: scale ``s0``, real
    zero point).  Otherwise the zero point is rounded to an integer in
    ``[qmin, qmax]`` and phase 2 refits the scale for it.  Whether a block keeps
    these candidates or its min-max parameters is decided by the caller, on the
    stored reconstruction.  Rows are processed in chunks of ``chunk_rows``
    (early stopping looks at a chunk's total error).

    Args:
        g: (rows, size) float64 weights, one block per row.
        wts: (k, size) float64 element weights; row ``r`` uses ``wts[r % k]`` (all ones: plain errors).
        s0, z0: (rows,) float64 starting scale and zero point (in code units: ``x ~ s (q - z)``).
        qmin, qmax: the format's code range.
        p, beta, kappa, iterations, early_stop: HQQ options.
        chunk_rows: rows per chunk.
        float_zero: keep the real zero point and ``s0`` (no phase 2).
        out_s, out_z: (rows,) float64 results.
    """
    rows = g.shape[0]
    nchunks = (rows + chunk_rows - 1) // chunk_rows
    for c in prange(nchunks):
        r0 = c * chunk_rows
        r1 = min(rows, r0 + chunk_rows)
        gc = g[r0:r1]
        n = r1 - r0
        s_tmp = np.empty(n)
        z_real = np.empty(n)
        _half_quadratic(gc, wts, r0, s0[r0:r1], z0[r0:r1], qmin, qmax, p, beta, kappa, iterations, early_stop, True,
                        s_tmp, z_real)
        if float_zero:
            for r in range(n):
                out_s[r0 + r] = s0[r0 + r]
                out_z[r0 + r] = z_real[r]
            continue
        z_int = np.empty(n)
        for r in range(n):
            z_int[r] = min(max(np.rint(z_real[r]), qmin), qmax)
        s_hqq = np.empty(n)
        z_tmp = np.empty(n)
        _half_quadratic(gc, wts, r0, s0[r0:r1], z_int, qmin, qmax, p, beta, kappa, iterations, early_stop, False,
                        s_hqq, z_tmp)
        for r in range(n):
            out_s[r0 + r] = s_hqq[r]
            out_z[r0 + r] = z_int[r]
