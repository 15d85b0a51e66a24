"""Exact search of a multi-budget core by meeting in the middle on Lagrangian reduced costs.

With multipliers ``lam >= 0`` every assignment ``x`` of a separable model satisfies, exactly::

    objective(x) = L(lam) + sum_g reduced(x_g) + lam @ (rhs - weights @ x)

(:mod:`mpqopt.algorithms.lagrangian`), and for ``x`` within the budgets all three added terms are
``>= 0``. An assignment better than the incumbent therefore has a reduced-cost sum below the gap
``G = incumbent - L(lam)`` *and* leaves, in each budget with ``lam_i > 0``, at most ``G / lam_i``
unused. On cores where very many assignments are nearly equal (``mckp_problem(5000, 8, 3)``'s last
core: 134 groups, 5e8 choices with a reduced-cost sum below ``G``) the LP bound of branch and bound
and of the dominance DP (:mod:`mpqopt.algorithms.multi_core`) cannot tell them apart, but the second
condition, that the budgets be filled almost exactly, holds for very few of them.

The core's groups are split into two halves, and each half's partial assignments with a reduced-cost
sum below ``G`` are listed (0.7e6 each on that core: about the square root of the whole). A full
assignment pairs a partial ``a`` of one half with a partial ``b`` of the other, and what ``b`` adds
to each budget must then lie in a window of width ``(G - reduced costs of a) / lam_i`` just below
what ``a`` leaves. The second half's partials are sorted by the grid cells of those windows, and by
reduced cost within a cell, so each partial of the first half meets only the few in the two
neighbouring cells per budget whose reduced cost still fits (1,465 pairs on that core); each such
pair is checked exactly (objective and budgets). No assignment better than the target escapes: its
halves are both listed, and its second half lies in one of the cells looked up. So a complete search
returns the best assignment over the core's items below the target (the incumbent when none is).

The listings grow steeply with the gap (``mckp_problem(50_000, 8, 3)``'s core below its incumbent:
10 million partials in all at a sixth of the way from the Lagrangian bound), so the search
suits cores whose gap the incumbent has nearly closed; :mod:`mpqopt.solvers.mckp` raises the target
in steps (``MEET_FRACTIONS``) and hands the cores it gives up on to HiGHS.

>>> import numpy as np, mpqopt
>>> from mpqopt.reductions import canonicalize
>>> p = mpqopt.Problem(["a", "b", "c"], [2, 4, 8], [[3.0, 1.0, 0.0], [2.0, 0.6, 0.0], [1.0, 0.5, 0.0]],
...                    costs={"size": [[2, 4, 8]] * 3, "ops": [[1, 4, 16]] * 3})
>>> m = canonicalize(p, {"size": 14.0, "ops": 24.0})
>>> r = solve_meet_core(m, np.ones(m.num_items, dtype=bool), m.group_start[:-1], np.array([0.3, 0.05]))
>>> r.complete, round(m.items_objective(r.items), 12), m.expand(r.items).tolist()
(True, 1.6, [2, 1, 0])
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..reductions import CanonicalModel
from .heuristics import is_feasible
from .lagrangian import lagrangian_bound, lagrangian_costs

# Partial assignments listed per half before the search gives up (8 float64/int64 rows each: ~100
# MB at this limit with three budgets). mckp_problem(5000, 8, 3)'s last core lists 0.6-0.9e6.
STATE_LIMIT = 2_000_000
# Candidate pairs (cell hits) checked before the search gives up; they are looked up for chunks of
# _PAIR_CHUNK first-half partials and checked in blocks of _PAIR_BLOCK pairs.
PAIR_LIMIT = 50_000_000
_PAIR_CHUNK = 1 << 14
_PAIR_BLOCK = 1 << 20  # pairs built and checked at once (~100 MB of temporaries with three budgets)
RTOL = 1e-9  # round-off margin on the gap, relative to the objective (as fixable_items)


@dataclass
class MeetCoreResult:
    """Outcome of :func:`solve_meet_core`: ``items`` the best assignment found (the incumbent when
    none is better); ``complete`` when the search ran to the end, so ``items`` is optimal among the
    assignments using the core's items only. ``core_groups`` counts the groups with a choice,
    ``states`` the partial assignments listed (both halves), ``pairs`` the pairs checked."""

    items: np.ndarray
    complete: bool
    core_groups: int
    states: int = 0
    pairs: int = 0


@dataclass
class _Half:
    """Partial assignments of some core groups: reduced-cost sum ``r``, value change ``v`` and
    weight change ``w`` (m rows) against the base items, and the chain (``parent``, ``item``)
    that rebuilds each (``item`` -1: the root, every group at its base)."""

    r: np.ndarray
    v: np.ndarray
    w: np.ndarray
    parent: np.ndarray
    item: np.ndarray

    def choices(self, state: int) -> list[int]:
        out = []
        while self.item[state] >= 0:
            out.append(int(self.item[state]))
            state = int(self.parent[state])
        return out


def solve_meet_core(model: CanonicalModel, keep: np.ndarray, incumbent: np.ndarray, lam: np.ndarray, target: float | None = None,
                    state_limit: int = STATE_LIMIT, pair_limit: int = PAIR_LIMIT, deadline: float | None = None) -> MeetCoreResult:
    """Best assignment of a separable model that uses only the items in ``keep`` (plus the
    incumbent's) and whose objective lies below ``target`` (default and at most: the incumbent's),
    found by meeting in the middle (see the module docstring).

    ``incumbent`` must meet the budgets; ``lam`` (``>= 0``, one per budget) are any Lagrangian
    multipliers (the LP's make the gap smallest and the windows narrowest). A complete search that
    returns the incumbent proves that no such assignment lies below ``target``: the cost of the
    search grows steeply with ``target`` (the listings with the gap), so a low target is cheap.
    More than ``state_limit`` partial assignments in a half, more than ``pair_limit`` pairs to
    check, or ``deadline`` (a ``time.perf_counter()`` value) stop the search with ``complete=False``.
    """
    incumbent = np.asarray(incumbent, dtype=np.int64)
    keep = np.asarray(keep, dtype=bool).copy()
    keep[incumbent] = True
    inc_obj = model.items_objective(incumbent)
    if model.num_groups == 0:  # every decision forced: the incumbent is the only assignment
        return MeetCoreResult(incumbent.copy(), True, 0)
    goal = inc_obj if target is None else min(float(target), inc_obj)
    frame = _frame(model, keep, lam, goal)
    base, flips, dr, gap = frame.base, frame.flips, frame.dr, frame.gap
    core = np.unique(model.item_group[flips])
    if core.size == 0:  # the base is the only assignment left
        better = is_feasible(model, base) and model.items_objective(base) < goal
        return MeetCoreResult(base if better else incumbent.copy(), True, 0)

    # halves of about equal listing size: groups by their cheapest flip, dealt alternately
    cheapest = np.full(model.num_groups, np.inf)
    np.minimum.at(cheapest, model.item_group[flips], dr)
    order = core[np.argsort(cheapest[core], kind="stable")]
    halves = []
    for groups in (order[0::2], order[1::2]):
        half = _listing(model, flips, dr, base, groups, gap, state_limit, deadline)
        if half is None:
            return MeetCoreResult(incumbent.copy(), False, int(core.size))
        halves.append(half)
    a, b = sorted(halves, key=lambda h: h.r.size)  # the larger half is looked up in
    states = a.r.size + b.r.size

    # grid cells: budgets whose window is narrower than what the second half's partials spread
    # over, most selective first, while the cells' linear index stays exact
    room, width, tol, lam = frame.room, frame.width, frame.tol, frame.lam
    cell = width + tol  # the window [need - width, need + tol] spans at most two cells
    spread = b.w.max(axis=1) - b.w.min(axis=1)
    grid = np.nonzero(cell < spread)[0]
    grid = grid[np.argsort(cell[grid] / spread[grid], kind="stable")]
    b_cells = np.floor(b.w[grid] / cell[grid, None])
    first, last = b_cells.min(axis=1, initial=np.inf) - 1, b_cells.max(axis=1, initial=-np.inf) + 1  # no partial's cells
    fits = (np.cumprod(last - first + 1) <= 2.0**52) & (np.maximum(np.abs(first), np.abs(last)) < 2.0**52)
    used = int(np.argmin(fits)) if not fits.all() else grid.size  # a prefix
    grid, b_cells, first, last = grid[:used], b_cells[:used], first[:used], last[:used]
    stride = np.concatenate([[1.0], np.cumprod(last - first + 1)[:-1]])

    def linear(cells: np.ndarray) -> np.ndarray:
        """Cells (``(len(grid), n)``) as one exact index; cells outside the partials' range map to
        the empty border cells."""
        return ((np.clip(cells, first[:, None], last[:, None]) - first[:, None]) * stride[:, None]).sum(axis=0).astype(np.int64)

    keys, rank = np.unique(linear(b_cells), return_inverse=True)
    # sorted by cell, then by reduced cost within a cell: a lookup takes the partials of a cell
    # whose reduced cost still fits beside the first half's (``rank + share`` of the gap; rounding
    # ``rank + x`` is monotone in x, so none that fits is left out)
    scaled = gap * (1.0 + 1e-9)
    by_key = np.argsort(rank + b.r / scaled, kind="stable")
    position = (rank + b.r / scaled)[by_key]
    key_start = np.searchsorted(position, np.arange(keys.size, dtype=np.float64))

    a_grid = a.w[grid]

    def window(ia: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For first-half partials ``ia``: the lowest and highest cells of the second half's weight
        (``[need - left / lam_i - tol, need + tol]`` in grid budget i, where ``need`` is what the
        first leaves and ``left`` what the reduced costs leave of the gap; division then floor is
        monotone, so a weight inside the window falls in them), and that ``left``."""
        need = room[grid, None] - a_grid[:, ia]
        left = gap - a.r[ia]
        low = np.floor((need - (left[None, :] / lam[grid, None] + tol[grid, None])) / cell[grid, None])
        return low, np.floor((need + tol[grid, None]) / cell[grid, None]), left

    # the first half in the order of its lowest cells: the lookups below then come sorted
    order = np.argsort(linear(window(np.arange(a.r.size))[0]), kind="stable")
    best_v, best = goal - model.items_objective(base), None  # the value change to beat
    pairs = 0
    for lo in range(0, a.r.size, _PAIR_CHUNK):
        if deadline is not None and time.perf_counter() > deadline:
            return MeetCoreResult(incumbent.copy(), False, int(core.size), states, pairs)
        ia = order[lo:lo + _PAIR_CHUNK]
        low, high, left = window(ia)
        share = np.minimum(left / scaled + 1e-9, 1.0)
        hit_rows, hit_start, hit_count = [], [], []
        for corner in range(1 << grid.size):
            offset = np.array([(corner >> k) & 1 for k in range(grid.size)], dtype=np.float64)
            coords = low + offset[:, None]
            reach = np.nonzero((coords <= high).all(axis=0))[0]  # the upper cell only where the window reaches it
            key = linear(coords[:, reach])
            at = np.minimum(np.searchsorted(keys, key), keys.size - 1)
            hit = keys[at] == key
            reach, at = reach[hit], at[hit]
            start = key_start[at]
            count = np.searchsorted(position, at + share[reach], side="right") - start
            pairs += int(count.sum())
            if pairs > pair_limit:
                return MeetCoreResult(incumbent.copy(), False, int(core.size), states, pairs)
            hit_rows.append(reach)
            hit_start.append(start)
            hit_count.append(count)
        rows, starts, counts = (np.concatenate(x) for x in (hit_rows, hit_start, hit_count))
        # the pairs are built and checked in blocks of about _PAIR_BLOCK: a chunk may hold up to
        # pair_limit of them (1.7e7 took 6.8 s and 1.6 GB in one piece, past any deadline)
        ends = np.cumsum(counts)
        head = 0
        while head < rows.size:
            if deadline is not None and time.perf_counter() > deadline:
                return MeetCoreResult(incumbent.copy(), False, int(core.size), states, pairs)
            tail = max(head + 1, int(np.searchsorted(ends, ends[head] - counts[head] + _PAIR_BLOCK, side="right")))
            r, c, st = rows[head:tail], counts[head:tail], starts[head:tail]
            pa = ia[np.repeat(r, c)]
            pb = by_key[np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c) + np.repeat(st, c)]
            head = tail
            v = a.v[pa] + b.v[pb]
            ok = (a.r[pa] + b.r[pb] <= gap) & (v < best_v) & (a.w[:, pa] + b.w[:, pb] <= room[:, None] + tol[:, None]).all(axis=0)
            for k in np.nonzero(ok)[0][np.argsort(v[ok], kind="stable")].tolist():
                found = base.copy()
                chosen = np.array(a.choices(int(pa[k])) + b.choices(int(pb[k])), dtype=np.int64)
                found[model.item_group[chosen]] = chosen
                # the exact check of the whole assignment (sums in another order than above); the
                # best candidate nearly always passes it
                if is_feasible(model, found) and model.items_objective(found) < (goal if best is None else model.items_objective(best)):
                    best_v, best = float(v[k]), found
                    break
    return MeetCoreResult(incumbent.copy() if best is None else best, True, int(core.size), states, pairs)


@dataclass
class _Frame:
    """What the search needs to know of a better assignment ``x`` (objective below ``goal``) of the
    kept items, from the identity of the module docstring: each group's ``base`` item (its kept
    item of least reduced cost); the other kept items (``flips``) with reduced cost over their base
    ``dr``; ``x``'s ``dr`` sum to at most ``gap``, and what ``x`` weighs over the base, per budget,
    lies in ``[room - width, room + tol]`` (``room``: what the base leaves; ``width`` infinite
    where ``lam_i = 0``; ``tol``: the budget's slack as ``is_feasible`` allows it, plus round-off;
    ``lam``: the multipliers used, NaN, negative or overflowing ones replaced)."""

    base: np.ndarray
    flips: np.ndarray
    dr: np.ndarray
    gap: float
    room: np.ndarray
    width: np.ndarray
    tol: np.ndarray
    lam: np.ndarray


def _frame(model: CanonicalModel, keep: np.ndarray, lam: np.ndarray, goal: float) -> _Frame:
    """The :class:`_Frame` of the assignments of ``keep``'s items below ``goal`` under ``lam``."""
    lam = np.maximum(np.nan_to_num(np.asarray(lam, dtype=np.float64), nan=0.0, posinf=0.0), 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        lagrange, reduced = lagrangian_bound(model, lam)
    if not (np.isfinite(lagrange) and np.isfinite(reduced[keep]).all()):  # multipliers that overflow: none instead
        lam = np.zeros_like(lam)
        lagrange, reduced = lagrangian_bound(model, lam)
    masked = np.where(keep, reduced, np.inf)
    base_r = np.minimum.reduceat(masked, model.group_start[:-1])
    is_base = keep & (masked == base_r[model.item_group])
    base = np.minimum.reduceat(np.where(is_base, np.arange(model.num_items), model.num_items), model.group_start[:-1])
    flips = np.nonzero(keep & (np.arange(model.num_items) != base[model.item_group]))[0]
    # round-off of the identity's float sums: relative to the objective and to the Lagrangian
    # terms, which cancel when the multipliers are large (lam @ rhs against the items' lam @ w)
    with np.errstate(over="ignore"):  # items left out may overflow (+inf): no group's least
        group_min = np.minimum.reduceat(lagrangian_costs(model, lam), model.group_start[:-1])
    lagrangian_size = float(lam @ np.abs(model.rhs)) + float(np.abs(group_min).sum())
    # (each of the F groups' terms rounds by an ulp or so, in every sum it is part of)
    margin = RTOL * max(abs(goal), abs(lagrange), float(np.abs(model.value[keep]).max(initial=0.0)), 1e-300) + 4.0 * (model.num_groups + 1) * float(np.finfo(np.float64).eps) * lagrangian_size
    # a total within the slack is_feasible allows may overuse a budget: its term lam_i * (unused)
    # is then as low as -lam_i * slack_i, so the other terms may cost that much more (measured
    # from rhs + slack, every term is >= 0 again)
    overuse = float(lam @ model.budget_slack) if model.num_budgets else 0.0
    gap = goal - lagrange - float(base_r.sum()) + margin + overuse  # what the flips and the unused budget may cost
    dr = reduced[flips] - base_r[model.item_group[flips]]
    flips, dr = flips[dr <= gap], dr[dr <= gap]
    heaviest = np.maximum.reduceat(np.where(keep, np.abs(model.weights), 0.0), model.group_start[:-1], axis=1).sum(axis=1)
    tol = 2.0 * model.budget_slack + 1e-12 * (np.abs(model.rhs) + heaviest)
    room = model.rhs - model.weights[:, base].sum(axis=1)
    with np.errstate(over="ignore"):  # a tiny multiplier: a window wider than any float, as lam = 0
        width = np.where(lam > 0, gap / np.where(lam > 0, lam, 1.0), np.inf) + tol
    return _Frame(base, flips, dr, gap, room, width, tol, lam)


def _listing(model: CanonicalModel, flips: np.ndarray, dr: np.ndarray, base: np.ndarray, groups: np.ndarray, gap: float,
             limit: int, deadline: float | None) -> _Half | None:
    """Every choice of items for ``groups`` whose reduced cost (over the base) sums to at most
    ``gap``; None past ``limit`` of them or ``deadline``."""
    m = model.num_budgets
    cap = 1024
    r, v = np.zeros(cap), np.zeros(cap)
    w = np.zeros((m, cap))
    parent, item = np.full(cap, -1, dtype=np.int64), np.full(cap, -1, dtype=np.int64)
    n = 1
    in_half = np.isin(model.item_group[flips], groups)
    by_group = flips[in_half], dr[in_half]
    for g in groups:
        mine = model.item_group[by_group[0]] == g
        before = n  # one item per group: extend only the partials from before this group
        for j, d in zip(by_group[0][mine].tolist(), by_group[1][mine].tolist()):
            # each flip scans every partial so far (up to ``limit``, milliseconds), and thousands of
            # flips may add few partials each: the clock is read per flip, not per reallocation
            # (a 6,041-group core ran 4.3 s past a 0.2 s deadline that way)
            if deadline is not None and time.perf_counter() > deadline:
                return None
            ext = np.nonzero(r[:before] + d <= gap)[0]
            if n + ext.size > limit:
                return None
            if n + ext.size > cap:
                cap = max(2 * cap, n + ext.size)
                r, v, parent, item = (np.resize(x, cap) for x in (r, v, parent, item))
                w = np.concatenate([w, np.zeros((m, cap - w.shape[1]))], axis=1)
            new = slice(n, n + ext.size)
            r[new] = r[ext] + d
            v[new] = v[ext] + (model.value[j] - model.value[base[g]])
            w[:, new] = w[:, ext] + (model.weights[:, j] - model.weights[:, base[g]])[:, None]
            parent[new], item[new] = ext, j
            n += ext.size
    return _Half(r[:n], v[:n], w[:, :n], parent[:n], item[:n])
