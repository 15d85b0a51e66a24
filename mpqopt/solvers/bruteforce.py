"""Exhaustive enumeration: the reference oracle for tests, exact for tiny problems (pairwise included)."""

from __future__ import annotations

import numpy as np

from ..errors import SolverError
from ..reductions import CanonicalModel
from .base import Backend, RawSolution, SolveSettings, register

MAX_ASSIGNMENTS = 1 << 22
_CHUNK = 1 << 15


@register
class BruteForceBackend(Backend):
    name = "bruteforce"
    description = "exhaustive enumeration (test oracle; tiny problems only, pairwise terms included)"
    supports_quadratic = True

    def solve(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        sizes = np.diff(model.group_start)
        total = int(np.prod(sizes.astype(object))) if sizes.size else 1
        if total > MAX_ASSIGNMENTS:
            raise SolverError(f"solver 'bruteforce' would enumerate {total} assignments (limit {MAX_ASSIGNMENTS}); use 'highs'")
        quad = None if model.quadratic is None else model.quadratic.toarray()
        limit = model.rhs + model.budget_slack
        best_obj, best_items = np.inf, None
        for first in range(0, total, _CHUNK):
            codes = np.arange(first, min(first + _CHUNK, total), dtype=np.int64)
            items = np.empty((codes.size, sizes.size), dtype=np.int64)
            for f in range(sizes.size - 1, -1, -1):  # mixed-radix digits, last group fastest
                codes, digit = np.divmod(codes, sizes[f])
                items[:, f] = model.group_start[f] + digit
            objective = model.value[items].sum(axis=1)
            if quad is not None:
                objective = objective + quad[items[:, :, None], items[:, None, :]].sum(axis=(1, 2))
            feasible = (model.weights[:, items].sum(axis=2) <= limit[:, None]).all(axis=0)
            if feasible.any():
                masked = np.where(feasible, objective, np.inf)
                i = int(np.argmin(masked))
                if masked[i] < best_obj:
                    best_obj, best_items = float(masked[i]), items[i].copy()
        if best_items is None:
            return RawSolution("infeasible", message=f"none of the {total} assignments meets the budgets")
        return RawSolution("optimal", items=best_items, objective=best_obj, bound=best_obj, message=f"enumerated {total} assignments", stats={"assignments": total})
