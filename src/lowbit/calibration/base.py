"""The estimator contract shared by every range estimator, and their registry.

Like scikit-learn's estimators:

* the constructor only stores its parameters (validation happens in
  ``partial_fit``/``fit``, and in :func:`get_estimator`);
* ``partial_fit(x)`` accumulates statistics from one batch and returns self;
  ``fit(batches)`` is a reset followed by ``partial_fit`` of every batch;
* learned state is held in attributes ending with ``_`` that exist only after
  fitting; ``clip_range()`` and ``qparams(qtype)`` raise
  :class:`~lowbit.errors.NotCalibratedError` (a ValueError and AttributeError)
  before data;
* ``get_params()`` / ``set_params(**params)`` read and change the parameters,
  and :func:`clone` builds an unfitted copy.

A trailing underscore marks a *fitted attribute* here (``min_``, ``hist_``); on a
method it means *in place* (``lowbit.model.quantize_``), as in torch.

With ``axis=None`` one range covers the whole tensor; with ``axis=k`` there is
one range per index along axis ``k`` (per-channel), and every batch must have
the same length on that axis.

Estimators are registered by name, like formats (``register_estimator``,
``get_estimator``, ``list_estimators``); ``method=`` of :func:`lowbit.quantize`,
the model configs and the ``lowbit.nn`` modules takes such a name (options in
``method_options=``) or an estimator instance.

Example:
    >>> import numpy as np
    >>> from lowbit.calibration import MinMax
    >>> MinMax().fit([np.array([1.0, -2.0]), np.array([3.0])]).clip_range()
    (-2.0, 3.0)
    >>> hasattr(MinMax(), "min_")
    False
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import numpy as np

from lowbit._arrays import as_float_array, check_finite
from lowbit._deprecation import warn_renamed
from lowbit.errors import GranularityError, NotCalibratedError, OptionError
from lowbit.formats import QType, get_qtype
from lowbit.granularity import PerChannel, PerTensor, plan
from lowbit.qparams import choose_qparams

__all__ = [
    "RangeEstimator",
    "HistogramEstimator",
    "NAN_POLICIES",
    "register_estimator",
    "get_estimator",
    "list_estimators",
    "clone",
]

NAN_POLICIES = ("raise", "omit")

_E = TypeVar("_E", bound="type[RangeEstimator]")


class RangeEstimator:
    """Base class: batching, NaN policy, per-channel layout, qparams and parameters.

    Subclasses set ``name`` (their registry key) and implement ``_reset()``,
    ``_update(rows, mins, maxs, batch)`` and ``_range(qtype, symmetric)``;
    ``rows`` is the batch as ``(channels, m)``.  A subclass that takes more
    parameters lists every one of them in its ``__init__`` signature (that is
    what ``get_params`` reads) and checks them in ``_validate_params``.
    """

    name = "base"

    def __init__(self, *, axis: int | None = None, nan_policy: str = "raise") -> None:
        self.axis = axis
        self.nan_policy = nan_policy

    # -- parameters --------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [n for n, p in sig.parameters.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters and their values.

        Example:
            >>> from lowbit.calibration import Percentile
            >>> Percentile(99.9).get_params()
            {'percentile': 99.9, 'bins': 4096, 'axis': None, 'nan_policy': 'raise'}
        """
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> RangeEstimator:
        """Change parameters (validated at the next fit); returns self.

        Raises:
            OptionError: a name that is not a parameter of this estimator.

        Example:
            >>> from lowbit.calibration import Percentile
            >>> Percentile().set_params(percentile=99.0).percentile
            99.0
        """
        valid = self._param_names()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise OptionError(f"{type(self).__name__} has no parameter(s) {unknown}; its parameters are {valid}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def _validate_params(self) -> None:
        """Check every parameter (raises OptionError); subclasses extend it."""
        if self.axis is not None and (isinstance(self.axis, bool) or not isinstance(self.axis, (int, np.integer))):
            raise OptionError(f"{type(self).__name__} axis must be None or an int, got {self.axis!r}")
        if self.nan_policy not in NAN_POLICIES:
            raise OptionError(f"nan_policy must be one of {NAN_POLICIES}, got {self.nan_policy!r}")

    # -- public contract -------------------------------------------------
    def partial_fit(self, x: Any) -> RangeEstimator:
        """Accumulate statistics from one batch (NumPy or torch); returns self.

        A batch with no elements changes nothing. Non-finite values raise
        NonFiniteError unless ``nan_policy="omit"``, which skips them.

        Raises:
            OptionError: a bad parameter. GranularityError: a batch with another
                number of channels than the earlier ones.
        """
        self._validate_params()
        flat, source = as_float_array(x, allow_empty=True)
        if flat.size == 0:
            return self
        layout = plan(PerTensor() if self.axis is None else PerChannel(int(self.axis)), source.shape)
        from lowbit._kernels import block_minmax

        mins, maxs, nonfinite = block_minmax(flat, layout)
        if nonfinite and self.nan_policy == "raise":
            check_finite(flat, nonfinite, source.shape)
        rows = self._rows(flat, source.shape)
        if nonfinite:
            mins, maxs = self._finite_minmax(rows)
        channels = rows.shape[0]
        known = getattr(self, "channels_", None)
        if known not in (None, channels):
            raise GranularityError(
                f"batch has {channels} channels along axis {self.axis} but earlier batches had {known}"
            )
        if known is None:
            self.channels_ = channels
            self.seen_ = 0
            self._reset(channels)
        self._update(rows, mins.astype(np.float64), maxs.astype(np.float64), nonfinite > 0)
        self.seen_ += 1
        return self

    def fit(self, batches: Iterable[Any]) -> RangeEstimator:
        """Forget earlier data (every fitted attribute), then ``partial_fit`` every batch; returns self."""
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, key)
        self._validate_params()
        for batch in batches:
            self.partial_fit(batch)
        return self

    def clip_range(self, qtype: str | QType | None = None, symmetric: bool | None = None) -> tuple[Any, Any]:
        """The clipping range ``(lo, hi)``: two floats, or two arrays with one entry per channel.

        Args:
            qtype: the format the range is for (estimators that optimise for a
                format use it; default: the estimator's ``qtype`` parameter, or int8).
            symmetric: a symmetric range around 0 (default: the estimator's
                ``symmetric`` parameter, else the format's default).

        Raises:
            NotCalibratedError: no finite value has been seen yet.

        Example:
            >>> import numpy as np
            >>> from lowbit.calibration import MinMax
            >>> MinMax().partial_fit(np.array([-1.0, 3.0])).clip_range(symmetric=True)
            (-1.0, 3.0)
        """
        self._check_fitted()
        qt = get_qtype(qtype) if qtype is not None else self._default_qtype()
        if symmetric is None:
            symmetric = getattr(self, "symmetric", None)
        sym = qt.signed if symmetric is None else bool(symmetric)
        lo, hi = (np.asarray(v, np.float64).reshape(-1) for v in self._range(qt, sym))
        return (float(lo[0]), float(hi[0])) if self.axis is None else (lo, hi)

    def range_(self, qtype: str | QType | None = None, symmetric: bool | None = None) -> tuple[Any, Any]:
        """Deprecated spelling of :meth:`clip_range`."""
        warn_renamed(f"{type(self).__name__}.range_()", "clip_range()")
        return self.clip_range(qtype, symmetric)

    def qparams(self, qtype: str | QType = "int8", symmetric: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scale, zero_point) for ``qtype`` from the estimated range (see :func:`lowbit.choose_qparams`).

        Example:
            >>> import numpy as np
            >>> from lowbit.calibration import MinMax
            >>> [float(v) for v in MinMax().partial_fit(np.array([-2.54, 1.0])).qparams("int8")]
            [0.019999999552965164, 0.0]
        """
        qt = get_qtype(qtype)
        sym = qt.signed if symmetric is None else bool(symmetric)
        lo, hi = self.clip_range(qt, sym)
        return choose_qparams(lo, hi, qt, symmetric=sym)

    # -- helpers for subclasses -------------------------------------------
    def _default_qtype(self) -> QType:
        return get_qtype(getattr(self, "qtype", "int8"))

    def _check_fitted(self) -> None:
        if not getattr(self, "seen_", 0) or not self._has_data():
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
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
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
        self.bins = bins

    def _validate_params(self) -> None:
        super()._validate_params()
        if isinstance(self.bins, bool) or not isinstance(self.bins, (int, np.integer)) or self.bins < 16:
            raise OptionError(f"bins must be an int >= 16, got {self.bins!r}")

    def _reset(self, channels: int) -> None:
        from lowbit.calibration._histogram import StreamingHistogram

        self.hist_ = StreamingHistogram(channels, int(self.bins))

    def _has_data(self) -> bool:
        return bool(np.all(self.hist_.n > 0))

    def _update(self, rows: np.ndarray, mins: np.ndarray, maxs: np.ndarray, had_nonfinite: bool) -> None:
        self.hist_.add(rows, mins, maxs, omit=had_nonfinite)

    def _range(self, qtype: QType, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self._channel_range(c, qtype, symmetric) for c in range(self.hist_.counts.shape[0])]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])

    def _channel_range(self, c: int, qtype: QType, symmetric: bool) -> tuple[float, float]:
        raise NotImplementedError


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type[RangeEstimator]] = {}


def register_estimator(cls: _E) -> _E:
    """Register a :class:`RangeEstimator` subclass under its ``name`` (usable as a class decorator).

    Raises:
        OptionError: not a RangeEstimator subclass, no lower-case ``name``, or another
            class already registered under that name.

    Example:
        >>> import numpy as np
        >>> @register_estimator
        ... class AbsMax(RangeEstimator):
        ...     "Symmetric range from the largest magnitude."
        ...     name = "absmax_doc"
        ...     def _reset(self, channels): self.amax_ = np.zeros(channels)
        ...     def _has_data(self): return True
        ...     def _update(self, rows, mins, maxs, had_nonfinite):
        ...         self.amax_ = np.maximum(self.amax_, np.maximum(-mins, maxs))
        ...     def _range(self, qtype, symmetric): return -self.amax_, self.amax_
        >>> get_estimator("absmax_doc").fit([np.array([-3.0, 1.0])]).clip_range()
        (-3.0, 3.0)
    """
    if not (isinstance(cls, type) and issubclass(cls, RangeEstimator)):
        raise OptionError(f"register_estimator takes a RangeEstimator subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name != name.strip().lower() or name == RangeEstimator.name:
        raise OptionError(f"{cls.__name__}.name must be a lower-case registry name, got {name!r}")
    known = _REGISTRY.get(name)
    if known is not None and known is not cls and known.__qualname__ != cls.__qualname__:
        raise OptionError(f"estimator name {name!r} is already taken by {known.__name__}")
    _REGISTRY[name] = cls
    return cls


def list_estimators() -> list[str]:
    """Registered estimator names, in registration order.

    Example:
        >>> list_estimators()[:3]
        ['minmax', 'percentile', 'mse']
    """
    return list(_REGISTRY)


def _estimator_class(name: Any) -> type[RangeEstimator]:
    cls = _REGISTRY.get(name.strip().lower()) if isinstance(name, str) else None
    if cls is None:
        raise OptionError(f"unknown method {name!r}; registered estimators are: {', '.join(_REGISTRY)}")
    return cls


def get_estimator(method: str | RangeEstimator, **options: Any) -> RangeEstimator:
    """The estimator registered as ``method``, built with ``options`` and validated (an instance passes through).

    Raises:
        OptionError: unknown name (the message lists the registered ones), an option
            the estimator does not take, a bad option value, or options given with an instance.

    Example:
        >>> get_estimator("mse", qtype="int4")
        MSE(qtype='int4', symmetric=None, bins=4096, axis=None, nan_policy='raise')
    """
    if isinstance(method, RangeEstimator):
        if options:
            raise OptionError(f"options {sorted(options)} were given with an estimator instance; set them on it")
        return method
    cls = _estimator_class(method)
    valid = cls._param_names()
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise OptionError(f"method {cls.name!r} has no option(s) {unknown}; its options are {valid}")
    est = cls(**options)
    est._validate_params()
    return est


def clone(estimator: RangeEstimator) -> RangeEstimator:
    """An unfitted estimator with the same parameters.

    Example:
        >>> import numpy as np
        >>> from lowbit.calibration import MinMax
        >>> est = MinMax().fit([np.ones(3)])
        >>> hasattr(clone(est), "min_"), clone(est).get_params() == est.get_params()
        (False, True)
    """
    if not isinstance(estimator, RangeEstimator):
        raise OptionError(f"clone takes a RangeEstimator, got {type(estimator).__name__}")
    return type(estimator)(**estimator.get_params())


def estimator_for(
    method: str | RangeEstimator,
    method_options: Mapping[str, Any] | None,
    legacy: Mapping[str, Any] | None = None,
    *,
    where: str = "quantize()",
) -> RangeEstimator:
    """The estimator an entry point asked for with ``method=`` and ``method_options=`` (validated, unfitted).

    ``legacy`` holds the extra keyword arguments of an entry point that used to take
    estimator options as ``**kwargs``: those the estimator takes are used with a
    DeprecationWarning naming ``method_options=``; any other is a mistyped keyword.

    Raises:
        OptionError: unknown method or option, bad option values, ``method_options``
            that is not a mapping, options given with an instance, or an unexpected
            keyword argument (the message suggests the closest valid one).

    Example:
        >>> estimator_for("percentile", {"percentile": 99.0})
        Percentile(percentile=99.0, bins=4096, axis=None, nan_policy='raise')
    """
    if method_options is not None and not isinstance(method_options, Mapping):
        raise OptionError(f"method_options must be a dict of estimator options, got {type(method_options).__name__}")
    options = dict(method_options or {})
    if legacy:
        cls = type(method) if isinstance(method, RangeEstimator) else _estimator_class(method)
        _check_legacy(legacy, cls, where)
        options.update(legacy)
    if isinstance(method, RangeEstimator):
        if options:
            raise OptionError(f"{where}: method_options were given with an estimator instance; set them on it")
        est = clone(method)
        est._validate_params()
        return est
    return get_estimator(method, **options)


def _check_legacy(legacy: Mapping[str, Any], cls: type[RangeEstimator], where: str) -> None:
    import difflib

    if "axis" in legacy:  # the entry point sets the estimator's axis from its granularity: axis= would be ignored
        axis = legacy["axis"]
        raise OptionError(
            f"{where} got axis={axis!r}: the axis of the ranges follows granularity=, not axis=; "
            f"use granularity=PerChannel({axis!r}) (or 'channel:{axis}') for one range per index along it, "
            "or leave axis out for one range over the whole tensor"
        )
    valid = cls._param_names()
    unknown = [k for k in legacy if k not in valid]
    if unknown:
        close = difflib.get_close_matches(unknown[0], [*_KEYWORD_HINTS, *valid], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise OptionError(f"{where} got an unexpected keyword argument {unknown[0]!r}{hint}")
    shown = ", ".join(f"{k!r}: {v!r}" for k, v in legacy.items())
    warn_renamed(f"estimator options as keyword arguments of {where}", f"method_options={{{shown}}}")


_KEYWORD_HINTS = ("granularity", "symmetric", "rounding", "rng", "scale", "zero_point", "out", "method",
                  "method_options", "scale_format", "qtype")
