"""SciPy backend (``scipy.optimize.milp``): the HiGHS MILP engine through SciPy, with no extra package.

It solves the very MILP the ``highs`` backend's plain mode builds
(:func:`mpqopt.reductions.matrix.milp_arrays`: one-hot rows, budget rows scaled by their limits,
normalized objective; pairwise terms through the same exact one-hot linearization), but SciPy exposes fewer controls: no warm start, no threads, and HiGHS's
default feasibility tolerances (1e-7 primal, 1e-6 MIP). Assignments over a budget by those
tolerances are therefore repaired and reported ``feasible``, exactly as in the ``highs`` backend.
Use it as an independent cross-check of ``highs`` or where ``highspy`` is not installed.

>>> from mpqopt import Problem, solve
>>> p = Problem(["a", "b"], [4, 8], [[0.5, 0.0], [0.1, 0.0]], costs={"size_bits": [[4, 8], [4, 8]]})
>>> r = solve(p, budgets={"size_bits": 12}, solver="scipy")
>>> r.status, r.assignment
('optimal', {'a': 'W8', 'b': 'W4'})
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..algorithms.heuristics import is_feasible
from ..reductions import CanonicalModel
from ..reductions.linearize import Linearization
from ..reductions.matrix import milp_arrays
from .base import Backend, RawSolution, SolveSettings, register
from .highs import milp_solution, solve_linearized

# scipy.optimize.milp's status codes (SciPy >= 1.9)
_OPTIMAL, _LIMIT, _INFEASIBLE, _UNBOUNDED = 0, 1, 2, 3


@register
class ScipyBackend(Backend):
    name = "scipy"
    description = "scipy.optimize.milp (HiGHS through SciPy; no warm start); pairwise terms by exact one-hot linearization"
    requires = ("scipy",)
    supports_quadratic = True

    def solve(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        if model.quadratic is not None:
            return solve_linearized(model, lambda linear: self._milp(model, settings, linear))
        return self._milp(model, settings, None)

    def _milp(self, model: CanonicalModel, settings: SolveSettings, linear: Linearization | None) -> RawSolution:
        from scipy.optimize import Bounds, LinearConstraint, milp

        arrays = milp_arrays(model, linear)
        matrix = sp.csc_array((arrays.value, arrays.index, arrays.start), shape=(arrays.num_rows, arrays.num_cols))
        # mip_rel_gap always set: SciPy's default (HiGHS's 1e-4) would stop short of optimality
        options = {"disp": bool(settings.verbose), "mip_rel_gap": float(settings.mip_gap)}
        if settings.stop_at is not None:
            # what is left of the whole solve; scipy cannot be interrupted, so mpqopt.solve stops
            # waiting for it at the deadline if HiGHS overruns its own limit (it does in presolve)
            options["time_limit"] = float(settings.left())
        res = milp(arrays.cost, integrality=arrays.integrality(), bounds=Bounds(0.0, 1.0),
                   constraints=LinearConstraint(matrix, arrays.row_lower, arrays.row_upper), options=options)
        stats = {"nodes": int(getattr(res, "mip_node_count", 0) or 0), "scipy_status": int(res.status), "scipy_message": str(res.message)}
        text = f"scipy.optimize.milp: {res.message}"
        if res.status == _INFEASIBLE:
            return RawSolution("infeasible", message="scipy.optimize.milp (HiGHS) proved the budgets cannot all be met", stats=stats)
        if res.status not in (_OPTIMAL, _LIMIT):
            return RawSolution("error", message=f"scipy.optimize.milp stopped with status {res.status}: {res.message}", stats=stats)
        kind = "optimal" if res.status == _OPTIMAL else "time_limit"
        if kind == "time_limit" and settings.deadline.limit is not None:
            text = f"scipy.optimize.milp: {settings.deadline.message()} ({res.message})"
        dual = getattr(res, "mip_dual_bound", None)
        has_bound = dual is not None and np.isfinite(dual)
        if res.x is None:
            bound = dual * arrays.scale + arrays.constant if has_bound else None
            warm = settings.warm_start
            if warm is not None and is_feasible(model, np.asarray(warm)):  # no warm start in SciPy: keep the caller's
                return RawSolution(kind, items=np.asarray(warm), objective=model.items_objective(np.asarray(warm)), bound=bound, message=f"{text}; returning the starting assignment", stats=stats)
            return RawSolution(kind, bound=bound, message=f"{text}; no assignment found", stats=stats)
        gap = max(float(res.fun) - float(dual), 0.0) * arrays.scale if has_bound else None
        raw = milp_solution(model, np.asarray(res.x), kind, text, gap, stats, linear)
        raw.proof = raw.proof.replace("HiGHS MILP", "scipy.optimize.milp (HiGHS)")
        return raw

