"""Render :func:`lowbit.compare` results over many tensors: per-tensor SQNR and totals.

The aggregate SQNR of a scheme is computed from summed signal and summed
error over every tensor (not an average of dB values), so large tensors
weigh by their size, as they do in a model.

Example:
    >>> import numpy as np, lowbit
    >>> t = lowbit.compare(np.linspace(-1, 1, 64, dtype=np.float32), ["int8", "int4"], name="w")
    >>> [a.scheme for a in aggregate(t.rows)]
    ['int8 tensor sym', 'int4 tensor sym']
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from lowbit._text import format_table, jsonable
from lowbit.metrics import CompareRow, CompareTable

__all__ = ["AggregateRow", "aggregate", "render_compare"]


@dataclass(frozen=True)
class AggregateRow:
    """One scheme summed over every tensor."""

    scheme: str
    tensors: int
    numel: int
    sse: float
    signal: float
    nbytes: int
    original_nbytes: int
    worst_tensor: str
    worst_sqnr_db: float

    @property
    def sqnr_db(self) -> float:
        """10 log10(total signal / total error); inf when exact."""
        if self.sse == 0:
            return math.inf
        return -math.inf if self.signal == 0 else 10 * math.log10(self.signal / self.sse)

    @property
    def compression(self) -> float:
        """Total original bytes / total quantized bytes."""
        return self.original_nbytes / self.nbytes

    @property
    def bits_per_element(self) -> float:
        """Quantized bits per element, scales included."""
        return 8 * self.nbytes / self.numel


def aggregate(rows: list[CompareRow]) -> list[AggregateRow]:
    """Sum rows per scheme (in first-seen scheme order).

    Example:
        >>> aggregate([])
        []
    """
    out = []
    for scheme in dict.fromkeys(r.scheme for r in rows):
        mine = [r for r in rows if r.scheme == scheme]
        worst = min(mine, key=lambda r: r.sqnr_db)
        out.append(
            AggregateRow(
                scheme, len(mine), sum(r.numel for r in mine), sum(r.sse for r in mine), sum(r.signal for r in mine),
                sum(r.nbytes for r in mine), sum(r.original_nbytes for r in mine), worst.tensor, worst.sqnr_db,
            )
        )
    return out


def _short_names(names: list[str]) -> dict[str, str]:
    """Drop the dotted prefix every name shares (``encoder.layer.``)."""
    parts = [n.split(".") for n in names]
    keep = 0
    while len(names) > 1 and all(len(p) > keep + 1 and p[keep] == parts[0][keep] for p in parts):
        keep += 1
    return {n: ".".join(p[keep:]) for n, p in zip(names, parts, strict=True)}


def _pivot(rows: list[CompareRow], qtype: str) -> str:
    mine = [r for r in rows if r.qtype == qtype]
    schemes = list(dict.fromkeys(r.scheme for r in mine))
    tensors = list(dict.fromkeys(r.tensor for r in mine))
    short = _short_names(tensors)
    cell = {(r.tensor, r.scheme): r.sqnr_db for r in mine}
    header = [f"{qtype} SQNR dB"] + [s.removeprefix(qtype + " ") for s in schemes]
    body = [[short[t]] + [f"{cell[(t, s)]:.2f}" for s in schemes] for t in tensors]
    return format_table(header, body)


def _aggregate_table(aggs: list[AggregateRow]) -> str:
    header = ["scheme", "bits/el", "bytes", "ratio", "SQNR dB (all)", "worst dB", "worst tensor"]
    names = _short_names([a.worst_tensor for a in aggs])
    body = [
        [a.scheme, f"{a.bits_per_element:.3f}", f"{a.nbytes:,}", f"{a.compression:.2f}x",
         f"{a.sqnr_db:.2f}", f"{a.worst_sqnr_db:.2f}", names[a.worst_tensor]]
        for a in aggs
    ]
    return format_table(header, body)


def render_compare(table: CompareTable, fmt: str = "text", long: bool = False) -> str:
    """Text, Markdown or JSON rendering of a comparison over one or many tensors.

    One tensor (or ``long=True``) gives the full table of every metric; many
    tensors give one SQNR grid per format (tensor x scheme) and the totals.

    Example:
        >>> import numpy as np, lowbit
        >>> t = lowbit.compare(np.ones(8, np.float32), ["int8"], name="w")
        >>> '"aggregate"' in render_compare(t, "json")
        True
    """
    aggs = aggregate(table.rows)
    if fmt == "json":
        doc = json.loads(table.to_json())
        doc["aggregate"] = [
            jsonable({**asdict(a), "sqnr_db": a.sqnr_db, "compression": a.compression,
                      "bits_per_element": a.bits_per_element})
            for a in aggs
        ]
        return json.dumps(doc, indent=2)
    if fmt == "markdown":
        return table.to_markdown()
    single = len({r.tensor for r in table.rows}) == 1
    if single or long:
        return table.to_text()
    parts = [_pivot(table.rows, q) for q in dict.fromkeys(r.qtype for r in table.rows)]
    parts.append(
        f"All {aggs[0].tensors if aggs else 0} tensors, per scheme:\n" + _aggregate_table(aggs)
        + "\n(bits/el: stored bits per weight, codes + scales as stored + zero points)"
    )
    return "\n\n".join(parts)
