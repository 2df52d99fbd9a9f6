"""Save and load lowbit checkpoints: safetensors files of quantized and float tensors (docs/FORMAT.md).

A checkpoint is one ``.safetensors`` file, or a folder holding ``model.safetensors`` or the shards
``model-00001-of-0000N.safetensors`` and ``model.safetensors.index.json`` (the layout transformers
writes). Quantized tensors are stored as in :mod:`lowbit.io.format`; other tensors as they are.
Every file is written atomically (a temporary file in the destination folder, fsync, rename) and the
index last, so an interrupted save never leaves a checkpoint that passes for complete.

:func:`load` needs NumPy only: it never imports torch.

Example:
    >>> import numpy as np, tempfile, os, lowbit
    >>> w = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> _ = lowbit.save({"w": lowbit.quantize(w, "int4", granularity="group:32"), "b": np.ones(4, np.float32)}, path)
    >>> back = lowbit.load(path)
    >>> type(back["w"]).__name__, back["b"].tolist()
    ('QTensor', [1.0, 1.0, 1.0, 1.0])
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lowbit._arrays import is_torch_tensor
from lowbit.errors import FileFormatError, OptionError
from lowbit.io._safetensors import SafetensorsFile, SafetensorsWriter, safetensors_dtype
from lowbit.io.format import FORMAT_VERSION, META_KEY, describe, read_qtensor, tensor_entries
from lowbit.qtensor import QTensor

__all__ = ["save", "load", "Checkpoint", "open_checkpoint", "parse_size", "INDEX_NAME", "SINGLE_NAME"]

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
_PICKLES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_ARRAYS = (".npy", ".npz")


def parse_size(size: int | str | None) -> int | None:
    """Bytes from an int or a string such as ``"2GB"``, ``"500MiB"`` (None: no limit).

    Example:
        >>> parse_size("2GB"), parse_size("1.5KiB"), parse_size(None)
        (2000000000, 1536, None)
    """
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        value = size
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?I?B?)\s*", str(size).upper())
        if not m:
            raise OptionError(f"max_shard_size must be a number of bytes or a size like '2GB', got {size!r}")
        unit = m.group(2).rstrip("B")
        mult = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}[unit]
        value = int(float(m.group(1)) * mult)
    if value < 1:
        raise OptionError(f"max_shard_size must be positive, got {size!r}")
    return value


# --------------------------------------------------------------------------- what to write


@dataclass
class _Item:
    """One tensor to write: a quantized tensor (several entries) or a plain array (one entry)."""

    name: str
    entries: list[tuple[str, str, tuple[int, ...], np.ndarray]]
    info: dict[str, Any] | None = None  # the description of a quantized tensor

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for _, _, _, a in self.entries)


def _plain(name: str, value: Any) -> _Item:
    if is_torch_tensor(value):
        value = _torch_to_numpy(value)
        if isinstance(value, tuple):  # bfloat16 bits
            return _Item(name, [(name, "BF16", tuple(value[0].shape), value[0])])
    a = np.ascontiguousarray(value)
    return _Item(name, [(name, safetensors_dtype(a), tuple(a.shape), a)])


def _torch_to_numpy(t: Any) -> Any:
    import torch

    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return (t.view(torch.int16).numpy().view(np.uint16),)
    return t.numpy()


def _quantized(name: str, qt: QTensor, algorithm: str | None = None, options: Any = None) -> _Item:
    info = describe(qt, algorithm, options)
    entries = tensor_entries(name, qt)
    info["arrays"] = {key.rpartition(".")[2]: key for key, _, _, _ in entries}
    return _Item(name, entries, info)


def _items_of_mapping(obj: Mapping[str, Any]) -> list[_Item]:
    items = []
    for name, value in obj.items():
        if not isinstance(name, str):
            raise OptionError(f"tensor names must be strings, got {name!r}")
        items.append(_quantized(name, value) if isinstance(value, QTensor) else _plain(name, value))
    return items


def _items_of_model(model: Any) -> tuple[list[_Item], dict[str, Any], dict[str, str]]:
    """The tensors of a model quantized by lowbit, the description of its lowbit layers, and the aliases of
    tensors the model shares between names (tied weights: ``lm_head.weight`` -> ``model.embed_tokens.weight``)."""
    from lowbit.io._layers import layer_weight_keys, lowbit_layers

    layers = lowbit_layers(model)
    state = model.state_dict()
    items, modules = [], {}
    skipped: set[str] = set()
    for mname, module in layers.items():
        prefix = f"{mname}." if mname else ""
        algorithm, options = getattr(module, "algorithm", ("rtn", {}))
        items.append(_quantized(f"{prefix}weight", module.weight_qtensor(), algorithm, options))
        modules[mname] = {"class": type(module).__name__, "config": module.config()}
        skipped |= {prefix + k for k in layer_weight_keys(module)}
    seen: dict[tuple[Any, ...], str] = {}
    aliases: dict[str, str] = {}
    for k, v in state.items():
        if k in skipped:
            continue
        same = _storage_key(v)
        if same is not None and same in seen:
            aliases[k] = seen[same]
            continue
        if same is not None:
            seen[same] = k
        items.append(_plain(k, v))
    return items, modules, aliases


def _storage_key(t: Any) -> tuple[Any, ...] | None:
    """What makes two state-dict tensors the same tensor (None: never shared, e.g. empty or on meta)."""
    if not hasattr(t, "untyped_storage") or t.is_meta or t.numel() == 0:
        return None
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


# --------------------------------------------------------------------------- writing


def _shards(items: list[_Item], limit: int | None) -> list[list[_Item]]:
    """Items grouped into shards of at most ``limit`` bytes (a tensor's arrays stay together)."""
    shards: list[list[_Item]] = [[]]
    size = 0
    for item in items:
        if limit is not None and shards[-1] and size + item.nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(item)
        size += item.nbytes
    return shards


def shard_metadata(items: list[_Item], modules: Mapping[str, Any], extra: Mapping[str, Any] | None = None
                   ) -> dict[str, str]:
    """The ``__metadata__`` of one file: the descriptions of its quantized tensors and lowbit layers."""
    tensors = {it.name: it.info for it in items if it.info is not None}
    owned = {m: v for m, v in modules.items() if any(n.startswith(f"{m}." if m else "") for n in tensors)}
    doc = {"format_version": FORMAT_VERSION, "tensors": tensors, "modules": owned, **(extra or {})}
    return {"format": "lowbit", META_KEY: json.dumps(doc, separators=(",", ":"))}


def write_items(path: Path, items: list[_Item], modules: Mapping[str, Any],
                aliases: Mapping[str, str] | None = None) -> None:
    """One safetensors file holding ``items`` (and the aliases of those among them), written atomically."""
    entries = [(k, d, s) for it in items for k, d, s, _ in it.entries]
    names = {it.name for it in items}
    mine = {a: t for a, t in (aliases or {}).items() if t in names}
    metadata = shard_metadata(items, modules, {"aliases": mine} if mine else None)
    with SafetensorsWriter(path, entries, metadata) as writer:
        for it in items:
            for key, _, _, array in it.entries:
                writer.write(key, array)


def write_json(path: Path, doc: Any) -> None:
    """A JSON file written atomically (temp file in the folder, fsync, rename)."""
    from lowbit.io._atomic import atomic_file

    with atomic_file(path) as tmp, open(tmp, "w") as fh:
        json.dump(doc, fh, indent=2)


def shard_name(i: int, n: int) -> str:
    """transformers' shard file name: ``model-00001-of-00004.safetensors``."""
    return f"model-{i:05d}-of-{n:05d}.safetensors"


def save(obj: Any, path: str | os.PathLike[str], max_shard_size: int | str | None = None) -> list[Path]:
    """Write quantized tensors (and plain ones), or a model quantized by lowbit, as a lowbit checkpoint.

    Args:
        obj: a dict of name -> :class:`~lowbit.QTensor`, NumPy array or torch tensor; or a
            ``torch.nn.Module`` whose lowbit layers (``lowbit.nn``) are stored quantized with
            their configuration, and every other parameter and buffer as it is.
        path: a ``.safetensors`` file, or a folder (created) for ``model.safetensors`` or shards.
        max_shard_size: the largest shard in bytes, or ``"2GB"``-style text (a folder only).

    Returns:
        The files written, the index last.

    Raises:
        OptionError: a bad size, or a single-file path that would need several shards.
        ModelError: a model with layers still in training or observation (QAT, Static before convert).

    Example:
        >>> import torch, tempfile, lowbit, lowbit.model as lm
        >>> net = torch.nn.Sequential(torch.nn.Linear(64, 8))
        >>> _ = lm.quantize_(net, lm.WeightOnly("int4", "group:32"))
        >>> [p.name for p in lowbit.save(net, tempfile.mkdtemp(), max_shard_size=300)]
        ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']
    """
    limit = parse_size(max_shard_size)
    modules: dict[str, Any]
    aliases: dict[str, str] = {}
    if isinstance(obj, Mapping):
        items, modules = _items_of_mapping(obj), {}
    elif hasattr(obj, "state_dict") and hasattr(obj, "named_modules"):
        items, modules, aliases = _items_of_model(obj)
    else:
        raise OptionError(f"save takes a dict of tensors or a torch model, got {type(obj).__name__}")
    target = Path(path)
    shards = _shards(items, limit)
    if target.suffix == ".safetensors":
        if len(shards) > 1:
            raise OptionError(f"{target}: {len(shards)} shards of at most {limit} bytes do not fit one file; "
                              "give a folder instead")
        write_items(target, items, modules, aliases)
        return [target]
    target.mkdir(parents=True, exist_ok=True)
    (target / INDEX_NAME).unlink(missing_ok=True)  # an earlier checkpoint here: its index goes first
    if len(shards) == 1:
        write_items(target / SINGLE_NAME, items, modules, aliases)
        _remove_stale(target, [target / SINGLE_NAME])
        return [target / SINGLE_NAME]
    written, weight_map = [], {}
    for i, shard in enumerate(shards, 1):
        file = target / shard_name(i, len(shards))
        write_items(file, shard, modules, aliases)
        written.append(file)
        weight_map.update({key: file.name for it in shard for key, _, _, _ in it.entries})
    index = {"metadata": {"total_size": sum(it.nbytes for it in items), "format": "lowbit",
                          "lowbit_format_version": FORMAT_VERSION}, "weight_map": weight_map}
    _remove_stale(target, written)
    write_json(target / INDEX_NAME, index)
    return [*written, target / INDEX_NAME]


def _remove_stale(folder: Path, written: list[Path]) -> None:
    """Shard files of an earlier checkpoint in ``folder`` that the new one does not use."""
    for p in [folder / SINGLE_NAME, *folder.glob("model-?????-of-?????.safetensors")]:
        if p.is_file() and p not in written:
            p.unlink()


# --------------------------------------------------------------------------- reading


@dataclass
class Checkpoint:
    """An opened checkpoint: its files, entries, the descriptions of quantized tensors and lowbit layers."""

    root: Path
    files: dict[str, SafetensorsFile]
    where: dict[str, str]  # entry name -> file name
    tensors: dict[str, dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # name -> the plain entry that holds its value

    def array(self, entry: str) -> np.ndarray:
        """The raw array of an entry (a memory map; BF16 as uint16 bits)."""
        return self.files[self.where[entry]].array(entry)

    def dtype(self, entry: str) -> str:
        """The safetensors dtype of an entry."""
        return self.files[self.where[entry]].dtype(entry)

    def plain_names(self) -> list[str]:
        """Entries that are not part of a quantized tensor."""
        owned = {k for info in self.tensors.values() for k in info.get("arrays", {}).values()}
        return [n for n in self.where if n not in owned]

    def qtensor(self, name: str) -> QTensor:
        """A quantized tensor, validated."""
        return read_qtensor(name, self.tensors[name], self.array)

    def plain(self, name: str) -> np.ndarray:
        """A plain tensor (BF16 widened to float32, exactly)."""
        f = self.files[self.where[name]]
        return f.float32(name) if f.dtype(name) == "BF16" else np.array(f.array(name))

    def items(self) -> Iterator[tuple[str, Any]]:
        """``(name, QTensor or ndarray)`` in file order; an alias (a tied weight) comes after its target, as
        the same array."""
        owners = {k: n for n, info in self.tensors.items() for k in info.get("arrays", {}).values()}
        tied: dict[str, list[str]] = {}
        for alias, target in self.aliases.items():
            tied.setdefault(target, []).append(alias)
        done = set()
        for entry in self.where:
            owner = owners.get(entry)
            if owner is None:
                value = self.plain(entry)
                yield entry, value
                for alias in tied.get(entry, []):
                    yield alias, value
            elif owner not in done:
                done.add(owner)
                yield owner, self.qtensor(owner)


def _files_of(root: Path) -> list[Path]:
    if root.is_file():
        if root.suffix.lower() in _PICKLES:
            raise FileFormatError(
                f"{root} is a pickle checkpoint, which lowbit refuses to load (it can run code); convert it once "
                "with: safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')"
            )
        if root.suffix.lower() in _ARRAYS:
            raise FileFormatError(f"{root} is a NumPy {root.suffix} file, not a lowbit checkpoint (a .safetensors "
                                  "file or folder); read it with lowbit.io.load_tensors")
        return [root]
    if not root.exists():
        raise FileFormatError(f"{root}: no such file or folder")
    if not root.is_dir():
        raise FileFormatError(f"{root} is neither a regular file nor a folder; give a .safetensors file or a folder")
    index = root / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_bytes())["weight_map"]
            names = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
            raise FileFormatError(f"{index}: not a safetensors index ({_brief(err)}); it needs a 'weight_map' "
                                  "object of tensor name -> shard file name") from None
        if not all(isinstance(n, str) and "/" not in n and n.endswith(".safetensors") for n in names):
            raise FileFormatError(f"{index}: its weight_map must name .safetensors files in the same folder")
        return [root / n for n in names]
    if (root / SINGLE_NAME).is_file():
        return [root / SINGLE_NAME]
    pickles = [p.name for p in root.iterdir() if p.suffix.lower() in _PICKLES]
    hint = f"; {', '.join(pickles)} are pickles, which lowbit refuses" if pickles else ""
    raise FileFormatError(f"{root}: no {SINGLE_NAME} and no {INDEX_NAME} in this folder{hint}")


def _lowbit_meta(f: SafetensorsFile) -> dict[str, Any]:
    text = f.metadata.get(META_KEY)
    if text is None:
        return {}
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise FileFormatError(f"{f.path}: unreadable lowbit metadata ({err})") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k, {}), dict) for k in ("tensors", "modules",
                                                                                      "aliases")):
        raise FileFormatError(f"{f.path}: the lowbit metadata must be an object whose 'tensors', 'modules' and "
                              "'aliases' are objects; the file is corrupt")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        newer = " (upgrade lowbit)" if isinstance(version, int) and version > FORMAT_VERSION else ""
        raise FileFormatError(f"{f.path}: lowbit checkpoint format_version {_brief(version)}; this lowbit reads "
                              f"integer versions 1 to {FORMAT_VERSION}{newer}")
    bad = [n for n, info in doc.get("tensors", {}).items() if not _arrays_ok(info)]
    if bad:
        raise FileFormatError(f"{f.path}: quantized tensor(s) {_brief(bad)} lack an 'arrays' object mapping array "
                              "keys to entry names; the metadata is corrupt")
    return doc


def _arrays_ok(info: Any) -> bool:
    arrays = info.get("arrays") if isinstance(info, dict) else None
    return isinstance(arrays, dict) and all(isinstance(v, str) for v in arrays.values())


def _brief(value: Any, limit: int = 120) -> str:
    """``repr``/``str`` of a value from a file, cut so that a hostile file cannot flood a message."""
    text = str(value) if isinstance(value, BaseException) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def open_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Open and validate a checkpoint (a file or a folder) without reading any tensor data.

    Raises:
        FileFormatError: a pickle, a missing file, a bad header or index, a tensor named twice, a
            quantized tensor whose arrays are missing, or an alias that names no plain entry of its file.
    """
    root = Path(path)
    files = {p.name: SafetensorsFile(p) for p in _files_of(root)}
    ckpt = Checkpoint(root, files, {})
    for fname, f in files.items():
        for entry in f.names:
            if entry in ckpt.where:
                raise FileFormatError(f"{root}: tensor {entry!r} is in both {ckpt.where[entry]} and {fname}")
            ckpt.where[entry] = fname
        doc = _lowbit_meta(f)
        ckpt.tensors.update(doc.get("tensors", {}))
        ckpt.modules.update(doc.get("modules", {}))
        aliases = doc.get("aliases", {})
        if not isinstance(aliases, dict) or not all(isinstance(v, str) and v in f.names for v in aliases.values()):
            raise FileFormatError(f"{f.path}: its lowbit 'aliases' must map names to entries of the same file")
        ckpt.aliases.update(aliases)
    for name, info in ckpt.tensors.items():
        missing = [k for k in info["arrays"].values() if k not in ckpt.where]
        if missing:
            raise FileFormatError(f"{root}: quantized tensor {name!r} lacks its arrays {_brief(missing)}")
    owned = {k for info in ckpt.tensors.values() for k in info["arrays"].values()}
    clash = [a for a, t in ckpt.aliases.items() if a in ckpt.where or a in ckpt.tensors or t in owned]
    if clash:
        raise FileFormatError(f"{root}: aliases {clash[:4]} name stored tensors or point into quantized ones")
    return ckpt


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a lowbit checkpoint: name -> :class:`~lowbit.QTensor` for quantized tensors, NumPy arrays for
    the others (bfloat16 widened to float32, exactly). Needs NumPy only; never imports torch.

    A ``.gguf`` file is read with :func:`lowbit.io.gguf.read_gguf` (GGUF tensor names; needs ``gguf``).

    Args:
        path: a ``.safetensors`` file, a folder with ``model.safetensors`` or an index and shards, or a
            ``.gguf`` file.

    Raises:
        FileFormatError: see :func:`open_checkpoint`; a quantized tensor whose arrays do not fit it.

    Example:
        >>> import numpy as np, tempfile, os, lowbit
        >>> p = os.path.join(tempfile.mkdtemp(), "x.safetensors")
        >>> _ = lowbit.save({"x": lowbit.quantize(np.arange(4.0, dtype=np.float32), "uint8")}, p)
        >>> lowbit.load(p)["x"].dequantize().tolist()
        [0.0, 1.0, 2.0, 3.0]
    """
    if str(path).lower().endswith(".gguf"):
        from lowbit.io.gguf.reader import read_gguf

        return read_gguf(path)
    return dict(open_checkpoint(path).items())
