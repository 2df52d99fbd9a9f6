"""ACIQ: analytical clipping for a Gaussian or Laplace fit (Banner et al., 2019).

The data's mean, standard deviation and mean absolute deviation come from the
streaming histogram.  For ``b`` bits the expected squared error of clipping
at ``mu +- alpha`` is the clipping term of the fitted distribution plus the
rounding noise ``alpha^2 / (3 * 4^b)`` of ``2^b`` levels over ``2 alpha``;
lowbit minimises that closed form numerically for the given width (for
Laplace(b) the clipping term is ``2 b^2 exp(-alpha / b)``; for a Gaussian
it is ``2[(sigma^2 + alpha^2) Q(alpha/sigma) - alpha sigma phi(alpha/sigma)]``).

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).laplace(size=200_000)
    >>> lo, hi = ACIQ(distribution="laplace").fit([x]).clip_range("int4")
    >>> bool(4.0 < hi < 6.5)
    True
"""

from __future__ import annotations

import math

import numpy as np

from lowbit.calibration._histogram import in_units
from lowbit.calibration.base import HistogramEstimator, register_estimator
from lowbit.errors import OptionError
from lowbit.formats import QType, get_qtype

__all__ = ["ACIQ", "optimal_clip"]

DISTRIBUTIONS = ("laplace", "gaussian")


def _expected_mse(alpha: np.ndarray, spread: float, bits: int, distribution: str) -> np.ndarray:
    noise = alpha**2 / (3.0 * 4.0**bits)
    if distribution == "laplace":
        return 2.0 * spread**2 * np.exp(-alpha / spread) + noise
    z = alpha / spread
    tail = 0.5 * np.array([math.erfc(v / math.sqrt(2.0)) for v in z])
    pdf = np.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)
    return 2.0 * ((spread**2 + alpha**2) * tail - alpha * spread * pdf) + noise


def optimal_clip(spread: float, bits: int, distribution: str = "laplace") -> float:
    """The ``alpha`` minimising the expected error (``spread`` is b for Laplace, sigma for Gaussian).

    Example:
        >>> round(optimal_clip(1.0, 8, "gaussian"), 2)
        3.92
    """
    if distribution not in DISTRIBUTIONS:
        raise OptionError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    if spread <= 0.0:
        return 0.0
    grid = spread * np.linspace(0.01, 40.0, 4000)
    best = grid[np.argmin(_expected_mse(grid, spread, bits, distribution))]
    fine = np.linspace(best - spread * 0.01, best + spread * 0.01, 401)
    return float(fine[np.argmin(_expected_mse(fine, spread, bits, distribution))])


@register_estimator
class ACIQ(HistogramEstimator):
    """Analytical clip ``mu +- alpha*`` from a Laplace or Gaussian fit of the data."""

    name = "aciq"

    def __init__(
        self, distribution: str = "laplace", qtype: str | QType = "int8", *, bins: int = 4096,
        axis: int | None = None, nan_policy: str = "raise",
    ) -> None:
        super().__init__(bins=bins, axis=axis, nan_policy=nan_policy)
        self.distribution = distribution
        self.qtype = qtype

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.distribution not in DISTRIBUTIONS:
            raise OptionError(f"distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}")
        get_qtype(self.qtype)

    def _channel_range(self, c: int, qtype: QType, symmetric: bool) -> tuple[float, float]:
        centers, counts, _ = self.hist_.channel(c)
        lo, hi = float(self.hist_.lo[c]), float(self.hist_.hi[c])
        return in_units(self._fit_range, centers, counts, lo, hi, qtype, symmetric)

    def _fit_range(
        self, centers: np.ndarray, counts: np.ndarray, lo: float, hi: float, qtype: QType, symmetric: bool
    ) -> tuple[float, float]:
        weights = counts / counts.sum()
        mu = float(np.dot(weights, centers))
        if symmetric:
            mu = 0.0
        if self.distribution == "laplace":
            spread = float(np.dot(weights, np.abs(centers - mu)))
        else:
            spread = math.sqrt(float(np.dot(weights, (centers - mu) ** 2)))
        alpha = optimal_clip(spread, qtype.bits, self.distribution)
        if symmetric:
            t = min(alpha, max(-lo, hi))
            return -t, t
        return max(lo, mu - alpha), min(hi, mu + alpha)
