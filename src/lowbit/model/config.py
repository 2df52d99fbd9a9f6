"""Quantization configs: frozen dataclasses, one per scheme family.

A config says *what* to do; the handler registered for its type (see
:mod:`lowbit.model.handlers`) says *how*.  Two different choices never share
a keyword: ``method`` is how a clipping range is estimated (``"minmax"``,
``"mse"``, ... from :mod:`lowbit.calibration`), ``algorithm`` is how weights
are rounded (``"rtn"``: round to nearest).

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

__all__ = ["WeightOnly", "Dynamic", "Static", "QAT", "Config", "ALGORITHMS"]

ALGORITHMS = ("rtn", "hqq")
ACT_GRANULARITIES = ("tensor", "token")


def _check_algorithm(algorithm: str) -> None:
    if algorithm not in ALGORITHMS:
        raise OptionError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")


@dataclass(frozen=True)
class WeightOnly:
    """Weights stored in ``qtype`` (packed), dequantized on the fly; activations stay float.

    Args:
        qtype: weight format, e.g. ``"int8"``, ``"int4"``, ``"uint4"``.
        granularity: ``PerChannel(0)`` (default: one scale per output channel),
            ``PerTensor()``, or ``PerGroup(size)`` (groups along the input axis; a
            layer the size does not divide keeps per-channel scales, and the
            summary says so).
        method: range estimator for each weight (``"minmax"``, ``"mse"``, ...).
        symmetric: None for the format's default.
        method_options: options of that estimator.
        algorithm: weight rounding algorithm: ``"rtn"`` (round to nearest) or
            ``"hqq"`` (half-quadratic, data-free; affine, Linear and Embedding
            layers; convolutions keep round to nearest and the summary says so).
        embeddings: also quantize ``nn.Embedding`` tables.
    """

    qtype: str = "int8"
    granularity: Granularity = field(default_factory=lambda: PerChannel(0))
    method: str = "minmax"
    symmetric: bool | None = None
    method_options: dict[str, Any] = field(default_factory=dict, hash=False)
    algorithm: str = "rtn"
    embeddings: bool = True

    def __post_init__(self) -> None:
        get_qtype(self.qtype)
        _check_algorithm(self.algorithm)
        if self.algorithm == "hqq" and (self.symmetric or self.method != "minmax"):
            raise OptionError(
                "algorithm='hqq' optimises an affine scale and zero point itself: leave symmetric=None and "
                f"method='minmax' (got symmetric={self.symmetric!r}, method={self.method!r})"
            )
        if not isinstance(self.granularity, (PerTensor, PerChannel, PerGroup)):
            raise OptionError(
                f"granularity must be PerTensor(), PerChannel(0) or PerGroup(size), got {self.granularity!r}"
            )

    @property
    def scheme(self) -> str:
        """Short label, e.g. ``W4 int4 group:32``."""
        algorithm = "" if self.algorithm == "rtn" else f" {self.algorithm}"
        return f"W{get_qtype(self.qtype).bits} {self.qtype} {self.granularity}{algorithm}"


def _check_int8_weights(weights: str, weight_granularity: Granularity) -> None:
    if get_qtype(weights).name != "int8":
        raise OptionError(
            f"W8A8 layers multiply int8 by int8 (torch._int_mm); weights={weights!r} is not int8 — "
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
    """

    weights: str = "int8"
    activations: str = "tensor"
    weight_granularity: Granularity = field(default_factory=lambda: PerChannel(0))

    def __post_init__(self) -> None:
        if self.activations not in ACT_GRANULARITIES:
            raise OptionError(f"activations must be one of {ACT_GRANULARITIES}, got {self.activations!r}")
        _check_int8_weights(self.weights, self.weight_granularity)

    @property
    def scheme(self) -> str:
        """Short label."""
        return f"W8A8 dynamic per-{self.activations}"


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
    """

    weights: str = "int8"
    activations: str = "int8"
    observer: str = "minmax"
    observer_options: dict[str, Any] = field(default_factory=dict, hash=False)
    weight_granularity: Granularity = field(default_factory=lambda: PerChannel(0))

    def __post_init__(self) -> None:
        _check_int8_weights(self.weights, self.weight_granularity)
        if get_qtype(self.activations).name != "int8":
            raise OptionError(f"activations={self.activations!r}: static W8A8 quantizes activations to int8")
        from lowbit.calibration import ESTIMATORS

        if self.observer not in ESTIMATORS:
            raise OptionError(f"unknown observer {self.observer!r}; registered: {', '.join(ESTIMATORS)}")

    @property
    def scheme(self) -> str:
        """Short label."""
        return f"W8A8 static {self.observer}"


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
