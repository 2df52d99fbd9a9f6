"""Quantize (or dequantize) a safetensors checkpoint file by file, in bounded memory, resumably.

``quantize_checkpoint(src, dst, qtype=..., granularity=...)`` reads each input tensor's rows straight
from the file (float32, float16, bfloat16 and float64, without torch), quantizes the float tensors that match
the selection a block of rows at a time, and streams the stored arrays into the output file, whose
header is planned before any tensor is quantized (every stored array's size follows from the shape
and the format). Memory stays near the largest tensor plus one block of rows, whatever the size of
the checkpoint. The result is exactly what :func:`lowbit.quantize` gives on the whole tensor.

* A file in, a ``.safetensors`` file or a folder out; a model folder (one ``.safetensors`` file or
  shards with ``model.safetensors.index.json``) in, a folder out with one output shard per input
  shard, the index written last, and the folder's other files (config, tokenizer) copied beside.
* Every output file is written atomically; after each shard, ``.lowbit-quantize.json`` records its
  sha256. ``resume=True`` skips the shards whose file still has the recorded checksum for the same
  input and options, and redoes the others.
* Each shard is one call of one function (``_quantize_and_digest``), whoever runs it: this process in turn
  (``executor="local"``) or one Ray task per shard on a cluster (``executor="ray"``, ``lowbit[ray]``,
  :mod:`lowbit.io._ray`, docs/SCALING.md), so both write the same bytes; the driver keeps the plan, the
  manifest and the index.
* Pickle checkpoints and checkpoints lowbit already quantized are refused; every input is validated
  before any output is written. An existing output is replaced only with ``overwrite=True`` (or
  completed with ``resume=True``), and never one that is also an input.

Example:
    >>> import numpy as np, tempfile, os, lowbit
    >>> from lowbit.io._safetensors import SafetensorsWriter
    >>> d = tempfile.mkdtemp(); src = os.path.join(d, "in.safetensors")
    >>> w = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    >>> with SafetensorsWriter(src, [("w", "F32", (8, 64)), ("b", "F32", (8,))]) as f:
    ...     f.write("w", w); f.write("b", np.zeros(8, np.float32))
    >>> s = quantize_checkpoint(src, os.path.join(d, "out.safetensors"), qtype="int4", granularity="group:32",
    ...                         progress=False)
    >>> s.quantized, s.kept, np.array_equal(lowbit.load(os.path.join(d, "out.safetensors"))["w"].codes,
    ...                                     lowbit.quantize(w, "int4", granularity="group:32").codes)
    (1, 1, True)
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lowbit.errors import FileFormatError, GranularityError, OptionError, error_context
from lowbit.formats import QType, get_qtype, get_scale_format, scale_format_for
from lowbit.granularity import Granularity, PerChannel, PerGroup, PerTensor, as_granularity, plan
from lowbit.io._progress import Progress
from lowbit.io._safetensors import SafetensorsFile, SafetensorsWriter
from lowbit.io.checkpoint import INDEX_NAME, SINGLE_NAME, _files_of, _lowbit_meta, write_json
from lowbit.io.format import FORMAT_VERSION, META_KEY, description, planned_entries, tensor_entries

__all__ = ["QuantizeOptions", "ConvertSummary", "quantize_checkpoint", "dequantize_checkpoint", "MANIFEST"]

MANIFEST = ".lowbit-quantize.json"
_FLOATS = ("F32", "F16", "BF16", "F64")
_CHUNK = 1 << 24  # float32 elements per block of rows (64 MiB)
_ALGORITHMS = ("rtn", "hqq")
_HQQ_SCALE_FORMATS = ("float32", "float16", "bfloat16", "kquant6")
"""Scale formats HQQ stores block by block of rows: each scale on its own, or kquant6, whose super-scales
cover 8 consecutive scales and so never cross blocks of 8 rows (double8's mean spans the whole tensor)."""


@dataclass(frozen=True)
class QuantizeOptions:
    """What ``lowbit quantize`` does to each float tensor it selects (see :func:`quantize_checkpoint`)."""

    qtype: str = "int4"
    granularity: str = "group:64"
    scale_format: str | None = None
    symmetric: bool | None = None
    algorithm: str = "rtn"
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    min_ndim: int = 2
    #: from a ``lowbit plan`` file: tensor name -> its scheme's fields (None: kept float); only these are quantized
    plan: dict[str, dict[str, Any] | None] | None = None
    zero_point: str = "int"

    def for_tensor(self, name: str) -> QuantizeOptions | None:
        """The options one tensor is quantized with: the run's, or with a plan the tensor's planned scheme
        (None: the plan does not quantize it).

        Example:
            >>> opts = QuantizeOptions(plan={"fc.weight": {"qtype": "int8", "granularity": "channel"}})
            >>> opts.for_tensor("fc.weight").qtype, opts.for_tensor("fc.bias")
            ('int8', None)
        """
        if self.plan is None:
            return self
        fields = self.plan.get(name)
        return None if fields is None else replace(self, plan=None, **fields)

    def check(self) -> None:
        """Validate every option (raises QTypeError, GranularityError or OptionError)."""
        if self.plan is not None:
            for name, fields in self.plan.items():
                if fields is not None:
                    with error_context(f"the plan's scheme for {name!r}"):
                        replace(self, plan=None, **fields).check()
            return
        qt = get_qtype(self.qtype)
        gran = as_granularity(self.granularity, allowed=(PerTensor, PerChannel, PerGroup))
        if (isinstance(gran, PerChannel) and gran.axis != 0) or (isinstance(gran, PerGroup) and gran.axis != -1):
            raise GranularityError(f"checkpoint quantization takes tensor, channel (axis 0) or group:SIZE along the "
                                   f"last axis, got {gran}")
        scale_format_for(qt, self.scale_format)
        if (qt.is_grid or qt.is_mx) and self.symmetric is False:
            raise OptionError(f"{qt.name} ({qt.kind}) is scale-only; drop the affine symmetry or use an integer format")
        if self.algorithm not in _ALGORITHMS:
            raise OptionError(f"algorithm must be one of {_ALGORITHMS} for checkpoint files, got {self.algorithm!r} "
                              "(GPTQ and AWQ need the model and calibration data: use the Python API)")
        if self.algorithm == "hqq":
            if qt.kind != "int" or self.symmetric:
                raise OptionError("algorithm='hqq' takes integer formats, affine (leave the symmetry default/asym)")
            if (self.scale_format or "float32") not in _HQQ_SCALE_FORMATS:
                raise OptionError(f"algorithm='hqq' stores its scales as {', '.join(_HQQ_SCALE_FORMATS)}")
        if isinstance(self.min_ndim, bool) or not isinstance(self.min_ndim, int) or self.min_ndim < 0:
            raise OptionError(f"min_ndim must be an int >= 0, got {self.min_ndim!r}")
        self._check_zero_point(qt, gran)

    def _check_zero_point(self, qt: QType, gran: Granularity) -> None:
        from lowbit.core import check_float_zero_point

        also = ("channel or group granularity (not tensor)",) if isinstance(gran, PerTensor) else ()
        check_float_zero_point(self.zero_point, qt, self.symmetric, self.scale_format or "float32", also=also)


@dataclass
class ConvertSummary:
    """What a conversion did: bytes, tensors, time, and one note per tensor that took a fallback."""

    input_bytes: int = 0
    output_bytes: int = 0
    quantized: int = 0
    kept: int = 0
    quantized_elements: int = 0
    quantized_bytes: int = 0
    skipped_shards: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per quantized element (codes, scales and zero points)."""
        return 8.0 * self.quantized_bytes / self.quantized_elements if self.quantized_elements else 0.0

    @property
    def mb_per_s(self) -> float:
        """Input MB (10^6 bytes) per second."""
        return self.input_bytes / 1e6 / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (``--json``)."""
        return {**asdict(self), "bits_per_weight": self.bits_per_weight, "mb_per_s": self.mb_per_s}


# --------------------------------------------------------------------------- planning


def _selected(name: str, f: SafetensorsFile, opts: QuantizeOptions) -> bool:
    shape = f.shape(name)
    return (f.dtype(name) in _FLOATS and len(shape) >= opts.min_ndim and int(np.prod(shape)) > 0
            and (opts.include is None or any(fnmatch.fnmatchcase(name, p) for p in opts.include))
            and not any(fnmatch.fnmatchcase(name, p) for p in opts.exclude))


def _granularity_for(shape: tuple[int, ...], opts: QuantizeOptions) -> tuple[Granularity | None, str]:
    """The granularity a tensor gets (None: it stays float) and a note when it is not the one asked for."""
    qt = get_qtype(opts.qtype)
    gran = as_granularity(opts.granularity)
    if qt.is_mx:
        gran = PerGroup(qt.block_size)
    if isinstance(gran, PerGroup):  # a size that does not divide a matrix's axis: a shorter last group
        length = shape[gran.axis] if -len(shape) <= gran.axis < len(shape) else 0
        if not length or (length % gran.size and (qt.is_mx or len(shape) > 2)):
            if qt.is_mx:
                return None, f"kept float (blocks of {gran.size} do not divide {length})"
            return PerChannel(0), f"channel (group {gran.size} does not divide {length})"
    return gran, ""


def _algorithm_for(info: dict[str, Any], opts: Any) -> str:
    """The algorithm a tensor takes: HQQ for 2-d tensors only, round-to-nearest otherwise."""
    return opts.algorithm if (opts.algorithm != "hqq" or len(info["shape"]) == 2) else "rtn"


def _plan_tensor(name: str, f: SafetensorsFile, opts: QuantizeOptions) -> tuple[dict[str, Any] | None, str]:
    """The description a selected tensor will be written with (None: kept float), and a note."""
    shape = f.shape(name)
    gran, note = _granularity_for(shape, opts)
    if gran is None:
        return None, note
    qt = get_qtype(opts.qtype)
    algorithm = _algorithm_for({"shape": shape}, opts)
    if algorithm != opts.algorithm:
        note = (note + "; " if note else "") + "rtn (hqq takes 2-d weights)"
    sym = (True if qt.is_grid or qt.is_mx else qt.signed) if opts.symmetric is None else opts.symmetric
    if algorithm == "hqq":
        sym = False
    dtype = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}[f.dtype(name)]
    info = {"qtype": qt.name, "granularity": str(gran), "symmetric": sym,
            "scale_format": scale_format_for(qt, opts.scale_format).name, "shape": list(shape), "dtype": dtype}
    if opts.zero_point == "float":
        info["zero_point_kind"] = "float"
    return info, note


# --------------------------------------------------------------------------- one tensor, in blocks of rows


def _rows(f: SafetensorsFile, name: str) -> Iterator[np.ndarray]:
    """float32 blocks of whole rows (first axis) of a tensor, each at most ~``_CHUNK`` elements and a multiple
    of 8 rows (so packed codes of a block start on a byte boundary)."""
    shape = f.shape(name)
    if len(shape) < 2:
        yield f.float32(name).reshape(shape)
        return
    per_row = int(np.prod(shape[1:]))
    step = max(8, (_CHUNK // max(per_row, 1)) // 8 * 8)
    for r in range(0, shape[0], step):
        yield f.float32(name, slice(r, r + step))


def _stored_rtn(f: SafetensorsFile, name: str, info: dict[str, Any]) -> Iterator[Any]:
    """QTensors of consecutive row blocks whose stored arrays concatenate into the whole tensor's."""
    from lowbit.core import quantize

    gran = as_granularity(info["granularity"])
    direct = not get_scale_format(info["scale_format"]).shared and not isinstance(gran, PerTensor)
    if direct:
        for block in _rows(f, name):
            yield quantize(block, info["qtype"], granularity=gran, symmetric=info["symmetric"],
                           scale_format=info["scale_format"], zero_point=info.get("zero_point_kind"))
        return
    yield from _two_pass(f, name, info, gran)


def _block_range(block: np.ndarray, gran: Granularity) -> tuple[np.ndarray, np.ndarray]:
    from lowbit._arrays import check_finite

    bad = int(block.size - np.count_nonzero(np.isfinite(block)))
    check_finite(block.reshape(-1), bad, block.shape)
    if isinstance(gran, PerTensor):
        return np.array(block.min()), np.array(block.max())
    rows = block.reshape(block.shape[0], -1)
    if isinstance(gran, PerChannel):
        return rows.min(axis=1), rows.max(axis=1)
    lay = plan(gran, block.shape)
    if lay.ragged and isinstance(gran, PerGroup):  # the last group is shorter: reduce each run of groups
        axis, starts = gran.axis % block.ndim, [g0 for g0, _ in lay.group_bounds()]
        return np.minimum.reduceat(block, starts, axis=axis), np.maximum.reduceat(block, starts, axis=axis)
    blocks = block.reshape(-1, lay.R, lay.T) if lay.T > 1 else block.reshape(-1, lay.R)
    lo, hi = blocks.min(axis=1), blocks.max(axis=1)
    return lo.reshape(lay.param_shape), hi.reshape(lay.param_shape)


def _two_pass(f: SafetensorsFile, name: str, info: dict[str, Any], gran: Granularity) -> Iterator[Any]:
    """Scales chosen and encoded for the whole tensor (per tensor, double8, kquant6), then codes per block."""
    from lowbit.core import quantize
    from lowbit.formats.scales import store_scales
    from lowbit.qparams import affine_zero_points, choose_qparams

    qt = get_qtype(info["qtype"])
    los, his = zip(*(_block_range(b, gran) for b in _rows(f, name)), strict=True)
    if isinstance(gran, PerTensor):
        lo, hi = np.min(los), np.max(his)
    else:
        param_shape = plan(gran, tuple(info["shape"])).param_shape
        lo = np.concatenate([np.atleast_1d(v) for v in los]).reshape(param_shape)
        hi = np.concatenate([np.atleast_1d(v) for v in his]).reshape(param_shape)
    sym = bool(info["symmetric"])
    s, z = choose_qparams(lo, hi, qt, symmetric=sym, scale_dtype=np.float32)
    arrays, dec = store_scales(s, qt, scale_format_for(qt, info["scale_format"]))
    if not sym and not np.array_equal(dec, s):
        z = affine_zero_points(lo, dec, qt)
    yield arrays  # the stored scale arrays of the whole tensor first
    r = 0
    for block in _rows(f, name):
        n = block.shape[0] if block.ndim > 1 else 1
        part = (slice(None),) if isinstance(gran, PerTensor) else (slice(r, r + n),)
        sb, zb = (dec, z) if isinstance(gran, PerTensor) else (dec[part], z[part])
        yield quantize(block, qt, granularity=gran, symmetric=sym, scale=sb, zero_point=zb)
        r += n


def _stored_hqq(f: SafetensorsFile, name: str, info: dict[str, Any]) -> Iterator[Any]:
    from lowbit.algorithms import hqq_quantize

    for block in _rows(f, name):
        yield hqq_quantize(block, info["qtype"], granularity=info["granularity"], scale_format=info["scale_format"],
                           zero_point=info.get("zero_point_kind", "int"))


def _write_quantized(writer: SafetensorsWriter, f: SafetensorsFile, name: str, info: dict[str, Any],
                     algorithm: str) -> None:
    """Stream one tensor's stored arrays: the codes block by block, then its scales (and zero points)."""
    blocks = _stored_hqq(f, name, info) if algorithm == "hqq" else _stored_rtn(f, name, info)
    entries = planned_entries(name, info)
    whole_scales: dict[str, np.ndarray] | None = None
    parts: dict[str, list[np.ndarray]] = {}

    def codes() -> Iterator[np.ndarray]:  # written as they come; scales (small) are kept for after
        nonlocal whole_scales
        for item in blocks:
            if isinstance(item, dict):
                whole_scales = item
                continue
            for key, _, _, array in tensor_entries(name, item)[1:]:
                parts.setdefault(key, []).append(array)
            yield item.data

    writer.write_parts(entries[0][0], codes())
    for key, _, shape in entries[1:]:
        short = key[len(name) + 1:]
        if whole_scales is not None and short in whole_scales:
            writer.write(key, np.asarray(whole_scales[short]).reshape(shape))
        else:
            got = parts[key]
            writer.write(key, (np.concatenate(got) if got[0].ndim else got[0]).reshape(shape))


# --------------------------------------------------------------------------- one file


def _quantize_shard(src: Path, dst: Path, opts: QuantizeOptions,
                    advance: Callable[[int, str], None] | None = None) -> ConvertSummary:
    """Quantize one input shard into its output file: the unit of work of every executor (local loop, Ray task).

    Pure in the sense that matters: the output bytes depend only on the input file and ``opts``, so any
    executor that calls it writes what the local run writes. ``advance(nbytes, tensor)`` is called after each
    tensor with that tensor's input bytes. Returns this shard's part of the summary (no timing).
    """
    part = ConvertSummary()
    f = SafetensorsFile(src)
    plans: dict[str, tuple[dict[str, Any] | None, str]] = {}
    entries: list[tuple[str, str, tuple[int, ...]]] = []
    for name in f.names:
        mine = opts.for_tensor(name)
        info, note = _plan_tensor(name, f, mine) if mine and _selected(name, f, mine) else (None, "")
        plans[name] = (info, note)
        if note:
            part.notes.append(f"{name}: {note}")
        entries += planned_entries(name, info) if info is not None else [(name, f.dtype(name), f.shape(name))]
    tensors = {}
    for name, (info, _) in plans.items():
        if info is not None:
            keys = [k for k, _, _ in planned_entries(name, info)]
            tensors[name] = {**description(algorithm=_algorithm_for(info, opts.for_tensor(name)), **info),
                             "arrays": {k.rpartition(".")[2]: k for k in keys}}
    meta = {"format": "lowbit", META_KEY: json.dumps({"format_version": FORMAT_VERSION, "tensors": tensors,
                                                      "modules": {}}, separators=(",", ":"))}
    with SafetensorsWriter(dst, entries, meta) as writer:
        for name, (info, _) in plans.items():
            with error_context(f"{src.name}: tensor {name!r}"):
                if info is None:
                    writer.write(name, f.array(name))
                    part.kept += 1
                else:
                    _write_quantized(writer, f, name, info, tensors[name]["algorithm"])
                    part.quantized += 1
                    part.quantized_elements += int(np.prod(info["shape"]))
                    part.quantized_bytes += sum(int(np.prod(s)) * _itemsize(d)
                                                for _, d, s in planned_entries(name, info))
            if advance is not None:
                advance(f.nbytes(name), name)
    part.output_bytes = dst.stat().st_size
    return part


def _merge(summary: ConvertSummary, part: ConvertSummary) -> None:
    """Add one shard's counts and notes to the run's summary."""
    summary.output_bytes += part.output_bytes
    summary.quantized += part.quantized
    summary.kept += part.kept
    summary.quantized_elements += part.quantized_elements
    summary.quantized_bytes += part.quantized_bytes
    summary.notes += part.notes


def _quantize_file(src: Path, dst: Path, opts: QuantizeOptions, summary: ConvertSummary, bar: Progress) -> None:
    _merge(summary, _quantize_shard(src, dst, opts, bar.advance))


def _quantize_and_digest(src: Path, dst: Path, advance: Callable[[int, str], None] | None = None, *,
                         opts: QuantizeOptions) -> tuple[ConvertSummary, str]:
    """One shard's work as an executor runs it (``functools.partial(..., opts=opts)``): its summary part and the
    output's sha256 for the manifest."""
    part = _quantize_shard(src, dst, opts, advance)
    return part, _sha256(dst)


ShardJobs = list[tuple[Path, Path]]
ShardWork = Callable[..., tuple[ConvertSummary, str]]
Executor = Callable[[ShardJobs, ShardWork, Progress], Iterator[tuple[int, ConvertSummary, str]]]


def _run_local(jobs: ShardJobs, work: ShardWork, bar: Progress) -> Iterator[tuple[int, ConvertSummary, str]]:
    """The local executor: each (input, output) shard in turn, in this process; yields (job index, part, sha256)."""
    for i, (src, dst) in enumerate(jobs):
        part, digest = work(src, dst, bar.advance)
        yield i, part, digest


_EXECUTORS = ("local", "ray")


def _executor(name: str, address: str | None) -> Executor:
    """The shard executor called ``name`` (``"local"``, or ``"ray"`` imported only when asked for)."""
    if name not in _EXECUTORS:
        raise OptionError(f"executor must be one of {_EXECUTORS}, got {name!r}")
    if address is not None and name != "ray":
        raise OptionError(f"ray_address={address!r} needs executor='ray' (--ray ADDRESS)")
    if name == "local":
        return _run_local
    from lowbit.io._ray import ray_executor

    return ray_executor(address)


def _itemsize(dtype: str) -> int:
    from lowbit.io._safetensors import DTYPES

    return DTYPES[dtype].itemsize


# --------------------------------------------------------------------------- folders, resume


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _identity(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _load_manifest(folder: Path, options: dict[str, Any]) -> dict[str, Any]:
    try:
        doc = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return doc.get("shards", {}) if isinstance(doc, dict) and doc.get("options") == options else {}


def _copy_side_files(src: Path, dst: Path) -> None:
    """The model folder's other files (config, tokenizer ...), not its tensors, index or pickles."""
    from lowbit.io.checkpoint import _PICKLES

    for p in src.iterdir():
        if p.name.startswith(".") or p.name == INDEX_NAME or p.suffix in (".safetensors", *_PICKLES):
            continue
        if p.is_dir():
            shutil.copytree(p, dst / p.name, dirs_exist_ok=True)
        elif p.is_file():
            shutil.copy2(p, dst / p.name)


def _inputs(src: Path) -> list[Path]:
    files = _files_of(src)
    for p in files:  # every input validated before any output is written
        if _lowbit_meta(SafetensorsFile(p)).get("tensors"):
            raise FileFormatError(f"{p} holds tensors lowbit already quantized; quantize the original float checkpoint "
                                  "(or `lowbit dequantize` this one first)")
    return files


def _outputs(src: Path, files: list[Path], dst: Path) -> list[Path]:
    """The files a conversion writes (shards and, from a model folder, its index), inputs never among them."""
    if dst.suffix == ".safetensors":
        if len(files) > 1 or src.is_dir():
            raise FileFormatError(f"{src} is a model folder; give a folder as the output, not {dst.name}")
        outs = [dst]
    else:
        outs = [dst / (p.name if src.is_dir() else SINGLE_NAME) for p in files]
        if src.is_dir():
            outs.append(dst / INDEX_NAME)
    inputs = {p.resolve() for p in files}
    if (src.is_dir() and dst.resolve() == src.resolve()) or any(o.resolve() in inputs for o in outs):
        raise FileFormatError(f"{dst} would overwrite the input {src}; write to another file or folder")
    return outs


def _check_fresh(dst: Path, outs: list[Path], overwrite: bool, resume: bool) -> None:
    """Refuse to replace an earlier output unless asked; with ``overwrite``, remove the old index first (so a
    killed run never leaves an old index over new shards) and then the old shards."""
    if dst.suffix == ".safetensors":
        old = [dst] if dst.exists() else []
    else:
        old = sorted({*dst.glob("*.safetensors"), *(p for p in (dst / INDEX_NAME, dst / MANIFEST) if p.exists())})
    if not old or resume:
        return
    if not overwrite:
        raise FileFormatError(f"{dst} already holds {', '.join(p.name for p in old[:3])}"
                              f"{' ...' if len(old) > 3 else ''}; pass overwrite=True (--overwrite) to replace it, "
                              "or resume=True (--resume) to finish an interrupted run")
    for p in sorted(old, key=lambda p: p.name != INDEX_NAME):
        if p not in outs or p.name == INDEX_NAME:
            p.unlink()


def quantize_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, qtype: str = "int4",
                        granularity: str = "group:64", scale_format: str | None = None,
                        symmetric: bool | None = None, algorithm: str = "rtn",
                        include: Iterable[str] | None = None, exclude: Iterable[str] = (), min_ndim: int = 2,
                        resume: bool = False, overwrite: bool = False, progress: bool | None = None,
                        executor: str = "local", ray_address: str | None = None,
                        plan: Any = None, zero_point: str = "int", preset: str | None = None) -> ConvertSummary:
    """Quantize the float tensors of a safetensors checkpoint into a lowbit checkpoint (see the module docstring).

    Args:
        src: a ``.safetensors`` file or a model folder.
        dst: a ``.safetensors`` file (from a file) or a folder.
        qtype, granularity, scale_format, symmetric: as :func:`lowbit.quantize`; a group size that does
            not divide a matrix's last axis gives a shorter last group; a tensor of more than 2 dimensions
            (a conv kernel) it does not divide falls back to one scale per row (MX: the tensor stays float).
        algorithm: ``"rtn"`` or ``"hqq"`` (2-d tensors; others round to nearest; scales in float32,
            float16, bfloat16 or kquant6).
        include, exclude: glob patterns on tensor names (all float tensors when ``include`` is None).
        min_ndim: only tensors with at least this many dimensions (biases and norms stay float).
        resume: skip output shards already complete for the same input and options.
        overwrite: replace an earlier output at ``dst`` (without it, an existing output is an error).
        progress: a progress display on stderr (default: when stderr is a terminal).
        executor: ``"local"`` (this process, shard after shard) or ``"ray"``: one Ray task per shard on a
            cluster (``pip install lowbit[ray]``; IN and OUT on a filesystem every node sees, docs/SCALING.md).
            The output bytes are the same.
        ray_address: the cluster to join (``ray.init(address=...)``); None: ``RAY_ADDRESS``, a cluster started
            on this machine, or a new local one. A session already initialised in this process is used as is.
        plan: a ``lowbit plan`` file (or :class:`lowbit.plan.Plan`): each planned layer's ``.weight`` takes
            its own scheme, and no other tensor is quantized (``qtype``, ``granularity``, ``scale_format``,
            ``symmetric`` and ``algorithm`` are then ignored). Every planned layer must be in the checkpoint.
        zero_point: ``"int"`` or ``"float"`` (unsigned formats, float32/float16 scales; rtn or hqq:
            ``w = code * scale + min`` per block, GGUF Q4_1's rule).
        preset: a preset name (``"w4"``, :mod:`lowbit.model.presets`): its data-free scheme replaces
            ``qtype``, ``granularity``, ``scale_format``, ``symmetric``, ``algorithm`` and ``zero_point``.

    Returns:
        A :class:`ConvertSummary`.

    Raises:
        FileFormatError: a pickle, a missing or invalid input, an input already quantized, a folder into
            a single file, an output that exists (without ``overwrite``/``resume``) or is also an input.
        QTypeError, GranularityError, OptionError: bad options. NonFiniteError: NaN/Inf in a tensor
            (the message names the file and the tensor). LowbitError: a Ray task that failed on every retry
            (the message names the shard and the tensor).
    """
    run = _executor(executor, ray_address)
    src_p, dst_p = Path(src), Path(dst)
    files = _inputs(src_p)
    if preset is not None:
        qtype, granularity, scale_format, symmetric, algorithm, zero_point = _preset_scheme(preset)
    opts = QuantizeOptions(qtype, str(as_granularity(granularity)), scale_format, symmetric, algorithm,
                           None if include is None else tuple(include), tuple(exclude), min_ndim,
                           None if plan is None else _planned_schemes(plan, files), zero_point)
    opts.check()
    _check_fresh(dst_p, _outputs(src_p, files, dst_p), overwrite, resume)
    start = time.perf_counter()
    summary = ConvertSummary(input_bytes=sum(p.stat().st_size for p in files))
    if dst_p.suffix == ".safetensors":
        with Progress(summary.input_bytes, "quantize", progress) as bar:
            if run is _run_local:
                _quantize_file(files[0], dst_p, opts, summary, bar)
            else:
                for _, part, _ in run([(files[0], dst_p)], functools.partial(_quantize_and_digest, opts=opts), bar):
                    _merge(summary, part)
    else:
        _quantize_folder(src_p, files, dst_p, opts, summary, resume, progress, run)
    summary.seconds = time.perf_counter() - start
    return summary


def _preset_scheme(name: str) -> tuple[Any, ...]:
    """(qtype, granularity, scale_format, symmetric, algorithm, zero_point) of a preset's data-free form."""
    from lowbit.model.presets import preset
    from lowbit.plan.plan_file import scheme_fields

    f = scheme_fields(preset(name))
    assert f is not None  # a preset is a scheme, never "keep float"
    return f["qtype"], f["granularity"], f["scale_format"], f["symmetric"], f["algorithm"], f["zero_point"]


def _planned_schemes(plan: Any, files: list[Path]) -> dict[str, dict[str, Any] | None]:
    """Tensor name -> scheme fields of every layer a plan quantizes; every planned layer must be in ``files``."""
    from lowbit.plan import Plan, load_plan

    p = plan if isinstance(plan, Plan) else load_plan(plan)
    names = {name for path in files for name in SafetensorsFile(path).names}
    missing = sorted(layer for layer in p.layers if f"{layer}.weight" not in names)
    if missing:
        raise OptionError(f"the plan names {len(missing)} layer(s) whose weight is not in the checkpoint, e.g. "
                          f"{', '.join(missing[:3])}: was it made for this model?")
    return {name: fields for name in sorted(names) if (fields := p.scheme_for(name)) is not None}


def _quantize_folder(src: Path, files: list[Path], dst: Path, opts: QuantizeOptions, summary: ConvertSummary,
                     resume: bool, progress: bool | None, run: Executor) -> None:
    """The driver: plans the shards (skipping those a resumed run finds complete), hands the rest to ``run``,
    records each finished shard's checksum in the manifest, and writes the index last."""
    dst.mkdir(parents=True, exist_ok=True)
    (dst / INDEX_NAME).unlink(missing_ok=True)  # written again last: an index means every shard is complete
    options = json.loads(json.dumps(asdict(opts)))  # as the manifest records them (tuples become lists)
    done = _load_manifest(dst, options) if resume else {}
    outs = [dst / (p.name if src.is_dir() else SINGLE_NAME) for p in files]
    record: dict[str, Any] = {}
    jobs: ShardJobs = []
    parts: dict[str, ConvertSummary] = {}
    with Progress(summary.input_bytes, "quantize", progress) as bar:
        for p, out in zip(files, outs, strict=True):
            prev = done.get(out.name)
            if prev and prev.get("source") == {"name": p.name, **_identity(p)} and out.is_file() \
                    and _sha256(out) == prev.get("sha256"):
                record[out.name] = prev
                summary.skipped_shards += 1
                parts[out.name] = ConvertSummary(output_bytes=out.stat().st_size)
                bar.advance(p.stat().st_size, f"{out.name} (done)")
            else:
                jobs.append((p, out))
        for i, part, digest in run(jobs, functools.partial(_quantize_and_digest, opts=opts), bar):
            p, out = jobs[i]
            parts[out.name] = part
            record[out.name] = {"source": {"name": p.name, **_identity(p)}, "sha256": digest}
            record = {o.name: record[o.name] for o in outs if o.name in record}  # in shard order, whatever finished
            write_json(dst / MANIFEST, {"options": options, "shards": record})
    for out in outs:
        _merge(summary, parts[out.name])
    if src.is_dir():
        _copy_side_files(src, dst)
        if (src / INDEX_NAME).is_file():
            weight_map = {e: out for out in record for e in SafetensorsFile(dst / out).names}
            write_json(dst / INDEX_NAME, {"metadata": {"total_size": summary.output_bytes, "format": "lowbit",
                                                       "lowbit_format_version": FORMAT_VERSION},
                                          "weight_map": weight_map})


# --------------------------------------------------------------------------- back to float


_TO_DTYPE = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


def _cast(x: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values in ``dtype``'s storage (bfloat16 as bits, round to nearest even)."""
    if dtype == "bfloat16":
        bits = np.ascontiguousarray(x, np.float32).view(np.uint32)
        rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
        return (rounded >> np.uint32(16)).astype(np.uint16)
    return np.asarray(x, dtype)


def dequantize_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, dtype: str = "bfloat16",
                          overwrite: bool = False, progress: bool | None = None) -> ConvertSummary:
    """Turn a lowbit checkpoint back into a plain one: every quantized tensor dequantized to ``dtype``.

    Raises:
        OptionError: a dtype other than float32, float16 or bfloat16. FileFormatError: a bad input, one
            without quantized tensors, an output that exists (without ``overwrite``) or is also an input.

    Example:
        >>> import numpy as np, tempfile, os, lowbit
        >>> d = tempfile.mkdtemp(); q = os.path.join(d, "q.safetensors")
        >>> _ = lowbit.save({"w": lowbit.quantize(np.ones((2, 8), np.float32), "int4")}, q)
        >>> _ = dequantize_checkpoint(q, os.path.join(d, "f.safetensors"), dtype="float32", progress=False)
        >>> lowbit.load(os.path.join(d, "f.safetensors"))["w"].tolist()[0][:2]
        [1.0, 1.0]
    """
    if dtype not in _TO_DTYPE:
        raise OptionError(f"dtype must be one of {list(_TO_DTYPE)}, got {dtype!r}")
    from lowbit.io.checkpoint import open_checkpoint

    src_p, dst_p = Path(src), Path(dst)
    ckpt = open_checkpoint(src_p)
    if not ckpt.tensors:
        raise FileFormatError(f"{src_p} holds no quantized tensor: nothing to dequantize (it is a plain checkpoint)")
    start = time.perf_counter()
    summary = ConvertSummary(input_bytes=sum(f.size for f in ckpt.files.values()))
    single = dst_p.suffix == ".safetensors"
    _check_fresh(dst_p, _outputs(src_p, [f.path for f in ckpt.files.values()], dst_p), overwrite, False)
    if not single:
        dst_p.mkdir(parents=True, exist_ok=True)
    with Progress(summary.input_bytes, "dequantize", progress) as bar:
        for fname, f in ckpt.files.items():
            out = dst_p if single else dst_p / (fname if src_p.is_dir() else SINGLE_NAME)
            _dequantize_file(ckpt, f, out, dtype, summary, bar)
    if src_p.is_dir() and not single:
        _copy_side_files(src_p, dst_p)
        if (src_p / INDEX_NAME).is_file():
            weight_map = {e: p.name for p in dst_p.glob("*.safetensors") for e in SafetensorsFile(p).names}
            write_json(dst_p / INDEX_NAME, {"metadata": {"total_size": summary.output_bytes},
                                            "weight_map": weight_map})
    summary.seconds = time.perf_counter() - start
    return summary


def _dequantize_file(ckpt: Any, f: SafetensorsFile, out: Path, dtype: str, summary: ConvertSummary,
                     bar: Progress) -> None:
    owned = {k: n for n, info in ckpt.tensors.items() for k in info["arrays"].values()}
    names: list[str] = []
    for entry in f.names:
        owner = owned.get(entry, entry)
        if owner not in names:
            names.append(owner)
    entries = [(n, _TO_DTYPE[dtype], tuple(ckpt.tensors[n]["shape"])) if n in ckpt.tensors
               else (n, f.dtype(n), f.shape(n)) for n in names]
    with SafetensorsWriter(out, entries, {"format": "pt"}) as writer:
        for n in names:
            with error_context(f"{f.path.name}: tensor {n!r}"):
                if n in ckpt.tensors:
                    qt = ckpt.qtensor(n)
                    writer.write(n, _cast(qt.dequantize(), dtype))
                    summary.quantized += 1
                    bar.advance(qt.nbytes, n)
                else:
                    writer.write(n, f.array(n))
                    summary.kept += 1
                    bar.advance(f.nbytes(n), n)
    summary.output_bytes += out.stat().st_size

