"""The estimator contract shared by every range estimator.

Like scikit-learn's estimators: the constructor only stores parameters;
``partial_fit(x)`` accumulates statistics from one batch and returns self;
``fit(batches)`` starts afresh and feeds each batch; ``range_()`` and
``qparams(qtype)`` answer only after data was seen (``NotCalibratedError``
before); learned state ends with ``_``.

With ``axis=None`` one range covers the whole tensor; with ``axis=k`` there is
one range per index along axis ``k`` (per-channel), and every batch must have
the same length on that axis.

Example:
    >>> import numpy as np
    >>> from lowbit.calibration import MinMax
    >>> MinMax().fit([np.array([1.0, -2.0]), np.array([3.0])]).range_()
    (-2.0, 3.0)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from lowbit._arrays import as_float_array, check_finite
from lowbit.errors import GranularityError, NotCalibratedError, OptionError
from lowbit.formats import QType, get_qtype
from lowbit.granularity import PerChannel, PerTensor, plan
from lowbit.qparams import choose_qparams

__all__ = ["RangeEstimator", "HistogramEstimator", "NAN_POLICIES"]

NAN_POLICIES = ("raise", "omit")


class RangeEstimator:
    """Base class: batching, NaN policy, per-channel layout and qparams.

    Subclasses implement ``_reset()``, ``_update(rows, mins, maxs, batch)`` and
    ``_range(qtype, symmetric)``; ``rows`` is the batch as ``(channels, m)``.
    """

    name = "base"
    channels_: int | None = None
    seen_: int = 0

    def __init__(self, *, axis: int | None = None, nan_policy: str = "raise") -> None:
        if nan_policy not in NAN_POLICIES:
            raise OptionError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
        self.axis = axis
        self.nan_policy = nan_policy

    # -- public contract -------------------------------------------------
    def partial_fit(self, x: Any) -> RangeEstimator:
        """Accumulate statistics from one batch (NumPy or torch); returns self.

        A batch with no elements changes nothing. Non-finite values raise
        NonFiniteError unless ``nan_policy="omit"``, which skips them.
        """
        flat, source = as_float_array(x, allow_empty=True)
        if flat.size == 0:
            return self
        layout = plan(PerTensor() if self.axis is None else PerChannel(self.axis), source.shape)
        from lowbit.kernels import block_minmax

        mins, maxs, nonfinite = block_minmax(flat, layout)
        if nonfinite and self.nan_policy == "raise":
            check_finite(flat, nonfinite, source.shape)
        rows = self._rows(flat, source.shape)
        if nonfinite:
            mins, maxs = self._finite_minmax(rows)
        channels = rows.shape[0]
        if self.channels_ not in (None, channels):
            raise GranularityError(
                f"batch has {channels} channels along axis {self.axis} but earlier batches had {self.channels_}"
            )
        if self.channels_ is None:
            self.channels_ = channels
            self._reset(channels)
        self._update(rows, mins.astype(np.float64), maxs.astype(np.float64), nonfinite > 0)
        self.seen_ += 1
        return self

    def fit(self, batches: Iterable[Any]) -> RangeEstimator:
        """Forget earlier data, then ``partial_fit`` every batch; returns self."""
        self.channels_ = None
        self.seen_ = 0
        for batch in batches:
            self.partial_fit(batch)
        return self

    def range_(self, qtype: str | QType | None = None, symmetric: bool | None = None) -> tuple[Any, Any]:
        """The clipping range ``(lo, hi)``: two floats, or two arrays with one entry per channel.

        Raises:
            NotCalibratedError: no finite value has been seen yet.
        """
        self._check_fitted()
        qt = get_qtype(qtype) if qtype is not None else self._default_qtype()
        if symmetric is None:
            symmetric = getattr(self, "symmetric", None)
        sym = qt.signed if symmetric is None else bool(symmetric)
        lo, hi = (np.asarray(v, np.float64).reshape(-1) for v in self._range(qt, sym))
        return (float(lo[0]), float(hi[0])) if self.axis is None else (lo, hi)

    def qparams(self, qtype: str | QType = "int8", symmetric: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scale, zero_point) for ``qtype`` from the estimated range (see :func:`lowbit.choose_qparams`)."""
        qt = get_qtype(qtype)
        sym = qt.signed if symmetric is None else bool(symmetric)
        lo, hi = self.range_(qt, sym)
        return choose_qparams(lo, hi, qt, symmetric=sym)

    # -- helpers for subclasses -------------------------------------------
    def _default_qtype(self) -> QType:
        return get_qtype(getattr(self, "qtype", "int8"))

    def _check_fitted(self) -> None:
        if not self.seen_ or not self._has_data():
            raise NotCalibratedError(
                f"{type(self).__name__} has seen no finite data yet; call partial_fit(x) or fit(batches) first"
            )

    def _rows(self, flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if self.axis is None:
            return flat.reshape(1, -1)
        return np.moveaxis(flat.reshape(shape), self.axis, 0).reshape(shape[self.axis], -1)

    @staticmethod
    def _finite_minmax(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        finite = np.isfinite(rows)
        lo = np.where(finite, rows, np.inf).min(axis=1)
        hi = np.where(finite, rows, -np.inf).max(axis=1)
        return lo, hi

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_"))
        return f"{type(self).__name__}({params})"

    # -- to implement -----------------------------------------------------
    def _reset(self, channels: int) -> None:
        raise NotImplementedError

    def _has_data(self) -> bool:
        raise NotImplementedError

    def _update(self, rows: np.ndarray, mins: np.ndarray, maxs: np.ndarray, had_nonfinite: bool) -> None:
        raise NotImplementedError

    def _range(self, qtype: QType, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class HistogramEstimator(RangeEstimator):
    """Base of the estimators that work on a :class:`StreamingHistogram` per channel.

    Subclasses implement ``_channel_range(c, qtype, symmetric) -> (lo, hi)``.
    """

    def __init__(self, *, bins: int = 4096, axis: int | None = None, nan_policy: str = "raise") -> None:
        super().__init__(axis=axis, nan_policy=nan_policy)
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 16:
            raise OptionError(f"bins must be an int >= 16, got {bins!r}")
        self.bins = bins

    def _reset(self, channels: int) -> None:
        from lowbit.calibration._histogram import StreamingHistogram

        self.hist_ = StreamingHistogram(channels, self.bins)

    def _has_data(self) -> bool:
        return bool(np.all(self.hist_.n > 0))

    def _update(self, rows: np.ndarray, mins: np.ndarray, maxs: np.ndarray, had_nonfinite: bool) -> None:
        self.hist_.add(rows, mins, maxs, omit=had_nonfinite)

    def _range(self, qtype: QType, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self._channel_range(c, qtype, symmetric) for c in range(self.hist_.counts.shape[0])]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])

    def _channel_range(self, c: int, qtype: QType, symmetric: bool) -> tuple[float, float]:
        raise NotImplementedError
