"""Explain infeasible budgets: which budget cannot be met, the cheapest achievable value of each,
and which pair of budgets conflicts when each alone could be met."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .budgets import cost_unit
from .report import fmt_cost
import numpy as np

from .verify import budget_tolerance, exact_integer, limit_roundoff

if TYPE_CHECKING:
    from .problem import Problem


@dataclass
class Infeasibility:
    """Why no assignment meets the budgets.

    ``cheapest[name]`` is the lowest total of that cost any allowed assignment reaches (ignoring the
    other budgets); ``unmet`` lists budgets below it. ``conflicts`` lists pairs ``(a, b)`` each feasible
    alone but not together, with ``cheapest_given`` = the lowest ``b`` reachable while ``a`` is met.
    """

    budgets: dict[str, float]
    cheapest: dict[str, float]
    unmet: list[str] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    complete: bool = True  # False: the time limit ran out before every pair of budgets was checked

    def to_dict(self) -> dict[str, Any]:
        return {"budgets": self.budgets, "cheapest": self.cheapest, "unmet": self.unmet, "conflicts": self.conflicts, "message": self.message,
                "complete": self.complete}


def check_budgets_alone(problem: "Problem", budgets: Mapping[str, float]) -> Infeasibility | None:
    """Exact, instant check of each budget on its own; an ``Infeasibility`` if any is below its minimum."""
    cheapest = {name: problem.cost_range(name)[0] for name in budgets}
    # with verify's tolerance: a budget set to the cheapest total, summed in another order, may fall
    # a few ulps below cost_range's sum and is still met
    # (the limit's own round-off only on exact integer tables, where one unit below the cheapest total is infeasible)
    unmet = [name for name, limit in budgets.items() if cheapest[name] > limit + budget_tolerance(problem.budget_table(name), limit, cheapest[name])]
    if not unmet:
        return None
    parts = []
    for n in unmet:
        limit, least = _amounts(problem, n, budgets[n], cheapest[n])
        parts.append(f"budget '{n}' = {limit} is below the cheapest achievable {least}")
    return Infeasibility(dict(budgets), cheapest, unmet, [], "infeasible: " + "; ".join(parts))


MAX_SUMMED_BUDGETS = 4  # budgets up to which every subset's sum is checked (2**4 - 5 = 11 subsets)


def check_budget_sums(problem: "Problem", budgets: Mapping[str, float]) -> Infeasibility | None:
    """Exact check of budgets on integer tables together: when the cheapest total of their *sum*
    exceeds the sum of their (rounded down) limits, no assignment meets them all. Integer arithmetic
    throughout, so budgets that only an assignment one unit over could meet are caught; the MILP
    solvers' relative tolerances cannot see that (``c1 <= S``, ``c2 <= T - S - 1`` with
    ``c1 + c2 = T`` on every assignment, costs near 2**49). Budgets whose tables are not exact
    integers are left to the solvers.

    >>> from mpqopt import Problem
    >>> p = Problem(["a", "b"], [4, 8], [[1.0, 0.0], [1.0, 0.0]], costs={"x": [[1, 3], [1, 3]], "y": [[3, 1], [3, 1]]})
    >>> check_budget_sums(p, {"x": 4, "y": 4}) is None, check_budget_sums(p, {"x": 4, "y": 3}).conflicts
    (True, [{'budgets': ['x', 'y'], 'cheapest_given': None}])
    """
    exact = [name for name in budgets if exact_integer(problem.budget_table(name))]
    if len(exact) < 2 or len(exact) > MAX_SUMMED_BUDGETS:
        return None
    allowed = problem.group_candidates
    tables = {name: problem.group_table(problem.budget_table(name)).astype(np.int64) for name in exact}
    big = np.iinfo(np.int64).max // 4  # masked entries: above any total, no overflow when summed
    for size in range(2, len(exact) + 1):
        for names in combinations(exact, size):
            total = sum(tables[n] for n in names)
            least = int(np.where(allowed, total, big).min(axis=1).sum())
            limit = sum(int(np.floor(budgets[n] + limit_roundoff(budgets[n]))) for n in names)
            if least > limit:
                listed = ", ".join(f"'{n}'" for n in names[:-1]) + f" and '{names[-1]}'"
                message = (f"infeasible: budgets {listed} conflict: on every allowed assignment their totals add up to at least "
                           f"{least}, above the sum of their limits, {limit} (exact integer arithmetic)")
                return Infeasibility(dict(budgets), {n: problem.cost_range(n)[0] for n in budgets}, [], [{"budgets": list(names), "cheapest_given": None}], message)
    return None


def _amounts(problem: "Problem", name: str, *values: float | None) -> list[str]:
    """Cost totals as people read them, in the table's unit (bits and bytes also in KiB/MiB); if two
    of them would read the same, each also gets its exact value in the table's unit."""
    unit = cost_unit(problem, name)
    readable = [fmt_cost(v, unit) if v is not None else "none" for v in values]
    if len(set(readable)) == len(readable):
        return readable
    return [r if v is None else f"{r} ({v:.15g}{' ' + unit if unit else ''})" for r, v in zip(readable, values)]


def diagnose_joint(problem: "Problem", budgets: Mapping[str, float], min_cost_given: Callable[[str, str, float], tuple[float | None, bool]]) -> Infeasibility:
    """Each budget is feasible alone but all together are not: find the conflicting pairs.

    ``min_cost_given(target, constraint, limit)`` returns a lower bound on the least total of cost
    ``target`` over assignments whose ``constraint`` cost stays within ``limit`` (the least total
    itself when it was solved to the end; None if even that is impossible), and whether it is exact.
    A bound above the budget proves a conflict; one below it proves nothing when it is not exact
    (the search stopped at the time limit), and the message then says the pairs went unchecked.
    """
    cheapest = {name: problem.cost_range(name)[0] for name in budgets}
    conflicts = []
    unchecked = []
    for a, b in combinations(budgets, 2):
        best_b, exact = min_cost_given(b, a, budgets[a])
        if best_b is None or best_b > budgets[b]:
            conflicts.append({"budgets": [a, b], "cheapest_given": best_b})
        elif not exact:
            unchecked.append(f"'{a}' and '{b}'")
    if conflicts:
        c = conflicts[0]
        a, b = c["budgets"]
        given, limit_b = _amounts(problem, b, c["cheapest_given"], budgets[b])
        (limit_a,) = _amounts(problem, a, budgets[a])
        message = (
            f"infeasible: budgets '{a}' and '{b}' conflict: each can be met alone, but with '{a}' <= {limit_a} "
            f"the cheapest '{b}' is {given} > {limit_b}"
        )
    elif unchecked:
        message = f"infeasible: every budget can be met alone; the time limit ran out before the pairs {', '.join(unchecked)} were checked for a conflict"
    else:
        message = "infeasible: every budget can be met alone and every pair together, but not all of them at once"
    cheap = ", ".join(f"'{n}' >= {_amounts(problem, n, v)[0]}" for n, v in cheapest.items())
    return Infeasibility(dict(budgets), cheapest, [], conflicts, f"{message} (cheapest alone: {cheap})", complete=not unchecked)
