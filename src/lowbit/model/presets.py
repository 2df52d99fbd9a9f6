"""Named presets: the best measured weight-only scheme for a bits-per-weight budget, one name away.

A preset names a budget of stored bits per weight (codes, scales and zero points all counted)
and the scheme that measured best inside it on lowbit's side-by-side quality benchmark
(``benchmarks/quality_peers.py``: SmolLM2-135M perplexity on *Hamlet* and all-MiniLM-L6-v2
sentence cosine).  Each preset has two forms:

* ``data_free``: what lowbit runs without calibration data (round to nearest or HQQ); used by
  ``quantize_(model, "w4")``, ``lowbit quantize IN OUT --preset w4`` and ``lowbit plan``'s
  candidates;
* ``calibrated``: what it runs when calibration batches are given,
  ``quantize_(model, "w4", batches=...)`` (learned rounding, at 2 bits started from GPTQ's
  solution; slower, better).

The 4-, 3- and 2-bit presets use groups of 32 with ``kquant6`` scales and uint8 zero points, which
fill their budget exactly where a layer's input width is a multiple of 32 (a shorter last group
costs a little more).  At the same bits they measured better than groups of 48 or 64 with
float16 scales on both models.

Example:
    >>> [p.name for p in list_presets()]
    ['w8', 'w4', 'w3', 'w2']
    >>> preset("w4").scheme
    'W4 uint4 group:32 hqq kquant6 scales'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lowbit.errors import OptionError

__all__ = ["Preset", "PRESETS", "preset", "list_presets", "is_preset"]


@dataclass(frozen=True)
class Preset:
    """A budget and the WeightOnly settings that measured best inside it.

    Attributes:
        name: ``"w4"`` ...
        budget: the most stored bits per weight of its schemes (scales and zero points included).
        data_free: WeightOnly keyword arguments without calibration data.
        calibrated: WeightOnly keyword arguments with calibration batches.
        summary: one line for help texts: what it is for.

    Example:
        >>> PRESETS["w3"].budget
        3.5
    """

    name: str
    budget: float
    data_free: dict[str, Any] = field(hash=False)
    calibrated: dict[str, Any] = field(hash=False)
    summary: str = ""

    def config(self, calibrated: bool = False) -> Any:
        """The :class:`lowbit.model.WeightOnly` of one form (``calibrated``: the one that takes batches).

        Example:
            >>> PRESETS["w4"].config(calibrated=True).algorithm
            'autoround'
        """
        from lowbit.model.config import WeightOnly

        return WeightOnly(**(self.calibrated if calibrated else self.data_free), embeddings=False)


def _scheme(qtype: str, group: int | None, algorithm: str, **extra: Any) -> dict[str, Any]:
    gran = "channel" if group is None else f"group:{group}"
    return {"qtype": qtype, "granularity": gran, "algorithm": algorithm, "scale_format": "float16", **extra}


def _kquant(qtype: str, algorithm: str, **extra: Any) -> dict[str, Any]:
    """Groups of 32 with kquant6 scales (6-bit codes under a float16 super-scale per 8 groups) and uint8 zero
    points: 0.5 bits/weight on top of the codes, what float16 scales spend on groups of 48."""
    return _scheme(qtype, 32, algorithm, scale_format="kquant6", **extra)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("w8", 8.1, _scheme("int8", None, "rtn"), _scheme("int8", None, "gptq"),
               "int8 per output channel: near-lossless, half of float16"),
        Preset("w4", 4.5, _kquant("uint4", "hqq"), _kquant("uint4", "autoround"),
               "4-bit, groups of 32 with k-quant scales: the usual shipping point"),
        Preset("w3", 3.5, _kquant("uint3", "hqq"), _kquant("uint3", "autoround"),
               "3-bit, groups of 32 with k-quant scales: smaller, needs calibration to hold up"),
        Preset("w2", 2.5, _kquant("uint2", "hqq"), _kquant("uint2", "autoround", algorithm_options={"init": "gptq"}),
               "2-bit, groups of 32 with k-quant scales: the smallest; calibrated only for serious use"),
    ]
}
"""Preset name -> :class:`Preset`, smallest compression first."""


def list_presets() -> list[Preset]:
    """Every preset, from the most bits to the fewest.

    Example:
        >>> list_presets()[-1].name
        'w2'
    """
    return sorted(PRESETS.values(), key=lambda p: -p.budget)


def is_preset(name: Any) -> bool:
    """Whether ``name`` is a preset's name.

    Example:
        >>> is_preset("w4"), is_preset("int4")
        (True, False)
    """
    return isinstance(name, str) and name.strip().lower() in PRESETS


def preset(name: str, *, calibrated: bool = False) -> Any:
    """The :class:`lowbit.model.WeightOnly` config of a preset.

    Args:
        name: ``"w8"``, ``"w4"``, ``"w3"`` or ``"w2"``.
        calibrated: the form that needs calibration batches (GPTQ or learned rounding) instead of
            the data-free one.

    Raises:
        OptionError: an unknown name (the message lists the presets).

    Example:
        >>> preset("w2", calibrated=True).scheme
        'W2 uint2 group:32 autoround kquant6 scales'
    """
    if not is_preset(name):
        names = ", ".join(f"{p.name} (<= {p.budget:g} bits/weight)" for p in list_presets())
        raise OptionError(f"unknown preset {name!r}; presets: {names}")
    return PRESETS[name.strip().lower()].config(calibrated)
