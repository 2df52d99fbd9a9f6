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
