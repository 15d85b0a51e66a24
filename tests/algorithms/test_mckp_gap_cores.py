"""mckp with several budgets and a positive mip_gap (HiGHS on reduced-cost cores below targets,
three-group exchanges): every answer must be within the gap of an independent optimum, and its
bound must not exceed that optimum."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import mpqopt
from mpqopt.algorithms.kopt import exchange
from mpqopt.algorithms.heuristics import is_feasible
from mpqopt.reductions import canonicalize
from mpqopt.synthetic import mckp_problem
from oracle import brute_force

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out


def _check(result, optimum: float, mip_gap: float) -> None:
    tol = 1e-9 * max(1.0, abs(optimum))
    assert result.status == "optimal", result.message
    assert result.bound <= optimum + tol
    assert result.objective >= optimum - tol
    assert result.objective - optimum <= mip_gap * abs(result.objective) + tol


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mip_gap", [1e-3, 0.05])
def test_small_against_brute_force(seed: int, mip_gap: float) -> None:
    p = mckp_problem(6, 4, 3, seed=seed, budget_fraction=0.3 + 0.08 * seed)
    optimum, _ = brute_force(p, p.budgets)
    result = mpqopt.solve(p, solver="mckp", mip_gap=mip_gap)
    _check(result, optimum, mip_gap)


@pytest.mark.parametrize("seed", range(3))
def test_medium_against_exact_highs(seed: int) -> None:
    """Large enough for the first targets and the exchanges to run (stats name their cores)."""
    p = mckp_problem(300, 8, 3, seed=seed, kind="cnn")
    exact = mpqopt.solve(p, solver="highs:plain", mip_gap=0.0, threads=1)
    assert exact.status == "optimal"
    mip_gap = 1e-5
    result = mpqopt.solve(p, solver="mckp", mip_gap=mip_gap, threads=1)
    _check(result, exact.objective, mip_gap + 1e-7)  # HiGHS's own optimum holds to ~1e-9 relative


def test_exchange_finds_the_best_pair_and_keeps_budgets() -> None:
    """From a poor start the result is feasible and no single, pair or triple move improves it
    (checked by enumeration here)."""
    p = mckp_problem(12, 4, 2, seed=3, budget_fraction=0.4)
    m = canonicalize(p, p.budgets)
    start = np.array([m.group_start[g] for g in range(m.num_groups)])  # cheapest-first items
    assert is_feasible(m, start)
    out = exchange(m, start, np.arange(m.num_items))
    assert is_feasible(m, out)
    obj = m.items_objective(out)

    for size in (1, 2, 3):
        for groups in itertools.combinations(range(m.num_groups), size):
            for choice in itertools.product(*[range(m.group_start[g], m.group_start[g + 1]) for g in groups]):
                trial = out.copy()
                trial[list(groups)] = choice
                if is_feasible(m, trial):
                    assert m.items_objective(trial) >= obj - 1e-12 * (1 + abs(obj))
