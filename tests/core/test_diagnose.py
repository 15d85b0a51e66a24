"""Infeasibility diagnosis (``mpqopt.diagnose``): the unmet budget and its cheapest total, conflicting pairs, and a pair search inside the time limit."""

from __future__ import annotations

from toy_net import net

import mpqopt
from mpqopt import Problem


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
