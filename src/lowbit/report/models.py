"""Report data from a PyTorch model: each scheme on a copy, per-layer weight error, model-level metric.

torch is imported when a model is measured, never by ``import lowbit.report``.

Example:
    >>> import torch, lowbit.model as lm
    >>> net = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    >>> data = model_data(net, [lm.WeightOnly("int8"), lm.WeightOnly("int4", "group:16")])
    >>> data.tensors, [m.scheme for m in data.models]
    (['0', '2'], ['fp32', 'W8 int8 channel', 'W4 int4 group:16'])
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lowbit.errors import ModelError, OptionError
from lowbit.metrics import CompareRow
from lowbit.report.data import HISTOGRAM_LAYERS, ModelResult, ReportData, range_qtype, row_of

__all__ = ["Evaluator", "model_data"]

#: activation values kept per layer for its histogram (a uniform subsample beyond this)
ACTIVATION_SAMPLES = 200_000


@dataclass(frozen=True)
class Evaluator:
    """How to score a whole model: a metric callable and the calibration batches.

    Attributes:
        metric: ``metric(model) -> float`` (accuracy, embedding cosine, perplexity ...).
        batches: inputs as the model takes them (a tensor, a tuple, or a dict of keyword tensors);
            used by data-driven configs (GPTQ, AWQ, Static) and for activation histograms.
        name: the metric's label, with its unit ("accuracy %", "perplexity").
        higher_is_better: False for perplexity, loss, error rates.

    Example:
        >>> Evaluator(lambda m: 1.0, name="cosine").higher_is_better
        True
    """

    metric: Callable[[Any], float]
    batches: Sequence[Any] = field(default_factory=tuple)
    name: str = "metric"
    higher_is_better: bool = True


Transform = Any  # a Config, a plan (dict of patterns -> Config), or a callable changing a model copy


def _named(schemes: Mapping[str, Transform] | Iterable[Transform]) -> dict[str, Transform]:
    if isinstance(schemes, Mapping):
        named = dict(schemes)
    else:
        named = {}
        for s in schemes:
            label = getattr(s, "scheme", None)
            if not isinstance(label, str):
                raise OptionError(f"scheme {s!r} has no name; pass a dict of name -> config, plan or callable")
            named[label] = s
    if not named:
        raise OptionError("give at least one scheme, e.g. [WeightOnly('int8'), WeightOnly('int4', 'group:64')]")
    return named


def _uses_statistics(transform: Transform) -> bool:
    """Whether quantize_ itself takes calibration batches for this config or plan (GPTQ, AWQ, SmoothQuant)."""
    from lowbit.model import get_handler

    configs = transform.values() if isinstance(transform, Mapping) else [transform]
    return any(get_handler(c).statistics(c) is not None for c in configs if c is not None)


def _is_static(transform: Transform) -> bool:
    from lowbit.model import Static

    configs = transform.values() if isinstance(transform, Mapping) else [transform]
    return any(isinstance(c, Static) for c in configs)


def _apply(model: Any, name: str, transform: Transform, batches: Sequence[Any]) -> Any:
    """Quantize a copy in place (Static configs are calibrated and converted); returns the model to measure."""
    import lowbit.model as lm

    if callable(transform) and not isinstance(transform, (lm.Config, Mapping)):
        replaced = transform(model)
        return replaced if replaced is not None and hasattr(replaced, "named_modules") else model
    static, statistics = _is_static(transform), _uses_statistics(transform)
    if (static or statistics) and not batches:
        raise OptionError(f"scheme {name!r} needs calibration batches; give Evaluator(metric, batches=...)")
    if statistics:
        lm.quantize_(model, transform, batches=list(batches), progress=False)
    else:
        lm.quantize_(model, transform)
    if static:
        lm.calibrate(model.eval(), list(batches), progress=False)
        lm.convert(model)
    return model


def _effective_weight(module: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The weight the layer computes with: dequantized, and divided back by a SmoothQuant input divisor."""
    w = np.asarray(module.weight_qtensor().dequantize(), np.float32).reshape(shape)
    smooth = getattr(module, "smooth_scale", None)
    return w if smooth is None else w / smooth.detach().float().numpy().reshape(1, -1)


def _layer_rows(quantized: Any, floats: dict[str, Any], scheme: str) -> list[CompareRow]:
    rows = []
    for name, module in quantized.named_modules():
        ref = getattr(floats.get(name), "weight", None)
        if not hasattr(module, "weight_qtensor") or ref is None:
            continue
        w = ref.detach().float().numpy()
        rows.append(row_of(name, scheme, module.weight_qtensor(), w, _effective_weight(module, w.shape)))
    return rows


def _activations(model: Any, names: list[str], batches: Sequence[Any]) -> dict[str, np.ndarray]:
    """The inputs of the named layers on the first batch (subsampled to ACTIVATION_SAMPLES values)."""
    import torch

    from lowbit.model._calibrate import run_batch

    modules = dict(model.named_modules())
    seen: dict[str, np.ndarray] = {}

    def keep(name: str) -> Callable[..., None]:
        def hook(_module: Any, inputs: tuple[Any, ...], _output: Any) -> None:  # returns None: output unchanged
            seen.setdefault(name, inputs[0].detach().float().reshape(-1).numpy().copy())
        return hook

    hooks = [modules[n].register_forward_hook(keep(n)) for n in names if n in modules]
    try:
        with torch.no_grad():
            run_batch(model, batches[0])
    finally:
        for h in hooks:
            h.remove()
    step = {n: max(1, a.size // ACTIVATION_SAMPLES) for n, a in seen.items()}
    return {n: a[:: step[n]] for n, a in seen.items()}


def _params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def model_data(model: Any, schemes: Mapping[str, Transform] | Iterable[Transform],
               evaluator: Evaluator | None = None, plan: str | os.PathLike[str] | None = None,
               title: str | None = None) -> ReportData:
    """Apply every scheme to a copy of ``model`` and measure each layer's weight error and the whole model.

    Args:
        model: a float ``torch.nn.Module`` in eval mode (left unchanged).
        schemes: configs (``WeightOnly("int4", "group:64")``, named by their ``.scheme``), or a dict
            of name -> config, plan (a dict of module-name patterns -> config) or callable that
            changes a model copy in place (or returns a new model).
        evaluator: the model-level metric and calibration batches (optional).
        plan: a plan JSON file from ``lowbit plan``, added as one more scheme (needs ``lowbit.plan``).
        title: the page title (default: the model's class name).

    Returns:
        ReportData with one row per quantized layer and scheme, and one ModelResult per scheme
        (fp32 first); bits/weight of a ModelResult is 8 x every stored byte / parameter count.

    Raises:
        ModelError: the model is in training mode, or a scheme quantized no layer.
        OptionError: no scheme, or a data-driven scheme without batches.
    """
    from lowbit.model import size_report

    if model.training:
        raise ModelError("model_data needs the float model in eval mode; call model.eval()")
    named = _named(schemes)
    if plan is not None:
        named[f"plan ({Path(plan).name})"] = _load_plan(plan)
    batches = list(evaluator.batches) if evaluator is not None else []
    floats, n_params = dict(model.named_modules()), _params(model)

    def result(name: str, m: Any) -> ModelResult:
        nbytes = size_report(m).total_bytes
        metrics = {evaluator.name: float(evaluator.metric(m))} if evaluator is not None else {}
        return ModelResult(name, nbytes, 8 * nbytes / n_params, metrics)

    rows, models = [], [result("fp32", model)]
    for name, transform in named.items():
        quantized = _apply(copy.deepcopy(model), name, transform, batches).eval()
        mine = _layer_rows(quantized, floats, name)
        if not mine:
            raise ModelError(f"scheme {name!r} quantized no layer with a stored weight (Linear, Conv2d, Embedding)")
        rows += mine
        models.append(result(name, quantized))
    data = ReportData(title or type(model).__name__, rows, models=models,
                      metric=evaluator.name if evaluator else None,
                      higher_is_better=evaluator.higher_is_better if evaluator else True,
                      range_qtype=range_qtype(r.qtype for r in rows))
    worst = data.worst_tensors(HISTOGRAM_LAYERS)
    data.weights = {n: floats[n].weight.detach().float().numpy() for n in worst}
    if batches:
        data.activations = _activations(model, worst, batches)
    return data




def _load_plan(path: str | os.PathLike[str]) -> Any:
    try:
        from lowbit.plan import load_plan
    except ImportError:
        raise OptionError("plan files need lowbit.plan (lowbit plan), which this lowbit lacks") from None
    return load_plan(path)
