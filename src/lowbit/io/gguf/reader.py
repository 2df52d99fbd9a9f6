"""Read the tensors of a GGUF file as lowbit QTensors (quantized types) or float32 arrays.

Each block type becomes the lowbit scheme that holds it exactly, so ``dequantize()`` reproduces
gguf-py's (and llama.cpp's) values bit for bit:

=====  ==========================================================================
Q8_0   ``int8_full`` group:32, float16 scales
Q4_0   ``int4_full`` group:32, float16 scales (Q5_0: ``int5_full``)
Q4_1   ``uint4`` group:32, float16 scales and float16 minima (float zero point; Q5_1: ``uint5``)
Q4_K   ``uint4`` group:32, float32 sub-block scales ``d * sc`` and minima ``-dmin * m``
Q6_K   ``int6_full`` group:16, float32 sub-block scales ``d * sc``
=====  ==========================================================================

Their stored size is the GGUF type's own (:func:`gguf_bits_per_weight`), which for K-quants is less than
the QTensor's, whose sub-block scales are kept decoded.

Example:
    >>> tensors = read_gguf("smollm2-q4_0.gguf")  # doctest: +SKIP
    >>> tensors["blk.0.attn_q.weight"]  # doctest: +SKIP
    QTensor(int4_full, group:32, sym, shape=(576, 576), dtype=float32, scales=float16, nbytes=...)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lowbit._arrays import Source
from lowbit.errors import FileFormatError
from lowbit.formats import get_qtype
from lowbit.formats.scales import scale_format_for
from lowbit.granularity import PerGroup
from lowbit.io.gguf._blocks import LEGACY_TYPES, decode_legacy
from lowbit.io.gguf._types import BLOCK
from lowbit.qtensor import QTensor

__all__ = ["read_gguf", "iter_gguf", "gguf_bits_per_weight", "READABLE_TYPES"]

READABLE_TYPES = tuple(BLOCK)
_QTYPES = {"Q8_0": "int8_full", "Q4_0": "int4_full", "Q5_0": "int5_full", "Q4_1": "uint4", "Q5_1": "uint5"}


def gguf_bits_per_weight(type_name: str) -> float:
    """Stored bits per value of a GGUF type (scales included).

    Example:
        >>> gguf_bits_per_weight("Q4_0"), gguf_bits_per_weight("Q4_K")
        (4.5, 4.5)
    """
    per, size = BLOCK[type_name]
    return 8.0 * size / per


def _qtensor(codes: np.ndarray, scale: np.ndarray, offset: np.ndarray | None, qtype: str, group: int,
             shape: tuple[int, ...], scale_format: str) -> QTensor:
    from lowbit._kernels import pack_codes

    qt = get_qtype(qtype)
    param_shape = (*shape[:-1], shape[-1] // group)
    scale = np.ascontiguousarray(scale, np.float32).reshape(param_shape)
    data = pack_codes(np.ascontiguousarray(codes).reshape(-1), qt.bits) if qt.packed \
        else np.ascontiguousarray(codes, qt.storage_dtype).reshape(-1)
    if offset is None:
        zero = np.zeros(param_shape, qt.storage_dtype)
    else:
        zero = np.ascontiguousarray(offset).reshape(param_shape)
    arrays = None
    if scale_format != "float32":
        arrays = scale_format_for(qt, scale_format).encode(scale, np.dtype(np.float32))
    result = QTensor(data, scale, zero, qt, PerGroup(group), offset is None, Source("numpy", "float32", shape),
                     scale_format, arrays)
    result._validate()
    return result


def _decode(raw: np.ndarray, type_name: str, shape: tuple[int, ...]) -> Any:
    if type_name == "F32":
        return raw.view(np.float32).reshape(shape).copy()
    if type_name == "F16":
        return raw.view(np.float16).reshape(shape).astype(np.float32)
    if type_name == "BF16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
    if type_name in LEGACY_TYPES:
        codes, d, m = decode_legacy(raw, type_name)
        return _qtensor(codes, d, None if m is None else m.astype(np.float16), _QTYPES[type_name], 32, shape,
                        "float16")
    from lowbit.io.gguf._kquants import decode_q4_k, decode_q6_k

    if type_name == "Q4_K":
        codes, scale, minimum = decode_q4_k(raw)
        return _qtensor(codes, scale, -minimum, "uint4", 32, shape, "float32")
    codes, scale = decode_q6_k(raw)
    return _qtensor(codes, scale, None, "int6_full", 16, shape, "float32")


def iter_gguf(path: str | os.PathLike[str]) -> Iterator[tuple[str, str, Any]]:
    """``(name, GGUF type, QTensor or float32 array)`` for each tensor of a GGUF file, one at a time.

    Raises:
        FileFormatError: not a readable GGUF file, or a tensor type lowbit does not read (the message
            names it and lists the readable types).
    """
    reader = _open(path)
    for t in reader.tensors:
        type_name = t.tensor_type.name
        if type_name not in BLOCK:
            raise FileFormatError(f"{path}: tensor {t.name!r} is {type_name}; lowbit reads "
                                  f"{', '.join(READABLE_TYPES)}")
        shape = tuple(int(s) for s in reversed(t.shape.tolist()))
        raw = np.ascontiguousarray(t.data).reshape(-1).view(np.uint8)
        per, size = BLOCK[type_name]
        if raw.size != int(np.prod(shape, dtype=np.int64)) // per * size:
            raise FileFormatError(f"{path}: tensor {t.name!r} holds {raw.size} bytes, not what {type_name} "
                                  f"{shape} needs")
        yield t.name, type_name, _decode(raw, type_name, shape)


def _open(path: str | os.PathLike[str]) -> Any:
    from gguf import GGUFReader

    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"{p}: no such GGUF file")
    try:
        return GGUFReader(p)
    except (ValueError, OSError, IndexError, KeyError, TypeError) as err:
        raise FileFormatError(f"{p}: not a readable GGUF file ({type(err).__name__}: {err})") from None


def read_gguf(path: str | os.PathLike[str]) -> dict[str, Any]:
    """All tensors of a GGUF file by their GGUF names: QTensors for quantized types, float32 arrays otherwise.

    Raises:
        FileFormatError: see :func:`iter_gguf`.

    Example:
        >>> import lowbit
        >>> lowbit.load("smollm2-q4_0.gguf")["token_embd.weight"].qtype.name  # doctest: +SKIP
        'int4_full'
    """
    return {name: value for name, _, value in iter_gguf(path)}
