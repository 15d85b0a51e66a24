"""The Gurobi backend: ILP and MIQP (original, exact convex forms, CLADO's PSD mode) against the
exhaustive oracle; settings, statuses, licence errors. Skipped without gurobipy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from fuzz import examples
from hypothesis import HealthCheck, given, settings

gp = pytest.importorskip("gurobipy", reason="gurobipy is not installed (pip install mpqopt[gurobi]); the Gurobi backend is optional")

from oracle import brute_force  # noqa: E402
from strategies import _check_against_oracle, problems  # noqa: E402

import mpqopt  # noqa: E402
from mpqopt.reductions import canonicalize  # noqa: E402
from mpqopt.solvers import SolveSettings, get_backend  # noqa: E402
from mpqopt.synthetic import iqp_problem, mckp_problem  # noqa: E402
from mpqopt.verify import violations  # noqa: E402

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out

EXACT_MODES = ("gurobi", "gurobi:onehot", "gurobi:mineig")


def _matches_oracle(problem, solver):
    """Outside hypothesis (whose shared checker records events): optimum, bound and feasibility."""
    best, _ = brute_force(problem, problem.budgets)
    result = mpqopt.solve(problem, solver=solver)
    assert result.status == "optimal", result.message
    assert violations(problem, result.x, result.budgets) == []
    assert result.objective == pytest.approx(best, rel=1e-9, abs=1e-12)
    assert result.bound <= result.objective and result.gap <= 1e-9


@pytest.mark.parametrize("solver", EXACT_MODES)
@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=problems(pairwise=True))
def test_pairwise_random_sign_problems_match_oracle(solver, case):
    """Indefinite, asymmetric random-sign matrices from 1e-9 to 1e7, ties, masks, fixed layers, 1-3 budgets."""
    _check_against_oracle(*case, solver=solver)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=problems())
def test_separable_problems_match_oracle(case):
    _check_against_oracle(*case, solver="gurobi")


@pytest.mark.parametrize("solver", EXACT_MODES)
@pytest.mark.parametrize("layers, noise, seed", [(6, 0.1, 0), (7, 0.5, 1), (8, 1.0, 2)])
def test_clado_shaped_problems_match_oracle(solver, layers, noise, seed):
    _matches_oracle(iqp_problem(layers, 3, seed=seed, noise=noise), solver)


@pytest.mark.parametrize("seed", [0, 1])
def test_separable_with_several_budgets_ties_fixed_and_masks(seed):
    problem = mckp_problem(9, 3, budgets=3, seed=seed, ties=2, fixed=1, masked=0.2, budget_fraction=0.45)
    for solver in ("gurobi", "gurobi:onehot"):  # without a pairwise term every mode is the same ILP
        _matches_oracle(problem, solver)


def test_psd_mode_reports_the_original_objective_and_no_bound():
    problem = iqp_problem(7, 3, seed=4, noise=1.0)
    best, _ = brute_force(problem, problem.budgets)
    result = mpqopt.solve(problem, solver="gurobi:psd")
    assert result.status == "feasible" and result.bound is None and result.gap is None
    assert "PSD-projected" in result.message and "no proof of optimality" in result.message
    assert violations(problem, result.x, result.budgets) == []
    # the objective is the original one at the returned assignment, never below the true optimum
    assert result.objective == problem.evaluate(result.x).objective
    assert result.objective >= best - 1e-12 * abs(best)
    assert result.solver == "gurobi:psd"


def test_jointly_infeasible_budgets():
    # each budget alone is met by some assignment, both together by none: only the backend can tell
    problem = mpqopt.Problem(["a", "b"], [4, 8], [[1.0, 0.0], [1.0, 0.0]],
                             costs={"size_bits": [[4, 8], [4, 8]], "latency_ms": [[8, 4], [8, 4]]},
                             budgets={"size_bits": 11, "latency_ms": 11}, pairwise=np.ones((4, 4)))
    for solver in EXACT_MODES + ("gurobi:psd",):
        result = mpqopt.solve(problem, solver=solver)
        assert result.status == "infeasible" and result.x is None, (solver, result.message)


def test_time_limit_returns_a_verified_assignment_and_bound():
    # the original nonconvex MIQP of this 52-layer problem needs 15-30 s here: 1 s must stop it
    problem = iqp_problem(52, 3, seed=0, noise=0.1)
    result = mpqopt.solve(problem, solver="gurobi", time_limit=1.0)
    assert result.solve_time_s < 5.0
    assert result.status == "time_limit", result.message
    assert result.x is not None and violations(problem, result.x, result.budgets) == []
    assert result.bound is not None and result.bound <= result.objective


def test_onehot_proves_the_52_layer_problem_and_agrees_with_highs():
    problem = iqp_problem(52, 3, seed=1, noise=0.1)
    onehot = mpqopt.solve(problem, solver="gurobi:onehot", time_limit=60)
    assert onehot.status == "optimal" and onehot.gap <= 1e-9, onehot.message
    assert onehot.stats["convexify"]["method"] == "onehot"
    highs = mpqopt.solve(problem, solver="highs", time_limit=60)  # independent exact method (linearization)
    assert highs.status == "optimal"
    assert onehot.objective == pytest.approx(highs.objective, rel=1e-9)


def test_settings_are_honoured(capfd):
    problem = iqp_problem(8, 3, seed=5, noise=0.5)
    best, _ = brute_force(problem, problem.budgets)
    capfd.readouterr()
    quiet = mpqopt.solve(problem, solver="gurobi", threads=1)
    assert capfd.readouterr().out == ""  # no licence banner, no log
    loud = mpqopt.solve(problem, solver="gurobi", verbose=True, threads=1)
    assert "Gurobi" in capfd.readouterr().out
    assert quiet.objective == loud.objective == pytest.approx(best, rel=1e-9)
    # a warm start at the optimum is accepted; a loose gap is respected
    warm = mpqopt.solve(problem, solver="gurobi:onehot", warm_start=quiet.assignment)
    assert warm.status == "optimal" and warm.objective == pytest.approx(best, rel=1e-9)
    loose = mpqopt.solve(problem, solver="gurobi", mip_gap=0.5)
    assert loose.status == "optimal" and loose.gap <= 0.5 and loose.objective >= best - 1e-12


def test_unknown_argument_is_rejected():
    with pytest.raises(mpqopt.SolverError, match="gurobi:onehot, gurobi:mineig, gurobi:psd"):
        get_backend("gurobi:sdp")
    assert get_backend("gurobi:psd").label == "gurobi:psd"


def _refuse(self, *args, **kwargs):
    raise gp.GurobiError(10010, "Model too large for size-limited license; visit https://gurobi.com/unrestricted for more information")


@pytest.mark.parametrize("pairwise", [False, True])
def test_size_limited_licence_error_is_one_clear_line(monkeypatch, pairwise):
    """Forced by monkeypatching Model.optimize (where the pip licence refuses): independent of the licence installed."""
    monkeypatch.setattr(gp.Model, "optimize", _refuse)
    problem = iqp_problem(6, 3, seed=0) if pairwise else mckp_problem(6, 3, seed=0)
    model = canonicalize(problem, problem.budgets)
    with pytest.raises(mpqopt.SolverError) as info:
        get_backend("gurobi").solve(model, SolveSettings())
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"gurobi: the size-limited pip licence refused this model ({model.num_items} variables, {model.num_groups + 1} constraints;")
    assert "GRB_LICENSE_FILE" in message and ("'bnb'" in message) == pairwise
    result = mpqopt.solve(problem, solver="gurobi:onehot" if pairwise else "gurobi")
    assert result.status == "error" and "size-limited pip licence" in result.message and result.x is None


def test_other_gurobi_errors_do_not_leak_tracebacks(monkeypatch):
    def broken(self, *args, **kwargs):
        raise gp.GurobiError(10005, "Unable to retrieve attribute 'X'\nsecond line")

    monkeypatch.setattr(gp.Model, "optimize", broken)
    problem = mckp_problem(5, 3, seed=0)
    result = mpqopt.solve(problem, solver="gurobi")
    assert result.status == "error" and result.message == "gurobi: Gurobi error 10005: Unable to retrieve attribute 'X' second line"


def test_real_licence_limit_or_full_solve():
    """Whatever licence is installed: 2,200 variables either solve (full licence, same optimum as
    mckp) or fail with the clear size-limit message (the pip licence stops at 2,000)."""
    problem = mckp_problem(1100, [4, 8], seed=2)
    result = mpqopt.solve(problem, solver="gurobi")
    if result.status == "error":
        assert result.message.startswith("gurobi: the size-limited pip licence refused this model (2200 variables, 1101 constraints;")
    else:
        assert result.status == "optimal"
        assert result.objective == pytest.approx(mpqopt.solve(problem, solver="mckp").objective, rel=1e-9)


def test_importing_mpqopt_does_not_import_gurobipy():
    code = ("import sys, mpqopt; from mpqopt.synthetic import mckp_problem; "
            "mpqopt.solve(mckp_problem(5, 3, seed=0)); print('gurobipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


