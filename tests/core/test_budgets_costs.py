"""Budget specifications, cost models and infeasibility diagnosis."""

from __future__ import annotations

import numpy as np
import pytest

import mpqopt
from mpqopt import BudgetError, Option, Problem, ProblemError
from mpqopt.budgets import parse_budget_args, resolve_budgets

OPTS = [Option(2, 8), Option(4, 8), Option(8, 8)]
PARAMS = [1000, 3000, 500]
MACS = [1e6, 2e6, 5e5]


def net(**kwargs):
    costs = {"size_bits": mpqopt.size_bits(PARAMS, OPTS), "bitops": mpqopt.bitops(MACS, OPTS), "latency_ms": np.array([[1.0, 1.5, 3.0]] * 3)}
    return Problem(["a", "b", "c"], OPTS, [[0.9, 0.2, 0.0], [0.5, 0.1, 0.0], [0.3, 0.05, 0.0]], costs=costs, **kwargs)


def test_cost_models():
    np.testing.assert_array_equal(mpqopt.size_bits(PARAMS, OPTS)[1], [6000, 12000, 24000])
    np.testing.assert_array_equal(mpqopt.size_bytes(PARAMS, OPTS)[1], [750, 1500, 3000])
    np.testing.assert_array_equal(mpqopt.bitops(MACS, OPTS)[0], [16e6, 32e6, 64e6])
    with pytest.raises(ProblemError, match="option 'W4' has no activation bit-width"):
        mpqopt.bitops(MACS, [Option(4)])
    np.testing.assert_array_equal(mpqopt.bitops(MACS, [Option(4)], default_act_bits=8)[:, 0], np.array(MACS) * 32)
    with pytest.raises(ProblemError, match="params\\[1\\]"):
        mpqopt.size_bits([1, -1], OPTS)


def test_latency_lookup_uses_w_and_a_axes():
    lut = np.arange(2 * 8 * 8, dtype=float).reshape(2, 8, 8)  # HAQ layout: bits 1..8 on both axes
    table = mpqopt.latency_from_lut(lut, [Option(4, 8), Option(8, 2)])
    assert table[1, 0] == lut[1, 3, 7] and table[0, 1] == lut[0, 7, 1]
    with pytest.raises(ProblemError, match="activation bit-width None"):
        mpqopt.latency_from_lut(lut, [Option(4)])
    with pytest.raises(ProblemError, match="weight bit-width 16"):
        mpqopt.latency_from_lut(lut, [Option(16, 8)])


def test_absolute_unit_and_relative_budgets():
    p = net()
    lo, hi = p.cost_range("size_bits")
    assert lo == 2 * 4500 and hi == 8 * 4500
    got = resolve_budgets(p, {"size": "50%", "bitops": "1.5G", "latency_ms": "6000us"})
    assert got == {"size_bits": pytest.approx(lo + 0.5 * (hi - lo)), "bitops": 1.5e9, "latency_ms": pytest.approx(6.0)}
    assert resolve_budgets(p, {"size_bits": "4KiB"})["size_bits"] == 4 * 1024 * 8
    assert resolve_budgets(p, {"size_bits": "3.5kB"})["size_bits"] == 3500 * 8
    assert resolve_budgets(p, {"size_bits": 12345})["size_bits"] == 12345.0
    assert resolve_budgets(p, {"size_bits": "0%"})["size_bits"] == lo
    assert resolve_budgets(p, {"size_bits": "100%"})["size_bits"] == hi


def test_overrides_and_removal():
    p = net(budgets={"size_bits": 20000, "latency_ms": 5})
    assert resolve_budgets(p, {"latency": "none"}, base=p.budgets) == {"size_bits": 20000.0}
    r = mpqopt.solve(p, budgets={"latency_ms": None})
    assert r.budgets == {"size_bits": 20000.0}


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ({"size": "150%"}, "between 0% and 100%"),
        ({"size": "abc"}, "cannot read 'abc'"),
        ({"size": "3 parsecs"}, "unknown unit 'parsecs'"),
        ({"size": "3furlongs"}, "unknown unit 'furlongs'"),
        ({"bitops": "3MiB"}, "the unit 'MiB' cannot be converted"),
        ({"latency_ms": "3MiB"}, "is a data value but the cost table is in ms"),
        ({"size_bits": -5}, "finite non-negative"),
        ({"size_bits": float("nan")}, "finite non-negative"),
        ({"size_bits": True}, "is not a number"),
        ({"energy": 5}, "budget 'energy' names no cost table; costs are ['bitops', 'latency_ms', 'size_bits']"),
    ],
)
def test_bad_budgets_are_named(spec, fragment):
    with pytest.raises(BudgetError) as info:
        resolve_budgets(net(), spec)
    assert fragment in str(info.value)


def test_ambiguous_prefix():
    p = Problem(["a"], [4, 8], [[1, 0]], costs={"size_bits": [[4, 8]], "size_bytes": [[0.5, 1]]})
    with pytest.raises(BudgetError, match="ambiguous"):
        resolve_budgets(p, {"size": 3})


def test_cli_budget_args():
    assert parse_budget_args(["size=50%", "bitops = 1.2G"]) == {"size": "50%", "bitops": "1.2G"}
    with pytest.raises(BudgetError, match="NAME=VALUE"):
        parse_budget_args(["size50%"])


def test_single_budget_infeasible_names_budget_and_cheapest():
    p = net()
    r = mpqopt.solve(p, budgets={"size_bits": 5000, "latency_ms": 100})
    assert r.status == "infeasible" and r.x is None and r.assignment is None
    assert r.infeasibility.unmet == ["size_bits"]
    assert r.infeasibility.cheapest["size_bits"] == 9000
    assert "'size_bits'" in r.message and "9.000k bits" in r.message  # the cheapest, as people read it


def test_conflicting_pair_is_reported():
    # size and latency pull in opposite directions here: low bits are small but slow on this device
    p = Problem(["a", "b"], [2, 8], [[1, 0], [1, 0]], costs={"size_bits": [[2, 8], [2, 8]], "latency_ms": [[5, 1], [5, 1]]})
    r = mpqopt.solve(p, budgets={"size_bits": 4, "latency_ms": 2})
    assert r.status == "infeasible"
    conflict = r.infeasibility.conflicts[0]
    assert conflict["budgets"] == ["size_bits", "latency_ms"]
    assert conflict["cheapest_given"] == 10  # both layers at 2 bit
    assert "conflict" in r.message
    # each alone is feasible
    assert mpqopt.solve(p, budgets={"size_bits": 4}).success
    assert mpqopt.solve(p, budgets={"latency_ms": 2}).success


def test_conflict_search_stays_within_the_time_limit_and_says_what_it_did_not_check():
    from mpqopt.diagnose import diagnose_joint

    p = Problem(["a", "b"], [2, 8], [[1, 0], [1, 0]], costs={"size_bits": [[2, 8], [2, 8]], "latency_ms": [[5, 1], [5, 1]]})
    budgets = {"size_bits": 4.0, "latency_ms": 2.0}
    r = mpqopt.solve(p, budgets=budgets, time_limit=5)  # the pair search runs on what is left of the 5 s
    assert r.status == "infeasible" and r.infeasibility.conflicts[0]["cheapest_given"] == 10
    # a search stopped by the limit gives a lower bound: above the budget it proves the conflict ...
    proven = diagnose_joint(p, budgets, lambda target, given, limit: (7.0, False))
    assert proven.conflicts and "conflict" in proven.message
    # ... below it proves nothing, and the message must not claim the pair was checked
    unproven = diagnose_joint(p, budgets, lambda target, given, limit: (1.0, False))
    assert not unproven.conflicts
    assert "time limit ran out before the pairs 'size_bits' and 'latency_ms' were checked" in unproven.message
    assert "every pair together" not in unproven.message


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
