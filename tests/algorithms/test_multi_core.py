"""The core DP for several budgets (``mpqopt.algorithms.multi_core``) against independent answers:
exhaustive enumeration, the exhaustive oracle, HiGHS, and LIMPQ's published optimum."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from fuzz import examples

import mpqopt
import mpqopt.solvers.mckp as mckp_module
from mpqopt.algorithms import core_dp, multi_core
from mpqopt.algorithms.meet_core import solve_meet_core
from mpqopt.algorithms.multi_core import solve_multi_core
from mpqopt.importers import limpq_problem
from mpqopt.reductions import canonicalize
from mpqopt.synthetic import mckp_problem
from mpqopt.verify import violations

from conftest import PEERS
from oracle import brute_force
from strategies import all_assignments, best_of_kept, close_objectives, several_budgets

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out

LIMPQ_OBJECTIVE = 4.617439227178686  # README of the peer data: the published policy's objective


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=several_budgets(), data=st.data())
def test_core_dp_is_optimal_among_the_kept_items(case, data):
    """Any keep mask, any feasible incumbent, any multipliers (the bound must be valid for all of
    them) and any block size: the DP's answer is the best assignment of the kept items."""
    problem, budgets = case
    model = canonicalize(problem, budgets)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    items, totals = all_assignments(model)
    limit = model.rhs + model.budget_slack  # feasible as is_feasible (and verify) check it
    feasible = items[(totals <= limit[:, None]).all(axis=0)]
    if not feasible.shape[0]:
        event("no feasible assignment")
        return
    incumbent = feasible[rng.integers(feasible.shape[0])]
    keep = rng.random(model.num_items) < data.draw(st.sampled_from([0.3, 0.7, 1.0]))
    keep[incumbent] = True
    lam = {
        "zero": np.zeros(model.num_budgets),
        "random": rng.random(model.num_budgets) * float(np.abs(model.value).max(initial=1.0)) / np.maximum(np.abs(model.rhs), 1e-300),
        "huge": np.full(model.num_budgets, 1e12),
        "one budget": np.eye(model.num_budgets)[0] * 3.0,
    }[data.draw(st.sampled_from(["zero", "random", "huge", "one budget"]))]
    with pytest.MonkeyPatch.context() as patch:  # exactness is tested here, not the give-up limits
        patch.setattr(core_dp, "BLOCK_COMBINATIONS", data.draw(st.sampled_from([2, 6, 128])))
        patch.setattr(multi_core, "STATE_LIMIT", 10**9)
        result = solve_multi_core(model, keep, incumbent, lam, work_limit=np.inf)
    event(f"core groups: {min(result.core_groups, 4)}+")
    assert result.complete
    assert keep[result.items].all()
    assert (model.weights[:, result.items].sum(axis=1) <= limit).all()
    assert close_objectives(model.items_objective(result.items), best_of_kept(model, keep), float(np.abs(model.value).max(initial=0.0)))


@settings(max_examples=examples(250), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=several_budgets())
def test_mckp_matches_the_exhaustive_oracle_with_several_budgets(case):
    problem, budgets = case
    best, _ = brute_force(problem, budgets)
    result = mpqopt.solve(problem, budgets=budgets, solver="mckp")
    if best is None:
        assert result.status == "infeasible", result.message
        return
    event("core DP" if "core DP" in result.message else "HiGHS")
    assert result.status == "optimal", result.message
    assert violations(problem, result.x, budgets) == []
    tol = 1e-9 * problem.objective_scale
    assert abs(result.objective - best) <= tol
    assert result.bound <= best + tol


@pytest.mark.parametrize("n", [1, 2, 7, 60, 511, 512, 513, 1500])
@pytest.mark.parametrize("m", [2, 3])
def test_dominance_filter_keeps_exactly_the_pareto_set(n, m):
    """Against pairwise brute force, with many ties and duplicates (integer states), one chunk or several."""
    rng = np.random.default_rng(n * 10 + m)
    gain = rng.integers(0, 6, n).astype(float)
    cost = rng.integers(0, 6, (m, n)).astype(float)
    kept, _ = multi_core._nondominated(gain, cost, np.inf, n)
    states = np.vstack([cost, gain[None, :]]).T
    no_worse = (states[None, :, :] <= states[:, None, :]).all(axis=2)  # [s, t]: t no worse than s anywhere
    better = no_worse & (states[None, :, :] < states[:, None, :]).any(axis=2)
    pareto = {tuple(row) for row in states[~better.any(axis=1)]}
    assert {tuple(row) for row in states[kept]} == pareto
    assert len(kept) == len(pareto)  # one of each set of equal states


MEDIUM = [  # (layers, options, budgets, seed, fraction, kind, ties, fixed, masked)
    (40, 6, 2, 1, 0.5, "cnn", 3, 2, 0.1),
    (60, 4, 2, 2, 0.2, "llm", 0, 0, 0.0),
    (50, 8, 2, 3, 0.8, "groups", 4, 1, 0.2),
    (30, 6, 3, 4, 0.5, "cnn", 2, 1, 0.0),
    (45, 4, 3, 5, 0.2, "llm", 0, 2, 0.3),
    (35, ["W2A4", "W2A8", "W4A4", "W4A8", "W8A4", "W8A8"], 2, 6, 0.35, "cnn", 0, 0, 0.0),
    (25, ["W2A4", "W2A8", "W4A4", "W4A8", "W8A8"], 3, 7, 0.6, "cnn", 2, 0, 0.1),
    (70, 4, 2, 8, 0.05, "groups", 0, 0, 0.0),
    (80, 6, 2, 21, 0.3, "cnn", 0, 0, 0.0),  # cores of 45-75 groups
    (90, ["W2A4", "W2A8", "W4A4", "W4A8", "W8A4", "W8A8"], 2, 21, 0.45, "cnn", 0, 0, 0.0),
    (60, 6, 3, 23, 0.4, "llm", 0, 0, 0.0),
    (100, 8, 2, 22, 0.7, "cnn", 0, 0, 0.0),  # too many states: HiGHS proves it
]


def test_mckp_matches_highs_on_medium_problems():
    """Larger than the oracle can enumerate: HiGHS's proven optimum on the naive-sized model."""
    used_dp = 0
    for layers, options, budgets, seed, fraction, kind, ties, fixed, masked in MEDIUM:
        problem = mckp_problem(layers, options, budgets, seed, budget_fraction=fraction, kind=kind, ties=ties, fixed=fixed, masked=masked)
        ours = mpqopt.solve(problem, solver="mckp")
        theirs = mpqopt.solve(problem, solver="highs")
        assert ours.status == theirs.status == "optimal", (seed, ours.message, theirs.message)
        assert close_objectives(ours.objective, theirs.objective, 1.0), (seed, ours.objective, theirs.objective)
        assert ours.bound <= theirs.objective + 1e-9 * max(1.0, abs(theirs.objective))
        used_dp += "core DP" in ours.message
    assert used_dp >= len(MEDIUM) // 2  # the cases exercise the DP, not only the HiGHS fallback


def test_give_up_falls_back_to_highs_with_the_same_optimum(monkeypatch):
    problem = mckp_problem(40, 6, 3, 11, budget_fraction=0.4, kind="cnn")
    expected = mpqopt.solve(problem, solver="highs")
    model = canonicalize(problem, problem.budgets)
    start = mpqopt.solve(problem, solver="greedy")
    incumbent = model.items_from_layers(start.x)
    keep = np.ones(model.num_items, dtype=bool)
    for stopped in (solve_multi_core(model, keep, incumbent, np.zeros(model.num_budgets), work_limit=0),
                    solve_multi_core(model, keep, incumbent, np.zeros(model.num_budgets), deadline=0.0)):
        assert not stopped.complete
        assert (stopped.items == incumbent).all()
    monkeypatch.setattr(mckp_module, "solve_multi_core", functools.partial(solve_multi_core, work_limit=0))
    monkeypatch.setattr(mckp_module, "solve_meet_core", functools.partial(solve_meet_core, state_limit=0))
    result = mpqopt.solve(problem, solver="mckp")
    assert "HiGHS core" in result.message
    assert result.status == "optimal"
    assert close_objectives(result.objective, expected.objective, 1.0)


@pytest.fixture(scope="module")
def limpq_hook():
    if not PEERS.is_dir():
        pytest.skip(f"peer data not found at {PEERS} (../shared/peers beside the repository)")
    return limpq_problem(PEERS / "limpq_resnet50.json", macs="hook")


def test_limpq_two_budgets_proved_by_the_core_dp(limpq_hook):
    result = mpqopt.solve(limpq_hook, solver="mckp")
    assert result.status == "optimal"
    assert "core DP" in result.proof
    assert result.objective == pytest.approx(LIMPQ_OBJECTIVE, rel=1e-9)
    assert result.bound == pytest.approx(LIMPQ_OBJECTIVE, rel=1e-9)
    assert violations(limpq_hook, result.x, limpq_hook.budgets) == []
