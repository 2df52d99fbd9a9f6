"""Plain-text and Markdown tables (shared by metrics, report and the CLI).

Example:
    >>> print(format_table(["name", "dB"], [["a", "1.5"], ["bb", "20.0"]]))
    name    dB
    ----  ----
    a      1.5
    bb    20.0
"""

from __future__ import annotations

import math

__all__ = ["format_table", "jsonable"]


def format_table(header: list[str], rows: list[list[str]], markdown: bool = False) -> str:
    """Aligned text (or Markdown) table; text columns left-aligned, numbers right-aligned.

    Example:
        >>> print(format_table(["a", "b"], [["x", "1"]]))
        a  b
        -  -
        x  1
    """
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    numeric = [all(_is_number(r[i]) for r in rows) and bool(rows) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)]
        return ("| " + " | ".join(parts) + " |") if markdown else "  ".join(parts).rstrip()

    rule = ["-" * w for w in widths]
    if markdown:
        rule = [("-" * (w - 1) + ":") if num else "-" * w for w, num in zip(widths, numeric, strict=True)]
    return "\n".join([line(header), line(rule), *(line(r) for r in rows)])


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("x"))
    except ValueError:
        return False
    return True


def jsonable(d: dict) -> dict:
    """Copy of ``d`` with non-finite floats written as strings ("inf", "-inf", "nan").

    Strict JSON has no infinity; a reader gets ``float("inf")`` back from the string.

    Example:
        >>> jsonable({"a": float("inf"), "b": 1.0})
        {'a': 'inf', 'b': 1.0}
    """
    return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
