"""Entropy: TensorRT's KL-divergence calibration.

On the histogram of ``|x|``, every candidate threshold (from ``levels`` bins up
to all of them) is scored by ``KL(P || Q)``: P is the histogram cut at the
threshold with the clipped mass added to its last bin, Q is that histogram
merged into ``levels`` quantization buckets and spread back over the non-empty
bins.  The threshold with the smallest divergence wins.  ``levels`` is
``2^(b-1)`` (128 for 8 bits, as in TensorRT); for an unsigned format on data of
one sign it is ``2^b``.  The threshold is then lowered past empty bins to the
edge of the last non-empty one (nothing lies between, so the clipping is
unchanged and the scale smaller).  Affine ranges are the symmetric threshold
intersected with the data range.

Example:
    >>> import numpy as np
    >>> x = np.concatenate([np.random.default_rng(0).standard_normal(100_000), [40.0]])
    >>> lo, hi = Entropy().fit([x]).clip_range("int8")
    >>> bool(hi < 10)
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
    """KL-divergence threshold for ``qtype`` (default int8) on a streaming histogram."""

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
        return (-t, t) if symmetric else (max(lo, -t), min(hi, t))
