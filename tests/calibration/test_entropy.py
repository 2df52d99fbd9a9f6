"""lowbit.calibration.entropy: Entropy, the symmetric threshold and the two-sided (affine) window.

The kernel's objective is checked against a brute force over every window in
tests/_kernels/test_histogram.py; here, the ranges it gives on skewed data.
"""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit.calibration import Entropy, Percentile


def _mse(x, lo, hi, qtype):
    """float64 MSE of ``x`` on the affine grid of ``qtype`` over [lo, hi] (choose_qparams' scale and zero point)."""
    scale, zero = (float(v) for v in lowbit.choose_qparams(lo, hi, qtype, symmetric=False))
    qt = lowbit.get_qtype(qtype)
    deq = (np.clip(np.rint(x / scale + zero), qt.qmin, qt.qmax) - zero) * scale
    return float(np.mean((x - deq) ** 2))


def _old_affine(est, x, qtype):
    """The affine range entropy gave before the two-sided search: the symmetric threshold cut to the data."""
    t = est.clip_range(qtype, symmetric=True)[1]
    return max(float(x.min()), -t), min(float(x.max()), t)


def test_outlier_example_entropy_clips_the_outlier(outlier_example, uint8_mse):
    """The seeds' outlier example: entropy needs no percentile to pick and clips the outlier as
    tightly as percentile 99.99 does, up to one histogram bin (the affine window ends on a bin
    edge: 150.5 here, the largest inlier being 150.0).  Both inlier errors are ~s^2/12 with
    s ~ 200/255; which one is lower on a given draw is within the +-0.9 % sampling noise of that
    mean (std of u^2 over 10,000 values), hence the 1 % margin."""
    x = outlier_example
    est = Entropy().fit([x])
    lo, hi = est.clip_range("uint8", symmetric=False)
    p_lo, p_hi = Percentile(99.99).fit([x]).clip_range("uint8", symmetric=False)
    assert hi - lo <= p_hi - p_lo + est.hist_.width[0]
    assert x[:-1].max() <= hi < 151 and lo == x.min()
    minmax = uint8_mse(x, "minmax")
    assert uint8_mse(x, "entropy") <= 1.01 * uint8_mse(x, "percentile") < 0.05 * minmax


def test_grid_formats_are_refused():
    import numpy as np
    import pytest

    import lowbit

    with pytest.raises(lowbit.OptionError, match="method='minmax' only"):
        Entropy(qtype="mxfp4").fit([np.ones(4)])


def test_values_near_the_float64_maximum_and_a_single_value():
    import numpy as np

    lo, hi = Entropy(bins=64).fit([np.array([-1e308, 1e308, 1.0, 3e307])]).clip_range("int8")
    assert np.isfinite([lo, hi]).all() and hi > 1e307
    assert Entropy().fit([np.array([2.5])]).clip_range("int8") == (-2.5, 2.5)


def test_per_channel_matches_per_tensor_on_each_channel():
    import numpy as np

    x = np.random.default_rng(2).standard_normal((500, 3)) * np.array([1.0, 3.0, 0.1])
    lo, hi = Entropy(axis=1, bins=512).fit([x]).clip_range("int8")
    for c in range(3):
        assert (lo[c], hi[c]) == Entropy(bins=512).fit([x[:, c]]).clip_range("int8")


def test_issue_case_the_far_value_below_is_clipped_alone():
    """Issue 14's case: 20,000 values uniform on [-20, 200] and one at -800, to uint8.  One symmetric
    threshold could only give about [-200, 200]; the two-sided window ends at the bulk on both sides,
    so its inlier error is percentile 99.99's (within 2 %) and a third of the old one's."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-20, 200, 20_000), [-800.0]])
    inliers = x[:-1]
    est = Entropy().fit([x])
    lo, hi = est.clip_range("uint8")
    assert -20.5 < lo <= inliers.min() and inliers.max() - 1.0 < hi <= inliers.max()
    new = _mse(inliers, lo, hi, "uint8")
    pct = _mse(inliers, *Percentile(99.99).fit([x]).clip_range("uint8"), "uint8")
    old = _mse(inliers, *_old_affine(est, x, "uint8"), "uint8")
    assert new <= 1.02 * pct and 3 * new < old


@pytest.mark.parametrize("sign", [1, -1], ids=["tail-below", "tail-above"])
@pytest.mark.parametrize("qtype", ["uint8", "int8", "uint4"])
def test_a_tail_on_one_side_is_clipped_and_the_other_side_kept(sign, qtype):
    """Twenty values spread far out on one side of a uniform bulk: the window ends at the bulk on
    both sides; the symmetric threshold of the old search could not.  (At 4 bits, spreading Q over
    only P's non-zero bins, as TensorRT does, would keep the isolated values: bulk MSE ~350.)"""
    rng = np.random.default_rng(5)
    bulk = sign * rng.uniform(-20, 200, 20_000)
    x = np.concatenate([bulk, sign * rng.uniform(-800, -400, 20)])
    est = Entropy().fit([x])
    lo, hi = est.clip_range(qtype, symmetric=False)
    assert lo >= bulk.min() - 0.5 and hi <= bulk.max() + 0.5
    assert lo <= bulk.min() + 1.0 and hi >= bulk.max() - 1.0
    pct = Percentile(99.9).fit([x]).clip_range(qtype, symmetric=False)
    new, old = _mse(bulk, lo, hi, qtype), _mse(bulk, *_old_affine(est, x, qtype), qtype)
    assert new <= 1.02 * _mse(bulk, *pct, qtype) and 3 * new < old


@pytest.mark.parametrize("sign", [1, -1], ids=["right-tail", "left-tail"])
def test_a_skewed_density_keeps_its_short_side(sign):
    """A shifted lognormal (a long tail on one side, a sharp edge on the other): the short side is
    kept to within a few sparse values of its extreme (< 0.2 % of the range), the long tail is cut."""
    x = sign * (np.random.default_rng(6).lognormal(0.0, 0.7, 100_000) - 1.0)
    lo, hi = Entropy().fit([x]).clip_range("uint8")
    short, long = (lo, hi) if sign > 0 else (-hi, -lo)
    edge, extreme = float(np.min(sign * x)), float(np.max(sign * x))
    assert edge <= short < edge + 2e-3 * (extreme - edge)
    assert 0.5 * extreme < long < 0.9 * extreme


@pytest.mark.parametrize("qtype", ["uint8", "int8", "uint4"])
def test_symmetric_data_gets_a_window_close_to_the_symmetric_threshold(qtype):
    x = np.random.default_rng(4).standard_normal(100_000)
    est = Entropy().fit([x])
    lo, hi = est.clip_range(qtype, symmetric=False)
    t = est.clip_range(qtype, symmetric=True)[1]
    assert abs(lo + t) < 0.1 * t and abs(hi - t) < 0.1 * t


@pytest.mark.parametrize("qtype", ["uint8", "uint4"])
def test_a_spike_at_zero_does_not_pull_the_window_onto_it(qtype):
    """ReLU outputs: half the values are exactly 0.  TensorRT's divergence smears that spike over
    its bucket, which costs more than clipping half the values onto it; the window keeps the
    central 99 %, and lands far better than the old threshold."""
    x = np.maximum(np.random.default_rng(10).standard_normal(200_000), 0.0)
    est = Entropy().fit([x])
    lo, hi = est.clip_range(qtype)
    assert lo == 0.0 and hi >= np.quantile(x, 0.995)
    assert _mse(x, lo, hi, qtype) < 0.7 * _mse(x, *_old_affine(est, x, qtype), qtype)


def test_affine_per_channel_matches_per_tensor_on_each_channel():
    rng = np.random.default_rng(7)
    x = np.stack([rng.uniform(-20, 200, 4000), -rng.gamma(2.0, 1.0, 4000), rng.standard_normal(4000)], axis=1)
    x[0] = [-800.0, 30.0, 9.0]
    lo, hi = Entropy(axis=1, bins=512).fit([x]).clip_range("uint8")  # channel 0's bulk: < 256 bins
    for c in range(3):
        assert (lo[c], hi[c]) == Entropy(bins=512).fit([x[:, c]]).clip_range("uint8")
    assert lo[0] > -21 and hi[1] < 0.9 * x[:, 1].max() + 1e-9 and lo[1] < 0.9 * x[:, 1].min()


def test_batches_give_the_range_of_one_batch():
    """Histograms merge exactly as batches widen the range, so the window is the same."""
    rng = np.random.default_rng(8)
    x = np.concatenate([rng.uniform(-20, 200, 30_000), [-800.0, 900.0]])
    rng.shuffle(x)
    one = Entropy(bins=1024).fit([x]).clip_range("uint8")
    streamed = Entropy(bins=1024)
    for part in np.array_split(np.sort(x)[::-1], 3):  # the range grows below at every batch
        streamed.partial_fit(part)
    assert streamed.clip_range("uint8") == one


@pytest.mark.parametrize("qtype", ["uint8", "int8", "uint4"])
@pytest.mark.parametrize(
    "x, want",
    [
        (np.full(50, 3.5), (3.5, 3.5)),
        (np.zeros(50), (0.0, 0.0)),
        (np.array([-2.0]), (-2.0, -2.0)),
        (np.array([-1.0, 1e-3]), (-1.0, 1e-3)),
    ],
    ids=["constant", "zeros", "one-value", "two-values"],
)
def test_degenerate_inputs_give_their_data_range(x, want, qtype):
    lo, hi = Entropy().fit([x]).clip_range(qtype, symmetric=False)
    assert (lo, hi) == want
    scale, _ = lowbit.choose_qparams(lo, hi, qtype, symmetric=False)
    assert np.isfinite(scale).all()


def test_one_signed_and_huge_data_stay_finite_and_inside_the_data():
    rng = np.random.default_rng(9)
    for x in (rng.uniform(1e6, 1e6 + 1, 5000), -rng.exponential(1.0, 5000) - 3.0,
              np.array([-1e308, 1e308, 1.0, 3e307]), np.concatenate([np.zeros(5000), [1.0, 2.0]])):
        lo, hi = Entropy(bins=64).fit([x]).clip_range("uint8")
        assert np.isfinite([lo, hi]).all() and x.min() <= lo <= hi <= x.max()
