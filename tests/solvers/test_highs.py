"""The HiGHS backend's own pieces (``mpqopt.solvers.highs``, ``mpqopt.highs_runtime``): its public
core-solve API that other backends call, and the one place HiGHS objects are made and run.
Answers are checked against mpqopt's independent exact engines (``mckp``, exhaustive search)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import mpqopt
from mpqopt.reductions import canonicalize
from mpqopt.solvers import SolveSettings
from mpqopt.solvers.highs import HighsBackend
from mpqopt.synthetic import knapsack_problem, mckp_problem

from oracle import brute_force


@pytest.mark.parametrize("budgets", [1, 2, 3])
def test_solve_milp_on_a_whole_model_matches_the_exact_engines(budgets):
    problem = mckp_problem(7, 4, budgets=budgets, seed=budgets)
    model = canonicalize(problem, problem.budgets)
    raw = HighsBackend().solve_milp(model, SolveSettings(), None)
    assert raw.status == "optimal"
    best, _ = brute_force(problem, problem.budgets)
    assert raw.objective + model.offset == pytest.approx(best, rel=1e-9)
    assert raw.bound <= raw.objective + 1e-12 * abs(raw.objective)


def test_solve_core_keeps_the_incumbent_and_proves_the_model_optimum():
    """A core of the incumbent's items only: HiGHS can do no better, so the incumbent comes back."""
    problem = knapsack_problem(30, 5, "weakly", R=100, seed=2)
    model = canonicalize(problem, problem.budgets)
    exact = mpqopt.solve(problem, solver="mckp")
    incumbent = model.items_from_layers(exact.x)
    keep = np.zeros(model.num_items, dtype=bool)
    keep[incumbent] = True
    raw = HighsBackend().solve_core(model, keep, incumbent, exact.objective - model.offset, SolveSettings(), None, {})
    assert raw.items is not None and model.items_objective(raw.items) == pytest.approx(exact.objective - model.offset, rel=1e-12)


def test_changing_threads_between_solves_keeps_proving_optimality():
    """HiGHS 1.16's process-wide pool must be reset when the count changes (it stopped with 'Not Set')."""
    problem = mckp_problem(300, 8, 3, seed=0, kind="cnn")
    reference = mpqopt.solve(problem, solver="mckp", mip_gap=1e-6)
    for threads in (1, 2, 1):
        r = mpqopt.solve(problem, solver="highs", threads=threads, mip_gap=1e-6, time_limit=60)
        assert r.status == "optimal", (threads, r.message)
        assert r.objective == pytest.approx(reference.objective, rel=2e-6)


def test_the_banner_of_a_first_highs_object_stays_off_stdout():
    """A fresh process: HiGHS 1.16 prints its banner when the first Highs object is made."""
    code = "from mpqopt.highs_runtime import new_highs, run\nh = new_highs()\nrun(h)\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""



def test_an_answer_that_meets_a_known_bound_is_optimal():
    """A bound from elsewhere (the LP's, handed to solve_milp as ``known_bound``) that HiGHS's answer
    meets proves it, whatever HiGHS itself proved by its time limit; a worse answer, or a bound
    below the answer, leaves the status as it was (the bound still improves)."""
    from mpqopt.solvers.base import RawSolution
    from mpqopt.solvers.highs import _meets

    problem = knapsack_problem(30, 6, "weakly", seed=4)  # integer data: proofs to the unit
    model = canonicalize(problem, problem.budgets)
    optimum = mpqopt.solve(problem, solver="mckp", threads=1)
    assert optimum.status == "optimal"
    best_items = model.items_from_layers(optimum.x)
    best = model.items_objective(best_items)
    worse_items = mpqopt.solve(problem, solver="greedy", threads=1)
    worse_items = model.items_from_layers(worse_items.x)
    worse = model.items_objective(worse_items)
    assert worse >= best + 1.0  # the greedy misses the optimum here

    def stopped(items):
        return RawSolution("time_limit", items=items, objective=model.items_objective(items), bound=best - 100.0, message="HiGHS: time limit reached")

    proven = _meets(model, stopped(best_items), best - 0.25, SolveSettings())
    assert proven.status == "optimal" and proven.bound == best - 0.25 and "meets the LP bound" in proven.message
    short = _meets(model, stopped(best_items), best - 10.0, SolveSettings())
    assert short.status == "time_limit" and short.bound == best - 10.0
    not_best = _meets(model, stopped(worse_items), best - 0.25, SolveSettings())
    assert not_best.status == "time_limit" and not_best.bound == best - 0.25
    assert _meets(model, stopped(best_items), None, SolveSettings()).bound == best - 100.0
