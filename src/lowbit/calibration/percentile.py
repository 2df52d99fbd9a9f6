"""Percentile: clip at a high percentile of the values (two-sided for affine, of |x| for symmetric).

On a single batch the result is exact (equal to ``np.percentile`` with linear
interpolation) without sorting: the histogram locates the two order
statistics and one more pass gathers just the values of those bins.  After
several batches it is interpolated inside the histogram bin (error below one
bin width).

Example:
    >>> import numpy as np
    >>> x = np.arange(101.0)
    >>> Percentile(percentile=90.0).fit([x]).clip_range("uint8")
    (10.0, 90.0)
"""

from __future__ import annotations

import numpy as np

from lowbit.calibration._quantiles import exact_quantiles, fold, hist_quantile
from lowbit.calibration.base import HistogramEstimator, register_estimator
from lowbit.errors import OptionError
from lowbit.formats import QType

__all__ = ["Percentile"]


@register_estimator
class Percentile(HistogramEstimator):
    """Clip at ``percentile`` (and ``100 - percentile`` below, when affine)."""

    name = "percentile"

    def __init__(
        self, percentile: float = 99.99, *, bins: int = 4096, axis: int | None = None, nan_policy: str = "raise"
    ) -> None:
        super().__init__(bins=bins, axis=axis, nan_policy=nan_policy)
        self.percentile = percentile

    def _validate_params(self) -> None:
        super()._validate_params()
        p = self.percentile
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 50.0 <= p <= 100.0:
            raise OptionError(f"percentile must be a number in [50, 100], got {p!r}")

    def _update(self, rows: np.ndarray, mins: np.ndarray, maxs: np.ndarray, had_nonfinite: bool) -> None:
        super()._update(rows, mins, maxs, had_nonfinite)
        if self.seen_:  # exact only for a single batch
            self.exact_ = None
            return
        p = float(self.percentile)
        exact = np.empty((rows.shape[0], 3))
        for c in range(rows.shape[0]):
            values = rows[c][np.isfinite(rows[c])] if had_nonfinite else rows[c]
            centers, counts, w = self.hist_.channel(c)
            folded = fold(centers, counts, w)
            exact[c] = exact_quantiles(
                values, [(centers, counts, w, False, 100 - p), (centers, counts, w, False, p), (*folded, True, p)]
            )
        self.exact_ = exact

    def _channel_range(self, c: int, qtype: QType, symmetric: bool) -> tuple[float, float]:
        p = float(self.percentile)
        if self.exact_ is not None:
            lo, hi, amax = self.exact_[c]
        else:
            centers, counts, w = self.hist_.channel(c)
            lo, hi = hist_quantile(centers, counts, w, 100.0 - p), hist_quantile(centers, counts, w, p)
            amax = hist_quantile(*fold(centers, counts, w), p)
        return (-amax, amax) if symmetric else (lo, hi)
