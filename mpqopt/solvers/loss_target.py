"""Accuracy-target mode with a pairwise term: least cost subject to a quadratic loss limit, by HiGHS's
MILP on the one-hot linearization (:func:`mpqopt.reductions.loss_budget.loss_target_arrays`).

Not a registered backend: :func:`mpqopt.solve` uses it when ``max_loss`` is given for a problem
with a pairwise term (``solver`` 'auto' or 'highs'). The canonical model it is handed is the cost
model: objective and bound are in its units (the minimized cost, without ``offset``).
"""

from __future__ import annotations

import time

import numpy as np

from ..algorithms.heuristics import is_feasible, repair
from ..errors import SolverError
from ..highs_runtime import highs_lp, new_highs
from ..highs_runtime import run as run_highs
from ..reductions import CanonicalModel
from ..reductions.loss_budget import LossTargetModel, loss_target_arrays
from ..verify import BUDGET_RTOL
from .base import Backend, RawSolution, SolveSettings, items_from_values

# HiGHS's MIP feasibility tolerance lets an answer exceed the loss row slightly; the row is then
# tightened by what it exceeded and solved again, at most this many times
TIGHTEN_TRIES = 3
PAIRWISE_SOLVERS = ("auto", "highs", "highs:plain")


class LossTargetBackend(Backend):
    """HiGHS on the accuracy-target MILP at loss limit ``max_loss`` (``target`` is set once the
    models are built, inside the solve's time limit)."""

    name = "highs"
    description = "HiGHS MILP: least cost subject to a pairwise (quadratic) loss limit, by exact one-hot linearization"
    requires = ("highspy",)

    def __init__(self, max_loss: float, target: LossTargetModel | None = None):
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
            raw = self._milp(limit, settings, stats)
            if attempt == 0:
                bound = raw.bound  # the tightened solves' bounds hold for a narrower problem only
            if raw.items is None:
                if attempt and raw.status == "infeasible":  # tightening by round-off cut off every answer
                    return RawSolution("error", message=f"HiGHS's answers exceeded max_loss by its feasibility tolerance and none was left when the loss row was tightened by {self.max_loss - limit:.3g}", stats=stats)
                raw.bound = bound
                return raw
            items = raw.items
            if not is_feasible(model, items):  # over a budget by the tolerance
                items = repair(model, items)
                if items is None:
                    return RawSolution("error", message="HiGHS's assignment exceeds a budget by its feasibility tolerance and could not be repaired", stats=stats)
            loss = self.loss(items)
            if not self.over(loss):
                objective = model.items_objective(items)
                settings.deadline.offer(items, objective)
                status = raw.status if attempt == 0 and items is raw.items else ("time_limit" if raw.status == "time_limit" else "feasible")
                note = "" if attempt == 0 else f"; the loss row was tightened {attempt} time(s) for HiGHS's feasibility tolerance"
                return RawSolution(status, items=items, objective=objective, bound=None if bound is None else min(bound, objective),
                                   message=raw.message + note, stats=stats, proof="HiGHS MILP on the one-hot linearization (loss row)")
            limit -= 2.0 * (loss - limit) + BUDGET_RTOL * max(abs(self.max_loss), 1.0)
        return RawSolution("error", message=f"HiGHS's answers exceeded max_loss by its feasibility tolerance {TIGHTEN_TRIES} times", stats=stats)

    def _milp(self, max_loss: float, settings: SolveSettings, stats: dict) -> RawSolution:
        import highspy as hs

        model = self.target.cost_model
        arrays = loss_target_arrays(self.target, max_loss)
        h = new_highs(settings.threads, settings.verbose)
        h.setOptionValue("primal_feasibility_tolerance", 1e-9)  # as the highs backend (see solvers/highs.py)
        h.setOptionValue("mip_feasibility_tolerance", 1e-7)
        h.setOptionValue("mip_rel_gap", float(settings.mip_gap))
        h.setOptionValue("mip_abs_gap", 0.0)
        h.passModel(highs_lp(hs, arrays, integer=True))
        clock = settings.deadline
        if clock.at is not None:
            h.setOptionValue("time_limit", float(clock.remaining()))

        def interrupt(event) -> None:
            if clock.cancelled or (clock.at is not None and time.perf_counter() > clock.at):
                event.interrupt()

        h.cbMipInterrupt.subscribe(interrupt)
        run_highs(h, settings.threads, settings.verbose)
        status, info = h.getModelStatus(), h.getInfo()
        text = h.modelStatusToString(status)
        stats.update(nodes=int(info.mip_node_count), highs_status=text)
        if status == hs.HighsModelStatus.kInfeasible:
            return RawSolution("infeasible", message="HiGHS proved no assignment meets max_loss and the budgets together", stats=stats)
        if status == hs.HighsModelStatus.kOptimal:
            kind = "optimal"
        elif status in (hs.HighsModelStatus.kTimeLimit, hs.HighsModelStatus.kInterrupt, hs.HighsModelStatus.kSolutionLimit, hs.HighsModelStatus.kIterationLimit):
            kind, text = "time_limit", clock.message()
        else:
            return RawSolution("error", message=f"HiGHS stopped with status '{text}'", stats=stats)
        dual = float(info.mip_dual_bound)
        if info.primal_solution_status != 2:  # kSolutionStatusFeasible
            bound = dual * arrays.scale + arrays.constant
            return RawSolution(kind, bound=bound if np.isfinite(bound) else None, message=f"HiGHS: {text}, no assignment found", stats=stats)
        col_value = np.asarray(h.getSolution().col_value)
        items = items_from_values(model, col_value[: model.num_items])
        # the proven gap, in the solver's units, applied to its own assignment (as solvers/highs.py does)
        gap = max(float(info.objective_function_value) - dual, 0.0) * arrays.scale if np.isfinite(dual) else None
        objective = model.items_objective(items)
        return RawSolution(kind, items=items, objective=objective, bound=None if gap is None else objective - gap, message=f"HiGHS: {text}", stats=stats)
