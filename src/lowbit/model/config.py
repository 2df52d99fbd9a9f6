"""Quantization configs: what to do to a model's layers.

Every config derives from :class:`Config` and declares three things: its
``scheme`` label, the module types it replaces (``targets()``) and what it needs
from calibration data (``statistics()``: a :class:`StatPlan`, or None).  The
handler registered for its type (:func:`lowbit.model.register_handler`) says how
one layer is replaced, so a user's own config is used exactly like the built-in
ones.

Two different choices never share a keyword: ``method`` is how a clipping range
is estimated (``"minmax"``, ``"mse"``, ... from :mod:`lowbit.calibration`, with
``method_options``), ``algorithm`` is how weights are rounded (``"rtn"``: round
to nearest; ``"hqq"``; ``"gptq"`` and ``"awq"``, which need calibration batches).
Weights are described by ``weight_qtype``/``weight_granularity`` and activations
by ``act_qtype``/``act_granularity`` (``WeightOnly`` has weights only and calls
them ``qtype``/``granularity``); granularities are objects or their strings.

Example:
    >>> from lowbit.model import WeightOnly, Dynamic, QAT, Static
    >>> WeightOnly("int4", "group:32").scheme
    'W4 int4 group:32'
    >>> Dynamic(act_granularity="token").scheme
    'W8A8 dynamic per-token'
    >>> QAT(Static(), step="convert").step
    'convert'
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from typing import Any

from lowbit._deprecation import warn_renamed
from lowbit.errors import GranularityError, OptionError
from lowbit.formats import get_qtype
from lowbit.granularity import Granularity, PerChannel, PerGroup, PerTensor, PerToken, as_granularity

__all__ = ["Config", "StatPlan", "WeightOnly", "Dynamic", "Static", "QAT", "ALGORITHMS", "DATA_ALGORITHMS"]

# Weight rounding algorithms and the options each takes (passed to its function in lowbit.algorithms).
ALGORITHM_OPTIONS: dict[str, tuple[str, ...]] = {
    "rtn": (),
    "hqq": ("iterations", "lp_norm", "beta", "kappa", "early_stop", "sink_weight"),
    "gptq": ("damp", "act_order", "block_size", "scale_search", "sink_weight"),
    "awq": ("grid", "clip", "max_shrink", "clip_steps", "max_rows", "sink_weight"),
    "autoround": ("steps", "lr", "min_clip", "checkpoints", "seed", "sink_weight", "max_rows", "init"),
}
# Options the calibration pass takes (not the algorithm's function), with their defaults.
COLLECT_OPTIONS: dict[str, dict[str, Any]] = {
    "hqq": {"sink_weight": 1.0},
    "gptq": {"sink_weight": 32.0},
    "awq": {"sink_weight": 1.0, "max_rows": 1024},
    "autoround": {"sink_weight": 1.0, "max_rows": 1024},
}
ALGORITHMS = tuple(ALGORITHM_OPTIONS)
DATA_ALGORITHMS = ("gptq", "awq", "autoround")
#: the algorithms that can store float zero points (``zero_point="float"``)
FLOAT_ZERO_ALGORITHMS = ("rtn", "hqq", "gptq", "autoround")
"""Algorithms that need calibration batches (``quantize_(model, config, batches=...)``)."""
_SMOOTH_ROWS = 512  # calibration rows per layer that score SmoothQuant's alpha (smoothquant="auto")


@dataclass(frozen=True)
class StatPlan:
    """What a data-driven config needs from calibration batches.

    Attributes:
        factory: ``factory(name, module)`` -> a fresh statistic with ``partial_fit(rows)``
            (rows of the layer's input, ``(n, in_features)``), like
            :class:`~lowbit.algorithms.HessianAccumulator` or :class:`~lowbit.algorithms.ActivationStatistics`.
        sequential: feed repeated blocks in order, each from the quantized blocks
            before it (GPTQ, AWQ) instead of all layers from one float pass.
        wants: ``wants(module)``: whether a chosen layer needs a statistic at all
            (others reach the handler first, with None).
        sink_weight: weight of the first position of each ``(batch, sequence, features)``
            input relative to the other rows (:func:`lowbit.model.quantize_` documents it).
        block: for block-wise algorithms (AutoRound), ``block(module, prefix, layers, inputs, targets)``
            run once per repeated block of the sequential pass, with the block's chosen
            ``(name, layer)`` pairs (names start with ``prefix``), its inputs as ``(args, kwargs)``
            in the quantized model and the float block's outputs; it returns each layer's statistic
            by name. Layers outside the blocks still get ``factory``'s statistic.
        optional: the config also runs without data; the statistics are collected only when
            ``quantize_`` is given batches (HQQ's activation-aware form).

    Example:
        >>> from lowbit.algorithms import ActivationStatistics
        >>> StatPlan(lambda name, m: ActivationStatistics(m.in_features)).sequential
        False
    """

    factory: Callable[[str, Any], Any]
    sequential: bool = False
    wants: Callable[[Any], bool] = lambda module: True
    sink_weight: float = 1.0
    block: Callable[..., dict[str, Any]] | None = None
    optional: bool = False


class Config(abc.ABC):
    """Base class of quantization configs (subclasses are frozen dataclasses).

    A subclass provides ``scheme`` (a short label), ``targets()`` (the module types
    it replaces) and, when it needs calibration data, ``statistics()``; a handler
    registered with :func:`lowbit.model.register_handler` replaces each layer.

    Example:
        >>> from lowbit.model import WeightOnly
        >>> isinstance(WeightOnly("int4"), Config), WeightOnly("int4").statistics() is None
        (True, True)
    """

    @property
    @abc.abstractmethod
    def scheme(self) -> str:
        """Short label shown in summaries."""

    @abc.abstractmethod
    def targets(self) -> tuple[type, ...]:
        """The module types this config replaces (``torch.nn.Linear``, ...)."""

    def statistics(self) -> StatPlan | None:
        """What the config needs from calibration batches (None: no data)."""
        return None


def _check_zero_point(cfg: Any, qt: Any) -> None:
    """Refuse a float zero point where the format or the algorithm (rtn, hqq, gptq, autoround) cannot keep it."""
    from lowbit.core import check_float_zero_point

    also = () if cfg.algorithm in FLOAT_ZERO_ALGORITHMS and cfg.method == "minmax" else (
        f"algorithm 'rtn', 'hqq', 'gptq' or 'autoround' with method='minmax' (got {cfg.algorithm!r}, "
        f"{cfg.method!r})",)
    check_float_zero_point(cfg.zero_point, qt, cfg.symmetric, cfg.scale_format or "float32", also=also)


def _float_layers(embeddings: bool) -> tuple[type, ...]:
    import torch.nn as tnn

    return (tnn.Linear, tnn.Conv2d, tnn.Embedding) if embeddings else (tnn.Linear, tnn.Conv2d)


def _is_linear(module: Any) -> bool:
    import torch.nn as tnn

    return isinstance(module, tnn.Linear)


def _check_method(method: Any, options: Any) -> None:
    """A range estimator name (or instance) and its options, validated now rather than at the first layer."""
    from lowbit.calibration.base import estimator_for

    estimator_for(method, options)


def _check_algorithm(algorithm: str, options: dict[str, Any]) -> None:
    if algorithm not in ALGORITHMS:
        raise OptionError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    unknown = sorted(set(options) - set(ALGORITHM_OPTIONS[algorithm]))
    if unknown:
        allowed = ", ".join(ALGORITHM_OPTIONS[algorithm]) or "none"
        raise OptionError(f"algorithm_options {unknown} are not options of {algorithm!r} (it takes: {allowed})")
    search = options.get("scale_search", "none")
    if search not in ("none", "mse", "hqq"):  # lowbit.algorithms.gptq.SCALE_SEARCHES, checked before any data
        raise OptionError(f"scale_search must be one of ('none', 'mse', 'hqq'), got {search!r}")
    weight = options.get("sink_weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < float("inf"):
        raise OptionError(f"sink_weight must be a finite number > 0 (1 = no extra weight), got {weight!r}")


def _check_weight_algorithm(cfg: WeightOnly) -> None:
    """HQQ, GPTQ and AWQ choose integer codes and scales themselves, per output channel or input group."""
    qt = get_qtype(cfg.qtype)
    gran = cfg.granularity
    problems = []
    if qt.kind != "int":
        problems.append(f"it rounds to integer formats, not {qt.name} ({qt.kind})")
    if not (isinstance(gran, PerChannel) and gran.axis == 0) and not (
        isinstance(gran, PerGroup) and gran.axis in (-1, 1)
    ):
        problems.append(f"it needs PerChannel(0) or PerGroup(size) granularity, not {gran!r}")
    if cfg.method != "minmax" or cfg.method_options:
        problems.append(f"it chooses its own ranges, so method must stay 'minmax' (got {cfg.method!r})")
    if problems:
        raise OptionError(f"algorithm={cfg.algorithm!r}: " + "; ".join(problems))


def _check_alpha(alpha: float | str | None) -> None:
    if alpha is None or alpha == "auto":
        return
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
        raise OptionError(
            f"smoothquant must be None, 'auto' or a migration strength alpha in [0, 1] (e.g. 0.5), got {alpha!r}"
        )


@dataclass(frozen=True)
class WeightOnly(Config):
    """Weights stored in ``qtype`` (packed), dequantized on the fly; activations stay float.

    Args:
        qtype: weight format, e.g. ``"int8"``, ``"int4"``, ``"uint4"``, ``"nf4"``.
        granularity: ``PerChannel(0)`` / ``"channel"`` (the default: one scale per output
            channel; for MX formats the default is their blocks of 32, ``PerGroup(32)``),
            ``PerTensor()`` / ``"tensor"``, or ``PerGroup(size)`` / ``"group:64"`` (groups
            along the input axis; a size that does not divide a Linear's inputs gives a
            shorter last group; a conv it does not divide keeps per-channel scales and an
            MX format keeps such a layer float, and the summary says so).
        method: range estimator for each weight (``"minmax"``, ``"mse"``, ... or an instance).
        symmetric: None for the format's default.
        method_options: options of that estimator (``{"percentile": 99.9}``).
        algorithm: weight rounding algorithm: ``"rtn"`` (round to nearest),
            ``"hqq"`` (half-quadratic, data-free; affine, Linear and Embedding
            layers), ``"gptq"`` (second-order error feedback from the layer's input
            Hessian), ``"awq"`` (activation-aware column scaling and clipping) or
            ``"autoround"`` (rounding offsets and clip factors learned by signed gradient
            descent on each transformer block's output, :func:`lowbit.algorithms.autoround_block`;
            options ``steps``, ``lr``, ``min_clip``, ``checkpoints``, ``seed``).
            GPTQ, AWQ and AutoRound need calibration batches (``quantize_(..., batches=...)``)
            and quantize Linear layers; the layers an algorithm does not take keep
            round to nearest, and the summary says so.
        embeddings: also quantize ``nn.Embedding`` tables.
        algorithm_options: options of the algorithm's function, e.g.
            ``{"act_order": True, "damp": 0.01}`` for GPTQ (:func:`lowbit.algorithms.gptq_quantize`),
            ``{"grid": 20, "max_rows": 1024}`` for AWQ (:func:`lowbit.algorithms.awq_quantize`).
            ``sink_weight`` (GPTQ default 32, AWQ default 1) is the weight of the first position
            of every calibration sequence relative to the other tokens (the attention sink of
            causal language models; see :func:`lowbit.model.quantize_`).
        scale_format: how the scales are stored (:func:`lowbit.formats.list_scale_formats`:
            ``"float16"``, ``"double8"``, ``"kquant6"`` ...); None for the format's default
            (float32, or e8m0 for MX). Weights GPTQ/AWQ/HQQ computed are re-stored with
            their scales in this format (codes recomputed for the stored scales).
        zero_point: ``"int"`` (default) or ``"float"``: a float zero point per block,
            ``w = code * scale + min`` (unsigned formats, round to nearest, float32 or
            float16 scales) as GGUF's Q4_1/Q5_1 store it; ``WeightOnly("uint4", "group:32",
            scale_format="float16", zero_point="float")`` is Q4_1's scheme. HQQ (its authors'
            form: a real zero point), GPTQ and AutoRound take it too.
        activations: ``"float"`` (default) or ``"int8"``: Linear layers with integer 4- or 8-bit
            weights quantize their input to int8 per block for at most 4 input rows (decoding):
            faster, an approximation (see :class:`lowbit.nn.WeightOnlyLinear`).

    Raises:
        QTypeError, GranularityError, OptionError: a bad format, granularity or option.

    Example:
        >>> WeightOnly("uint4", "group:64", algorithm="hqq").scheme
        'W4 uint4 group:64 hqq'
        >>> WeightOnly("uint4", "group:32", scale_format="float16", zero_point="float").scheme
        'W4 uint4 group:32 float16 scales float zero point'
    """

    qtype: str = "int8"
    granularity: Granularity | str | None = None
    method: Any = "minmax"
    symmetric: bool | None = None
    method_options: dict[str, Any] = field(default_factory=dict, hash=False)
    algorithm: str = "rtn"
    embeddings: bool = True
    algorithm_options: dict[str, Any] = field(default_factory=dict, hash=False)
    scale_format: str | None = None
    zero_point: str = "int"
    activations: str = "float"

    def __post_init__(self) -> None:
        from lowbit.formats import scale_format_for

        qt = get_qtype(self.qtype)
        _check_zero_point(self, qt)
        if self.activations not in ("float", "int8"):
            raise OptionError(f"WeightOnly: activations={self.activations!r} is not one of ['float', 'int8']")
        if self.activations == "int8" and (qt.is_grid or qt.bits not in (4, 8)):
            raise OptionError(f"WeightOnly: activations='int8' needs integer 4- or 8-bit weights (int4, uint4, "
                              f"int8, uint8), got {qt.name}; use activations='float'")
        default = PerGroup(qt.block_size) if qt.is_mx else PerChannel(0)
        gran = as_granularity(self.granularity, default, allowed=(PerTensor, PerChannel, PerGroup))
        object.__setattr__(self, "granularity", gran)
        scale_format_for(qt, self.scale_format)
        _check_method(self.method, self.method_options)
        _check_algorithm(self.algorithm, self.algorithm_options)
        if self.algorithm == "hqq" and (self.symmetric or self.method != "minmax"):
            raise OptionError(
                "algorithm='hqq' optimises an affine scale and zero point itself: leave symmetric=None and "
                f"method='minmax' (got symmetric={self.symmetric!r}, method={self.method!r})"
            )
        if self.algorithm != "rtn":
            _check_weight_algorithm(self)
        if self.algorithm == "autoround":
            from lowbit.algorithms.autoround import check_options

            check_options(**{k: v for k, v in self.algorithm_options.items() if k != "max_rows"})

    @property
    def scheme(self) -> str:
        """Short label, e.g. ``W4 int4 group:32``."""
        algorithm = "" if self.algorithm == "rtn" else f" {self.algorithm}"
        scales = "" if self.scale_format is None else f" {self.scale_format} scales"
        zp = " float zero point" if self.zero_point == "float" else ""
        acts = " int8 activations" if self.activations == "int8" else ""
        return f"W{get_qtype(self.qtype).bits} {self.qtype} {self.granularity}{algorithm}{scales}{zp}{acts}"

    def targets(self) -> tuple[type, ...]:
        """Linear and Conv2d layers, and Embedding tables unless ``embeddings=False``."""
        return _float_layers(self.embeddings)

    def collect_options(self) -> dict[str, Any]:
        """The calibration options of a data-driven algorithm: its defaults, updated by ``algorithm_options``."""
        defaults = COLLECT_OPTIONS.get(self.algorithm, {})
        return {k: self.algorithm_options.get(k, v) for k, v in defaults.items()}

    def statistics(self) -> StatPlan | None:
        """GPTQ needs each Linear's input Hessian, AWQ its channel means and a sample of rows; HQQ takes
        each Linear's mean ``x_j^2`` when batches are given (activation-aware), and runs without them."""
        from lowbit.algorithms import ActivationStatistics, HessianAccumulator

        opts = self.collect_options()
        if self.algorithm == "hqq":
            return StatPlan(lambda name, m: ActivationStatistics(m.in_features, max_rows=0), sequential=True,
                            wants=_is_linear, sink_weight=float(opts["sink_weight"]), optional=True)
        if self.algorithm == "gptq":
            return StatPlan(lambda name, m: HessianAccumulator(m.in_features), sequential=True, wants=_is_linear,
                            sink_weight=float(opts["sink_weight"]))
        if self.algorithm == "autoround":
            from lowbit.algorithms.autoround import RoundingScheme, block_step

            rows = int(opts["max_rows"])
            scheme = RoundingScheme(self.qtype, self.granularity, self.symmetric, self.scale_format, self.zero_point)
            options = {k: v for k, v in self.algorithm_options.items() if k not in opts}
            return StatPlan(lambda name, m: ActivationStatistics(m.in_features, max_rows=rows), sequential=True,
                            wants=_is_linear, sink_weight=float(opts["sink_weight"]),
                            block=block_step(scheme, float(opts["sink_weight"]), options))
        if self.algorithm == "awq":
            rows = int(opts["max_rows"])
            return StatPlan(lambda name, m: ActivationStatistics(m.in_features, max_rows=rows), sequential=True,
                            wants=_is_linear, sink_weight=float(opts["sink_weight"]))
        return None


def _smooth_label(alpha: float | str | None) -> str:
    return "" if alpha is None else f" +SmoothQuant({alpha if isinstance(alpha, str) else f'{alpha:g}'})"


def _check_int8(weight_qtype: str, act_qtype: str, weight_granularity: Any) -> Granularity:
    """The W8A8 layers multiply int8 codes: both formats int8, weights per output channel or per tensor."""
    for what, name in (("weight_qtype", weight_qtype), ("act_qtype", act_qtype)):
        if get_qtype(name).name != "int8":
            raise OptionError(
                f"W8A8 layers multiply int8 by int8 codes; {what}={name!r} is not int8 — "
                "use WeightOnly for other weight formats"
            )
    gran = as_granularity(weight_granularity, PerChannel(0), allowed=(PerTensor, PerChannel),
                          what="weight_granularity")
    if isinstance(gran, PerChannel) and gran.axis != 0:
        raise GranularityError(f"weight_granularity must be PerChannel(0) or PerTensor(), got {gran!r}")
    return gran


def _smooth_plan(alpha: float | str | None) -> StatPlan | None:
    """SmoothQuant needs the per-channel max |x| of every Linear's input (one float pass), and for
    ``"auto"`` a sample of rows to score each alpha on."""
    from lowbit.algorithms import ActivationStatistics

    if alpha is None:
        return None
    rows = _SMOOTH_ROWS if alpha == "auto" else 0
    return StatPlan(lambda name, m: ActivationStatistics(m.in_features, max_rows=rows), wants=_is_linear)


@dataclass(frozen=True)
class Dynamic(Config):
    """int8 weights and int8 activations quantized at every call from their absmax; integer matmul.

    Args:
        weight_qtype: weight format; ``"int8"`` (symmetric, -127..127) is the one integer matmul takes.
        act_granularity: ``PerTensor()`` / ``"tensor"`` (one activation scale per call) or
            ``PerToken()`` / ``"token"`` (one per row).
        weight_granularity: ``PerChannel(0)`` / ``"channel"`` (one scale per output channel)
            or ``PerTensor()`` / ``"tensor"``.
        smoothquant: None, ``"auto"``, or SmoothQuant's migration strength ``alpha`` in [0, 1]:
            each Linear's input channels are divided by ``max|x_j|^alpha / max|W_j|^(1-alpha)``
            (from calibration batches, ``quantize_(..., batches=...)``) and its weight
            columns multiplied by the same factors before int8 quantization. ``"auto"``
            chooses per layer between no smoothing and ``alpha`` = 0, 0.1, ..., 1 by the
            layer's W8A8 output error on 512 sampled calibration rows, cross-validated
            (:func:`lowbit.algorithms.search_smoothing`); the summary names each choice.
        act_qtype: activation format (``"int8"``).
        weights, activations: deprecated spellings of ``weight_qtype`` and ``act_granularity``.

    Example:
        >>> Dynamic(act_granularity="token", smoothquant=0.5).scheme
        'W8A8 dynamic per-token +SmoothQuant(0.5)'
    """

    weight_qtype: str = "int8"
    act_granularity: Granularity | str = field(default_factory=PerTensor)
    weight_granularity: Granularity | str = field(default_factory=lambda: PerChannel(0))
    smoothquant: float | str | None = None
    act_qtype: str = "int8"
    weights: InitVar[Any] = None
    activations: InitVar[Any] = None

    def __post_init__(self, weights: Any, activations: Any) -> None:
        if weights is not None:
            warn_renamed("Dynamic(weights=...)", "Dynamic(weight_qtype=...)")
            object.__setattr__(self, "weight_qtype", weights)
        if activations is not None:
            warn_renamed("Dynamic(activations=...)", "Dynamic(act_granularity=...)")
            object.__setattr__(self, "act_granularity", activations)
        act = as_granularity(self.act_granularity, PerTensor(), allowed=(PerTensor, PerToken), what="act_granularity")
        object.__setattr__(self, "act_granularity", act)
        object.__setattr__(self, "weight_granularity", _check_int8(self.weight_qtype, self.act_qtype,
                                                                    self.weight_granularity))
        _check_alpha(self.smoothquant)

    @property
    def scheme(self) -> str:
        """Short label."""
        return f"W8A8 dynamic per-{self.act_granularity}{_smooth_label(self.smoothquant)}"

    def targets(self) -> tuple[type, ...]:
        """Linear and Conv2d layers."""
        return _float_layers(False)

    def statistics(self) -> StatPlan | None:
        """SmoothQuant's activation maxima (and sampled rows for ``"auto"``), else None."""
        return _smooth_plan(self.smoothquant)


@dataclass(frozen=True)
class Static(Config):
    """int8 weights and int8 activations with ranges from calibration; integer matmul.

    ``quantize_(model, Static(...))`` inserts observers; ``calibrate(model, batches)``
    feeds them; ``convert(model)`` swaps in the integer modules.

    Args:
        weight_qtype: weight format (``"int8"``).
        act_qtype: activation format (``"int8"``, symmetric).
        method: range estimator for the activations (``"minmax"``, ``"percentile"``,
            ``"mse"``, ``"entropy"``, ``"aciq"``, ``"moving_average"``).
        method_options: its options (``{"percentile": 99.99}``).
        weight_granularity: ``PerChannel(0)`` / ``"channel"`` (one scale per output channel)
            or ``PerTensor()`` / ``"tensor"``.
        smoothquant: None, ``"auto"`` or SmoothQuant's ``alpha`` (see :class:`Dynamic`); the
            factors come from the batches given to ``quantize_`` and the observers
            then see the smoothed inputs.
        act_granularity: ``PerTensor()`` / ``"tensor"``: a static range is one per tensor.
        weights, activations, observer, observer_options: deprecated spellings of
            ``weight_qtype``, ``act_qtype``, ``method`` and ``method_options``.

    Example:
        >>> Static(method="percentile", method_options={"percentile": 99.9}).scheme
        'W8A8 static percentile'
    """

    weight_qtype: str = "int8"
    act_qtype: str = "int8"
    method: Any = "minmax"
    method_options: dict[str, Any] = field(default_factory=dict, hash=False)
    weight_granularity: Granularity | str = field(default_factory=lambda: PerChannel(0))
    smoothquant: float | str | None = None
    act_granularity: Granularity | str = field(default_factory=PerTensor)
    weights: InitVar[Any] = None
    activations: InitVar[Any] = None
    observer: InitVar[Any] = None
    observer_options: InitVar[Any] = None

    def __post_init__(self, weights: Any, activations: Any, observer: Any, observer_options: Any) -> None:
        for old, new, value in (("weights", "weight_qtype", weights), ("activations", "act_qtype", activations),
                                ("observer", "method", observer), ("observer_options", "method_options",
                                                                   observer_options)):
            if value is not None:
                warn_renamed(f"Static({old}=...)", f"Static({new}=...)")
                object.__setattr__(self, new, value)
        act = as_granularity(self.act_granularity, PerTensor(), allowed=(PerTensor,), what="act_granularity")
        object.__setattr__(self, "act_granularity", act)
        object.__setattr__(self, "weight_granularity", _check_int8(self.weight_qtype, self.act_qtype,
                                                                    self.weight_granularity))
        _check_alpha(self.smoothquant)
        _check_method(self.method, self.method_options)

    @property
    def scheme(self) -> str:
        """Short label."""
        method = getattr(self.method, "name", self.method)
        return f"W8A8 static {method}{_smooth_label(self.smoothquant)}"

    def targets(self) -> tuple[type, ...]:
        """Linear and Conv2d layers (observed until ``convert``)."""
        return _float_layers(False)

    def statistics(self) -> StatPlan | None:
        """SmoothQuant's activation maxima (and sampled rows for ``"auto"``), else None."""
        return _smooth_plan(self.smoothquant)


@dataclass(frozen=True)
class QAT(Config):
    """Quantization-aware training of a base config (LSQ learned scales, straight-through rounding).

    ``step="prepare"`` swaps in fake-quantized trainable modules; train the model;
    ``step="convert"`` turns them into the base config's real quantized modules.
    The base is a WeightOnly config (weights fake-quantized) or a Static one
    (weights and input activations fake-quantized in int8).

    Example:
        >>> QAT(WeightOnly("int2")).scheme
        'QAT W2 int2 channel'
    """

    base: WeightOnly | Static = field(default_factory=lambda: WeightOnly("int4"))
    step: str = "prepare"

    def __post_init__(self) -> None:
        if self.step not in ("prepare", "convert"):
            raise OptionError(f"QAT step must be 'prepare' or 'convert', got {self.step!r}")
        if not isinstance(self.base, (WeightOnly, Static)):
            raise OptionError(f"QAT base must be WeightOnly or Static, got {type(self.base).__name__}")

    @property
    def scheme(self) -> str:
        """Short label."""
        return f"QAT {self.base.scheme}"

    def targets(self) -> tuple[type, ...]:
        """Float Linear/Conv2d layers to prepare, or the QAT layers to convert."""
        if self.step == "prepare":
            return _float_layers(False)
        from lowbit.nn import QATConv2d, QATLinear

        return (QATLinear, QATConv2d)
