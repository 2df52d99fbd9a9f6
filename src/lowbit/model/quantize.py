"""``quantize_(model, config)``: swap a model's layers for quantized ones, in place.

Which layers: every supported layer (``nn.Linear``, ``nn.Conv2d``, and
``nn.Embedding`` for weight-only) whose name matches ``include`` (glob
patterns; all when None) and no ``exclude`` pattern.  How: the handler
registered for the config's type; ``quantize_`` itself never changes when a
scheme is added (:func:`register_handler`).

Example:
    >>> import torch, lowbit, lowbit.model as lm
    >>> net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    >>> summary = lm.quantize_(net, lm.WeightOnly("int4", lowbit.PerGroup(32)))
    >>> [row.name for row in summary.rows], summary.bytes_after < summary.bytes_before
    (['0', '2'], True)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lowbit._text import format_table
from lowbit.errors import ModelError, OptionError
from lowbit.granularity import PerChannel
from lowbit.model.config import QAT, Config, Dynamic, Static, WeightOnly

__all__ = ["quantize_", "convert", "register_handler", "Summary", "SummaryRow", "module_nbytes"]

Handler = Callable[[Any, str, Any], Any]
_HANDLERS: dict[type, Handler] = {}
_TARGETS: dict[type, Callable[[Any], tuple[type, ...]]] = {}


def register_handler(config_type: type, targets: Callable[[Any], tuple[type, ...]]) -> Callable[[Handler], Handler]:
    """Register ``fn(module, name, config) -> (new_module, scheme_label)`` for a config type.

    ``targets(config)`` returns the module types the handler replaces.

    Example:
        >>> from lowbit.model.quantize import _HANDLERS
        >>> WeightOnly in _HANDLERS
        True
    """

    def decorate(fn: Handler) -> Handler:
        _HANDLERS[config_type] = fn
        _TARGETS[config_type] = targets
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


def quantize_(
    model: Any, config: Config, include: Iterable[str] | None = None, exclude: Iterable[str] = ()
) -> Summary:
    """Replace the selected layers of ``model`` (a ``torch.nn.Module``) in place.

    Args:
        model: the model; its other layers are left alone.
        config: WeightOnly, Dynamic, Static (prepares observers) or QAT(step=...).
        include: glob patterns on module names (``"encoder.*.dense"``); None selects all.
        exclude: glob patterns to leave in float.

    Returns:
        A Summary: which modules, which scheme, bytes before and after.

    Raises:
        ModelError: a pattern matches no module, matches only unsupported
            layer types, or nothing is left to quantize (each message names
            the module and the fix). OptionError: a bad config value.

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
    rows = []
    for name, module in _select(model, targets, include_list, list(exclude), type(config).__name__):
        before = module_nbytes(module)
        try:
            new, scheme = handler(module, name, config)
        except Exception as err:  # add the layer name to the message, keep the type
            if hasattr(err, "args") and err.args and isinstance(err.args[0], str):
                err.args = (f"module {name!r} ({type(module).__name__}): {err.args[0]}", *err.args[1:])
            raise
        _swap(model, name, new)
        rows.append(SummaryRow(name, type(module).__name__, scheme, before, module_nbytes(new)))
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


def _float_layers(embeddings: bool) -> tuple[type, ...]:
    import torch.nn as tnn

    return (tnn.Linear, tnn.Conv2d, tnn.Embedding) if embeddings else (tnn.Linear, tnn.Conv2d)


@register_handler(WeightOnly, lambda cfg: _float_layers(cfg.embeddings))
def _weight_only(module: Any, name: str, cfg: WeightOnly) -> Any:
    import torch.nn as tnn

    from lowbit.granularity import PerChannel, PerGroup
    from lowbit.nn import WeightOnlyConv2d, WeightOnlyEmbedding, WeightOnlyLinear

    gran = cfg.granularity
    classes: dict[type, Any] = {
        tnn.Linear: WeightOnlyLinear, tnn.Conv2d: WeightOnlyConv2d, tnn.Embedding: WeightOnlyEmbedding
    }
    cls = classes[type(module)]
    scheme = cfg.scheme
    if isinstance(gran, PerGroup) and module.weight.shape[gran.axis] % gran.size:
        # A layer the group size does not divide (or a conv, whose last weight axis is the kernel
        # width) keeps one scale per output channel, and the summary says so.
        scheme = f"{cfg.scheme} -> channel (group {gran.size} does not divide {module.weight.shape[gran.axis]})"
        gran = PerChannel(0)
    if cfg.algorithm == "hqq" and not isinstance(module, tnn.Conv2d):
        return _hqq_layer(cls, module, cfg, gran), scheme
    if cfg.algorithm == "hqq":
        scheme = f"{scheme} -> rtn (hqq takes 2-d weights)"
    new = cls.from_float(
        module, qtype=cfg.qtype, granularity=gran, symmetric=cfg.symmetric, method=cfg.method, **cfg.method_options
    )
    return new, scheme


def _hqq_layer(cls: Any, module: Any, cfg: WeightOnly, gran: Any) -> Any:
    """A weight-only layer whose weight HQQ optimised (affine, per group or per output channel)."""
    from lowbit.algorithms import hqq_quantize
    from lowbit.granularity import PerGroup

    if not isinstance(gran, PerGroup | PerChannel) or (isinstance(gran, PerGroup) and gran.axis not in (-1, 1)):
        raise OptionError(f"algorithm='hqq' needs PerGroup(size) or PerChannel(0) granularity, got {gran}")
    group_size = gran.size if isinstance(gran, PerGroup) else None
    qt = hqq_quantize(module.weight.detach().float(), cfg.qtype, group_size=group_size)
    new = cls.from_float(module, qtype=cfg.qtype, granularity=qt.granularity, symmetric=False)
    new.load_qtensor(qt)
    return new


@register_handler(Dynamic, lambda cfg: _float_layers(False))
def _dynamic(module: Any, name: str, cfg: Dynamic) -> Any:
    import torch.nn as tnn

    from lowbit.nn import Int8Conv2d, Int8Linear

    cls = Int8Linear if isinstance(module, tnn.Linear) else Int8Conv2d
    new = cls.from_float(
        module, act_scale=None, act_granularity=cfg.activations, weight_granularity=cfg.weight_granularity
    )
    return new, cfg.scheme


@register_handler(Static, lambda cfg: _float_layers(False))
def _static(module: Any, name: str, cfg: Static) -> Any:
    from lowbit.model.observed import Observed

    return Observed(module, cfg), f"{cfg.scheme} (observing; calibrate, then convert)"


def _qat_targets(cfg: QAT) -> tuple[type, ...]:
    if cfg.step == "prepare":
        return _float_layers(False)
    from lowbit.nn import QATConv2d, QATLinear

    return (QATLinear, QATConv2d)


@register_handler(QAT, _qat_targets)
def _qat(module: Any, name: str, cfg: QAT) -> Any:
    import torch.nn as tnn

    from lowbit.nn import QATConv2d, QATLinear

    if cfg.step == "convert":
        return module.to_quantized(), cfg.base.scheme
    cls = QATLinear if isinstance(module, tnn.Linear) else QATConv2d
    if isinstance(cfg.base, WeightOnly):
        return cls.from_float(module, weight_qtype=cfg.base.qtype, act_qtype=None), f"{cfg.scheme} (training)"
    return cls.from_float(module, weight_qtype="int8", act_qtype="int8"), f"{cfg.scheme} (training)"
