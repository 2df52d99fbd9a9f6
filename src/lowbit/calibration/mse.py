"""MSE: the clipping range that minimises the mean squared quantization error.

The error of a candidate range is evaluated on the histogram (each bin's mass
at its center, quantized exactly as :func:`lowbit.quantize` would with that
range's scale and zero point), never by re-quantizing the data.  Symmetric
ranges are a 1-D search (a coarse grid over ``(0, absmax]``, then a fine grid
around the best); affine ranges alternate the search over the upper and the
lower end, starting from min-max.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(100_000)
    >>> lo, hi = MSE().fit([x]).clip_range("int4")
    >>> bool(hi < np.abs(x).max())
    True
"""

from __future__ import annotations

import numpy as np

from lowbit.calibration._histogram import in_units, integer_target
from lowbit.calibration.base import HistogramEstimator, register_estimator
from lowbit.formats import QType
from lowbit.qparams import choose_qparams

__all__ = ["MSE"]

_COARSE = 256
_FINE = 128
_ROUNDS = 3


@register_estimator
class MSE(HistogramEstimator):
    """Minimum-MSE clipping for ``qtype`` (default int8) searched on a streaming histogram."""

    name = "mse"

    def __init__(
        self, qtype: str | QType = "int8", symmetric: bool | None = None, *, bins: int = 4096,
        axis: int | None = None, nan_policy: str = "raise",
    ) -> None:
        super().__init__(bins=bins, axis=axis, nan_policy=nan_policy)
        self.qtype = qtype
        self.symmetric = symmetric

    def _validate_params(self) -> None:
        super()._validate_params()
        integer_target(self.qtype, self.name)

    def _range(self, qtype: QType, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
        return super()._range(integer_target(qtype, self.name), symmetric)

    @staticmethod
    def _errors(centers, counts, los, his, qtype: QType, symmetric: bool) -> np.ndarray:
        from lowbit._kernels.histogram import histogram_errors

        scale, zp = choose_qparams(los, his, qtype, symmetric=symmetric, scale_dtype=np.float64)
        return histogram_errors(centers, counts, scale, zp.astype(np.float64), qtype.qmin, qtype.qmax)

    def _search(self, centers, counts, fixed, lo_side: bool, top: float, qtype: QType, symmetric: bool) -> float:
        """Best free end in (0, top] (magnitude) with the other end fixed; coarse then fine grid."""
        coarse = top * np.arange(1, _COARSE + 1) / _COARSE
        best = coarse[np.argmin(self._eval(centers, counts, coarse, fixed, lo_side, qtype, symmetric))]
        step = top / _COARSE
        fine = np.clip(best + step * np.linspace(-1, 1, _FINE), step / _FINE, top)
        return float(fine[np.argmin(self._eval(centers, counts, fine, fixed, lo_side, qtype, symmetric))])

    def _eval(self, centers, counts, mags, fixed, lo_side, qtype, symmetric) -> np.ndarray:
        if symmetric:
            return self._errors(centers, counts, -mags, mags, qtype, True)
        other = np.full(mags.shape, fixed)
        los, his = (-mags, other) if lo_side else (other, mags)
        return self._errors(centers, counts, los, his, qtype, False)

    def _channel_range(self, c: int, qtype: QType, symmetric: bool) -> tuple[float, float]:
        centers, counts, _ = self.hist_.channel(c)
        lo, hi = float(self.hist_.lo[c]), float(self.hist_.hi[c])
        return in_units(self._search_range, centers, counts, lo, hi, qtype, symmetric)

    def _search_range(
        self, centers: np.ndarray, counts: np.ndarray, lo: float, hi: float, qtype: QType, symmetric: bool
    ) -> tuple[float, float]:
        filled = counts > 0  # empty bins add nothing to any error: leave them out of every evaluation
        centers, counts = centers[filled], counts[filled]
        if symmetric:
            amax = max(-lo, hi)
            if amax == 0.0:
                return 0.0, 0.0
            best = self._search(centers, counts, 0.0, False, amax, qtype, True)
            return -best, best
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        best_lo, best_hi = lo, hi
        for _ in range(_ROUNDS):
            if hi > 0:
                best_hi = self._search(centers, counts, best_lo, False, hi, qtype, False)
            if lo < 0:
                best_lo = -self._search(centers, counts, best_hi, True, -lo, qtype, False)
        return best_lo, best_hi
