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

import math
import mmap
import os
import struct
import sys
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

__all__ = ["read_gguf", "iter_gguf", "check_gguf_header", "gguf_bits_per_weight", "READABLE_TYPES"]

READABLE_TYPES = tuple(BLOCK)
_MAX_DIMS = 4  # GGML_MAX_DIMS
# GGUF metadata value types -> struct codes
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
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

    The whole header is checked (:func:`check_gguf_header`) before gguf-py parses it, so a hostile file
    can neither make the parser loop over absurd counts nor describe tensors past the end of the file.

    Raises:
        FileFormatError: not a readable GGUF file (the message says which field is wrong), or a tensor
            type lowbit does not read (the message names it and lists the readable types).
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
        if not shape or shape[-1] % per or raw.size != math.prod(shape) // per * size:
            raise FileFormatError(f"{path}: tensor {t.name!r} holds {raw.size} bytes, not what {type_name} "
                                  f"{shape} needs (rows of a multiple of {per} values, {size} bytes per {per})")
        yield t.name, type_name, _decode(raw, type_name, shape)


def _open(path: str | os.PathLike[str]) -> Any:
    from gguf import GGUFReader

    p = Path(path)
    if p.is_dir():
        raise FileFormatError(f"{p} is a folder, not a GGUF file; give the .gguf file itself")
    if not p.is_file():
        raise FileFormatError(f"{p}: no such GGUF file")
    check_gguf_header(p)
    try:
        return GGUFReader(p)
    except Exception as err:  # gguf-py's parser on a header checked above: any failure means a bad file
        raise FileFormatError(f"{p}: not a readable GGUF file ({type(err).__name__}: {err})") from None


class _Cursor:
    """Bounded little- (or big-) endian reads from a memory map; reading past the end is a FileFormatError."""

    def __init__(self, buf: Any, size: int, path: Path) -> None:
        self.buf, self.size, self.path, self.pos, self.order = buf, size, path, 0, "<"

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise FileFormatError(f"{self.path}: {what} needs {n} bytes at offset {self.pos} but the file has "
                                  f"{self.size}; it is truncated or corrupt")

    def scalar(self, code: str, what: str) -> Any:
        n = struct.calcsize(code)
        self.need(n, what)
        (value,) = struct.unpack_from(self.order + code, self.buf, self.pos)
        self.pos += n
        return value

    def string(self, what: str) -> bytes:
        n = self.scalar("Q", f"the length of {what}")
        self.need(n, what)
        self.pos += n
        return bytes(self.buf[self.pos - n : self.pos])

    def skip_value(self, vtype: int, what: str, in_array: bool = False) -> Any:
        """Step over one metadata value (returning scalars); arrays' lengths are checked against the file first."""
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype], what)
        if vtype == _STRING:
            self.string(what)
            return None
        if vtype != _ARRAY or in_array:
            kind = "a nested array" if vtype == _ARRAY else f"unknown value type {vtype}"
            raise FileFormatError(f"{self.path}: {what} has {kind}; the file is corrupt or not GGUF")
        itype, count = self.scalar("I", what), self.scalar("Q", f"the length of {what}")
        if itype in _SCALARS:
            self.need(count * struct.calcsize(_SCALARS[itype]), f"{what} ({count} items)")
            self.pos += count * struct.calcsize(_SCALARS[itype])
            return None
        self.need(count * 8, f"{what} ({count} items)")  # every string or array takes 8 bytes at least
        for i in range(count):
            self.skip_value(itype, f"{what}[{i}]", in_array=True)
        return None


def check_gguf_header(path: str | os.PathLike[str]) -> None:
    """Check a GGUF file's header against its size before anything parses it.

    Magic and version (2 or 3), every metadata key and value (strings and arrays no longer than the
    rest of the file), and every tensor: at most 4 dimensions, a known type whose blocks divide the
    rows, and a byte range ``[offset, offset + bytes)`` inside the file's data.

    Raises:
        FileFormatError: the first problem found, naming the field or tensor, what it holds and the file size.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "x.gguf")
        >>> _ = open(p, "wb").write(b"GGUF" + bytes(20))
        >>> check_gguf_header(p)
        Traceback (most recent call last):
        ...
        lowbit.errors.FileFormatError: ...: GGUF version 0 is not supported (2 and 3 are); ...
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < 24 or fh.read(4) != b"GGUF":
                raise FileFormatError(f"{p}: not a GGUF file (it does not start with the magic b'GGUF' followed by "
                                      "a version and two counts)")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                _check_header(_Cursor(buf, size, p))
    except OSError as err:
        raise FileFormatError(f"{p}: cannot read ({err.strerror or err})") from None


def _check_header(cur: _Cursor) -> None:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    cur.pos = 4
    version = cur.scalar("I", "the version")
    if version & 0xFFFF == 0:  # written on a big-endian machine
        cur.order, version = ">", int.from_bytes(version.to_bytes(4, "little"), "big")
    if version not in (2, 3):
        raise FileFormatError(f"{cur.path}: GGUF version {version} is not supported (2 and 3 are); the file is "
                              "corrupt or from another llama.cpp generation")
    n_tensors, n_kv = cur.scalar("Q", "the tensor count"), cur.scalar("Q", "the metadata count")
    alignment = 32
    for i in range(n_kv):  # every pair takes 13 bytes at least, so a huge count ends at the end of the file
        key = cur.string(f"metadata key {i} of {n_kv}").decode("utf-8", "replace")
        vtype = cur.scalar("I", f"the type of metadata {key!r}")
        value = cur.skip_value(vtype, f"metadata {key!r}")
        if key == "general.alignment":
            if vtype != 4 or not value or value & (value - 1):
                raise FileFormatError(f"{cur.path}: general.alignment must be a uint32 power of two, got {value!r}")
            alignment = value
    infos = []
    for i in range(n_tensors):
        name = cur.string(f"the name of tensor {i} of {n_tensors}").decode("utf-8", "replace")
        n_dims = cur.scalar("I", f"tensor {name!r}'s dimension count")
        if n_dims > _MAX_DIMS:
            raise FileFormatError(f"{cur.path}: tensor {name!r} has {n_dims} dimensions; GGUF allows {_MAX_DIMS}")
        dims = [cur.scalar("Q", f"tensor {name!r}'s dimensions") for _ in range(n_dims)]
        type_id = cur.scalar("I", f"tensor {name!r}'s type")
        infos.append((name, dims, type_id, cur.scalar("Q", f"tensor {name!r}'s offset")))
    data_start = -(-cur.pos // alignment) * alignment
    for name, dims, type_id, offset in infos:
        _check_tensor(cur, name, dims, type_id, data_start + offset, GGML_QUANT_SIZES, GGMLQuantizationType)


def _check_tensor(cur: _Cursor, name: str, dims: list[int], type_id: int, begin: int, sizes: Any, types: Any) -> None:
    """One tensor's type, shape and byte range against the file."""
    try:
        block, type_size = sizes[types(type_id)]
    except (ValueError, KeyError):
        raise FileFormatError(f"{cur.path}: tensor {name!r} has unknown GGML type {type_id}") from None
    total = 1
    for d in dims:
        total *= max(d, 1)
        if total > sys.maxsize:
            raise FileFormatError(f"{cur.path}: tensor {name!r} has an absurd shape {dims} (corrupt header)")
    if not dims or dims[0] % block:
        raise FileFormatError(f"{cur.path}: tensor {name!r} of shape {dims}: {types(type_id).name} needs rows of "
                              f"a multiple of {block} values")
    nbytes = math.prod(dims) // block * type_size
    if begin + nbytes > cur.size:
        raise FileFormatError(f"{cur.path}: tensor {name!r} ({types(type_id).name} {dims}) claims bytes {begin}.."
                              f"{begin + nbytes} but the file has {cur.size}; it is truncated or corrupt")


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
