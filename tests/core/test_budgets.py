"""Budget specifications (``mpqopt.budgets``): absolute, unit and relative budgets, overrides, and errors that name the budget."""

from __future__ import annotations

import pytest
from toy_net import net

import mpqopt
from mpqopt import BudgetError, Problem
from mpqopt.budgets import parse_budget_args, resolve_budgets


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
