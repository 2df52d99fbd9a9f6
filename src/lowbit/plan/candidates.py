"""Candidate schemes a planner chooses from, and their compact spelling.

A candidate is written ``QTYPE[:gSIZE][:asym|:sym][:SCALE_FORMAT][:hqq]``, several joined by
commas: ``int8,int4:g64,int3:g64,uint4:g64:hqq,int2:g16:float16``.

* ``QTYPE``: a registered format name (``int4``, ``uint3``, ``nf4`` ...), or ``float``: keep the
  layer in float (costs its float bytes, loses nothing).
* ``gSIZE``: groups of ``SIZE`` inputs share a scale (``PerGroup(SIZE)``); without it one scale
  per output channel.  A size that does not divide a layer's inputs gives a shorter last group
  there, as :class:`lowbit.model.WeightOnly` does (a conv kernel keeps one per channel, and the
  layer's cost says so).
* ``asym`` / ``sym``: an affine (zero point) or scale-only grid; default: the format's own.
* ``SCALE_FORMAT``: how scales are stored (``float16``, ``bfloat16``, ``double8`` ...; default float32).
* ``hqq``: half-quadratic rounding (data-free, affine) instead of round to nearest.

A preset name (``w8``, ``w4``, ``w3``, ``w2``: :mod:`lowbit.model.presets`) is a candidate too: its
data-free scheme.

GPTQ and AWQ are not candidates: they round each layer from the already-quantized layers
before it, so a one-layer-at-a-time sensitivity would not describe what they produce.

Example:
    >>> [c.spec for c in parse_candidates("int8, int4:g64")]
    ['int8', 'int4:g64']
    >>> parse_candidate("uint4:g32:float16:hqq").config.scheme
    'W4 uint4 group:32 hqq float16 scales'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lowbit.errors import LowbitError, OptionError

__all__ = ["Candidate", "parse_candidate", "parse_candidates", "DEFAULT_CANDIDATES"]

DEFAULT_CANDIDATES = "int8,int4:g64,int3:g64,int2:g16:float16"
"""The candidates of ``lowbit plan`` when none are given (about 8.06, 4.5, 3.5 and 3.0 bits/weight on SmolLM2)."""

_SYNTAX = ("QTYPE[:gSIZE][:asym|:sym][:SCALE_FORMAT][:hqq] or a preset (e.g. int4:g64, uint4:g64:hqq, "
           "int2:g16:float16, w4)")


@dataclass(frozen=True)
class Candidate:
    """One scheme a layer may take: its spelling and its config (None: keep the layer float).

    Example:
        >>> parse_candidate("float").config is None, parse_candidate("int4").spec
        (True, 'int4')
    """

    spec: str
    config: Any  # a lowbit.model.WeightOnly, or None for float

    @property
    def is_float(self) -> bool:
        """Whether this candidate keeps the layer in float."""
        return self.config is None


def _token_kind(token: str) -> str:
    from lowbit.formats import list_scale_formats

    if token in ("asym", "sym"):
        return "symmetry"
    if token in ("hqq", "rtn"):
        return "algorithm"
    if token in ("gptq", "awq"):
        raise OptionError(f"{token} is not a planner candidate: it rounds each layer from the quantized layers "
                          "before it, so one-layer sensitivities would not describe it; use rtn (default) or hqq")
    if token.startswith("g") and token[1:].isdigit():
        return "group"
    if token in list_scale_formats():
        return "scale_format"
    raise OptionError(f"unknown candidate option {token!r}; expected gSIZE, asym, sym, hqq or a scale format "
                      f"({', '.join(list_scale_formats())})")


def _fields(spec: str) -> dict[str, Any]:
    qtype, *tokens = [t.strip() for t in spec.split(":")]
    fields: dict[str, Any] = {"qtype": qtype}
    for token in tokens:
        kind = _token_kind(token)
        if kind in fields:
            raise OptionError(f"option {kind} given twice")
        if kind == "group":
            if int(token[1:]) < 1:
                raise OptionError(f"group size must be >= 1, got {token!r}")
            fields[kind] = f"group:{int(token[1:])}"
        elif kind == "symmetry":
            fields[kind] = token == "sym"
        else:
            fields[kind] = token
    return fields


def parse_candidate(spec: str) -> Candidate:
    """One candidate from its spelling (see the module docstring).

    Args:
        spec: e.g. ``"int4:g64"``, ``"uint4:g64:hqq"``, ``"int2:g16:float16"`` or ``"float"``.

    Returns:
        A :class:`Candidate` whose config is a :class:`lowbit.model.WeightOnly` (None for ``float``).

    Raises:
        OptionError: a spelling that does not parse or a config lowbit refuses (the message
            names the spec and the expected syntax).

    Example:
        >>> parse_candidate("int3:g64:asym").config.symmetric
        False
        >>> parse_candidate("w4").config.scheme
        'W4 uint4 group:32 hqq kquant6 scales'
    """
    from lowbit.model.config import WeightOnly
    from lowbit.model.presets import is_preset, preset

    if not isinstance(spec, str) or not spec.strip():
        raise OptionError(f"a candidate is a non-empty string {_SYNTAX}, got {spec!r}")
    spec = spec.strip()
    if spec == "float":
        return Candidate(spec, None)
    if is_preset(spec):
        return Candidate(spec.lower(), preset(spec))
    try:
        fields = _fields(spec)
        config = WeightOnly(fields["qtype"], fields.get("group"), symmetric=fields.get("symmetry"),
                            algorithm=fields.get("algorithm", "rtn"), scale_format=fields.get("scale_format"),
                            embeddings=False)
    except LowbitError as err:
        raise OptionError(f"candidate {spec!r}: {err}; syntax {_SYNTAX}") from None
    return Candidate(spec, config)


def parse_candidates(specs: str | Iterable[str]) -> list[Candidate]:
    """Candidates from a comma-separated string or a list of spellings, in order, without repeats.

    Raises:
        OptionError: no candidate, a repeated one, or one that does not parse.

    Example:
        >>> [c.spec for c in parse_candidates(["int8", "int4:g32"])]
        ['int8', 'int4:g32']
    """
    items = specs.split(",") if isinstance(specs, str) else list(specs)
    parsed = [parse_candidate(s) for s in items]
    if not parsed:
        raise OptionError(f"give at least one candidate, e.g. {DEFAULT_CANDIDATES!r}")
    seen = [c.spec for c in parsed]
    repeated = sorted({s for s in seen if seen.count(s) > 1})
    if repeated:
        raise OptionError(f"candidates repeated: {', '.join(repeated)}")
    return parsed
