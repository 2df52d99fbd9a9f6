"""QTensor: the result of :func:`lowbit.quantize`.

Serialized layout (``to_dict``), format version 3: ``data`` (codes or packed
bytes), ``zero_point``, the stored scale arrays of the scale format (``scale``
for float32; ``scale_e8m0``, ``scale_codes`` ... for the others, see
:mod:`lowbit.formats.scales`) and ``meta`` (plain JSON, with ``scale_format``;
``qtype`` is the format's canonical name, never an alias).  Versions 1 (float32
``scale``, no ``scale_format``) and 2 are still read; in them ``"fp4"`` meant
bitsandbytes' table, now ``fp4_bnb`` (``fp4`` is the OCP E2M1 float since version 3).

Example:
    >>> import numpy as np, lowbit
    >>> qt = lowbit.quantize(np.array([0.25, -1.0, 1.0], np.float32), "int4")
    >>> qt.codes.tolist(), qt.nbytes
    ([2, -7, 7], 6)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowbit._arrays import FLOAT_DTYPES, Source, check_out, restore, scale_dtype
from lowbit.errors import FileFormatError, LowbitError, OptionError
from lowbit.formats import QType, get_qtype
from lowbit.formats.scales import DEFAULT_SCALE_FORMAT, decode_scales, scale_format_for
from lowbit.granularity import Granularity, parse_granularity, plan

__all__ = ["QTensor"]

FORMAT_VERSION = 3
_OLD_NAMES = {"fp4": "fp4_bnb"}  # qtype names of format versions 1-2 that now mean another format
_DICT_KEYS = ("data", "zero_point", "meta")
_KINDS = ("numpy", "torch")
_CHUNK = 1 << 20  # bytes of packed codes unpacked at a time when codes are range-checked


@dataclass(frozen=True, eq=False)
class QTensor:
    """Quantized codes with everything needed to turn them back into numbers.

    Attributes:
        data: 1-D storage: codes for 8/16-bit formats, packed bytes otherwise.
        scale: per-block scales as the kernels use them (decoded from the stored
            form), shaped ``()`` (tensor), ``(C,)`` (channel) or like the tensor with
            the grouped axis replaced by its group count, ``ceil(length / size)`` (the last group
            may be shorter).
        zero_point: per-block zero points in the format's storage dtype, same shape; or,
            for a float zero point (``quantize(..., zero_point="float")``), the per-block
            float offsets (float16/float32/float64): ``x = code * scale + offset``.
        qtype: the number format.
        granularity: how blocks were formed.
        symmetric: scale-only quantization (zero points are fixed and not stored).
        source: kind ("numpy"/"torch"), dtype and shape of the original tensor.
        scale_format: name of the scale format the scales are stored in.
        scale_arrays: the stored (encoded) scale arrays; None for ``"float32"``,
            whose stored form is ``scale`` itself.

    Every QTensor is checked when it is built, in O(number of blocks), before a kernel can touch
    its arrays: ``data`` holds exactly the bytes the shape needs, scales and zero points have the
    block layout's shape, scales are finite (and positive, except the signed full-range and
    float-offset formats that hold GGUF blocks, where llama.cpp stores negative and zero scales),
    integer zero points lie in ``[qmin, qmax]``.

    Raises:
        FileFormatError: an array or field that does not fit (the message lists every problem).

    Example:
        >>> import numpy as np, lowbit
        >>> from lowbit._arrays import Source
        >>> QTensor(np.zeros(1, np.uint8), np.ones(()), np.zeros((), np.int8), lowbit.get_qtype("int4"),
        ...         lowbit.PerTensor(), True, Source("numpy", "float32", (10,)))
        Traceback (most recent call last):
        ...
        lowbit.errors.FileFormatError: QTensor (10,) tensor int4: data is uint8(1,) (want uint8 (5,))
    """

    data: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    qtype: QType
    granularity: Granularity
    symmetric: bool
    source: Source
    scale_format: str = DEFAULT_SCALE_FORMAT
    scale_arrays: Mapping[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        if self.scale_arrays is None and self.scale_format != DEFAULT_SCALE_FORMAT:
            raise OptionError(
                f"a QTensor with scale_format={self.scale_format!r} needs its stored scale arrays "
                "(scale_arrays=); only float32 scales are stored as `scale` itself"
            )
        self._validate()

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the original tensor."""
        return self.source.shape

    @property
    def dtype(self) -> str:
        """Name of the original dtype (``"float32"``, ``"bfloat16"``, ...)."""
        return self.source.dtype

    @property
    def numel(self) -> int:
        """Number of quantized elements."""
        return math.prod(self.shape)

    @property
    def codes(self) -> np.ndarray:
        """Unpacked integer codes with the original shape (storage dtype of the format)."""
        if not self.qtype.packed:
            return self.data.reshape(self.shape)
        from lowbit._kernels import unpack_codes

        return unpack_codes(self.data, self.numel, self.qtype.bits, self.qtype.signed).reshape(self.shape)

    @property
    def float_zero_point(self) -> bool:
        """Whether the zero points are float offsets (``x = code * scale + offset``, GGUF Q4_1's rule).

        Example:
            >>> import lowbit, numpy as np
            >>> lowbit.quantize(np.arange(4.0), "uint4", zero_point="float").float_zero_point
            True
        """
        return self.zero_point.dtype.kind == "f"

    @property
    def stored_scale(self) -> dict[str, np.ndarray]:
        """The scale arrays as stored in ``scale_format`` (``{"scale": scale}`` for float32).

        Example:
            >>> import lowbit, numpy as np
            >>> qt = lowbit.quantize(np.ones(64, np.float32), "mxfp4")
            >>> qt.stored_scale["scale_e8m0"].tolist(), qt.scale.tolist()
            ([125, 125], [0.25, 0.25])
        """
        if self.scale_arrays is None:
            return {"scale": self.scale}
        return dict(self.scale_arrays)

    @property
    def nbytes(self) -> int:
        """Real storage in bytes: packed codes + stored scales (+ zero points when affine)."""
        total = self.data.nbytes + sum(a.nbytes for a in self.stored_scale.values())
        return total if self.symmetric else total + self.zero_point.nbytes

    @property
    def bits_per_element(self) -> float:
        """Storage bits per element (bits/weight), stored scales and zero points included.

        Example:
            >>> import lowbit, numpy as np
            >>> w = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
            >>> lowbit.quantize(w, "nf4", granularity=lowbit.PerGroup(64), scale_format="double8").bits_per_element
            4.12890625
        """
        return 8.0 * self.nbytes / self.numel

    def dequantize(self, out: np.ndarray | None = None) -> Any:
        """Reconstruct the tensor, ``(code - zero_point) * scale``, in one fused pass.

        Args:
            out: optional C-contiguous float32 (float64 for float64 sources) NumPy
                buffer with ``numel`` elements (NumPy float32/float64 sources only).

        Returns:
            The same kind (NumPy/torch), dtype and shape as the quantized input.

        Raises:
            OptionError: ``out`` of the wrong dtype/size, or given for a torch or
                float16/bfloat16 source.

        Example:
            >>> import lowbit, numpy as np
            >>> lowbit.quantize(np.array([1.0, -2.0]), "int8").dequantize().round(3).tolist()
            [1.008, -2.0]
        """
        src, qt = self.source, self.qtype
        layout = plan(self.granularity, src.shape)
        sdt = scale_dtype(src)
        n = self.numel
        if out is not None and (src.kind != "numpy" or src.dtype not in ("float32", "float64")):
            raise OptionError(
                f"out= holds the result only when it is a NumPy float32/float64 array; this QTensor "
                f"restores a {src.kind} {src.dtype} tensor, so call dequantize() without out="
            )
        result = np.empty(n, sdt) if out is None else check_out(out, sdt, n, "dequantize")
        scale = self.scale.astype(sdt).reshape(-1)
        if qt.is_grid:
            from lowbit._kernels.grid import dequantize_grid_kernel, grid_tables

            grid = _padded_grid(grid_tables(qt)[0].astype(sdt), qt.bits)
            dequantize_grid_kernel(self.data, n, result, scale, grid, *layout.dims, qt.bits)
            return restore(result, src)
        if self.float_zero_point:
            from lowbit._kernels.quant import dequantize_offset_kernel

            offset = self.zero_point.astype(sdt).reshape(-1)
            dequantize_offset_kernel(self.data, n, result, scale, offset, *layout.dims, qt.bits,
                                     qt.signed)
            return restore(result, src)
        from lowbit._kernels import dequantize_kernel

        zp = self.zero_point.astype(np.int32).reshape(-1)
        dequantize_kernel(self.data, n, result, scale, zp, *layout.dims, qt.bits, qt.signed)
        return restore(result, src)

    def to_dict(self) -> dict[str, Any]:
        """Arrays and plain metadata for serialization (e.g. with safetensors).

        Example:
            >>> import lowbit, numpy as np
            >>> d = lowbit.quantize(np.ones(4, np.float32), "uint4").to_dict()
            >>> sorted(d["meta"])[:3], sorted(d)
            (['dtype', 'format_version', 'granularity'], ['data', 'meta', 'scale', 'zero_point'])
        """
        return {
            "data": self.data,
            **self.stored_scale,
            "zero_point": self.zero_point,
            "meta": {
                "format_version": FORMAT_VERSION,
                "qtype": self.qtype.name,
                "granularity": str(self.granularity),
                "symmetric": self.symmetric,
                "kind": self.source.kind,
                "dtype": self.source.dtype,
                "shape": list(self.shape),
                "scale_format": self.scale_format,
                **({"zero_point_kind": "float"} if self.float_zero_point else {}),
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QTensor:
        """Rebuild a QTensor written by :meth:`to_dict`, validating every field.

        Reads format versions 1 to 3; the scales are decoded from the stored arrays. Besides the
        checks every QTensor gets, codes of grid formats must index their value table.

        Raises:
            FileFormatError: a field is missing, of the wrong type, size, dtype or scale format, out of
                range (a format version that is not an integer 1..3, a kind other than numpy/torch,
                zero points outside the code range, non-finite or non-positive scales), or from a
                newer format.

        Example:
            >>> import lowbit, numpy as np
            >>> qt = lowbit.quantize(np.arange(4.0), "uint8")
            >>> QTensor.from_dict(qt.to_dict()).codes.tolist()
            [0, 85, 170, 255]
            >>> d = qt.to_dict(); d["meta"]["format_version"] = 2.5
            >>> QTensor.from_dict(d)
            Traceback (most recent call last):
            ...
            lowbit.errors.FileFormatError: QTensor meta: format_version must be an integer 1..3, got 2.5; ...
        """
        try:
            meta = _meta_of(d)
            version = meta["format_version"]
            name = meta["qtype"]
            qtype = get_qtype(_OLD_NAMES.get(name, name) if version < 3 else name)
            gran = parse_granularity(meta["granularity"])
            shape, source = meta["shape"], Source(meta["kind"], meta["dtype"], meta["shape"])
            if version == 1:
                scale, fmt_name, arrays = _array(d, "scale"), DEFAULT_SCALE_FORMAT, None
            else:
                scale, fmt_name, arrays = cls._read_scales(d, meta, qtype, gran, shape, source)
            qt = cls(_array(d, "data"), scale, _array(d, "zero_point"), qtype, gran, meta["symmetric"], source,
                     fmt_name, arrays)
            if qt.float_zero_point != (meta["zero_point_kind"] == "float"):
                raise FileFormatError(f"zero_point is {qt.zero_point.dtype} but meta zero_point_kind is "
                                      f"{meta['zero_point_kind']!r}")
            qt._check_codes()
        except FileFormatError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, IndexError) as err:
            # LowbitError subclasses included
            raise FileFormatError(f"not a valid QTensor dictionary: {err}") from None
        return qt

    @staticmethod
    def _read_scales(
        d: dict[str, Any], meta: dict[str, Any], qtype: QType, gran: Granularity, shape: tuple[int, ...],
        source: Source,
    ) -> tuple[np.ndarray, str, dict[str, np.ndarray] | None]:
        """(decoded scales, format name, stored arrays) of a version-2 dict, each array checked."""
        fmt = scale_format_for(qtype, meta["scale_format"])
        param_shape = plan(gran, shape).param_shape
        sdt = scale_dtype(source)
        specs = fmt.specs(param_shape, sdt)
        arrays = {key: _array(d, key) for key in specs}
        bad = [f"{k} is {a.dtype}{a.shape} (want {specs[k][0]}{specs[k][1]})" for k, a in arrays.items()
               if a.dtype != specs[k][0] or a.shape != specs[k][1]]
        extra = sorted(map(str, set(d) - set(_DICT_KEYS) - set(specs)))
        if bad or extra:
            extra_text = [f"unexpected entries {extra} for scale format {fmt.name}"] if extra else []
            raise FileFormatError(f"QTensor {shape} {gran} {qtype.name}: " + "; ".join(bad + extra_text))
        _check_stored_scales(arrays, _signs_free(qtype, meta["zero_point_kind"] == "float"), f"QTensor {shape}")
        scale = decode_scales(arrays, qtype, fmt, param_shape, sdt)  # (would replace NaN and <= 0 silently)
        return scale, fmt.name, None if fmt.name == DEFAULT_SCALE_FORMAT else arrays

    def _validate(self) -> None:
        """Check every field and array against the shape, granularity and format (raises FileFormatError).

        O(number of blocks): the codes themselves are not read (see :meth:`_check_codes`).
        """
        where = f"QTensor {self.shape} {self.granularity} {getattr(self.qtype, 'name', self.qtype)}"
        problems = _field_problems(self) or self._data_problems()
        if problems:  # the block layout is planned only for a shape the data really holds
            raise FileFormatError(f"{where}: " + "; ".join(problems))
        layout = plan(self.granularity, self.shape)
        problems = [*self._scale_problems(layout.param_shape), *self._zero_point_problems(layout.param_shape)]
        if problems:
            raise FileFormatError(f"{where}: " + "; ".join(problems))

    def _data_problems(self) -> list[str]:
        data_dtype = np.dtype(np.uint8) if self.qtype.packed else self.qtype.storage_dtype
        want = self.qtype.packed_nbytes(self.numel) if self.qtype.packed else self.numel
        if self.data.dtype != data_dtype or self.data.ndim != 1 or self.data.size != want:
            return [f"data is {self.data.dtype}{self.data.shape} (want {data_dtype} ({want},))"]
        return []

    def _scale_problems(self, param_shape: tuple[int, ...]) -> list[str]:
        """Shape, dtype and values of the scales, and the stored scale arrays' names and shapes."""
        scale = self.scale
        if scale.shape != param_shape or scale.dtype.kind != "f":
            return [f"scale is {scale.dtype}{scale.shape} (want float {param_shape})"]
        problems = _bad_scales(scale, _signs_free(self.qtype, self.float_zero_point))
        try:
            fmt = scale_format_for(self.qtype, self.scale_format)
        except LowbitError as err:
            return [*problems, str(err)]
        specs = fmt.specs(param_shape, scale.dtype)
        stored = self.stored_scale
        if set(stored) != set(specs):
            problems.append(f"stored scales are {sorted(stored)} (want {sorted(specs)} for {fmt.name})")
        elif any(np.shape(a) != specs[k][1] for k, a in stored.items()):
            shapes = {k: np.shape(a) for k, a in stored.items()}
            problems.append(f"stored scales have shapes {shapes} (want {({k: v[1] for k, v in specs.items()})})")
        return problems

    def _zero_point_problems(self, param_shape: tuple[int, ...]) -> list[str]:
        """What is wrong with the zero points (integer codes, or float offsets of an unsigned affine format)."""
        zp, qt = self.zero_point, self.qtype
        if self.float_zero_point:
            ok = zp.dtype in (np.float16, np.float32, np.float64) and not self.symmetric
            ok = ok and qt.kind == "int" and not qt.signed and bool(np.all(np.isfinite(zp)))
            want = "finite float offsets of an unsigned affine format"
        else:
            ok, want = zp.dtype == qt.storage_dtype, str(qt.storage_dtype)
        if not ok or zp.shape != param_shape:
            return [f"zero_point is {zp.dtype}{zp.shape} (want {want} {param_shape})"]
        if self.float_zero_point or zp.size == 0:
            return []
        low, high = (0, 0) if qt.is_mx else (qt.qmin, qt.qmax)
        lo, hi = int(zp.min()), int(zp.max())
        if lo < low or hi > high:
            bad = lo if lo < low else hi
            return [f"zero_point {bad} is outside {qt.name}'s codes [{low}, {high}]; the zero points are corrupt"]
        return []

    def _check_codes(self) -> None:
        """Refuse codes beyond a grid format's value table (O(numel), in bounded chunks; for data from files)."""
        qt = self.qtype
        if not qt.is_grid or qt.qmax >= (1 << qt.bits) - 1 or self.numel == 0:
            return
        from lowbit._kernels import unpack_codes

        step = _CHUNK * qt.bits  # bytes that hold a whole number of codes (8 * _CHUNK of them)
        for begin in range(0, self.data.size, step if qt.packed else _CHUNK):
            if qt.packed:
                count = min(8 * _CHUNK, self.numel - begin * 8 // qt.bits)
                codes = unpack_codes(self.data[begin : begin + step], count, qt.bits, False)
            else:
                codes = self.data[begin : begin + _CHUNK]
            top = int(codes.max())
            if top > qt.qmax:
                raise FileFormatError(f"QTensor {self.shape} {qt.name}: code {top} is outside the format's codes "
                                      f"0..{qt.qmax}; the data is corrupt")

    def __repr__(self) -> str:
        kind = "sym" if self.symmetric else "affine, float zero point" if self.float_zero_point else "affine"
        fmt = "" if self.scale_format == DEFAULT_SCALE_FORMAT else f", scales={self.scale_format}"
        return (
            f"QTensor({self.qtype.name}, {self.granularity}, {kind}, shape={self.shape}, "
            f"dtype={self.dtype}{fmt}, nbytes={self.nbytes})"
        )



def _padded_grid(grid: np.ndarray, bits: int) -> np.ndarray:
    """A grid format's value table padded to ``2**bits`` entries (repeating its last value), so that a code the
    format does not use can never index past the table in the (unchecked) kernels."""
    size = 1 << bits
    if grid.size >= size:
        return grid
    return np.concatenate([grid, np.full(size - grid.size, grid[-1], grid.dtype)])


def _array(d: Mapping[str, Any], key: str) -> np.ndarray:
    """``d[key]`` as a numeric NumPy array (never an object array, which could hold anything)."""
    a = np.asarray(d[key])
    if a.dtype.hasobject or a.dtype.kind not in "biuf":
        raise FileFormatError(f"QTensor {key!r} must be a numeric array, got dtype {a.dtype}")
    return a


def _int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _meta_of(d: Any) -> dict[str, Any]:
    """The ``meta`` of a QTensor dictionary, every field checked for its type and range (shape as a tuple)."""
    if not isinstance(d, Mapping) or not isinstance(d.get("meta"), Mapping):
        raise FileFormatError(f"a QTensor dictionary is a mapping with a 'meta' mapping, got {type(d).__name__}")
    meta = dict(d["meta"])
    missing = [k for k in ("format_version", "qtype", "granularity", "symmetric", "kind", "dtype", "shape")
               if k not in meta]
    if missing:
        raise FileFormatError(f"QTensor meta lacks {missing}; was it written by QTensor.to_dict()?")
    problems = []
    version = meta["format_version"]
    if not (_int(version) and 1 <= version <= FORMAT_VERSION):
        newer = " (newer than this lowbit; upgrade it)" if _int(version) and version > FORMAT_VERSION else ""
        problems.append(f"format_version must be an integer 1..{FORMAT_VERSION}, got {version!r}{newer}")
    shape = meta["shape"]
    if not (isinstance(shape, list | tuple) and len(shape) <= 64 and all(_int(s) and s >= 0 for s in shape)):
        problems.append(f"shape must be a list of non-negative ints, got {_brief(shape)}")
    for key, choices in (("kind", _KINDS), ("dtype", FLOAT_DTYPES)):
        if meta[key] not in choices:
            problems.append(f"{key} must be one of {', '.join(choices)}, got {_brief(meta[key])}")
    for key in ("qtype", "granularity", *(("scale_format",) if _int(version) and version > 1 else ())):
        if not isinstance(meta.get(key), str):
            problems.append(f"{key} must be a string, got {_brief(meta.get(key))}")
    if not isinstance(meta["symmetric"], bool):
        problems.append(f"symmetric must be true or false, got {_brief(meta['symmetric'])}")
    meta.setdefault("zero_point_kind", "int")
    if meta["zero_point_kind"] not in ("int", "float"):
        problems.append(f"zero_point_kind must be 'int' or 'float', got {_brief(meta['zero_point_kind'])}")
    if problems:
        raise FileFormatError("QTensor meta: " + "; ".join(problems) + "; rewrite it with QTensor.to_dict()")
    meta["shape"] = tuple(int(s) for s in shape)
    return meta


def _field_problems(qt: QTensor) -> list[str]:
    """Types of a QTensor's fields (checked before any is used) and the source's kind, dtype and shape."""
    problems = [f"{k} must be a NumPy array, got {type(getattr(qt, k)).__name__}"
                for k in ("data", "scale", "zero_point")
                if not isinstance(getattr(qt, k), np.ndarray | (np.generic if k != "data" else np.ndarray))]
    if not isinstance(qt.qtype, QType):
        problems.append(f"qtype must be a QType (lowbit.get_qtype(name)), got {type(qt.qtype).__name__}")
    if not isinstance(qt.granularity, Granularity):
        problems.append(f"granularity must be a Granularity, got {type(qt.granularity).__name__}")
    src = qt.source
    if not isinstance(src, Source):
        return [*problems, f"source must be a Source, got {type(src).__name__}"]
    if src.kind not in _KINDS:
        problems.append(f"source kind must be one of {', '.join(_KINDS)}, got {_brief(src.kind)}")
    if src.dtype not in FLOAT_DTYPES:
        problems.append(f"source dtype must be one of {', '.join(FLOAT_DTYPES)}, got {_brief(src.dtype)}")
    if not (isinstance(src.shape, tuple) and all(_int(s) and s >= 0 for s in src.shape)):
        problems.append(f"shape must be a tuple of non-negative ints, got {_brief(src.shape)}")
    return problems


def _brief(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _signs_free(qtype: QType, float_zero_point: bool) -> bool:
    """Whether scales may be negative or zero: llama.cpp stores ``d = max / -8`` (negative) in Q4_0/Q5_0/Q6_K
    and ``d = 0`` for all-zero or constant blocks, and read_gguf keeps them in the signed full-range and
    float-offset formats, whose values they reproduce exactly."""
    return float_zero_point or (qtype.kind == "int" and qtype.qmin == -qtype.qmax - 1)


def _bad_scales(scale: np.ndarray, signs_free: bool, what: str = "scale") -> list[str]:
    """A message for scales that are NaN/infinite (or, unless ``signs_free``, zero or negative)."""
    finite = np.isfinite(scale)
    bad = ~finite if signs_free else ~(finite & (scale > 0))
    if not bad.any():
        return []
    first = int(np.flatnonzero(bad.reshape(-1))[0])
    want = "finite" if signs_free else "finite and positive"
    return [f"{int(bad.sum())} {what} value(s) are not {want} (block {first} holds "
            f"{scale.reshape(-1)[first].item()!r}); the scales are corrupt"]


def _check_stored_scales(arrays: Mapping[str, np.ndarray], signs_free: bool, where: str) -> None:
    """Refuse stored float scales that decoding would silently replace (NaN, inf, <= 0) and E8M0's NaN code."""
    problems = []
    for key, a in arrays.items():
        if key in ("scale", "scale_f16"):
            problems += _bad_scales(a, signs_free, key)
        elif key == "scale_bf16":
            problems += _bad_scales((a.astype(np.uint32) << 16).view(np.float32), signs_free, key)
        elif key == "scale_e8m0" and a.size and int(a.max()) == 255:
            problems.append("scale_e8m0 holds the NaN code 255; the scales are corrupt")
    if problems:
        raise FileFormatError(f"{where}: " + "; ".join(problems))
