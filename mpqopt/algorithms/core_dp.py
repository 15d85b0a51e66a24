"""Exact search of the core left after reduced-cost fixing (single budget).

The groups that still have several candidate items are solved by dynamic programming over
non-dominated (cost, value) states, Nemhauser-Ullmann style, with two prunings: states over the
capacity, and states whose completion bound cannot beat the incumbent. The completion bound is the
LP relaxation of the remaining core groups at the state's own leftover capacity (a convex piecewise
linear function read off the sorted hull increments), or, for very large cores, the weaker
Lagrangian bound at the global multiplier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..reductions import CanonicalModel, restrict
from .hull import hull_increments

LP_BOUND_MAX_GROUPS = 2000  # above this the per-step LP bounds cost more than they save


@dataclass
class CoreResult:
    items: np.ndarray | None  # best choice with objective <= target, or None if there is none
    complete: bool  # False when the state count passed the limit (nothing proven)
    core_groups: int
    max_states: int


def solve_core(model: CanonicalModel, keep: np.ndarray, lam: float, base: np.ndarray, target: float, state_limit: int = 3_000_000) -> CoreResult:
    """Best choice among the items in ``keep`` whose objective is at most ``target``.

    Groups with one item in ``keep`` take it; ``base`` supplies it. Every solution of objective
    ``<= target`` that uses only kept items survives the pruning, so when ``items`` comes back it is
    optimal among them, and when ``complete`` and ``items is None`` there is none.
    """
    weight = model.weights[0]
    kept = np.nonzero(keep)[0]
    counts = np.bincount(model.item_group[kept], minlength=model.num_groups)
    core_groups = np.nonzero(counts > 1)[0]
    adjusted = model.value + lam * weight
    if core_groups.size:
        # decided groups first, the most ambiguous last: states multiply where choices are close,
        # and late in the order most of them are cut by the completion bound
        reduced = adjusted - np.minimum.reduceat(adjusted, model.group_start[:-1])[model.item_group]
        nearest = np.minimum.reduceat(np.where(keep & (reduced > 0), reduced, np.inf), model.group_start[:-1])
        core_groups = core_groups[np.argsort(-nearest[core_groups], kind="stable")]
    if core_groups.size == 0:
        items = base.copy()
        items[model.item_group[kept]] = kept
        fits = model.weights[0, items].sum() <= model.rhs[0] + 1e-12 * abs(model.rhs[0])
        ok = fits and model.items_objective(items) <= target + 1e-9 * max(abs(target), 1e-300)
        return CoreResult(items if ok else None, True, 0, 1)
    single = counts == 1
    lone_items = kept[single[model.item_group[kept]]]
    base = base.copy()
    base[model.item_group[lone_items]] = lone_items
    fixed_cost = float(weight[base[single]].sum())
    capacity = float(model.rhs[0]) - fixed_cost
    capacity += 1e-12 * abs(float(model.rhs[0]))  # summation-order round-off only
    target = target - float(model.value[base[single]].sum())
    margin = 1e-9 * max(abs(target), float(np.abs(model.value).max(initial=0.0)), 1e-300)

    core_items = kept[np.isin(model.item_group[kept], core_groups)]
    group_best = np.full(model.num_groups, np.inf)
    np.minimum.at(group_best, model.item_group[core_items], adjusted[core_items])
    remaining = np.concatenate([np.cumsum(group_best[core_groups][::-1])[::-1][1:], [0.0]])

    completion = _lp_completion(model, keep, core_groups) if core_groups.size <= LP_BOUND_MAX_GROUPS else None
    by_group = [np.arange(model.group_start[g], model.group_start[g + 1])[keep[model.group_start[g]:model.group_start[g + 1]]] for g in core_groups.tolist()]
    cost = np.zeros(1)
    value = np.zeros(1)
    parents: list[np.ndarray] = []
    chosen: list[np.ndarray] = []
    peak = 1
    for step, items in enumerate(by_group):
        k = items.size
        new_cost = (cost[:, None] + weight[items][None, :]).ravel()
        new_value = (value[:, None] + model.value[items][None, :]).ravel()
        parent = np.repeat(np.arange(cost.size), k)
        item = np.tile(items, cost.size)
        if completion is None:
            bound = new_value + lam * (new_cost - capacity) + remaining[step]
        else:
            bound = new_value + completion(step, capacity - new_cost)
        ok = (new_cost <= capacity) & (bound <= target + margin)
        new_cost, new_value, parent, item = new_cost[ok], new_value[ok], parent[ok], item[ok]
        # keep only states no other state beats in both cost and value
        order = np.lexsort((new_value, new_cost))
        new_cost, new_value, parent, item = new_cost[order], new_value[order], parent[order], item[order]
        best_before = np.minimum.accumulate(np.concatenate([[np.inf], new_value[:-1]]))
        front = new_value < best_before
        cost, value = new_cost[front], new_value[front]
        parents.append(parent[front])
        chosen.append(item[front])
        peak = max(peak, cost.size)
        if cost.size > state_limit:
            return CoreResult(None, False, core_groups.size, peak)
        if cost.size == 0:  # no solution within the target
            return CoreResult(None, True, core_groups.size, peak)
    best = int(np.argmin(value))
    if value[best] > target:
        return CoreResult(None, True, core_groups.size, peak)
    items = base
    state = best
    for step in range(len(by_group) - 1, -1, -1):
        items[core_groups[step]] = chosen[step][state]
        state = parents[step][state]
    return CoreResult(items, True, core_groups.size, peak)


def _lp_completion(model: CanonicalModel, keep: np.ndarray, core_groups: np.ndarray):
    """``f(step, leftover)``: LP optimum of core groups after ``step`` with ``leftover`` capacity
    (``+inf`` where even their cheapest items do not fit)."""
    sub, kept = restrict(model, keep)
    inc = hull_increments(sub)
    position = np.full(model.num_groups, -1)
    position[core_groups] = np.arange(core_groups.size)
    start_cost = sub.weights[0, inc.start_items]
    start_value = sub.value[inc.start_items]
    group_pos = position[inc.group]
    core_inc = group_pos >= 0
    group_pos, dcost, dvalue = group_pos[core_inc], inc.dcost[core_inc], inc.dvalue[core_inc]
    # suffix sums of the start points of the remaining core groups
    core_start_cost = np.concatenate([np.cumsum(start_cost[core_groups][::-1])[::-1][1:], [0.0]])
    core_start_value = np.concatenate([np.cumsum(start_value[core_groups][::-1])[::-1][1:], [0.0]])
    tables = []
    for step in range(core_groups.size):
        later = group_pos > step
        tables.append((np.concatenate([[0.0], np.cumsum(dcost[later])]), np.concatenate([[0.0], np.cumsum(dvalue[later])])))

    def completion(step: int, leftover: np.ndarray) -> np.ndarray:
        spare = leftover - core_start_cost[step]
        cum_cost, cum_value = tables[step]
        value = core_start_value[step] + np.interp(spare, cum_cost, cum_value)
        return np.where(spare >= 0, value, np.inf)

    return completion
