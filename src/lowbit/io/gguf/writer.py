"""Write a llama-architecture model as a GGUF file that llama.cpp loads, keeping lowbit's codes where they fit.

The whole file is planned first (names, types, shapes), the header, metadata and tensor infos are
written, then each tensor is read, converted and written on its own, so memory stays at about one
tensor.  The file appears only when complete (temporary file in the destination folder, fsync, rename).

Example:
    >>> from lowbit.io.gguf import export_gguf
    >>> summary = export_gguf("smollm2/", "smollm2-q4_0.gguf", "q4_0")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lowbit.errors import OptionError
from lowbit.io._atomic import atomic_file
from lowbit.io.gguf._blocks import LEGACY_TYPES, pack_legacy, quantize_legacy
from lowbit.io.gguf._llama import gguf_name, llama_metadata, qk_heads, qk_row_order, tokenizer_metadata
from lowbit.io.gguf._sources import Source, SourceTensor, folder_source, model_source
from lowbit.io.gguf._types import BLOCK, FILE_TYPES, MAPPABLE_SCHEMES, exact_type, ragged_rows, tensor_type
from lowbit.qtensor import QTensor

__all__ = ["export_gguf", "ExportSummary"]


@dataclass
class _Planned:
    src: SourceTensor
    gguf: str
    gtype: str
    exact: bool  # lowbit codes written as they stand

    @property
    def nbytes(self) -> int:
        per, size = BLOCK[self.gtype]
        return int(np.prod(self.src.shape, dtype=np.int64)) // per * size


@dataclass
class ExportSummary:
    """What :func:`export_gguf` wrote: the file, tensors per GGUF type, bytes and bits per weight."""

    path: Path
    types: dict[str, int] = field(default_factory=dict)
    exact: int = 0  # tensors whose lowbit codes were written unchanged
    nbytes: int = 0
    params: int = 0

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per parameter over all tensors."""
        return 8.0 * self.nbytes / max(self.params, 1)

    def to_text(self) -> str:
        """One line per fact, for the CLI."""
        types = ", ".join(f"{n} {t}" for t, n in sorted(self.types.items()))
        return (f"wrote {self.path} ({self.nbytes / 1e6:.1f} MB, {self.bits_per_weight:.2f} bits/weight)\n"
                f"tensors: {types}; {self.exact} kept lowbit's codes unchanged")


def _plan(source: Source, requested: str | None) -> list[_Planned]:
    n_layers = int(source.config.get("num_hidden_layers", 0))
    names = {t.name for t in source.tensors}
    tied = bool(source.config.get("tie_word_embeddings", False))
    has_output = "lm_head.weight" in names and not tied
    plan, refused = [], []
    for t in source.tensors:
        name = gguf_name(t.name)
        if name is None or (t.name == "lm_head.weight" and tied and "model.embed_tokens.weight" in names):
            continue
        if t.scheme is None:
            plan.append(_Planned(t, name, tensor_type(name, t.shape, requested or "f32", n_layers=n_layers,
                                                      has_output=has_output), False))
            continue
        gtype = exact_type(t.scheme, t.shape)
        if gtype is None:
            why = ragged_rows(t.scheme, t.shape)
            refused.append(f"{t.name} ({t.scheme}{'; ' + why if why else ''})")
            continue
        plan.append(_Planned(t, name, gtype, True))
    if refused:
        raise OptionError(f"{len(refused)} quantized tensor(s) cannot be written without re-quantizing: "
                          f"{', '.join(refused[:4])}{' ...' if len(refused) > 4 else ''}. Schemes that map "
                          f"exactly: {MAPPABLE_SCHEMES}; or export the float model with --type")
    return plan


def _reordered(p: _Planned, value: Any, config: dict[str, Any]) -> Any:
    """The tensor with llama.cpp's q/k row order (float array or QTensor parts)."""
    heads = qk_heads(p.src.name, config)
    order = slice(None) if heads is None else qk_row_order(p.src.shape[0], heads)
    if isinstance(value, QTensor):
        return value.codes[order], value.scale[order], value.zero_point[order]
    return value[order]


def _tensor_bytes(p: _Planned, config: dict[str, Any]) -> np.ndarray:
    value = p.src.read()
    if p.exact:
        parts = _reordered(p, value, config) if isinstance(value, QTensor) else None
        if parts is None:
            raise OptionError(f"{p.src.name}: expected a quantized tensor")
        codes, scale, zp = parts
        offset = zp.astype(np.float32) if value.float_zero_point else None
        return pack_legacy(codes, scale, offset, p.gtype).reshape(p.src.shape[0], -1)
    arr = np.ascontiguousarray(_reordered(p, np.asarray(value, np.float32), config))
    if p.gtype == "F32":
        return arr
    if p.gtype == "F16":
        return arr.astype(np.float16)
    if p.gtype in LEGACY_TYPES:
        return quantize_legacy(arr, p.gtype).reshape(arr.shape[0], -1)
    from lowbit.io.gguf._kquants import quantize_q4_k, quantize_q6_k

    blocks = quantize_q4_k(arr) if p.gtype == "Q4_K" else quantize_q6_k(arr)
    return blocks.reshape(arr.shape[0], -1)


def _add_metadata(writer: Any, meta: dict[str, Any]) -> None:
    """Each value with the GGUF type llama.cpp reads it as (integers uint32, floats float32)."""
    from gguf import GGUFValueType

    for key, value in meta.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        elif value and isinstance(value[0], int):
            writer.add_key_value(key, list(value), GGUFValueType.ARRAY, GGUFValueType.INT32)
        else:
            writer.add_array(key, list(value))


def _metadata(source: Source, file_type: str, name: str, pre: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"general.name": name, **llama_metadata(source.config)}
    meta["general.file_type"] = FILE_TYPES.get(file_type, 0)
    meta["general.quantization_version"] = 2
    if source.tokenizer_dir is None:
        raise OptionError("a GGUF model file needs the tokenizer: pass tokenizer_dir= (the folder with "
                          "tokenizer.json)")
    meta.update(tokenizer_metadata(source.tokenizer_dir, int(source.config["vocab_size"]), pre))
    return meta


def _write(path: Path, plan: list[_Planned], meta: dict[str, Any], config: dict[str, Any]) -> None:
    import gguf

    with atomic_file(path) as tmp:
        writer = gguf.GGUFWriter(tmp, "llama")
        _add_metadata(writer, {k: v for k, v in meta.items() if k != "general.architecture"})
        for p in plan:
            raw = getattr(gguf.GGMLQuantizationType, p.gtype)
            if p.gtype in ("F32", "F16"):
                writer.add_tensor_info(p.gguf, p.src.shape, np.dtype(p.gtype.lower().replace("f", "float")),
                                       p.nbytes)
            else:
                per, size = BLOCK[p.gtype]
                byte_shape = (*p.src.shape[:-1], p.src.shape[-1] // per * size)
                writer.add_tensor_info(p.gguf, byte_shape, np.dtype(np.uint8), p.nbytes, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for p in plan:
            writer.write_tensor_data(_tensor_bytes(p, config))
        writer.close()


def export_gguf(model: Any, path: str | os.PathLike[str], type: str | None = None, *,
                tokenizer_dir: str | os.PathLike[str] | None = None, name: str | None = None,
                tokenizer_pre: str = "default", overwrite: bool = False) -> ExportSummary:
    """Write a llama-architecture model as a GGUF file for llama.cpp.

    Args:
        model: a ``LlamaForCausalLM`` (float, or quantized by :func:`lowbit.model.quantize_`), or a folder:
            a Hugging Face model or a lowbit checkpoint (``lowbit quantize`` output) with its ``config.json``.
        path: the ``.gguf`` file to write.
        type: the GGUF type of float matrices: ``"q8_0"``, ``"q4_0"``, ``"q4_1"``, ``"q5_0"``, ``"q5_1"``,
            ``"q4_k"``, ``"q6_k"``, ``"q4_k_m"`` (llama.cpp's mix), ``"f16"`` or ``"f32"`` (llama.cpp's
            reference quantizers, byte for byte; None: f32). Tensors lowbit quantized always keep their
            codes, in the block type that holds them exactly (``int4`` group:32 float16 scales is Q4_0,
            ...), whatever ``type`` says for the float ones.
        tokenizer_dir: the folder with ``tokenizer.json`` (default: the model folder).
        name: ``general.name`` (default: the folder or the config's name).
        tokenizer_pre: llama.cpp's pre-tokenizer name (``"smollm"`` for SmolLM2, ``"llama-bpe"`` ...).
        overwrite: replace an existing file.

    Returns:
        An :class:`ExportSummary`.

    Raises:
        OptionError: not a llama model, a quantized scheme no block type holds exactly (the message lists
            the schemes that map), an unknown type, or an existing file without ``overwrite``.
        FileFormatError: an unreadable folder, config or tokenizer.

    Example:
        >>> import lowbit.io.gguf as g
        >>> g.export_gguf("smollm2/", "smollm2-q4_k_m.gguf", "q4_k_m", tokenizer_pre="smollm")  # doctest: +SKIP
    """
    out = Path(path)
    if out.exists() and not overwrite:
        raise OptionError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    if isinstance(model, (str, os.PathLike)):
        source = folder_source(Path(model))
        if tokenizer_dir is not None:
            source.tokenizer_dir = Path(tokenizer_dir)
        default_name = Path(model).name
    else:
        source = model_source(model, None if tokenizer_dir is None else Path(tokenizer_dir))
        default_name = str(source.config.get("_name_or_path") or "model")
    if type is not None and type not in FILE_TYPES:
        raise OptionError(f"unknown GGUF type {type!r}; choose one of {', '.join(FILE_TYPES)}")
    plan = _plan(source, type)
    matrices = Counter(p.gtype.lower() for p in plan if len(p.src.shape) == 2)
    file_type = type or (matrices.most_common(1)[0][0] if matrices else "f32")
    meta = _metadata(source, file_type, name or default_name, tokenizer_pre)
    _write(out, plan, meta, source.config)
    summary = ExportSummary(out, dict(Counter(p.gtype for p in plan)), sum(p.exact for p in plan),
                            sum(p.nbytes for p in plan), sum(int(np.prod(p.src.shape)) for p in plan))
    return summary
