"""The rank (cardinality) bound of :mod:`mpqopt.algorithms.cardinality`, and the core DP and mckp
using it as a floor, against exhaustive search on small integer instances: every bound at or below
the exact optimum, ``K`` at or above the largest rank sum within the budget, and on Pisinger's
strongly correlated class (every rank step worth its weight plus a constant) often exact."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fuzz import examples
from mpqopt import Problem
from mpqopt.algorithms import cardinality, core_dp
from mpqopt.algorithms.hull import greedy
from mpqopt.reductions import canonicalize
from mpqopt.solvers import mckp
from mpqopt.solvers.base import SolveSettings
from test_core_dp_adversarial import assert_complete_answer  # the same check of a complete core search


def _model(rng: np.random.Generator, kind: str | None = None):
    """A small integer one-budget model: random, strongly or inversely strongly correlated (as
    :func:`mpqopt.synthetic.knapsack_problem` builds them), or with many ties."""
    L, K = int(rng.integers(2, 7)), int(rng.integers(2, 5))
    kind = kind or str(rng.choice(["random", "strongly", "inverse", "ties"]))
    R = int(rng.choice([3, 20, 1000]))
    if kind in ("strongly", "inverse"):
        first = np.sort(rng.integers(1, R + 1, (L, K)), axis=1)
        second = first + int(rng.integers(1, 11))
        weight, profit = (first, second) if kind == "strongly" else (second, first)
        cost, profit = np.cumsum(weight, axis=1).astype(float), np.cumsum(profit, axis=1)
        sens = (profit.max(axis=1, keepdims=True) - profit).astype(float)
    else:
        span = 3 if kind == "ties" else R
        cost = rng.integers(1, span + 1, (L, K)).astype(float)
        sens = rng.integers(0, span + 1, (L, K)).astype(float)
    lo, hi = cost.min(axis=1).sum(), cost.max(axis=1).sum()
    budget = float(rng.integers(int(lo), int(hi) + 1))
    problem = Problem([f"l{i}" for i in range(L)], [f"W{k + 1}" for k in range(K)], sens, costs={"size_bits": cost})
    return canonicalize(problem, {"size_bits": budget}, prune=bool(rng.random() < 0.5))


def _enumerate(model):
    """(optimum or None, largest rank sum within the budget or None) by exhaustive search."""
    ranks = cardinality.item_ranks(model)
    groups = [range(model.group_start[g], model.group_start[g + 1]) for g in range(model.num_groups)]
    best = most = None
    for choice in itertools.product(*groups):
        items = np.array(choice, dtype=np.int64)
        if model.weights[0, items].sum() > model.rhs[0]:
            continue
        value, count = float(model.value[items].sum()), int(ranks[items].sum())
        best = value if best is None else min(best, value)
        most = count if most is None else max(most, count)
    return best, most


def test_ranks_order_each_group_by_weight():
    rng = np.random.default_rng(0)
    model = _model(rng, "random")
    ranks = cardinality.item_ranks(model)
    for g in range(model.num_groups):
        lo, hi = model.group_start[g], model.group_start[g + 1]
        assert sorted(ranks[lo:hi].tolist()) == list(range(hi - lo))
        assert np.all(np.diff(model.weights[0, lo:hi][np.argsort(ranks[lo:hi])]) >= 0)


@pytest.mark.parametrize("seed", range(examples(150)))
def test_rank_bound_never_passes_the_optimum(seed):
    rng = np.random.default_rng(seed)
    model = _model(rng)
    optimum, most = _enumerate(model)
    if optimum is None:
        return
    ranks = cardinality.item_ranks(model)
    K = cardinality.max_ranks(model, ranks)
    assert K >= most, f"seed {seed}"
    card = cardinality.rank_bound(model)
    assert card.bound <= optimum, f"seed {seed}: {card} above the optimum {optimum}"
    assert card.bound >= np.ceil(greedy(model).lp_bound - 1e-6), f"seed {seed}: below the LP bound"
    # any multipliers give a valid bound, not only the searched ones
    for lam, mu in rng.uniform(0, 3, (5, 2)):
        assert cardinality.lagrangian_value(model, ranks, K, float(lam), float(mu)) <= optimum + 1e-9, f"seed {seed}"


def test_rank_bound_meets_the_strongly_correlated_optimum_often():
    """The cut is what closes the LP's gap on the strongly correlated class (not a tautology: the
    LP bound alone is exact on few of them)."""
    exact = lp_exact = 0
    for seed in range(40):
        model = _model(np.random.default_rng(1000 + seed), "strongly")
        optimum, _ = _enumerate(model)
        if optimum is None:
            continue
        exact += cardinality.rank_bound(model).bound == optimum
        lp_exact += np.ceil(greedy(model).lp_bound - 1e-6) == optimum
    assert exact > lp_exact
    assert exact >= 20


def whole_model_core(rng: np.random.Generator, monkeypatch, combinations: list[int]):
    """A random model, its enumerated optimum, its LP start, a random base choice and every other item
    as the core's alternatives (the whole model: every branch), with a random ``BLOCK_COMBINATIONS``
    among ``combinations``; None when the model has nothing to search."""
    model = _model(rng)
    optimum, _ = _enumerate(model)
    start = greedy(model)
    if optimum is None or start is None or model.num_groups == 0:
        return None
    monkeypatch.setattr(core_dp, "BLOCK_COMBINATIONS", int(rng.choice(combinations)))
    base = model.group_start[:-1] + np.array([int(rng.integers(0, n)) for n in np.diff(model.group_start)], dtype=np.int64)
    return model, optimum, start, base, np.setdiff1d(np.arange(model.num_items), base)


@pytest.mark.parametrize("seed", range(examples(120)))
def test_core_dp_with_a_raised_floor_against_enumeration(seed, monkeypatch):
    """``refloor`` returns a valid floor (the rank bound, or the optimum itself): the search stops
    early only where that is proved, and answers exactly as without it."""
    rng = np.random.default_rng(seed)
    if (case := whole_model_core(rng, monkeypatch, [1, 4, 32])) is None:
        return
    model, optimum, start, base, alternatives = case
    target = optimum + float(rng.choice([-1, 0, 0, 2, 50]))
    lowered = None if rng.random() < 0.5 else optimum + float(rng.choice([-1, 0, 1]))
    floor = float(rng.choice([optimum, cardinality.rank_bound(model).bound, optimum - 3]))
    called = []

    def improve():
        called.append(True)
        return lowered

    got = core_dp.solve_core(model, base, alternatives, start.lam, target, improve=improve, improve_after=int(rng.choice([0, 1, 10**9])),
                             refloor=lambda: floor)
    limit = min(target, lowered) if called and lowered is not None else target
    expected = optimum if optimum <= limit else None
    where = f"seed {seed}: target {target}, lowered {lowered} (called {bool(called)}), floor {floor}, optimum {optimum}"
    assert_complete_answer(model, got, expected, where, lambda items: model.weights[0, items].sum() <= model.rhs[0])


@pytest.mark.parametrize("seed", range(examples(60)))
def test_mckp_with_the_rank_bound_against_enumeration(seed, monkeypatch):
    """mckp consults the rank bound (at once here: ``PROBE_WORK = 0``) and proves exact optima."""
    rng = np.random.default_rng(500 + seed)
    model = _model(rng, str(rng.choice(["strongly", "inverse", "random"])))
    optimum, _ = _enumerate(model)
    monkeypatch.setattr(mckp, "PROBE_WORK", 0)
    monkeypatch.setattr(mckp, "SMALL_CORE", 0)
    raw = mckp.MckpBackend().solve(model, SolveSettings())
    if optimum is None:
        assert raw.status == "infeasible"
        return
    assert raw.status == "optimal", f"seed {seed}: {raw.status} {raw.message}"
    assert raw.objective == optimum, f"seed {seed}: {raw.objective} != {optimum} ({raw.message})"
    assert model.weights[0, raw.items].sum() <= model.rhs[0]
    assert raw.bound <= optimum


class _Passed:
    """A deadline that has already passed."""

    def expired(self) -> bool:
        return True


def test_a_passed_deadline_stops_the_search_with_a_valid_bound():
    import mpqopt
    from mpqopt.synthetic import knapsack_problem

    p = knapsack_problem(100, 10, "strongly", R=1000, seed=0)
    model = canonicalize(p, dict(p.budgets))
    full, cut = cardinality.rank_bound(model), cardinality.rank_bound(model, deadline=_Passed())
    assert cut.evaluations == 1 < full.evaluations  # only mu = 0, the first LP, ran
    assert cut.bound <= full.bound and cut.bound <= mpqopt.solve(p, solver="mckp").objective - model.offset
