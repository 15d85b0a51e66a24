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

from ..reductions import CanonicalModel
from ..reductions.linearize import Linearization
from ..reductions.matrix import milp_arrays
from .base import SolveSettings, register
from .milp import MilpBackend, MilpRun


@register
class ScipyBackend(MilpBackend):
    name = "scipy"
    description = "scipy.optimize.milp (HiGHS through SciPy; no warm start); pairwise terms by exact one-hot linearization"
    requires = ("scipy",)
    STATUS_MAP = {0: "optimal", 1: "time_limit", 2: "infeasible"}  # scipy.optimize.milp's status codes (3: unbounded)
    display = "scipy.optimize.milp"

    def proof(self, model: CanonicalModel, linear: Linearization | None) -> str:
        return "scipy.optimize.milp (HiGHS)" + (" on the one-hot linearization" if linear is not None else "")

    def run_milp(self, model: CanonicalModel, settings: SolveSettings, warm: np.ndarray | None, linear: Linearization | None) -> MilpRun:
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
        text = str(res.message)
        if res.status == 1 and settings.deadline.limit is not None:
            text = f"{self.limit_text(settings, text)} ({res.message})"
        dual = getattr(res, "mip_dual_bound", None)
        return MilpRun(int(res.status), text, values=None if res.x is None else np.asarray(res.x),
                       objective=None if res.x is None else float(res.fun), bound=None if dual is None else float(dual),
                       scale=arrays.scale, constant=arrays.constant,
                       stats={"nodes": int(getattr(res, "mip_node_count", 0) or 0), "scipy_status": int(res.status), "scipy_message": str(res.message)})
