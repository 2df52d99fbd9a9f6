"""Quantization configs: frozen dataclasses, one per scheme family.

A config says *what* to do; the handler registered for its type (see
:func:`lowbit.model.register_handler`) says *how*.  Two different choices never
share a keyword: ``method`` is how a clipping range is estimated (``"minmax"``,
``"mse"``, ... from :mod:`lowbit.calibration`), ``algorithm`` is how weights
are rounded (``"rtn"``: round to nearest; ``"hqq"``; ``"gptq"`` and ``"awq"``,
which need calibration batches).

Example:
    >>> from lowbit.model import WeightOnly, Static, QAT
    >>> from lowbit import PerGroup, PerTensor
    >>> WeightOnly("int4", PerGroup(32)).scheme
    'W4 int4 group:32'
    >>> WeightOnly("int8", PerTensor()).scheme
    'W8 int8 tensor'
    >>> QAT(Static(), step="convert").step
    'convert'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lowbit.errors import OptionError
from lowbit.formats import get_qtype
from lowbit.granularity import Granularity, PerChannel, PerGroup, PerTensor

__all__ = ["WeightOnly", "Dynamic", "Static", "QAT", "Config", "ALGORITHMS", "DATA_ALGORITHMS"]

# Weight rounding algorithms and the options each takes (passed to its function in lowbit.algorithms).
ALGORITHM_OPTIONS: dict[str, tuple[str, ...]] = {
    "rtn": (),
    "hqq": ("iterations", "lp_norm", "beta", "kappa", "early_stop"),
    "gptq": ("damp", "act_order", "block_size", "sink_weight"),
    "awq": ("grid", "clip", "max_shrink", "clip_steps", "max_rows", "sink_weight"),
}
# Options the calibration pass takes (not the algorithm's function), with their defaults.
COLLECT_OPTIONS: dict[str, dict[str, Any]] = {
    "gptq": {"sink_weight": 32.0},
    "awq": {"sink_weight": 1.0, "max_rows": 1024},
}
ALGORITHMS = tuple(ALGORITHM_OPTIONS)
DATA_ALGORITHMS = ("gptq", "awq")
"""Algorithms that need calibration batches (``quantize_(model, config, batches=...)``)."""
ACT_GRANULARITIES = ("tensor", "token")


def _check_algorithm(algorithm: str, options: dict[str, Any]) -> None:
    if algorithm not in ALGORITHMS:
        raise OptionError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    unknown = sorted(set(options) - set(ALGORITHM_OPTIONS[algorithm]))
    if unknown:
        allowed = ", ".join(ALGORITHM_OPTIONS[algorithm]) or "none"
        raise OptionError(f"algorithm_options {unknown} are not options of {algorithm!r} (it takes: {allowed})")
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
class WeightOnly:
    """Weights stored in ``qtype`` (packed), dequantized on the fly; activations stay float.

    Args:
        qtype: weight format, e.g. ``"int8"``, ``"int4"``, ``"uint4"``.
        granularity: ``PerChannel(0)`` (the default: one scale per output channel;
            for MX formats the default is their blocks of 32, ``PerGroup(32)``),
            ``PerTensor()``, or ``PerGroup(size)`` (groups along the input axis; a
            layer the size does not divide keeps per-channel scales, or stays float
            for MX formats, and the summary says so).
        method: range estimator for each weight (``"minmax"``, ``"mse"``, ...).
        symmetric: None for the format's default.
        method_options: options of that estimator.
        algorithm: weight rounding algorithm: ``"rtn"`` (round to nearest),
            ``"hqq"`` (half-quadratic, data-free; affine, Linear and Embedding
            layers), ``"gptq"`` (second-order error feedback from the layer's input
            Hessian) or ``"awq"`` (activation-aware column scaling and clipping).
            GPTQ and AWQ need calibration batches (``quantize_(..., batches=...)``)
            and quantize Linear layers; the layers an algorithm does not take keep
            round to nearest, and the summary says so.
        embeddings: also quantize ``nn.Embedding`` tables.
        algorithm_options: options of the algorithm's function, e.g.
            ``{"act_order": True, "damp": 0.01}`` for GPTQ (:func:`lowbit.algorithms.gptq_quantize`),
            ``{"grid": 20, "max_rows": 1024}`` for AWQ (:func:`lowbit.algorithms.awq_quantize`).
            ``sink_weight`` (GPTQ default 32, AWQ default 1) is the weight of the first position
            of every calibration sequence relative to the other tokens (the attention sink of
            causal language models; see :mod:`lowbit.model.collect`).
        scale_format: how the scales are stored (:func:`lowbit.formats.list_scale_formats`:
            ``"float16"``, ``"double8"``, ``"kquant6"`` ...); None for the format's default
            (float32, or e8m0 for MX). Weights GPTQ/AWQ/HQQ computed are re-stored with
            their scales in this format (codes recomputed for the stored scales).
    """

    qtype: str = "int8"
    granularity: Granularity = None  # type: ignore[assignment]  # set in __post_init__
    method: str = "minmax"
    symmetric: bool | None = None
    method_options: dict[str, Any] = field(default_factory=dict, hash=False)
    algorithm: str = "rtn"
    embeddings: bool = True
    algorithm_options: dict[str, Any] = field(default_factory=dict, hash=False)
    scale_format: str | None = None

    def __post_init__(self) -> None:
        from lowbit.formats import scale_format_for

        qt = get_qtype(self.qtype)
        if self.granularity is None:  # the format's default: MX blocks, else one scale per output channel
            object.__setattr__(self, "granularity", PerGroup(qt.block_size) if qt.is_mx else PerChannel(0))
        scale_format_for(qt, self.scale_format)
        _check_algorithm(self.algorithm, self.algorithm_options)
        if self.algorithm == "hqq" and (self.symmetric or self.method != "minmax"):
            raise OptionError(
                "algorithm='hqq' optimises an affine scale and zero point itself: leave symmetric=None and "
                f"method='minmax' (got symmetric={self.symmetric!r}, method={self.method!r})"
            )
        if self.algorithm != "rtn":
            _check_weight_algorithm(self)
        if not isinstance(self.granularity, (PerTensor, PerChannel, PerGroup)):
            raise OptionError(
                f"granularity must be PerTensor(), PerChannel(0) or PerGroup(size), got {self.granularity!r}"
            )

    @property
    def scheme(self) -> str:
        """Short label, e.g. ``W4 int4 group:32``."""
        algorithm = "" if self.algorithm == "rtn" else f" {self.algorithm}"
        scales = "" if self.scale_format is None else f" {self.scale_format} scales"
        return f"W{get_qtype(self.qtype).bits} {self.qtype} {self.granularity}{algorithm}{scales}"


def _smooth_label(alpha: float | str | None) -> str:
    return "" if alpha is None else f" +SmoothQuant({alpha if isinstance(alpha, str) else f'{alpha:g}'})"


def _check_int8_weights(weights: str, weight_granularity: Granularity) -> None:
    if get_qtype(weights).name != "int8":
        raise OptionError(
            f"W8A8 layers multiply int8 by int8 codes; weights={weights!r} is not int8 — "
            "use WeightOnly for other weight formats"
        )
    if not isinstance(weight_granularity, (PerTensor, PerChannel)) or (
        isinstance(weight_granularity, PerChannel) and weight_granularity.axis != 0
    ):
        raise OptionError(f"weight_granularity must be PerChannel(0) or PerTensor(), got {weight_granularity!r}")


@dataclass(frozen=True)
class Dynamic:
    """int8 weights and int8 activations quantized at every call from their absmax; integer matmul.

    Args:
        weights: weight format; ``"int8"`` (symmetric, -127..127) is the one integer matmul takes.
        activations: ``"tensor"`` (one activation scale per call) or ``"token"`` (one per row).
        weight_granularity: ``PerChannel(0)`` (one scale per output channel) or ``PerTensor()``.
        smoothquant: None, ``"auto"``, or SmoothQuant's migration strength ``alpha`` in [0, 1]:
            each Linear's input channels are divided by ``max|x_j|^alpha / max|W_j|^(1-alpha)``
            (from calibration batches, ``quantize_(..., batches=...)``) and its weight
            columns multiplied by the same factors before int8 quantization. ``"auto"``
            chooses per layer between no smoothing and ``alpha`` = 0, 0.1, ..., 1 by the
            layer's W8A8 output error on 512 sampled calibration rows, cross-validated
            (:func:`lowbit.algorithms.search_smoothing`); the summary names each choice.
    """

    weights: str = "int8"
    activations: str = "tensor"
    weight_granularity: Granularity = field(default_factory=lambda: PerChannel(0))
    smoothquant: float | str | None = None

    def __post_init__(self) -> None:
        if self.activations not in ACT_GRANULARITIES:
            raise OptionError(f"activations must be one of {ACT_GRANULARITIES}, got {self.activations!r}")
        _check_int8_weights(self.weights, self.weight_granularity)
        _check_alpha(self.smoothquant)

    @property
    def scheme(self) -> str:
        """Short label."""
        return f"W8A8 dynamic per-{self.activations}{_smooth_label(self.smoothquant)}"


@dataclass(frozen=True)
class Static:
    """int8 weights and int8 activations with ranges from calibration; integer matmul.

    ``quantize_(model, Static(...))`` inserts observers; ``calibrate(model, batches)``
    feeds them; ``convert(model)`` swaps in the integer modules.

    Args:
        weights: weight format (``"int8"``).
        activations: activation format (``"int8"``, symmetric, one scale per tensor).
        observer: range estimator for the activations (``"minmax"``, ``"percentile"``,
            ``"mse"``, ``"entropy"``, ``"aciq"``, ``"moving_average"``).
        observer_options: its options.
        weight_granularity: ``PerChannel(0)`` (one scale per output channel) or ``PerTensor()``.
        smoothquant: None, ``"auto"`` or SmoothQuant's ``alpha`` (see :class:`Dynamic`); the
            factors come from the batches given to ``quantize_`` and the observers
            then see the smoothed inputs.
    """

    weights: str = "int8"
    activations: str = "int8"
    observer: str = "minmax"
    observer_options: dict[str, Any] = field(default_factory=dict, hash=False)
    weight_granularity: Granularity = field(default_factory=lambda: PerChannel(0))
    smoothquant: float | str | None = None

    def __post_init__(self) -> None:
        _check_int8_weights(self.weights, self.weight_granularity)
        _check_alpha(self.smoothquant)
        if get_qtype(self.activations).name != "int8":
            raise OptionError(f"activations={self.activations!r}: static W8A8 quantizes activations to int8")
        from lowbit.calibration import ESTIMATORS

        if self.observer not in ESTIMATORS:
            raise OptionError(f"unknown observer {self.observer!r}; registered: {', '.join(ESTIMATORS)}")

    @property
    def scheme(self) -> str:
        """Short label."""
        return f"W8A8 static {self.observer}{_smooth_label(self.smoothquant)}"


@dataclass(frozen=True)
class QAT:
    """Quantization-aware training of a base config (LSQ learned scales, straight-through rounding).

    ``step="prepare"`` swaps in fake-quantized trainable modules; train the model;
    ``step="convert"`` turns them into the base config's real quantized modules.
    The base is a WeightOnly config (weights fake-quantized) or a Static one
    (weights and input activations fake-quantized in int8).
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


Config = WeightOnly | Dynamic | Static | QAT
