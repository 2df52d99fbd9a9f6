"""size_report and error_report: what a quantized model costs and where it lost accuracy.

Example:
    >>> import copy, torch, lowbit, lowbit.model as lm
    >>> ref = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    >>> net = copy.deepcopy(ref)
    >>> _ = lm.quantize_(net, lm.WeightOnly("int4", lowbit.PerGroup(16)))
    >>> lm.size_report(net).total_bytes < lm.size_report(ref).total_bytes
    True
    >>> [r.name for r in lm.error_report(net, ref, [torch.randn(8, 32)]).rows]
    ['0', '2']
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lowbit._deprecation import renamed_attributes
from lowbit._text import format_table
from lowbit.errors import ModelError
from lowbit.model._calibrate import run_batch

__all__ = ["size_report", "error_report", "SizeReport", "ErrorReport", "LayerErrorRow"]


def tensor_nbytes(value: Any) -> int:
    """Bytes a state-dict entry stores: plain and quantized tensors (with their per-channel
    parameters), and tuples of them (torch.ao's packed parameters); anything else counts 0.

    Example:
        >>> import torch
        >>> tensor_nbytes((torch.zeros(3), torch.zeros(2, dtype=torch.int8)))
        14
    """
    if isinstance(value, (tuple, list)):
        return sum(tensor_nbytes(v) for v in value)
    if not hasattr(value, "element_size"):
        return 0
    total = value.numel() * value.element_size()
    if getattr(value, "is_quantized", False) and _is_per_channel(value):
        scales, zeros = value.q_per_channel_scales(), value.q_per_channel_zero_points()
        total += scales.numel() * scales.element_size() + zeros.numel() * zeros.element_size()
    return int(total)


def _is_per_channel(qtensor: Any) -> bool:
    import torch

    return qtensor.qscheme() in (
        torch.per_channel_affine, torch.per_channel_symmetric, torch.per_channel_affine_float_qparams
    )


def module_nbytes(module: Any) -> int:
    """Real bytes of everything a module's state dict holds (packed codes count as stored).

    Example:
        >>> import torch
        >>> module_nbytes(torch.nn.Linear(4, 2))
        40
    """
    return sum(tensor_nbytes(v) for v in module.state_dict().values())


@dataclass(frozen=True)
class SizeReport:
    """Bytes per module that holds tensors, and the total."""

    rows: list[tuple[str, str, int]]

    @property
    def total_bytes(self) -> int:
        """Every parameter and buffer of the model, quantized storage counted as stored."""
        return sum(r[2] for r in self.rows)

    def __str__(self) -> str:
        body = [[n, t, f"{b:,}"] for n, t, b in self.rows] + [["total", "", f"{self.total_bytes:,}"]]
        return format_table(["module", "type", "bytes"], body)


def size_report(model: Any) -> SizeReport:
    """Real bytes of the model's state, per owning module (packed codes as stored; torch.ao's
    packed parameters included).

    Example:
        >>> import torch
        >>> size_report(torch.nn.Linear(4, 2)).total_bytes
        40
    """
    modules = dict(model.named_modules())
    per_owner: dict[str, int] = {}
    for key, value in model.state_dict().items():
        owner = key.rpartition(".")[0]
        while owner and owner not in modules:
            owner = owner.rpartition(".")[0]
        per_owner[owner] = per_owner.get(owner, 0) + tensor_nbytes(value)
    rows = [(n or "(model)", type(modules[n]).__name__, b) for n, b in per_owner.items() if b]
    return SizeReport(rows)


@dataclass(frozen=True)
class LayerErrorRow:
    """Output error of one layer against the same layer of the float model (a row of :class:`ErrorReport`)."""

    name: str
    sqnr_db: float
    cosine: float


@dataclass(frozen=True)
class ErrorReport:
    """Per-layer output SQNR and cosine, plus the model output's."""

    rows: list[LayerErrorRow]
    output: LayerErrorRow

    @property
    def worst(self) -> LayerErrorRow:
        """The layer with the lowest SQNR."""
        return min(self.rows, key=lambda r: r.sqnr_db)

    def __str__(self) -> str:
        body = [[r.name, f"{r.sqnr_db:.2f}", f"{r.cosine:.6f}"] for r in [*self.rows, self.output]]
        return format_table(["layer", "SQNR dB", "cosine"], body)


class _Sums:
    def __init__(self) -> None:
        self.sse = self.sxx = self.syy = self.sxy = 0.0

    def add(self, ref: Any, got: Any) -> None:
        a, b = (t.dequantize() if t.is_quantized else t for t in (ref.detach(), got.detach()))  # torch.ao outputs
        a, b = a.double().reshape(-1), b.double().reshape(-1)
        self.sse += float(((a - b) ** 2).sum())
        self.sxx += float((a * a).sum())
        self.syy += float((b * b).sum())
        self.sxy += float((a * b).sum())

    def result(self, name: str) -> LayerErrorRow:
        sqnr = math.inf if self.sse == 0 else (-math.inf if self.sxx == 0 else 10 * math.log10(self.sxx / self.sse))
        denom = math.sqrt(self.sxx * self.syy)
        cos = float(self.sxx == self.syy) if denom == 0 else self.sxy / denom
        return LayerErrorRow(name, sqnr, cos)


def _first_tensor(out: Any) -> Any:
    if isinstance(out, (tuple, list)):
        return out[0]
    if isinstance(out, dict) or hasattr(out, "last_hidden_state"):
        return out["last_hidden_state"] if "last_hidden_state" in out else next(iter(out.values()))
    return out


def error_report(model: Any, reference: Any, batches: Iterable[Any]) -> ErrorReport:
    """Compare every quantized layer's output (and the model output) with the float reference.

    Both models run in eval mode on the same batches; the layers compared are
    those whose type differs between the two models at the same name.

    Raises:
        ModelError: either model is in training mode, or no layer differs.
    """
    import torch

    for label, m in (("model", model), ("reference", reference)):
        if m.training:
            raise ModelError(f"the {label} is in training mode; call .eval() before error_report")
    ref_modules = dict(reference.named_modules())
    names = [n for n, m in model.named_modules() if n in ref_modules and type(ref_modules[n]) is not type(m)]
    if not names:
        raise ModelError("error_report found no quantized layer: the two models have the same layer types")
    captured: dict[tuple[str, str], Any] = {}
    hooks = []
    for which, net in (("q", model), ("f", reference)):
        modules = dict(net.named_modules())
        for n in names:
            hooks.append(modules[n].register_forward_hook(
                lambda _m, _i, out, key=(which, n): captured.__setitem__(key, _first_tensor(out))
            ))
    sums = {n: _Sums() for n in names}
    final = _Sums()
    try:
        with torch.no_grad():
            for batch in batches:
                got, ref = _first_tensor(run_batch(model, batch)), _first_tensor(run_batch(reference, batch))
                final.add(ref, got)
                for n in names:
                    sums[n].add(captured[("f", n)], captured[("q", n)])
    finally:
        for h in hooks:
            h.remove()
    return ErrorReport([sums[n].result(n) for n in names], final.result("(output)"))


__getattr__ = renamed_attributes(
    "lowbit.model.reports", {"LayerError": ("lowbit.model.LayerErrorRow", lambda: LayerErrorRow)}
)
