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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowbit._arrays import Source, check_out, restore, scale_dtype
from lowbit.errors import FileFormatError, LowbitError, OptionError
from lowbit.formats import QType, get_qtype
from lowbit.formats.scales import DEFAULT_SCALE_FORMAT, decode_scales, scale_format_for
from lowbit.granularity import Granularity, plan

__all__ = ["QTensor"]

FORMAT_VERSION = 3
_OLD_NAMES = {"fp4": "fp4_bnb"}  # qtype names of format versions 1-2 that now mean another format
_DICT_KEYS = ("data", "zero_point", "meta")


@dataclass(frozen=True, eq=False)
class QTensor:
    """Quantized codes with everything needed to turn them back into numbers.

    Attributes:
        data: 1-D storage: codes for 8/16-bit formats, packed bytes otherwise.
        scale: per-block scales as the kernels use them (decoded from the stored
            form), shaped ``()`` (tensor), ``(C,)`` (channel) or like the tensor with
            the grouped axis divided by the group size.
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
        return int(np.prod(self.shape, dtype=np.int64))

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

            grid = grid_tables(qt)[0].astype(sdt)
            dequantize_grid_kernel(self.data, n, result, scale, grid, layout.Q, layout.R, layout.T, qt.bits)
            return restore(result, src)
        if self.float_zero_point:
            from lowbit._kernels.quant import dequantize_offset_kernel

            offset = self.zero_point.astype(sdt).reshape(-1)
            dequantize_offset_kernel(self.data, n, result, scale, offset, layout.Q, layout.R, layout.T, qt.bits,
                                     qt.signed)
            return restore(result, src)
        from lowbit._kernels import dequantize_kernel

        zp = self.zero_point.astype(np.int32).reshape(-1)
        dequantize_kernel(self.data, n, result, scale, zp, layout.Q, layout.R, layout.T, qt.bits, qt.signed)
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

        Reads format versions 1 to 3; the scales are decoded from the stored arrays.

        Raises:
            FileFormatError: a field is missing, of the wrong size, dtype or scale format,
                or from a newer format.

        Example:
            >>> import lowbit, numpy as np
            >>> qt = lowbit.quantize(np.arange(4.0), "uint8")
            >>> QTensor.from_dict(qt.to_dict()).codes.tolist()
            [0, 85, 170, 255]
        """
        from lowbit.granularity import parse_granularity

        try:
            meta = d["meta"]
            version = int(meta["format_version"])
            if version > FORMAT_VERSION:
                raise FileFormatError(f"QTensor format version {meta['format_version']} is newer than this lowbit")
            name = str(meta["qtype"])
            qtype = get_qtype(_OLD_NAMES.get(name, name) if version < 3 else name)
            gran = parse_granularity(meta["granularity"])
            shape = tuple(int(s) for s in meta["shape"])
            source = Source(str(meta["kind"]), str(meta["dtype"]), shape)
            if version == 1:
                scale, fmt_name, arrays = np.asarray(d["scale"]), DEFAULT_SCALE_FORMAT, None
            else:
                scale, fmt_name, arrays = cls._read_scales(d, meta, qtype, gran, shape, source)
            qt = cls(np.asarray(d["data"]), scale, np.asarray(d["zero_point"]), qtype, gran,
                     bool(meta["symmetric"]), source, fmt_name, arrays)
            if qt.float_zero_point != (meta.get("zero_point_kind", "int") == "float"):
                raise FileFormatError(f"zero_point is {qt.zero_point.dtype} but meta zero_point_kind is "
                                      f"{meta.get('zero_point_kind', 'int')!r}")
            qt._validate()
        except FileFormatError:
            raise
        except (KeyError, TypeError, ValueError) as err:  # LowbitError subclasses included
            raise FileFormatError(f"not a valid QTensor dictionary: {err}") from None
        return qt

    @staticmethod
    def _read_scales(
        d: dict[str, Any], meta: dict[str, Any], qtype: QType, gran: Granularity, shape: tuple[int, ...],
        source: Source,
    ) -> tuple[np.ndarray, str, dict[str, np.ndarray] | None]:
        """(decoded scales, format name, stored arrays) of a version-2 dict, each array checked."""
        fmt = scale_format_for(qtype, str(meta["scale_format"]))
        param_shape = plan(gran, shape).param_shape
        sdt = scale_dtype(source)
        specs = fmt.specs(param_shape, sdt)
        arrays = {key: np.asarray(d[key]) for key in specs}
        bad = [f"{k} is {a.dtype}{a.shape} (want {specs[k][0]}{specs[k][1]})" for k, a in arrays.items()
               if a.dtype != specs[k][0] or a.shape != specs[k][1]]
        extra = sorted(set(d) - set(_DICT_KEYS) - set(specs))
        if bad or extra:
            extra_text = [f"unexpected entries {extra} for scale format {fmt.name}"] if extra else []
            raise FileFormatError(f"QTensor {shape} {gran} {qtype.name}: " + "; ".join(bad + extra_text))
        scale = decode_scales(arrays, qtype, fmt, param_shape, sdt)
        return scale, fmt.name, None if fmt.name == DEFAULT_SCALE_FORMAT else arrays

    def _validate(self) -> None:
        """Check every array against the shape, granularity and format (raises FileFormatError)."""
        layout = plan(self.granularity, self.shape)
        data_dtype = np.dtype(np.uint8) if self.qtype.packed else self.qtype.storage_dtype
        want = self.qtype.packed_nbytes(self.numel) if self.qtype.packed else self.numel
        problems = []
        if self.data.dtype != data_dtype or self.data.ndim != 1 or self.data.size != want:
            problems.append(f"data is {self.data.dtype}{self.data.shape} (want {data_dtype} ({want},))")
        if self.scale.shape != layout.param_shape or self.scale.dtype.kind != "f":
            problems.append(f"scale is {self.scale.dtype}{self.scale.shape} (want float {layout.param_shape})")
        problems += self._zero_point_problems(layout.param_shape)
        try:
            fmt = scale_format_for(self.qtype, self.scale_format)
        except LowbitError as err:
            problems.append(str(err))
        else:
            specs = fmt.specs(layout.param_shape, self.scale.dtype)
            stored = self.stored_scale
            if set(stored) != set(specs):
                problems.append(f"stored scales are {sorted(stored)} (want {sorted(specs)} for {fmt.name})")
        if self.qtype.is_mx and np.any(self.zero_point != 0):
            problems.append(f"zero_point must be 0 for {self.qtype.name}")
        if problems:
            raise FileFormatError(f"QTensor {self.shape} {self.granularity} {self.qtype.name}: " + "; ".join(problems))

    def _zero_point_problems(self, param_shape: tuple[int, ...]) -> list[str]:
        """What is wrong with the zero points (integer codes, or float offsets of an unsigned affine format)."""
        zp = self.zero_point
        if self.float_zero_point:
            ok = zp.dtype in (np.float16, np.float32, np.float64) and not self.symmetric
            ok = ok and self.qtype.kind == "int" and not self.qtype.signed and bool(np.all(np.isfinite(zp)))
            want = "finite float offsets of an unsigned affine format"
        else:
            ok, want = zp.dtype == self.qtype.storage_dtype, str(self.qtype.storage_dtype)
        if ok and zp.shape == param_shape:
            return []
        return [f"zero_point is {zp.dtype}{zp.shape} (want {want} {param_shape})"]

    def __repr__(self) -> str:
        kind = "sym" if self.symmetric else "affine, float zero point" if self.float_zero_point else "affine"
        fmt = "" if self.scale_format == DEFAULT_SCALE_FORMAT else f", scales={self.scale_format}"
        return (
            f"QTensor({self.qtype.name}, {self.granularity}, {kind}, shape={self.shape}, "
            f"dtype={self.dtype}{fmt}, nbytes={self.nbytes})"
        )

