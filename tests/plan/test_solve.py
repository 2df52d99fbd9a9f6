"""The knapsack solver against brute force, and its budget guarantees."""

from __future__ import annotations

import itertools
import random

import pytest

from lowbit.errors import OptionError
from lowbit.plan.solve import solve


def brute_force(costs, errors, budget):
    """Least summed error over every assignment within the budget (independent oracle)."""
    best = None
    for choice in itertools.product(*[range(len(c)) for c in costs]):
        cost = sum(c[j] for c, j in zip(costs, choice, strict=True))
        if cost <= budget:
            err = sum(e[j] for e, j in zip(errors, choice, strict=True))
            best = err if best is None else min(best, err)
    return best


def random_instance(rng):
    layers = rng.randint(1, 5)
    costs = [[rng.randint(1, 40) for _ in range(rng.randint(1, 4))] for _ in range(layers)]
    errors = [[round(rng.random(), 3) for _ in c] for c in costs]
    low, high = sum(min(c) for c in costs), sum(max(c) for c in costs)
    return costs, errors, rng.randint(low, high)


@pytest.mark.parametrize("seed", range(60))
def test_matches_brute_force_and_fits(seed):
    costs, errors, budget = random_instance(random.Random(seed))
    choice = solve(costs, errors, budget)
    assert sum(c[j] for c, j in zip(costs, choice, strict=True)) <= budget
    got = sum(e[j] for e, j in zip(errors, choice, strict=True))
    assert got == pytest.approx(brute_force(costs, errors, budget), abs=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_coarse_bins_never_exceed_budget(seed):
    rng = random.Random(1000 + seed)
    costs = [[rng.randint(1_000, 90_000) for _ in range(3)] for _ in range(6)]
    errors = [[rng.random() for _ in c] for c in costs]
    budget = sum(min(c) for c in costs) + rng.randint(20_000, 200_000)
    choice = solve(costs, errors, budget, max_bins=64)  # unit of ~thousands of bytes: costs rounded up
    assert sum(c[j] for c, j in zip(costs, choice, strict=True)) <= budget


def test_prefers_spending_bytes_where_error_drops_most():
    # two layers, each 8 bytes at int8 or 4 at int4; one more byte budget than 12 buys one int8
    assert solve([[8, 4], [8, 4]], [[0.0, 0.2], [0.0, 0.9]], budget=12) == [1, 0]
    assert solve([[8, 4], [8, 4]], [[0.0, 0.2], [0.0, 0.9]], budget=16) == [0, 0]


def test_budget_below_cheapest_is_refused():
    with pytest.raises(OptionError, match="below the cheapest choice"):
        solve([[8, 4], [8, 4]], [[0.0, 1.0], [0.0, 1.0]], budget=7)


@pytest.mark.parametrize(("costs", "errors", "budget", "match"), [
    ([], [], 10, "one cost list"),
    ([[1, 2]], [[0.0]], 10, "errors"),
    ([[1.5]], [[0.0]], 10, "whole numbers"),
    ([[1]], [[float("nan")]], 10, "finite"),
    ([[1]], [[0.0]], -1, "budget must be"),
])
def test_bad_input(costs, errors, budget, match):
    with pytest.raises(OptionError, match=match):
        solve(costs, errors, budget)
