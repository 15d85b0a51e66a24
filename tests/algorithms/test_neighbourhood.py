"""Re-solving the groups nearest the break for a better one-budget incumbent
(``mpqopt.algorithms.neighbourhood``): every answer is a budget-feasible assignment no worse than
the one it starts from and no better than the exact optimum (integer data, compared exactly); a
neighbourhood of every group is the exact optimum itself."""

from __future__ import annotations

import numpy as np
import pytest

import mpqopt
from mpqopt.algorithms.heuristics import fill
from mpqopt.algorithms.hull import greedy
from mpqopt.algorithms.neighbourhood import neighbourhood_search
from mpqopt.deadline import Deadline
from mpqopt.reductions import canonicalize
from mpqopt.synthetic import KNAPSACK_CLASSES, knapsack_problem


def _start(kind: str, seed: int, layers: int = 30):
    problem = knapsack_problem(layers, 6, kind, R=200, seed=seed)
    model = canonicalize(problem, dict(problem.budgets))
    start = greedy(model)
    optimum = mpqopt.solve(problem, solver="mckp").objective - model.offset
    return model, fill(model, start.items), start.lam, optimum


def _valid(model, items) -> bool:
    return bool(np.all(model.item_group[items] == np.arange(model.num_groups)) and model.weights[0, items].sum() <= model.rhs[0])


@pytest.mark.parametrize("kind", KNAPSACK_CLASSES)
@pytest.mark.parametrize("seed", range(3))
def test_neighbourhoods_improve_within_the_optimum(kind, seed):
    model, first, lam, optimum = _start(kind, seed)
    for sizes, work in (((4,), 10**6), ((4, 8, 16), 10**6), ((2, 4), 50)):
        found, stats = neighbourhood_search(model, first, lam, work, sizes=sizes)
        assert _valid(model, found)
        assert optimum <= model.items_objective(found) <= model.items_objective(first)
        assert (stats["nbh_improvements"] > 0) == (model.items_objective(found) < model.items_objective(first))


@pytest.mark.parametrize("kind", KNAPSACK_CLASSES)
def test_a_neighbourhood_of_every_group_is_exact(kind):
    """Nothing fixed: the re-solve below the incumbent is the whole problem's."""
    model, first, lam, optimum = _start(kind, 0, layers=12)
    found, _ = neighbourhood_search(model, first, lam, 10**8, sizes=(model.num_groups,))
    assert _valid(model, found)
    assert model.items_objective(found) == optimum


def test_an_expired_deadline_returns_the_start():
    model, first, lam, _ = _start("strongly", 1)
    found, stats = neighbourhood_search(model, first, lam, 10**8, Deadline(0.0))
    assert np.array_equal(found, first) and stats["nbh_work"] == 0
