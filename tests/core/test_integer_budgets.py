"""Budgets on integer cost tables are checked exactly (issue 19): one unit over a 2**49 budget is a
violation, not round-off; budgets that only an assignment a unit over could meet together are
infeasible; 'optimal' on integer sensitivities means the exact optimum. The solver families and
the property tests with large integers are in tests/solvers/test_integer_exact.py."""

from __future__ import annotations

import numpy as np
import pytest

import mpqopt
from mpqopt.diagnose import check_budget_sums
from mpqopt.reductions import canonicalize
from mpqopt.problem import freeze
from mpqopt.verify import BUDGET_RTOL, exact_integer, violations

BIG = 2**49


def _problem(c0, c1=None, sens=None):
    c0 = np.asarray(c0, dtype=np.float64)
    costs = {"c0": c0} if c1 is None else {"c0": c0, "c1": np.asarray(c1, dtype=np.float64)}
    sens = np.zeros_like(c0) if sens is None else np.asarray(sens, dtype=np.float64)
    return mpqopt.Problem([f"l{i}" for i in range(c0.shape[0])], [f"W{k + 2}" for k in range(c0.shape[1])], sens, costs=costs)


def test_exact_integer_needs_integers_whose_totals_fit_2_53():
    assert exact_integer(np.array([[BIG, 3.0], [BIG, 5.0], [7.0, BIG]]))
    assert not exact_integer(np.array([[BIG, 3.5]]))  # a fraction
    assert not exact_integer(np.full((20, 2), float(BIG)))  # 20 * 2**49 > 2**53: sums may round
    assert not exact_integer(np.array([[np.inf, 1.0]]))


@pytest.mark.parametrize("rows", [1, 3, 70_000])
def test_exact_integer_is_remembered_only_for_tables_that_cannot_change(monkeypatch, rows):
    """Checked block by block (70,000 rows: three blocks); a table mpqopt froze (problem.freeze, every
    Problem table) is checked once, any other every time (a write may change the answer; a caller's
    read-only array can be made writeable again)."""
    monkeypatch.setattr("mpqopt.verify._EXACT_ROWS", 32_768)
    table = np.full((rows, 3), 2.0)
    assert exact_integer(table)
    table[-1, 2] = 0.5  # the last block only
    assert not exact_integer(table)
    table[-1, 2] = 1.0
    freeze(table)
    assert exact_integer(table) and exact_integer(table)
    big = np.full((rows, 3), float(2**53) / rows)  # row maxima sum to 2**53 exactly (rows a power of 2 or not)
    assert exact_integer(big) == (float(big.max(axis=1).sum()) <= 2.0**53 and bool((big == np.round(big)).all()))


def test_one_unit_over_a_huge_integer_budget_is_a_violation():
    p = _problem([[BIG + 1, BIG + 2], [BIG + 3, BIG + 4]])
    total = 2 * BIG + 6  # options (1, 1)
    assert 1 < BUDGET_RTOL * total  # the relative tolerance alone would let this through
    assert violations(p, np.array([1, 1]), {"c0": total - 1}) != []
    assert violations(p, np.array([1, 1]), {"c0": total}) == []
    # a fractional table keeps the round-off tolerance
    q = _problem([[0.5 + BIG, 0.25], [1.0, 2.0]])
    assert violations(q, np.array([0, 1]), {"c0": BIG + 2.5 - 1e-3}) == []



def test_a_limit_computed_a_few_ulps_short_still_admits_its_total():
    """4.1 bits per weight x 3e9 weights = 12299999999.999998 in float64: the 12.3e9-bit total meets it."""
    p = _problem([[3e9 * 4, 3e9 * 4.1], [0.0, 1.0]])
    limit = 4.1 * 3e9
    assert limit < 12.3e9
    assert violations(p, np.array([1, 0]), {"c0": limit}) == []
    assert violations(p, np.array([1, 1]), {"c0": limit}) != []  # one unit over
    assert mpqopt.solve(p.replace(sensitivity=[[2.0, 0.0], [1.0, 0.0]]), {"c0": limit}).x.tolist() == [1, 0]


@pytest.mark.parametrize("solver", ["mckp", "highs", "scipy"])
def test_budget_one_unit_below_the_only_reachable_total_is_infeasible(solver):
    """``c1 = T - c0`` per item: ``c0 <= S`` and ``c1 <= 2T - S - 1`` need ``c0`` above ``S`` and at most ``S``."""
    c0 = np.array([[BIG // 4 + 1, BIG // 4 + 5], [BIG // 4 + 2, BIG // 4 + 7]], dtype=np.int64)
    T = BIG // 2
    p = _problem(c0, T - c0, sens=c0.max(axis=1, keepdims=True) - c0)
    S = int(c0[0, 1] + c0[1, 0])
    feasible = mpqopt.solve(p, {"c0": S, "c1": 2 * T - S}, solver=solver)
    # the one assignment that meets both; a MILP solver's answer a unit off is repaired to it, unproven
    assert feasible.status in (("optimal",) if solver == "mckp" else ("optimal", "feasible")) and feasible.x.tolist() == [1, 0]
    result = mpqopt.solve(p, {"c0": S, "c1": 2 * T - S - 1}, solver=solver)
    assert result.status == "infeasible", result.message
    assert result.x is None and result.infeasibility is not None


def test_check_budget_sums_is_exact_and_leaves_fractional_tables_alone():
    c0 = np.array([[BIG // 4 + 1, BIG // 4 + 5], [BIG // 4 + 2, BIG // 4 + 7]], dtype=np.int64)
    T = BIG // 2
    p = _problem(c0, T - c0)
    total, S = 2 * T, int(c0[0, 1] + c0[1, 0])  # c0 + c1 on every assignment; a reachable c0 total
    assert check_budget_sums(p, {"c0": S, "c1": total - S}) is None
    found = check_budget_sums(p, {"c0": S, "c1": total - S - 1})
    assert found is not None and found.conflicts == [{"budgets": ["c0", "c1"], "cheapest_given": None}]
    assert check_budget_sums(p, {"c0": S + 0.5, "c1": total - S - 1}) is not None  # half a unit buys nothing
    q = _problem(c0 + 0.5, T - c0)
    assert check_budget_sums(q, {"c0": S, "c1": total - S - 1}) is None  # not exact: the solvers decide


def test_canonical_model_has_no_slack_on_exact_rows():
    p = _problem([[BIG + 1, BIG + 2], [3.0, 4.0]], [[0.5, 1.5], [2.0, 1.0]], sens=[[1.0, 0.0], [2.0, 0.0]])
    m = canonicalize(p, {"c0": BIG + 6, "c1": 3.0})
    assert m.exact_rows.tolist() == [True, False]
    assert m.budget_slack[0] == 0.25 and m.budget_slack[1] == BUDGET_RTOL * 3.0  # 4 ulps of 2**49 on the exact row
    assert m.integral_objective
    assert not canonicalize(p.replace(sensitivity=[[1.5, 0.0], [2.0, 0.0]]), {"c0": BIG + 6}).integral_objective


def test_optimal_on_integer_sensitivities_is_judged_to_the_unit():
    """Sensitivities near 2**50: a bound one unit below the objective is a gap of 1e-15 relative,
    under OPTIMAL_RTOL, yet it does not prove the objective optimal; half a unit does."""
    from mpqopt.solve import _integer_proof

    p = _problem([[1.0, 2.0]], sens=[[2.0**50, 2.0**50 + 1]])
    m = canonicalize(p, {"c0": 2.0})
    assert _integer_proof(m, 2.0**50 + 1, 2.0**50 + 0.5)
    assert not _integer_proof(m, 2.0**50 + 1, 2.0**50)
