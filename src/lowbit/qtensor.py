"""QTensor: the result of :func:`lowbit.quantize`.

Example:
    >>> import numpy as np, lowbit
    >>> qt = lowbit.quantize(np.array([0.25, -1.0, 1.0], np.float32), "int4")
    >>> qt.codes.tolist(), qt.nbytes
    ([2, -7, 7], 6)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lowbit._arrays import Source
from lowbit.errors import FileFormatError
from lowbit.formats import QType, get_qtype
from lowbit.granularity import Granularity, plan

__all__ = ["QTensor"]

FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class QTensor:
    """Quantized codes with everything needed to turn them back into numbers.

    Attributes:
        data: 1-D storage: codes for 8/16-bit formats, packed bytes otherwise.
        scale: per-block scales, shaped ``()`` (tensor), ``(C,)`` (channel) or
            like the tensor with the grouped axis divided by the group size.
        zero_point: per-block zero points in the format's storage dtype, same shape.
        qtype: the number format.
        granularity: how blocks were formed.
        symmetric: scale-only quantization (zero points are fixed and not stored).
        source: kind ("numpy"/"torch"), dtype and shape of the original tensor.
    """

    data: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    qtype: QType
    granularity: Granularity
    symmetric: bool
    source: Source

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
        from lowbit.kernels import unpack_codes

        return unpack_codes(self.data, self.numel, self.qtype.bits, self.qtype.signed).reshape(self.shape)

    @property
    def nbytes(self) -> int:
        """Real storage in bytes: packed codes + scales (+ zero points when affine)."""
        total = self.data.nbytes + self.scale.nbytes
        return total if self.symmetric else total + self.zero_point.nbytes

    @property
    def bits_per_element(self) -> float:
        """Storage bits per element, scales and zero points included."""
        return 8.0 * self.nbytes / self.numel

    def dequantize(self, out: np.ndarray | None = None) -> Any:
        """Reconstruct the tensor (same kind, dtype and shape as the input).

        Args:
            out: optional float32/float64 NumPy buffer with ``numel`` elements
                (only used when the original was a NumPy float32/float64 array).

        Example:
            >>> import lowbit, numpy as np
            >>> lowbit.quantize(np.array([1.0, -2.0]), "int8").dequantize().round(3).tolist()
            [1.008, -2.0]
        """
        from lowbit.core import dequantize

        return dequantize(self, out=out)

    def to_dict(self) -> dict[str, Any]:
        """Arrays and plain metadata for serialization (e.g. with safetensors).

        Example:
            >>> import lowbit, numpy as np
            >>> d = lowbit.quantize(np.ones(4, np.float32), "uint4").to_dict()
            >>> sorted(d["meta"])[:3]
            ['dtype', 'format_version', 'granularity']
        """
        return {
            "data": self.data,
            "scale": self.scale,
            "zero_point": self.zero_point,
            "meta": {
                "format_version": FORMAT_VERSION,
                "qtype": self.qtype.name,
                "granularity": str(self.granularity),
                "symmetric": self.symmetric,
                "kind": self.source.kind,
                "dtype": self.source.dtype,
                "shape": list(self.shape),
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QTensor:
        """Rebuild a QTensor written by :meth:`to_dict`, validating every field.

        Raises:
            FileFormatError: a field is missing, of the wrong size, or from a newer format.

        Example:
            >>> import lowbit, numpy as np
            >>> qt = lowbit.quantize(np.arange(4.0), "uint8")
            >>> QTensor.from_dict(qt.to_dict()).codes.tolist()
            [0, 85, 170, 255]
        """
        from lowbit.granularity import parse_granularity

        try:
            meta = d["meta"]
            if int(meta["format_version"]) > FORMAT_VERSION:
                raise FileFormatError(f"QTensor format version {meta['format_version']} is newer than this lowbit")
            qtype = get_qtype(meta["qtype"])
            gran = parse_granularity(meta["granularity"])
            shape = tuple(int(s) for s in meta["shape"])
            source = Source(str(meta["kind"]), str(meta["dtype"]), shape)
            qt = cls(np.asarray(d["data"]), np.asarray(d["scale"]), np.asarray(d["zero_point"]),
                     qtype, gran, bool(meta["symmetric"]), source)
            qt._validate()
        except FileFormatError:
            raise
        except (KeyError, TypeError, ValueError) as err:  # LowbitError subclasses included
            raise FileFormatError(f"not a valid QTensor dictionary: {err}") from None
        return qt

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
        if self.zero_point.shape != layout.param_shape or self.zero_point.dtype != self.qtype.storage_dtype:
            problems.append(
                f"zero_point is {self.zero_point.dtype}{self.zero_point.shape} "
                f"(want {self.qtype.storage_dtype} {layout.param_shape})"
            )
        if problems:
            raise FileFormatError(f"QTensor {self.shape} {self.granularity} {self.qtype.name}: " + "; ".join(problems))

    def __repr__(self) -> str:
        kind = "sym" if self.symmetric else "affine"
        return (
            f"QTensor({self.qtype.name}, {self.granularity}, {kind}, shape={self.shape}, "
            f"dtype={self.dtype}, nbytes={self.nbytes})"
        )

