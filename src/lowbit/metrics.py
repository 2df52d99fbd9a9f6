"""Error metrics (float64 accumulation) and :func:`compare`, one row per scheme.

Conventions for degenerate inputs: zero error gives ``sqnr_db = inf``; a zero
signal with non-zero error gives ``-inf``; the cosine of two all-zero tensors
is 1 and of one all-zero tensor with a non-zero one is 0.  Huge values whose sums
of squares overflow float64 are summed in units of a power of two: the cosine and
the SQNR stay finite and exact, while ``sse``/``mse``/``signal`` are ``inf`` exactly
where the true sum exceeds float64's maximum.  NaN/Inf inputs raise NonFiniteError
(only detected when they make a sum non-finite, i.e. always).

Example:
    >>> import numpy as np
    >>> from lowbit import metrics
    >>> metrics.sse(np.array([1.0, 2.0]), np.array([1.0, 1.5]))
    0.25
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lowbit._arrays import as_float_array
from lowbit._text import format_table, jsonable
from lowbit.errors import EmptyInputError, InputTypeError, NonFiniteError
from lowbit.formats import QType, get_qtype
from lowbit.granularity import Granularity, PerGroup, PerTensor, as_granularity

__all__ = [
    "sse",
    "mse",
    "rmse",
    "sqnr_db",
    "max_abs_error",
    "cosine_similarity",
    "ErrorStats",
    "error_stats",
    "Scheme",
    "CompareRow",
    "CompareTable",
    "compare",
]


@dataclass(frozen=True)
class ErrorStats:
    """Every metric of one (reference, approximation) pair."""

    numel: int
    sse: float
    signal: float
    max_abs_error: float
    cosine: float
    #: the SQNR when ``sse`` and ``signal`` had to be summed scaled (huge values); None otherwise
    scaled_sqnr_db: float | None = field(default=None, repr=False)

    @property
    def mse(self) -> float:
        """Mean squared error (undefined, an EmptyInputError, for empty tensors)."""
        if self.numel == 0:
            raise EmptyInputError("the mean squared error of empty tensors is undefined")
        return self.sse / self.numel

    @property
    def rmse(self) -> float:
        """Root mean squared error."""
        return math.sqrt(self.mse)

    @property
    def sqnr_db(self) -> float:
        """Signal-to-quantization-noise ratio in dB, ``10 log10(sum x^2 / sum (x-y)^2)``."""
        if self.scaled_sqnr_db is not None:
            return self.scaled_sqnr_db
        return _sqnr(self.signal, self.sse)


def _sqnr(signal: float, noise: float) -> float:
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def error_stats(reference: Any, approx: Any) -> ErrorStats:
    """All metrics in one pass over both tensors (NumPy or torch, any float dtype).

    Raises:
        InputTypeError: the shapes differ or an input is not a float tensor.

    Example:
        >>> s = error_stats(np.array([3.0, 4.0]), np.array([3.0, 4.0]))
        >>> s.sse, s.cosine, s.sqnr_db
        (0.0, 1.0, inf)
    """
    x, xs = as_float_array(reference, allow_empty=True)
    y, ys = as_float_array(approx, allow_empty=True)
    if xs.shape != ys.shape:
        raise InputTypeError(f"cannot compare tensors of shapes {xs.shape} and {ys.shape}")
    if x.size == 0:
        return ErrorStats(0, 0.0, 0.0, 0.0, 1.0)
    from lowbit._kernels import error_stats as kernel

    sse_, sxx, syy, sxy, mad = kernel(x, y)
    if math.isfinite(sse_ + sxx + syy + sxy + mad):
        return ErrorStats(x.size, sse_, sxx, mad, _cosine(sxx, syy, sxy))
    return _scaled_stats(x, xs.shape, y, mad)


def _cosine(sxx: float, syy: float, sxy: float) -> float:
    degenerate = sxx == 0.0 or syy == 0.0
    return float(sxx == syy) if degenerate else max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def _scaled_stats(x: np.ndarray, shape: tuple[int, ...], y: np.ndarray, mad: float) -> ErrorStats:
    """Stats of finite tensors whose sums of squares overflow float64: summed in units of a power of two.

    ``sse`` and ``signal`` (and ``max_abs_error``) are then ``inf`` where the true value exceeds
    float64's maximum (and only there); the cosine and the SQNR come from the scaled sums, so they
    stay finite.
    """
    from lowbit._arrays import check_finite
    from lowbit._kernels import error_stats as kernel

    for arr, what in ((x, "reference"), (y, "approximation")):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            try:
                check_finite(arr, bad, shape)
            except NonFiniteError as err:
                raise err.with_context(f"the {what} tensor") from None
    exp = math.frexp(float(max(np.abs(x).max(), np.abs(y).max())))[1]
    sse_, sxx, syy, sxy, _ = kernel(np.ldexp(x, -exp), np.ldexp(y, -exp))
    with np.errstate(over="ignore"):
        sse_full, signal = (float(np.ldexp(v, 2 * exp)) for v in (sse_, sxx))
    # max |x - y| is inf only where the difference itself exceeds float64's maximum
    return ErrorStats(x.size, sse_full, signal, mad, _cosine(sxx, syy, sxy), _sqnr(sxx, sse_))


def sse(reference: Any, approx: Any) -> float:
    """Sum of squared errors. Example: ``sse(x, lowbit.fake_quantize(x))``."""
    return error_stats(reference, approx).sse


def mse(reference: Any, approx: Any) -> float:
    """Mean squared error.

    Example:
        >>> mse(np.array([1.0, 2.0]), np.array([1.0, 1.0]))
        0.5
    """
    return error_stats(reference, approx).mse


def rmse(reference: Any, approx: Any) -> float:
    """Root mean squared error.

    Example:
        >>> rmse(np.array([0.0, 0.0]), np.array([3.0, 4.0]))
        3.5355339059327378
    """
    return error_stats(reference, approx).rmse


def sqnr_db(reference: Any, approx: Any) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when exact).

    Example:
        >>> round(sqnr_db(np.array([1.0, 1.0]), np.array([1.1, 0.9])), 9)
        20.0
    """
    return error_stats(reference, approx).sqnr_db


def max_abs_error(reference: Any, approx: Any) -> float:
    """Largest absolute elementwise error.

    Example:
        >>> max_abs_error(np.array([1.0, -2.0]), np.array([1.5, -2.0]))
        0.5
    """
    return error_stats(reference, approx).max_abs_error


def cosine_similarity(reference: Any, approx: Any) -> float:
    """Cosine similarity of the two tensors seen as flat vectors.

    Example:
        >>> cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 2.0]))
        0.0
    """
    return error_stats(reference, approx).cosine


@dataclass(frozen=True)
class Scheme:
    """One way to quantize: format, granularity, symmetry, range estimator and scale format.

    The arguments are those of :func:`lowbit.quantize`. ``granularity=None`` is the
    format's default (``PerTensor()``; blocks of 32 for MX formats), and a string
    (``"group:64"``) is turned into its object; ``scale_format=None`` likewise
    (float32; e8m0 for MX formats).

    Example:
        >>> from lowbit import PerGroup, PerChannel
        >>> Scheme("int4", "group:128", symmetric=False).name
        'int4 group:128 asym'
        >>> Scheme("int8", PerChannel(0), method="mse").name
        'int8 channel sym mse'
        >>> Scheme("nf4", PerGroup(64), scale_format="double8").name, Scheme("mxfp4", None).name
        ('nf4 group:64 sym double8', 'mxfp4 group:32 sym e8m0')
    """

    qtype: str | QType
    granularity: Granularity | str | None = None
    symmetric: bool | None = None
    method: str = "minmax"
    scale_format: str | None = None
    method_options: Mapping[str, Any] | None = field(default=None, hash=False, compare=False)

    def __post_init__(self) -> None:
        if self.granularity is not None:
            object.__setattr__(self, "granularity", as_granularity(self.granularity))

    @property
    def resolved_granularity(self) -> Granularity:
        """The granularity actually used (None: blocks of ``block_size`` for MX formats, else per tensor)."""
        if self.granularity is not None:
            return as_granularity(self.granularity)
        qt = get_qtype(self.qtype)
        return PerGroup(qt.block_size) if qt.is_mx else PerTensor()

    @property
    def resolved_symmetric(self) -> bool:
        """The symmetry actually used (the format's default when None; grid formats are always symmetric)."""
        qt = get_qtype(self.qtype)
        if qt.is_grid:
            return True
        return qt.signed if self.symmetric is None else self.symmetric

    @property
    def name(self) -> str:
        """Readable label, e.g. ``int8 channel sym`` (the scale format is named unless float32)."""
        sym = "sym" if self.resolved_symmetric else "asym"
        method = "" if self.method == "minmax" else f" {getattr(self.method, 'name', self.method)}"
        if self.method_options:
            method += "(" + ", ".join(f"{k}={v}" for k, v in self.method_options.items()) + ")"
        qt = get_qtype(self.qtype)
        fmt = self.scale_format or qt.scale_format
        scales = "" if not fmt or fmt == "float32" else f" {fmt}"
        return f"{qt.name} {self.resolved_granularity} {sym}{method}{scales}"


@dataclass(frozen=True)
class CompareRow:
    """One line of a comparison: a scheme applied to one tensor."""

    tensor: str
    scheme: str
    method: str
    qtype: str
    bits: int
    granularity: str
    symmetric: bool
    numel: int
    signal: float
    sse: float
    mse: float
    sqnr_db: float
    max_abs_error: float
    cosine: float
    nbytes: int
    original_nbytes: int
    scale_format: str = "float32"

    @property
    def compression(self) -> float:
        """Original bytes divided by quantized bytes."""
        return self.original_nbytes / self.nbytes

    @property
    def bits_per_element(self) -> float:
        """Quantized storage bits per element, scales included."""
        return 8.0 * self.nbytes / self.numel


_COLUMNS = (
    ("tensor", "tensor", "{}"),
    ("scheme", "scheme", "{}"),
    ("bits/el", "bits_per_element", "{:.3f}"),
    ("sqnr_db", "sqnr_db", "{:.2f}"),
    ("mse", "mse", "{:.4g}"),
    ("sse", "sse", "{:.4g}"),
    ("max_abs", "max_abs_error", "{:.4g}"),
    ("cosine", "cosine", "{:.6f}"),
    ("bytes", "nbytes", "{:,}"),
    ("ratio", "compression", "{:.2f}x"),
)


@dataclass
class CompareTable:
    """Rows of :func:`compare`, with text, Markdown and JSON renderings."""

    rows: list[CompareRow]

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        header = [c[0] for c in _COLUMNS]
        body = [[fmt.format(getattr(r, attr)) for _, attr, fmt in _COLUMNS] for r in self.rows]
        return header, body

    def to_text(self) -> str:
        """Aligned plain-text table."""
        return format_table(*self._cells())

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown table."""
        return format_table(*self._cells(), markdown=True)

    def to_json(self) -> str:
        """One JSON document: ``{"rows": [...]}``; infinities are written as strings."""
        rows = []
        for r in self.rows:
            d = asdict(r)
            d["compression"] = r.compression
            d["bits_per_element"] = r.bits_per_element
            rows.append(jsonable(d))
        return json.dumps({"rows": rows}, indent=2)

    def __str__(self) -> str:
        return self.to_text()


def _as_scheme(s: Scheme | str | QType) -> Scheme:
    return s if isinstance(s, Scheme) else Scheme(s)


def compare(x: Any, schemes: Iterable[Scheme | str | QType], *, name: str = "x") -> CompareTable:
    """Quantize ``x`` with every scheme and tabulate the error of each.

    Args:
        x: NumPy array or torch tensor.
        schemes: Scheme objects, or format names (per-tensor, default symmetry).
        name: tensor name shown in the ``tensor`` column.

    Returns:
        A CompareTable (``.rows``, ``.to_text()``, ``.to_markdown()``, ``.to_json()``).

    Example:
        >>> import lowbit
        >>> x = np.random.default_rng(0).standard_normal(1024).astype(np.float32)
        >>> t = lowbit.compare(x, ["int8", "int4"])
        >>> [r.scheme for r in t.rows], t.rows[0].sqnr_db > t.rows[1].sqnr_db
        (['int8 tensor sym', 'int4 tensor sym'], True)
    """
    from lowbit.core import quantize

    rows = []
    for s in map(_as_scheme, schemes):
        qt = quantize(x, s.qtype, granularity=s.granularity, symmetric=s.symmetric, method=s.method,
                      method_options=s.method_options, scale_format=s.scale_format)
        st = error_stats(x, qt.dequantize())
        original = qt.numel * np.dtype(np.float32 if qt.dtype == "bfloat16" else qt.dtype).itemsize
        if qt.dtype == "bfloat16":
            original //= 2
        rows.append(
            CompareRow(
                name, s.name, str(getattr(s.method, "name", s.method)), qt.qtype.name, qt.qtype.bits,
                str(qt.granularity), qt.symmetric, qt.numel,
                st.signal, st.sse, st.mse, st.sqnr_db, st.max_abs_error, st.cosine, qt.nbytes, original,
                qt.scale_format,
            )
        )
    return CompareTable(rows)
