"""Backend behaviour: registry, HiGHS variants agree, settings, time limits, reductions."""

from __future__ import annotations

import numpy as np
import pytest

import mpqopt
from mpqopt.reductions import canonicalize
from mpqopt.solvers import backend_names, get_backend
from mpqopt.synthetic import mckp_problem
from mpqopt.verify import violations

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out


def test_registry_lists_backends():
    assert {"highs", "bruteforce"} <= set(backend_names())
    assert get_backend("highs:plain").label == "highs:plain"
    with pytest.raises(mpqopt.SolverError, match="only 'highs:plain'"):
        get_backend("highs:fast")
    with pytest.raises(mpqopt.SolverError, match="takes no ':x' argument"):
        get_backend("bruteforce:x")


@pytest.mark.parametrize("budgets", [1, 2, 3])
def test_fixing_path_matches_plain_milp(budgets):
    problem = mckp_problem(120, 6, budgets, seed=budgets, budget_fraction=0.4)
    fixed = mpqopt.solve(problem, solver="highs")
    plain = mpqopt.solve(problem, solver="highs:plain")
    assert fixed.status == plain.status == "optimal"
    assert fixed.objective == pytest.approx(plain.objective, rel=1e-9)
    assert violations(problem, fixed.x, fixed.budgets) == []
    assert fixed.stats["items_fixed"] > 0  # the reduction did real work


def test_changing_thread_count_between_solves():
    problem = mckp_problem(30, 4, 1, seed=0, budget_fraction=0.4)
    statuses = [mpqopt.solve(problem, threads=t).status for t in (1, 2, None, 1, 2)]
    assert statuses == ["optimal"] * 5


def test_time_limit_result_is_verified_or_empty():
    problem = mckp_problem(3000, 8, 3, seed=7, budget_fraction=0.4)
    result = mpqopt.solve(problem, solver="highs:plain", time_limit=0.05)
    assert result.status in ("time_limit", "optimal")
    if result.x is not None:
        assert violations(problem, result.x, result.budgets) == []
        assert result.bound is None or result.bound <= result.objective


def test_forced_decisions_skip_the_backend():
    # every layer fixed or masked to one option: nothing left to decide
    problem = mpqopt.Problem(["a", "b"], [4, 8], [[1.0, 0.0], [2.0, 0.5]], costs={"size_bits": [[4, 8], [4, 8]]},
                             fixed={"a": "W8"}, allowed=[[True, True], [True, False]], budgets={"size_bits": 12})
    result = mpqopt.solve(problem)
    assert result.status == "optimal" and result.assignment == {"a": "W8", "b": "W4"}
    assert result.objective == 2.0 and result.stats["groups"] == 0


def test_dominated_options_are_pruned_per_budget_set():
    # W3 costs more than W4 and is worse: dominated whenever size is the only budget
    problem = mpqopt.Problem(["a"], ["W3", "W4"], [[0.5, 0.4]], costs={"size_bits": [[5, 4]], "latency_ms": [[1, 2]]})
    assert canonicalize(problem, {"size_bits": 10}).options_pruned == 1
    assert canonicalize(problem, {"size_bits": 10, "latency_ms": 5}).options_pruned == 0


def test_highs_drops_negligible_interaction_blocks_and_says_so():
    """A block far below the matrix's largest entry leaves the linearization; the answer stays the
    exact optimum and the bound stays below it."""
    from oracle import brute_force

    from mpqopt.synthetic import iqp_problem

    p = iqp_problem(7, 3, seed=2)
    omega = p.pairwise.copy()
    omega[0:3, 9:12] = omega[9:12, 0:3] = 1e-17 * np.abs(omega).max()  # layers 0 and 3
    q = p.replace(pairwise=omega)
    best, _ = brute_force(q, q.budgets)
    r = mpqopt.solve(q, solver="highs")
    assert r.stats["pair_blocks_dropped"] == 1 and "dropped" in r.message
    assert r.objective == pytest.approx(best, rel=1e-9) and r.bound <= best + 1e-12


@pytest.mark.parametrize("solver", ["mckp", "highs", "highs:plain", "scipy", "gurobi", "pyomo", "bnb"])
def test_budget_a_hair_below_an_achievable_total(solver):
    """Budget rows near 1e7 bits, scaled by their limits inside the solvers: a budget 5e-10 below an
    achievable total must still be met in exact arithmetic (solver tolerances accept that much; the
    answer comes back repaired to the true optimum, never failing verification)."""
    from mpqopt.solvers import backend_class

    if not backend_class(solver).available():
        pytest.skip(f"solver '{solver}' is not installed")
    # HiGHS's tolerances once turned this into a wrong 'infeasible' (LP) and a wrong optimum (MILP)
    problem = mckp_problem(60, 4, 1, seed=3)
    name = next(iter(problem.budgets))
    reference = mpqopt.solve(problem, solver="mckp")
    tight = {name: reference.costs[name] * (1 - 5e-10)}
    best = mpqopt.solve(problem, budgets=tight, solver="mckp")
    assert best.status == "optimal"
    result = mpqopt.solve(problem, budgets=tight, solver=solver)
    assert result.x is not None, (solver, result.message)
    assert violations(problem, result.x, tight) == []
    assert result.objective == pytest.approx(best.objective, rel=1e-12), solver


@pytest.mark.parametrize("solver", ["highs", "pyomo", "scipy", "gurobi", "bnb"])
def test_a_solver_claim_that_its_assignment_contradicts_is_not_a_proof(solver):
    """HiGHS 1.16 handed back the warm start of this 4-layer pairwise problem as 'Optimal' with the
    objective of its presolved model (found by fuzzing pyomo:appsi_highs). The backends compare the
    claimed objective with their assignment's, solve again without the start, and return the
    exact optimum; on other HiGHS releases the first answer is already right."""
    from oracle import brute_force
    from strategies import HIGHS116_START_PRESOLVE

    from mpqopt.solvers import backend_class

    if not backend_class(solver).available():
        pytest.skip(f"solver '{solver}' is not installed")
    problem, budgets = HIGHS116_START_PRESOLVE
    best, optimal = brute_force(problem, budgets)
    result = mpqopt.solve(problem, budgets=budgets, solver=solver)
    assert result.status == "optimal" and tuple(result.x) in optimal, result.message
    assert result.bound <= best + 1e-12 * problem.objective_scale


def test_optimal_needs_a_bound_that_closes_the_gap():
    """solve() re-checks a backend's 'optimal' against its bound: a claim with a gap is 'feasible'."""
    from mpqopt.solvers import RawSolution, register
    from mpqopt.solvers.base import _REGISTRY, Backend

    @register
    class Boastful(Backend):
        name = "boastful-test"

        def solve(self, model, settings):
            # the lightest item of every group (feasible), claimed optimal at a bound far below it
            lightest = np.array([lo + int(np.argmin(model.weights[0, lo:hi])) for lo, hi in zip(model.group_start[:-1], model.group_start[1:])])
            return RawSolution("optimal", items=lightest, objective=model.items_objective(lightest), bound=model.items_objective(lightest) - 1.0)

    try:
        problem = mckp_problem(5, 3, budgets=1, seed=1)
        result = mpqopt.solve(problem, solver="boastful-test")
        assert result.status == "feasible" and "called it optimal" in result.message and result.gap > 0
    finally:
        _REGISTRY.pop("boastful-test")
