"""Random problems and the exhaustive-oracle check that the property tests of several folders share
(tests/core, tests/solvers, tests/reductions): tests/ is on sys.path (tests/conftest.py), a test folder is
only while its own files run, so shared strategies live here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import event
from hypothesis import strategies as st
from oracle import brute_force

import mpqopt
from mpqopt.verify import BUDGET_RTOL, violations

MAGNITUDES = [1e-9, 1e-3, 1.0, 1e3, 1e7]
DATA = Path(__file__).resolve().parent / "data"


def pinned(name: str) -> tuple[mpqopt.Problem, dict[str, float]]:
    """A counterexample fuzzing found, kept in tests/data with its budgets (``@example``)."""
    problem = mpqopt.load(DATA / name)
    return problem, dict(problem.budgets)


# pyomo:appsi_highs and highs: HiGHS 1.16 returned the warm start as 'Optimal' with a presolved-space objective
HIGHS116_START_PRESOLVE = pinned("highs116_start_presolve.json")


@st.composite
def problems(draw, pairwise: bool = False):
    L = draw(st.integers(1, 6 if not pairwise else 5))
    K = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from(MAGNITUDES))
    sens = rng.random((L, K)) * scale
    if draw(st.booleans()):  # plateaus: equal and zero sensitivities
        sens = np.round(sens / scale * 3) * scale / 3
        sens[rng.random((L, K)) < 0.2] = 0.0
    if draw(st.booleans()):  # signed values (HAWQ-style objectives are negative)
        sens -= scale / 2
    n_costs = draw(st.integers(1, 3))
    costs = {}
    for c in range(n_costs):
        cost_scale = draw(st.sampled_from(MAGNITUDES))
        table = rng.integers(0, 5, (L, K)).astype(float) if draw(st.booleans()) else rng.random((L, K))
        costs[f"c{c}"] = table * cost_scale
    allowed = None
    if draw(st.booleans()):
        allowed = rng.random((L, K)) < 0.75
        allowed[np.arange(L), rng.integers(0, K, L)] = True
    problem_kwargs = dict(costs=costs, allowed=allowed)
    layers = [f"layer{i}" for i in range(L)]
    base = mpqopt.Problem(layers, [f"W{k + 2}" for k in range(K)], sens, **problem_kwargs)
    ties = []
    if L >= 2 and draw(st.booleans()):
        members = draw(st.lists(st.sampled_from(layers), min_size=2, max_size=3, unique=True))
        common = np.all(base.allowed[[layers.index(m) for m in members]], axis=0)
        if common.any():
            ties = [members]
    fixed = {}
    if draw(st.booleans()):
        name = draw(st.sampled_from(layers))
        i = layers.index(name)
        ok = np.nonzero(base.allowed[i])[0]
        fixed = {name: base.options[int(rng.choice(ok))].label}
    omega = None
    if pairwise:
        omega = rng.normal(size=(L * K, L * K)) * scale * draw(st.sampled_from([0.1, 1.0]))
    try:
        problem = base.replace(ties=ties, fixed=fixed, pairwise=omega)
    except mpqopt.ProblemError:  # tie/fixed combination with no common option: valid input rejection
        problem = base.replace(pairwise=omega)
    budgets = {}
    for name in costs:
        if draw(st.integers(0, 4)) > 0:
            lo, hi = problem.cost_range(name)
            frac = draw(st.sampled_from([-0.1, 0.0, 0.3, 0.5, 1.0]))
            budgets[name] = max(lo + frac * (hi - lo), 0.0)
    return problem, budgets


def _check_against_oracle(problem, budgets, solver):
    best, optimal_set = brute_force(problem, budgets)
    result = mpqopt.solve(problem, budgets=budgets, solver=solver)
    event(f"status={result.status}, ties={bool(problem.ties)}, fixed={bool(problem.fixed)}, budgets={len(budgets)}")
    if best is None:
        assert result.status == "infeasible", result.message
        assert result.x is None
        assert result.infeasibility is not None and result.infeasibility.message
        return
    assert result.status == "optimal", result.message
    assert violations(problem, result.x, budgets) == []
    # right relative to the problem's own magnitude (sensitivities of 1e-9 are as exact as of 1e7)
    tol = 1e-9 * problem.objective_scale
    assert result.objective == pytest.approx(best, rel=1e-9, abs=tol)
    assert result.gap is not None and result.gap <= 1e-9
    assert result.bound <= result.objective + tol
    for name, limit in budgets.items():
        assert result.costs[name] <= limit * (1 + 1e-9)
        # slack is never negative: a total within verify.BUDGET_RTOL above the limit meets it, slack 0
        assert result.slack[name] == pytest.approx(max(limit - result.costs[name], 0.0))
        assert limit - result.costs[name] >= -BUDGET_RTOL * max(abs(limit), abs(result.costs[name]))
