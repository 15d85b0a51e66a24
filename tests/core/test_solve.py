"""``mpqopt.solve``'s arguments: errors for bad ones, a quadratic backend for pairwise problems, warm starts and the result's fields."""

from __future__ import annotations

import numpy as np
import pytest
from toy_net import net

import mpqopt


def test_solve_argument_errors():
    p = net()
    with pytest.raises(mpqopt.MpqoptError, match="time_limit"):
        mpqopt.solve(p, time_limit=-1)
    with pytest.raises(mpqopt.MpqoptError, match="mip_gap"):
        mpqopt.solve(p, mip_gap=2)
    with pytest.raises(mpqopt.SolverError, match="unknown solver 'cplex'"):
        mpqopt.solve(p, solver="cplex")
    with pytest.raises(mpqopt.MpqoptError, match="needs an mpqopt.Problem"):
        mpqopt.solve({"layers": []})


def test_pairwise_problem_needs_a_quadratic_backend():
    p = net(pairwise=np.zeros((9, 9)))
    for separable_only in ("mckp", "greedy"):
        with pytest.raises(mpqopt.SolverError, match="pairwise"):
            mpqopt.solve(p, solver=separable_only)
    assert mpqopt.solve(p, solver="bruteforce").status == "optimal"
    assert mpqopt.solve(p).solver == "bnb (auto)"


def test_warm_start_and_result_fields():
    p = net(budgets={"size_bits": "50%"})
    cold = mpqopt.solve(p)
    warm = mpqopt.solve(p, warm_start=cold.assignment)
    assert warm.objective == cold.objective and warm.status == "optimal"
    d = cold.to_dict()
    for key in ("status", "objective", "bound", "gap", "assignment", "costs", "slack", "solver", "solve_time_s", "message"):
        assert key in d
    assert cold.fun == cold.objective and cold.success


def test_a_status_outside_the_documented_set_is_an_internal_error():
    from mpqopt.result import STATUSES, Result

    assert STATUSES == ("optimal", "feasible", "infeasible", "time_limit", "error")
    with pytest.raises(mpqopt.MpqoptError, match="internal error: result status 'done'"):
        Result("done", "", net())
