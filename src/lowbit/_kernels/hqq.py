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

The ``l_p`` error steers the iterations; the parameters kept are those with the
lowest *squared* error seen.  A block keeps its min-max parameters unless HQQ's
have a lower squared error *and* round every weight to within half a min-max
step, as min-max rounding does (HQQ may move the grid, not clip): the extremes
of a row are the salient weights of a language model, and clipping them costs
far more than their share of the squared error.  On SmolLM2 at uint4 per
channel, choosing by ``l_p`` error gave 2.5-3.1x round-to-nearest's perplexity,
by squared error alone 1.9x.

``|e|^p`` comes from :func:`~lowbit._kernels._floatbits.pow_pos` (vectorised,
relative error < 1e-10) and sums may be reassociated, so the errors compared are
exact to about 1e-10 relative.

Example:
    >>> import numpy as np
    >>> from lowbit._kernels.hqq import hqq_blocks
    >>> g = np.array([[0.0, 0.1, 0.2, 0.9]])
    >>> s, z = np.array([0.06]), np.array([0.0])
    >>> out_s, out_z = np.empty(1), np.empty(1)
    >>> hqq_blocks(g, s, z, 0, 15, 0.7, 10.0, 1.01, 20, True, 64, True, out_s, out_z)
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
def _zero_pass(row, s, z, qmin, qmax, p, beta, gsum):  # pragma: no cover - compiled
    """(l_p error, squared error, least-squares zero point) of one block for the current (s, z)."""
    err = 0.0
    sq = 0.0
    qsum = 0.0
    wsum = 0.0
    for i in range(row.size):
        x = row[i]
        q = min(max(np.rint(x / s + z), qmin), qmax)
        e = x - s * (q - z)
        ax = abs(e)
        axp = pow_pos(ax, p)
        err += axp
        sq += e * e
        w = max(ax - axp / (ax * beta), 0.0) if ax > 0 else 0.0
        qsum += q
        wsum += w if e >= 0 else -w
    return err, sq, (qsum - (gsum - wsum) / s) / row.size


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _errors(row, s, z, qmin, qmax):  # pragma: no cover - compiled
    """(sum of squared errors, largest absolute error) of one block's reconstruction for (s, z)."""
    sq = 0.0
    top = 0.0
    for i in range(row.size):
        x = row[i]
        e = x - s * (min(max(np.rint(x / s + z), qmin), qmax) - z)
        sq += e * e
        top = max(top, abs(e))
    return sq, top


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _scale_pass(row, s, z, qmin, qmax, p, beta):  # pragma: no cover - compiled
    """(l_p error, squared error, numerator, denominator of the least-squares scale) of one block."""
    err = 0.0
    sq = 0.0
    num = 0.0
    den = 0.0
    for i in range(row.size):
        x = row[i]
        q = min(max(np.rint(x / s + z), qmin), qmax)
        d = q - z
        e = x - s * d
        ax = abs(e)
        axp = pow_pos(ax, p)
        err += axp
        sq += e * e
        w = max(ax - axp / (ax * beta), 0.0) if ax > 0 else 0.0
        num += (x - (w if e >= 0 else -w)) * d
        den += d * d
    return err, sq, num, den


@njit(inline="always", cache=True, error_model="numpy")
def _half_quadratic(g, s0, z0, qmin, qmax, p, beta, kappa, iterations, early_stop, update_zero, best_s, best_z,
                    first_err):  # pragma: no cover - compiled
    """Alternate shrink and closed-form update of z (update_zero) or s over the rows of g.

    The iterations follow HQQ's l_p objective (early stopping on the total l_p error); the (s, z)
    kept per row is the one seen with the lowest squared error, into best_s / best_z, and the squared
    error of (s0, z0) goes into first_err."""
    rows = g.shape[0]
    s = s0.copy()
    z = z0.copy()
    best_err = np.full(rows, np.inf)
    gsum = np.zeros(rows)
    for r in range(rows):
        for i in range(g.shape[1]):
            gsum[r] += g[r, i]
    nxt = np.empty(rows)
    prev = np.inf
    for it in range(iterations + 1):
        total = 0.0
        for r in range(rows):
            if update_zero:
                err, sq, new_z = _zero_pass(g[r], s[r], z[r], qmin, qmax, p, beta, gsum[r])
                nxt[r] = new_z
            else:
                err, sq, num, den = _scale_pass(g[r], s[r], z[r], qmin, qmax, p, beta)
                new_s = num / den
                nxt[r] = new_s if den > 0 and np.isfinite(new_s) and new_s > 0 else s[r]
            if it == 0:
                first_err[r] = sq
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
def hqq_blocks(g, s0, z0, qmin, qmax, p, beta, kappa, iterations, early_stop, chunk_rows, scale_f32, out_s, out_z):
    # pragma: no cover - compiled
    """HQQ parameters for every row (block) of the float64 matrix ``g``.

    Phase 1 optimises a real zero point with the scale fixed at ``s0``; it is
    rounded to an integer in ``[qmin, qmax]``; phase 2 refits the scale for it
    (stored as float32 when ``scale_f32``).  Each row then keeps HQQ's parameters
    where their squared error is lower than ``(s0, z0)``'s and they round every
    element to within half a min-max step; ``(s0, z0)`` otherwise.  Rows are processed in
    chunks of ``chunk_rows`` (early stopping looks at a chunk's total error).

    Args:
        g: (rows, size) float64 weights, one block per row.
        s0, z0: (rows,) float64 min-max scale and integer-valued zero point.
        qmin, qmax: the format's code range.
        p, beta, kappa, iterations, early_stop: HQQ options.
        chunk_rows: rows per chunk.
        scale_f32: round the refitted scale to float32 before scoring it.
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
        err0 = np.empty(n)
        _half_quadratic(gc, s0[r0:r1], z0[r0:r1], qmin, qmax, p, beta, kappa, iterations, early_stop, True,
                        s_tmp, z_real, err0)
        z_int = np.empty(n)
        for r in range(n):
            z_int[r] = min(max(np.rint(z_real[r]), qmin), qmax)
        s_hqq = np.empty(n)
        z_tmp = np.empty(n)
        _half_quadratic(gc, s0[r0:r1], z_int, qmin, qmax, p, beta, kappa, iterations, early_stop, False,
                        s_hqq, z_tmp, s_tmp)
        for r in range(n):
            sh = np.float64(np.float32(s_hqq[r])) if scale_f32 else s_hqq[r]
            sr, zr = s0[r0 + r], z0[r0 + r]
            sq_h, top_h = _errors(gc[r], sh, z_int[r], qmin, qmax)
            if sq_h < err0[r] and top_h <= 0.5 * sr:
                sr, zr = sh, z_int[r]
            out_s[r0 + r] = sr
            out_z[r0 + r] = zr
