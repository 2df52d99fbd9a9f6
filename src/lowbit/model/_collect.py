"""Per-layer input statistics for data-driven algorithms (GPTQ, AWQ, SmoothQuant).

:func:`layer_statistics` runs calibration batches through a model and feeds
the input of every chosen layer, flattened to ``(rows, in_features)``, to a
statistic object made for it (anything with ``add(x)``: a Hessian, channel
maxima, a sample of rows).  It yields ``(name, module, statistic)`` one layer
at a time; the caller may replace that layer in the model before taking the
next one.

Two orders:

* **all at once** — one pass of the float model feeds every layer's statistic;
* **sequential** (``sequential=True``, for GPTQ and AWQ) — when the chosen
  layers sit in a chain of repeated blocks (the ``nn.ModuleList`` of a
  transformer's layers), the inputs of the first block are captured once and
  the blocks are visited in order: a block's layers are fed from the block's
  inputs, handed to the caller (who quantizes them), and then the block is run
  again, now quantized, to make the next block's inputs.  Later layers are so
  calibrated on what the quantized earlier layers really produce, at the cost
  of about two passes over the data, as in the GPTQ paper.  The chain is
  checked on the first batch (each block's input must be the previous block's
  output); without a chain the all-at-once order is used.  Layers outside the
  blocks (e.g. a final projection) are fed by the first, float pass and come
  last.

**Block-wise** (``block_step``, for AutoRound): in the sequential order, the float
blocks' outputs are carried beside the quantized ones (one more forward pass per
block), and instead of feeding statistics the block's chosen layers are handed with
the block's inputs (from the quantized blocks before it) and its float outputs to
``block_step``, whose results are the layers' statistics.

Layers that receive the very same input tensor (a transformer's q/k/v
projections, gate/up projections) share one statistic object, which sees that
input once per call.  A module called several times in one forward pass (one
module object used at several places) feeds every one of its inputs.

``sink_weight`` gives the first position of every sequence (inputs shaped
``(batch, sequence, features)``) that many times the weight of the other rows,
by scaling those rows by its square root: a causal language model parks most
of its attention on the first token (the "attention sink"), so an error in
that token's keys and values reaches every later token, while a plain sum of
squared errors over tokens counts it once in ``sequence``.  Key-value cache arguments of captured blocks
(``cache``, ``past_key_value(s)``) are dropped and ``use_cache`` set to False.

Example:
    >>> import torch
    >>> from lowbit.algorithms import ActivationStatistics
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).eval()
    >>> layers = [(n, m) for n, m in net.named_children() if isinstance(m, torch.nn.Linear)]
    >>> stats = layer_statistics(net, layers, [torch.ones(5, 4)], lambda n, m: ActivationStatistics(m.in_features))
    >>> [(name, stat.absmax_.tolist()) for name, _, stat in stats][0]
    ('0', [1.0, 1.0, 1.0, 1.0])
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from lowbit.errors import ModelError
from lowbit.model._calibrate import Progress, run_batch

__all__ = ["layer_statistics"]

StatFactory = Callable[[str, nn.Module], Any]
"""``factory(name, module)`` returns a fresh statistic with ``add(x)`` for a layer."""

_CACHE_KWARGS = ("cache", "past_key_value", "past_key_values")


class _Stop(Exception):
    """Raised by a hook to end a forward pass early."""


class _Feeder:
    """Forward pre-hooks that pass each chosen layer's input to its statistic."""

    def __init__(self, layers: list[tuple[str, nn.Module]], factory: StatFactory, sink_weight: float = 1.0) -> None:
        self.layers = layers
        self.factory = factory
        self.sink_weight = sink_weight
        self.stats: dict[str, Any] = {}
        self._batch_inputs: dict[int, tuple[torch.Tensor, Any]] = {}  # id(input) -> (input kept alive, stat)
        self._fed: set[tuple[int, int]] = set()
        self._handles: list[Any] = []

    def __enter__(self) -> _Feeder:
        for name, module in self.layers:
            self._handles.append(module.register_forward_pre_hook(self._hook(name, module)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def new_batch(self) -> None:
        """Forget which inputs this batch has fed (call before each batch)."""
        self._batch_inputs.clear()
        self._fed.clear()

    def _hook(self, name: str, module: nn.Module) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            if not args or not isinstance(args[0], torch.Tensor):
                raise ModelError(f"layer {name!r} was called without a tensor input; cannot collect its statistics")
            x = args[0]
            stat = self.stats.get(name)
            if stat is None:  # first call: share the statistic of a layer that got this very tensor
                seen = self._batch_inputs.get(id(x))
                stat = seen[1] if seen is not None and seen[0] is x else self.factory(name, module)
                self.stats[name] = stat
            self._batch_inputs.setdefault(id(x), (x, stat))  # kept alive, so the id stays unique
            if (id(stat), id(x)) not in self._fed:  # each input once per statistic: a module called
                self._fed.add((id(stat), id(x)))  # twice (shared at two places) sees both of its inputs
                stat.partial_fit(_as_rows(x.detach(), self.sink_weight))

        return hook


def _as_rows(x: torch.Tensor, sink_weight: float = 1.0) -> torch.Tensor:
    """A Linear input ``(..., in)`` as float rows ``(n, in)``; for ``(batch, sequence, in)`` inputs the
    rows of position 0 are scaled by ``sqrt(sink_weight)``."""
    width = x.shape[-1] if x.dim() else 1
    x = x.float()
    if sink_weight != 1.0 and x.dim() == 3:
        x = x.clone()
        x[:, 0] *= sink_weight**0.5
    return x.reshape(-1, width)


def _find_blocks(model: nn.Module, layers: list[tuple[str, nn.Module]]) -> tuple[str, nn.ModuleList] | None:
    """The ModuleList whose children hold the most chosen layers (at least half of them, in 2+ children)."""
    names = [n for n, _ in layers]
    best: tuple[int, str, nn.ModuleList] | None = None
    for list_name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) < 2:
            continue
        prefix = f"{list_name}." if list_name else ""
        per_child = [sum(n.startswith(f"{prefix}{i}.") for n in names) for i in range(len(module))]
        covered = sum(per_child)
        if sum(c > 0 for c in per_child) >= 2 and 2 * covered >= len(names) and (best is None or covered > best[0]):
            best = (covered, list_name, module)
    return None if best is None else (best[1], best[2])


def _clean_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {k: (None if k in _CACHE_KWARGS else v) for k, v in kwargs.items()}
    if "use_cache" in out:
        out["use_cache"] = False
    return out


def _hidden(output: Any) -> torch.Tensor:
    """The hidden state a block returns (a tensor, or the first element of a tuple)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _with_hidden(args: tuple[Any, ...], kwargs: dict[str, Any], hidden: torch.Tensor) -> tuple[tuple, dict]:
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


def _capture(model: nn.Module, blocks: nn.ModuleList, batches: Iterable[Any], feeder: _Feeder | None,
             run_whole: bool) -> tuple[list[tuple[tuple, dict]], bool]:
    """Inputs of ``blocks[0]`` for every batch, and whether the blocks form a chain.

    The first batch runs through every block to check the chain; later ones stop
    at the first block unless ``run_whole`` (layers outside the blocks need data).
    """
    cached: list[tuple[tuple, dict]] = []
    seen_in: list[Any] = [None] * len(blocks)
    seen_out: list[Any] = [None] * len(blocks)
    state = {"first": True}

    def pre(i: int) -> Callable[..., None]:
        def hook(_m: nn.Module, args: tuple, kwargs: dict) -> None:
            if i == 0:
                if not args and not isinstance(kwargs.get("hidden_states"), torch.Tensor):
                    raise ModelError("the first block was called without a tensor input; use sequential=False")
                cached.append((tuple(args), _clean_kwargs(kwargs)))
                if not state["first"] and not run_whole:
                    raise _Stop
            if state["first"]:
                seen_in[i] = args[0] if args else kwargs.get("hidden_states")

        return hook

    def post(i: int) -> Callable[..., None]:
        def hook(_m: nn.Module, _args: tuple, output: Any) -> None:
            if state["first"]:
                seen_out[i] = _hidden(output)
                if i == len(blocks) - 1 and not run_whole:
                    raise _Stop

        return hook

    handles = [b.register_forward_pre_hook(pre(i), with_kwargs=True) for i, b in enumerate(blocks)]
    handles += [b.register_forward_hook(post(i)) for i, b in enumerate(blocks)]
    try:
        for batch in batches:
            if feeder is not None:
                feeder.new_batch()
            with contextlib.suppress(_Stop):
                run_batch(model, batch)
            state["first"] = False
    finally:
        for h in handles:
            h.remove()
    chain = all(seen_in[i + 1] is seen_out[i] for i in range(len(blocks) - 1))
    return cached, chain


def _all_at_once(model: nn.Module, layers: list[tuple[str, nn.Module]], batches: Iterable[Any],
                 factory: StatFactory, sink_weight: float) -> Iterator[tuple[str, nn.Module, Any]]:
    with _Feeder(layers, factory, sink_weight) as feeder:
        for batch in batches:
            feeder.new_batch()
            run_batch(model, batch)
    for name, module in layers:
        yield name, module, feeder.stats.get(name)


def layer_statistics(
    model: nn.Module,
    layers: list[tuple[str, nn.Module]],
    batches: Iterable[Any],
    factory: StatFactory,
    sequential: bool = False,
    progress: bool | None = None,
    sink_weight: float = 1.0,
    block_step: Callable[..., dict[str, Any]] | None = None,
) -> Iterator[tuple[str, nn.Module, Any]]:
    """Yield ``(name, module, statistic)`` for each chosen layer, fed from ``batches``.

    Args:
        model: the model (eval mode); it runs under ``torch.no_grad()``.
        layers: ``(qualified name, module)`` of the layers to feed.
        batches: model inputs (tensor, tuple of tensors, or dict of keyword tensors).
        factory: ``factory(name, module)`` -> object with ``add(rows)``.
        sequential: visit repeated blocks in order, each fed by the already
            quantized blocks before it (see the module docstring).
        progress: show a progress meter on stderr (default: when stderr is a terminal).
        sink_weight: weight of the first position of each sequence (see the module docstring).
        block_step: ``block_step(block, prefix, layers, inputs, targets)`` -> ``{name: statistic}``
            for the chosen layers of each block of a chain (see the module docstring); None: feed statistics.

    Yields:
        ``(name, module, statistic)``; ``statistic`` is None for a layer that never ran.

    Raises:
        ModelError: no batch, or a layer called without a tensor input.
    """
    batches = list(batches)
    if not batches:
        raise ModelError("calibration needs at least one batch; pass batches=[...] of model inputs")
    meter_on = sys.stderr.isatty() if progress is None else progress
    with torch.no_grad():
        found = _find_blocks(model, layers) if sequential else None
        if found is None:
            yield from _all_at_once(model, layers, batches, factory, sink_weight)
            return
        prefix, blocks = found
        inside = [[(n, m) for n, m in layers if n.startswith(f"{prefix}.{i}." if prefix else f"{i}.")]
                  for i in range(len(blocks))]
        members = {n for group in inside for n, _ in group}
        outside = [(n, m) for n, m in layers if n not in members]
        feeder = _Feeder(outside, factory, sink_weight) if outside else None
        if feeder is not None:
            with feeder:
                cached, chain = _capture(model, blocks, batches, feeder, run_whole=True)
        else:
            cached, chain = _capture(model, blocks, batches, None, run_whole=False)
        if not chain:
            yield from _all_at_once(model, layers, batches, factory, sink_weight)
            return
        last = max(i for i, group in enumerate(inside) if group) if members else -1
        meter = Progress(last + 1, meter_on, "quantizing", "blocks")
        floats = list(cached) if block_step is not None else []  # the float model's inputs of block i
        for i in range(last + 1):
            block = blocks[i]
            if block_step is not None:
                targets = [_hidden(block(*a, **k)) for a, k in floats]
                if inside[i]:
                    stats = block_step(block, f"{prefix}.{i}." if prefix else f"{i}.", inside[i], cached, targets)
                    for name, module in inside[i]:
                        yield name, module, stats.get(name)
                floats = [_with_hidden(a, k, t) for (a, k), t in zip(floats, targets, strict=True)]
            elif inside[i]:
                with _Feeder(inside[i], factory, sink_weight) as block_feeder:
                    for args, kwargs in cached:
                        block_feeder.new_batch()
                        block(*args, **kwargs)
                for name, module in inside[i]:
                    yield name, module, block_feeder.stats.get(name)
            if i < last:
                cached = [_with_hidden(a, k, _hidden(block(*a, **k))) for a, k in cached]
            meter.update(i + 1)
        meter.close()
        for name, module in outside:
            yield name, module, None if feeder is None else feeder.stats.get(name)
