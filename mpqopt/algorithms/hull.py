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


def _padded(model: CanonicalModel, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Items in a padded ``[F, K]`` layout, each row sorted by (cost, value): cost, value, item id
    (None: item ``f * K + k``, the model's own layout) and real mask (None: every entry is real)."""
    F = model.num_groups
    K = int(np.diff(model.group_start).max(initial=1))
    if model.num_items == F * K:  # every group has K items, stored group after group: a reshape
        C, V = cost.reshape(F, K), model.value.reshape(F, K)
        if K == 1 or bool((C[:, 1:] > C[:, :-1]).all()):  # already sorted by cost (more bits cost more): no copies
            return C, V, None, None
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
        real = item >= 0
        # each group's items already by rising cost (padding, inf, after them): no sort
        if K == 1 or bool(((C[:, 1:] > C[:, :-1]) | ~real[:, 1:]).all()):
            return C, V, item, real
    order = np.lexsort((V, C), axis=1)  # by cost, ties by value; rows are short
    C, V, item = (np.take_along_axis(a, order, axis=1) for a in (C, V, item))
    return C, V, item, item >= 0


_BLOCK = 1 << 15  # rows per block of the hull test: its column buffers stay in cache


def _hull_mask(C: np.ndarray, V: np.ndarray, real: np.ndarray | None) -> np.ndarray:
    """``[F, K]`` mask of each row's lower-hull vertices (rows sorted by cost, then value)."""
    F, K = C.shape
    on_hull = np.empty((F, K), dtype=bool)
    for lo in range(0, F, _BLOCK):
        hi = min(lo + _BLOCK, F)
        _block_hull(_block_columns(C[lo:hi], V[lo:hi]), None if real is None else real[lo:hi], on_hull[lo:hi])
    return on_hull


def _block_columns(C: np.ndarray, V: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each column of a block of rows as contiguous ``(cost, value)`` arrays."""
    return [(np.ascontiguousarray(C[:, j]), np.ascontiguousarray(V[:, j])) for j in range(C.shape[1])]


def _block_hull(cols: list[tuple[np.ndarray, np.ndarray]], real: np.ndarray | None, on_hull: np.ndarray) -> None:
    """:func:`_hull_mask` of a block of rows (given by its columns), into ``on_hull``; column by
    column, each over every row of the block at once (rows are many, columns few)."""
    F, K = on_hull.shape
    # dominated: not strictly better in value than some cheaper-or-equal point before it
    alive = []
    best = np.full(F, np.inf)
    for j in range(K):
        a = cols[j][1] < best
        if real is not None:
            a &= real[:, j]
        alive.append(a)
        np.minimum(best, cols[j][1], out=best)
    if K <= 2:  # two undominated points always both lie on the hull
        for j in range(K):
            on_hull[:, j] = alive[j]
        return
    # Among the survivors cost rises and value falls strictly. Point j is a hull vertex when some
    # line through it has every other point above: max slope from the points before it is below
    # the min slope to the points after it.
    incoming = [np.full(F, -np.inf) for _ in range(K)]
    outgoing = [np.full(F, np.inf) for _ in range(K)]
    slope, dc, masked, pair = np.empty(F), np.empty(F), np.empty(F), np.empty(F, dtype=bool)
    # slopes past float range (cost steps near the float minimum) saturate at +-inf, as steepest
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for j in range(1, K):
            cj, vj = cols[j]
            for p in range(j):
                cp, vp = cols[p]
                np.subtract(vj, vp, out=slope)
                np.divide(slope, np.subtract(cj, cp, out=dc), out=slope)  # (v_j - v_p) / (c_j - c_p)
                np.logical_and(alive[p], alive[j], out=pair)
                masked.fill(-np.inf)
                np.copyto(masked, slope, where=pair)
                np.maximum(incoming[j], masked, out=incoming[j])
                masked.fill(np.inf)
                np.copyto(masked, slope, where=pair)
                np.minimum(outgoing[p], masked, out=outgoing[p])
    for j in range(K):
        on_hull[:, j] = alive[j] & (incoming[j] < outgoing[j])


def lower_hulls(model: CanonicalModel, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Padded arrays ``(C, V, item, on_hull)``: ``on_hull`` marks each group's lower-hull vertices."""
    C, V, item, real = _padded(model, cost)
    on_hull = _hull_mask(C, V, real)
    if item is None:
        item = np.arange(C.size).reshape(C.shape)
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
    """MPQCO's greedy on the hulls, plus the LP bound; None if even the cheapest choice breaks the budget.

    Without ``increments`` the global order of the increments is never built: the break
    efficiency is found by a threshold search (:class:`_Hulls`), O(increments) where the sort was
    O(n log n) (1,000,000 x 8: ~0.5 s instead of ~5 s). The answer is the same: increments in
    order of decreasing efficiency, ties in group order, until one does not fit."""
    rhs = float(model.rhs[0] + model.budget_slack[0])  # a budget set exactly at an achievable total may differ from our sum in the last bits
    if increments is None:
        return _Hulls(model).greedy(rhs)
    inc = increments
    base_cost = float(model.weights[0, inc.start_items].sum())
    if base_cost > rhs:
        return None
    cum = base_cost + np.cumsum(inc.dcost)
    taken = int(np.searchsorted(cum, rhs, side="right"))
    # increments of one group are taken in hull order, so the count taken is the hull position
    steps = np.bincount(inc.group[:taken], minlength=model.num_groups)
    items = inc.hull_items[np.arange(model.num_groups), steps]
    used = base_cost + (float(cum[taken - 1] - base_cost) if taken else 0.0)
    return _greedy_solution(model, items, rhs, used, taken, inc.dcost[taken] if taken < inc.dcost.size else None,
                            inc.dvalue[taken] if taken < inc.dcost.size else None, inc.efficiency[taken] if taken < inc.dcost.size else 0.0)


def _greedy_solution(model: CanonicalModel, items: np.ndarray, rhs: float, used: float, taken: int, dcost, dvalue, lam) -> GreedySolution:
    """The greedy's answer from its choice and its break increment (``dcost`` None: every increment fits)."""
    value = float(model.value[items].sum())
    if dcost is None:
        return GreedySolution(items, value, 0.0, taken, rhs - used)
    fraction = (rhs - used) / dcost
    return GreedySolution(items, value + fraction * dvalue, float(lam), taken, rhs - used)


SAMPLE_ROWS = 4096  # rows whose increments estimate the break efficiency


def _block_efficiency(cols: list[tuple[np.ndarray, np.ndarray]], on_hull: np.ndarray, start: np.ndarray) -> np.ndarray:
    """``[K, rows]`` efficiency of the increment that ends at each hull vertex of a block of rows
    (-inf where none ends), and each row's first hull vertex into ``start``."""
    F, K = on_hull.shape
    E = np.full((K, F), -np.inf)
    start.fill(-1)
    last_c, last_v = np.zeros(F), np.zeros(F)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for j, (c, v) in enumerate(cols):
            h = on_hull[:, j]
            # the same operations as hull_increments: -(V_j - V_p) / (C_j - C_p), bit for bit
            np.copyto(E[j], -(v - last_v) / (c - last_c), where=h & (start >= 0))
            np.copyto(start, j, where=h & (start < 0))
            np.copyto(last_c, c, where=h)
            np.copyto(last_v, v, where=h)
    return E


class _Hulls:
    """Each group's lower hull in the padded layout, with the efficiency of the increment that ends at
    each vertex, for the greedy's threshold search: the increments taken are exactly those above the
    break efficiency (plus, among ties, those first in group order), and the cost of taking every
    increment above a threshold ``t`` is the cost of each group's last vertex above ``t`` (a group's
    efficiencies fall along its hull). Efficiencies are kept block by block of rows, ``[K, rows]``
    each: small arrays the passes below read column by column."""

    def __init__(self, model: CanonicalModel) -> None:
        self.model = model
        C, V, item, real = _padded(model, model.weights[0])
        F, K = C.shape
        self.C, self.V, self.item = C, V, item
        self.on_hull = np.empty((F, K), dtype=bool)
        self.start = np.empty(F, dtype=np.int64)  # each group's first hull vertex
        self.blocks: list[tuple[int, np.ndarray]] = []  # (first row, [K, rows] efficiency of the increment ending there; -inf: none)
        for lo in range(0, F, _BLOCK):
            hi = min(lo + _BLOCK, F)
            cols = _block_columns(C[lo:hi], V[lo:hi])
            _block_hull(cols, None if real is None else real[lo:hi], self.on_hull[lo:hi])
            self.blocks.append((lo, _block_efficiency(cols, self.on_hull[lo:hi], self.start[lo:hi])))
        self.rows = np.arange(F)

    def items_at(self, cols: np.ndarray) -> np.ndarray:
        return self.rows * self.C.shape[1] + cols if self.item is None else self.item[self.rows, cols]

    def above(self, t: float) -> np.ndarray:
        """Each group's column after taking every increment of efficiency above ``t``."""
        cols = self.start.copy()
        for lo, E in self.blocks:
            part = cols[lo:lo + E.shape[1]]
            for j in range(E.shape[0]):
                np.copyto(part, j, where=E[j] > t)
        return cols

    def count(self, t: float) -> int:
        """How many increments have an efficiency above ``t``."""
        return sum(int(np.count_nonzero(E > t)) for _, E in self.blocks)

    def between(self, lo_t: float, hi_t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, cols, efficiency)`` of the increments with efficiency in ``(lo_t, hi_t]``."""
        found = []
        for lo, E in self.blocks:
            c, r = np.nonzero((E > lo_t) & (E <= hi_t))
            found.append((r + lo, c, E[c, r]))
        return tuple(np.concatenate(part) for part in zip(*found))  # type: ignore[return-value]

    def sample(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, cols, efficiency)`` of every increment of the given (sorted) rows."""
        found = []
        for lo, E in self.blocks:
            mine = rows[(rows >= lo) & (rows < lo + E.shape[1])]
            sub = E[:, mine - lo]
            c, r = np.nonzero(sub > -np.inf)
            found.append((mine[r], c, sub[c, r]))
        return tuple(np.concatenate(part) for part in zip(*found))  # type: ignore[return-value]

    def cost(self, cols: np.ndarray) -> float:
        return float(self.C[self.rows, cols].sum())

    def increments(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(dcost, dvalue)`` of the increments ending at ``(rows, cols)``, as hull_increments computes them."""
        prev = np.full(rows.size, -1, dtype=np.int64)
        hull = self.on_hull[rows]
        for j in range(self.C.shape[1]):
            np.copyto(prev, j, where=hull[:, j] & (j < cols))
        return self.C[rows, cols] - self.C[rows, prev], self.V[rows, cols] - self.V[rows, prev]

    def greedy(self, rhs: float) -> GreedySolution | None:
        model = self.model
        base_cost = float(self.C[self.rows, self.start].sum())  # the same sum as model.weights[0, start_items].sum()
        if base_cost > rhs:
            return None
        last = self.above(-np.inf)
        used = self.cost(last)
        if used <= rhs:  # every increment fits
            return _greedy_solution(model, self.items_at(last), rhs, used, self.count(-np.inf), None, None, 0.0)
        # with few groups the sample is every group: the bracket would cost more than the window it saves
        windows = [(-np.inf, np.inf)] if self.C.shape[0] <= SAMPLE_ROWS else [self._bracket(rhs, base_cost), (-np.inf, np.inf)]
        for lo, hi in windows:
            cols = self.start.copy() if hi == np.inf else self.above(hi)
            above_cost = base_cost if hi == np.inf else self.cost(cols)
            if hi != np.inf and not (above_cost <= rhs and self.cost(self.above(lo)) > rhs):
                continue  # the estimate missed the break: the window becomes every increment
            # the increments between the two thresholds in the global order: decreasing efficiency, ties in group order
            r, c, eff = self.between(lo, hi)
            order = np.lexsort((c, r, -eff))
            r, c, eff = r[order], c[order], eff[order]
            dcost, dvalue = self.increments(r, c)
            cum = above_cost + np.cumsum(dcost)
            k = int(np.searchsorted(cum, rhs, side="right"))
            if k < r.size or lo == -np.inf:
                break
        np.maximum.at(cols, r[:k], c[:k])  # a group's increments are taken in hull order: the last one is its vertex
        taken = self.count(hi) + k
        used = float(cum[k - 1]) if k else above_cost
        if k == r.size:  # every increment fits after all (the two ways of summing differ in the last bits)
            return _greedy_solution(model, self.items_at(cols), rhs, used, taken, None, None, 0.0)
        return _greedy_solution(model, self.items_at(cols), rhs, used, taken, dcost[k], dvalue[k], eff[k])

    def _bracket(self, rhs: float, base_cost: float) -> tuple[float, float]:
        """Efficiencies ``lo < hi`` that likely enclose the break: from the increments of a sample of
        rows, scaled up. :meth:`greedy` checks the bracket and widens it to everything if it missed."""
        F, K = self.C.shape
        sample = np.arange(0, F, max(1, F // SAMPLE_ROWS))
        rows, c, eff = self.sample(sample)
        if rows.size == 0:
            return -np.inf, np.inf
        order = np.argsort(-eff, kind="stable")
        dcost, _ = self.increments(rows[order], c[order])
        cum = base_cost + np.cumsum(dcost) * (F / sample.size)
        at = int(np.searchsorted(cum, rhs, side="right"))
        margin = int(4 * np.sqrt(rows.size)) + 8
        eff = eff[order]
        hi = float(eff[at - margin]) if at - margin >= 0 else np.inf
        lo = float(eff[at + margin]) if at + margin < eff.size else -np.inf
        return lo, hi

