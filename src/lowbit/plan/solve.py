"""Choose one candidate per layer: the least summed error whose bytes fit a budget.

This is a multiple-choice knapsack, solved exactly by dynamic programming over bytes.  A
Lagrangian (add ``lambda * bytes`` to each error and bisect on ``lambda``) is faster but only
reaches choices on the convex hull of each layer's (bytes, error) points; the dynamic program
also reaches the others, and for a few hundred layers and candidates it takes well under a
second.  Bytes are counted in units of ``unit`` bytes, each cost rounded *up*, so the chosen
set never exceeds the budget; the unit is the greatest common divisor of the costs (exact)
unless that would need more than ``max_bins`` bins, and then the smallest unit that fits
(the choice is then optimal for the rounded-up costs).

Example:
    >>> solve([[4, 2], [4, 2]], [[0.0, 1.0], [0.0, 5.0]], budget=6)
    [1, 0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lowbit.errors import OptionError

__all__ = ["solve", "MAX_BINS"]

MAX_BINS = 100_000
"""Most byte bins the dynamic program uses (its table holds layers x bins choices)."""


def _check(costs: Sequence[Sequence[int]], errors: Sequence[Sequence[float]], budget: int) -> None:
    if len(costs) != len(errors) or not costs:
        raise OptionError(f"need one cost list and one error list per layer (got {len(costs)} and {len(errors)})")
    for i, (c, e) in enumerate(zip(costs, errors, strict=True)):
        if not c or len(c) != len(e):
            raise OptionError(f"layer {i}: {len(c)} costs and {len(e)} errors; give one of each per candidate")
        if any(int(x) != x or x < 0 for x in c):
            raise OptionError(f"layer {i}: costs must be whole numbers of bytes >= 0, got {list(c)}")
        if not all(math.isfinite(x) for x in e):
            raise OptionError(f"layer {i}: errors must be finite, got {list(e)}")
    if isinstance(budget, bool) or int(budget) != budget or budget < 0:
        raise OptionError(f"budget must be a whole number of bytes >= 0, got {budget!r}")
    cheapest = sum(min(c) for c in costs)
    if cheapest > budget:
        raise OptionError(f"budget {int(budget):,} bytes is below the cheapest choice ({cheapest:,} bytes: every layer "
                          "on its smallest candidate); raise the budget or add a smaller candidate")


def _unit(costs: Sequence[Sequence[int]], budget: int, max_bins: int) -> int:
    g = 0
    for c in costs:
        for x in c:
            g = math.gcd(g, int(x))
    g = max(g, 1)
    if budget // g <= max_bins:
        return g
    return -(-budget // max_bins)


def solve(costs: Sequence[Sequence[int]], errors: Sequence[Sequence[float]], budget: int,
          max_bins: int = MAX_BINS) -> list[int]:
    """Per layer the index of the chosen candidate: minimum summed error, summed cost <= ``budget``.

    Args:
        costs: ``costs[i][j]``: bytes of layer ``i`` on candidate ``j`` (whole numbers >= 0).
        errors: ``errors[i][j]``: predicted error of that choice (finite; ties go to the earlier candidate).
        budget: most bytes in all.
        max_bins: most byte bins of the table (see the module docstring).

    Returns:
        One candidate index per layer.

    Raises:
        OptionError: mismatched or empty lists, negative or fractional costs, non-finite errors, or a
            budget below the cheapest choice (the message gives that cheapest total).

    Example:
        >>> solve([[8, 4, 2]], [[0.0, 0.1, 0.9]], budget=5)
        [1]
    """
    _check(costs, errors, budget)
    unit = _unit(costs, int(budget), max_bins)
    bins = int(budget) // unit
    best = np.zeros(bins + 1)  # best[b]: least error of the layers so far within b units
    picks = np.empty((len(costs), bins + 1), dtype=np.int16)
    for i, (c, e) in enumerate(zip(costs, errors, strict=True)):
        new = np.full(bins + 1, np.inf)
        pick = np.zeros(bins + 1, dtype=np.int16)
        for j, (cost, err) in enumerate(zip(c, e, strict=True)):
            w = -(-int(cost) // unit)
            if w > bins:
                continue
            trial = np.full(bins + 1, np.inf)
            trial[w:] = best[: bins + 1 - w] + err
            better = trial < new
            new[better], pick[better] = trial[better], j
        best, picks[i] = new, pick
    if not np.isfinite(best[bins]):  # only when rounding costs up to the unit pushed the cheapest choice over
        raise OptionError(f"budget {int(budget):,} bytes is within rounding ({unit} bytes per layer) of the cheapest "
                          "choice; raise the budget slightly or pass a larger max_bins")
    return _backtrack(costs, picks, unit, bins)


def _backtrack(costs: Sequence[Sequence[int]], picks: np.ndarray, unit: int, bins: int) -> list[int]:
    choice = [0] * len(costs)
    b = bins
    for i in range(len(costs) - 1, -1, -1):
        j = int(picks[i, b])
        choice[i] = j
        b -= -(-int(costs[i][j]) // unit)
    return choice
