"""A mixed-precision plan: which candidate each layer takes, why, and its JSON file.

A :class:`Plan` is a read-only mapping from layer names (as glob patterns that match only
that name) to :class:`lowbit.model.WeightOnly` configs, or None for a layer kept float, so
``lowbit.model.quantize_(model, plan)`` applies it as it applies any plan; ``quantize_`` also
takes the path of a saved plan.  The plan also records the budget, each layer's measured
sensitivity per candidate, the predicted error and the bits per weight it reaches.

File format (JSON, ``"format": "lowbit-plan"``, ``"version": 1``): ``layers`` maps each
layer name to ``{"candidate", "scheme", "bytes", "weights", "error"}`` where ``candidate`` is
the spelling :func:`lowbit.plan.parse_candidate` reads and ``scheme`` its fields (qtype,
granularity, symmetric, scale_format, algorithm; null for float); ``sensitivity`` maps each
layer to ``{candidate: {"bytes", "error", "measured"}}``; the rest are scalars.

Example:
    >>> import tempfile, pathlib
    >>> plan = Plan({"fc": LayerChoice("int4:g32", 80, 256, 0.5)}, candidates=["int8", "int4:g32"],
    ...             budget_bits=3.0, budget_bytes=None, metric="mse", sensitivity={})
    >>> plan.bits_per_weight, dict(plan)["fc"].scheme
    (2.5, 'W4 int4 group:32')
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "plan.json"
    >>> plan.save(path)
    >>> load_plan(path) == plan
    True
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lowbit.errors import FileFormatError, LowbitError
from lowbit.plan.candidates import parse_candidate

__all__ = ["Plan", "LayerChoice", "load_plan", "PLAN_FORMAT", "PLAN_VERSION"]

PLAN_FORMAT = "lowbit-plan"
PLAN_VERSION = 1
_MAX_FILE_BYTES = 64 << 20  # a plan of ten thousand layers is a few MB


@dataclass(frozen=True)
class LayerChoice:
    """The candidate one layer takes: its spelling, stored weight bytes, weight count and predicted error."""

    candidate: str
    bytes: int
    weights: int
    error: float


def _escape(name: str) -> str:
    """A glob pattern matching exactly ``name`` (``*``, ``?`` and ``[`` made literal)."""
    return "".join(f"[{ch}]" if ch in "*?[" else ch for ch in name)


def scheme_fields(config: Any) -> dict[str, Any] | None:
    """The fields a tensor-level quantizer needs from a WeightOnly config (None: keep float).

    Example:
        >>> from lowbit.model import WeightOnly
        >>> scheme_fields(WeightOnly("int4", "group:64"))["granularity"]
        'group:64'
    """
    if config is None:
        return None
    return {"qtype": str(config.qtype), "granularity": str(config.granularity), "symmetric": config.symmetric,
            "scale_format": config.scale_format, "algorithm": config.algorithm, "zero_point": config.zero_point}


@dataclass(frozen=True, eq=False)
class Plan(Mapping):
    """One candidate per layer, chosen under a budget; a mapping of layer patterns to configs.

    Attributes:
        layers: layer name -> :class:`LayerChoice`, in model order.
        candidates: the candidate spellings the planner chose from.
        budget_bits: the bits-per-weight budget, or None. budget_bytes: the byte budget, or None.
        metric: how a layer's error was measured (``"kl"``, ``"cosine"``, ``"mse"``).
        sensitivity: layer -> candidate -> ``{"bytes", "error", "measured"}`` (``measured`` is
            False where the error was predicted from the layer's output error; see
            :mod:`lowbit.plan.sensitivity`).
        version: the lowbit version that made the plan.
    """

    layers: dict[str, LayerChoice]
    candidates: list[str]
    budget_bits: float | None
    budget_bytes: int | None
    metric: str
    sensitivity: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    version: str = ""

    def __post_init__(self) -> None:
        if not self.version:
            from lowbit import __version__

            object.__setattr__(self, "version", __version__)
        configs = {name: parse_candidate(choice.candidate).config for name, choice in self.layers.items()}
        object.__setattr__(self, "_configs", configs)
        object.__setattr__(self, "_by_pattern", {_escape(name): cfg for name, cfg in configs.items()})

    # --- the mapping quantize_ reads
    def __getitem__(self, pattern: str) -> Any:
        return self._by_pattern[pattern]  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator[str]:
        return (_escape(name) for name in self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plan) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    # --- totals
    @property
    def total_bytes(self) -> int:
        """Stored bytes of the planned layers' weights (codes, scales and zero points; biases not counted)."""
        return sum(c.bytes for c in self.layers.values())

    @property
    def total_weights(self) -> int:
        """Number of weights in the planned layers."""
        return sum(c.weights for c in self.layers.values())

    @property
    def bits_per_weight(self) -> float:
        """``8 * total_bytes / total_weights``: the average over the planned layers' weights."""
        return 8 * self.total_bytes / self.total_weights if self.total_weights else 0.0

    @property
    def predicted_error(self) -> float:
        """Sum of the chosen candidates' per-layer errors."""
        return sum(c.error for c in self.layers.values())

    def config_for(self, layer: str) -> Any:
        """The WeightOnly config of a planned layer (None when the plan keeps it float).

        Raises:
            KeyError: the plan does not cover ``layer``.
        """
        return self._configs[layer]  # type: ignore[attr-defined]

    def scheme_for(self, tensor: str) -> dict[str, Any] | None:
        """The scheme fields for a checkpoint tensor name, or None to keep it float.

        ``"model.layers.0.mlp.up_proj.weight"`` gets the fields (qtype, granularity,
        symmetric, scale_format, algorithm) of layer ``model.layers.0.mlp.up_proj``; biases,
        tensors of layers the plan does not cover and layers it keeps float get None.

        Example:
            >>> plan = Plan({"fc": LayerChoice("int4:g32", 80, 256, 0.5)}, ["int4:g32"], 4.0, None, "mse")
            >>> plan.scheme_for("fc.weight")["qtype"], plan.scheme_for("fc.bias")
            ('int4', None)
        """
        layer, _, leaf = tensor.rpartition(".")
        if leaf != "weight" or layer not in self.layers:
            return None
        return scheme_fields(self.config_for(layer))

    # --- files
    def to_dict(self) -> dict[str, Any]:
        """The JSON document :meth:`save` writes."""
        return {
            "format": PLAN_FORMAT, "version": PLAN_VERSION, "lowbit_version": self.version,
            "budget": {"bits_per_weight": self.budget_bits, "bytes": self.budget_bytes},
            "metric": self.metric, "candidates": list(self.candidates),
            "bits_per_weight": self.bits_per_weight, "bytes": self.total_bytes, "weights": self.total_weights,
            "predicted_error": self.predicted_error,
            "layers": {n: {"candidate": c.candidate, "scheme": scheme_fields(self.config_for(n)), "bytes": c.bytes,
                           "weights": c.weights, "error": c.error} for n, c in self.layers.items()},
            "sensitivity": self.sensitivity,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the plan as JSON, atomically (the file is the old one or the complete new one).

        Raises:
            FileFormatError: the folder does not exist or cannot be written.
        """
        from lowbit.io._atomic import atomic_file

        target = Path(path)
        if not target.parent.is_dir():
            raise FileFormatError(f"cannot write plan {target}: folder {target.parent} does not exist")
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"
        try:
            with atomic_file(target) as tmp:
                tmp.write_text(text, encoding="utf-8")
        except OSError as err:
            raise FileFormatError(f"cannot write plan {target}: {err}") from None

    def summary(self) -> str:
        """A few lines: budget, bits/weight reached, candidates used and the most sensitive layers."""
        used: dict[str, int] = {}
        for c in self.layers.values():
            used[c.candidate] = used.get(c.candidate, 0) + 1
        budget = (f"{self.budget_bits:g} bits/weight" if self.budget_bits is not None
                  else f"{self.budget_bytes:,} bytes")
        lines = [f"plan for {len(self.layers)} layers under {budget}: {self.bits_per_weight:.3f} bits/weight "
                 f"({self.total_bytes:,} bytes), predicted {self.metric} error {self.predicted_error:.4g}",
                 "candidates used: " + ", ".join(f"{k} x{v}" for k, v in used.items())]
        return "\n".join(lines)


def _field(doc: Mapping[str, Any], key: str, kinds: type | tuple[type, ...], where: str) -> Any:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise FileFormatError(f"{where}: field {key!r} is missing or of the wrong type (got {value!r:.60})")
    return value


def _layers(doc: Mapping[str, Any], where: str) -> dict[str, LayerChoice]:
    raw = _field(doc, "layers", dict, where)
    layers = {}
    for name, entry in raw.items():
        at = f"{where}: layer {name!r}"
        if not isinstance(entry, dict):
            raise FileFormatError(f"{at} is not an object")
        layers[name] = LayerChoice(_field(entry, "candidate", str, at), _field(entry, "bytes", int, at),
                                   _field(entry, "weights", int, at), float(_field(entry, "error", (int, float), at)))
    return layers


def _budget(doc: Mapping[str, Any], where: str) -> tuple[float | None, int | None]:
    budget = _field(doc, "budget", dict, where)
    bits, nbytes = budget.get("bits_per_weight"), budget.get("bytes")
    if not (bits is None or isinstance(bits, (int, float))) or not (nbytes is None or isinstance(nbytes, int)):
        raise FileFormatError(f"{where}: budget must hold a number or null for bits_per_weight and bytes")
    return (None if bits is None else float(bits)), nbytes


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """Read a plan written by :meth:`Plan.save`.

    Raises:
        FileFormatError: the file is missing, too large, not JSON, not a lowbit plan, of a newer
            version, or a field is missing or malformed (the message names it); a candidate that
            this lowbit cannot build.

    Example:
        >>> load_plan("/no/such/plan.json")
        Traceback (most recent call last):
        ...
        lowbit.errors.FileFormatError: cannot read plan /no/such/plan.json: ...
    """
    where = f"plan {path}"
    try:
        size = os.path.getsize(path)
        if size > _MAX_FILE_BYTES:
            raise FileFormatError(f"{where} is {size:,} bytes; a plan is at most {_MAX_FILE_BYTES:,}")
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise FileFormatError(f"cannot read {where}: {err}") from None
    if not isinstance(doc, dict) or doc.get("format") != PLAN_FORMAT:
        raise FileFormatError(f"{where} is not a lowbit plan (no \"format\": \"{PLAN_FORMAT}\")")
    version = doc.get("version")
    if not isinstance(version, int) or not 1 <= version <= PLAN_VERSION:
        raise FileFormatError(f"{where} has version {version!r}; this lowbit reads versions 1..{PLAN_VERSION}")
    bits, nbytes = _budget(doc, where)
    sensitivity = _field(doc, "sensitivity", dict, where)
    candidates: Sequence[Any] = _field(doc, "candidates", list, where)
    try:
        return Plan(_layers(doc, where), [str(c) for c in candidates], bits, nbytes, _field(doc, "metric", str, where),
                    sensitivity, str(doc.get("lowbit_version", "")))
    except LowbitError as err:
        raise FileFormatError(f"{where}: {err}") from None
