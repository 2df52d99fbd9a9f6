"""``quantize_(model, config)``: swap a model's layers for quantized ones, in place.

Which layers: every layer of a type the config targets (``config.targets()``:
``nn.Linear``, ``nn.Conv2d``, and ``nn.Embedding`` for weight-only) whose name
matches ``include`` (glob patterns; all when None) and no ``exclude`` pattern.
How: the handler registered for the config's type (:func:`register_handler`);
``quantize_`` itself never changes when a scheme is added.  A config that needs
calibration data (GPTQ, AWQ, SmoothQuant) declares a statistics plan:
``quantize_`` then streams ``batches`` through the model and hands each layer
its statistic.

A *plan* maps module-name patterns to configs (``None`` keeps a layer float):
each layer takes the config of the first pattern it matches and whose config
targets its type, and one ``quantize_`` call applies them all.

Example:
    >>> import torch, lowbit, lowbit.model as lm
    >>> net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    >>> summary = lm.quantize_(net, lm.WeightOnly("int4", "group:32"))
    >>> [row.name for row in summary.rows], summary.bytes_after < summary.bytes_before
    (['0', '2'], True)
    >>> net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    >>> [r.scheme for r in lm.quantize_(net, {"2": lm.WeightOnly("int8"), "*": lm.WeightOnly("int4")}).rows]
    ['W4 int4 channel', 'W8 int8 channel']
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lowbit._text import format_table
from lowbit.errors import ModelError, OptionError, error_context
from lowbit.model._calibrate import check_model, one_batch_as_list
from lowbit.model._registry import get_handler, is_config
from lowbit.model.config import Config, StatPlan
from lowbit.model.presets import PRESETS, is_preset, preset
from lowbit.model.reports import module_nbytes

__all__ = ["quantize_", "convert", "Summary", "SummaryRow"]

Plan = Mapping[str, Config | None]
"""Module-name glob patterns mapped to configs (None: leave float); the first match wins."""


@dataclass(frozen=True)
class SummaryRow:
    """One swapped layer; ``shared_with`` lists the other names of a module used at several places."""

    name: str
    layer: str
    scheme: str
    bytes_before: int
    bytes_after: int
    shared_with: tuple[str, ...] = ()


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
        body = [[r.name + "".join(f" (= {a})" for a in r.shared_with), r.layer, r.scheme, f"{r.bytes_before:,}",
                 f"{r.bytes_after:,}"] for r in self.rows]
        body.append(["total", "", "", f"{self.bytes_before:,}", f"{self.bytes_after:,}"])
        return format_table(["module", "layer", "scheme", "bytes before", "bytes after"], body)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _type_names(types: tuple[type, ...]) -> str:
    return ", ".join(t.__name__ for t in types)


def _pattern_problem(pattern: str, named: list, targets: tuple[type, ...], what: str) -> str | None:
    """Why ``pattern`` selects nothing ``what`` quantizes, or None when it selects something."""
    hits = [(n, m) for n, m in named if fnmatch.fnmatchcase(n, pattern)]
    if not hits:
        sample = ", ".join(n for n, _ in named[:8])
        return f"pattern {pattern!r} matches no module (names look like: {sample})"
    if not any(isinstance(m, targets) for _, m in hits):
        kinds = sorted({type(m).__name__ for _, m in hits})
        return (f"pattern {pattern!r} matches only {', '.join(kinds)} module(s), which {what} does not "
                f"quantize (supported: {_type_names(targets)}); name their Linear/Conv2d children")
    return None


def _aliases(model: Any) -> dict[int, list[str]]:
    """Every name of every submodule, by ``id``: a module used at several places has several names
    (the first is the one ``named_modules()`` gives)."""
    names: dict[int, list[str]] = {}
    for n, m in model.named_modules(remove_duplicate=False):
        if n:
            names.setdefault(id(m), []).append(n)
    return names


def _tie_problem(names: list[str], decisions: list[Any], describe: Any) -> str | None:
    """Why the names of one shared module cannot all get what they were given, or None when they agree."""
    if len({id(d) for d in decisions}) <= 1:
        return None
    given = ", ".join(f"{n!r}: {describe(d)}" for n, d in zip(names, decisions, strict=True))
    return (f"module {names[0]!r} is the same module object at {len(names)} places ({given}); it has one weight, "
            "so it is quantized once for all of them: select all its names or none (include/exclude/plan)")


def _raise_ties(problems: list[str]) -> None:
    if problems:
        raise ModelError("; ".join(problems))


def _select(model: Any, config: Config, include: list[str] | None, exclude: list[str]) -> list:
    """The ``(name, module)`` pairs one config quantizes; ModelError naming every bad pattern.

    A module used at several places (tied) is chosen once, under its first name, when all its
    names are selected; a selection that takes some of its names and not others is refused."""
    targets, what = get_handler(config).targets(config), type(config).__name__
    aliases = _aliases(model)
    named = [(n, m) for n, m in model.named_modules() if n]
    every_name = [(n, m) for n, m in model.named_modules(remove_duplicate=False) if n]

    def picked(n: str) -> bool:
        return (include is None or _matches(n, include)) and not _matches(n, exclude)

    chosen, ties = [], []
    for n, m in named:
        if not isinstance(m, targets):
            continue
        names = aliases[id(m)]
        decisions = [config if picked(a) else None for a in names]
        tie = _tie_problem(names, decisions, lambda d: "quantized" if d is not None else "kept float")
        if tie:
            ties.append(tie)
        elif decisions[0] is not None:
            chosen.append((n, m))
    problems = [p for p in (_pattern_problem(pat, every_name, targets, what) for pat in include or []) if p]
    if problems:
        raise ModelError("include " + "; include ".join(problems))
    _raise_ties(ties)
    if not chosen:
        raise ModelError(
            f"{what} found no module to quantize: the model has no {_type_names(targets)} "
            f"layer matching include={include} exclude={exclude}"
        )
    return chosen


def _patterns(value: Any, what: str) -> list[str]:
    """Glob patterns from one string (one pattern, not its characters) or an iterable of strings."""
    if isinstance(value, str):
        return [value]
    try:
        patterns = list(value)
    except TypeError:
        raise OptionError(f"{what} must be a glob pattern or a list of them, got {type(value).__name__}") from None
    bad = [repr(p) for p in patterns if not isinstance(p, str)]
    if bad:
        raise OptionError(f"{what} patterns must be strings (module-name globs such as 'lm_head' or 'layers.*.mlp'), "
                          f"got {', '.join(bad)}")
    return patterns


def _check_plan(plan: Mapping[Any, Any]) -> list[tuple[str, Config | None]]:
    if not plan:
        raise OptionError("an empty plan quantizes nothing; map module patterns to configs, e.g. {'*': WeightOnly()}")
    bad = [f"{k!r}: {type(v).__name__}" for k, v in plan.items()
           if not isinstance(k, str) or not (v is None or is_config(v))]
    if bad:
        raise OptionError(f"a plan maps glob patterns (str) to configs or None; got {', '.join(bad)}")
    return list(plan.items())


def _select_plan(model: Any, plan: Plan, include: list[str] | None, exclude: list[str]) -> list[tuple[Config, list]]:
    """Per config, in plan order, the layers whose first matching pattern (among those targeting them) is its."""
    entries = _check_plan(plan)
    every_name = [(n, m) for n, m in model.named_modules(remove_duplicate=False) if n]
    targets = [(object,) if cfg is None else get_handler(cfg).targets(cfg) for _, cfg in entries]
    problems = []
    for (pattern, cfg), kinds in zip(entries, targets, strict=True):
        problem = _pattern_problem(pattern, every_name, kinds, "None" if cfg is None else type(cfg).__name__)
        if problem:
            problems.append(problem)
    if problems:
        raise ModelError("plan " + "; plan ".join(problems))

    def decision(n: str, m: Any) -> Config | None:
        if (include is not None and not _matches(n, include)) or _matches(n, exclude):
            return None
        for (pattern, cfg), kinds in zip(entries, targets, strict=True):
            if fnmatch.fnmatchcase(n, pattern) and isinstance(m, kinds):
                return cfg
        return None

    aliases = _aliases(model)
    decided, ties = {}, []
    for n, m in model.named_modules():
        if n:
            names = aliases[id(m)]
            decisions = [decision(a, m) for a in names]
            tie = _tie_problem(names, decisions, lambda d: "kept float" if d is None else d.scheme)
            if tie:
                ties.append(tie)
            elif decisions[0] is not None:
                decided[n] = (decisions[0], m)
    _raise_ties(ties)
    groups: dict[int, tuple[Config, list]] = {}
    for _, cfg in entries:
        layers = [(n, m) for n, (c, m) in decided.items() if c is cfg]
        if cfg is not None and id(cfg) not in groups and layers:
            groups[id(cfg)] = (cfg, layers)
    if not groups:
        raise ModelError(f"the plan selects no module to quantize (include={include} exclude={exclude})")
    return list(groups.values())


def _plan_file(path: str | os.PathLike[str]) -> Any:
    """The plan saved at ``path`` by ``lowbit plan``; a string that names no file is refused as a config."""
    from lowbit.plan.plan_file import load_plan

    if isinstance(path, str) and not os.path.exists(path) and not path.endswith(".json"):
        raise OptionError(f"config must be a lowbit.model.Config, a preset ({', '.join(PRESETS)}), a plan (dict) or "
                          f"a plan file path, got the string {path!r}, which names no file (for a format: "
                          f"lowbit.model.WeightOnly({path!r}))")
    return load_plan(path)


def _swap(model: Any, name: str, new: Any) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _layers_with_statistics(
    model: Any, chosen: list, plan: StatPlan, batches: Iterable[Any], progress: bool | None
) -> Generator[tuple[str, Any, Any], None, None]:
    """Layers that need no statistic first, then the others as calibration feeds them."""
    from lowbit.model._collect import layer_statistics

    if model.training:
        raise ModelError("calibration needs the model in eval mode (dropout would skew statistics); call model.eval()")
    fed = [(n, m) for n, m in chosen if plan.wants(m)]
    names = {n for n, _ in fed}
    for name, module in chosen:
        if name not in names:
            yield name, module, None
    yield from layer_statistics(model, fed, batches, plan.factory, plan.sequential, progress, plan.sink_weight,
                                plan.block)


def _apply(model: Any, config: Config, chosen: list, batches: Any, progress: bool | None, swapped: list,
           rows: list) -> None:
    """Replace every chosen layer with the config's handler, recording swaps (for rollback) and rows.

    A module used at several places is replaced at all of them by the same new module."""
    record = get_handler(config)
    plan = record.statistics(config)
    if plan is not None and plan.optional and batches is None:  # e.g. HQQ without data: data-free
        plan = None
    aliases = _aliases(model)
    items = ((n, m, None) for n, m in chosen) if plan is None else _layers_with_statistics(
        model, chosen, plan, batches, progress
    )
    try:
        for name, module, stat in items:
            before = module_nbytes(module)
            with error_context(f"module {name!r} ({type(module).__name__})"):
                new, scheme = record.replace(module, name, config, stat)
            names = aliases.get(id(module), [name])
            for alias in names:
                _swap(model, alias, new)
                swapped.append((alias, module))
            others = tuple(a for a in names if a != name)
            rows.append(SummaryRow(name, type(module).__name__, scheme, before, module_nbytes(new), others))
    finally:
        items.close()  # a generator either way; closing removes calibration hooks


def quantize_(
    model: Any,
    config: Config | Plan,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    batches: Iterable[Any] | None = None,
    progress: bool | None = None,
) -> Summary:
    """Replace the selected layers of ``model`` (a ``torch.nn.Module``) in place.

    Args:
        model: the model; its other layers are left alone.
        config: a config (WeightOnly, Dynamic, Static (prepares observers), QAT(step=...)
            or one registered with :func:`register_handler`), a preset name (``"w8"``, ``"w4"``,
            ``"w3"``, ``"w2"``: :mod:`lowbit.model.presets`; its calibrated form when ``batches``
            are given, its data-free form otherwise), or a plan: a dict of
            module-name glob patterns to configs or None (leave float); each layer
            takes the first pattern that matches it and whose config targets its type.
            A :class:`lowbit.plan.Plan` (from ``lowbit.plan.plan_model``) is such a dict, and the
            path of a saved plan (``lowbit plan ... -o plan.json``) is read with ``lowbit.plan.load_plan``.
        include: glob patterns on module names (``"encoder.*.dense"``), or one pattern as a
            string; None selects all.
        exclude: glob patterns to leave in float, or one pattern as a string (``"lm_head"``).
        batches: calibration inputs for configs that need data (``WeightOnly(algorithm="gptq"/"awq")``,
            ``Static``/``Dynamic`` with ``smoothquant``): each a tensor, a tuple of tensors or a
            dict of keyword tensors, as ``model`` takes them; a single tensor or dict is one
            batch (not iterated row by row). The model must be in eval mode.
            For inputs shaped ``(batch, sequence, features)`` the first position of every
            sequence (a causal LM's "attention sink") counts ``sink_weight`` times
            (``algorithm_options``; GPTQ default 32).
        progress: progress meter on stderr while calibrating (default: when stderr is a terminal).

    A module object used at several places (a tied ``nn.Linear``) is quantized once and the
    same new module is put at every place; its summary row lists the other names
    (``shared_with``). Selecting some of its names but not the others is a ModelError.

    Returns:
        A Summary: which modules, which scheme, bytes before and after.

    Raises:
        InputTypeError: ``model`` is not a ``torch.nn.Module``.
        ModelError: a pattern matches no module, matches only unsupported
            layer types, or nothing is left to quantize (each message names
            the module and the fix); a data-driven config without ``batches`` or
            with the model in training mode; a shared module whose names are
            selected differently. OptionError: a bad config value, a bad plan,
            patterns that are not strings, or ``batches`` given to configs that use none. A LowbitError raised
            for one layer names it. On any error the layers already replaced are put
            back, so the model is left as it was.
        FileFormatError: a plan file path that is missing or not a lowbit plan.

    Example:
        >>> import torch, lowbit.model as lm
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8))
        >>> lm.quantize_(net, lm.WeightOnly("int8")).rows[0].scheme
        'W8 int8 channel'
    """
    check_model(model, "quantize_")
    if isinstance(config, str) and is_preset(config):  # "w4": the calibrated form with batches, else data-free
        config = preset(config, calibrated=batches is not None)
    elif isinstance(config, (str, os.PathLike)):  # a plan saved by lowbit.plan (Plan is itself a Mapping)
        config = _plan_file(config)
    include_list = None if include is None else _patterns(include, "include")
    exclude_list = _patterns(exclude, "exclude")
    if isinstance(config, Mapping):
        groups = _select_plan(model, config, include_list, exclude_list)
    elif is_config(config):
        groups = [(config, _select(model, config, include_list, exclude_list))]
    else:
        raise OptionError(f"config must be a lowbit.model.Config, a plan (dict) or a plan file path, "
                          f"got {type(config).__name__}")
    batches = one_batch_as_list(batches)
    plans = [get_handler(cfg).statistics(cfg) for cfg, _ in groups]
    needs_data = [cfg.scheme for (cfg, _), plan in zip(groups, plans, strict=True) if plan and not plan.optional]
    takes_data = [plan for plan in plans if plan is not None]
    if not takes_data and batches is not None:
        raise OptionError(f"{', '.join(cfg.scheme for cfg, _ in groups)} uses no calibration data; drop batches=")
    if needs_data and batches is None:
        raise ModelError(
            f"{needs_data[0]} needs calibration data: call quantize_(model, config, batches=[...]) with model inputs"
        )
    batch_list = list(batches) if batches is not None and len(takes_data) > 1 else batches
    rows: list[SummaryRow] = []
    swapped: list[tuple[str, Any]] = []
    try:
        for cfg, chosen in groups:
            _apply(model, cfg, chosen, batch_list, progress, swapped, rows)
    except BaseException:  # leave the model as it was, not half quantized
        for name, module in reversed(swapped):
            _swap(model, name, module)
        raise
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    return Summary(sorted(rows, key=lambda r: order.get(r.name, len(order))))


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
    from lowbit.model._observed import Observed

    check_model(model, "convert")
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
    aliases = _aliases(model)
    for name, module in observed:
        before = module_nbytes(module.module)
        new = module.to_quantized()
        names = aliases.get(id(module), [name])
        for alias in names:  # a shared observed layer becomes one quantized layer at every place
            _swap(model, alias, new)
        rows.append(SummaryRow(name, type(module.module).__name__, module.config.scheme, before, module_nbytes(new),
                               tuple(a for a in names if a != name)))
    return Summary(rows)
