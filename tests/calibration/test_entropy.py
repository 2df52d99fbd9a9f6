"""lowbit.calibration.entropy: Entropy (KL-divergence threshold) on the seeds' outlier example."""

from __future__ import annotations

from lowbit.calibration import Entropy, Percentile


def test_outlier_example_entropy_clips_the_outlier(outlier_example, uint8_mse):
    """The seeds' outlier example: entropy needs no percentile to pick and clips the outlier as
    tightly as percentile 99.99 does.  Both inlier errors are ~s^2/12 with s ~ 200/255; which one
    is lower on a given draw is within the +-0.9 % sampling noise of that mean (std of u^2 over
    10,000 values), hence the 1 % margin."""
    x = outlier_example
    lo, hi = Entropy().fit([x]).clip_range("uint8", symmetric=False)
    p_lo, p_hi = Percentile(99.99).fit([x]).clip_range("uint8", symmetric=False)
    assert hi - lo <= p_hi - p_lo
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
