"""What a GGUF file's quantization lost: each tensor against the float weights it came from.

Tensors are matched by name (GGUF names mapped back to Hugging Face llama names) and, for q/k
projections, the rows are put back in Hugging Face order (the GGUF header's head counts say how).
One tensor is read at a time.

Example:
    >>> table = compare_gguf("smollm2-q4_k_m.gguf", "smollm2/model.safetensors")  # doctest: +SKIP
    >>> print(table.to_text())  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from lowbit.errors import FileFormatError
from lowbit.io.gguf._llama import hf_name, qk_row_order
from lowbit.io.gguf._types import BLOCK
from lowbit.io.gguf.reader import _open, iter_gguf
from lowbit.metrics import CompareRow, CompareTable, error_stats

__all__ = ["compare_gguf"]


def _reference_file(path: Path) -> Path:
    if path.is_dir():
        if (path / "model.safetensors").is_file():
            return path / "model.safetensors"
        raise FileFormatError(f"{path}: no model.safetensors in the reference folder; pass the file")
    return path


def _heads(path: str | os.PathLike[str]) -> dict[str, int]:
    """``{"attn_q": heads, "attn_k": kv heads}`` from the GGUF header (llama architecture)."""
    fields = _open(path).fields
    out = {}
    for key, part in (("llama.attention.head_count", "attn_q"), ("llama.attention.head_count_kv", "attn_k")):
        if key in fields:
            out[part] = int(fields[key].contents())
    return out


def _dequantized(name: str, value: Any, heads: dict[str, int]) -> np.ndarray:
    y = value.dequantize() if hasattr(value, "dequantize") else np.asarray(value, np.float32)
    part = name.split(".")[2] if name.startswith("blk.") and name.count(".") >= 3 else ""
    if part in heads and y.ndim == 2:
        back = np.empty_like(y)
        back[qk_row_order(y.shape[0], heads[part])] = y
        y = back
    return y


class _Total:
    """Running sums over all tensors for the ``(all)`` row."""

    def __init__(self) -> None:
        self.numel = self.nbytes = self.original = 0
        self.sxx = self.syy = self.sxy = self.sse = self.mad = 0.0

    def add(self, x: np.ndarray, y: np.ndarray, row: CompareRow) -> None:
        x64, y64 = x.astype(np.float64).reshape(-1), y.astype(np.float64).reshape(-1)
        self.sxx += row.signal  # sum x^2, from the row's own pass; the cross sums need one more
        self.syy += float(y64 @ y64)
        self.sxy += float(x64 @ y64)
        self.sse += row.sse
        self.mad = max(self.mad, row.max_abs_error)
        self.numel += row.numel
        self.nbytes += row.nbytes
        self.original += row.original_nbytes

    def row(self) -> CompareRow:
        sqnr = math.inf if self.sse == 0 else 10 * math.log10(self.sxx / self.sse) if self.sxx else -math.inf
        cos = self.sxy / math.sqrt(self.sxx * self.syy) if self.sxx and self.syy else float(self.sxx == self.syy)
        return CompareRow("(all)", "gguf", "-", "mixed", 0, "-", False, self.numel, self.sxx, self.sse,
                          self.sse / max(self.numel, 1), sqnr, self.mad, cos, self.nbytes, self.original)


def compare_gguf(path: str | os.PathLike[str], reference: str | os.PathLike[str]) -> CompareTable:
    """Per tensor and overall: SQNR, MSE, max error, cosine and bits/weight of a GGUF file against float weights.

    Args:
        path: the GGUF file.
        reference: the float weights it was made from: a ``.safetensors`` file or a model folder.

    Returns:
        A CompareTable (one row per GGUF tensor found in the reference, scheme = GGUF type, then ``(all)``).

    Raises:
        FileFormatError: an unreadable file, or no GGUF tensor found in the reference (the message names
            a few of each side).

    Example:
        >>> print(compare_gguf("smollm2-q4_0.gguf", "smollm2/").to_text())  # doctest: +SKIP
    """
    from lowbit.io.tensors import _open

    ref = _reference_file(Path(reference))
    with _open(ref) as reader:  # opened and validated once; one tensor read at a time
        return _compare(path, reader, ref)


def _compare(path: str | os.PathLike[str], reader: Any, ref: Path) -> CompareTable:
    ref_names = reader.dtypes
    heads = _heads(path)
    rows, total, missing = [], _Total(), []
    for name, type_name, value in iter_gguf(path):
        hf = hf_name(name)
        if hf not in ref_names:
            missing.append(name)
            continue
        x = np.asarray(reader.read(hf), np.float32)
        y = _dequantized(name, value, heads)
        if x.shape != y.shape:
            raise FileFormatError(f"{name} is {y.shape} in the GGUF file but {hf} is {x.shape} in {ref}")
        st = error_stats(x, y)
        per, size = BLOCK[type_name]
        original = x.size * (2 if ref_names[hf].upper() in ("BF16", "F16", "BFLOAT16", "FLOAT16") else 4)
        row = CompareRow(name, type_name, "gguf", type_name, round(8 * size / per), f"block:{per}",
                         type_name.endswith("_0"), x.size, st.signal, st.sse, st.mse, st.sqnr_db,
                         st.max_abs_error, st.cosine, x.size // per * size, original)
        rows.append(row)
        total.add(x, y, row)
    if not rows:
        raise FileFormatError(f"no tensor of {path} ({', '.join(missing[:3])} ...) is in {ref} "
                              f"({', '.join(list(ref_names)[:3])} ...)")
    return CompareTable([*rows, total.row()])
