"""Better one-budget incumbents by re-solving a few groups exactly (large neighbourhoods).

When the reduced-cost core is too large for the DP to prove, a good incumbent is what is left to
give (and what HiGHS then starts from). Every group but a chosen few keeps the incumbent's item;
the few are re-solved exactly by the core DP (:func:`mpqopt.algorithms.core_dp.solve_core`, with
the incumbent as its base and the incumbent less a unit as target), so each answer is strictly
better. The few are the groups nearest the LP's break (least reduced cost of an alternative, as
in Pisinger's expanding core), in growing numbers while the answers improve and the work allowed
lasts.

>>> import numpy as np
>>> from mpqopt.synthetic import knapsack_problem
>>> from mpqopt.reductions import canonicalize
>>> from mpqopt.algorithms.hull import greedy
>>> from mpqopt.algorithms.heuristics import fill
>>> model = canonicalize(p := knapsack_problem(200, 10, "strongly", R=1000, seed=0), dict(p.budgets))
>>> start = greedy(model)
>>> first = fill(model, start.items)
>>> better, _ = neighbourhood_search(model, first, start.lam, work_limit=10**6)
>>> bool(model.items_objective(better) <= model.items_objective(first))
True
"""

from __future__ import annotations

import numpy as np

from ..deadline import Deadline
from ..reductions import CanonicalModel
from .core_dp import solve_core
from .lagrangian import lagrangian_bound

# groups re-solved together, tried in this order (each size again while it improves)
NEIGHBOURHOOD_SIZES = (16, 32, 64, 128, 256, 512)


def neighbourhood_search(model: CanonicalModel, incumbent: np.ndarray, lam: float, work_limit: int, deadline: Deadline | None = None, sizes: tuple[int, ...] = NEIGHBOURHOOD_SIZES) -> tuple[np.ndarray, dict]:
    """The incumbent improved by exact re-solves of the groups nearest the break; returns it and
    stats (``nbh_work``: DP states generated, ``nbh_improvements``). Only strictly better,
    budget-feasible assignments replace ``incumbent``."""
    lagrange, reduced = lagrangian_bound(model, np.array([lam]))
    unit = 1.0 if model.integral_objective else 1e-9 * max(abs(model.items_objective(incumbent)), 1e-300)
    # each group's nearest alternative to its Lagrangian choice: how ambiguous the group is
    positive = np.where(reduced > 0, reduced, np.inf)
    nearest = np.minimum.reduceat(positive, model.group_start[:-1])
    order = np.argsort(nearest, kind="stable")
    incumbent = np.asarray(incumbent, dtype=np.int64).copy()
    inc_obj = model.items_objective(incumbent)
    work = improvements = 0
    each = work_limit // len(sizes)  # a neighbourhood whose proof explodes leaves the larger ones their share
    for size in sizes:
        if deadline is not None and deadline.expired():
            break
        chosen = np.zeros(model.num_groups, dtype=bool)
        chosen[order[:size]] = True
        # an assignment better than the incumbent has total reduced cost below its gap
        alternatives = np.flatnonzero(chosen[model.item_group] & (reduced <= inc_obj - lagrange))
        alternatives = alternatives[alternatives != incumbent[model.item_group[alternatives]]]
        core = solve_core(model, incumbent, alternatives, lam, inc_obj - unit, work_limit=each, deadline=deadline)
        work += core.work
        if core.items is not None and model.items_objective(core.items) < inc_obj:
            incumbent, inc_obj = core.items, model.items_objective(core.items)
            improvements += 1
        if size >= model.num_groups:
            break
    return incumbent, {"nbh_work": work, "nbh_improvements": improvements}
