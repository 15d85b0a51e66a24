"""Meeting in the middle on a multi-budget core (``mpqopt.algorithms.meet_core``) against exhaustive
enumeration and HiGHS: every complete search returns the best assignment of the kept items below
its target, for any multipliers; the conditions it prunes by hold for every such assignment."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from fuzz import examples

import mpqopt
from mpqopt.algorithms import meet_core
from mpqopt.algorithms.dual import solve_dual
from mpqopt.algorithms.heuristics import is_feasible
from mpqopt.algorithms.lagrangian import fixable_items
from mpqopt.algorithms.meet_core import solve_meet_core
from mpqopt.reductions import canonicalize
from mpqopt.synthetic import mckp_problem

from strategies import all_assignments, best_of_kept, close_objectives, several_budgets


def _multipliers(model, rng, kind: str) -> np.ndarray:
    """Any multipliers are valid: the LP's (from the dual), none, random, huge, one budget only."""
    if kind == "dual":
        return solve_dual(model).lam
    return {
        "zero": np.zeros(model.num_budgets),
        "random": rng.random(model.num_budgets) * float(np.abs(model.value).max(initial=1.0)) / np.maximum(np.abs(model.rhs), 1e-300),
        "huge": np.full(model.num_budgets, 1e12),
        "one budget": np.eye(model.num_budgets)[0] * 3.0,
        # a multiplier so small that gap / lam overflows: its window is unbounded, as at lam = 0
        "tiny": np.concatenate([[1e-300], rng.random(model.num_budgets - 1)]),
    }[kind]


def _setup(case, data):
    """A canonical model, every assignment of it with its totals, a random keep mask, a random
    feasible incumbent among the kept items and multipliers; None when nothing is feasible."""
    problem, budgets = case
    model = canonicalize(problem, budgets)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    keep = rng.random(model.num_items) < data.draw(st.sampled_from([0.3, 0.7, 1.0]))
    items, totals = all_assignments(model)
    limit = model.rhs + model.budget_slack  # feasible as is_feasible (and verify) check it
    feasible = items[(totals <= limit[:, None]).all(axis=0)]
    if not feasible.shape[0]:
        event("no feasible assignment")
        return None
    incumbent = feasible[rng.integers(feasible.shape[0])]
    keep[incumbent] = True
    lam = _multipliers(model, rng, data.draw(st.sampled_from(["dual", "zero", "random", "huge", "one budget", "tiny"])))
    return model, keep, incumbent, lam, limit


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=several_budgets(), data=st.data())
def test_meet_core_is_optimal_among_the_kept_items(case, data):
    """Any keep mask, feasible incumbent and multipliers, with or without a target below the
    incumbent: a complete search returns the best kept assignment below the target, or the
    incumbent when enumeration finds none there."""
    setup = _setup(case, data)
    if setup is None:
        return
    model, keep, incumbent, lam, limit = setup
    best = best_of_kept(model, keep)
    scale = float(np.abs(model.value).max(initial=0.0))
    inc_obj = model.items_objective(incumbent)
    target = None
    if data.draw(st.booleans()):  # a target between the optimum and the incumbent (or at either)
        target = best + data.draw(st.sampled_from([0.0, 0.3, 0.7, 1.0])) * (inc_obj - best)
    result = solve_meet_core(model, keep, incumbent, lam, target=target, state_limit=10**9, pair_limit=10**12)
    event(f"core groups: {min(result.core_groups, 4)}+")
    assert result.complete
    assert keep[result.items].all()
    assert (model.weights[:, result.items].sum(axis=1) <= limit).all()
    found = model.items_objective(result.items)
    goal = inc_obj if target is None else target
    if close_objectives(best, goal, scale) or best > goal:  # nothing (clearly) below the target
        assert found == inc_obj or close_objectives(found, best, scale)
    else:
        assert close_objectives(found, best, scale), (found, best, inc_obj, target)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=several_budgets(), data=st.data())
def test_every_better_assignment_meets_the_pruning_conditions(case, data):
    """The bounds the search prunes by never exceed an enumerated assignment: every kept assignment
    that meets the budgets (as ``is_feasible`` checks) below the goal uses only listed flips, their
    reduced costs over the bases sum to at most the gap, and what it weighs over the bases lies in
    every budget's window."""
    setup = _setup(case, data)
    if setup is None:
        return
    model, keep, incumbent, lam, _ = setup
    goal = model.items_objective(incumbent) + data.draw(st.sampled_from([0.0, 0.5])) * float(np.abs(model.value).max(initial=0.0))
    frame = meet_core._frame(model, keep, lam, goal)
    items, totals = all_assignments(model, keep)
    fits = (totals <= (model.rhs + model.budget_slack)[:, None]).all(axis=0)
    better = items[fits & (model.value[items].sum(axis=1) < goal)]
    event(f"assignments below the goal: {min(better.shape[0], 10)}+")
    dr = dict(zip(frame.flips.tolist(), frame.dr.tolist()))
    base = frame.base
    for x in better:
        moved = x != base
        assert all(j in dr for j in x[moved].tolist())  # no pruned flip is used
        assert sum(dr[j] for j in x[moved].tolist()) <= frame.gap
        extra = model.weights[:, x].sum(axis=1) - model.weights[:, base].sum(axis=1)
        assert (extra >= frame.room - frame.width).all() and (extra <= frame.room + frame.tol).all()


def test_limits_stop_the_search_with_the_incumbent():
    problem = mckp_problem(60, 6, 3, seed=1, budget_fraction=0.4)
    model = canonicalize(problem, problem.budgets)
    dual = solve_dual(model)
    incumbent = model.group_start[:-1].copy()  # every layer at its narrowest option: feasible
    keep = np.ones(model.num_items, dtype=bool)
    for kwargs in ({"state_limit": 1}, {"pair_limit": 0}, {"deadline": 0.0}):
        result = solve_meet_core(model, keep, incumbent, dual.lam, **kwargs)
        assert not result.complete and np.array_equal(result.items, incumbent)


@pytest.mark.parametrize("budgets", [2, 3])
@pytest.mark.parametrize("seed", range(3))
def test_matches_exact_highs_on_a_realistic_core(seed: int, budgets: int):
    """mckp_problem's structure (sensitivities falling with the bits, costs rising) at 40 layers:
    the whole model below a near-optimal incumbent (HiGHS's exact optimum with two layers moved to
    neighbouring options that keep the budgets) and the dual's multipliers, as the mckp solver hands its
    last core over; the search must return HiGHS's optimum."""
    problem = mckp_problem(40, 6, budgets, seed=seed, budget_fraction=0.35)
    exact = mpqopt.solve(problem, solver="highs:plain", threads=1)
    assert exact.status == "optimal"
    model = canonicalize(problem, problem.budgets)
    optimum = model.items_from_layers(exact.x)
    incumbent = optimum.copy()
    for _ in range(2):  # twice the move to a neighbouring option that keeps the budgets and costs least
        best_move = None
        for g in range(model.num_groups):
            for item in (incumbent[g] - 1, incumbent[g] + 1):
                if model.group_start[g] <= item < model.group_start[g + 1] and item != optimum[g]:
                    trial = incumbent.copy()
                    trial[g] = item
                    if is_feasible(model, trial) and (best_move is None or model.items_objective(trial) < model.items_objective(best_move)):
                        best_move = trial
        incumbent = incumbent if best_move is None else best_move
    assert model.items_objective(incumbent) > model.items_objective(optimum)
    result = solve_meet_core(model, np.ones(model.num_items, dtype=bool), incumbent, solve_dual(model).lam)
    assert result.complete
    assert is_feasible(model, result.items)
    assert model.items_objective(result.items) + model.offset == pytest.approx(exact.objective, rel=1e-9, abs=1e-12)


def _overusing_pair():
    """Two layers whose better assignment (both at W4) overuses budget ``c0`` by 4e-13 of it, less
    than the slack ``is_feasible`` (and verify) allow: feasible, 2e-10 below the incumbent (both
    at W2); under a large multiplier on ``c0`` its reduced cost (2e-7) exceeds that gap."""
    problem = mpqopt.Problem(["a", "b"], [2, 4], [[1.0, 1.0 - 1e-10]] * 2,
                             costs={"c0": [[0.5, 0.5 + 2e-13]] * 2, "c1": [[0.0, 0.0]] * 2})
    model = canonicalize(problem, {"c0": 1.0, "c1": 1.0})
    incumbent = model.group_start[:-1].copy()
    better = incumbent + 1
    assert is_feasible(model, incumbent) and is_feasible(model, better)
    assert model.items_objective(better) < model.items_objective(incumbent)
    assert (model.weights[:, better].sum(axis=1) > model.rhs)[0]
    return model, incumbent, better


def test_assignments_within_the_budget_slack_are_not_lost():
    """A total over ``rhs`` but within the slack leaves ``lam @ (rhs - totals)`` negative: the gap
    and the fixing margin must allow for it (``lam @ budget_slack``), or a large multiplier hides a
    feasible better assignment and the incumbent is 'proven' optimal."""
    model, incumbent, better = _overusing_pair()
    lam = np.array([1e6, 0.0])
    result = solve_meet_core(model, np.ones(model.num_items, dtype=bool), incumbent, lam)
    assert result.complete
    assert model.items_objective(result.items) == model.items_objective(better)
    drop, _ = fixable_items(model, lam, model.items_objective(incumbent))
    assert not drop[better].any()


def test_listing_reads_the_clock_while_its_partials_fit_the_first_buffer():
    """A deadline already passed stops a half's listing even before its buffer grows (the clock was
    read only on reallocation: a core whose thousands of flips each add a few partials to a large
    listing ran seconds past its deadline)."""
    problem = mckp_problem(12, 4, 2, seed=0, budget_fraction=0.5)
    model = canonicalize(problem, problem.budgets)
    base = model.group_start[:-1].copy()
    flips = np.setdiff1d(np.arange(model.num_items), base)
    dr = np.full(flips.size, 0.1)
    groups = np.arange(model.num_groups)
    assert meet_core._listing(model, flips, dr, base, groups, 0.15, 10**6, None).r.size < 1024  # fits its first buffer
    assert meet_core._listing(model, flips, dr, base, groups, 0.15, 10**6, deadline=0.0) is None


def test_the_clock_is_read_between_blocks_of_pairs(monkeypatch):
    """A chunk of first-half partials may meet up to ``pair_limit`` pairs (1.7e7 took 6.8 s and
    1.6 GB in one piece): they are checked in blocks, the clock read before each. Here the clock
    passes the deadline right after the chunk's first read; the search must stop, not finish."""
    cheap = 12  # layers whose flips cost 0.04 of the gap: 64 x 64 partials that all pair up
    sens = np.zeros((cheap + 1, 2))
    sens[:cheap, 1], sens[-1, 1] = 0.04, 1.0
    c0 = np.zeros((cheap + 1, 2))
    c0[-1, 0] = 1.0  # the last layer's base option breaks c0: the incumbent flips it
    problem = mpqopt.Problem([f"l{i}" for i in range(cheap + 1)], [2, 4], sens,
                             costs={"c0": c0, "c1": np.tile([1.0, 0.0], (cheap + 1, 1))})
    model = canonicalize(problem, {"c0": 0.0, "c1": float(cheap + 1)})
    incumbent = model.group_start[:-1].copy()
    incumbent[-1] += 1
    keep = np.ones(model.num_items, dtype=bool)
    assert solve_meet_core(model, keep, incumbent, np.zeros(2)).pairs > 64 * 16  # many blocks of 64
    listed = []
    listing = meet_core._listing
    monkeypatch.setattr(meet_core, "_listing", lambda *args: listed.append(1) or listing(*args))
    reads = []

    def clock() -> float:  # early while listing and at the chunk's first read, then late
        reads.append(len(listed) == 2)
        return 2.0 if sum(reads) > 1 else 0.0

    monkeypatch.setattr(meet_core.time, "perf_counter", clock)
    monkeypatch.setattr(meet_core, "_PAIR_BLOCK", 64, raising=False)
    result = solve_meet_core(model, keep, incumbent, np.zeros(2), deadline=1.0)
    assert not result.complete


def test_a_tiny_multiplier_warns_nothing():
    """``gap / lam`` overflows for a multiplier near 0: the window is then unbounded, silently."""
    problem = mckp_problem(9, 4, 3, seed=3, budget_fraction=0.4)
    model = canonicalize(problem, problem.budgets)
    incumbent = model.group_start[:-1].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = solve_meet_core(model, np.ones(model.num_items, dtype=bool), incumbent, np.array([1e-300, 1.0, 0.0]))
    assert result.complete
    assert model.items_objective(result.items) == pytest.approx(best_of_kept(model, np.ones(model.num_items, dtype=bool)), rel=1e-9)
