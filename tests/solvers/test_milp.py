"""The MILP backend base (mpqopt/solvers/milp.py): one status map per backend and one post-solve policy.

A backend written on the base in a few lines (an exhaustive 'solver' here) gets the whole policy:
no assignment, repair of an answer over a budget, bound from the solver's gap, an inconsistent
claim solved again without its start. The four real MILP backends share it.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from strategies import _check_against_oracle, problems

import mpqopt
from mpqopt.algorithms.heuristics import is_feasible
from mpqopt.reductions import canonicalize
from mpqopt.result import STATUSES
from mpqopt.solvers import base
from mpqopt.solvers.base import SolveSettings, backend_class
from mpqopt.solvers.milp import MilpBackend, MilpRun
from mpqopt.synthetic import mckp_problem


class Exhaustive(MilpBackend):
    """A complete MILP backend on the base: enumerate, answer in 'solver units' (scaled, shifted)."""

    name = "test-exhaustive"
    STATUS_MAP = {"ok": "optimal", "none": "infeasible"}
    SCALE, CONSTANT = 4.0, -3.0

    def run_milp(self, model, settings, warm, linear):
        best, best_value = None, np.inf
        for choice in itertools.product(*(range(model.group_start[g], model.group_start[g + 1]) for g in range(model.num_groups))):
            items = np.array(choice, dtype=np.int64)
            if is_feasible(model, items) and model.items_objective(items) < best_value:
                best, best_value = items, model.items_objective(items)
        if best is None:
            return MilpRun("none", "no feasible point")
        values = np.zeros(model.num_items)
        values[best] = 1.0
        solver_value = (best_value - self.CONSTANT) / self.SCALE
        return MilpRun("ok", "enumerated", values=values, objective=solver_value, bound=solver_value, scale=self.SCALE, constant=self.CONSTANT)


@settings(max_examples=60, deadline=None)
@given(case=problems(pairwise=True))
def test_a_backend_written_on_the_base_matches_the_oracle(case):
    """Separable and pairwise (through the base's linearization: its pair columns follow the items)."""
    base._REGISTRY[Exhaustive.name] = Exhaustive
    try:
        _check_against_oracle(*case, Exhaustive.name)
    finally:
        del base._REGISTRY[Exhaustive.name]


@pytest.mark.parametrize("name", ["highs", "gurobi", "pyomo", "scipy"])
def test_the_milp_backends_share_the_base_and_map_to_known_statuses(name):
    cls = backend_class(name)
    assert issubclass(cls, MilpBackend)
    assert set(cls.STATUS_MAP.values()) <= set(STATUSES)
    assert "optimal" in cls.STATUS_MAP.values() and "infeasible" in cls.STATUS_MAP.values()


def _model(budget_fraction=0.4):
    problem = mckp_problem(8, 4, 1, seed=3, budget_fraction=budget_fraction)
    return problem, canonicalize(problem, dict(problem.budgets))


def _values(model, items):
    values = np.zeros(model.num_items)
    values[np.asarray(items)] = 1.0
    return values


def test_an_unmapped_status_is_an_error_naming_it():
    _, model = _model()
    raw = Exhaustive().finish(model, SolveSettings(), MilpRun("weird", "numerical meltdown"))
    assert raw.status == "error" and raw.items is None and "numerical meltdown" in raw.message


def test_no_assignment_returns_a_feasible_start_with_the_solver_bound():
    _, model = _model()
    start = np.array([model.group_start[g] + int(np.argmin(model.weights[0, model.group_start[g]:model.group_start[g + 1]])) for g in range(model.num_groups)])
    assert is_feasible(model, start)
    raw = Exhaustive().finish(model, SolveSettings(), MilpRun("ok", "stopped", bound=1.0, scale=2.0, constant=0.5), warm=start)
    assert raw.status == "optimal" and np.array_equal(raw.items, start) and raw.bound == 2.5
    assert "starting assignment" in raw.message
    raw = Exhaustive().finish(model, SolveSettings(), MilpRun("ok", "stopped", bound=1.0))
    assert raw.items is None and raw.bound == 1.0 and "no assignment found" in raw.message


@pytest.mark.parametrize("status,expected", [("ok", "feasible"), ("late", "time_limit")])
def test_an_answer_over_a_budget_is_repaired_and_the_bound_comes_from_the_solver_gap(status, expected):
    """Every backend: optimal -> feasible (the repaired answer is unproven), time_limit stays."""
    problem, model = _model(0.3)
    # the cheapest-objective assignment breaks the budget: a solver 'within tolerance' of it
    over = np.array([model.group_start[g] + int(np.argmin(model.value[model.group_start[g]:model.group_start[g + 1]])) for g in range(model.num_groups)])
    assert not is_feasible(model, over)
    found = model.items_objective(over)
    backend = Exhaustive()
    backend.STATUS_MAP = {"ok": "optimal", "late": "time_limit"}
    run = MilpRun(status, "done", values=_values(model, over), objective=found, bound=found - 0.25)
    raw = backend.finish(model, SolveSettings(), run)
    assert raw.status == expected and is_feasible(model, raw.items) and "repaired" in raw.message
    assert raw.bound == pytest.approx(found - 0.25) and raw.bound <= raw.objective
    assert raw.objective + model.offset >= mpqopt.solve(problem).objective - 1e-9  # never better than the optimum


def test_an_inconsistent_claim_is_solved_again_without_the_start():
    _, model = _model()
    calls = []

    class Liar(Exhaustive):
        def run_milp(self, model, settings, warm, linear):
            calls.append(warm)
            run = super().run_milp(model, settings, warm, linear)
            if warm is not None:  # HiGHS 1.16's presolve after a start: the claim lost an offset
                run.assignment_value, run.objective = run.objective, run.objective + 1.0
            return run

    start = Exhaustive().run_milp(model, SolveSettings(), None, None).values.nonzero()[0]
    raw = Liar().solve_milp(model, SolveSettings(), start)
    assert len(calls) == 2 and calls[1] is None
    assert raw.status == "optimal" and raw.stats["inconsistent_start"] and "without the start" in raw.message
    calls.clear()
    run = Liar().run_milp(model, SolveSettings(), start, None)
    raw = Liar().finish(model, SolveSettings(), run)  # without the start to drop: no proof taken
    assert raw.status == "feasible" and raw.bound is None and raw.stats["inconsistent_claim"]


def test_an_untrusted_bound_proves_nothing_even_at_optimal():
    _, model = _model()
    run = Exhaustive().run_milp(model, SolveSettings(), None, None)
    run.trusted, run.bound = False, None
    raw = Exhaustive().finish(model, SolveSettings(), run)
    assert raw.items is not None and raw.bound is None and raw.proof == ""
    run.trusted = True  # a trusted 'optimal' without a bound: its optimality is the proof
    raw = Exhaustive().finish(model, SolveSettings(), run)
    assert raw.bound == pytest.approx(raw.objective) and raw.proof == "test-exhaustive MILP"


@pytest.mark.parametrize("left", [0.0, 60.0])
def test_an_unrepairable_answer_at_the_time_limit_is_a_time_limit_without_assignment(left, monkeypatch):
    """HiGHS stopped at its limit on a Pisinger instance with an assignment over the budget by its
    tolerance that no neighbour repairs (benchmarks/results/knapsack.md, highs:plain): that is a search
    stopped at its limit (status time_limit, its bound kept), not a solver error; the message says
    whether the tightened re-solve ran (not once the time is up)."""
    from mpqopt.solvers import milp

    problem, model = _model(0.3)
    model = dataclasses.replace(model, exact_rows=np.ones(model.num_budgets, dtype=bool))
    over = np.array([model.group_start[g] + int(np.argmin(model.value[model.group_start[g]:model.group_start[g + 1]])) for g in range(model.num_groups)])
    assert not is_feasible(model, over)
    monkeypatch.setattr(milp, "repair", lambda *a, **k: None)
    monkeypatch.setattr(milp, "EXACT_FALLBACK_ASSIGNMENTS", 1)
    resolves = []

    class Late(Exhaustive):
        STATUS_MAP = {"late": "time_limit"}

        def run_milp(self, model, settings, warm, linear):
            resolves.append(model.rhs.copy())
            found = model.items_objective(over)
            return MilpRun("late", "time limit reached", values=_values(model, over), objective=found, bound=found - 0.25)

    settings_ = SolveSettings(time_limit=left)
    raw = Late().finish(model, settings_, Late().run_milp(model, settings_, None, None))
    assert raw.status == "time_limit" and raw.items is None and raw.bound == pytest.approx(model.items_objective(over) - 0.25)
    assert raw.status in STATUSES and "no assignment within the time limit" in raw.message
    assert ("solved again" in raw.message) == (left > 0) and len(resolves) == (2 if left > 0 else 1)
