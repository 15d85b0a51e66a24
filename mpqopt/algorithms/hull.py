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


_ROW_CHUNK = 1 << 17  # rows per block of the pairwise slope computation (bounds memory)


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
    """Items in a padded ``[F, K]`` layout, each row sorted by (cost, value): cost, value, item id, real mask."""
    F = model.num_groups
    K = int(np.diff(model.group_start).max(initial=1))
    if model.num_items == F * K:  # every group has K items, stored group after group: a reshape
        C, V = cost.reshape(F, K), model.value.reshape(F, K)
        item = np.arange(F * K).reshape(F, K)
    else:
        groups = model.item_group
        pos = np.arange(groups.size) - model.group_start[groups]
        C = np.full((F, K), np.inf)
        V = np.full((F, K), np.inf)
        item = np.full((F, K), -1, dtype=np.int64)
        C[groups, pos] = cost
        V[groups, pos] = model.value
        item[groups, pos] = np.arange(groups.size)
    order = np.lexsort((V, C), axis=1)  # by cost, ties by value; rows are short
    C, V, item = (np.take_along_axis(a, order, axis=1) for a in (C, V, item))
    return C, V, item, item >= 0


def lower_hulls(model: CanonicalModel, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Padded arrays ``(C, V, item, on_hull)``: ``on_hull`` marks each group's lower-hull vertices."""
    C, V, item, real = _padded(model, cost)
    # dominated: not strictly better in value than some cheaper-or-equal point before it
    best_before = np.minimum.accumulate(np.concatenate([np.full((C.shape[0], 1), np.inf), V[:, :-1]], axis=1), axis=1)
    alive = real & (V < best_before)
    # Among the survivors cost rises and value falls strictly. Point j is a hull vertex when some
    # line through it has every other point above: max slope from the points before it is below
    # the min slope to the points after it. All pairs at once; rows are short.
    K = C.shape[1]
    on_hull = alive.copy()
    if K <= 2:  # two undominated points always both lie on the hull
        return C, V, item, on_hull
    before = np.tri(K, k=-1, dtype=bool).T  # before[p, j]: p < j
    for lo in range(0, C.shape[0], _ROW_CHUNK):
        c, v, a = C[lo:lo + _ROW_CHUNK], V[lo:lo + _ROW_CHUNK], alive[lo:lo + _ROW_CHUNK]
        # slopes past float range (cost steps near the float minimum) saturate at +-inf, as steepest
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            slope = (v[:, None, :] - v[:, :, None]) / (c[:, None, :] - c[:, :, None])  # [row, p, j]
        pair = a[:, :, None] & a[:, None, :]
        incoming = np.where(pair & before, slope, -np.inf).max(axis=1)  # over p < j
        outgoing = np.where(pair & before, slope, np.inf).min(axis=2)  # over n > j, indexed [row, j]
        on_hull[lo:lo + _ROW_CHUNK] &= incoming < outgoing
    return C, V, item, on_hull


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
    # decreasing efficiency; np.nonzero listed steps in hull order, which a stable sort keeps for ties
    order = np.argsort(-efficiency, kind="stable")
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
    rhs = float(model.rhs[0] + model.budget_slack[0])
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
