"""The lowbit checkpoint format: how one quantized tensor is laid out in safetensors (see docs/FORMAT.md).

A quantized tensor ``name`` is stored as its stored arrays, each a safetensors entry
``<name>.<key>``: ``data`` (codes, or packed bytes), the arrays of its scale format (``scale``,
``scale_f16``, ``scale_bf16``, ``scale_e8m0``, ``scale_codes`` + ``scale_block_scale`` +
``scale_mean``, or ``scale_codes`` + ``scale_super``) and, for affine formats, ``zero_point``.
Its description (format, granularity, scales, shape, original dtype, algorithm) goes into the
file's ``__metadata__["lowbit"]`` JSON under ``tensors[name]``, with everything a reader needs
without lowbit: the code range, the value table of grid formats, the fixed zero point of symmetric
ones and the names of the arrays.

Example:
    >>> import numpy as np, lowbit
    >>> qt = lowbit.quantize(np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8), "uint4", granularity="channel")
    >>> [(k, d, s) for k, d, s, _ in tensor_entries("w", qt)]
    [('w.data', 'U8', (8,)), ('w.scale', 'F32', (2,)), ('w.zero_point', 'U8', (2,))]
    >>> describe(qt)["granularity"], describe(qt)["zero_point"]
    ('channel', None)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lowbit.core import offset_dtype
from lowbit.errors import FileFormatError, LowbitError
from lowbit.formats import QType, get_qtype
from lowbit.formats.scales import scale_format_for
from lowbit.granularity import as_granularity, plan
from lowbit.io._safetensors import safetensors_dtype
from lowbit.qtensor import FORMAT_VERSION as QTENSOR_VERSION
from lowbit.qtensor import QTensor

__all__ = ["FORMAT_VERSION", "META_KEY", "description", "describe", "tensor_entries", "planned_entries",
           "read_qtensor"]

FORMAT_VERSION = 1
META_KEY = "lowbit"
_SEMANTIC = {"scale_bf16": "BF16"}  # stored arrays whose uint16 bits are bfloat16 values


def _fixed_zero_point(qt: QType) -> int:
    from lowbit.qparams import symmetric_divisor

    return 0 if qt.is_grid else symmetric_divisor(qt)[0]


def _array_dtype(key: str, array: np.ndarray) -> str:
    return _SEMANTIC.get(key, safetensors_dtype(array))


def description(qtype: str | QType, granularity: Any, symmetric: bool, scale_format: str, shape: Any, dtype: str,
                algorithm: str | None = "rtn", options: Mapping[str, Any] | None = None, *,
                zero_point_kind: str = "int") -> dict[str, Any]:
    """The JSON description of a quantized tensor (``tensors[name]`` of the metadata), without ``arrays``.

    ``zero_point_kind="float"`` (a float zero point, ``x = code * scale + zero_point``) adds
    ``"zero_point_kind": "float"``; integer zero points leave the key out.

    Example:
        >>> d = description("nf4", "group:64", True, "float32", [2, 64], "bfloat16")
        >>> d["kind"], d["bits"], len(d["grid"]), d["zero_point"]
        ('codebook', 4, 16, 0)
    """
    q = get_qtype(qtype)
    return {
        "qtype": q.name, "kind": q.kind, "bits": q.bits, "signed": q.signed, "qmin": q.qmin, "qmax": q.qmax,
        "grid": None if q.grid is None else [float(v) for v in q.grid], "implicit_exp": q.implicit_exp,
        "granularity": str(as_granularity(granularity)), "symmetric": bool(symmetric),
        "zero_point": _fixed_zero_point(q) if symmetric else None,
        "scale_format": scale_format, "shape": [int(s) for s in shape], "dtype": dtype,
        "algorithm": algorithm, "algorithm_options": dict(options or {}),
        **({"zero_point_kind": "float"} if zero_point_kind == "float" else {}),
    }


def describe(qt: QTensor, algorithm: str | None = "rtn", options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:func:`description` of a QTensor.

    Example:
        >>> import numpy as np, lowbit
        >>> describe(lowbit.quantize(np.ones(8, np.float32), "uint4"))["zero_point"] is None  # affine: stored
        True
    """
    return description(qt.qtype, qt.granularity, qt.symmetric, qt.scale_format, qt.shape, qt.dtype, algorithm,
                       options, zero_point_kind="float" if qt.float_zero_point else "int")


def tensor_entries(name: str, qt: QTensor) -> list[tuple[str, str, tuple[int, ...], np.ndarray]]:
    """``(entry name, safetensors dtype, shape, array)`` of every stored array of ``qt``, in file order.

    Example:
        >>> import numpy as np, lowbit
        >>> qt = lowbit.quantize(np.ones((2, 64), np.float32), "nf4", granularity="group:64", scale_format="double8")
        >>> [k for k, _, _, _ in tensor_entries("w", qt)]
        ['w.data', 'w.scale_codes', 'w.scale_block_scale', 'w.scale_mean']
    """
    arrays: dict[str, np.ndarray] = {"data": qt.data, **qt.stored_scale}
    if not qt.symmetric:
        arrays["zero_point"] = qt.zero_point
    return [(f"{name}.{key}", _array_dtype(key, np.asarray(a)), tuple(np.shape(a)), np.asarray(a))
            for key, a in arrays.items()]


def planned_entries(name: str, info: Mapping[str, Any]) -> list[tuple[str, str, tuple[int, ...]]]:
    """The entries a tensor described by ``info`` will have, known before it is quantized (for streaming).

    Example:
        >>> planned_entries("w", {"qtype": "int4", "granularity": "group:32", "symmetric": True,
        ...                       "scale_format": "float16", "shape": [4, 64], "dtype": "bfloat16"})
        [('w.data', 'U8', (128,)), ('w.scale_f16', 'F16', (4, 2))]
    """
    qt = get_qtype(info["qtype"])
    shape = tuple(int(s) for s in info["shape"])
    layout = plan(as_granularity(info["granularity"]), shape)
    numel = int(np.prod(shape, dtype=np.int64))
    data_dtype = np.dtype(np.uint8) if qt.packed else qt.storage_dtype
    data_len = qt.packed_nbytes(numel) if qt.packed else numel
    out: list[tuple[str, str, tuple[int, ...]]] = [
        (f"{name}.data", safetensors_dtype(np.empty(0, data_dtype)), (data_len,))]
    sdt = np.dtype(np.float64 if info["dtype"] == "float64" else np.float32)
    fmt = scale_format_for(qt, info["scale_format"])
    for key, (dtype, shp) in fmt.specs(layout.param_shape, sdt).items():
        out.append((f"{name}.{key}", _SEMANTIC.get(key, safetensors_dtype(np.empty(0, dtype))), tuple(shp)))
    if not info["symmetric"]:
        zdt = offset_dtype(fmt.name, sdt) if info.get("zero_point_kind") == "float" else qt.storage_dtype
        out.append((f"{name}.zero_point", safetensors_dtype(np.empty(0, zdt)), layout.param_shape))
    return out



def _resolve_qtype(info: Mapping[str, Any]) -> QType:
    """The registered format a description names; a codebook this lowbit lacks is registered from its table."""
    name = info.get("qtype")
    try:
        qt = get_qtype(name)  # type: ignore[arg-type]  # a bad value raises QTypeError
    except LowbitError:
        if info.get("kind") != "codebook" or not info.get("grid"):
            raise
        from lowbit.formats import Codebook

        return Codebook(str(name), info["grid"])
    if info.get("grid") is not None and qt.grid is not None and list(map(float, qt.grid)) != list(info["grid"]):
        raise FileFormatError(f"qtype {name!r}: the file's value table differs from this lowbit's {name}")
    return qt


def read_qtensor(name: str, info: Mapping[str, Any], fetch: Callable[[str], np.ndarray]) -> QTensor:
    """Rebuild a quantized tensor from its description and its arrays (``fetch(entry name)``), validated.

    Raises:
        FileFormatError: a description or an array that does not fit (the message names the tensor).

    Example:
        >>> import numpy as np, lowbit
        >>> qt = lowbit.quantize(np.arange(8, dtype=np.float32), "int4")
        >>> arrays = {k: a for k, _, _, a in tensor_entries("w", qt)}
        >>> read_qtensor("w", describe(qt), arrays.__getitem__).codes.tolist() == qt.codes.tolist()
        True
    """
    try:
        qt = _resolve_qtype(info)
        shape = _shape(info["shape"])
        layout = plan(as_granularity(info["granularity"]), tuple(shape))
        fmt = scale_format_for(qt, info["scale_format"])
        sdt = np.dtype(np.float64 if info["dtype"] == "float64" else np.float32)
        if not isinstance(info["symmetric"], bool):
            raise FileFormatError(f"'symmetric' must be true or false, got {info['symmetric']!r:.60}")
        d: dict[str, Any] = {"data": _data(np.asarray(fetch(f"{name}.data")), qt, shape)}
        for key in fmt.specs(layout.param_shape, sdt):
            d[key] = np.asarray(fetch(f"{name}.{key}"))
        if info["symmetric"]:  # the data's size was checked: param_shape holds at most one block per code
            d["zero_point"] = np.full(layout.param_shape, int(info.get("zero_point") or 0), qt.storage_dtype)
        else:
            d["zero_point"] = np.asarray(fetch(f"{name}.zero_point"))
        d["meta"] = {"format_version": QTENSOR_VERSION, "qtype": qt.name, "granularity": info["granularity"],
                     "symmetric": info["symmetric"], "kind": "numpy", "dtype": info["dtype"],
                     "shape": shape, "scale_format": fmt.name,
                     "zero_point_kind": info.get("zero_point_kind", "int")}
        return QTensor.from_dict(d)
    except KeyError as err:
        raise FileFormatError(f"quantized tensor {name!r}: its description or arrays lack {err}") from None
    except (TypeError, ValueError, AttributeError, OverflowError, IndexError) as err:  # LowbitErrors included
        raise FileFormatError(f"quantized tensor {name!r}: {err}") from None


def _shape(value: Any) -> list[int]:
    """A description's shape: a list of non-negative ints (never a string or floats read digit by digit)."""
    if not (isinstance(value, list) and len(value) <= 64
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)):
        raise FileFormatError(f"'shape' must be a list of non-negative ints, got {value!r:.80}")
    return value


def _data(data: np.ndarray, qt: QType, shape: list[int]) -> np.ndarray:
    """The codes array, after checking that it holds what ``shape`` needs (before anything is sized by the shape)."""
    numel = math.prod(shape)
    want = qt.packed_nbytes(numel) if qt.packed else numel
    if data.ndim != 1 or data.size != want:
        raise FileFormatError(f"its data has {data.size} items but {qt.name} x {tuple(shape)} needs {want}; the "
                              "file is corrupt")
    return data
