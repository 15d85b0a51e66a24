"""The Pyomo backend (``pyomo:appsi_highs``) against the exhaustive oracle, its errors for unknown or
missing solvers, and the ``to_pyomo`` round trip. Skipped without pyomo."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fuzz import examples
from hypothesis import HealthCheck, example, given, settings

pe = pytest.importorskip("pyomo.environ", reason="pyomo is not installed (pip install mpqopt[pyomo]); the Pyomo backend is optional")

from oracle import brute_force  # noqa: E402
from strategies import HIGHS116_START_PRESOLVE, _check_against_oracle, problems  # noqa: E402

import mpqopt  # noqa: E402
from mpqopt.solvers import get_backend  # noqa: E402
from mpqopt.synthetic import iqp_problem, mckp_problem  # noqa: E402
from mpqopt.verify import violations  # noqa: E402

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out

if not pe.SolverFactory("appsi_highs").available(exception_flag=False):
    pytest.skip("Pyomo's appsi_highs interface cannot run (highspy missing)", allow_module_level=True)


def _matches_oracle(problem, solver="pyomo:appsi_highs"):
    best, _ = brute_force(problem, problem.budgets)
    result = mpqopt.solve(problem, solver=solver)
    assert result.status == "optimal", result.message
    assert violations(problem, result.x, result.budgets) == []
    assert result.objective == pytest.approx(best, rel=1e-9, abs=1e-12)
    assert result.bound <= result.objective + 1e-12 and result.gap <= 1e-9
    return result


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=problems())
def test_separable_problems_match_oracle(case):
    """Magnitudes 1e-9..1e7, plateaus, signed values, 1-3 budgets, ties, masks, fixed layers."""
    _check_against_oracle(*case, solver="pyomo:appsi_highs")


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=problems(pairwise=True))
@example(case=HIGHS116_START_PRESOLVE)
def test_pairwise_problems_match_oracle(case):
    """Indefinite random-sign pairwise matrices, through the exact one-hot linearization."""
    _check_against_oracle(*case, solver="pyomo:appsi_highs")


@pytest.mark.parametrize("seed", [0, 1])
def test_several_budgets_ties_fixed_and_masks(seed):
    problem = mckp_problem(9, 3, budgets=3, seed=seed, ties=2, fixed=1, masked=0.2, budget_fraction=0.45)
    result = _matches_oracle(problem, solver="pyomo")  # no argument: appsi_highs
    assert result.solver == "pyomo:appsi_highs"


@pytest.mark.parametrize("layers, noise, seed", [(6, 0.1, 0), (8, 1.0, 2)])
def test_clado_shaped_problems_match_oracle(layers, noise, seed):
    result = _matches_oracle(iqp_problem(layers, 3, seed=seed, noise=noise))
    assert "linearization" in result.proof


def test_settings_are_accepted_and_warm_start_kept():
    problem = iqp_problem(8, 3, seed=5, noise=0.5)
    best, _ = brute_force(problem, problem.budgets)
    exact = mpqopt.solve(problem, solver="pyomo", threads=1, time_limit=30)
    assert exact.status == "optimal" and exact.objective == pytest.approx(best, rel=1e-9)
    warm = mpqopt.solve(problem, solver="pyomo", warm_start=exact.assignment)
    assert warm.status == "optimal" and warm.objective == pytest.approx(best, rel=1e-9)
    loose = mpqopt.solve(problem, solver="pyomo", mip_gap=0.5)
    assert loose.status == "optimal" and loose.gap <= 0.5 and loose.objective >= best - 1e-12


def test_jointly_infeasible_budgets():
    problem = mpqopt.Problem(["a", "b"], [4, 8], [[1.0, 0.0], [1.0, 0.0]],
                             costs={"size_bits": [[4, 8], [4, 8]], "latency_ms": [[8, 4], [8, 4]]},
                             budgets={"size_bits": 11, "latency_ms": 11})
    result = mpqopt.solve(problem, solver="pyomo")
    assert result.status == "infeasible" and result.x is None


def test_unknown_solver_name_is_one_clear_line():
    with pytest.raises(mpqopt.SolverError) as info:
        get_backend("pyomo:no_such_solver_xyz")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("pyomo:no_such_solver_xyz: Pyomo knows no solver 'no_such_solver_xyz'; available here: ")
    assert "appsi_highs" in message


def test_unavailable_solver_names_the_install_and_the_alternatives(monkeypatch):
    # forced: whether cbc is installed where the tests run must not matter
    cls = type(pe.SolverFactory("cbc"))
    monkeypatch.setattr(cls, "available", lambda self, exception_flag=True: False)
    with pytest.raises(mpqopt.SolverUnavailableError) as info:
        mpqopt.solve(mckp_problem(5, 3, seed=0), solver="pyomo:cbc")
    message = str(info.value)
    assert "\n" not in message and message.startswith("pyomo:cbc: Pyomo cannot run 'cbc' on this machine (install: ")
    assert "coin-or-cbc" in message
    listed = message.split("available here: ")[1].split(", ")
    assert "appsi_highs" in listed and "cbc" not in listed


@pytest.mark.parametrize("pairwise", [False, True])
def test_to_pyomo_round_trip(pairwise):
    problem = iqp_problem(7, 3, seed=1, noise=0.5) if pairwise else mckp_problem(9, 3, budgets=2, seed=4, ties=2, fixed=1, masked=0.2)
    m, mapping = mpqopt.to_pyomo(problem)
    solved = pe.SolverFactory("appsi_highs").solve(m)
    assert str(solved.solver.termination_condition) == "optimal"
    assignment = mapping(m)
    assert set(assignment) == set(problem.layers)
    assert problem.fixed.items() <= assignment.items()
    assert violations(problem, problem.as_indices(assignment), problem.budgets) == []
    best, _ = brute_force(problem, problem.budgets)  # independent of mpqopt.solve
    objective = problem.evaluate(assignment).objective
    assert objective == pytest.approx(best, rel=1e-7, abs=1e-12)
    assert objective == pytest.approx(mpqopt.solve(problem).objective, rel=1e-7, abs=1e-12)
    assert pe.value(m.objective) == pytest.approx(objective, rel=1e-7, abs=1e-12)  # user units, offset included


def test_to_pyomo_keeps_dominated_options_for_user_constraints():
    problem = mckp_problem(6, 3, seed=0)
    m, mapping = mpqopt.to_pyomo(problem, budgets={next(iter(problem.budgets)): "100%"})
    # every option of every layer is a column: a user constraint may force any of them
    assert len(m.x) == problem.num_layers * problem.num_options
    layer, label = problem.layers[0], problem.options[0].label
    m.user_pick = pe.Constraint(expr=m.x[mapping.variable(layer, label)] == 1)
    pe.SolverFactory("appsi_highs").solve(m)
    assert mapping(m)[layer] == label


def test_importing_mpqopt_does_not_import_pyomo():
    code = ("import sys, mpqopt; from mpqopt.synthetic import mckp_problem; "
            "mpqopt.solve(mckp_problem(5, 3, seed=0)); print('pyomo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_time_limit_stops_the_solver_with_a_verified_assignment():
    problem = mckp_problem(3000, 8, seed=0)  # HiGHS's plain MILP needs ~30 s here
    # a warm start gives HiGHS an assignment from the first node: on a loaded machine it may find
    # none of its own within the limit
    start = mpqopt.solve(problem, solver="greedy").assignment
    result = mpqopt.solve(problem, solver="pyomo", time_limit=1.0, warm_start=start)
    assert result.solve_time_s < 10.0  # HiGHS overshoots its own limit by a second or two
    assert result.status in ("time_limit", "optimal"), result.message
    assert result.x is not None and violations(problem, result.x, result.budgets) == []
    # no bound when HiGHS's root LP has not finished within the limit (a loaded machine); any bound it
    # reports must hold
    assert result.bound is None or result.bound <= result.objective
