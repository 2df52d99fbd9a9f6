"""Entropy: TensorRT's KL-divergence calibration, with a two-sided search for affine ranges.

Symmetric ranges: on the histogram of ``|x|``, every candidate threshold (from
``levels`` bins up to all of them) is scored by ``KL(P || Q)``: P is the
histogram cut at the threshold with the clipped mass added to its last bin, Q
is that histogram merged into ``levels`` quantization buckets and spread back
over the non-empty bins.  The threshold with the smallest divergence wins.
``levels`` is ``2^(b-1)`` (128 for 8 bits, as in TensorRT); for an unsigned
format on data of one sign it is ``2^b``.  The threshold is then lowered past
empty bins to the edge of the last non-empty one (nothing lies between, so the
clipping is unchanged and the scale smaller).

Affine ranges: the two tails are searched separately, over windows of bins
``[a, b)`` of the signed histogram that hold 0 (the affine grid always does),
for ``levels = qmax - qmin + 1`` codes (256 for uint8), and that keep the
central 99 % of the values (at most 0.5 % clipped on either side).  A window
scores

    ``D(a, b) = sum_j P_j log(P_j / Q_j) / N``

P is the histogram cut to the window with the mass clipped on each side added
to that side's edge bin; Q is the window's unclipped mass merged into
``levels`` buckets (one per bin in a window of fewer bins: its grid is finer
than the histogram) and spread evenly over each bucket's bins; P and Q are
counts over the same total ``N``.  Two departures from the one-sided form, each
against a failure it has on windows: Q shares P's total, so ``D >= -log(1 - c)``
for the clipped fraction ``c`` and a window that leaves the bulk of the data
out pays for it (normalised on its own, a tiny window far out in a tail scores
near 0); and Q spreads over all of a bucket's bins, not just P's non-zero ones
(a code stands for its whole bucket), so a few isolated far values are not
free to keep (at 4 bits they would stretch the grid over them).  The minimum is
exact on histograms of up to 1024 bins and refined from a merged-bin search
above (:func:`lowbit._kernels.kl_window.kl_window`).  Both ends are then pulled
in past empty bins to the filled ones, and to the data's min and max.

Example:
    >>> import numpy as np
    >>> x = np.concatenate([np.random.default_rng(0).standard_normal(100_000), [40.0]])
    >>> lo, hi = Entropy().fit([x]).clip_range("int8")
    >>> bool(hi < 10)
    True
    >>> y = np.concatenate([np.random.default_rng(0).uniform(-20, 200, 20_000), [-800.0]])
    >>> lo, hi = Entropy().fit([y]).clip_range("uint8")  # affine: the far value below is clipped
    >>> bool(-21 < lo < -19 and hi > 199)
    True
"""

from __future__ import annotations

import numpy as np

from lowbit.calibration._histogram import integer_target
from lowbit.calibration._quantiles import fold
from lowbit.calibration.base import HistogramEstimator, register_estimator
from lowbit.formats import QType

__all__ = ["Entropy"]


@register_estimator
class Entropy(HistogramEstimator):
    """KL-divergence clipping range for ``qtype`` (default int8) on a streaming histogram.

    A symmetric range is one threshold on ``|x|``; an affine range is a window whose two
    ends are searched separately (see the module docstring for both objectives).
    """

    name = "entropy"

    def __init__(
        self, qtype: str | QType = "int8", *, bins: int = 4096, axis: int | None = None, nan_policy: str = "raise"
    ) -> None:
        super().__init__(bins=bins, axis=axis, nan_policy=nan_policy)
        self.qtype = qtype

    def _validate_params(self) -> None:
        super()._validate_params()
        integer_target(self.qtype, self.name)

    def _range(self, qtype: QType, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
        return super()._range(integer_target(qtype, self.name), symmetric)

    def _channel_range(self, c: int, qtype: QType, symmetric: bool) -> tuple[float, float]:
        if not symmetric:
            return self._window_range(c, qtype)
        from lowbit._kernels.histogram import kl_thresholds

        centers, counts, w = self.hist_.channel(c)
        lo, hi = float(self.hist_.lo[c]), float(self.hist_.hi[c])
        amax = max(-lo, hi)
        if w == 0.0 or amax == 0.0:
            t = amax
        else:
            _, folded, w = fold(centers, counts, w)
            one_sided = lo >= 0 or hi <= 0
            levels = 2 ** qtype.bits if (one_sided and not qtype.signed) else 2 ** (qtype.bits - 1)
            if folded.size <= levels:
                t = amax
            else:
                cut = levels + int(np.argmin(kl_thresholds(folded, levels)))
                # Empty bins just below the cut hold nothing to keep: end at the last filled one.
                last_filled = int(np.flatnonzero(folded[:cut])[-1]) + 1 if folded[:cut].any() else cut
                t = min(last_filled * w, amax)
        return -t, t

    def _window_range(self, c: int, qtype: QType) -> tuple[float, float]:
        from lowbit._kernels.kl_window import kl_window

        lo, hi = float(self.hist_.lo[c]), float(self.hist_.hi[c])
        if self.hist_.width[c] == 0.0:  # no data spread: nothing to clip
            return lo, hi
        levels = qtype.qmax - qtype.qmin + 1
        hist, first, w = _anchored(self.hist_.counts[c], int(self.hist_.k0[c]), float(self.hist_.width[c]),
                                   2 * self.hist_.nbins)
        if hist.size <= levels:  # a grid as fine as the histogram: nothing it could see to clip
            return lo, hi
        a, b, _ = kl_window(hist, levels, *_kept_span(hist, -first))
        filled = a + np.flatnonzero(hist[a:b])
        # Empty bins at the window's ends hold nothing to keep: end at the filled ones.
        return max(lo, float(first + filled[0]) * w), min(hi, float(first + filled[-1] + 1) * w)


_CLIP_MAX = 0.005  # the largest fraction of the values an affine window may clip on either side


def _kept_span(hist: np.ndarray, zero: int) -> tuple[int, int]:
    """The bins every window holds: the edge at 0 and the central values (all but ``_CLIP_MAX`` per side).

    Without the second, TensorRT's divergence can prefer clipping half the values onto a spike
    (the zeros of a ReLU): a spike smeared over a wide bucket costs more than log 2.
    """
    cum = np.concatenate([[0], np.cumsum(hist)])
    cap = _CLIP_MAX * float(cum[-1])
    low = int(np.searchsorted(cum, cap, side="right")) - 1  # the last start clipping at most `cap`
    high = int(np.searchsorted(cum, cum[-1] - cap, side="left"))  # the first end clipping at most `cap`
    return min(zero, low), max(zero, high)


def _anchored(counts: np.ndarray, k0: int, width: float, max_bins: int) -> tuple[np.ndarray, int, float]:
    """The filled span of a histogram (bin ``k`` covers ``[k w, (k+1) w)``), stretched to reach the edge 0.

    An affine range always holds 0 (:func:`lowbit.choose_qparams` widens it to), so the windows
    searched must too; data of one sign gets empty bins up to 0.  Beyond ``max_bins`` pairs of
    bins merge exactly (0 stays an edge), the width doubling each time.

    Returns:
        ``(counts, first, width)``: bin ``j`` of ``counts`` is absolute bin ``first + j``.
    """
    keep = np.flatnonzero(counts)
    k, weights = k0 + keep, counts[keep]
    while max(int(k[-1]) + 1, 0) - min(int(k[0]), 0) > max_bins:
        k = k // 2
        width *= 2.0
    first = min(int(k[0]), 0)
    size = max(int(k[-1]) + 1, 0) - first
    return np.bincount(k - first, weights=weights, minlength=size).astype(np.int64), first, width
