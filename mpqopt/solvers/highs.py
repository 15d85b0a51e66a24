"""HiGHS backend (``highspy``, the embedded default): the canonical model as a MILP, built as CSC arrays.

No modelling layer on the hot path: the column-wise matrix is assembled in numpy and passed with
``passModel`` (building 5,000 x 8 takes ~20 ms this way, seconds through the expression API).
"""

from __future__ import annotations

import numpy as np

from ..errors import SolverError
from ..reductions import CanonicalModel
from .base import Backend, RawSolution, SolveSettings, items_from_values, register


def budget_row_scales(model: CanonicalModel) -> np.ndarray:
    """Divide each budget row by its right-hand side (bits budgets of 1e7 upset HiGHS's row checks)."""
    scale = np.abs(model.rhs).astype(np.float64)
    fallback = np.abs(model.weights).max(axis=1, initial=0.0) if model.num_items else np.ones_like(scale)
    scale = np.where(scale > 0, scale, fallback)
    return np.where(scale > 0, scale, 1.0)


def normalized_objective(model: CanonicalModel) -> tuple[np.ndarray, np.ndarray, float]:
    """Objective shifted so each group's best item costs 0, then scaled to max 1.

    HiGHS's tolerances are absolute (~1e-7..1e-9): sensitivities of 1e-9 would all look equal and
    large offsets would swamp small differences. Returns ``(values, group_shift, scale)`` with
    ``original = values * scale + group_shift[item_group]``.
    """
    shift = np.minimum.reduceat(model.value, model.group_start[:-1]) if model.num_items else np.zeros(0)
    shifted = model.value - shift[model.item_group]
    scale = float(shifted.max(initial=0.0))
    scale = scale if scale > 0 else 1.0
    return shifted / scale, shift, scale


def csc_arrays(model: CanonicalModel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Column-wise constraint matrix and row bounds: F one-hot rows, then m scaled budget rows.

    Returns ``(start, index, value, row_lower, row_upper)``.
    """
    n, F, m = model.num_items, model.num_groups, model.num_budgets
    scale = budget_row_scales(model)
    rows = np.empty((n, 1 + m), dtype=np.int32)
    vals = np.empty((n, 1 + m), dtype=np.float64)
    rows[:, 0] = model.item_group
    vals[:, 0] = 1.0
    rows[:, 1:] = F + np.arange(m)
    vals[:, 1:] = (model.weights / scale[:, None]).T
    keep = vals != 0.0
    start = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(keep.sum(axis=1), out=start[1:])
    row_lower = np.concatenate([np.ones(F), np.full(m, -np.inf)])
    row_upper = np.concatenate([np.ones(F), model.rhs / scale])
    return start, rows[keep], vals[keep], row_lower, row_upper


@register
class HighsBackend(Backend):
    name = "highs"
    description = "HiGHS MILP (embedded default, open source): exact for separable problems"
    requires = ("highspy",)

    def solve(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        import highspy

        if model.quadratic is not None:
            raise SolverError("solver 'highs' solves separable problems only (HiGHS has no MIQP); this problem has a pairwise term")
        n = model.num_items
        h = highspy.Highs()
        h.setOptionValue("output_flag", bool(settings.verbose))
        if settings.time_limit is not None:
            h.setOptionValue("time_limit", float(settings.time_limit))
        h.setOptionValue("mip_rel_gap", float(settings.mip_gap))
        if settings.mip_gap == 0.0:
            h.setOptionValue("mip_abs_gap", 0.0)  # the 1e-6 default would stop short of the optimum
        # tight feasibility so the rounded assignment meets the budgets in exact arithmetic too
        h.setOptionValue("primal_feasibility_tolerance", 1e-9)
        h.setOptionValue("mip_feasibility_tolerance", 1e-9)
        if settings.threads:
            h.setOptionValue("threads", int(settings.threads))

        start, index, value, row_lower, row_upper = csc_arrays(model)
        lp = highspy.HighsLp()
        lp.num_col_ = n
        lp.num_row_ = row_lower.size
        cost, shift, scale = normalized_objective(model)
        lp.col_cost_ = cost
        lp.col_lower_ = np.zeros(n)
        lp.col_upper_ = np.ones(n)
        lp.row_lower_ = row_lower
        lp.row_upper_ = row_upper
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = start
        lp.a_matrix_.index_ = index
        lp.a_matrix_.value_ = value
        lp.integrality_ = [highspy.HighsVarType.kInteger] * n
        h.passModel(lp)
        if settings.warm_start is not None:
            solution = highspy.HighsSolution()
            x0 = np.zeros(n)
            x0[np.asarray(settings.warm_start)] = 1.0
            solution.col_value = x0
            h.setSolution(solution)
        h.run()
        return self._read(h, model, highspy, scale, float(shift.sum()))

    def _read(self, h, model: CanonicalModel, highspy, scale: float, constant: float) -> RawSolution:
        status = h.getModelStatus()
        info = h.getInfo()
        text = h.modelStatusToString(status)
        stats = {"nodes": int(info.mip_node_count), "highs_status": text}
        has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
        if status == highspy.HighsModelStatus.kInfeasible:
            return RawSolution("infeasible", message="HiGHS proved the budgets cannot all be met", stats=stats)
        if status == highspy.HighsModelStatus.kOptimal:
            kind = "optimal"
        elif status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt, highspy.HighsModelStatus.kSolutionLimit, highspy.HighsModelStatus.kIterationLimit):
            kind = "time_limit"
        else:
            return RawSolution("error", message=f"HiGHS stopped with status '{text}'", stats=stats)
        bound = float(info.mip_dual_bound) * scale + constant
        bound = bound if np.isfinite(bound) else None
        if not has_solution:
            return RawSolution(kind, bound=bound, message=f"HiGHS: {text}, no assignment found", stats=stats)
        items = items_from_values(model, np.asarray(h.getSolution().col_value))
        objective = model.items_objective(items)
        return RawSolution(kind, items=items, objective=objective, bound=bound, message=f"HiGHS: {text}", stats=stats)
