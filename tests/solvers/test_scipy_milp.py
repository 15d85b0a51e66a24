"""The ``scipy`` backend (scipy.optimize.milp, ``mpqopt.solvers.scipy_milp``) against exhaustive search."""

from __future__ import annotations

import pytest
from milp_cases import _problem
from oracle import brute_force

import mpqopt
from mpqopt.verify import violations

highspy = pytest.importorskip("highspy")


CASES = [dict(), dict(budgets=1), dict(budgets=3), dict(ties=True), dict(fixed=True), dict(ties=True, fixed=True),
         dict(pairwise=True), dict(pairwise=True, budgets=1, fixed=True), dict(pairwise=True, ties=True, budgets=3)]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_scipy_backend_matches_exhaustive_search(seed, case):
    problem = _problem(seed, **case)
    best, _ = brute_force(problem, problem.budgets)
    result = mpqopt.solve(problem, solver="scipy")
    if best is None:
        assert result.status == "infeasible", result.message
        return
    assert result.status == "optimal", result.message
    assert violations(problem, result.x, problem.budgets) == []
    assert result.objective == pytest.approx(best, rel=1e-9, abs=1e-12)
    assert result.bound <= result.objective + 1e-12 and result.gap <= 1e-6
    assert "scipy.optimize.milp" in result.proof


def test_scipy_backend_is_registered_and_reports_time_limits():
    from mpqopt.solvers import backend_names
    from mpqopt.synthetic import iqp_problem

    assert "scipy" in backend_names()
    problem = iqp_problem(30, 4, seed=0, noise=0.5)
    result = mpqopt.solve(problem, solver="scipy", time_limit=0.05)
    assert result.status in ("time_limit", "optimal", "feasible")
    if result.x is not None:  # whatever came back meets the budgets
        assert violations(problem, result.x, problem.budgets) == []
    if result.bound is not None and result.objective is not None:
        assert result.bound <= result.objective + 1e-9
