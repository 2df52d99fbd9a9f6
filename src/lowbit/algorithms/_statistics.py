"""Streaming statistics of a layer's inputs: per-channel max and mean of ``|x|``, and a sample of rows.

AWQ needs the mean ``|x_j|`` of each input channel (how salient it is) and some
rows to score candidate scales on; SmoothQuant needs the channel maxima (and,
to choose its migration strength, rows too).  :class:`ActivationStatistics`
gathers all three over calibration batches in bounded memory.  The sample is a
bottom-k sketch: every row gets a pseudo-random key from a generator seeded
with ``seed`` and the ``max_rows`` rows with the smallest keys are kept, so the
sample is uniform over everything seen and the same for the same batches.

Example:
    >>> import numpy as np
    >>> st = ActivationStatistics(2, max_rows=3).partial_fit(np.array([[1.0, -2.0], [3.0, 0.0]]))
    >>> st.absmax_.tolist(), st.mean_abs_.tolist(), st.sample_.shape
    ([3.0, 2.0], [2.0, 1.0], (2, 2))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lowbit._deprecation import warn_renamed
from lowbit.algorithms._checks import as_rows, positive_int
from lowbit.errors import NotCalibratedError

__all__ = ["ActivationStatistics"]


class ActivationStatistics:
    """Per-channel ``max |x|``, ``mean |x|`` and ``mean x^2`` over all rows, and a uniform sample of rows, streamed.

    Args:
        in_features: length of the last axis of every batch.
        max_rows: rows kept in the sample (0 keeps none).
        seed: seed of the row keys.

    Attributes:
        n_samples_: rows seen.
        absmax_, mean_abs_, mean_sq_, sample_: the statistics; reading one before any
            data raises NotCalibratedError (an AttributeError: they do not exist yet).

    Raises:
        OptionError: a non-positive ``in_features`` or a negative ``max_rows``.

    Example:
        >>> import numpy as np
        >>> ActivationStatistics(3, max_rows=0).partial_fit(np.array([[1.0, -4.0, 0.0]])).absmax_.tolist()
        [1.0, 4.0, 0.0]
    """

    def __init__(self, in_features: int, max_rows: int = 1024, seed: int = 0) -> None:
        self.in_features = positive_int(in_features, "in_features")
        self.max_rows = positive_int(max_rows, "max_rows", low=0)
        self._rng = np.random.default_rng(seed)
        self._abs_sum = np.zeros(self.in_features, np.float64)
        self._sq_sum = np.zeros(self.in_features, np.float64)
        self._abs_max = np.zeros(self.in_features, np.float64)
        self._rows = np.zeros((0, self.in_features), np.float32)
        self._keys = np.zeros(0, np.float64)
        self.n_samples_ = 0

    def partial_fit(self, x: Any) -> ActivationStatistics:
        """Fold a batch shaped ``(..., in_features)`` in; returns ``self``.

        Raises:
            OptionError: wrong last axis. EmptyInputError: no rows. NonFiniteError: NaN/Inf.

        Example:
            >>> import numpy as np
            >>> ActivationStatistics(4).partial_fit(np.ones((2, 5, 4))).n_samples_
            10
        """
        rows = as_rows(x, self.in_features, "activations")
        magnitude = np.abs(rows)
        self._abs_sum += magnitude.sum(axis=0, dtype=np.float64)
        self._sq_sum += np.einsum("ij,ij->j", magnitude, magnitude, dtype=np.float64)
        np.maximum(self._abs_max, magnitude.max(axis=0), out=self._abs_max)
        self.n_samples_ += rows.shape[0]
        if self.max_rows:
            self._sample(rows)
        return self

    def add(self, x: Any) -> ActivationStatistics:
        """Deprecated spelling of :meth:`partial_fit`."""
        warn_renamed("ActivationStatistics.add()", "ActivationStatistics.partial_fit()")
        return self.partial_fit(x)

    def _sample(self, rows: np.ndarray) -> None:
        keys = np.concatenate([self._keys, self._rng.random(rows.shape[0])])
        pool = np.concatenate([self._rows, rows.astype(np.float32)])
        if keys.size > self.max_rows:
            keep = np.sort(np.argpartition(keys, self.max_rows - 1)[: self.max_rows])
            keys, pool = keys[keep], pool[keep]
        self._keys, self._rows = keys, pool

    def _check(self) -> None:
        if self.n_samples_ == 0:
            raise NotCalibratedError("ActivationStatistics has seen no data; call .partial_fit(activations) first")

    @property
    def absmax_(self) -> np.ndarray:
        """float64 ``(in_features,)`` maximum of ``|x_j|`` over every row seen."""
        self._check()
        return self._abs_max.copy()

    @property
    def mean_abs_(self) -> np.ndarray:
        """float64 ``(in_features,)`` mean of ``|x_j|`` over every row seen."""
        self._check()
        return self._abs_sum / self.n_samples_

    @property
    def mean_sq_(self) -> np.ndarray:
        """float64 ``(in_features,)`` mean of ``x_j^2`` over every row seen (half the diagonal of GPTQ's Hessian)."""
        self._check()
        return self._sq_sum / self.n_samples_

    @property
    def sample_(self) -> np.ndarray:
        """float32 ``(rows, in_features)`` uniform sample of the rows seen (at most ``max_rows``)."""
        self._check()
        return self._rows.copy()

    def __repr__(self) -> str:
        return f"ActivationStatistics(in_features={self.in_features}, n_samples_={self.n_samples_})"
