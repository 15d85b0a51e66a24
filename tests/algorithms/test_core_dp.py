"""The one-budget core DP (``mpqopt.algorithms.core_dp``) and its completion bound (``suffix_lp``).

A pruning bound that exceeds what the later groups can really achieve cuts the optimum away and
turns into a wrong proof (it did: a Lagrangian variant for cores over 2,000 groups had the sign of
its feasibility test reversed, and ``mckp`` called non-optimal answers optimal on Pisinger's strongly
correlated class). So the bound is checked against the enumerated completion itself, at every step
and at capacities around every achievable total, and the whole engine against HiGHS and exhaustive
search on the classic knapsack classes with integer data (objectives compared exactly).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from fuzz import examples

import mpqopt
from mpqopt import Problem
from mpqopt.algorithms import core_dp
from mpqopt.algorithms.core_dp import _completion_bound, _core_order, _separate_bound
from mpqopt.algorithms.heuristics import fill
from mpqopt.algorithms.hull import greedy
from mpqopt.algorithms.lagrangian import lagrangian_bound
from mpqopt.deadline import Deadline
from mpqopt.algorithms.suffix_lp import SuffixLP
from mpqopt.reductions import canonicalize
from mpqopt.synthetic import KNAPSACK_CLASSES, knapsack_problem

from oracle import brute_force

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out


@st.composite
def one_budget_tables(draw):
    """Small single-budget problems: random or integer tables (many equal efficiencies), any base."""
    K = draw(st.integers(2, 4))
    L = draw(st.integers(2, {2: 9, 3: 7, 4: 6}[K]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        sens = rng.integers(0, 20, (L, K)).astype(float)
        cost = rng.integers(1, 20, (L, K)).astype(float)
    else:
        sens = rng.random((L, K)) * draw(st.sampled_from([1e-6, 1.0, 1e6]))
        cost = rng.random((L, K)) * draw(st.sampled_from([1e-3, 1.0, 1e9])) + 1e-12
    problem = Problem([f"l{i}" for i in range(L)], [f"W{k + 1}" for k in range(K)], sens, costs={"size_bits": cost})
    model = canonicalize(problem, {"size_bits": float(cost.max(axis=1).sum()) * 2}, prune=False)
    base_pos = rng.integers(0, K, L)  # the bound must hold whatever base the search starts from
    return model, base_pos, rng


@given(one_budget_tables(), st.sampled_from(["lp", "separate"]))
@settings(max_examples=examples(150), deadline=None)
def test_completion_bound_never_exceeds_the_enumerated_completion(case, kind):
    """Both completion bounds: the LP of the later groups, and the tiny cores' groups-apart bound."""
    model, base_pos, rng = case
    L = model.num_groups
    base = model.group_start[:-1] + base_pos
    alternatives = np.setdiff1d(np.arange(model.num_items), base)  # every group in the core
    lam = greedy(model).lam
    core_groups, items, start = _core_order(model, base, alternatives, lam)
    bound = _completion_bound(model, core_groups, items, start) if kind == "lp" else _separate_bound(model, items, start)
    weight, value = model.weights[0], model.value
    choices = [items[start[s]:start[s + 1]] for s in range(L)]
    for step in range(L):  # in increasing order, as the DP asks
        later = choices[step + 1:]
        combos = np.array(list(itertools.product(*later)), dtype=np.int64).reshape(-1, len(later)) if later else np.zeros((1, 0), dtype=np.int64)
        base_later = items[start[step + 1:-1]]
        d_cost = weight[combos].sum(axis=1) - weight[base_later].sum()
        d_value = value[combos].sum(axis=1) - value[base_later].sum()
        # capacities at, just below and just above every achievable change, and random ones
        spare = np.unique(np.concatenate([d_cost, np.nextafter(d_cost, -np.inf), np.nextafter(d_cost, np.inf), rng.normal(size=5) * np.abs(d_cost).max(initial=1.0)]))
        # the DP adds 1e-12 of the budget to its capacity for round-off; a total that fits exactly
        # may round either way inside the bound, so it is asked at that much more room
        got = bound(step, spare + 1e-12 * weight.max() * L)
        fits = d_cost[None, :] <= spare[:, None]
        truth = np.where(fits, d_value[None, :], np.inf).min(axis=1)
        tol = 1e-9 * max(np.abs(value).max(), 1e-300) * L
        assert np.all(got <= truth + tol), (step, spare[got > truth + tol], got[got > truth + tol], truth[got > truth + tol])


@given(st.integers(1, 12), st.integers(1, 5), st.integers(0, 2**32 - 1))
@settings(max_examples=examples(100), deadline=None)
def test_suffix_lp_is_the_lp_of_the_remaining_groups(groups, per_group, seed):
    """Against the LP solved from scratch on the groups left, after each removal."""
    rng = np.random.default_rng(seed)
    n = groups * per_group
    dcost = rng.integers(1, 10, n).astype(float)
    dvalue = -rng.integers(0, 10, n).astype(float)
    group = rng.integers(0, groups, n)
    order = np.argsort(dvalue / dcost, kind="stable")  # decreasing efficiency -dvalue/dcost
    dcost, dvalue, group = dcost[order], dvalue[order], group[order]
    lp = SuffixLP(dcost, dvalue, group)
    room = np.linspace(0, dcost.sum() + 3, 17)
    for removed in range(-1, groups):
        lp.remove_through(removed)
        left = group > removed
        expected = [_greedy_lp(dcost[left], dvalue[left], r) for r in room]
        np.testing.assert_allclose(lp(room), expected, rtol=1e-12, atol=1e-12)


def _greedy_lp(dcost: np.ndarray, dvalue: np.ndarray, room: float) -> float:
    total = 0.0
    for c, v in zip(dcost, dvalue):
        take = min(1.0, max(room, 0.0) / c)
        total += take * v
        room -= take * c
    return total


def test_suffix_lp_refuses_going_back():
    lp = SuffixLP(np.array([1.0]), np.array([-1.0]), np.array([3]))
    lp.remove_through(2)
    with pytest.raises(ValueError, match="increasing"):
        lp.remove_through(1)


@pytest.mark.parametrize("kind", KNAPSACK_CLASSES)
@pytest.mark.parametrize("seed", [0, 1])
def test_mckp_is_exact_on_every_knapsack_class(kind, seed):
    """Integer data: the proven optimum equals HiGHS's exactly, and exhaustive search's on a tiny one."""
    problem = knapsack_problem(40, 6, kind, R=1000, seed=seed)
    got = mpqopt.solve(problem, solver="mckp")
    reference = mpqopt.solve(problem, solver="highs")
    assert got.status == reference.status == "optimal"
    assert got.objective == reference.objective
    assert got.bound == got.objective
    tiny = knapsack_problem(6, 4, kind, R=100, seed=seed)
    got = mpqopt.solve(tiny, solver="mckp")
    assert got.status == "optimal"
    assert got.objective == brute_force(tiny, tiny.budgets)[0]


def test_knapsack_problem_follows_pisinger():
    p = knapsack_problem(30, 5, "strongly", R=100, seed=3)
    w = p.costs["size_bits"]
    profit = -p.sensitivity  # up to a constant per layer
    # cumulative sums of increments with profit = weight + 10: every step adds 10 more profit than weight
    assert np.all(np.diff(profit, axis=1) - np.diff(w, axis=1) == 10)
    assert p.budgets["size_bits"] == (w.min(axis=1).sum() + w.max(axis=1).sum()) // 2
    sub = knapsack_problem(20, 3, "subset_sum", R=50, seed=1)
    assert np.all(np.ptp(-sub.sensitivity - sub.costs["size_bits"], axis=1) == 0)
    with pytest.raises(mpqopt.MpqoptError, match="kind must be one of"):
        knapsack_problem(3, 2, "hard")
def test_a_core_of_thousands_of_groups_is_proven_right():
    """The instance class and size where the old bound for cores over 2,000 groups proved a wrong
    optimum (1,912,991 against a feasible 1,912,584): the claimed optimum must not be beaten by any
    assignment HiGHS finds, and its bound must be below every such assignment."""
    problem = knapsack_problem(2100, 4, "strongly", R=1000, seed=0)
    got = mpqopt.solve(problem, solver="mckp")
    assert got.status == "optimal" and got.stats["core_groups"] > 2000
    found = mpqopt.solve(problem, solver="highs", time_limit=5)
    assert found.x is not None
    assert got.objective <= found.objective
    assert got.bound <= found.objective




def _core_setup(kind: str, seed: int):
    """A one-budget knapsack model, its Lagrangian base, every other item as an alternative, and a
    target just above the LP bound (only some assignments reach it)."""
    problem = knapsack_problem(25, 8, kind, R=40, seed=seed)
    model = canonicalize(problem, dict(problem.budgets))
    start = greedy(model)
    lam = np.array([start.lam])
    lagrange, reduced = lagrangian_bound(model, lam)
    base = np.minimum.reduceat(np.where(reduced == 0, np.arange(model.num_items), model.num_items), model.group_start[:-1])
    alternatives = np.setdiff1d(np.arange(model.num_items), base)
    target = model.items_objective(fill(model, start.items))
    return model, base, alternatives, start.lam, target


@pytest.mark.parametrize("kind", KNAPSACK_CLASSES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chunked_steps_find_the_same_optimum(kind, seed, monkeypatch):
    """Block steps cut into chunks of a few states (each chunk's front merged with the others')
    find the optimum the whole-block steps find, as integers."""
    model, base, alternatives, lam, target = _core_setup(kind, seed)
    whole = core_dp.solve_core(model, base, alternatives, lam, target)
    monkeypatch.setattr(core_dp, "CHUNK_STATES", 5)
    chunked = core_dp.solve_core(model, base, alternatives, lam, target)
    assert whole.complete and chunked.complete
    assert (whole.items is None) == (chunked.items is None)
    if whole.items is not None:
        assert model.items_objective(whole.items) == model.items_objective(chunked.items)


@pytest.mark.parametrize("kind", KNAPSACK_CLASSES)
def test_a_search_cut_short_returns_only_assignments_within_the_target(kind):
    """Stopped by its work limit (or the deadline) part-way, the DP proves nothing, but the
    assignment it returns (the caller's new incumbent) is one per group, budget-feasible, within
    the target, and no better than the optimum."""
    found = 0
    for seed in range(3):
        model, base, alternatives, lam, target = _core_setup(kind, seed)
        full = core_dp.solve_core(model, base, alternatives, lam, target)
        for work_limit in (50, 200, 1_000, 5_000, 20_000):
            cut = core_dp.solve_core(model, base, alternatives, lam, target, work_limit=work_limit)
            if cut.complete or cut.items is None:
                continue
            found += 1
            assert np.all(model.item_group[cut.items] == np.arange(model.num_groups))
            assert model.weights[0, cut.items].sum() <= model.rhs[0]
            assert model.items_objective(cut.items) <= target
            if full.complete:
                assert model.items_objective(cut.items) >= model.items_objective(full.items)
        stopped = core_dp.solve_core(model, base, alternatives, lam, target, deadline=Deadline(0.0))
        assert not stopped.complete
    assert found  # each class meets an assignment within the target before some work limit


@pytest.mark.parametrize("kind", ["weakly", "strongly", "inverse_strongly", "subset_sum"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_target_lowered_mid_search_is_answered_exactly(kind, seed):
    """``improve`` lowers the target part-way (the caller found a better incumbent): at the optimum
    the search still finds an optimal assignment, a unit below it it proves there is none (the best
    state met before the lowering must not be returned as an answer)."""
    model, base, alternatives, lam, target = _core_setup(kind, seed)
    full = core_dp.solve_core(model, base, alternatives, lam, target)
    assert full.complete and full.items is not None
    best = model.items_objective(full.items)
    for after in (0, 100, 2_000):
        at = core_dp.solve_core(model, base, alternatives, lam, target, improve=lambda: best, improve_after=after)
        assert at.complete and model.items_objective(at.items) == best
        below = core_dp.solve_core(model, base, alternatives, lam, target, improve=lambda: best - 1.0, improve_after=after)
        assert below.complete and below.items is None
        higher = core_dp.solve_core(model, base, alternatives, lam, target, improve=lambda: target + 5.0, improve_after=after)
        assert model.items_objective(higher.items) == best  # a higher target changes nothing
