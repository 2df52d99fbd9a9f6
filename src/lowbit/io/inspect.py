"""What a checkpoint holds: per tensor its format, granularity, bits/weight and bytes, with totals.

Only headers are read (no tensor data), so inspecting a checkpoint of any size is instant.

Example:
    >>> import numpy as np, tempfile, os, lowbit
    >>> p = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    >>> _ = lowbit.save({"w": lowbit.quantize(np.ones((4, 64), np.float32), "int4", granularity="group:32"),
    ...                  "b": np.zeros(4, np.float32)}, p)
    >>> rows = inspect_checkpoint(p).rows
    >>> [(r.name, r.format, r.bits_per_weight) for r in rows]
    [('w', 'int4 group:32 sym', 5.0), ('b', 'F32', 32.0)]
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from lowbit._text import format_table
from lowbit.io.checkpoint import open_checkpoint

__all__ = ["TensorRow", "Inspection", "inspect_checkpoint"]


@dataclass(frozen=True)
class TensorRow:
    """One tensor of a checkpoint."""

    name: str
    format: str
    shape: tuple[int, ...]
    numel: int
    nbytes: int
    quantized: bool

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per element (scales and zero points included)."""
        return 8.0 * self.nbytes / self.numel if self.numel else 0.0


@dataclass(frozen=True)
class Inspection:
    """The rows of :func:`inspect_checkpoint`, with totals and text/JSON renderings."""

    path: str
    files: int
    rows: list[TensorRow]
    aliases: dict[str, str] = field(default_factory=dict)  # tied weights: name -> the stored tensor it shares

    def totals(self) -> dict[str, Any]:
        """Bytes and elements, all and quantized only."""
        q = [r for r in self.rows if r.quantized]
        qn, qb = sum(r.numel for r in q), sum(r.nbytes for r in q)
        return {"tensors": len(self.rows), "quantized_tensors": len(q), "bytes": sum(r.nbytes for r in self.rows),
                "elements": sum(r.numel for r in self.rows), "quantized_bytes": qb, "quantized_elements": qn,
                "quantized_bits_per_weight": 8.0 * qb / qn if qn else 0.0}

    def to_text(self) -> str:
        """An aligned table and a totals line."""
        body = [[r.name, r.format, "x".join(map(str, r.shape)) or "()", f"{r.bits_per_weight:.3f}", f"{r.nbytes:,}"]
                for r in self.rows]
        t = self.totals()
        quantized = "none quantized"
        if t["quantized_tensors"]:
            quantized = (f"{t['quantized_tensors']} quantized: {t['quantized_bytes']:,} bytes, "
                         f"{t['quantized_bits_per_weight']:.3f} bits/weight")
        lines = [format_table(["tensor", "format", "shape", "bits/w", "bytes"], body),
                 f"{t['tensors']} tensors in {self.files} file(s), {t['bytes']:,} bytes; {quantized}"]
        lines += [f"{alias} shares {target} (tied, stored once)" for alias, target in self.aliases.items()]
        return "\n".join(lines)

    def to_json(self) -> str:
        """One JSON document: ``{"path", "files", "tensors": [...], "totals": {...}, "aliases": {...}}``."""
        tensors = [{**asdict(r), "shape": list(r.shape), "bits_per_weight": r.bits_per_weight} for r in self.rows]
        return json.dumps({"path": self.path, "files": self.files, "tensors": tensors, "totals": self.totals(),
                           "aliases": self.aliases}, indent=2)


def inspect_checkpoint(path: str | os.PathLike[str]) -> Inspection:
    """Describe every tensor of a checkpoint (lowbit or plain safetensors) from its headers.

    Raises:
        FileFormatError: an unreadable or invalid checkpoint.
    """
    ckpt = open_checkpoint(path)
    owned = {k: n for n, info in ckpt.tensors.items() for k in info["arrays"].values()}
    sizes: dict[str, int] = {}
    order: list[str] = []
    for entry, fname in ckpt.where.items():
        owner = owned.get(entry, entry)
        if owner not in sizes:
            order.append(owner)
            sizes[owner] = 0
        sizes[owner] += ckpt.files[fname].nbytes(entry)
    rows = []
    for name in order:
        info = ckpt.tensors.get(name)
        if info is None:
            f = ckpt.files[ckpt.where[name]]
            shape = f.shape(name)
            rows.append(TensorRow(name, f.dtype(name), shape, math.prod(shape), sizes[name], False))
        else:
            fmt = f"{info['qtype']} {info['granularity']} {'sym' if info['symmetric'] else 'asym'}"
            if info.get("scale_format") not in (None, "float32"):
                fmt += f" {info['scale_format']}"
            if info.get("algorithm") not in (None, "rtn"):
                fmt += f" {info['algorithm']}"
            shape = tuple(int(s) for s in info["shape"])
            rows.append(TensorRow(name, fmt, shape, math.prod(shape), sizes[name], True))
    return Inspection(str(path), len(ckpt.files), rows, dict(ckpt.aliases))

