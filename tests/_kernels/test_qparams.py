"""lowbit._kernels.qparams: the scale search of lowbit.choose_qparams, over many blocks at once.

The kernel stores, per block, a scale within 3 ulps (in the scale's own dtype) of
``target / nsteps`` -- ``target`` the absmax (symmetric) or the range widened to hold 0
(affine), ``nsteps`` the format's steps -- and prefers one with ``nsteps * scale == target``
exactly, so the range end round-trips; a constant block no such scale reproduces gets the
single step ``|value|``.  The oracle enumerates the 7 candidates of that window with
np.nextafter and tests each product in NumPy, in the scale's dtype; the zero point is
``qmin - round(lo / scale)`` with the stored scale, in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from _reference import qrange, symmetric_zero_and_steps
from lowbit import PerChannel

M = 100_000  # blocks


def _ranges(rng, dtype) -> tuple[np.ndarray, np.ndarray]:
    mag = 10.0 ** rng.uniform(-6, 6, M)
    lo = (-np.abs(rng.standard_normal(M)) * mag).astype(dtype)
    hi = (np.abs(rng.standard_normal(M)) * mag).astype(dtype)
    lo[: M // 10] = 0.0  # some blocks all positive, some all negative
    hi[M // 10 : M // 5] = 0.0
    return lo, hi


def _window(target: np.ndarray, nsteps: int, sdt) -> tuple[np.ndarray, np.ndarray]:
    """(7 candidates per block around sdt(target / nsteps), whether nsteps * candidate == target in sdt)."""
    best = (target / nsteps).astype(sdt)
    cands, up, down = [best], best, best
    for _ in range(3):
        up, down = np.nextafter(up, sdt(np.inf)), np.nextafter(down, sdt(-np.inf))
        cands += [up, down]
    c = np.stack(cands)
    return c, sdt(nsteps) * c == target.astype(sdt)


@pytest.mark.parametrize("sdt", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("name", "symmetric"), [("int8", True), ("int4", True), ("uint8", True), ("uint8", False),
                                                 ("int3_full", False), ("uint16", False)])
def test_scale_is_in_the_window_and_exact_whenever_the_window_allows(name, symmetric, sdt, rng):
    lo, hi = _ranges(rng, np.float32)
    s, z = lowbit.choose_qparams(lo, hi, name, symmetric=symmetric, scale_dtype=sdt)
    lo64, hi64 = np.minimum(lo.astype(np.float64), 0), np.maximum(hi.astype(np.float64), 0)
    qmin, qmax = qrange(name)
    if symmetric:
        zero, nsteps = symmetric_zero_and_steps(name)
        target = np.maximum(-lo64, hi64)
    else:
        nsteps = qmax - qmin
        target = hi64 - lo64
    cands, exact = _window(target, nsteps, sdt)
    assert s.dtype == sdt
    assert np.all((cands == s).any(axis=0)), "scale outside 3 ulps of target / nsteps"
    can = exact.any(axis=0)
    assert can.mean() > 0.5  # the case is not vacuous
    np.testing.assert_array_equal((sdt(nsteps) * s == target.astype(sdt))[can], True)
    if symmetric:
        assert np.all(z == zero)
    else:
        np.testing.assert_array_equal(z, np.clip(qmin - np.rint(lo64 / s.astype(np.float64)), qmin, qmax))


def test_the_largest_value_of_a_channel_round_trips_exactly_when_a_scale_allows(rng):
    """The public consequence: symmetric int8 per channel, the absmax element dequantizes to itself."""
    x = (rng.standard_normal((2000, 64)) * 10.0 ** rng.uniform(-3, 3, (2000, 1))).astype(np.float32)
    qt = lowbit.quantize(x, "int8", granularity=PerChannel(0))
    amax = np.abs(x).max(axis=1)
    _, exact = _window(amax.astype(np.float64), 127, np.float32)
    can = exact.any(axis=0)
    assert can.mean() > 0.5
    rows = np.arange(x.shape[0])
    at = np.abs(x).argmax(axis=1)
    deq = qt.dequantize()
    np.testing.assert_array_equal(deq[rows, at][can], x[rows, at][can])


def test_constant_blocks_no_window_scale_reproduces_get_the_single_step(rng):
    v = (rng.uniform(0.5, 2.0, 20_000) * 10.0 ** rng.integers(-4, 4, 20_000)).astype(np.float32)
    _, exact = _window(v.astype(np.float64), 127, np.float32)
    hard = v[~exact.any(axis=0)][:50]
    assert hard.size == 50  # such values exist: the fallback is exercised
    for sign in (1, -1):
        vals = (sign * hard).astype(np.float32)
        s, _ = lowbit.choose_qparams(vals, vals, "int8", symmetric=True)
        np.testing.assert_array_equal(s, hard)
        blocks = np.repeat(vals[:, None], 5, axis=1)
        np.testing.assert_array_equal(lowbit.fake_quantize(blocks, "int8", granularity=PerChannel(0)), blocks)
    s, _ = lowbit.choose_qparams(np.zeros_like(hard), hard, "int8", symmetric=True)  # not constant: no fallback
    assert np.all(s != hard)
