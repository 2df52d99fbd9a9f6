"""Assertions shared by the property tests.

Each check recomputes what a QTensor must hold from the input with the float64
reference in ``_reference`` (it reads the QTensor's attributes but never calls
lowbit to produce an expected value).
"""

from __future__ import annotations

import numpy as np

from _reference import (
    block_index,
    block_reduce,
    qrange,
    ref_codes,
    ref_dequant,
    ref_qparams,
    single_step_scale,
    storage_dtype,
)


def _float_dtype(x: np.ndarray) -> np.dtype:
    return np.dtype(np.float64 if x.dtype == np.float64 else np.float32)


def check_params(x: np.ndarray, qt, name: str, spec: tuple, symmetric: bool) -> None:
    """Min-max scale (within a few ulps of the float64 reference) and zero point."""
    dt = _float_dtype(x)
    pshape, _ = block_index(x.shape, spec)
    assert qt.scale.shape == pshape
    assert qt.zero_point.shape == pshape
    assert qt.scale.dtype == dt
    assert qt.zero_point.dtype == storage_dtype(name)
    s = np.asarray(qt.scale, np.float64).reshape(-1)
    z = np.asarray(qt.zero_point, np.int64).reshape(-1)
    ref_s, ref_z, lo, _ = ref_qparams(x, name, spec, symmetric)
    single = single_step_scale(x, spec, symmetric)
    ref_s = np.where(np.isclose(s, single, rtol=8 * np.finfo(dt).eps, atol=0), single, ref_s)
    np.testing.assert_allclose(s, ref_s, rtol=8 * np.finfo(dt).eps, atol=0)
    if symmetric:
        np.testing.assert_array_equal(z, ref_z)
    else:
        qmin, qmax = qrange(name)
        ratio = lo / s
        want = np.clip(qmin - np.rint(ratio), qmin, qmax)
        # Away from a tie the zero point is qmin - round(lo / scale) with the stored scale.  When
        # lo / scale is within rounding of k + 0.5 either neighbour is an equally good grid; the
        # exact tie-break is pinned by test_qparams.py::test_zero_point_uses_the_stored_scale.
        near_tie = np.abs(np.abs(ratio - np.floor(ratio)) - 0.5) <= 8 * np.finfo(dt).eps * (np.abs(ratio) + 1)
        ok = (z == want) | (near_tie & (np.abs(z - want) == 1))
        assert np.all(ok), {"zero_point": z[~ok], "expected": want[~ok], "lo/scale": ratio[~ok]}


def check_codes_and_dequant(x: np.ndarray, qt, name: str, spec: tuple, *, stochastic: bool = False) -> None:
    """Codes in range and equal to the float64 reference (up to float32 near-ties),
    dequantize == (code - zp) * scale rounded once, error bounds for the rounding mode."""
    x = np.asarray(x)
    dt = _float_dtype(x)
    eps = np.finfo(dt).eps
    qmin, qmax = qrange(name)
    codes = qt.codes
    assert codes.shape == x.shape
    assert codes.dtype == storage_dtype(name)
    c = codes.astype(np.int64)
    if c.size:
        assert c.min() >= qmin, (c.min(), qmin)
        assert c.max() <= qmax, (c.max(), qmax)

    s = np.asarray(qt.scale, np.float64)
    z = np.asarray(qt.zero_point, np.float64)
    pshape, bidx = block_index(x.shape, spec)
    sb = s.reshape(-1)[bidx]
    zb = z.reshape(-1)[bidx]
    x64 = x.astype(np.float64)
    rc, v = ref_codes(x, s, z, name, spec)
    # float32 evaluation of x * (1/s) + zp may move v by this much
    tol = 2 * eps * (np.abs(x64 / sb) + np.abs(v) + 1)
    lower = (qmin - zb - 0.5) * sb
    upper = (qmax - zb + 0.5) * sb
    inside = (x64 >= lower) & (x64 <= upper)

    if stochastic:
        vc = np.clip(v, qmin, qmax)
        assert np.all(np.abs(c - vc) <= 1 + tol), "stochastic code is not floor or ceil of x/s + zp"
    else:
        bad = rc != c
        if bad.any():
            frac = np.abs(v - np.floor(v) - 0.5)
            assert np.all(np.abs(rc - c)[bad] == 1), (x[bad], c[bad], rc[bad])
            assert np.all(frac[bad] <= tol[bad]), ("codes differ from the reference away from a tie", x[bad])
        # anything beyond the clipping range saturates
        assert np.all(c[x64 < lower] == qmin)
        assert np.all(c[x64 > upper] == qmax)

    d = qt.dequantize()
    assert isinstance(d, np.ndarray)
    assert d.shape == x.shape
    assert d.dtype == x.dtype
    np.testing.assert_array_equal(d, ref_dequant(c, s, z, spec, x.dtype))

    n = max(1, int(np.prod(pshape)))
    absmax = block_reduce(np.abs(x64), bidx, n, "max")[bidx]
    ulp2 = 2 * np.spacing(absmax.astype(dt)).astype(np.float64)
    err = np.abs(x64 - d.astype(np.float64))
    limit = sb if stochastic else sb / 2
    ok = err <= limit + ulp2
    assert np.all(ok[inside]), {
        "x": x64[inside & ~ok][:5],
        "err": err[inside & ~ok][:5],
        "scale": sb[inside & ~ok][:5],
    }
