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

ALGORITHMS = ("rtn",)
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
        algorithm: weight rounding algorithm (``"rtn"``).
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
        if not isinstance(self.granularity, (PerTensor, PerChannel, PerGroup)):
            raise OptionError(
                f"granularity must be PerTensor(), PerChannel(0) or PerGroup(size), got {self.granularity!r}"
            )

    @property
    def scheme(self) -> str:
        """Short label, e.g. ``W4 int4 group:32``."""
        return f"W{get_qtype(self.qtype).bits} {self.qtype} {self.granularity}"


@dataclass(frozen=True)
class Dynamic:
    """int8 weights (per output channel) and int8 activations quantized per call; integer matmul.

    Args:
        act_granularity: ``"tensor"`` (one activation scale per call) or ``"token"`` (one per row).
        weight_per_tensor: one weight scale instead of one per output channel.
    """

    act_granularity: str = "tensor"
    weight_per_tensor: bool = False

    def __post_init__(self) -> None:
        if self.act_granularity not in ACT_GRANULARITIES:
            raise OptionError(f"act_granularity must be one of {ACT_GRANULARITIES}, got {self.act_granularity!r}")

    @property
    def scheme(self) -> str:
        """Short label."""
        return f"W8A8 dynamic per-{self.act_granularity}"


@dataclass(frozen=True)
class Static:
    """int8 weights and int8 activations with ranges from calibration; integer matmul.

    ``quantize_(model, Static(...))`` inserts observers; ``calibrate(model, batches)``
    feeds them; ``convert(model)`` swaps in the integer modules.

    Args:
        observer: range estimator for the activations (``"minmax"``, ``"percentile"``,
            ``"mse"``, ``"entropy"``, ``"aciq"``, ``"moving_average"``).
        observer_options: its options.
        weight_per_tensor: one weight scale instead of one per output channel.
    """

    observer: str = "minmax"
    observer_options: dict[str, Any] = field(default_factory=dict, hash=False)
    weight_per_tensor: bool = False

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
