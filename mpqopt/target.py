"""Accuracy-target mode's argument checks, verified results and infeasibility diagnosis (the
inverse problem: least total of a cost table subject to total predicted loss <= ``max_loss``).

:func:`mpqopt.solve` runs it (``solve(problem, minimize="size_bits", max_loss=0.02)``); the
reductions are in :mod:`mpqopt.reductions.loss_budget`, the pairwise MILP in
:mod:`mpqopt.solvers.loss_target`.

>>> from mpqopt import Problem, solve
>>> p = Problem(["a", "b"], [4, 8], [[0.5, 0.0], [0.1, 0.0]], costs={"size_bits": [[4, 8], [4, 8]]})
>>> r = solve(p, minimize="size_bits", max_loss=0.2)
>>> r.status, r.assignment, r.objective, r.loss
('optimal', {'a': 'W8', 'b': 'W4'}, 12.0, 0.1)
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from .budgets import resolve_budget_name
from .diagnose import Infeasibility
from .errors import ArgumentError, BudgetError
from .problem import Problem
from .result import Result
from .verify import violations

MAX_LOSS_KEY = "max_loss"  # how the loss limit is named in budgets-like reports (Infeasibility)


def check_target(problem: Problem, minimize: Any, max_loss: Any) -> tuple[str, float | None]:
    """The cost table ``minimize`` names (a unique prefix works: ``size`` -> ``size_bits``) and
    ``max_loss`` as a float (None: no loss limit); ArgumentError on anything else."""
    if minimize is None:
        raise ArgumentError("max_loss needs minimize: the name of the cost table to minimize subject to it, e.g. minimize='size_bits'")
    if not isinstance(minimize, str) or not minimize:
        raise ArgumentError(f"minimize must be the name of a cost table such as 'size_bits', got {minimize!r}")
    try:
        name = resolve_budget_name(problem, minimize)
    except BudgetError as exc:
        raise ArgumentError(str(exc).replace(f"budget '{minimize}'", f"minimize='{minimize}'", 1)) from None
    if max_loss is None:
        return name, None
    if not isinstance(max_loss, numbers.Real) or isinstance(max_loss, bool) or not math.isfinite(float(max_loss)):
        raise ArgumentError(f"max_loss must be a finite number (the largest total predicted loss allowed), got {max_loss!r}")
    return name, float(max_loss)


def target_result(problem: Problem, status: str, message: str, x: Any, bound: float | None, limits: dict[str, float],
                  minimize: str, max_loss: float | None, **fields: Any) -> Result:
    """A Result of accuracy-target mode, ``x`` verified against every budget and the loss limit:
    objective = total of ``minimize``, ``loss`` = the answer's predicted loss."""
    base = dict(budgets=limits, minimize=minimize, max_loss=max_loss, **fields)
    if x is None:
        return Result(status, message, problem, bound=bound, **base)
    broken = violations(problem, x, limits, max_loss)
    if broken:
        return Result("error", f"solver '{fields.get('solver', '')}' returned an assignment that fails verification: {'; '.join(broken)}", problem, **base)
    evaluation = problem.evaluate(x, limits)  # with the scoped budgets' totals
    objective = evaluation.costs[minimize]
    bound = None if bound is None else min(bound, objective)
    return Result(status, message, problem, x=x, objective=objective, bound=bound, costs=evaluation.costs, loss=evaluation.objective, **base)


def loss_infeasibility(problem: Problem, limits: dict[str, float], max_loss: float, least: float | None, exact: bool) -> Infeasibility:
    """Why ``loss <= max_loss`` cannot be met: ``least`` is the least predicted loss under the other
    budgets (a lower bound on it when not ``exact``)."""
    under = " under the other budgets" if limits else ""
    what = "is below the least predicted loss achievable" if exact else "is below a proven lower bound on the predicted loss"
    message = f"infeasible: max_loss = {max_loss:.10g} {what}{under}, {least:.10g}"
    cheapest = {name: problem.cost_range(name)[0] for name in limits}
    return Infeasibility({**limits, MAX_LOSS_KEY: max_loss}, {**cheapest, MAX_LOSS_KEY: least}, [MAX_LOSS_KEY], [], message)
