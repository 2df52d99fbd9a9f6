"""A validating safetensors reader and a streaming, atomic safetensors writer (NumPy only; no torch).

The safetensors layout: an 8-byte little-endian header size ``H``, ``H`` bytes of JSON, then the
data.  The JSON maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}``
(offsets relative to the start of the data) and may hold ``"__metadata__"``, a map of strings.

:class:`SafetensorsFile` checks the whole header before any tensor is read, and raises
:class:`~lowbit.errors.FileFormatError` naming the file, the tensor and the fix for: a file too
short for its header, a header that is not a JSON object (or nests too deep), an entry without
a known ``dtype``, a ``shape`` that is not a list of non-negative ints, offsets that are not two
ints, lie outside the file, disagree with ``dtype x shape`` or overlap another tensor's.  A tensor
is then a read-only memory map of the file (nothing is allocated for it); BF16 and float8 are
returned as their raw bits (``uint16``/``uint8``), :meth:`SafetensorsFile.float32` widens a tensor
(or a range of its rows) to float32.

:class:`SafetensorsWriter` writes a file whose entries are declared up front: the header goes
first, then each tensor's bytes in order, into a temporary file in the destination folder that is
fsynced and renamed into place by :meth:`~SafetensorsWriter.commit`.  An interrupted write leaves
no file under the destination name, only the hidden temporary one.

Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.safetensors")
    >>> a = np.arange(6, dtype=np.float32).reshape(2, 3)
    >>> with SafetensorsWriter(path, [("a", "F32", (2, 3))], {"note": "hi"}) as w:
    ...     w.write("a", a)
    >>> f = SafetensorsFile(path)
    >>> f.names, f.metadata, f.array("a").tolist()
    (['a'], {'note': 'hi'}, [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import os
import struct
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lowbit.errors import FileFormatError

__all__ = ["DTYPES", "SafetensorsFile", "SafetensorsWriter", "safetensors_dtype", "MAX_HEADER"]

# safetensors dtype -> NumPy dtype of the raw bytes (BF16 and float8 as their bit patterns)
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "F8_E4M3": np.dtype("u1"), "F8_E5M2": np.dtype("u1"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_FROM_NUMPY = {np.dtype(v).str: k for k, v in DTYPES.items() if k not in ("BF16", "F8_E4M3", "F8_E5M2")}
MAX_HEADER = 100 * 1024 * 1024
_MAX_DEPTH = 16  # a tensor entry is 3 levels deep; deeper JSON is not a safetensors header
_MAX_NDIM = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32  # NumPy's limit on dimensions
_FLOATS = ("F64", "F32", "F16", "BF16")


def safetensors_dtype(array: np.ndarray) -> str:
    """The safetensors dtype of a NumPy array's dtype (little-endian; ``bool`` included).

    Example:
        >>> safetensors_dtype(np.zeros(2, np.int16))
        'I16'
    """
    found = _FROM_NUMPY.get(np.dtype(array.dtype).newbyteorder("<").str if array.dtype.byteorder == ">"
                            else np.dtype(array.dtype).str)
    if found is None:
        raise FileFormatError(f"dtype {array.dtype} has no safetensors equivalent")
    return found


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of parsed JSON, stopping early beyond ``limit``."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)
    return deepest


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _brief(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, so a hostile header cannot flood a message."""
    if isinstance(value, list | dict) and len(value) > limit:
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shape_error(shape: Any, itemsize: int) -> str | None:
    """Why ``shape`` cannot be a NumPy array of ``itemsize``-byte items, or None when it can.

    NumPy needs at most ``_MAX_NDIM`` dimensions whose non-zero sizes multiply to at most
    ``sys.maxsize`` bytes, even for an empty array; the product stops early, so a hostile
    shape of huge numbers costs nothing.
    """
    if not isinstance(shape, list | tuple) or not all(_is_int(s) and s >= 0 for s in shape):
        return f"shape must be a list of non-negative ints, got {_brief(shape)}"
    if len(shape) > _MAX_NDIM:
        return f"shape has {len(shape)} dimensions, NumPy allows at most {_MAX_NDIM}"
    total = itemsize
    for s in shape:
        total *= max(s, 1)
        if total > sys.maxsize:
            return f"shape {_brief(tuple(shape))} describes more than {sys.maxsize} bytes"
    return None


class SafetensorsFile:
    """A validated safetensors file; tensors are read-only memory maps (see the module docstring).

    Args:
        path: the ``.safetensors`` file.

    Raises:
        FileFormatError: a missing or unreadable file, or any header problem (the message names
            the file, the tensor and what is wrong).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise FileFormatError(f"{self.path} is a folder; give the .safetensors file inside it")
        try:
            self.size = self.path.stat().st_size
            with self.path.open("rb") as fh:
                raw = fh.read(8)
                if len(raw) < 8:
                    raise FileFormatError(f"{self.path}: {len(raw)} bytes is too short for a safetensors file")
                (hsize,) = struct.unpack("<Q", raw)
                if hsize > min(MAX_HEADER, self.size - 8):
                    limit = "the file holds" if hsize <= MAX_HEADER else f"at most {MAX_HEADER} allowed; the file holds"
                    raise FileFormatError(
                        f"{self.path}: the header size field claims an implausible {hsize} bytes ({limit} "
                        f"{self.size - 8} after the size field); the file is truncated or not safetensors"
                    )
                text = fh.read(hsize)
        except FileFormatError:  # a ValueError too: not to be wrapped by the clause below
            raise
        except OSError as err:
            raise FileFormatError(f"{self.path}: cannot read ({err.strerror or err})") from None
        except ValueError as err:  # e.g. a NUL byte in the path
            raise FileFormatError(f"{self.path!r}: cannot read ({err})") from None
        if len(text) != hsize:
            raise FileFormatError(f"{self.path}: the file shrank while its header was read")
        self.data_start = 8 + hsize
        self.entries, self.metadata = self._parse(text)
        self.names = list(self.entries)
        self._map: np.memmap | None = None

    # -- header -------------------------------------------------------------------------------------
    def _parse(self, text: bytes) -> tuple[dict[str, tuple[str, tuple[int, ...], int, int]], dict[str, str]]:
        try:
            header = json.loads(text.decode("utf-8"))
        except (ValueError, RecursionError) as err:  # bad UTF-8, bad JSON, an int of over 4300 digits
            raise FileFormatError(
                f"{self.path}: unreadable safetensors header, not valid UTF-8 JSON ({err}); the file is corrupt "
                "or not safetensors"
            ) from None
        if not isinstance(header, dict):
            raise FileFormatError(f"{self.path}: the safetensors header must be a JSON object, got "
                                  f"{type(header).__name__}")
        if _depth(header, _MAX_DEPTH) > _MAX_DEPTH:
            raise FileFormatError(f"{self.path}: the safetensors header nests deeper than any tensor entry")
        meta = header.pop("__metadata__", None)
        meta = {} if meta is None else meta
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise FileFormatError(f"{self.path}: __metadata__ must map strings to strings, got {_brief(meta)}")
        entries = {name: self._entry(name, value) for name, value in header.items()}
        self._check_overlaps(entries)
        return entries, meta

    def _entry(self, name: str, value: Any) -> tuple[str, tuple[int, ...], int, int]:
        where = f"{self.path}: tensor {_brief(name)}"
        if not isinstance(value, dict):
            raise FileFormatError(f"{where}: its header entry must be an object, got {type(value).__name__}")
        dtype, offsets = value.get("dtype"), value.get("data_offsets")
        shape: Any = value.get("shape")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise FileFormatError(
                f"{where}: unknown dtype {_brief(dtype)}; safetensors dtypes are {', '.join(DTYPES)}"
            )
        problem = _shape_error(shape, DTYPES[dtype].itemsize)
        if problem:
            raise FileFormatError(f"{where}: {problem}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
            raise FileFormatError(f"{where}: data_offsets must be two ints [begin, end], got {_brief(offsets)}")
        begin, end = offsets
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize  # bounded by _shape_error
        if not 0 <= begin <= end or self.data_start + end > self.size:
            raise FileFormatError(
                f"{where}: data_offsets [{begin}, {end}] lie outside the {self.size - self.data_start} data bytes "
                "of the file (truncated or corrupt)"
            )
        if end - begin != nbytes:
            raise FileFormatError(
                f"{where}: data_offsets hold {end - begin} bytes but {dtype} x {tuple(shape)} needs {nbytes}"
            )
        return dtype, tuple(shape), begin, end

    def _check_overlaps(self, entries: Mapping[str, tuple[str, tuple[int, ...], int, int]]) -> None:
        spans = sorted((begin, end, name) for name, (_, _, begin, end) in entries.items() if end > begin)
        for (_, e0, n0), (b1, _, n1) in itertools.pairwise(spans):
            if b1 < e0:
                raise FileFormatError(f"{self.path}: tensors {n0!r} and {n1!r} overlap (bytes {b1}..{e0})")

    # -- data ---------------------------------------------------------------------------------------
    def _mapped(self) -> np.memmap:
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        return self._map

    def nbytes(self, name: str) -> int:
        """Bytes of one tensor's data."""
        _, _, begin, end = self._lookup(name)
        return end - begin

    def _lookup(self, name: str) -> tuple[str, tuple[int, ...], int, int]:
        try:
            return self.entries[name]
        except KeyError:
            raise FileFormatError(f"{self.path} has no tensor {name!r}") from None

    def dtype(self, name: str) -> str:
        """The safetensors dtype of a tensor (``"BF16"``, ``"F32"`` ...)."""
        return self._lookup(name)[0]

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of a tensor."""
        return self._lookup(name)[1]

    def array(self, name: str) -> np.ndarray:
        """A read-only memory map of a tensor's data (BF16/float8 as raw ``uint16``/``uint8`` bits).

        Example:
            >>> import tempfile, os
            >>> p = os.path.join(tempfile.mkdtemp(), "x.safetensors")
            >>> with SafetensorsWriter(p, [("x", "I8", (3,))]) as w:
            ...     w.write("x", np.array([1, -2, 3], np.int8))
            >>> SafetensorsFile(p).array("x").tolist()
            [1, -2, 3]
        """
        dtype, shape, begin, end = self._lookup(name)
        if end == begin:  # an empty tensor: nothing to map, but read-only like the others
            empty = np.zeros(shape, DTYPES[dtype])
            empty.flags.writeable = False
            return empty
        try:
            raw = self._mapped()[self.data_start + begin : self.data_start + end]
            return raw.view(DTYPES[dtype]).reshape(shape)
        except (OSError, ValueError) as err:  # the file changed after its header was checked
            raise FileFormatError(f"{self.path}: tensor {name!r} cannot be mapped ({err})") from None

    def float32(self, name: str, rows: slice | None = None) -> np.ndarray:
        """A float32 copy of a float tensor (or of a range of its first axis).

        The bytes are read with ``pread`` into a buffer of their own rather than through the memory
        map, so streaming a checkpoint a block at a time leaves no mapped pages behind in the process.

        Example:
            >>> import tempfile, os
            >>> p = os.path.join(tempfile.mkdtemp(), "x.safetensors")
            >>> with SafetensorsWriter(p, [("x", "F16", (3, 2))]) as w:
            ...     w.write("x", np.arange(6, dtype=np.float16).reshape(3, 2))
            >>> SafetensorsFile(p).float32("x", slice(1, 3)).tolist()
            [[2.0, 3.0], [4.0, 5.0]]

        Raises:
            FileFormatError: the tensor is not F64/F32/F16/BF16, or the file shrank since it was opened.
        """
        dtype, shape, begin, end = self._lookup(name)
        if dtype not in _FLOATS:
            raise FileFormatError(f"{self.path}: tensor {name!r} is {dtype}, not a float tensor")
        first, last = 0, (shape[0] if shape else 1)
        if rows is not None and shape:
            first, last, step = rows.indices(shape[0])
            if step != 1:
                raise ValueError(f"float32 reads contiguous rows; got step {step}")
            last = max(first, last)
        row_bytes = (end - begin) // max(shape[0], 1) if shape else end - begin
        raw = self._pread(name, begin + first * row_bytes, (last - first) * row_bytes, DTYPES[dtype])
        part = raw.reshape((last - first, *shape[1:]) if shape else ())
        if dtype != "BF16":
            return part.astype(np.float32)
        out = np.empty(part.shape, np.float32)
        bits = out.view(np.uint32)
        bits[...] = part  # widen in place, then move the 16 bits up: no temporaries
        np.left_shift(bits, 16, out=bits)
        return out

    def _pread(self, name: str, offset: int, size: int, dtype: np.dtype) -> np.ndarray:
        buf = np.empty(size // dtype.itemsize, dtype)
        view, done = memoryview(buf.view(np.uint8).data), 0
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            while done < size:
                got = os.preadv(fd, [view[done:]], self.data_start + offset + done) if hasattr(os, "preadv") \
                    else _pread_into(fd, view[done:], self.data_start + offset + done)
                if got <= 0:
                    raise FileFormatError(f"{self.path}: tensor {name!r} ends past the end of the file (the file "
                                          "changed after it was opened); re-create it")
                done += got
        finally:
            os.close(fd)
        return buf

    def close(self) -> None:
        """Drop the memory map (tensors returned before stay valid while referenced)."""
        self._map = None

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _declared(entries: Iterable[tuple[str, str, Sequence[int]]]) -> list[tuple[str, str, tuple[int, ...]]]:
    """Writer entries with shapes as tuples of ints, each checked (dtype known, dimensions non-negative)."""
    out = []
    for name, dtype, shape in entries:
        if dtype not in DTYPES:
            raise FileFormatError(f"cannot write tensor {name!r}: unknown safetensors dtype {dtype!r}")
        try:
            dims = tuple(operator.index(s) for s in shape)
        except TypeError:
            raise FileFormatError(f"cannot write tensor {name!r}: shape {shape!r} is not a sequence of ints") from None
        problem = _shape_error(dims, DTYPES[dtype].itemsize)
        if problem:
            raise FileFormatError(f"cannot write tensor {name!r}: {problem}")
        out.append((name, dtype, dims))
    return out


def _header_bytes(entries: Sequence[tuple[str, str, tuple[int, ...]]], metadata: Mapping[str, str] | None
                  ) -> tuple[bytes, dict[str, tuple[int, int]]]:
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offsets: dict[str, tuple[int, int]] = {}
    pos = 0
    for name, dtype, shape in entries:
        if name in offsets or name == "__metadata__":
            raise FileFormatError(f"cannot write tensor {name!r} twice")
        size = math.prod(shape) * DTYPES[dtype].itemsize
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [pos, pos + size]}
        offsets[name] = (pos, pos + size)
        pos += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text, offsets


class SafetensorsWriter:
    """Write a safetensors file atomically, tensor by tensor, in the order declared.

    Args:
        path: destination file; its folder must exist.
        entries: ``(name, safetensors dtype, shape)`` of every tensor, in file order.
        metadata: the ``__metadata__`` strings.

    Use as a context manager: leaving the block normally commits (fsync, rename), an exception
    (or a commit that fails, e.g. a declared tensor never written) removes the temporary file.

    Raises:
        FileFormatError: an unknown dtype or a bad shape in ``entries``, a folder that does not
            exist or cannot be written, a tensor written out of order or with the wrong byte count,
            or a commit before every declared tensor was written.
    """

    def __init__(self, path: str | os.PathLike[str], entries: Iterable[tuple[str, str, tuple[int, ...]]],
                 metadata: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.entries = _declared(entries)
        header, self.offsets = _header_bytes(self.entries, metadata)
        self._order = [n for n, _, _ in self.entries]
        self._next = 0
        try:
            fd, tmp = temp_beside(self.path)
        except OSError as err:
            raise FileFormatError(
                f"cannot write {self.path}: {err.strerror or err} (its folder must exist and be writable)"
            ) from None
        self.tmp = Path(tmp)
        self._fh = os.fdopen(fd, "wb")
        self._guarded(self._fh.write, header)

    def _guarded(self, step: Any, *args: Any) -> None:
        """Run a file operation; an OSError (disk full, ...) removes the temporary file and is re-raised typed."""
        try:
            step(*args)
        except OSError as err:
            self.abort()
            raise FileFormatError(f"cannot write {self.path}: {err.strerror or err}") from None

    def write(self, name: str, array: np.ndarray) -> None:
        """Append the next tensor's bytes (its dtype's raw bytes, little-endian).

        Raises:
            FileFormatError: not the next declared tensor, or a byte count that differs from its entry.
        """
        self.write_parts(name, [array])

    def write_parts(self, name: str, parts: Iterable[np.ndarray]) -> None:
        """Append the next tensor's bytes from consecutive parts (e.g. blocks of rows computed one at a time).

        Raises:
            FileFormatError: not the next declared tensor, or parts whose bytes do not add up to its entry.
        """
        if self._next >= len(self._order) or self._order[self._next] != name:
            want = self._order[self._next] if self._next < len(self._order) else "nothing"
            raise FileFormatError(f"{self.path}: tensor {name!r} written out of order (expected {want!r})")
        begin, end = self.offsets[name]
        written = 0
        for array in parts:
            data = np.ascontiguousarray(array)
            if data.dtype.hasobject:
                raise FileFormatError(f"{self.path}: tensor {name!r} is an object array; give numbers")
            if data.dtype.byteorder == ">":  # safetensors is little-endian
                data = data.astype(data.dtype.newbyteorder("<"))
            if written + data.nbytes > end - begin:
                raise FileFormatError(f"{self.path}: tensor {name!r} has {written + data.nbytes} or more bytes, "
                                      f"its entry {end - begin}")
            self._guarded(self._fh.write, data.reshape(-1).view(np.uint8))
            written += data.nbytes
        if written != end - begin:
            raise FileFormatError(f"{self.path}: tensor {name!r} has {written} bytes, its entry {end - begin}")
        self._next += 1

    def commit(self) -> None:
        """fsync the file and rename it to ``path`` (after every declared tensor was written)."""
        if self._next != len(self._order):
            missing = self._order[self._next :]
            raise FileFormatError(
                f"{self.path}: {len(missing)} declared tensor(s) were not written: {_brief(missing)}"
            )
        self._guarded(self._finish)

    def _finish(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.path)
        _fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Close and remove the temporary file."""
        if not self._fh.closed:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> SafetensorsWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.commit()
        except BaseException:
            self.abort()  # e.g. a declared tensor never written: no temporary file is left behind
            raise


def temp_beside(path: Path) -> tuple[int, str]:
    """A new temporary file in ``path``'s folder, named ``.<name>.<random>.tmp``, as ``(fd, name)``.

    Example:
        >>> import tempfile
        >>> fd, name = temp_beside(Path(tempfile.mkdtemp()) / "a.safetensors"); os.close(fd)
        >>> [p.name == Path(name).name for p in temps_beside(Path(name).parent / "a.safetensors")]
        [True]
    """
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)


def temps_beside(path: Path) -> list[Path]:
    """The temporary files :func:`temp_beside` made for ``path`` that are still there (a dead writer's)."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    """``os.preadv`` for systems without it (Windows): a seek and a read into ``view``."""
    os.lseek(fd, offset, os.SEEK_SET)
    data = os.read(fd, min(len(view), 1 << 30))
    view[: len(data)] = data
    return len(data)
