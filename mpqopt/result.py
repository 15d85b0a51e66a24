"""The result of a solve, modelled on ``scipy.optimize.OptimizeResult``: status, message, x, fun, bound."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from .budgets import bits_per_weight
from .diagnose import Infeasibility
from .errors import MpqoptError
from .problem import Problem
from .report import result_table

# every status a Result or a backend's RawSolution can have; the type checkers see the Literal
Status = Literal["optimal", "feasible", "infeasible", "time_limit", "error"]
STATUSES: tuple[str, ...] = get_args(Status)


def relative_gap(objective: float | None, bound: float | None, scale: float = 0.0) -> float | None:
    """``(objective - bound) / |objective|`` (HiGHS's convention), never negative.

    A difference below float64 round-off of the sums involved (``scale`` is the magnitude of the
    terms summed, e.g. ``sum_l max_o |sensitivity|``) is reported as 0: an objective of exactly 0
    would otherwise turn a 1e-20 difference into a large relative gap.
    """
    if objective is None or bound is None:
        return None
    diff = max(objective - bound, 0.0)
    # never above half a unit: on integer data of 2**52 a difference of one unit is real, not round-off
    if diff <= min(1e-14 * max(abs(objective), abs(bound), scale), 0.5):
        return 0.0
    return diff / max(abs(objective), 1e-12)


@dataclass
class Result:
    """What :func:`mpqopt.solve` returns.

    ``status`` is one of ``optimal`` (proven within ``mip_gap``), ``feasible`` (an assignment that meets
    every budget, optimality not proven), ``infeasible`` (see ``infeasibility``), ``time_limit`` (stopped
    early; ``x`` is set if an assignment was found) or ``error``. ``x`` is the option index per layer and
    ``assignment`` the same as ``{layer: option label}``. ``objective`` and ``bound`` include the
    contribution of fixed layers; ``gap`` is relative. Every returned assignment has been re-checked
    against every constraint of the problem.

    ``minimize`` says what ``objective`` and ``bound`` measure: None for the total predicted loss
    (sensitivity plus pairwise term, the default), or the name of the cost table minimized in
    accuracy-target mode (``solve(..., minimize="size_bits", max_loss=0.02)``). ``loss`` is always
    the total predicted loss of the answer, ``max_loss`` the loss limit solved for (None: none).

    >>> from mpqopt import Problem, solve
    >>> p = Problem(["a", "b"], [4, 8], [[0.5, 0.0], [0.1, 0.0]], costs={"size_bits": [[4, 8], [4, 8]]})
    >>> r = solve(p, budgets={"size_bits": 12})
    >>> r.status, r.assignment
    ('optimal', {'a': 'W8', 'b': 'W4'})
    """

    status: Status
    message: str
    problem: Problem = field(repr=False)
    x: np.ndarray | None = None
    objective: float | None = None
    bound: float | None = None
    budgets: dict[str, float] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)
    solver: str = ""
    solve_time_s: float = 0.0
    infeasibility: Infeasibility | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    proof: str = ""  # which method established ``bound`` ("" when there is none)
    minimize: str | None = None  # None: objective is the predicted loss; else the cost table minimized
    loss: float | None = None  # total predicted loss of ``x`` (equals objective when minimize is None)
    max_loss: float | None = None  # the loss limit of accuracy-target mode

    def __post_init__(self) -> None:
        if self.status not in STATUSES:  # a backend bug, not the user's input
            raise MpqoptError(f"internal error: result status {self.status!r} is not one of {', '.join(STATUSES)}")
        if self.minimize is None and self.loss is None:
            self.loss = self.objective

    @property
    def objective_name(self) -> str:
        """What ``objective`` is: ``'loss'`` (predicted loss) or the minimized cost table's name."""
        return "loss" if self.minimize is None else self.minimize

    @property
    def success(self) -> bool:
        """True when an assignment that meets every constraint is available."""
        return self.x is not None

    @property
    def fun(self) -> float | None:
        """Alias of ``objective`` (scipy's name)."""
        return self.objective

    @property
    def gap(self) -> float | None:
        if self.minimize is None:
            scale = self.problem.objective_scale
        else:  # the magnitude of the minimized cost's terms
            scale = float(np.abs(self.problem.costs[self.minimize]).max(axis=1).sum())
        return relative_gap(self.objective, self.bound, scale)

    @property
    def assignment(self) -> dict[str, str] | None:
        return None if self.x is None else self.problem.to_labels(self.x)

    @property
    def slack(self) -> dict[str, float]:
        """Budget minus total cost, per budget; never negative.

        A budget is met when ``total <= limit + BUDGET_RTOL * max(|limit|, |total|)`` (``verify.BUDGET_RTOL``
        = 1e-12: sums in another order differ in the last bits; exactly, ``total <= limit``, when the
        cost table is integer and its totals stay below 2**53: ``verify.exact_integer``), and every returned assignment is
        verified so. A total within that tolerance above the limit shows slack 0: it meets the budget.
        """
        # -0.0 would print as a violation: max(..., 0.0) gives +0.0 for both
        return {name: max(limit - self.costs[name], 0.0) for name, limit in self.budgets.items() if name in self.costs}

    @property
    def bpw(self) -> dict[str, dict[str, float | None]]:
        """Size totals and budgets as average bits per weight, for every cost or budget in bits or
        bytes, when the problem knows each layer's weight count (``Problem.params``); else empty.
        ``{"size_bits": {"total": 4.21, "budget": 4.5}, "size_bits[stage0:...]": {...}}``."""
        out: dict[str, dict[str, float | None]] = {}
        if self.problem.params is None:
            return out
        for key in [*self.costs, *(k for k in self.budgets if k not in self.costs)]:
            total, budget = bits_per_weight(self.problem, key, self.costs.get(key)), bits_per_weight(self.problem, key, self.budgets.get(key))
            if total is not None or budget is not None:
                out[key] = {"total": total, "budget": budget}
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (the CLI's ``--json`` output)."""
        return {
            "status": self.status,
            "minimize": self.objective_name,
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "assignment": self.assignment,
            "costs": self.costs,
            "budgets": self.budgets,
            "slack": self.slack,
            **({"bpw": self.bpw} if self.problem.params is not None else {}),
            "solver": self.solver,
            "solve_time_s": self.solve_time_s,
            "message": self.message,
            "proof": self.proof,
            "loss": self.loss,
            "max_loss": self.max_loss,
            "infeasibility": None if self.infeasibility is None else self.infeasibility.to_dict(),
            "stats": self.stats,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def table(self) -> str:
        """A readable per-layer table (layer, option, sensitivity, each cost) with totals."""
        return result_table(self)

    def __str__(self) -> str:
        gap = "n/a" if self.gap is None else f"{self.gap:.2e}"
        obj = "n/a" if self.objective is None else f"{self.objective:.10g}"
        proof = f"{'' if self.message.endswith('.') else '.'} Bound from {self.proof}." if self.proof and self.bound is not None else ""
        if self.minimize is not None:
            limit = "" if self.max_loss is None else f" <= max_loss {self.max_loss:.10g}"
            loss = "n/a" if self.loss is None else f"{self.loss:.10g}"
            obj = f"minimized '{self.minimize}' = {obj} (predicted loss {loss}{limit})"
        return f"{self.status}: objective {obj}, gap {gap}, solver {self.solver}, {self.solve_time_s * 1e3:.1f} ms. {self.message}{proof}"
