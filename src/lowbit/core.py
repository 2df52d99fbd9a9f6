"""quantize / dequantize / fake_quantize: pure functions over arrays.

Every function validates and plans once in NumPy (shapes, formats, ranges,
parameters), then hands the element loop to one fused Numba kernel.

Example:
    >>> import numpy as np, lowbit
    >>> x = np.array([[0.1, -0.4], [0.25, 0.8]], np.float32)
    >>> qt = lowbit.quantize(x, "int8", granularity=lowbit.PerChannel(axis=0))
    >>> qt.codes.tolist()
    [[32, -127], [40, 127]]
    >>> bool(np.abs(lowbit.dequantize(qt) - x).max() <= qt.scale.max() / 2)
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lowbit._arrays import Source, as_float_array, check_finite, check_out, restore, scale_dtype
from lowbit.errors import GranularityError, InputTypeError, OptionError
from lowbit.formats import QType, get_qtype
from lowbit.formats.scales import DEFAULT_SCALE_FORMAT, ScaleFormat, scale_format_for, store_scales
from lowbit.granularity import BlockLayout, Granularity, PerChannel, PerGroup, PerTensor, PerToken, as_granularity, plan
from lowbit.qparams import affine_zero_points, choose_qparams, symmetric_divisor
from lowbit.qtensor import QTensor

__all__ = ["quantize", "dequantize", "fake_quantize", "ROUNDING_MODES", "ZERO_POINT_KINDS"]

ROUNDING_MODES = ("nearest", "stochastic")
#: ``zero_point=`` strings: integer zero points (the default) or a float zero point per block
ZERO_POINT_KINDS = ("int", "float")
#: scale formats a float zero point can be stored beside (it is stored in the same precision)
OFFSET_SCALE_FORMATS = ("float32", "float16")


def float_zero_point_requested(kind: Any) -> bool:
    """Whether a ``zero_point=`` kind (``"int"`` or ``"float"``) asks for float zero points.

    Raises:
        OptionError: any other value.

    Example:
        >>> float_zero_point_requested("float"), float_zero_point_requested("int")
        (True, False)
    """
    if kind not in ZERO_POINT_KINDS:
        raise OptionError(f"zero_point must be one of {ZERO_POINT_KINDS}, got {kind!r}")
    return kind == "float"


def float_zero_point_problems(qt: QType, symmetric: bool | None, scale_format: str) -> list[str]:
    """What a format, symmetry and scale format lack for a float zero point (empty: nothing);
    the callers (quantize, the layers, ``WeightOnly``) add their own and raise once.

    Example:
        >>> float_zero_point_problems(get_qtype("int4"), None, "float32")
        ['an unsigned integer format (uint4, uint5, uint8 ...), got int4']
    """
    problems = []
    if qt.kind != "int" or qt.signed:
        problems.append(f"an unsigned integer format (uint4, uint5, uint8 ...), got {qt.name}")
    if symmetric:
        problems.append("affine quantization: drop symmetric=True")
    if scale_format not in OFFSET_SCALE_FORMATS:
        problems.append(f"scale_format in {OFFSET_SCALE_FORMATS}, as the minimum is stored in the scales' "
                        f"precision, got {scale_format!r}")
    return problems


def check_float_zero_point(zero_point: Any, qt: QType, symmetric: bool | None, scale_format: str, *,
                           also: tuple[str, ...] = (), where: str = "zero_point='float'") -> bool:
    """Whether ``zero_point`` asks for float zero points; OptionError naming everything that is missing
    (:func:`float_zero_point_problems` and the caller's own ``also``) when it does and cannot have them.

    Example:
        >>> check_float_zero_point("float", get_qtype("uint4"), None, "float16")
        True
        >>> check_float_zero_point("float", get_qtype("uint4"), True, "float16")
        Traceback (most recent call last):
        ...
        lowbit.errors.OptionError: zero_point='float' needs affine quantization: drop symmetric=True
    """
    if not float_zero_point_requested(zero_point):
        return False
    problems = [*float_zero_point_problems(qt, symmetric, scale_format), *also]
    if problems:
        raise OptionError(f"{where} needs " + "; ".join(problems))
    return True


def offset_dtype(scale_format: str, sdt: np.dtype | type) -> np.dtype:
    """dtype of float zero points: float16 beside float16 scales, else the scales' compute dtype.

    Example:
        >>> offset_dtype("float16", np.float32).name, offset_dtype("float32", np.float64).name
        ('float16', 'float64')
    """
    return np.dtype(np.float16) if scale_format == "float16" else np.dtype(sdt)


def _zero_point_kind(zero_point: Any) -> tuple[bool, Any]:
    """(float zero point asked for, the explicit zero points left: None for a kind string).

    An array of a float dtype (NumPy or torch), as a float-zero-point QTensor holds, is explicit offsets."""
    if isinstance(zero_point, str):
        return float_zero_point_requested(zero_point), None
    dtype = getattr(zero_point, "dtype", None)
    if dtype is not None and getattr(dtype, "is_floating_point", False):  # a torch float tensor
        return True, zero_point.detach().cpu().numpy()
    return isinstance(dtype, np.dtype) and dtype.kind == "f", zero_point


def _offset_checks(qt: QType, symmetric: bool | None, scale: Any, offsets: Any, est: Any, fmt: ScaleFormat) -> None:
    """Refuse the options a float zero point (``x = code * scale + offset``) does not combine with."""
    problems = float_zero_point_problems(qt, symmetric, fmt.name)
    if scale is not None and offsets is None:
        problems.append("explicit offsets beside scale= (zero_point= a float array, e.g. a QTensor's zero_point)")
    if offsets is not None and scale is None:
        problems.append("scale= beside the explicit offsets (zero_point= a float array)")
    if est is not None:
        problems.append(f"each block's min and max (method='minmax'), got {est!r}")
    if problems:
        raise OptionError("zero_point='float' needs " + "; ".join(problems))


def _codes_buffer(qt: QType, n: int, out: np.ndarray | None) -> np.ndarray:
    """Where ``n`` codes go: ``out`` (checked) or a new array; packed bytes for sub-byte widths."""
    size, dtype = (qt.packed_nbytes(n), np.dtype(np.uint8)) if qt.packed else (n, qt.storage_dtype)
    return np.empty(size, dtype) if out is None else check_out(out, dtype, size, qt.name)


def _explicit_offsets(scale: Any, offsets: Any, layout: BlockLayout, sdt: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Given scales and float offsets, broadcast to the blocks (scales > 0, both finite)."""
    try:
        s = np.broadcast_to(np.asarray(scale, np.float64), layout.param_shape).astype(sdt)
        m = np.broadcast_to(np.asarray(offsets, np.float64), layout.param_shape).astype(sdt)
    except ValueError:
        raise OptionError(f"scale/zero_point must be scalars or shaped {layout.param_shape} for this granularity"
                          ) from None
    if not np.all(np.isfinite(s) & (s > 0)):
        raise OptionError("scale must be finite and > 0 everywhere")
    if not np.all(np.isfinite(m)):
        raise OptionError("float zero points (offsets) must be finite")
    return s, m


def _quantize_offset(x: Any, qtype: str | QType, granularity: Any, symmetric: bool | None, params: tuple[Any, Any],
                     est: Any, scale_format: str | None, mode_seed: tuple[str, np.uint64],
                     out: np.ndarray | None) -> QTensor:
    """quantize() with a float zero point: codes ``rint((x - offset) / scale)``, stored offset and scale.

    ``params`` is ``(scale, offsets)``: both None (each block's min-max) or both given."""
    from lowbit._kernels import block_minmax, quantize_kernel
    from lowbit.qparams import offset_qparams

    qt = get_qtype(qtype)
    fmt = scale_format_for(qt, scale_format)
    _offset_checks(qt, symmetric, *params, est, fmt)
    gran = as_granularity(granularity, PerTensor())
    flat, source = as_float_array(x)
    layout = _layout(qt, gran, source.shape)
    mins, maxs, nonfinite = block_minmax(flat, layout)
    check_finite(flat, nonfinite, source.shape)
    sdt = scale_dtype(source)
    if params[0] is None:
        s, m = offset_qparams(mins.reshape(layout.param_shape), maxs.reshape(layout.param_shape), qt, sdt,
                              max_value=_value_limit(source))
    else:
        s, m = _explicit_offsets(*params, layout, sdt)
    s, _, (fmt_name, arrays) = _encoded(s, np.zeros(s.shape, np.int64), mins, qt, False, fmt, False)
    with np.errstate(over="ignore"):  # a minimum beyond float16 becomes inf, refused just below
        offset = m.astype(offset_dtype(fmt.name, m.dtype))
    if not np.all(np.isfinite(offset)):
        raise OptionError(f"a block minimum of the {source.shape} tensor is beyond float16's range; "
                          "use scale_format='float32'")
    if fmt.name != DEFAULT_SCALE_FORMAT:
        _check_reach(s, (0.0, float(qt.qmax)), offset, source,
                     f"the scales stored as {fmt.name} (use scale_format='float32')")
    data = _codes_buffer(qt, flat.size, out)
    inv = (flat.dtype.type(1) / s.astype(flat.dtype)).reshape(-1)
    zpf = (qt.qmin - offset.astype(flat.dtype).reshape(-1) * inv).astype(flat.dtype)
    rounding, seed = mode_seed
    quantize_kernel(flat, data, inv, zpf, *layout.dims, qt.qmin, qt.qmax, qt.bits,
                    _mode(rounding, gran), seed)
    return QTensor(data, s, offset, qt, gran, False, source, fmt_name, arrays)


def _mode(rounding: str, granularity: Granularity) -> int:
    """Kernel rounding mode: torch's per-tensor (fused) or per-channel (unfused) formula, or stochastic."""
    from lowbit._kernels.quant import FUSED, STOCHASTIC, UNFUSED

    if rounding == "stochastic":
        return STOCHASTIC
    return FUSED if isinstance(granularity, PerTensor) else UNFUSED


def _seed(rounding: str, rng: Any, qtype: str | QType) -> np.uint64:
    """Validate the rounding mode (before any pass over the data) and derive the stochastic seed."""
    if rounding not in ROUNDING_MODES:
        raise OptionError(f"rounding must be one of {ROUNDING_MODES}, got {rounding!r}")
    qt = get_qtype(qtype)
    if qt.is_grid or qt.is_mx:
        _grid_rounding(qt, rounding)
    if rounding == "nearest":
        return np.uint64(0)
    if isinstance(rng, np.random.Generator):
        return np.uint64(rng.integers(0, 2**63))
    if rng is None:
        return np.uint64(np.random.default_rng().integers(0, 2**63))
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.uint64(int(rng) % 2**64)
    raise OptionError(f"rng must be None, an int seed or a numpy Generator, got {type(rng).__name__}")


def _value_limit(source: Source) -> float:
    """The largest finite value of the result dtype (what no dequantized code may exceed)."""
    if source.dtype == "bfloat16":
        return 3.3895313892515355e38
    return float(np.finfo(np.dtype(source.dtype)).max)


def _steps(qt: QType, z: Any) -> tuple[Any, Any]:
    """The extreme multiples of the scale a code dequantizes to: ``qmin - z`` and ``qmax - z`` (grid ends)."""
    if qt.is_grid:
        return float(qt.grid[0]), float(qt.grid[-1])
    z64 = np.asarray(z, np.float64)
    return qt.qmin - z64, qt.qmax - z64


def _check_reach(s: Any, steps: tuple[Any, Any], offset: Any, source: Source, what: str) -> None:
    """Raise OptionError where an extreme code, ``step * s + offset``, dequantizes beyond the result dtype's max.

    Example:
        >>> _check_reach(np.array([1.0]), (-8.0, 7.0), 0.0, Source("numpy", "float16", (2,)), "scale=")
    """
    vmax = _value_limit(source)
    s64 = np.asarray(s, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        ends = [np.abs(np.asarray(k, np.float64) * s64 + np.asarray(offset, np.float64)) for k in steps]
    bad = ~((ends[0] <= vmax) & (ends[1] <= vmax))
    if bad.any():
        k = int(np.flatnonzero(bad.reshape(-1))[0])
        raise OptionError(
            f"{what}: a scale of {np.broadcast_to(s64, bad.shape).reshape(-1)[k]:g} makes codes dequantize beyond "
            f"{source.dtype}'s largest value ({vmax:g}), i.e. to inf; use a smaller scale"
        )


def _explicit_qparams(
    scale: Any, zero_point: Any, qt: QType, symmetric: bool, layout: BlockLayout, sdt: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    try:
        s = np.broadcast_to(np.asarray(scale, np.float64), layout.param_shape).astype(sdt)
        default_zp = symmetric_divisor(qt)[0] if symmetric and not qt.is_grid else 0
        z = np.broadcast_to(np.asarray(default_zp if zero_point is None else zero_point), layout.param_shape)
    except ValueError:
        raise OptionError(
            f"scale/zero_point must be scalars or shaped {layout.param_shape} for this granularity"
        ) from None
    if not np.all(np.isfinite(s) & (s > 0)):
        raise OptionError("scale must be finite and > 0 everywhere")
    if not np.all((z == np.rint(z)) & (z >= qt.qmin) & (z <= qt.qmax)):
        raise OptionError(f"zero_point must be integers in [{qt.qmin}, {qt.qmax}] for {qt.name}")
    return s, z.astype(np.int64)


def _grid_options(qt: QType, symmetric: bool | None, zero_point: Any, est: Any) -> None:
    """Reject the options that grid formats (float, codebook) do not have."""
    if symmetric is not None and not symmetric:
        raise OptionError(f"{qt.name} ({qt.kind}) is scale-only; drop symmetric=False or use an integer format")
    if zero_point is not None and np.any(np.asarray(zero_point) != 0):
        raise OptionError(f"{qt.name} ({qt.kind}) has no zero point; drop zero_point=")
    if est is not None:
        raise OptionError(f"{qt.name} ({qt.kind}) supports method='minmax' only (absmax scaling), got {est!r}")


def _mx_options(qt: QType, symmetric: bool | None, scale: Any, zero_point: Any, est: Any) -> None:
    """Reject the options that MX formats (spec-chosen power-of-two block scales) do not have."""
    if symmetric is not None and not symmetric:
        raise OptionError(f"{qt.name} (MX) is scale-only; drop symmetric=False")
    if scale is not None or zero_point is not None:
        raise OptionError(
            f"{qt.name} (MX) chooses each block's E8M0 scale by the OCP MX rule; drop scale=/zero_point= "
            "or use a non-MX format"
        )
    if est is not None:
        raise OptionError(f"{qt.name} (MX) supports method='minmax' only (the spec's amax rule), got {est!r}")


def _granularity(qt: QType, granularity: Granularity | str | None) -> Granularity:
    """The granularity to use: PerTensor() by default, blocks of ``block_size`` for MX formats."""
    if not qt.is_mx:
        return as_granularity(granularity, PerTensor())
    gran = as_granularity(granularity, PerGroup(qt.block_size))
    if isinstance(gran, PerGroup) and gran.size == qt.block_size:
        return gran
    raise GranularityError(
        f"{qt.name} shares one E8M0 scale per block of {qt.block_size} consecutive elements, got granularity="
        f"{gran}; use granularity=None (blocks along the last axis) or PerGroup({qt.block_size}, axis=...)"
    )


def _layout(qt: QType, gran: Granularity, shape: tuple[int, ...]) -> BlockLayout:
    """``plan(gran, shape)``, with an MX-specific message when the blocked axis is not a multiple of the block."""
    if qt.is_mx and not shape:
        raise GranularityError(
            f"{qt.name} quantizes blocks of {qt.block_size} elements; a 0-d tensor has none: reshape it to 1-d "
            f"with a multiple of {qt.block_size} elements, or use a non-MX format"
        )
    if qt.is_mx and isinstance(gran, PerGroup) and isinstance(gran.axis, int) and -len(shape) <= gran.axis < len(shape):
        length = shape[gran.axis]
        if length % qt.block_size:
            raise GranularityError(
                f"{qt.name} needs blocks of {qt.block_size} along axis {gran.axis}, which has length {length} "
                f"(shape {shape}); pad that axis to a multiple of {qt.block_size}, or block another axis with "
                f"PerGroup({qt.block_size}, axis=...)"
            )
    return plan(gran, shape)


def _encoded(
    s: np.ndarray, z: np.ndarray, lo: Any, qt: QType, sym: bool, fmt: ScaleFormat, refit_zero_point: bool
) -> tuple[np.ndarray, np.ndarray, tuple[str, dict[str, np.ndarray] | None]]:
    """Store the chosen scales in ``fmt`` and return the scales the stored arrays mean.

    Affine zero points chosen by lowbit are refitted to the stored scales.  float32 storage of
    the chosen (positive, finite) scales is the identity, so that path skips the round trip.
    """
    if fmt.name == DEFAULT_SCALE_FORMAT and not qt.implicit_exp:
        return s, z, (fmt.name, None)
    arrays, dec = store_scales(s, qt, fmt)
    if not sym and refit_zero_point and not np.array_equal(dec, s):
        lo = np.asarray(lo, np.float64)
        z = affine_zero_points(lo.reshape(s.shape) if lo.size == s.size else np.broadcast_to(lo, s.shape), dec, qt)
    return dec, z, (fmt.name, None if fmt.name == DEFAULT_SCALE_FORMAT else arrays)


def _grid_rounding(qt: QType, rounding: str) -> None:
    if rounding != "nearest":
        raise OptionError(f"{qt.name} ({qt.kind}) supports rounding='nearest' only, got {rounding!r}")


def _range_estimator(method: Any, method_options: Any, legacy: dict[str, Any], where: str) -> Any:
    """The estimator asked for, or None for plain min-max (the fused fast path).

    ``legacy`` holds extra keyword arguments: estimator options passed the old way
    (deprecated) or a mistyped keyword (OptionError).
    """
    if isinstance(method, str) and method.strip().lower() == "minmax" and not method_options and not legacy:
        return None
    if isinstance(method_options, Mapping) and "axis" in method_options:
        raise OptionError(f"{where} got method_options={{'axis': {method_options['axis']!r}}}: the axis of the ranges "
                          "follows granularity=, not the estimator's axis; use granularity='channel:AXIS'")
    from lowbit.calibration.base import estimator_for
    from lowbit.calibration.minmax import MinMax

    est = estimator_for(method, method_options, legacy, where=where)
    if type(est) is MinMax and est.get_params() == MinMax().get_params():
        return None
    return est


def _estimated_range(x: np.ndarray, qt: QType, sym: bool, gran: Granularity, est: Any) -> tuple[Any, Any]:
    """Clipping range from a calibration estimator fitted on ``x`` alone."""
    if isinstance(gran, PerGroup):
        raise OptionError(
            f"method={est.name!r} estimates per-tensor, per-channel or per-token ranges; with {gran} use "
            "method='minmax'"
        )
    axis: int | None = 0
    if isinstance(gran, PerToken):
        x = x.reshape(-1, x.shape[-1])
    else:
        axis = gran.axis if isinstance(gran, PerChannel) else None
    return est.set_params(axis=axis).partial_fit(x).clip_range(qt, sym)


def _prepare(
    x: Any,
    qtype: str | QType,
    granularity: Granularity | str | None,
    symmetric: bool | None,
    scale: Any,
    zero_point: Any,
    est: Any = None,
    scale_format: str | None = None,
) -> tuple[np.ndarray, Source, QType, Granularity, bool, BlockLayout, np.ndarray, np.ndarray, tuple[str, Any]]:
    """Validate inputs once and compute per-block scale and zero point, as stored in the scale format.

    ``est`` is the range estimator (None: min-max).
    """
    qt = get_qtype(qtype)
    fmt = scale_format_for(qt, scale_format)
    gran = _granularity(qt, granularity)
    sym = qt.signed if symmetric is None else bool(symmetric)
    if qt.is_mx:
        _mx_options(qt, symmetric, scale, zero_point, est)
    if qt.is_grid:
        _grid_options(qt, symmetric, zero_point, est)
        sym, zero_point = True, 0
    flat, source = as_float_array(x)
    layout = _layout(qt, gran, source.shape)
    from lowbit._kernels import block_minmax

    mins, maxs, nonfinite = block_minmax(flat, layout)
    check_finite(flat, nonfinite, source.shape)
    sdt = scale_dtype(source)
    lo = mins
    vmax = _value_limit(source)
    if scale is not None:
        s, z = _explicit_qparams(scale, zero_point, qt, sym, layout, sdt)
        _check_reach(s, _steps(qt, z), 0.0, source, "scale=")
    elif est is None:
        s, z = choose_qparams(mins, maxs, qt, symmetric=sym, scale_dtype=sdt, max_value=vmax)
    else:
        lo, hi = _estimated_range(flat.reshape(source.shape), qt, sym, gran, est)
        s, z = choose_qparams(lo, hi, qt, symmetric=sym, scale_dtype=sdt, max_value=vmax)
    s, z, enc = _encoded(
        s.reshape(layout.param_shape), z.reshape(layout.param_shape), lo, qt, sym, fmt, scale is None
    )
    if enc[1] is not None or qt.implicit_exp:
        _check_reach(s, _steps(qt, z), 0.0, source, f"the scales stored as {fmt.name} (use scale_format='float32')")
    return flat, source, qt, gran, sym, layout, s, z, enc


def quantize(
    x: Any,
    qtype: str | QType = "int8",
    *,
    granularity: Granularity | str | None = None,
    symmetric: bool | None = None,
    rounding: str = "nearest",
    rng: Any = None,
    scale: Any = None,
    zero_point: Any = None,
    out: np.ndarray | None = None,
    method: str | Any = "minmax",
    method_options: Mapping[str, Any] | None = None,
    scale_format: str | None = None,
    **deprecated: Any,
) -> QTensor:
    """Quantize a float tensor to integer codes.

    Args:
        x: NumPy array or CPU torch tensor (float16/bfloat16/float32/float64).
        qtype: format name (``"int8"``, ``"uint4"``, ``"int8_full"`` ...) or QType.
        granularity: ``PerTensor()`` (default; MX formats: ``PerGroup(32)``),
            ``PerChannel(axis)``, ``PerGroup(size, axis)``, ``PerToken()``, or the
            string form (``"tensor"``, ``"channel"``, ``"group:64"``, ``"token"``).
        symmetric: scale-only (True) or affine with zero point (False). Default:
            symmetric for signed formats, affine for unsigned ones.
        rounding: ``"nearest"`` (round half to even) or ``"stochastic"``.
        rng: seed (int) or ``numpy.random.Generator`` for stochastic rounding.
        scale: optional fixed scale(s) instead of min-max (scalar or per block).
        zero_point: optional fixed zero point(s), used with ``scale``; or ``"float"``: a
            float zero point per block, ``x = code * scale + offset`` with ``offset`` the
            block minimum (unsigned formats, min-max; stored in the scale format, float32
            or float16), as GGUF's Q4_1/Q5_1 store it. ``"int"`` is the default. With
            ``scale``, an array of a float dtype (a float-zero-point QTensor's ``zero_point``)
            gives the offsets.
        out: optional buffer for the codes (storage dtype, or uint8 packed bytes).
        method: how the clipping range is estimated: ``"minmax"`` (default),
            ``"percentile"``, ``"mse"``, ``"entropy"``, ``"aciq"`` (see
            :mod:`lowbit.calibration`) or an estimator instance; per-tensor,
            per-channel or per-token granularity.
        method_options: options of that estimator, e.g. ``{"percentile": 99.9}``.
        scale_format: how the scales are stored (:func:`lowbit.formats.list_scale_formats`):
            ``"float32"`` (default), ``"float16"``, ``"bfloat16"``, ``"e8m0"`` (the MX
            formats' default and only one), ``"double8"``, ``"kquant6"``. The codes are
            computed with the scales as stored.
        **deprecated: estimator options as keywords (``percentile=99.9``), the old
            spelling of ``method_options=`` (DeprecationWarning).

    Returns:
        A QTensor holding packed codes, scales (decoded, and as stored) and zero points.

    Raises:
        InputTypeError: not a float array/tensor. EmptyInputError: no elements.
        NonFiniteError: NaN/Inf in the input (the message counts and locates them).
        QTypeError, GranularityError, OptionError: bad format, granularity or option
            (a mistyped keyword is an OptionError that suggests the right one).

    Example:
        >>> import numpy as np, lowbit
        >>> qt = lowbit.quantize(np.array([-1.0, 0.0, 2.0], np.float32), "uint8")
        >>> qt.codes.tolist(), int(qt.zero_point)
        ([0, 85, 255], 85)
        >>> lowbit.quantize(np.arange(8.0).reshape(2, 4), "int4", granularity="token").scale.tolist()
        [0.42857142857142855, 1.0]
        >>> lowbit.quantize(np.array([0.5, 1.5, 3.5]), "uint2", zero_point="float").dequantize().tolist()
        [0.5, 1.5, 3.5]
    """
    seed = _seed(rounding, rng, qtype)
    est = _range_estimator(method, method_options, deprecated, "quantize()")
    float_zp, zero_point = _zero_point_kind(zero_point)
    if float_zp:
        return _quantize_offset(x, qtype, granularity, symmetric, (scale, zero_point), est, scale_format,
                                (rounding, seed), out)
    flat, source, qt, gran, sym, layout, s, z, enc = _prepare(
        x, qtype, granularity, symmetric, scale, zero_point, est, scale_format
    )
    data = _codes_buffer(qt, flat.size, out)
    inv = (flat.dtype.type(1) / s.astype(flat.dtype)).reshape(-1)
    zpf = z.astype(flat.dtype).reshape(-1)
    if qt.is_grid:
        from lowbit._kernels.grid import grid_tables, quantize_grid_kernel

        _, mids, tie = grid_tables(qt)
        quantize_grid_kernel(flat, data, inv, mids, tie, *layout.dims, qt.bits)
        return QTensor(data, s, z.astype(qt.storage_dtype), qt, gran, sym, source, *enc)
    from lowbit._kernels import quantize_kernel

    quantize_kernel(
        flat, data, inv, zpf, *layout.dims, qt.qmin, qt.qmax, qt.bits, _mode(rounding, gran), seed
    )
    return QTensor(data, s, z.astype(qt.storage_dtype), qt, gran, sym, source, *enc)


def dequantize(qtensor: QTensor, *, out: np.ndarray | None = None) -> Any:
    """Turn a QTensor back into floats: ``(code - zero_point) * scale`` (see :meth:`QTensor.dequantize`).

    Args:
        qtensor: the result of :func:`quantize`.
        out: optional C-contiguous float32 (float64 for float64 sources) NumPy
            buffer with as many elements as the tensor (NumPy float32/64 sources only).

    Returns:
        The same kind (NumPy/torch), dtype and shape as the quantized input.

    Raises:
        InputTypeError: ``qtensor`` is not a QTensor. OptionError: ``out`` of the wrong
            dtype/size, or given for a torch or float16/bfloat16 source.

    Example:
        >>> import numpy as np, lowbit
        >>> lowbit.dequantize(lowbit.quantize(np.array([0.0, 0.5, 1.0]), "uint8")).tolist()
        [0.0, 0.5019607843137255, 1.0]
    """
    if not isinstance(qtensor, QTensor):
        raise InputTypeError(f"dequantize expects a QTensor, got {type(qtensor).__name__}")
    return qtensor.dequantize(out=out)


def fake_quantize(
    x: Any,
    qtype: str | QType = "int8",
    *,
    granularity: Granularity | str | None = None,
    symmetric: bool | None = None,
    rounding: str = "nearest",
    rng: Any = None,
    scale: Any = None,
    zero_point: Any = None,
    method: str | Any = "minmax",
    method_options: Mapping[str, Any] | None = None,
    scale_format: str | None = None,
    **deprecated: Any,
) -> Any:
    """Quantize and dequantize in one fused pass (no code array is kept).

    Arguments are those of :func:`quantize`; the result equals
    ``dequantize(quantize(x, ...))`` exactly.

    Returns:
        The same kind, dtype and shape as ``x``.

    Example:
        >>> import numpy as np, lowbit
        >>> lowbit.fake_quantize(np.array([0.3, -1.0], np.float32), "int2").tolist()
        [0.0, -1.0]
    """
    seed = _seed(rounding, rng, qtype)
    est = _range_estimator(method, method_options, deprecated, "fake_quantize()")
    float_zp, zero_point = _zero_point_kind(zero_point)
    if float_zp:
        return _quantize_offset(x, qtype, granularity, symmetric, (scale, zero_point), est, scale_format,
                                (rounding, seed), None).dequantize()
    flat, source, qt, gran, _, layout, s, z, _ = _prepare(
        x, qtype, granularity, symmetric, scale, zero_point, est, scale_format
    )
    sf = s.astype(flat.dtype).reshape(-1)
    inv = flat.dtype.type(1) / sf
    result = np.empty_like(flat)
    if qt.is_grid:
        from lowbit._kernels.grid import fake_quantize_grid_kernel, grid_tables

        grid, mids, tie = grid_tables(qt)
        fake_quantize_grid_kernel(
            flat, result, inv, mids, tie, sf, grid.astype(flat.dtype), *layout.dims
        )
        return restore(result, source)
    from lowbit._kernels import fake_quantize_kernel

    fake_quantize_kernel(
        flat, result, inv, z.astype(flat.dtype).reshape(-1), sf, z.astype(np.int32).reshape(-1),
        *layout.dims, qt.qmin, qt.qmax, _mode(rounding, gran), seed,
    )
    return restore(result, source)
