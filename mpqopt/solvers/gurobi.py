"""Gurobi backend (``gurobipy``, optional: ``pip install mpqopt[gurobi]``), built with its matrix API.

* ``gurobi``: the canonical model as an ILP; with a pairwise term, a MIQP on the original (nonconvex)
  objective with ``NonConvex=2``.
* ``gurobi:onehot`` / ``gurobi:mineig``: the exact convex forms of :mod:`..reductions.convexify` (the
  same objective at every feasible point, so results and bounds refer to the original objective).
* ``gurobi:psd``: CLADO's approximate mode, the PSD-projected objective. Its optimum is only a
  feasible assignment for the original objective: status ``feasible``, no bound.

Gurobi sees ``(objective + model.offset) / scale``: including the offset makes its ``MIPGap`` the
relative gap :class:`~mpqopt.result.Result` reports, and the scale (largest coefficient 1) keeps
its absolute optimality tolerances meaningful for sensitivities of any size.

The pip package carries a size-limited licence (2,000 variables and constraints; about 200
variables once the objective is quadratic); exceeding it, or having no licence, raises a
one-line :class:`~mpqopt.errors.SolverError` that names the alternatives.

>>> import pytest; _ = pytest.importorskip("gurobipy")
>>> from mpqopt import solve
>>> from mpqopt.synthetic import iqp_problem
>>> exact, clado = (solve(iqp_problem(8, seed=0), solver=s) for s in ("gurobi:onehot", "gurobi:psd"))
>>> exact.status, clado.status, clado.bound is None, clado.objective >= exact.objective
('optimal', 'feasible', True, True)
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ..deadline import seconds_left
from ..algorithms.heuristics import is_feasible, repair
from ..algorithms.incumbent import separable_incumbent
from ..errors import SolverError
from ..reductions import CanonicalModel
from ..reductions.convexify import Convexified, convexify
from ..reductions.matrix import budget_row_scales
from .base import Backend, RawSolution, SolveSettings, items_from_values, register

MODES = ("onehot", "mineig", "psd")
LICENCE_ERRNOS = (10009, 10010)  # GRB_ERROR_NO_LICENSE, GRB_ERROR_SIZE_LIMIT_EXCEEDED
NOISE_RTOL = 1e-14  # gaps below this share of the objective's terms are round-off (result.relative_gap)


@register
class GurobiBackend(Backend):
    name = "gurobi"
    description = ("Gurobi (commercial; the pip licence is size-limited): ILP, nonconvex MIQP for pairwise terms; "
                   "'gurobi:onehot' / 'gurobi:mineig' exact convex forms, 'gurobi:psd' CLADO's approximate PSD projection")
    requires = ("gurobipy",)
    extra = "gurobi"
    supports_quadratic = True

    def __init__(self, arg: str | None = None):
        if arg is not None and arg not in MODES:
            raise SolverError(f"solver 'gurobi' takes no ':{arg}' argument (only {', '.join('gurobi:' + m for m in MODES)})")
        self.mode = arg
        self.exact = arg != "psd"  # the PSD projection proves nothing about the original objective

    @property
    def label(self) -> str:
        return self.name if self.mode is None else f"{self.name}:{self.mode}"

    def solve(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        import gurobipy as gp

        deadline = settings.stop_at
        conv, stats = None, {}
        if model.quadratic is not None and self.mode is not None:
            start = time.perf_counter()
            conv = convexify(model, self.mode)
            stats["convexify"] = {"method": conv.method, "shift_total": conv.shift_total, "min_eigenvalue_before": conv.min_eigenvalue_before,
                                  "min_eigenvalue_after": conv.min_eigenvalue_after, "seconds": time.perf_counter() - start}
        try:
            return self._solve(gp, model, settings, conv, deadline, stats)
        except gp.GurobiError as exc:
            raise _solver_error(self.label, exc, model) from None

    def _solve(self, gp, model: CanonicalModel, settings: SolveSettings, conv: Convexified | None, deadline: float | None, stats: dict) -> RawSolution:
        GRB = gp.GRB
        env = gp.Env(empty=True)
        try:
            env.setParam("OutputFlag", 1 if settings.verbose else 0)  # before start(): no licence banner
            env.start()
            with gp.Model("mpqopt", env=env) as m:
                x, scale = self._build(gp, m, model, conv)
                self._set_params(m, model, settings, deadline, scale)
                warm = settings.warm_start if settings.warm_start is not None else (separable_incumbent(model) if model.quadratic is not None else None)
                if warm is not None:
                    start = np.zeros(model.num_items)
                    start[np.asarray(warm, dtype=np.int64)] = 1.0
                    x.Start = start
                m.optimize()
                return self._result(GRB, m, x, model, conv, scale, stats)
        finally:
            env.dispose()

    def _build(self, gp, m, model: CanonicalModel, conv: Convexified | None):
        """Binary x, one-hot rows, one matrix row block for the budgets (each row scaled by its
        limit: bits budgets of 1e7 upset absolute tolerances), and the scaled objective."""
        n, F = model.num_items, model.num_groups
        x = m.addMVar(n, vtype=gp.GRB.BINARY, name="x")
        one_hot = sp.csr_array((np.ones(n), (model.item_group, np.arange(n))), shape=(F, n))
        m.addConstr(one_hot @ x == np.ones(F), name="one_hot")
        if model.num_budgets:
            rows = budget_row_scales(model)
            m.addConstr(sp.csr_array(model.weights / rows[:, None]) @ x <= model.rhs / rows, name="budget")
        if conv is not None:
            linear, quadratic, constant = conv.linear, sp.csr_array(conv.quadratic), conv.constant
        else:
            linear, quadratic, constant = model.value, model.quadratic, 0.0
        if conv is None or conv.exact:
            constant += model.offset  # Gurobi's relative gap is then the user's (module docstring)
        scale = float(np.abs(linear).max(initial=0.0))
        if quadratic is not None:
            scale = max(scale, float(abs(quadratic).max()) if quadratic.nnz else 0.0)
        scale = scale if scale > 0 else 1.0
        objective = (linear / scale) @ x + constant / scale
        if quadratic is not None and quadratic.nnz:
            objective = objective + x @ (sp.csr_array(quadratic) / scale) @ x
            if conv is None:
                m.Params.NonConvex = 2  # the original cross-layer matrix is indefinite in general
        m.setObjective(objective, gp.GRB.MINIMIZE)
        return x, scale

    @staticmethod
    def _set_params(m, model: CanonicalModel, settings: SolveSettings, deadline: float | None, scale: float) -> None:
        if deadline is not None:
            m.Params.TimeLimit = seconds_left(deadline)
        if settings.threads:
            m.Params.Threads = int(settings.threads)
        m.Params.MIPGap = float(settings.mip_gap)
        # Gurobi's default absolute gap (1e-10) would stop early on objectives near 0; 0 would chase
        # round-off. Stop where Result.gap reports 0 anyway: the noise floor of the objective's terms.
        m.Params.MIPGapAbs = NOISE_RTOL * model.problem.objective_scale / scale
        # budgets are exact in mpqopt (1e-12 relative); Gurobi's default 1e-6 on the scaled rows
        # lets binding budgets slip, which verification would reject (repair is the fallback)
        m.Params.FeasibilityTol = 1e-9
        m.Params.IntFeasTol = 1e-9

    def _result(self, GRB, m, x, model: CanonicalModel, conv: Convexified | None, scale: float, stats: dict) -> RawSolution:
        status = m.Status
        text = _STATUS_NAMES.get(status, f"status {status}")
        stats.update(nodes=int(m.NodeCount), gurobi_status=text)
        projected = conv is not None and not conv.exact  # CLADO's mode: a different objective
        if status in (GRB.INFEASIBLE, GRB.INF_OR_UNBD):  # binary variables: never unbounded
            return RawSolution("infeasible", message="Gurobi proved the budgets cannot all be met", stats=stats)
        if status == GRB.OPTIMAL:
            kind = "optimal"
        elif status in (GRB.TIME_LIMIT, GRB.INTERRUPTED, GRB.NODE_LIMIT, GRB.SOLUTION_LIMIT, GRB.ITERATION_LIMIT, GRB.WORK_LIMIT, GRB.MEM_LIMIT, GRB.USER_OBJ_LIMIT):
            kind = "time_limit"
        elif status == GRB.SUBOPTIMAL or (status == GRB.NUMERIC and m.SolCount):
            kind = "feasible"
        else:
            return RawSolution("error", message=f"Gurobi stopped with status '{text}'", stats=stats)
        note = f"; {conv.note}" if conv is not None else ""
        if self.mode is not None and model.quadratic is None:
            note = f"; no pairwise term, so ':{self.mode}' changed nothing (exact ILP)"
        trusted = not projected and status != GRB.NUMERIC  # after numeric trouble its bound is not trusted
        raw_bound = float(m.ObjBound) if trusted else np.nan  # normalized, offset included
        bound = raw_bound * scale - model.offset if np.isfinite(raw_bound) and abs(raw_bound) < 1e99 else None
        if m.SolCount == 0:
            return RawSolution(kind, bound=bound, message=f"Gurobi: {text}, no assignment found{note}", stats=stats)
        items = items_from_values(model, np.asarray(x.X))
        found = model.items_objective(items)  # Gurobi's own assignment, before any repair
        if not is_feasible(model, items):
            # within Gurobi's tolerance but over a budget in exact arithmetic: move to a feasible neighbour
            repaired = repair(model, items)
            if repaired is None:
                return RawSolution("error", bound=bound, message="Gurobi's assignment exceeds a budget by its feasibility tolerance and could not be repaired", stats=stats)
            items, kind, text = repaired, ("feasible" if kind == "optimal" else kind), f"{text}; its assignment exceeded a budget by Gurobi's tolerance and was repaired"
        if projected:
            kind = "time_limit" if kind == "time_limit" else "feasible"
            message = (f"Gurobi: {text} on the PSD-projected objective (CLADO's approximation): no proof of optimality "
                       f"on the original objective, which is what is reported{note}")
            return RawSolution(kind, items=items, objective=model.items_objective(items), bound=None, message=message, stats=stats)
        if bound is not None:
            # the gap as Gurobi measured it, from its own assignment: converting both ends separately
            # would add round-off of the offset and of the convexification's cancelling terms
            bound = found - max(float(m.ObjVal) - raw_bound, 0.0) * scale
        return RawSolution(kind, items=items, objective=model.items_objective(items), bound=bound, message=f"Gurobi: {text}{note}", stats=stats, proof=_PROOFS[conv.method if conv is not None else ("miqp" if model.quadratic is not None else "ilp")])


_PROOFS = {"ilp": "Gurobi ILP", "miqp": "Gurobi nonconvex MIQP on the original objective",
           "onehot": "Gurobi convex MIQP on the exact one-hot convexification", "mineig": "Gurobi convex MIQP on the exact minimum-eigenvalue shift"}
_STATUS_NAMES = {1: "loaded", 2: "optimal", 3: "infeasible", 4: "infeasible or unbounded", 5: "unbounded", 6: "cutoff",
                 7: "iteration limit", 8: "node limit", 9: "time limit", 10: "solution limit", 11: "interrupted",
                 12: "numeric trouble", 13: "suboptimal", 14: "in progress", 15: "objective limit", 16: "work limit", 17: "memory limit"}


def _solver_error(label: str, exc, model: CanonicalModel) -> SolverError:
    """A one-line SolverError for a GurobiError: licence refusals name the alternatives."""
    errno = getattr(exc, "errno", None)
    detail = " ".join(str(getattr(exc, "message", exc)).split())
    variables, constraints = model.num_items, model.num_groups + model.num_budgets
    if model.quadratic is not None:
        others = "solver='highs' (open source, exact) or 'bnb'"
    else:
        others = "solver='mckp' (exact, the default) or 'highs' (open source, exact)"
    if errno == 10010:
        return SolverError(f"{label}: the size-limited pip licence refused this model ({variables} variables, {constraints} constraints; "
                           f"quadratic models are limited to about 200 variables). Use {others}, or set GRB_LICENSE_FILE to a full licence.")
    if errno in LICENCE_ERRNOS or "licens" in detail.lower():
        return SolverError(f"{label}: no usable Gurobi licence ({detail}). Use {others}, or set GRB_LICENSE_FILE to a full licence.")
    return SolverError(f"{label}: Gurobi error {errno}: {detail}")
