"""Load named float tensors from ``.npy``, ``.npz`` and ``.safetensors`` files, validating first.

Every file is checked before its data is read, and a problem raises
:class:`~lowbit.errors.FileFormatError` naming the file (and the tensor or archive member):

* ``.safetensors`` goes through :class:`~lowbit.io._safetensors.SafetensorsFile` (the whole
  header is validated, tensors are memory-mapped and read only when asked for); BF16 entries,
  which NumPy cannot represent, are widened exactly to float32.
* ``.npy`` headers (and those of every ``.npz`` member) are parsed with NumPy's own header
  reader after bounded reads, and the bytes the header claims are compared with what the file
  holds before anything is allocated; ``.npy`` data is then memory-mapped, ``.npz`` members are
  read in bounded chunks.
* Object arrays and pickle checkpoints (``.bin``, ``.pt``, ``.pth``, ``.pkl``, ``.ckpt``) are
  refused: unpickling runs arbitrary code.  The message says how to convert to safetensors.

Arrays that come from a memory map are read-only views of the file.

Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> np.savez(path, a=np.ones((2, 2), np.float32), n=np.arange(3))
    >>> list(load_tensors(path))
    ['a']
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import re
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from lowbit.errors import FileFormatError
from lowbit.io._safetensors import SafetensorsFile, _shape_error

__all__ = ["SUPPORTED_SUFFIXES", "iter_tensors", "list_tensors", "load_tensors"]

SUPPORTED_SUFFIXES = (".npy", ".npz", ".safetensors")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
_FLOATS = frozenset({"float16", "bfloat16", "float32", "float64"})
_NPY_MAGIC = b"\x93NUMPY"
_NPY_MAX_HEADER = 65536  # NumPy itself refuses headers over 10,000 characters
_CHUNK = 1 << 22
# what a hostile archive or .npy header can make zipfile, zlib or NumPy's header parser raise
_READ_ERRORS = (
    OSError, EOFError, ValueError, TypeError, KeyError, IndexError, SyntaxError, RecursionError, MemoryError,
    OverflowError, NotImplementedError, RuntimeError, struct.error, zlib.error, zipfile.BadZipFile, tokenize.TokenError,
)
_ST_NAMES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64", "BOOL": "bool"}
_ST_NAMES.update({f"{p}{b}": f"{n}{b}" for p, n in (("I", "int"), ("U", "uint")) for b in (8, 16, 32, 64)})


def _one_line(err: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, cut to ``limit`` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def _reading(where: str) -> Iterator[None]:
    """Turn what zipfile, zlib or NumPy raise on a corrupt file into a FileFormatError naming ``where``."""
    try:
        yield
    except FileFormatError:
        raise
    except _READ_ERRORS as err:
        raise FileFormatError(f"{where}: cannot read, the file is corrupt or truncated ({_one_line(err)})") from None


def _natural(name: str) -> list:
    """Sort key that puts ``layer.2`` before ``layer.10`` (safetensors stores names by offset)."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name)]


# -- .npy headers -----------------------------------------------------------------------------------
class _NpyHeader(NamedTuple):
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    offset: int  # where the data starts, from the start of the .npy stream
    nbytes: int


def _npy_header(fh: IO[bytes], where: str, size: int) -> _NpyHeader:
    """Parse the header of a ``.npy`` stream of ``size`` bytes (positioned at its start) and check it.

    Only the bytes the format allows are read (never a length taken from the file before it is
    bounded), and the data the header describes must fit in the rest of the stream.
    """
    lead = fh.read(10)
    if len(lead) < 10 or lead[:6] != _NPY_MAGIC:
        raise FileFormatError(f"{where}: not a .npy array (it does not start with NumPy's magic string)")
    version = (lead[6], lead[7])
    if version not in ((1, 0), (2, 0)):
        raise FileFormatError(f"{where}: .npy format version {version[0]}.{version[1]} is not supported (1.0, 2.0 are)")
    width = 2 if version == (1, 0) else 4  # the header length is a little-endian uint16 / uint32
    field = lead[8:] + fh.read(width - 2)
    (hlen,) = struct.unpack("<H" if width == 2 else "<I", field.ljust(width, b"\xff"))
    offset = 8 + width + hlen
    if len(field) != width or hlen > _NPY_MAX_HEADER or offset > size:
        raise FileFormatError(f"{where}: its .npy header claims {hlen} bytes; the file is truncated or corrupt")
    text = fh.read(hlen)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    try:
        shape, fortran, dtype = reader(io.BytesIO(field + text))
    except Exception as err:  # NumPy's parser (ast, tokenize) on <= 64 KiB of hostile text: any failure = bad file
        raise FileFormatError(f"{where}: unreadable .npy header ({_one_line(err)})") from None
    return _checked(_NpyHeader(tuple(shape), bool(fortran), dtype, offset, 0), where, size)


def _checked(head: _NpyHeader, where: str, size: int) -> _NpyHeader:
    """Refuse object arrays and shapes whose data the stream does not hold; fill in ``nbytes``."""
    if head.dtype.hasobject:
        raise FileFormatError(
            f"{where}: cannot read an object array: it is stored as a pickle, and lowbit refuses pickles "
            "(unpickling runs arbitrary code); save numeric arrays instead"
        )
    problem = _shape_error(list(head.shape), head.dtype.itemsize)
    if problem:
        raise FileFormatError(f"{where}: {problem}")
    nbytes = int(np.prod(head.shape, dtype=object)) * head.dtype.itemsize
    if nbytes > size - head.offset:
        raise FileFormatError(
            f"{where}: the header describes {head.dtype.name} x {head.shape} = {nbytes} bytes but only "
            f"{size - head.offset} follow it; the file is truncated or corrupt"
        )
    return head._replace(nbytes=nbytes)


def _native(a: np.ndarray) -> np.ndarray:
    """``a`` in the machine's byte order (a copy only when it was not)."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


# -- readers, one per format --------------------------------------------------------------------------
class _Reader:
    """A validated file: ``dtypes`` (name -> dtype name, in listing order), ``shapes`` and ``read(name)``."""

    path: Path
    dtypes: dict[str, str]
    shapes: dict[str, tuple[int, ...]]

    def read(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""


class _SafetensorsReader(_Reader):
    def __init__(self, path: Path) -> None:
        self.path, self.file = path, SafetensorsFile(path)
        names = sorted(self.file.names, key=_natural)
        self.dtypes = {n: _ST_NAMES.get(self.file.dtype(n), self.file.dtype(n).lower()) for n in names}
        self.shapes = {n: self.file.shape(n) for n in names}

    def read(self, name: str) -> np.ndarray:
        if self.file.dtype(name) == "BF16":
            return self.file.float32(name)
        return _native(np.asarray(self.file.array(name)))

    def close(self) -> None:
        self.file.close()


class _NpyReader(_Reader):
    def __init__(self, path: Path) -> None:
        self.path = path
        with _reading(str(path)), path.open("rb") as fh:
            self.head = _npy_header(fh, str(path), path.stat().st_size)
        self.dtypes = {path.stem: self.head.dtype.name}
        self.shapes = {path.stem: self.head.shape}

    def read(self, name: str) -> np.ndarray:
        h = self.head
        if h.nbytes == 0:
            return np.zeros(h.shape, h.dtype.newbyteorder("="))
        with _reading(str(self.path)):
            mapped = np.memmap(self.path, h.dtype, "r", h.offset, h.shape, "F" if h.fortran else "C")
            return _native(np.asarray(mapped))


class _NpzReader(_Reader):
    def __init__(self, path: Path) -> None:
        self.path = path
        with _reading(str(path)):
            self.zip = zipfile.ZipFile(path)
        try:
            with _reading(str(path)):  # zipfile fails on a hostile directory in many ways (an empty name: IndexError)
                self.members = self._members()
        except BaseException:
            self.zip.close()
            raise
        self.dtypes = {n: h.dtype.name for n, (_, h) in self.members.items()}
        self.shapes = {n: h.shape for n, (_, h) in self.members.items()}

    def _members(self) -> dict[str, tuple[zipfile.ZipInfo, _NpyHeader]]:
        members: dict[str, tuple[zipfile.ZipInfo, _NpyHeader]] = {}
        for info in self.zip.infolist():
            if info.is_dir():
                continue
            where = f"{self.path}: member {info.filename!r}"
            name = info.filename.removesuffix(".npy")
            if name == info.filename:
                raise FileFormatError(f"{where} is not a .npy array; an .npz holds only .npy members")
            if name in members:
                raise FileFormatError(f"{where} appears twice in the archive")
            with _reading(where), self.zip.open(info) as fh:
                members[name] = (info, _npy_header(fh, where, info.file_size))
        return members

    def read(self, name: str) -> np.ndarray:
        info, h = self.members[name]
        where = f"{self.path}: member {info.filename!r}"
        buf = bytearray()
        with _reading(where), self.zip.open(info) as fh:
            fh.read(h.offset)  # the header, at most _NPY_MAX_HEADER + 12 bytes
            while len(buf) < h.nbytes:  # grows only as real data arrives: a lying size costs nothing
                chunk = fh.read(min(_CHUNK, h.nbytes - len(buf)))
                if not chunk:
                    break
                buf += chunk
            fh.read(1)  # reach the end of the member, so that zipfile checks its CRC
        if len(buf) != h.nbytes:
            raise FileFormatError(f"{where}: holds {len(buf)} data bytes, its header {h.nbytes}; it is truncated")
        array = np.frombuffer(buf, h.dtype).reshape(h.shape, order="F" if h.fortran else "C")
        return _native(array)

    def close(self) -> None:
        self.zip.close()


# -- public -------------------------------------------------------------------------------------------
def _check_path(path: str | Path) -> Path:
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in _PICKLE_SUFFIXES:
        raise FileFormatError(
            f"{p}: {suffix} checkpoints are pickles, which lowbit refuses to load (unpickling runs arbitrary "
            "code); convert it once to safetensors with python -c \"import torch, safetensors.torch; "
            f"safetensors.torch.save_file(torch.load({str(p)!r}, weights_only=True), 'model.safetensors')\" "
            "(for a Lightning .ckpt, save its ['state_dict'])"
        )
    if suffix not in SUPPORTED_SUFFIXES:
        raise FileFormatError(f"{p}: unsupported file type {p.suffix!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    if p.is_dir():
        raise FileFormatError(f"{p} is a folder, not a {suffix} file; give the file itself")
    if not p.is_file():
        raise FileFormatError(f"{p}: no such file")
    return p


def _reader(path: str | Path) -> _Reader:
    p = _check_path(path)
    kind: Any = {".safetensors": _SafetensorsReader, ".npz": _NpzReader}.get(p.suffix.lower(), _NpyReader)
    return kind(p)


@contextlib.contextmanager
def _open(path: str | Path) -> Iterator[_Reader]:
    reader = _reader(path)
    try:
        yield reader
    finally:
        reader.close()


def list_tensors(path: str | Path) -> dict[str, str]:
    """Names and dtype names of every tensor in a file (headers only; no tensor data is read).

    Raises:
        FileFormatError: missing file, a folder, unsupported suffix, a pickle, or a corrupt or
            truncated file (the message names the file and the tensor or member).

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "w.npy")
        >>> np.save(path, np.zeros(3, np.float32))
        >>> list_tensors(path)
        {'w': 'float32'}
    """
    with _open(path) as reader:
        return dict(reader.dtypes)


def _select(path: Path, dtypes: dict[str, str], patterns: list[str] | None, exclude: list[str]) -> list[str]:
    """The float tensors that ``patterns``/``exclude`` select; a non-float one named exactly is an error."""
    chosen = [
        n for n in dtypes
        if (patterns is None or any(fnmatch.fnmatchcase(n, pat) for pat in patterns))
        and not any(fnmatch.fnmatchcase(n, pat) for pat in exclude)
    ]
    explicit_bad = [n for n in chosen if dtypes[n] not in _FLOATS and patterns is not None and n in patterns]
    if explicit_bad:
        raise FileFormatError(
            f"{path}: tensor(s) {explicit_bad} are {[dtypes[n] for n in explicit_bad]}, not floating point; "
            "only float tensors can be quantized"
        )
    return [n for n in chosen if dtypes[n] in _FLOATS]


def iter_tensors(
    path: str | Path,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    min_ndim: int = 0,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield the selected floating-point tensors of a file one at a time, as :func:`load_tensors` selects them.

    The file is validated and the selection checked before the first tensor is read; each tensor is
    read only when its turn comes, so a caller that drops it before asking for the next holds one
    tensor at a time (``lowbit compare`` on a checkpoint larger than memory).

    Raises:
        FileFormatError: as :func:`load_tensors`, before anything is yielded.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "m.npz")
        >>> np.savez(path, w=np.ones((2, 2), np.float32), b=np.ones(2, np.float32))
        >>> [(name, a.shape) for name, a in iter_tensors(path)]
        [('w', (2, 2)), ('b', (2,))]
    """
    patterns = list(include) if include is not None else None
    excluded = list(exclude)
    reader = _reader(path)
    try:
        p, dtypes = reader.path, reader.dtypes
        chosen = [n for n in _select(p, dtypes, patterns, excluded) if len(reader.shapes[n]) >= min_ndim]
        if not chosen:
            shown = ", ".join(f"{n} ({d})" for n, d in list(dtypes.items())[:20])
            raise FileFormatError(
                f"{p}: no floating-point tensor matches include={patterns} exclude={excluded} "
                f"min_ndim={min_ndim}; the file holds: {shown}{' ...' if len(dtypes) > 20 else ''}"
            )
    except BaseException:
        reader.close()
        raise
    return _each(reader, chosen)


def _each(reader: _Reader, names: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    try:
        for name in names:
            yield name, reader.read(name)
    finally:
        reader.close()


def load_tensors(
    path: str | Path,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    min_ndim: int = 0,
) -> dict[str, np.ndarray]:
    """Load the floating-point tensors of a file, selected by glob patterns.

    Args:
        path: a ``.npy``, ``.npz`` or ``.safetensors`` file.
        include: glob patterns on tensor names (``fnmatch``); None selects all.
        exclude: glob patterns to drop.
        min_ndim: keep only tensors with at least this many dimensions.

    Returns:
        ``{name: array}`` in listing order (safetensors: natural name order, so ``layer.2``
        before ``layer.10``; ``.npz``: archive order); non-float tensors are skipped unless named
        exactly in ``include`` (then an error says why they cannot be used).  BF16 is widened to
        float32; other arrays keep their dtype and may be read-only memory maps of the file.
        :func:`iter_tensors` gives the same one tensor at a time.

    Raises:
        FileFormatError: a missing file, a folder, a pickle, a corrupt or truncated file (named
            with its tensor or member), or no tensor matched (the message lists the names in the file).

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "m.npz")
        >>> np.savez(path, w=np.ones((2, 2), np.float32), b=np.ones(2, np.float32))
        >>> list(load_tensors(path, min_ndim=2))
        ['w']
    """
    return dict(iter_tensors(path, include, exclude, min_ndim))
