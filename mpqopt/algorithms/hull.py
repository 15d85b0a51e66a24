"""Per-group lower convex hulls for a single budget, and the greedy / LP solution they give.

With one budget every group's options are points (cost, value). Only points on the lower convex
hull can be basic in the LP relaxation; walking each hull from its cheapest point, the increments
have decreasing efficiency ``-dvalue / dcost``. Taking increments globally in order of efficiency
until the budget is spent is MPQCO's greedy; the first increment that does not fit (the break item)
gives the LP optimum and its multiplier ``lam`` (the break efficiency). All of it is vectorized over
groups: rows of a padded ``[groups x max options]`` array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..reductions import CanonicalModel


@dataclass
class HullIncrements:
    """Greedy increments of every group's lower hull, sorted by decreasing efficiency."""

    start_items: np.ndarray  # (F,) cheapest hull item of each group
    hull_items: np.ndarray  # (F, H) each group's hull vertices by increasing cost, padded with -1
    item_from: np.ndarray  # (N,) item before the increment
    item_to: np.ndarray  # (N,) item after it
    group: np.ndarray  # (N,)
    dcost: np.ndarray  # (N,) > 0
    dvalue: np.ndarray  # (N,) < 0
    efficiency: np.ndarray  # (N,) -dvalue / dcost, non-increasing


def _padded(model: CanonicalModel, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Items sorted by (group, cost, value) in a padded ``[F, K]`` layout: cost, value, item id, real mask."""
    order = np.lexsort((model.value, cost, model.item_group))
    groups = model.item_group[order]
    pos = np.arange(order.size) - model.group_start[groups]
    F = model.num_groups
    K = int(np.diff(model.group_start).max(initial=1))
    C = np.full((F, K), np.inf)
    V = np.full((F, K), np.inf)
    item = np.full((F, K), -1, dtype=np.int64)
    C[groups, pos] = cost[order]
    V[groups, pos] = model.value[order]
    item[groups, pos] = order
    return C, V, item, item >= 0


def lower_hulls(model: CanonicalModel, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Padded arrays ``(C, V, item, on_hull)``: ``on_hull`` marks each group's lower-hull vertices."""
    C, V, item, real = _padded(model, cost)
    # dominated: not strictly better in value than some cheaper-or-equal point before it
    best_before = np.minimum.accumulate(np.concatenate([np.full((C.shape[0], 1), np.inf), V[:, :-1]], axis=1), axis=1)
    alive = real & (V < best_before)
    cols = np.arange(C.shape[1])
    rows = np.arange(C.shape[0])[:, None]
    while True:
        prev = np.maximum.accumulate(np.where(alive, cols, -1), axis=1)
        prev = np.concatenate([np.full((C.shape[0], 1), -1), prev[:, :-1]], axis=1)
        nxt = np.minimum.accumulate(np.where(alive, cols, C.shape[1])[:, ::-1], axis=1)[:, ::-1]
        nxt = np.concatenate([nxt[:, 1:], np.full((C.shape[0], 1), C.shape[1])], axis=1)
        inner = alive & (prev >= 0) & (nxt < C.shape[1])
        p = np.where(inner, prev, 0)
        n = np.where(inner, nxt, 0)
        Cp, Vp, Cn, Vn = C[rows, p], V[rows, p], C[rows, n], V[rows, n]
        with np.errstate(invalid="ignore"):
            # on or above the segment from its neighbours: not a vertex of the lower hull
            above = (V - Vp) * (Cn - Cp) >= (Vn - Vp) * (C - Cp)
        remove = inner & above
        if not remove.any():
            return C, V, item, alive
        alive &= ~remove


def hull_increments(model: CanonicalModel, cost: np.ndarray | None = None) -> HullIncrements:
    """The greedy increments of every group's lower hull under ``cost`` (default: the only budget row)."""
    cost = model.weights[0] if cost is None else cost
    C, V, item, on_hull = lower_hulls(model, cost)
    F, K = C.shape
    rank = np.cumsum(on_hull, axis=1) - 1
    hull_items = np.full((F, int(on_hull.sum(axis=1).max(initial=1))), -1, dtype=np.int64)
    r, c = np.nonzero(on_hull)
    hull_items[r, rank[r, c]] = item[r, c]
    start_items = hull_items[:, 0]
    cols = np.arange(K)
    prev = np.maximum.accumulate(np.where(on_hull, cols, -1), axis=1)
    prev = np.concatenate([np.full((F, 1), -1), prev[:, :-1]], axis=1)
    step = on_hull & (prev >= 0)
    g, j = np.nonzero(step)
    p = prev[g, j]
    dcost = C[g, j] - C[g, p]
    dvalue = V[g, j] - V[g, p]
    efficiency = -dvalue / dcost
    # decreasing efficiency; within a group keep hull order when efficiencies tie
    order = np.lexsort((j, -efficiency))
    return HullIncrements(
        start_items=start_items,
        hull_items=hull_items,
        item_from=item[g, p][order],
        item_to=item[g, j][order],
        group=g[order],
        dcost=dcost[order],
        dvalue=dvalue[order],
        efficiency=efficiency[order],
    )


@dataclass
class GreedySolution:
    """Greedy (integer) and LP (fractional) solutions of a single-budget model."""

    items: np.ndarray  # (F,) greedy choice: feasible
    lp_bound: float  # LP relaxation optimum (a lower bound)
    lam: float  # break efficiency: the LP multiplier of the budget
    taken: int  # increments taken
    capacity_left: float


def greedy(model: CanonicalModel, increments: HullIncrements | None = None) -> GreedySolution | None:
    """MPQCO's greedy on the hulls, plus the LP bound; None if even the cheapest choice breaks the budget."""
    inc = hull_increments(model) if increments is None else increments
    # a budget set exactly at an achievable total may differ from our sum in the last bits
    rhs = float(model.rhs[0]) + 1e-12 * abs(float(model.budgets[0]))
    base_cost = float(model.weights[0, inc.start_items].sum())
    if base_cost > rhs:
        return None
    cum = base_cost + np.cumsum(inc.dcost)
    taken = int(np.searchsorted(cum, rhs, side="right"))
    # increments of one group are taken in hull order, so the count taken is the hull position
    steps = np.bincount(inc.group[:taken], minlength=model.num_groups)
    items = inc.hull_items[np.arange(model.num_groups), steps]
    used = base_cost + (float(cum[taken - 1] - base_cost) if taken else 0.0)
    value = float(model.value[items].sum())
    if taken < inc.dcost.size:
        fraction = (rhs - used) / inc.dcost[taken]
        lp_bound = value + fraction * inc.dvalue[taken]
        lam = float(inc.efficiency[taken])
    else:
        lp_bound, lam = value, 0.0
    return GreedySolution(items, lp_bound, lam, taken, rhs - used)
