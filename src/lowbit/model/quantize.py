"""``quantize_(model, config)``: swap a model's layers for quantized ones, in place.

Which layers: every supported layer (``nn.Linear``, ``nn.Conv2d``, and
``nn.Embedding`` for weight-only) whose name matches ``include`` (glob
patterns; all when None) and no ``exclude`` pattern.  How: the handler
registered for the config's type; ``quantize_`` itself never changes when a
scheme is added (:func:`register_handler`).  A config that needs calibration
data (GPTQ, AWQ, SmoothQuant) registers a statistics plan too: ``quantize_``
then streams ``batches`` through the model (:mod:`lowbit.model.collect`) and
hands each layer its statistic.

Example:
    >>> import torch, lowbit, lowbit.model as lm
    >>> net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    >>> summary = lm.quantize_(net, lm.WeightOnly("int4", lowbit.PerGroup(32)))
    >>> [row.name for row in summary.rows], summary.bytes_after < summary.bytes_before
    (['0', '2'], True)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

from lowbit._text import format_table
from lowbit.errors import ModelError, OptionError
from lowbit.model.config import Config

__all__ = [
    "quantize_", "convert", "register_handler", "StatPlan", "Summary", "SummaryRow", "module_nbytes"
]

Handler = Callable[[Any, str, Any, Any], Any]


@dataclass(frozen=True)
class StatPlan:
    """What a data-driven config needs from calibration batches.

    Attributes:
        factory: ``factory(name, module)`` -> a fresh statistic with ``add(rows)``
            (rows of the layer's input).
        sequential: feed repeated blocks in order, each from the quantized blocks
            before it (GPTQ, AWQ) instead of all layers from one float pass.
        wants: ``wants(module)``: whether a chosen layer needs a statistic at all
            (others reach the handler first, with None).
        sink_weight: weight of the first position of each ``(batch, sequence, features)``
            input relative to the other rows (:mod:`lowbit.model.collect`).
    """

    factory: Callable[[str, Any], Any]
    sequential: bool = False
    wants: Callable[[Any], bool] = lambda module: True
    sink_weight: float = 1.0


_HANDLERS: dict[type, Handler] = {}
_TARGETS: dict[type, Callable[[Any], tuple[type, ...]]] = {}
_PLANS: dict[type, Callable[[Any], StatPlan | None]] = {}


def register_handler(
    config_type: type,
    targets: Callable[[Any], tuple[type, ...]],
    statistics: Callable[[Any], StatPlan | None] | None = None,
) -> Callable[[Handler], Handler]:
    """Register ``fn(module, name, config, statistic) -> (new_module, scheme_label)`` for a config type.

    ``targets(config)`` returns the module types the handler replaces;
    ``statistics(config)`` returns the :class:`StatPlan` of a config that needs
    calibration data, or None (``statistic`` is then None).

    Example:
        >>> from lowbit.model import WeightOnly
        >>> from lowbit.model.quantize import _HANDLERS
        >>> WeightOnly in _HANDLERS
        True
    """

    def decorate(fn: Handler) -> Handler:
        _HANDLERS[config_type] = fn
        _TARGETS[config_type] = targets
        _PLANS[config_type] = statistics or (lambda cfg: None)
        return fn

    return decorate


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
class SummaryRow:
    """One swapped layer."""

    name: str
    layer: str
    scheme: str
    bytes_before: int
    bytes_after: int


@dataclass(frozen=True)
class Summary:
    """What ``quantize_`` (or ``convert``) did: one row per swapped layer, with byte totals."""

    rows: list[SummaryRow]

    @property
    def bytes_before(self) -> int:
        """Bytes of the swapped layers before."""
        return sum(r.bytes_before for r in self.rows)

    @property
    def bytes_after(self) -> int:
        """Bytes of the swapped layers after."""
        return sum(r.bytes_after for r in self.rows)

    def __str__(self) -> str:
        body = [[r.name, r.layer, r.scheme, f"{r.bytes_before:,}", f"{r.bytes_after:,}"] for r in self.rows]
        body.append(["total", "", "", f"{self.bytes_before:,}", f"{self.bytes_after:,}"])
        return format_table(["module", "layer", "scheme", "bytes before", "bytes after"], body)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _select(model: Any, targets: tuple[type, ...], include: list[str] | None, exclude: list[str], what: str) -> list:
    named = [(n, m) for n, m in model.named_modules() if n]
    chosen = [
        (n, m) for n, m in named
        if isinstance(m, targets) and (include is None or _matches(n, include)) and not _matches(n, exclude)
    ]
    problems = []
    for pattern in include or []:
        hits = [(n, m) for n, m in named if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            sample = ", ".join(n for n, _ in named[:8])
            problems.append(f"include pattern {pattern!r} matches no module (names look like: {sample})")
        elif not any(isinstance(m, targets) for _, m in hits):
            kinds = sorted({type(m).__name__ for _, m in hits})
            problems.append(
                f"include pattern {pattern!r} matches only {', '.join(kinds)} module(s), which {what} does not "
                f"quantize (supported: {', '.join(t.__name__ for t in targets)}); name their Linear/Conv2d children"
            )
    if problems:
        raise ModelError("; ".join(problems))
    if not chosen:
        raise ModelError(
            f"{what} found no module to quantize: the model has no {', '.join(t.__name__ for t in targets)} "
            f"layer matching include={include} exclude={exclude}"
        )
    return chosen


def _swap(model: Any, name: str, new: Any) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _layers_with_statistics(
    model: Any, chosen: list, plan: StatPlan, batches: Iterable[Any], progress: bool | None
) -> Generator[tuple[str, Any, Any], None, None]:
    """Layers that need no statistic first, then the others as calibration feeds them."""
    from lowbit.model.collect import layer_statistics

    if model.training:
        raise ModelError("calibration needs the model in eval mode (dropout would skew statistics); call model.eval()")
    fed = [(n, m) for n, m in chosen if plan.wants(m)]
    names = {n for n, _ in fed}
    for name, module in chosen:
        if name not in names:
            yield name, module, None
    yield from layer_statistics(model, fed, batches, plan.factory, plan.sequential, progress, plan.sink_weight)


def quantize_(
    model: Any,
    config: Config,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    batches: Iterable[Any] | None = None,
    progress: bool | None = None,
) -> Summary:
    """Replace the selected layers of ``model`` (a ``torch.nn.Module``) in place.

    Args:
        model: the model; its other layers are left alone.
        config: WeightOnly, Dynamic, Static (prepares observers) or QAT(step=...).
        include: glob patterns on module names (``"encoder.*.dense"``); None selects all.
        exclude: glob patterns to leave in float.
        batches: calibration inputs for configs that need data (``WeightOnly(algorithm="gptq"/"awq")``,
            ``Static``/``Dynamic`` with ``smoothquant``): each a tensor, a tuple of tensors or a
            dict of keyword tensors, as ``model`` takes them. The model must be in eval mode.
        progress: progress meter on stderr while calibrating (default: when stderr is a terminal).

    Returns:
        A Summary: which modules, which scheme, bytes before and after.

    Raises:
        ModelError: a pattern matches no module, matches only unsupported
            layer types, or nothing is left to quantize (each message names
            the module and the fix); a data-driven config without ``batches`` or
            with the model in training mode. OptionError: a bad config value, or
            ``batches`` given to a config that uses none. On any error the layers
            already replaced are put back, so the model is left as it was.

    Example:
        >>> import torch, lowbit.model as lm
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8))
        >>> lm.quantize_(net, lm.WeightOnly("int8")).rows[0].scheme
        'W8 int8 channel'
    """
    handler = _HANDLERS.get(type(config))
    if handler is None:
        known = ", ".join(t.__name__ for t in _HANDLERS)
        raise ModelError(f"no handler for config {type(config).__name__}; known configs: {known}")
    targets = _TARGETS[type(config)](config)
    include_list = None if include is None else list(include)
    plan = _PLANS[type(config)](config)
    if plan is None and batches is not None:
        raise OptionError(f"{config.scheme} uses no calibration data; drop batches=")
    if plan is not None and batches is None:
        raise ModelError(
            f"{config.scheme} needs calibration data: call quantize_(model, config, batches=[...]) with model inputs"
        )
    chosen = _select(model, targets, include_list, list(exclude), type(config).__name__)
    items = ((n, m, None) for n, m in chosen) if plan is None else _layers_with_statistics(
        model, chosen, plan, batches or [], progress
    )
    rows, swapped = [], []
    try:
        for name, module, stat in items:
            before = module_nbytes(module)
            try:
                new, scheme = handler(module, name, config, stat)
            except Exception as err:  # add the layer name to the message, keep the type
                if hasattr(err, "args") and err.args and isinstance(err.args[0], str):
                    err.args = (f"module {name!r} ({type(module).__name__}): {err.args[0]}", *err.args[1:])
                raise
            _swap(model, name, new)
            swapped.append((name, module))
            rows.append(SummaryRow(name, type(module).__name__, scheme, before, module_nbytes(new)))
    except BaseException:  # leave the model as it was, not half quantized
        items.close()  # a generator either way; closing removes calibration hooks
        for name, module in reversed(swapped):
            _swap(model, name, module)
        raise
    return Summary(rows)


def convert(model: Any) -> Summary:
    """Finish static quantization: swap calibrated observed layers for integer ones.

    Raises:
        ModelError: the model has no observers (``quantize_(model, Static())``
            was not run) or some were never fed data (run ``calibrate`` first);
            the message names every such module.

    Example:
        >>> import torch, lowbit.model as lm
        >>> net = torch.nn.Sequential(torch.nn.Linear(16, 4)).eval()
        >>> _ = lm.quantize_(net, lm.Static())
        >>> _ = lm.calibrate(net, [torch.randn(8, 16)], progress=False)
        >>> type(lm.convert(net).rows[0]).__name__
        'SummaryRow'
    """
    from lowbit.model.observed import Observed

    observed = [(n, m) for n, m in model.named_modules() if isinstance(m, Observed)]
    if not observed:
        raise ModelError("convert found no observed layer: run quantize_(model, Static(...)) and calibrate first")
    empty = [n for n, m in observed if not m.calibrated]
    if empty:
        raise ModelError(
            f"convert before calibrate: observers of {', '.join(empty)} have seen no data; "
            "run lowbit.model.calibrate(model, batches) first"
        )
    rows = []
    for name, module in observed:
        before = module_nbytes(module.module)
        new = module.to_quantized()
        _swap(model, name, new)
        rows.append(SummaryRow(name, type(module.module).__name__, module.config.scheme, before, module_nbytes(new)))
    return Summary(rows)


# The built-in configs register their handlers on import (kept in their own module).
from lowbit.model import handlers as _handlers  # noqa: E402, F401
