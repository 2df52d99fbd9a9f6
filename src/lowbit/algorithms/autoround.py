"""AutoRound: learned rounding and clipping, one transformer block at a time (Cheng et al., 2023).

Round-to-nearest (RTN) rounds every weight on its own.  AutoRound ("Optimize Weight
Rounding via Signed Gradient Descent for the Quantization of LLMs", arXiv:2309.05516)
learns, for every weight, a rounding offset ``V`` in ``[-0.5, 0.5]`` and, for every
block of weights (output row, or output row x input group), two clipping factors
``alpha`` and ``beta`` in ``[min_clip, 1]`` (0.5 in the paper) that shrink the block's
maximum and minimum before the scale is computed:

    ``s = (alpha * max(W) - beta * min(W)) / (qmax - qmin)``, ``z = qmin - round(beta * min(W) / s)``,
    ``Q(W) = s * (clip(round(W / s + V) + z, qmin, qmax) - z)``

(symmetric formats: ``s = alpha * max|W| / steps`` with the format's fixed zero point).
Every quantized Linear of a block is replaced by ``Q(W)`` at once and ``V``, ``alpha``,
``beta`` are trained to make the *block's output* on calibration batches match the
float block's output (mean squared error), with straight-through rounding and
signed gradient descent (SignSGD): each step moves every parameter by ``lr`` in the
direction of the sign of its gradient, and ``lr`` decays linearly to 0.  ``V = 0``,
``alpha = beta = 1`` is RTN, the starting point.  The paper trains 200 steps per block
with ``lr = 1/steps`` (5e-3), so that the summed step sizes, ``lr * steps / 2``, are just
the half step ``V`` may move; the default here is 100 steps of one calibration
sequence each (batches of several sequences are split where the block allows it),
which cost about 12 GFLOP per step for a SmolLM2-135M block of 512 tokens: the budget
is 15 minutes for its 30 blocks on 2 cores, and the whole model at uint4 g64 with float16
scales took 762 s on a quiet 2-core machine (16 calibration windows of 512 tokens;
``steps=`` trades time for accuracy: on one SmolLM2 block at uint4 g64 the block's output
error fell to 0.36, 0.26 and 0.21 of RTN's after 25, 50 and 100 steps).

``init="gptq"`` starts from GPTQ's solution instead of the float weight: each Linear is
first quantized by :func:`lowbit.algorithms.gptq.gptq_solve` with the Hessian of its inputs
on the same batches, and ``V`` is learned on the weights GPTQ rounded (each column after the
error feedback of the columns before it), on GPTQ's grid, so ``V = 0`` is GPTQ's weight.  It
pays where GPTQ alone is far ahead of round to nearest (2 bits); at 3-4 bits learning from
round to nearest does as well or better.

Why AutoRound rather than AdaRound (Nagel et al., 2020):

* AdaRound relaxes rounding through a rectified sigmoid and needs a regularizer that
  pushes it to 0 or 1, with a temperature ``beta`` annealed (20 down to 2) over about
  10,000-20,000 iterations per layer; AutoRound has no regularizer, no temperature
  schedule, and reports its results with 200 steps per block: the only budget a CPU
  can pay for a 30-block model;
* AdaRound learns rounding only; AutoRound learns the clipping range of each group at
  the same time, which is where most of the gain at 2-3 bits comes from for
  per-group formats;
* AutoRound works on a whole block (attention and MLP together, their interactions
  included), as it was designed to, with groups and affine zero points as stored.

What this implementation adds: the scales are rounded to the requested scale format
in every forward pass (straight-through), so the trained grid is the stored one; a
few checkpoints score the parameters on all calibration batches and the best is kept
(a non-finite loss or gradient stops training at the last finite state, with a
warning); and the block's final loss is compared with lowbit's own RTN of the same
scheme, which is returned instead whenever it is not worse.  The codes are made by
:func:`lowbit.quantize` from the learned scales and zero points, so the result is
exactly what a weight-only layer stores.

Example:
    >>> import numpy as np, lowbit
    >>> from lowbit.algorithms import autoround_quantize
    >>> rng = np.random.default_rng(0)
    >>> x = (rng.standard_normal((256, 64)) @ rng.standard_normal((64, 64))).astype(np.float32)
    >>> w = rng.standard_normal((16, 64)).astype(np.float32)
    >>> qt = autoround_quantize(w, x, "uint2", granularity="group:16", steps=40)
    >>> rtn = lowbit.fake_quantize(w, "uint2", granularity=lowbit.PerGroup(16))
    >>> err = lambda wq: float(np.sum((x @ (w - wq).T) ** 2))
    >>> bool(err(qt.dequantize()) < err(rtn))
    True
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowbit._arrays import as_float_array, check_finite
from lowbit.algorithms._checks import _UNSET, as_rows, positive_int, weight_granularity
from lowbit.core import check_float_zero_point, offset_dtype
from lowbit.errors import EmptyInputError, InputTypeError, NonFiniteError, OptionError
from lowbit.formats import QType, get_qtype
from lowbit.formats.scales import DEFAULT_SCALE_FORMAT, scale_format_for, store_scales
from lowbit.granularity import Granularity, PerChannel
from lowbit.qparams import symmetric_divisor
from lowbit.qtensor import QTensor

__all__ = ["RoundingScheme", "autoround_block", "autoround_quantize", "block_step", "DEFAULT_STEPS", "INITS",
           "check_options"]

DEFAULT_STEPS = 100
"""SignSGD steps per block (the paper uses 200; half of them is the CPU budget here)."""
_MAX_EVAL_BATCHES = 4  # calibration batches (sequences) a checkpoint is scored on, evenly spaced
_ROWS_PER_BATCH = 512  # autoround_quantize: input rows per step
_IDEMPOTENT_SCALES = ("float32", "float16", "bfloat16")  # stored scales stored again are the same
INITS = ("rtn", "gptq")
"""Where the learned rounding starts: round to nearest of the float weight, or GPTQ's weight."""


@dataclass(frozen=True)
class RoundingScheme:
    """How one Linear weight is stored: integer format, granularity, symmetry, scale format and zero point kind.

    Args:
        qtype: an integer format (``"uint4"``, ``"int3"`` ...).
        granularity: ``PerChannel(0)`` / ``"channel"`` (default) or ``PerGroup(size)`` / ``"group:64"``.
        symmetric: None for the format's default (symmetric for signed formats).
        scale_format: how the scales are stored (``"float16"`` ...; None: float32).
        zero_point: ``"int"`` (default) or ``"float"``: a float offset per block, the clipped minimum
            ``beta * min(W)`` itself instead of a rounded integer zero point (unsigned formats,
            float32 or float16 scales; see :func:`lowbit.quantize`).

    Example:
        >>> RoundingScheme("uint4", "group:64", scale_format="float16", zero_point="float").zero_point
        'float'
    """

    qtype: str | QType = "uint4"
    granularity: Granularity | str | None = None
    symmetric: bool | None = None
    scale_format: str | None = None
    zero_point: str = "int"


def check_options(steps: Any = DEFAULT_STEPS, lr: Any = None, min_clip: Any = 0.5, checkpoints: Any = 2,
                  seed: Any = 0, sink_weight: Any = 1.0, init: Any = "rtn") -> None:
    """Raise OptionError for a bad AutoRound option (what ``WeightOnly`` checks before any data runs).

    Example:
        >>> check_options(steps=0)
        >>> check_options(lr=-1.0)
        Traceback (most recent call last):
        ...
        lowbit.errors.OptionError: autoround: lr must be None (1/steps) or a finite number > 0, got -1.0
    """
    positive_int(steps, "autoround: steps", low=0)
    positive_int(checkpoints, "autoround: checkpoints")
    positive_int(seed, "autoround: seed", low=0)
    if lr is not None and not (_is_number(lr) and math.isfinite(lr) and lr > 0):
        raise OptionError(f"autoround: lr must be None (1/steps) or a finite number > 0, got {lr!r}")
    if not (_is_number(min_clip) and 0 < min_clip <= 1):
        raise OptionError(f"autoround: min_clip must be a number in (0, 1] (0.5 in the paper; 1: no clipping), "
                          f"got {min_clip!r}")
    if not (_is_number(sink_weight) and math.isfinite(sink_weight) and sink_weight > 0):
        raise OptionError(f"autoround: sink_weight must be a finite number > 0 (1 = no extra weight), "
                          f"got {sink_weight!r}")
    if init not in INITS:
        raise OptionError(f"autoround: init must be one of {INITS} (where the learned rounding starts), got {init!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@functools.cache
def _round_function() -> Any:
    import torch

    class _RoundSTE(torch.autograd.Function):
        """Round half to even forward, identity backward: one pass each way."""

        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            return torch.round(x)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            return grad

    return _RoundSTE


def _round_ste(x: Any) -> Any:
    """Round half to even forward, identity backward (straight-through)."""
    return _round_function().apply(x)


class _LearnedWeight:
    """The trainable rounding of one ``(out, in)`` weight: offsets ``v``, clip factors ``alpha`` and ``beta``."""

    def __init__(self, weight: Any, scheme: RoundingScheme, where: str, start: Any = None) -> None:
        import torch

        w = weight.detach().to(torch.float32).cpu()
        if not bool(torch.isfinite(w).all()):
            raise NonFiniteError(f"{where}: the weight holds NaN/Inf values; AutoRound needs a finite weight")
        self.source = w  # its round to nearest is the baseline
        if start is not None:  # (GPTQ's QTensor, the weights GPTQ rounded): learn around GPTQ's codes and grid
            w = torch.from_numpy(np.ascontiguousarray(start[1], np.float32))
        self.qt = get_qtype(scheme.qtype)
        if self.qt.kind != "int" or self.qt.is_mx:
            raise OptionError(f"{where}: AutoRound rounds to integer formats, got {self.qt.name} ({self.qt.kind}); "
                              "use e.g. 'uint4'")
        self.gran, size = weight_granularity(scheme.granularity, _UNSET, tuple(w.shape), where)
        self.fmt = scale_format_for(self.qt, scheme.scale_format)
        self.sym = self.qt.signed if scheme.symmetric is None else bool(scheme.symmetric)
        self.float_zp = check_float_zero_point(scheme.zero_point, self.qt, scheme.symmetric, self.fmt.name,
                                               where=f"{where}: zero_point='float'")
        self.zero, self.steps = symmetric_divisor(self.qt) if self.sym else (0, self.qt.qmax - self.qt.qmin)
        self.shape = tuple(w.shape)
        out, n = self.shape
        groups = -(-n // size)  # a shorter last group is padded (cut off again in ``weight``)
        self.wg = torch.nn.functional.pad(w, (0, groups * size - n)).reshape(out, groups, size)
        if self.float_zp:  # the range is the block's own [min, max], as lowbit.quantize's offsets
            pad = (0, groups * size - n)
            self.lo = torch.nn.functional.pad(w, pad, value=math.inf).reshape(out, groups, size).amin(-1, True)
            self.hi = torch.nn.functional.pad(w, pad, value=-math.inf).reshape(out, groups, size).amax(-1, True)
        else:  # integer zero points: the range holds 0 (so do the zero pads)
            self.lo = self.wg.amin(-1, keepdim=True).clamp(max=0)
            self.hi = self.wg.amax(-1, keepdim=True).clamp(min=0)
        if start is not None:
            self.lo, self.hi = self._grid_ends(start[0], groups)
        self.v = torch.zeros_like(self.wg, requires_grad=True)
        self.alpha = torch.ones_like(self.lo, requires_grad=True)
        self.beta = torch.ones_like(self.lo, requires_grad=not self.sym)

    def _grid_ends(self, qt: QTensor, groups: int) -> tuple[Any, Any]:
        """The ``(lo, hi)`` per block whose min-max scale and zero point are ``qt``'s (so ``V = 0`` is ``qt``)."""
        import torch

        s = np.asarray(qt.scale, np.float64).reshape(self.shape[0], groups, 1)
        if self.sym:
            hi = s * self.steps
            return torch.from_numpy(-hi).float(), torch.from_numpy(hi).float()
        zero = np.asarray(qt.zero_point, np.float64).reshape(self.shape[0], groups, 1)
        lo = zero if self.float_zp else s * (self.qt.qmin - zero)
        return torch.from_numpy(lo).float(), torch.from_numpy(lo + s * self.steps).float()

    def parameters(self) -> list[Any]:
        return [self.v, self.alpha] + ([] if self.sym else [self.beta])

    def clamp_(self, min_clip: float) -> None:
        import torch

        with torch.no_grad():
            self.v.clamp_(-0.5, 0.5)
            self.alpha.clamp_(min_clip, 1.0)
            self.beta.clamp_(min_clip, 1.0)

    def scale(self) -> Any:
        """Per-block scales as the scale format stores them (straight-through for the rounding)."""
        import torch

        span = torch.maximum(self.hi, -self.lo) * self.alpha if self.sym else self.hi * self.alpha - self.lo * self.beta
        s = torch.where(span > 0, span / self.steps, torch.ones_like(span)).clamp(min=torch.finfo(torch.float32).tiny)
        return self._stored(s)

    def _stored(self, values: Any) -> Any:
        """``values`` as the scale format stores them (straight-through: the gradient passes unchanged)."""
        import torch

        if self.fmt.name == DEFAULT_SCALE_FORMAT:
            return values
        stored = store_scales(values.detach().numpy(), self.qt, self.fmt)[1]
        return values + (torch.from_numpy(np.ascontiguousarray(stored, np.float32)) - values).detach()

    def zero_point(self, s: Any) -> Any:
        """The integer zero point (a float for symmetric formats); with float zero points, the offset."""
        if self.sym:
            return float(self.zero)
        if self.float_zp:  # stored in the scales' precision, like the scales (a float16 minimum is a float16)
            return self._stored_offset(self.lo * self.beta)
        return (self.qt.qmin - _round_ste(self.lo * self.beta / s)).clamp(self.qt.qmin, self.qt.qmax)

    def _stored_offset(self, offset: Any) -> Any:
        """Float zero points as stored (:func:`lowbit.core.offset_dtype`), straight-through."""
        import torch

        dtype = offset_dtype(self.fmt.name, np.float32)
        if dtype == np.float32:
            return offset
        stored = offset.detach().numpy().astype(dtype).astype(np.float32)
        return offset + (torch.from_numpy(stored) - offset).detach()

    def weight(self) -> Any:
        """The fake-quantized weight ``(out, in)``, differentiable in ``v``, ``alpha`` and ``beta``."""
        import torch

        s = self.scale()
        z = self.zero_point(s)
        if self.float_zp:  # x = code * s + offset, codes qmin..qmax
            codes = torch.clamp(_round_ste((self.wg - z) / s + self.v), self.qt.qmin, self.qt.qmax)
            return (codes * s + z).reshape(self.shape[0], -1)[:, : self.shape[1]]
        steps = _round_ste(self.wg / s + self.v)  # the code minus the zero point, clipped to the codes below
        if self.sym:
            steps = steps.clamp(self.qt.qmin - z, self.qt.qmax - z)
        else:
            steps = torch.clamp(steps, self.qt.qmin - z, self.qt.qmax - z)
        return (steps * s).reshape(self.shape[0], -1)[:, : self.shape[1]]

    def state(self) -> list[Any]:
        return [p.detach().clone() for p in (self.v, self.alpha, self.beta)]

    def load(self, state: list[Any]) -> None:
        for p, saved in zip((self.v, self.alpha, self.beta), state, strict=True):
            p.data.copy_(saved)

    def qtensor(self) -> QTensor:
        """The learned weight as lowbit stores it: :func:`lowbit.quantize` with the learned scales and zero points."""
        import torch

        from lowbit.core import quantize

        with torch.no_grad():
            s = self.scale()
            z = self.zero_point(s)
            wq = self.weight().numpy()
        params = (self.shape[0],) if isinstance(self.gran, PerChannel) else (self.shape[0], s.shape[1])
        zero = None if self.sym else z.numpy().astype(np.float32 if self.float_zp else np.int64).reshape(params)
        return quantize(wq, self.qt, granularity=self.gran, symmetric=self.sym, scale=s.numpy().reshape(params),
                        zero_point=zero, scale_format=self.fmt.name)

    def rtn(self) -> QTensor:
        """lowbit's round to nearest of the same scheme (the candidate AutoRound must beat)."""
        from lowbit.core import quantize

        return quantize(self.source.numpy(), self.qt, granularity=self.gran, symmetric=self.sym,
                        scale_format=self.fmt.name, zero_point="float" if self.float_zp else None)


def _hidden(output: Any) -> Any:
    """The hidden state a block returns (a tensor, or the first element of a tuple)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _as_call(item: Any) -> tuple[tuple, dict]:
    """A calibration input as ``(args, kwargs)``: a tensor is one positional argument."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], tuple) and isinstance(item[1], dict):
        return item
    return (item,), {}


class _Objective:
    """The block's output error under given weights, on one batch or on the scoring batches."""

    def __init__(self, block: Any, keys: list[str], inputs: list[tuple[tuple, dict]], targets: list[Any],
                 sink_weight: float) -> None:
        self.block, self.keys, self.inputs, self.targets = block, keys, inputs, targets
        self.sink_weight = sink_weight
        n = len(inputs)
        self.scoring = list(range(n)) if n <= _MAX_EVAL_BATCHES else [
            int(i) for i in np.linspace(0, n - 1, _MAX_EVAL_BATCHES).round()]

    def loss(self, weights: list[Any], i: int) -> Any:
        from torch.func import functional_call

        args, kwargs = self.inputs[i]
        out = _hidden(functional_call(self.block, dict(zip(self.keys, weights, strict=True)), args, kwargs))
        err = (out.float() - self.targets[i]) ** 2
        if self.sink_weight != 1.0 and err.dim() == 3 and err.shape[1] > 1:
            err = err.clone()
            err[:, 0] *= self.sink_weight
        return err.mean()

    def score(self, weights: list[Any]) -> float:
        """Mean loss over the scoring batches (inf when not finite)."""
        import torch

        with torch.no_grad():
            total = sum(float(self.loss(weights, i)) for i in self.scoring) / len(self.scoring)
        return total if math.isfinite(total) else math.inf


@contextlib.contextmanager
def _frozen(block: Any) -> Iterator[None]:
    """The block's own parameters take no gradient while the rounding is trained (restored after)."""
    flags = [(p, p.requires_grad) for p in block.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _sign_step(params: list[Any], rate: float) -> bool:
    """One SignSGD update; False (and nothing changed) when a gradient is not finite."""
    import torch

    grads = [p.grad for p in params]
    # one reduction per gradient: a NaN or Inf makes the sum non-finite (finite sums never reach 1e38 here)
    if any(g is not None and not bool(torch.isfinite(g.sum())) for g in grads):
        return False
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            if g is not None:
                p.sub_(g.sign_(), alpha=rate)
            p.grad = None
    return True


def _train(objective: _Objective, learned: list[_LearnedWeight], steps: int, lr: float, min_clip: float,
           checkpoints: int, seed: int) -> tuple[float, list[list[Any]]]:
    """SignSGD on the rounding parameters; the best checkpoint's (score, state).

    A step whose loss or gradient is not finite changes nothing and ends training (with a
    warning); the state reached so far is scored as a last checkpoint.
    """
    import torch

    params = [p for lw in learned for p in lw.parameters()]
    n = len(objective.inputs)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n) for _ in range(-(-steps // n))])
    marks = {round(steps * (k + 1) / max(checkpoints, 1)) for k in range(max(checkpoints, 1))}
    best, best_state = math.inf, [lw.state() for lw in learned]
    for t in range(steps):
        loss = objective.loss([lw.weight() for lw in learned], int(order[t]))
        finite = bool(torch.isfinite(loss))
        if finite:
            loss.backward()
            finite = _sign_step(params, lr * (1.0 - t / steps))
        if finite:
            for lw in learned:
                lw.clamp_(min_clip)
        else:
            for p in params:
                p.grad = None
            warnings.warn(f"autoround: the block loss or its gradient is not finite at step {t + 1} of {steps}; "
                          "training stops at the last finite state", RuntimeWarning, stacklevel=4)
        if t + 1 in marks or not finite:
            score = objective.score([lw.weight() for lw in learned])
            if score < best:
                best, best_state = score, [lw.state() for lw in learned]
        if not finite:
            break
    return best, best_state


def _check_schemes(block: Any, schemes: Any) -> dict[str, RoundingScheme]:
    import torch.nn as tnn

    if isinstance(schemes, RoundingScheme):
        schemes = {n: schemes for n, m in block.named_modules() if isinstance(m, tnn.Linear)}
    if not isinstance(schemes, Mapping) or not schemes:
        raise OptionError("autoround_block: schemes must map the block's Linear layer names to RoundingScheme "
                          f"(or be one RoundingScheme for all of them), got {schemes!r}")
    modules = dict(block.named_modules())
    bad = [repr(n) for n, s in schemes.items()
           if not isinstance(modules.get(n), tnn.Linear) or not isinstance(s, RoundingScheme)]
    if bad:
        linears = [n for n, m in modules.items() if isinstance(m, tnn.Linear)][:8]
        raise OptionError(f"autoround_block: {', '.join(bad)} name no Linear layer of the block with a "
                          f"RoundingScheme (its Linear layers: {linears})")
    return dict(schemes)


def _check_data(inputs: Sequence[Any], targets: Sequence[Any]) -> tuple[list[tuple[tuple, dict]], list[Any]]:
    import torch

    calls = [_as_call(item) for item in inputs]
    outs = list(targets)
    if not calls:
        raise EmptyInputError("autoround_block needs at least one calibration batch (inputs=[...])")
    if len(outs) != len(calls):
        raise OptionError(f"autoround_block: {len(calls)} input batches but {len(outs)} targets; give the float "
                          "block's output for every input batch")
    if not all(isinstance(t, torch.Tensor) for t in outs):
        raise InputTypeError("autoround_block: targets must be torch tensors (the float block's outputs)")
    outs = [t.detach().float() for t in outs]
    if not all(bool(torch.isfinite(t).all()) for t in outs):
        raise NonFiniteError("autoround_block: a target (float block output) holds NaN/Inf; the float model "
                             "already overflows on these batches")
    return calls, outs


def _slice(value: Any, rows: int, b: int) -> Any:
    """``value`` with every tensor whose first axis is ``rows`` long cut to row ``b`` (tuples and lists too)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value[b : b + 1] if value.dim() and value.shape[0] == rows else value
    if isinstance(value, (tuple, list)):
        return type(value)(_slice(v, rows, b) for v in value)
    return value


def _per_sequence(block: Any, keys: list[str], weights: list[Any], calls: list[tuple[tuple, dict]],
                  outs: list[Any]) -> tuple[list[tuple[tuple, dict]], list[Any]]:
    """Batches of ``(batch, sequence, features)`` split into one sequence per step, where the block agrees.

    Every tensor argument whose first axis is the batch's length is cut; the split is kept only if
    the block's output for the first batch's first sequence is the same as before (else the
    batches stay whole: some argument did not follow the batch axis).
    """
    import torch
    from torch.func import functional_call

    rows = outs[0].shape[0] if outs[0].dim() == 3 else 1
    if rows == 1 or any(t.dim() != 3 for t in outs):
        return calls, outs
    params = dict(zip(keys, weights, strict=True))
    try:
        with torch.no_grad():
            args, kwargs = _slice(calls[0], rows, 0)
            first = _hidden(functional_call(block, params, args, kwargs)).float()
        same = first.shape == outs[0][:1].shape and bool(torch.allclose(first, outs[0][:1], rtol=1e-4, atol=1e-5))
    except Exception:  # a block that cannot take one sequence keeps its batches whole
        same = False
    if not same:
        return calls, outs
    split_calls, split_outs = [], []
    for call, out in zip(calls, outs, strict=True):
        n = out.shape[0]
        split_calls += [_slice(call, n, b) for b in range(n)]
        split_outs += [out[b : b + 1] for b in range(n)]
    return split_calls, split_outs


def _gptq_starts(block: Any, names: list[str], chosen: Mapping[str, RoundingScheme],
                 calls: list[tuple[tuple, dict]]) -> list[tuple[QTensor, np.ndarray]]:
    """GPTQ's (QTensor, weights it rounded) of each named Linear, from the Hessian of its inputs as the block
    runs on ``calls``."""
    import torch

    from lowbit.algorithms.gptq import HessianAccumulator, gptq_solve

    modules = dict(block.named_modules())
    accs = {n: HessianAccumulator(modules[n].in_features) for n in names}

    def record(name: str) -> Any:
        def hook(module: Any, args: tuple) -> None:
            accs[name].partial_fit(args[0].detach().float())

        return hook

    hooks = [modules[n].register_forward_pre_hook(record(n)) for n in names]
    try:
        with torch.no_grad():
            for args, kwargs in calls:
                block(*args, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    return [gptq_solve(modules[n].weight.detach().float(), accs[n].hessian_, chosen[n].qtype,
                       granularity=chosen[n].granularity, symmetric=chosen[n].symmetric,
                       zero_point=chosen[n].zero_point, scale_format=chosen[n].scale_format) for n in names]


def _weights(qts: list[QTensor]) -> list[Any]:
    import torch

    return [torch.from_numpy(np.asarray(q.dequantize(), np.float32)) for q in qts]


def autoround_block(
    block: Any,
    inputs: Sequence[Any],
    targets: Sequence[Any],
    schemes: Mapping[str, RoundingScheme] | RoundingScheme,
    *,
    steps: int = DEFAULT_STEPS,
    lr: float | None = None,
    min_clip: float = 0.5,
    checkpoints: int = 2,
    seed: int = 0,
    sink_weight: float = 1.0,
    init: str = "rtn",
) -> dict[str, QTensor]:
    """Learn the rounding of a block's Linear weights so that the block's output matches ``targets``.

    Args:
        block: a ``torch.nn.Module`` (a transformer block); it is not modified.
        inputs: one item per calibration batch: a tensor (the block's one argument) or an
            ``(args, kwargs)`` pair as the block is called (its inputs in the quantized model).
        targets: the float block's output (the hidden state) for each batch.
        schemes: the name of each Linear to quantize, inside the block (``"mlp.down_proj"``; ``""``
            for a block that is itself a Linear), mapped to its :class:`RoundingScheme`; or one
            scheme for every Linear of the block. Other layers stay as they are.
        steps: SignSGD steps; each runs the block forward and backward on one batch (batches in
            a shuffled cycle). 0 returns round to nearest.
        lr: step size, decayed linearly to 0 (None: ``1 / steps``, the paper's rule).
        min_clip: the lower bound of the clip factors ``alpha`` and ``beta`` (1 learns rounding only).
        checkpoints: how many times (evenly spaced, the last at the end) the parameters are scored on
            the calibration batches (at most 4 of them, evenly spaced); the best scored state is kept.
        seed: the batch order's seed.
        sink_weight: weight of the first position of ``(batch, sequence, features)`` outputs in the loss.
        init: ``"rtn"`` (the paper's start: ``V = 0`` on the float weight) or ``"gptq"``: learn around
            GPTQ's weights instead (:func:`lowbit.algorithms.gptq.gptq_solve` of each Linear with the Hessian
            of its inputs on these batches, every position weighted alike; ``V`` moves each of GPTQ's codes
            by at most one step).

    Returns:
        ``{name: QTensor}`` for every name in ``schemes``, made by :func:`lowbit.quantize` with the learned
        scales (in the scheme's scale format) and zero points; when the learned weights do not beat the
        start on the scored batches, the start's QTensors: lowbit's round to nearest, or with
        ``init="gptq"`` the better of it and GPTQ's.

    Raises:
        OptionError: a bad option, a name that is no Linear of the block, a non-integer format, input and
            target counts that differ. GranularityError: a granularity the weight cannot take.
        EmptyInputError: no batch. NonFiniteError: a weight or target with NaN/Inf.
        InputTypeError: targets that are not tensors.

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> block = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 32))
        >>> xs = [torch.randn(64, 32) for _ in range(2)]
        >>> with torch.no_grad():
        ...     ys = [block(x) for x in xs]
        >>> qts = autoround_block(block, xs, ys, RoundingScheme("uint3", "group:16"), steps=20)
        >>> sorted(qts), qts["0"].shape
        (['0', '2'], (64, 32))
    """
    import torch

    check_options(steps, lr, min_clip, checkpoints, seed, sink_weight, init)
    chosen = _check_schemes(block, schemes)
    calls, outs = _check_data(inputs, targets)
    names = list(chosen)
    modules = dict(block.named_modules())
    learned = [_LearnedWeight(modules[n].weight, chosen[n], f"autoround ({n or 'block'})") for n in names]
    starts = None  # with init="gptq": GPTQ's QTensors (the schemes were checked above, before GPTQ runs)
    if init == "gptq":
        solved = _gptq_starts(block, names, chosen, calls)
        learned = [_LearnedWeight(modules[n].weight, chosen[n], f"autoround ({n or 'block'})", start)
                   for n, start in zip(names, solved, strict=True)]
        starts = [qt for qt, _ in solved]
    keys = [f"{n}.weight" if n else "weight" for n in names]
    calls, outs = _per_sequence(block, keys, [modules[n].weight for n in names], calls, outs)
    objective = _Objective(block, keys, calls, outs, float(sink_weight))
    rate = 1.0 / max(steps, 1) if lr is None else float(lr)
    with torch.enable_grad(), _frozen(block):
        base = [lw.rtn() for lw in learned]
        base_score = objective.score(_weights(base))
        if starts is not None:
            gptq_score = objective.score(_weights(starts))
            if gptq_score < base_score:
                base, base_score = starts, gptq_score
        if steps == 0:
            return dict(zip(names, base, strict=True))
        best, state = _train(objective, learned, steps, rate, float(min_clip), checkpoints, seed)
    for lw, saved in zip(learned, state, strict=True):
        lw.load(saved)
    result = [lw.qtensor() for lw in learned]
    if any(lw.fmt.name not in _IDEMPOTENT_SCALES for lw in learned):  # stored scales may move once more
        best = objective.score(_weights(result))
    return dict(zip(names, result if best < base_score else base, strict=True))


def autoround_quantize(
    weight: Any,
    x: Any,
    qtype: str | QType = "uint4",
    *,
    granularity: Granularity | str | None = None,
    symmetric: bool | None = None,
    scale_format: str | None = None,
    zero_point: str = "int",
    rows_per_step: int = _ROWS_PER_BATCH,
    **options: Any,
) -> QTensor:
    """AutoRound for one linear layer's weight on its own: match ``x @ W^T`` on sampled input rows.

    The layer is the block: the same learned offsets and clip factors as :func:`autoround_block`,
    trained on batches of ``rows_per_step`` rows of ``x``.

    Args:
        weight: ``(out_features, in_features)`` float array or CPU tensor.
        x: the layer's input rows ``(..., in_features)`` (e.g. ``ActivationStatistics.sample_``).
        qtype, granularity, symmetric, scale_format, zero_point: the stored scheme (see :class:`RoundingScheme`).
        rows_per_step: input rows per SignSGD step.
        **options: ``steps``, ``lr``, ``min_clip``, ``checkpoints``, ``seed``, ``init`` of :func:`autoround_block`.

    Returns:
        A QTensor (float32 source) in the given scheme, never worse than round to nearest on ``x``.

    Raises:
        OptionError, GranularityError, EmptyInputError, NonFiniteError, InputTypeError: as
        :func:`autoround_block`, and for an ``x`` whose last axis is not ``in_features`` long.

    Example:
        >>> import numpy as np
        >>> qt = autoround_quantize(np.eye(8, 32), np.ones((16, 32)), "int4", steps=5)
        >>> qt.qtype.name, qt.shape
        ('int4', (8, 32))
    """
    import torch

    flat, source = as_float_array(weight)
    check_finite(flat, int(flat.size - np.isfinite(flat).sum()), source.shape)
    if len(source.shape) != 2:
        raise OptionError(f"autoround_quantize expects a 2-d weight (out_features, in_features), got {source.shape}")
    unknown = sorted(set(options) - {"steps", "lr", "min_clip", "checkpoints", "seed", "init"})
    if unknown:
        raise OptionError(f"autoround_quantize: unknown options {unknown} (it takes steps, lr, min_clip, "
                          "checkpoints, seed, init)")
    rows = positive_int(rows_per_step, "autoround_quantize: rows_per_step")
    w = torch.from_numpy(np.ascontiguousarray(flat.reshape(source.shape), np.float32))
    layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    layer.weight.data.copy_(w)
    xs = torch.from_numpy(np.ascontiguousarray(as_rows(x, w.shape[1], "x"), np.float32))
    inputs = list(xs.split(rows))
    with torch.no_grad():
        targets = [layer(b) for b in inputs]
    scheme = RoundingScheme(qtype, granularity, symmetric, scale_format, zero_point)
    return autoround_block(layer, inputs, targets, {"": scheme}, **options)[""]


def block_step(scheme: RoundingScheme, sink_weight: float = 1.0, options: Mapping[str, Any] | None = None) -> Any:
    """The per-block step the sequential calibration pass runs for ``WeightOnly(algorithm="autoround")``
    (:class:`lowbit.model.StatPlan`'s ``block``): every chosen Linear of a block learns ``scheme`` together,
    through :func:`autoround_block`, and gets its QTensor by its full name.

    Example:
        >>> import torch
        >>> step = block_step(RoundingScheme("uint4"), options={"steps": 2})
        >>> block = torch.nn.Sequential(torch.nn.Linear(8, 8))
        >>> x = torch.randn(4, 8)
        >>> step(block, "b.", [("b.0", block[0])], [((x,), {})], [block(x).detach()])["b.0"].qtype.name
        'uint4'
    """
    opts = dict(options or {})

    def run(block: Any, prefix: str, layers: list, inputs: list, targets: list) -> dict[str, Any]:
        schemes = {name[len(prefix):]: scheme for name, _ in layers}
        learned = autoround_block(block, inputs, targets, schemes, sink_weight=sink_weight, **opts)
        return {name: learned[name[len(prefix):]] for name, _ in layers}

    return run
