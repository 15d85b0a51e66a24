"""Every exact backend is exact relative to the problem's own magnitude: the same problem with its
objective scaled by 1e-12..1e12 (and its costs and budgets, separately, by 1e-12..1e12) has the same
optimal assignments, each found, proven and re-checked in the user's units."""

from __future__ import annotations

import pytest
from oracle import brute_force

import mpqopt
from mpqopt.budgets import resolve_budgets
from mpqopt.solvers import backend_class
from mpqopt.synthetic import iqp_problem, mckp_problem
from mpqopt.verify import violations

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out

SEPARABLE = ["mckp", "highs", "highs:plain", "scipy", "gurobi", "pyomo", "bnb", "bruteforce"]
PAIRWISE = ["bnb", "highs", "scipy", "gurobi", "gurobi:onehot", "pyomo", "bruteforce"]
SCALES = [1e-12, 1e-6, 1.0, 1e6, 1e12]


def _scaled(problem: mpqopt.Problem, objective: float, cost: float) -> tuple[mpqopt.Problem, dict[str, float]]:
    budgets = {name: limit * cost for name, limit in resolve_budgets(problem, None, base=problem.budgets).items()}
    return problem.replace(
        sensitivity=problem.sensitivity * objective,
        pairwise=None if problem.pairwise is None else problem.pairwise * objective,
        costs={name: table * cost for name, table in problem.costs.items()},
        budgets={},
    ), budgets


def _check(problem: mpqopt.Problem, budgets: dict[str, float], solver: str) -> None:
    if not backend_class(solver).available():
        pytest.skip(f"solver '{solver}' is not installed")
    best, optimal = brute_force(problem, budgets)
    result = mpqopt.solve(problem, budgets=budgets, solver=solver)
    assert result.status == "optimal", (solver, result.message)
    assert violations(problem, result.x, budgets) == []
    assert tuple(int(k) for k in result.x) in optimal, (solver, result.objective, best)
    tol = 1e-9 * problem.objective_scale
    assert abs(result.objective - best) <= tol
    assert result.bound is not None and result.bound <= best + tol


@pytest.mark.parametrize("objective", SCALES)
@pytest.mark.parametrize("solver", SEPARABLE)
def test_separable_objective_scale(solver: str, objective: float) -> None:
    base = mckp_problem(7, 4, budgets=2, seed=11)
    _check(*_scaled(base, objective, 1.0), solver)


@pytest.mark.parametrize("cost", [1e-12, 1e12])
@pytest.mark.parametrize("solver", SEPARABLE)
def test_separable_cost_scale(solver: str, cost: float) -> None:
    base = mckp_problem(7, 4, budgets=2, seed=11)
    _check(*_scaled(base, 1.0, cost), solver)


@pytest.mark.parametrize("objective", SCALES)
@pytest.mark.parametrize("solver", PAIRWISE)
def test_pairwise_objective_scale(solver: str, objective: float) -> None:
    base = iqp_problem(5, 3, seed=4, noise=1.0)
    _check(*_scaled(base, objective, 1.0), solver)
