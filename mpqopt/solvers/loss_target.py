"""Accuracy-target mode with a pairwise term: least cost subject to a quadratic loss limit, by HiGHS's
MILP on the one-hot linearization (:func:`mpqopt.reductions.loss_budget.loss_target_arrays`).

Not a registered backend: :func:`mpqopt.solve` uses it when ``max_loss`` is given for a problem
with a pairwise term (``solver`` 'auto' or 'highs'). The canonical model it is handed is the cost
model: objective and bound are in its units (the minimized cost, without ``offset``).
"""

from __future__ import annotations

import numpy as np

from ..errors import SolverError
from ..reductions import CanonicalModel
from ..reductions.loss_budget import LossTargetModel, loss_target_arrays
from ..verify import BUDGET_RTOL
from .base import RawSolution, SolveSettings
from .highs import HighsBackend

# HiGHS's MIP feasibility tolerance lets an answer exceed the loss row slightly; the row is then
# tightened by what it exceeded and solved again, at most this many times
TIGHTEN_TRIES = 3
PAIRWISE_SOLVERS = ("auto", "highs", "highs:plain")


class LossTargetBackend(HighsBackend):
    """HiGHS on the accuracy-target MILP at loss limit ``max_loss`` (``target`` is set once the
    models are built, inside the solve's time limit). HiGHS runs and its answers are checked as in
    the ``highs`` backend (:class:`~.milp.MilpBackend`); the loss row is this class's part."""

    description = "HiGHS MILP: least cost subject to a pairwise (quadratic) loss limit, by exact one-hot linearization"

    def __init__(self, max_loss: float, target: LossTargetModel | None = None):
        super().__init__()
        self.target = target
        self.max_loss = float(max_loss)

    def loss(self, items: np.ndarray) -> float:
        """Total predicted loss of one item per free group (forced decisions included)."""
        model = self.target.loss_model
        return model.items_objective(items) + model.offset

    def over(self, loss: float) -> bool:
        scale = max(abs(self.max_loss), abs(loss), self.target.loss_model.problem.objective_scale)
        return loss > self.max_loss + BUDGET_RTOL * scale

    def solve(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        if self.target is None or model is not self.target.cost_model:
            raise SolverError("internal error: the loss-target backend was handed another model")
        bound = None
        limit = self.max_loss
        stats: dict = {"pair_columns": int(self.target.linear.pair_first.size)}
        for attempt in range(TIGHTEN_TRIES):
            raw = self.solve_milp(model, settings, None, arrays=loss_target_arrays(self.target, limit))
            stats.update(raw.stats)
            raw.stats = stats
            if attempt == 0:
                bound = raw.bound  # the tightened solves' bounds hold for a narrower problem only
            if raw.status == "infeasible":
                if attempt:  # tightening by round-off cut off every answer
                    return RawSolution("error", message=f"HiGHS's answers exceeded max_loss by its feasibility tolerance and none was left when the loss row was tightened by {self.max_loss - limit:.3g}", stats=stats)
                raw.message = "HiGHS proved no assignment meets max_loss and the budgets together"
                return raw
            if raw.items is None:
                raw.bound = bound
                return raw
            loss = self.loss(raw.items)
            if not self.over(loss):
                settings.deadline.offer(raw.items, raw.objective)
                if attempt:
                    raw.status = "time_limit" if raw.status == "time_limit" else "feasible"
                    raw.message += f"; the loss row was tightened {attempt} time(s) for HiGHS's feasibility tolerance"
                raw.bound = None if bound is None else min(bound, raw.objective)
                raw.proof = "HiGHS MILP on the one-hot linearization (loss row)" if raw.bound is not None else ""
                return raw
            limit -= 2.0 * (loss - limit) + BUDGET_RTOL * max(abs(self.max_loss), 1.0)
        return RawSolution("error", message=f"HiGHS's answers exceeded max_loss by its feasibility tolerance {TIGHTEN_TRIES} times", stats=stats)
