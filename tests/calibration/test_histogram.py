"""lowbit.calibration._histogram: the streaming histogram the histogram estimators share, against np.histogram."""

from __future__ import annotations

import numpy as np

from lowbit.calibration._histogram import StreamingHistogram


def test_merging_is_exact(rng):
    h = StreamingHistogram(1, 256)
    parts = [rng.standard_normal(1000) * s for s in (0.01, 1.0, 100.0)]
    for p in parts:
        h.add(p[None, :], np.array([p.min()]), np.array([p.max()]))
    edges = h.edges(0)
    everything = np.concatenate(parts)
    assert h.n[0] == everything.size
    np.testing.assert_array_equal(h.counts[0], np.histogram(everything, edges)[0])


def test_range_wider_than_float64_gets_finite_bins():
    h = StreamingHistogram(1, 16)
    x = np.array([[-1e308, 1e308, 0.0]])
    h.add(x, np.array([-1e308]), np.array([1e308]))
    centers, counts, w = h.channel(0)
    assert np.isfinite(centers).all() and np.isfinite(w) and counts.sum() == 3
    assert np.all(h.edges(0)[:-1] <= h.edges(0)[1:])
