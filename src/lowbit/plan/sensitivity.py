"""Per-layer sensitivity: the model-output error when only one layer takes a candidate.

For every planned layer and candidate the layer's weight is quantized with lowbit's own
handler (the module ``quantize_`` would build, so its stored bytes are the true cost), the
float weight is swapped for the dequantized one, the model runs on the calibration batches
and its output is compared with the cached float output by the metric:

* ``"kl"``: mean over positions of KL(float || quantized) of the softmax of the last axis
  (causal LMs: next-token distributions);
* ``"cosine"``: mean over rows of ``1 - cosine`` along the last axis (encoders, embeddings);
* ``"mse"``: ``sum((y - y_float)^2) / sum(y_float^2)`` over the whole output.

Speed: the float pass caches each repeated block's output; a layer inside block ``k`` then
runs the model with blocks ``0..k-1`` answering from that cache (checked once against the
full model, and not used when it does not reproduce the float output exactly).

``mode="anchored"`` (the default) measures only one candidate per layer, the one with the
largest layer-output error ``E = ||(W - W_q) X^T||^2`` over the layer's calibration inputs
``X``, and predicts the others as ``error(anchor) * E(c) / E(anchor)``: a second-order
expansion makes the output error proportional to E for a fixed layer.  ``mode="measured"``
measures every candidate (candidates x layers model runs).  The table marks which numbers
were measured.

Example:
    >>> import torch
    >>> from lowbit.plan.candidates import parse_candidates
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    >>> table = measure_sensitivity(net, parse_candidates("int8,int2"), [torch.randn(64, 16)], metric="mse",
    ...                             mode="measured")
    >>> [row.name for row in table.layers], table.layers[0].errors[0] < table.layers[0].errors[1]
    (['0', '2'], True)
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lowbit.errors import ModelError, NonFiniteError, OptionError
from lowbit.plan.candidates import Candidate

__all__ = ["LayerSensitivity", "SensitivityTable", "measure_sensitivity", "METRICS", "MODES", "planned_layers"]

METRICS = ("kl", "cosine", "mse")
MODES = ("anchored", "measured")


@dataclass(frozen=True)
class LayerSensitivity:
    """One layer: per candidate its stored weight bytes, model-output error and whether it was measured."""

    name: str
    weights: int
    bytes: list[int]
    errors: list[float]
    measured: list[bool]
    output_errors: list[float]  # E = ||(W - W_q) X^T||^2 on the calibration inputs (the proxy)


@dataclass(frozen=True)
class SensitivityTable:
    """Every planned layer's :class:`LayerSensitivity`, the candidates, metric and notes."""

    candidates: list[str]
    metric: str
    layers: list[LayerSensitivity]
    notes: list[str]
    seconds: float


# --------------------------------------------------------------------------- which layers


def planned_layers(model: Any, include: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> tuple[list, list]:
    """The ``(name, module)`` Linear/Conv2d layers a plan covers, and notes on those left out.

    A layer whose weight is the same tensor as another module's (a tied ``lm_head``) is left
    out: quantizing one place would store the weight twice.

    Raises:
        ModelError: no layer is left.

    Example:
        >>> import torch
        >>> [n for n, _ in planned_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))[0]]
        ['0']
    """
    import torch.nn as tnn

    include_list = None if include is None else list(include)
    exclude_list = list(exclude)
    owners: dict[int, list[str]] = {}
    for n, m in model.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(w, tnn.Parameter):
            owners.setdefault(id(w), []).append(n)
    chosen, notes = [], []
    for n, m in model.named_modules():
        if not n or type(m) not in (tnn.Linear, tnn.Conv2d):
            continue
        if include_list is not None and not any(fnmatch.fnmatchcase(n, p) for p in include_list):
            continue
        if any(fnmatch.fnmatchcase(n, p) for p in exclude_list):
            continue
        others = [o for o in owners[id(m.weight)] if o != n]
        if others:
            notes.append(f"{n} kept out of the plan: its weight is shared with {', '.join(others)}")
            continue
        chosen.append((n, m))
    if not chosen:
        raise ModelError(f"no Linear or Conv2d layer to plan (include={include_list}, exclude={exclude_list})")
    return chosen, notes


# --------------------------------------------------------------------------- outputs and metrics


def default_output(model: Any, batch: Any) -> Any:
    """The tensor a metric compares: ``.logits`` of a language model, else the first output tensor."""
    from lowbit.model._calibrate import run_batch
    from lowbit.model.reports import _first_tensor

    out = run_batch(model, batch)
    logits = getattr(out, "logits", None)
    return (logits if logits is not None else _first_tensor(out)).detach().float()


def auto_metric(model: Any) -> str:
    """``"kl"`` for a model with an ``lm_head`` (a causal LM), else ``"cosine"``.

    Example:
        >>> import torch
        >>> auto_metric(torch.nn.Linear(2, 2))
        'cosine'
    """
    has_head = hasattr(model, "lm_head") or (
        hasattr(model, "get_output_embeddings") and model.get_output_embeddings() is not None)
    return "kl" if has_head else "cosine"


class _Reference:
    """The float output of one batch, kept in the form the metric compares against.

    KL(p || q) per position is ``sum p log p - sum p z + logsumexp(z)`` for the quantized
    logits ``z``: the float probabilities ``p`` and ``sum p log p`` are computed once (float64),
    so each comparison costs one logsumexp and one dot product."""

    def __init__(self, metric: str, out: Any) -> None:
        import torch

        self.metric = metric
        self.value = out
        if metric == "kl":
            logp = torch.log_softmax(out.double(), dim=-1)
            self.value = logp.exp()
            self.neg_entropy = (self.value * logp).sum(-1)
        elif metric == "mse":
            self.energy = float((out.double() ** 2).sum())

    def error(self, out: Any) -> float:
        """The metric's error of ``out`` against this reference, as a float >= 0."""
        import torch

        if not torch.isfinite(out).all():
            raise NonFiniteError("the model produced NaN or infinite outputs with one layer quantized")
        if self.metric == "kl":
            z = out.double()
            kl = self.neg_entropy - (self.value * z).sum(-1) + torch.logsumexp(z, dim=-1)
            return float(kl.mean().clamp_min(0))
        if self.metric == "cosine":
            a, b = self.value.double().reshape(-1, self.value.shape[-1]), out.double().reshape(-1, out.shape[-1])
            cos = torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-30)
            return float((1 - cos).mean().clamp_min(0))
        sse = float(((out.double() - self.value.double()) ** 2).sum())
        return sse / self.energy if self.energy > 0 else sse


# --------------------------------------------------------------------------- the float pass


def _block_of(name: str, blocks: tuple[str, Any] | None) -> int:
    """Index of the block holding layer ``name`` (0: outside every block, run the whole model)."""
    if blocks is None:
        return 0
    prefix = f"{blocks[0]}." if blocks[0] else ""
    if not name.startswith(prefix):
        return 0
    head = name[len(prefix):].split(".", 1)[0]
    return int(head) if head.isdigit() else 0


class _Runner:
    """Runs the model on the calibration batches with blocks before ``k`` answered from the float cache."""

    def __init__(self, model: Any, batches: list, output: Callable[[Any, Any], Any], metric: str,
                 max_rows: int, layers: list) -> None:
        self.model, self.batches, self.output = model, batches, output
        from lowbit.model._collect import _find_blocks  # the chain of blocks GPTQ/AWQ calibrate through

        self.blocks = _find_blocks(model, layers)
        self.cache: list[list[Any]] = [[] for _ in batches]
        self.inputs: dict[str, list[Any]] = {n: [] for n, _ in layers}
        self.refs = self._float_pass(metric, max_rows, layers)
        self.truncate = self.blocks is not None and self._check_truncation()

    def _float_pass(self, metric: str, max_rows: int, layers: list) -> list[_Reference]:
        import torch

        hooks = []
        current = [0]
        for n, m in layers:
            hooks.append(m.register_forward_pre_hook(lambda _m, args, n=n: self.inputs[n].append(
                _rows(args[0], max_rows // max(len(self.batches), 1)))))
        for j, block in enumerate(self.blocks[1] if self.blocks else []):
            hooks.append(block.register_forward_hook(lambda _m, _a, out, j=j: self._keep(current[0], j, out)))
        refs = []
        try:
            with torch.no_grad():
                for i, batch in enumerate(self.batches):
                    current[0] = i
                    refs.append(_Reference(metric, self.output(self.model, batch)))
        finally:
            for h in hooks:
                h.remove()
        return refs

    def _keep(self, i: int, j: int, out: Any) -> None:
        if len(self.cache[i]) == j:
            self.cache[i].append(out)

    @contextlib.contextmanager
    def _from_cache(self, k: int, i: int) -> Iterator[None]:
        """Blocks ``0..k-1`` return their cached float output of batch ``i`` instead of computing."""
        assert self.blocks is not None
        patched = self.blocks[1][:k]
        for j, block in enumerate(patched):
            block.forward = lambda *_a, _out=self.cache[i][j], **_k: _fresh(_out)
        try:
            yield
        finally:
            for block in patched:
                del block.forward

    def _check_truncation(self) -> bool:
        """Whether answering every block but the last from the cache reproduces the float output."""
        import torch

        k = len(self.blocks[1]) - 1 if self.blocks else 0
        with torch.no_grad(), self._from_cache(k, 0):
            out = self.output(self.model, self.batches[0])
        return self.refs[0].error(out) <= 1e-9

    def error(self, block: int) -> float:
        """Mean metric error over the batches with the model as it now is, blocks before ``block`` cached."""
        import torch

        total = 0.0
        with torch.no_grad():
            for i, batch in enumerate(self.batches):
                with self._from_cache(block, i) if self.truncate else contextlib.nullcontext():
                    total += self.refs[i].error(self.output(self.model, batch))
        return total / len(self.batches)


def _fresh(out: Any) -> Any:
    """A copy of a cached block output (tensors cloned), so a model that adds to it in place cannot change the cache."""
    if isinstance(out, (tuple, list)):
        return type(out)(_fresh(o) for o in out)
    return out.clone() if hasattr(out, "clone") else out


def _rows(x: Any, limit: int) -> Any:
    """At most ``limit`` evenly spaced rows of a layer input flattened to ``(n, features)``."""
    rows = x.detach().reshape(-1, x.shape[-1]).float()
    step = max(1, -(-rows.shape[0] // max(limit, 1)))
    return rows[::step].clone()


# --------------------------------------------------------------------------- one layer


def _weight_bytes(module: Any) -> int:
    """Stored bytes of a layer's weight: codes, scales and zero points (the bias is not counted)."""
    from lowbit.model.reports import tensor_nbytes

    return sum(tensor_nbytes(v) for k, v in module.state_dict().items() if k != "bias")


def _quantized_weight(module: Any, name: str, candidate: Candidate) -> tuple[Any, int]:
    """The dequantized weight the candidate gives this layer (as ``quantize_`` builds it) and its stored bytes."""
    from lowbit.errors import error_context
    from lowbit.model import get_handler

    if candidate.is_float:
        return module.weight.detach(), _weight_bytes(module)
    with error_context(f"layer {name!r}, candidate {candidate.spec!r}"):
        new, _ = get_handler(candidate.config).replace(module, name, candidate.config, None)
    if new is module:  # the handler kept it float (an MX block size that does not divide it)
        return module.weight.detach(), _weight_bytes(module)
    return new.dequantized_weight().reshape(module.weight.shape), _weight_bytes(new)


def _output_error(module: Any, delta: Any, inputs: list) -> float:
    """``||delta X^T||^2`` summed over the layer's cached input rows (Conv2d: ``||delta||^2``)."""
    import torch.nn as tnn

    d = delta.double().reshape(delta.shape[0], -1)
    if not isinstance(module, tnn.Linear) or not inputs:
        return float((d**2).sum())
    d32 = d.float()
    return float(sum(float(((x @ d32.T).double() ** 2).sum()) for x in inputs))


def _measure_layer(runner: _Runner, name: str, module: Any, candidates: Sequence[Candidate], mode: str,
                   ) -> LayerSensitivity:
    import torch

    original = module.weight.data
    weights, nbytes, proxies = [], [], []
    for c in candidates:
        w, b = _quantized_weight(module, name, c)
        weights.append(w)
        nbytes.append(b)
        proxies.append(_output_error(module, w.float() - original.float(), runner.inputs[name]))
    quantized = [i for i, c in enumerate(candidates) if not c.is_float]
    anchor = [max(quantized, key=lambda i: proxies[i])] if quantized else []
    to_measure = quantized if mode == "measured" else anchor
    errors = [0.0] * len(candidates)
    block = _block_of(name, runner.blocks)
    try:
        for i in to_measure:
            with torch.no_grad():
                module.weight.data = weights[i].to(original.dtype)
            errors[i] = runner.error(block)
    finally:
        module.weight.data = original
    if mode == "anchored" and to_measure:
        a = to_measure[0]
        for i in quantized:
            if i != a:
                errors[i] = errors[a] * proxies[i] / proxies[a] if proxies[a] > 0 else 0.0
    measured = [i in to_measure for i in range(len(candidates))]
    return LayerSensitivity(name, original.numel(), nbytes, errors, measured, proxies)


# --------------------------------------------------------------------------- the table


def _check_options(metric: str, mode: str, max_rows: int) -> None:
    if metric not in METRICS:
        raise OptionError(f"metric must be one of {METRICS} or 'auto', got {metric!r}")
    if mode not in MODES:
        raise OptionError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise OptionError(f"max_rows must be a positive int, got {max_rows!r}")


def measure_sensitivity(
    model: Any,
    candidates: Sequence[Candidate],
    batches: Iterable[Any],
    *,
    metric: str = "auto",
    mode: str = "anchored",
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    output: Callable[[Any, Any], Any] | None = None,
    max_rows: int = 512,
    progress: bool | None = None,
) -> SensitivityTable:
    """Each planned layer's stored bytes and model-output error per candidate (see the module docstring).

    Args:
        model: a float ``torch.nn.Module`` in eval mode; its weights are swapped one layer at a
            time and always put back.
        candidates: from :func:`lowbit.plan.parse_candidates`.
        batches: calibration inputs as ``model`` takes them (tensor, tuple or dict of keyword tensors).
        metric: ``"kl"``, ``"cosine"``, ``"mse"`` or ``"auto"`` (kl for a model with an ``lm_head``).
        mode: ``"anchored"`` or ``"measured"``.
        include, exclude: glob patterns on layer names (see :func:`planned_layers`).
        output: ``output(model, batch) -> tensor`` compared by the metric (default: ``.logits``
            or the first output).
        max_rows: input rows per layer kept for the proxy E, spread over the batches.
        progress: a progress line on stderr (default: when stderr is a terminal).

    Returns:
        A :class:`SensitivityTable`.

    Raises:
        ModelError: training mode, no batch, or no layer to plan. OptionError: a bad option.
        NonFiniteError: the model's output became NaN or infinite.
    """
    import sys
    import time

    from lowbit.model._calibrate import Progress, check_model, one_batch_as_list

    check_model(model, "measure_sensitivity")
    if model.training:
        raise ModelError("measure_sensitivity needs the model in eval mode (dropout adds noise); call model.eval()")
    metric = auto_metric(model) if metric == "auto" else metric
    _check_options(metric, mode, max_rows)
    batch_list = list(one_batch_as_list(batches))
    if not batch_list:
        raise ModelError("measure_sensitivity needs at least one calibration batch")
    start = time.perf_counter()
    layers, notes = planned_layers(model, include, exclude)
    runner = _Runner(model, batch_list, output or default_output, metric, max_rows, layers)
    if runner.blocks is not None and not runner.truncate:
        notes.append("blocks could not answer from the float cache; every measurement ran the whole model")
    meter = Progress(len(layers), sys.stderr.isatty() if progress is None else progress, "sensitivity", "layers")
    rows = []
    try:
        for done, (name, module) in enumerate(layers, 1):
            rows.append(_measure_layer(runner, name, module, candidates, mode))
            meter.update(done)
    finally:
        meter.close()
    return SensitivityTable([c.spec for c in candidates], metric, rows, notes, time.perf_counter() - start)
