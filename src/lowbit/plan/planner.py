"""``plan_model``: measure each layer's sensitivity, then choose its candidate under a budget.

Example:
    >>> import torch, lowbit.model as lm
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).eval()
    >>> plan = plan_model(net, "int8,int4:g32,int2:g32", [torch.randn(32, 64)], budget_bits=5.0, metric="mse")
    >>> plan.bits_per_weight <= 5.0, len(lm.quantize_(net, plan).rows)
    (True, 2)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from lowbit.errors import OptionError
from lowbit.plan.candidates import Candidate, parse_candidates
from lowbit.plan.plan_file import LayerChoice, Plan
from lowbit.plan.sensitivity import SensitivityTable, measure_sensitivity
from lowbit.plan.solve import solve

__all__ = ["plan_model", "plan_from_table"]


def _budget_bytes(table: SensitivityTable, budget_bits: float | None, budget_bytes: int | None) -> int:
    """The byte budget over the planned layers' weights; OptionError for a missing, doubled or impossible one."""
    if (budget_bits is None) == (budget_bytes is None):
        raise OptionError("give exactly one budget: budget_bits (bits per weight) or budget_bytes")
    weights = sum(r.weights for r in table.layers)
    cheapest = sum(min(r.bytes) for r in table.layers)
    if budget_bits is not None:
        if isinstance(budget_bits, bool) or not isinstance(budget_bits, (int, float)) or not math.isfinite(
                budget_bits) or budget_bits <= 0:
            raise OptionError(f"budget_bits must be a finite number > 0 (bits per weight), got {budget_bits!r}")
        nbytes = int(budget_bits * weights / 8)
        if nbytes < cheapest:
            raise OptionError(f"budget {budget_bits:g} bits/weight is below the cheapest plan, "
                              f"{8 * cheapest / weights:.3f} bits/weight (every layer on its smallest candidate); "
                              "raise the budget or add a smaller candidate")
        return nbytes
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes <= 0:
        raise OptionError(f"budget_bytes must be a positive int, got {budget_bytes!r}")
    if budget_bytes < cheapest:
        raise OptionError(f"budget {budget_bytes:,} bytes is below the cheapest plan, {cheapest:,} bytes (every "
                          "layer on its smallest candidate); raise the budget or add a smaller candidate")
    return budget_bytes


def _candidates(candidates: str | Sequence[str] | Sequence[Candidate]) -> list[Candidate]:
    """Parsed candidates from a spelling, a list of spellings or a list of Candidate objects."""
    if not isinstance(candidates, str) and candidates and all(isinstance(c, Candidate) for c in candidates):
        return [c for c in candidates if isinstance(c, Candidate)]
    return parse_candidates(candidates)  # type: ignore[arg-type]


def plan_from_table(table: SensitivityTable, budget_bits: float | None = None,
                    budget_bytes: int | None = None) -> Plan:
    """The plan that minimises the summed error of a measured table under a budget.

    Several budgets can be planned from one :func:`~lowbit.plan.sensitivity.measure_sensitivity` table.

    Raises:
        OptionError: no budget or both, a budget that is not a positive number, or one below
            the cheapest plan.

    Example:
        >>> from lowbit.plan.sensitivity import LayerSensitivity, SensitivityTable
        >>> rows = [LayerSensitivity("a", 64, [64, 32], [0.0, 1.0], [True, True], [0.0, 1.0]),
        ...         LayerSensitivity("b", 64, [64, 32], [0.0, 0.1], [True, True], [0.0, 1.0])]
        >>> plan = plan_from_table(SensitivityTable(["int8", "int4"], "mse", rows, [], 0.0), budget_bits=6.0)
        >>> {name: c.candidate for name, c in plan.layers.items()}
        {'a': 'int8', 'b': 'int4'}
    """
    nbytes = _budget_bytes(table, budget_bits, budget_bytes)
    choice = solve([r.bytes for r in table.layers], [r.errors for r in table.layers], nbytes)
    layers = {r.name: LayerChoice(table.candidates[j], r.bytes[j], r.weights, r.errors[j])
              for r, j in zip(table.layers, choice, strict=True)}
    sensitivity = {r.name: {c: {"bytes": b, "error": e, "measured": m}
                            for c, b, e, m in zip(table.candidates, r.bytes, r.errors, r.measured, strict=True)}
                   for r in table.layers}
    return Plan(layers, list(table.candidates), None if budget_bits is None else float(budget_bits), budget_bytes,
                table.metric, sensitivity)


def plan_model(
    model: Any,
    candidates: str | Sequence[str] | Sequence[Candidate],
    batches: Iterable[Any],
    budget_bits: float | None = None,
    budget_bytes: int | None = None,
    metric: str = "auto",
    *,
    mode: str = "anchored",
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    output: Callable[[Any, Any], Any] | None = None,
    progress: bool | None = None,
) -> Plan:
    """A mixed-precision plan for ``model``: one candidate per Linear/Conv2d layer, under a budget.

    The budget is in bits per weight (``budget_bits``: stored bytes of the planned layers'
    weights, codes + scales + zero points, times 8, over their number of weights; biases and
    layers outside the plan not counted) or in bytes of the same (``budget_bytes``).  Layers
    whose weight is tied to another module's (an ``lm_head`` sharing the embedding) are left out.

    Args:
        model: a float ``torch.nn.Module`` in eval mode (left unchanged).
        candidates: ``"int8,int4:g64,..."`` (:func:`~lowbit.plan.parse_candidates`) or a list.
        batches: calibration inputs as ``model`` takes them; keep them apart from evaluation data.
        budget_bits, budget_bytes: exactly one budget.
        metric: ``"kl"``, ``"cosine"``, ``"mse"`` or ``"auto"`` (see :mod:`lowbit.plan.sensitivity`).
        mode: ``"anchored"`` (one measured candidate per layer, the others predicted) or ``"measured"``.
        include, exclude: glob patterns on layer names.
        output: ``output(model, batch) -> tensor`` the metric compares (default ``.logits`` / first output).
        progress: progress line on stderr (default: when stderr is a terminal).

    Returns:
        A :class:`~lowbit.plan.Plan` (``quantize_(model, plan)`` applies it; ``plan.save(path)``).

    Raises:
        OptionError: bad candidates, metric, mode or budget (including one below the cheapest plan).
        ModelError: training mode, no batch, or no layer to plan. NonFiniteError: NaN outputs.
    """
    cands = _candidates(candidates)
    if (budget_bits is None) == (budget_bytes is None):
        raise OptionError("give exactly one budget: budget_bits (bits per weight) or budget_bytes")
    table = measure_sensitivity(model, cands, batches, metric=metric, mode=mode, include=include, exclude=exclude,
                                output=output, progress=progress)
    return plan_from_table(table, budget_bits, budget_bytes)
