"""What a report shows, gathered once: per-tensor error rows, a few float tensors, model-level results.

:class:`ReportData` is the one input of the HTML page, the plots and the summaries.  It is built
from a tensor file (every scheme applied to every tensor with :func:`lowbit.compare`), from a lowbit
checkpoint (its stored tensors against the float reference), or from a model
(:func:`lowbit.report.models.model_data`).

Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> rng = np.random.default_rng(0)
    >>> np.savez(path, a=rng.standard_normal((8, 64)).astype(np.float32), b=np.ones((4, 4), np.float32))
    >>> data = tensor_file_data(path, ["int8", "int4"])
    >>> data.tensors, data.schemes
    (['a', 'b'], ['int8 tensor sym', 'int4 tensor sym'])
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lowbit.errors import OptionError
from lowbit.metrics import CompareRow, Scheme, compare, error_stats
from lowbit.report.compare import AggregateRow, aggregate

__all__ = ["ModelResult", "ReportData", "tensor_file_data", "checkpoint_data", "row_of", "HISTOGRAM_LAYERS"]

#: how many tensors get a histogram (the worst by SQNR): enough to see the pattern, small enough to stay fast
HISTOGRAM_LAYERS = 3


@dataclass(frozen=True)
class ModelResult:
    """One scheme applied to a whole model: its size and its model-level metrics."""

    scheme: str
    nbytes: int
    bits_per_weight: float
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_rungs(cls, rungs: Sequence[Any]) -> list[ModelResult]:
        """Results of :func:`lowbit.model.run_ladder` (fp32 rung first); bits/weight is 32 x bytes / fp32 bytes.

        Example:
            >>> from types import SimpleNamespace as R
            >>> [(m.scheme, m.bits_per_weight) for m in ModelResult.from_rungs(
            ...     [R(name="fp32", nbytes=400, metrics={}), R(name="W4", nbytes=60, metrics={})])]
            [('fp32', 32.0), ('W4', 4.8)]
        """
        if not rungs or rungs[0].nbytes <= 0:
            raise OptionError("from_rungs needs the ladder's rungs, the float model (fp32) first")
        base = rungs[0].nbytes
        return [cls(r.name, r.nbytes, 32 * r.nbytes / base, dict(r.metrics)) for r in rungs]


@dataclass
class ReportData:
    """Everything a report draws.

    Attributes:
        title: the page title.
        rows: one :class:`~lowbit.metrics.CompareRow` per tensor and scheme.
        weights: float tensors drawn as histograms (name -> array); a few representative ones.
        activations: float activations of layers (name -> array), where calibration batches were given.
        models: model-level results per scheme (size, metrics), where a model was evaluated.
        metric: the model-level metric the error-vs-bits curve plots (None: aggregate SQNR).
        higher_is_better: the direction of ``metric``.
        range_qtype: the format the calibration ranges drawn on histograms are fitted for.
        notes: plain sentences shown under the summary (what was measured, what is missing).
    """

    title: str
    rows: list[CompareRow]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    activations: dict[str, np.ndarray] = field(default_factory=dict)
    models: list[ModelResult] = field(default_factory=list)
    metric: str | None = None
    higher_is_better: bool = True
    range_qtype: str = "int8"
    notes: list[str] = field(default_factory=list)

    @property
    def schemes(self) -> list[str]:
        """Scheme names in first-seen order."""
        return list(dict.fromkeys(r.scheme for r in self.rows))

    @property
    def tensors(self) -> list[str]:
        """Tensor (layer) names in first-seen order."""
        return list(dict.fromkeys(r.tensor for r in self.rows))

    def aggregates(self) -> list[AggregateRow]:
        """Per scheme totals (SQNR from summed signal and error, bytes, worst tensor)."""
        return aggregate([r for r in self.rows if not math.isnan(r.sse)])

    def deficits(self) -> dict[tuple[str, str], float]:
        """(tensor, scheme) -> SQNR minus the median SQNR of that scheme over all tensors (negative: worse than
        a typical tensor under the same scheme)."""
        by_scheme: dict[str, list[float]] = {}
        for r in self.rows:
            if not math.isnan(r.sqnr_db):
                by_scheme.setdefault(r.scheme, []).append(r.sqnr_db)
        median = {s: float(np.median(v)) for s, v in by_scheme.items()}
        return {(r.tensor, r.scheme): r.sqnr_db - median[r.scheme] for r in self.rows if r.scheme in median
                and not math.isnan(r.sqnr_db)}

    def worst_tensors(self, k: int = HISTOGRAM_LAYERS) -> list[str]:
        """The ``k`` tensors furthest below the typical tensor, on average over the schemes (the ones worth a
        histogram); with one scheme, the lowest SQNR."""
        per_tensor: dict[str, list[float]] = {}
        for (tensor, _), d in self.deficits().items():
            per_tensor.setdefault(tensor, []).append(d if math.isfinite(d) else math.copysign(1e6, d))
        return sorted(per_tensor, key=lambda n: float(np.mean(per_tensor[n])))[:k]


def row_of(tensor: str, scheme: str, qt: Any, reference: np.ndarray | None, approx: np.ndarray) -> CompareRow:
    """A :class:`~lowbit.metrics.CompareRow` for a QTensor already made (a checkpoint's, a layer's).

    Without a reference the error columns are NaN (the page shows them as "n/a").

    Example:
        >>> import numpy as np, lowbit
        >>> w = np.linspace(-1, 1, 32, dtype=np.float32)
        >>> qt = lowbit.quantize(w, "int8")
        >>> row = row_of("w", "int8", qt, w, np.asarray(qt.dequantize()))
        >>> row.bits_per_element, row.sqnr_db > 40
        (9.0, True)
    """
    nan = float("nan")
    if reference is None:
        signal = sse = mse = sqnr = max_err = cos = nan
    else:
        st = error_stats(np.asarray(reference, np.float32).reshape(approx.shape), approx)
        signal, sse, mse, sqnr, max_err, cos = st.signal, st.sse, st.mse, st.sqnr_db, st.max_abs_error, st.cosine
    return CompareRow(tensor, scheme, "stored", qt.qtype.name, qt.qtype.bits, str(qt.granularity), qt.symmetric,
                      qt.numel, signal, sse, mse, sqnr, max_err, cos, qt.nbytes, 4 * qt.numel, qt.scale_format)


def _as_schemes(schemes: Iterable[Scheme | str] | None) -> list[Scheme]:
    chosen = [s if isinstance(s, Scheme) else Scheme(s) for s in (["int8", "int4"] if schemes is None else schemes)]
    if not chosen:
        raise OptionError("give at least one scheme (e.g. 'int8' or Scheme('int4', 'group:64'))")
    return chosen


def range_qtype(qtypes: Iterable[Any]) -> str:
    """The lowest-bit integer format among ``qtypes`` (the clipping ranges that matter most), else int8.

    Example:
        >>> range_qtype(["int8", "nf4", "int4"]), range_qtype(["nf4"])
        ('int4', 'int8')
    """
    from lowbit.formats import get_qtype

    ints = [get_qtype(q) for q in qtypes if get_qtype(q).kind == "int"]
    return min(ints, key=lambda q: q.bits).name if ints else "int8"


def tensor_file_data(path: str | Path, schemes: Iterable[Scheme | str] | None = None,
                     include: Iterable[str] | None = None, exclude: Iterable[str] = (), min_ndim: int = 2,
                     title: str | None = None) -> ReportData:
    """Every scheme on every selected tensor of a .npy/.npz/.safetensors file (one tensor in memory at a time).

    Args:
        path: the file.
        schemes: :class:`~lowbit.metrics.Scheme` objects or format names (default int8 and int4 per tensor).
        include, exclude, min_ndim: the tensor selection of :func:`lowbit.io.iter_tensors`.
        title: the page title (default: the file name).

    Raises:
        FileFormatError: as :func:`lowbit.io.iter_tensors`.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "w.npy")
        >>> np.save(path, np.linspace(-1, 1, 256, dtype=np.float32).reshape(16, 16))
        >>> [round(r.bits_per_element, 3) for r in tensor_file_data(path, ["int8"]).rows]
        [8.125]
    """
    from lowbit.errors import error_context
    from lowbit.io import iter_tensors, load_tensors

    chosen = _as_schemes(schemes)
    rows: list[CompareRow] = []
    for name, array in iter_tensors(path, include, exclude, min_ndim):
        with error_context(f"tensor {name!r} (shape {array.shape})"):
            rows.extend(compare(array, chosen, name=name).rows)
    data = ReportData(title or Path(path).name, rows, range_qtype=range_qtype(sc.qtype for sc in chosen))
    worst = data.worst_tensors()
    data.weights = {n: np.asarray(a, np.float32) for n, a in load_tensors(path, worst).items()} if worst else {}
    return data


def checkpoint_data(path: str | os.PathLike[str], reference: str | os.PathLike[str] | None = None,
                    title: str | None = None) -> ReportData:
    """A lowbit checkpoint's stored quantized tensors, against the float tensors they came from where given.

    Args:
        path: a lowbit checkpoint (file or folder).
        reference: the float ``.safetensors`` file it was made from; without it only sizes are known.

    Raises:
        FileFormatError: not a checkpoint, or it holds no quantized tensor.

    Example:
        >>> import numpy as np, tempfile, os, lowbit
        >>> d = tempfile.mkdtemp()
        >>> w = np.linspace(-1, 1, 256, dtype=np.float32).reshape(4, 64)
        >>> _ = lowbit.save({"w": lowbit.quantize(w, "int4", granularity="group:32")}, os.path.join(d, "q.safetensors"))
        >>> checkpoint_data(os.path.join(d, "q.safetensors")).schemes
        ['checkpoint (int4 group:32)']
    """
    from lowbit.errors import FileFormatError
    from lowbit.io import open_checkpoint

    ckpt = open_checkpoint(path)
    names = list(ckpt.tensors)
    if not names:
        raise FileFormatError(f"{path}: holds no quantized tensor; give a lowbit checkpoint (lowbit quantize) or "
                              "report on the float file with schemes instead")
    refs = _reference_tensors(reference, names)
    formats = sorted({f"{ckpt.qtensor(n).qtype.name} {ckpt.qtensor(n).granularity}" for n in names})
    scheme = f"checkpoint ({', '.join(formats[:3])}{', ...' if len(formats) > 3 else ''})"
    rows, deq = [], {}
    for n in names:
        qt = ckpt.qtensor(n)
        approx = np.asarray(qt.dequantize(), np.float32)
        rows.append(row_of(n, scheme, qt, refs.get(n), approx))
        deq[n] = approx
    data = ReportData(title or Path(path).name, rows,
                      range_qtype=range_qtype(f.split(" ")[0] for f in formats))
    if reference is None:
        data.notes.append("No float reference was given: the error columns are n/a and histograms show the "
                          "dequantized weights (give --reference with the float .safetensors).")
        data.weights = {n: deq[n] for n in sorted(names, key=lambda n: -deq[n].size)[:HISTOGRAM_LAYERS]}
    else:
        data.weights = {n: np.asarray(refs[n], np.float32) for n in data.worst_tensors()}
    return data


def _reference_tensors(reference: str | os.PathLike[str] | None, names: list[str]) -> dict[str, np.ndarray]:
    if reference is None:
        return {}
    from lowbit.errors import FileFormatError
    from lowbit.io import load_tensors

    refs = load_tensors(Path(reference), names)
    missing = [n for n in names if n not in refs]
    if missing:
        raise FileFormatError(f"{reference}: lacks the float tensor(s) {missing[:5]} of the checkpoint; give the "
                              "file the checkpoint was quantized from")
    return refs
