"""A feasible start from the linear part of the model alone (pairwise terms ignored): the greedy on
the hulls for one budget, the repaired Lagrangian choice for several.

Its own module because it sits above both :mod:`.heuristics` (repair, fill) and :mod:`.dual`.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ..reductions import CanonicalModel
from .dual import solve_dual
from .heuristics import fill, repair
from .hull import greedy


def separable_incumbent(model: CanonicalModel, time_limit: float | None = None) -> np.ndarray | None:
    """A feasible allocation by the linear part alone (pairwise terms ignored): greedy on the hulls
    for one budget, the repaired Lagrangian choice for several (its dual search within
    ``time_limit`` seconds), each group's best without budgets."""
    model = replace(model, quadratic=None)
    if model.num_budgets == 0:
        return np.minimum.reduceat(np.where(model.value == np.minimum.reduceat(model.value, model.group_start[:-1])[model.item_group], np.arange(model.num_items), model.num_items), model.group_start[:-1])
    if model.num_budgets == 1:
        start = greedy(model)
        return None if start is None else fill(model, start.items)
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    dual = solve_dual(model, time_limit=time_limit)
    items = None if dual.unbounded else repair(model, dual.items, deadline=deadline)
    return None if items is None else fill(model, items)
