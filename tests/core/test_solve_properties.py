"""Property tests: the exact solvers agree with an independent exhaustive oracle on random problems."""

from __future__ import annotations


import pytest
from fuzz import examples
from hypothesis import HealthCheck, example, given, settings
from oracle import brute_force
from strategies import HIGHS116_START_PRESOLVE, _check_against_oracle, problems

import mpqopt
from mpqopt.verify import violations

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out

@pytest.mark.parametrize("solver", ["highs", "highs:plain", "mckp", "bnb"])
@settings(max_examples=examples(250), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=problems())
def test_exact_solvers_match_exhaustive_oracle(solver, case):
    _check_against_oracle(*case, solver=solver)


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_greedy_is_feasible_and_brackets_the_optimum(case):
    problem, budgets = case
    best, _ = brute_force(problem, budgets)
    result = mpqopt.solve(problem, budgets=budgets, solver="greedy")
    if best is None:
        assert result.x is None
        return
    if result.x is None:  # greedy may fail to repair several budgets; it must say so
        assert result.status == "error" and "repair" in result.message
        return
    assert violations(problem, result.x, budgets) == []
    tol = 1e-9 * problem.objective_scale
    assert result.objective >= best - tol
    if result.bound is not None:
        assert result.bound <= best + tol


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_bruteforce_backend_matches_oracle(case):
    _check_against_oracle(*case, solver="bruteforce")


@pytest.mark.parametrize("solver", ["bruteforce", "highs", "bnb"])
@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=problems(pairwise=True))
@example(case=HIGHS116_START_PRESOLVE)
def test_pairwise_problems_match_oracle(solver, case):
    """Tie merging, fixed layers and masks keep the quadratic objective intact (bruteforce), and the
    one-hot linearization solved by HiGHS is exact on indefinite, asymmetric matrices."""
    _check_against_oracle(*case, solver=solver)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_dominance_pruning_never_changes_the_optimum(case):
    from mpqopt.reductions import canonicalize

    problem, budgets = case
    pruned = canonicalize(problem, budgets, prune=True)
    full = canonicalize(problem, budgets, prune=False)
    assert pruned.num_items <= full.num_items
    best, _ = brute_force(problem, budgets)
    if best is not None:
        result = mpqopt.solve(problem, budgets=budgets)
        # every optimal value is reachable with the pruned item set
        assert result.objective == pytest.approx(best, rel=1e-9, abs=1e-9 * problem.objective_scale)
