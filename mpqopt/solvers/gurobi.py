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
from ..algorithms.incumbent import separable_incumbent
from ..errors import SolverError
from ..reductions import CanonicalModel
from ..reductions.convexify import Convexified, convexify
from ..reductions.matrix import budget_row_scales
from .base import RawSolution, SolveSettings, register
from .milp import MilpBackend, MilpRun

MODES = ("onehot", "mineig", "psd")
LICENCE_ERRNOS = (10009, 10010)  # GRB_ERROR_NO_LICENSE, GRB_ERROR_SIZE_LIMIT_EXCEEDED
STATUS_MAP = {2: "optimal", 3: "infeasible", 4: "infeasible",  # binary variables: never unbounded
              7: "time_limit", 8: "time_limit", 9: "time_limit", 10: "time_limit", 11: "time_limit", 15: "time_limit", 16: "time_limit", 17: "time_limit",
              12: "feasible", 13: "feasible"}  # 12 NUMERIC with an assignment (its bound untrusted), 13 SUBOPTIMAL
NOISE_RTOL = 1e-14  # gaps below this share of the objective's terms are round-off (result.relative_gap)


@register
class GurobiBackend(MilpBackend):
    name = "gurobi"
    description = ("Gurobi (commercial; the pip licence is size-limited): ILP, nonconvex MIQP for pairwise terms; "
                   "'gurobi:onehot' / 'gurobi:mineig' exact convex forms, 'gurobi:psd' CLADO's approximate PSD projection")
    requires = ("gurobipy",)
    extra = "gurobi"
    STATUS_MAP = STATUS_MAP
    display = "Gurobi"

    def __init__(self, arg: str | None = None):
        if arg is not None and arg not in MODES:
            raise SolverError(f"solver 'gurobi' takes no ':{arg}' argument (only {', '.join('gurobi:' + m for m in MODES)})")
        self.mode = arg
        self.exact = arg != "psd"  # the PSD projection proves nothing about the original objective

    @property
    def label(self) -> str:
        return self.name if self.mode is None else f"{self.name}:{self.mode}"

    def solve(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        """Gurobi takes the pairwise term itself (MIQP): no linearization; CLADO's projected mode
        proves nothing about the original objective."""
        import gurobipy as gp

        conv = None
        stats = {}
        if model.quadratic is not None and self.mode is not None:
            start = time.perf_counter()
            conv = convexify(model, self.mode)
            stats["convexify"] = {"method": conv.method, "shift_total": conv.shift_total, "min_eigenvalue_before": conv.min_eigenvalue_before,
                                  "min_eigenvalue_after": conv.min_eigenvalue_after, "seconds": time.perf_counter() - start}
        warm = settings.warm_start if settings.warm_start is not None else (separable_incumbent(model) if model.quadratic is not None else None)
        try:
            run = self.run_milp(model, settings, warm, None, conv=conv)
        except gp.GurobiError as exc:
            raise _solver_error(self.label, exc, model) from None
        run.stats.update(stats)
        raw = self.finish(model, settings, run, warm)
        if raw.proof:
            raw.proof = _PROOFS[conv.method if conv is not None else ("miqp" if model.quadratic is not None else "ilp")]
        note = f"; {conv.note}" if conv is not None else ""
        if self.mode is not None and model.quadratic is None:
            note = f"; no pairwise term, so ':{self.mode}' changed nothing (exact ILP)"
        if conv is not None and not conv.exact and raw.items is not None:  # CLADO's mode: a different objective
            raw.status = "time_limit" if raw.status == "time_limit" else "feasible"
            raw.bound, raw.proof = None, ""
            raw.message = (f"{raw.message} on the PSD-projected objective (CLADO's approximation): no proof of optimality "
                           f"on the original objective, which is what is reported")
        raw.message += note
        return raw

    def run_milp(self, model: CanonicalModel, settings: SolveSettings, warm: np.ndarray | None, linear=None, conv: Convexified | None = None) -> MilpRun:
        import gurobipy as gp

        env = gp.Env(empty=True)
        try:
            env.setParam("OutputFlag", 1 if settings.verbose else 0)  # before start(): no licence banner
            env.start()
            with gp.Model("mpqopt", env=env) as m:
                x, scale = self._build(gp, m, model, conv)
                self._set_params(m, model, settings, scale)
                if warm is not None:
                    start = np.zeros(model.num_items)
                    start[np.asarray(warm, dtype=np.int64)] = 1.0
                    x.Start = start
                m.optimize()
                status = m.Status
                if status == gp.GRB.NUMERIC and not m.SolCount:
                    status = "numeric trouble, no assignment"  # not in STATUS_MAP: an error
                text = _STATUS_NAMES.get(m.Status, f"status {m.Status}")
                if m.Status in (gp.GRB.TIME_LIMIT, gp.GRB.INTERRUPTED):
                    text = self.limit_text(settings, text)
                # after numeric trouble its bound is not trusted; the projected objective is not ours
                trusted = m.Status != gp.GRB.NUMERIC and (conv is None or conv.exact)
                run = MilpRun(status, text, bound=float(m.ObjBound), scale=scale, constant=-model.offset, trusted=trusted,
                              stats={"nodes": int(m.NodeCount), "gurobi_status": _STATUS_NAMES.get(m.Status, f"status {m.Status}")})
                if m.SolCount:
                    run.values, run.objective = np.asarray(x.X), float(m.ObjVal)
                return run
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
    def _set_params(m, model: CanonicalModel, settings: SolveSettings, scale: float) -> None:
        if settings.stop_at is not None:
            m.Params.TimeLimit = seconds_left(settings.stop_at)
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
