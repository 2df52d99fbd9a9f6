"""Where the tensors of a GGUF export come from: an in-memory torch model (float or quantized by lowbit), or a
folder (a Hugging Face model, or a lowbit checkpoint written by ``lowbit quantize`` / ``lowbit.save``).

Each tensor is described before it is read (name, shape, scheme), so the writer plans the whole file first
and then reads, converts and writes one tensor at a time.

Example:
    >>> import torch
    >>> src = model_source(torch.nn.Linear(64, 4))
    >>> [(t.name, t.shape, t.scheme) for t in src.tensors]
    [('weight', (4, 64), None), ('bias', (4,), None)]
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lowbit.errors import FileFormatError
from lowbit.qtensor import QTensor

__all__ = ["Scheme", "SourceTensor", "Source", "model_source", "folder_source"]


@dataclass(frozen=True)
class Scheme:
    """How a quantized source tensor is stored: what decides which GGUF block type holds it exactly."""

    qtype: str
    granularity: str
    symmetric: bool
    scale_format: str
    float_zero_point: bool

    @classmethod
    def of(cls, qt: QTensor) -> Scheme:
        """The scheme of a QTensor."""
        return cls(qt.qtype.name, str(qt.granularity), qt.symmetric, qt.scale_format, qt.float_zero_point)

    def __str__(self) -> str:
        kind = "sym" if self.symmetric else "float zero point" if self.float_zero_point else "int zero point"
        return f"{self.qtype} {self.granularity} {kind} {self.scale_format} scales"


@dataclass
class SourceTensor:
    """One tensor: its name and shape, its scheme (None: float) and how to read it."""

    name: str
    shape: tuple[int, ...]
    scheme: Scheme | None
    read: Callable[[], Any]  # -> QTensor or float ndarray


@dataclass
class Source:
    """The tensors of a model with its ``config.json`` and the folder holding its tokenizer (if any)."""

    tensors: list[SourceTensor]
    config: dict[str, Any]
    tokenizer_dir: Path | None = None
    aliases: dict[str, str] = field(default_factory=dict)  # tied names -> the tensor that holds the value


def _same(value: Any) -> Any:
    return value


def _numpy(t: Any) -> np.ndarray:
    return t.detach().float().numpy() if hasattr(t, "detach") else np.asarray(t, np.float32)


def model_source(model: Any, tokenizer_dir: str | Path | None = None) -> Source:
    """The tensors of a torch model: lowbit layers as QTensors, everything else as float arrays.

    Tied weights (the same storage under two names, e.g. ``lm_head.weight``) are listed once, with the
    other names in ``aliases``.
    """
    from lowbit.io._layers import layer_weight_keys, lowbit_layers

    layers = lowbit_layers(model)
    tensors: list[SourceTensor] = []
    skipped: set[str] = set()
    for mname, module in layers.items():
        prefix = f"{mname}." if mname else ""
        qt = module.weight_qtensor()
        tensors.append(SourceTensor(f"{prefix}weight", tuple(qt.shape), Scheme.of(qt), partial(_same, qt)))
        skipped |= {prefix + k for k in layer_weight_keys(module)}
    seen: dict[tuple[int, int], str] = {}
    aliases: dict[str, str] = {}
    for name, value in model.state_dict().items():
        if name in skipped:
            continue
        key = (value.untyped_storage().data_ptr(), value.storage_offset())
        if key in seen and value.numel() > 1:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors.append(SourceTensor(name, tuple(value.shape), None, partial(_numpy, value)))
    config = model.config.to_dict() if hasattr(model, "config") and hasattr(model.config, "to_dict") else {}
    return Source(tensors, config, Path(tokenizer_dir) if tokenizer_dir else None, aliases)


def folder_source(path: str | Path) -> Source:
    """The tensors of a model folder (float safetensors, or a lowbit checkpoint) and its ``config.json``.

    Raises:
        FileFormatError: no ``config.json`` beside the weights, or an unreadable checkpoint.
    """
    from lowbit.io.checkpoint import open_checkpoint

    root = Path(path)
    if not root.exists():
        raise FileFormatError(f"{root}: no such model folder or file")
    folder = root if root.is_dir() else root.parent
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise FileFormatError(f"{folder}: no readable config.json ({err}); GGUF export needs the model's "
                              "configuration beside its weights") from None
    ckpt = open_checkpoint(root)
    tensors = []
    for name, info in ckpt.tensors.items():
        scheme = Scheme(str(info["qtype"]), str(info["granularity"]), bool(info["symmetric"]),
                        str(info["scale_format"]), info.get("zero_point_kind") == "float")
        tensors.append(SourceTensor(name, tuple(int(s) for s in info["shape"]), scheme,
                                    partial(ckpt.qtensor, name)))
    for name in ckpt.plain_names():
        f = ckpt.files[ckpt.where[name]]
        tensors.append(SourceTensor(name, tuple(f.shape(name)), None, partial(ckpt.plain, name)))
    return Source(tensors, config, folder, dict(ckpt.aliases))
