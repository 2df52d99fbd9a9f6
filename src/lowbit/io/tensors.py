"""Load named float tensors from ``.npy``, ``.npz`` and ``.safetensors`` files.

Pickled objects are refused (``allow_pickle=False``).  safetensors files are
read with ``safetensors.numpy``; BF16 entries, which NumPy cannot represent,
are widened to float32 from the raw bytes after validating the header.

Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> np.savez(path, a=np.ones((2, 2), np.float32), n=np.arange(3))
    >>> list(load_tensors(path))
    ['a']
"""

from __future__ import annotations

import fnmatch
import json
import re
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lowbit.errors import FileFormatError

__all__ = ["SUPPORTED_SUFFIXES", "list_tensors", "load_tensors"]

SUPPORTED_SUFFIXES = (".npy", ".npz", ".safetensors")
_MAX_HEADER = 100 * 1024 * 1024


def _safetensors_header(path: Path) -> dict:
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise FileFormatError(f"{path} is too short to be a safetensors file")
        (size,) = struct.unpack("<Q", raw)
        if size > _MAX_HEADER:
            raise FileFormatError(f"{path}: safetensors header of {size} bytes is implausible")
        try:
            header = json.loads(fh.read(size))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise FileFormatError(f"{path}: unreadable safetensors header ({err})") from None
    header.pop("__metadata__", None)
    header["__offset__"] = 8 + size
    return header


def _natural(name: str) -> list:
    """Sort key that puts ``layer.2`` before ``layer.10`` (safetensors stores names by offset)."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name)]


def _read_bf16(path: Path, entry: dict, offset: int) -> np.ndarray:
    start, end = entry["data_offsets"]
    shape = tuple(entry["shape"])
    raw = np.fromfile(path, dtype="<u2", count=(end - start) // 2, offset=offset + start)
    if raw.size != int(np.prod(shape, dtype=np.int64)):
        raise FileFormatError(f"{path}: BF16 tensor size does not match its shape {shape}")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(shape)


def _load_safetensors(path: Path, names: list[str] | None) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    header = _safetensors_header(path)
    offset = header.pop("__offset__")
    wanted = list(header) if names is None else names
    out: dict[str, np.ndarray] = {}
    try:
        with safe_open(str(path), framework="numpy") as fh:
            for name in wanted:
                if header[name]["dtype"] == "BF16":
                    out[name] = _read_bf16(path, header[name], offset)
                else:
                    out[name] = fh.get_tensor(name)
    except (OSError, ValueError, RuntimeError) as err:
        raise FileFormatError(f"{path}: cannot read safetensors data ({err})") from None
    return out


def _tensor_dtypes(path: Path) -> dict[str, str]:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        header = _safetensors_header(path)
        header.pop("__offset__")
        table = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64", "BOOL": "bool"}
        table.update({f"{p}{b}": f"{n}{b}" for p, n in (("I", "int"), ("U", "uint")) for b in (8, 16, 32, 64)})
        return {k: table.get(header[k]["dtype"], header[k]["dtype"].lower()) for k in sorted(header, key=_natural)}
    arrays = _load_numpy(path)
    return {k: v.dtype.name for k, v in arrays.items()}


def _load_numpy(path: Path) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise FileFormatError(f"{path}: cannot read as {path.suffix} ({err})") from None
    if isinstance(loaded, np.ndarray):
        return {path.stem: loaded}
    with loaded:
        return {k: loaded[k] for k in loaded.files}


def _check_path(path: str | Path) -> Path:
    p = Path(path)
    if p.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise FileFormatError(f"{p}: unsupported file type {p.suffix!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    if not p.is_file():
        raise FileFormatError(f"{p}: no such file")
    return p


def list_tensors(path: str | Path) -> dict[str, str]:
    """Names and dtype names of every tensor in a file (safetensors: header only).

    Raises:
        FileFormatError: missing file, unsupported suffix or unreadable contents.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "w.npy")
        >>> np.save(path, np.zeros(3, np.float32))
        >>> list_tensors(path)
        {'w': 'float32'}
    """
    return _tensor_dtypes(_check_path(path))


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
        ``{name: array}`` in file order; non-float tensors are skipped unless
        named exactly in ``include`` (then an error says why they cannot be used).

    Raises:
        FileFormatError: unreadable file, or no tensor matched (the message
            lists the names in the file).

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "m.npz")
        >>> np.savez(path, w=np.ones((2, 2), np.float32), b=np.ones(2, np.float32))
        >>> list(load_tensors(path, min_ndim=2))
        ['w']
    """
    p = _check_path(path)
    dtypes = _tensor_dtypes(p)
    patterns = list(include) if include is not None else None
    floats = {"float16", "bfloat16", "float32", "float64"}
    chosen = [
        n for n in dtypes
        if (patterns is None or any(fnmatch.fnmatchcase(n, pat) for pat in patterns))
        and not any(fnmatch.fnmatchcase(n, pat) for pat in exclude)
    ]
    explicit_bad = [n for n in chosen if dtypes[n] not in floats and patterns is not None and n in patterns]
    if explicit_bad:
        raise FileFormatError(
            f"{p}: tensor(s) {explicit_bad} are {[dtypes[n] for n in explicit_bad]}, not floating point; "
            "only float tensors can be quantized"
        )
    chosen = [n for n in chosen if dtypes[n] in floats]
    if p.suffix.lower() == ".safetensors":
        arrays = _load_safetensors(p, chosen)
    else:
        everything = _load_numpy(p)
        arrays = {n: everything[n] for n in chosen}
    arrays = {n: a for n, a in arrays.items() if a.ndim >= min_ndim}
    if not arrays:
        shown = ", ".join(f"{n} ({d})" for n, d in list(dtypes.items())[:20])
        raise FileFormatError(
            f"{p}: no floating-point tensor matches include={patterns} exclude={list(exclude)} "
            f"min_ndim={min_ndim}; the file holds: {shown}{' ...' if len(dtypes) > 20 else ''}"
        )
    return arrays
