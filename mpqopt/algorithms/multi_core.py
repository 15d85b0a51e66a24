"""Exact search of a small core with several budgets: dynamic programming over non-dominated states.

After reduced-cost fixing (:func:`mpqopt.algorithms.lagrangian.fixable_items`) a multi-budget model
often leaves a core of a few dozen undecided groups with a few items each. This module proves such a
core, Nemhauser-Ullmann style: groups are taken one block at a time (all combinations of a few
consecutive groups at once, as the one-budget core DP of :mod:`mpqopt.algorithms.core_dp` does) and
the partial choices are kept as states ``(value change, weight change per budget)`` against the
incumbent. Three things keep the state sets small:

* **dominance**: a state no better in value and in every budget than another is dropped;
* **completion bound**: the LP relaxation of the later groups, under the state's own leftover
  budgets, is bounded from below by surrogate relaxations. For a direction ``d >= 0`` the budgets
  summed with weights ``d`` form one budget, whose LP is read off the later groups' lower convex
  hulls (:func:`mpqopt.algorithms.hull.hull_increments`) as a convex piecewise-linear function of
  the leftover ``d @ spare``. The directions are the LP multipliers ``lam`` (at the start this
  bound *is* the multi-budget LP bound) and each budget alone (the bound that sees a state has
  spent one budget). A state whose value change plus bound exceeds the target is dropped;
* **group order**: groups whose choices move every budget go first, groups that move only some
  budgets last. Once only those are left, the later groups form nearly a one-budget problem whose LP
  bound is tight, so the states thin out (LIMPQ ResNet-50, 49 core groups, where the size budget
  ignores activation bits: 753 states in all, 98 at most; in the single-budget core's order, most
  ambiguous groups last, 16,339 and 3,124, with 50 times the work).

The target starts at the incumbent and falls as the search goes: every state completed with the
incumbent's items for the later groups is a full assignment. Every assignment using only the core's
items that is better than the final target survives every pruning, so the best one found is optimal
among them; with reduced-cost fixing done at the incumbent it is optimal for the whole model.

Budgets are checked as :func:`mpqopt.algorithms.heuristics.is_feasible` does (the model's
``budget_slack``: ``BUDGET_RTOL`` relative, or under a quarter unit on exact integer budgets): pruning uses twice that slack (nothing ``is_feasible`` accepts is lost to the
round-off of summing in another order) and a new best assignment must meet half of it.

>>> import numpy as np, mpqopt
>>> from mpqopt.reductions import canonicalize
>>> p = mpqopt.Problem(["a", "b", "c"], [2, 4, 8], [[3.0, 1.0, 0.0], [2.0, 0.6, 0.0], [1.0, 0.5, 0.0]],
...                    costs={"size": [[2, 4, 8]] * 3, "ops": [[1, 4, 16]] * 3})
>>> m = canonicalize(p, {"size": 14.0, "ops": 24.0})
>>> start = m.group_start[:-1]  # every layer at W2: objective 6.0
>>> r = solve_multi_core(m, np.ones(m.num_items, dtype=bool), start, np.zeros(2))
>>> r.complete, round(m.items_objective(r.items), 12), m.expand(r.items).tolist()  # size 14, ops 21
(True, 1.6, [2, 1, 0])
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..reductions import CanonicalModel, select_items
from ..reductions.matrix import budget_row_scales
from . import core_dp
from .heuristics import is_feasible
from .hull import hull_increments

# Work units (~2 ns each): a state pair compared for dominance costs one per budget, a candidate
# state (its bound) CANDIDATE_WORK, a block (its ~40 numpy calls) BLOCK_WORK. LIMPQ ResNet-50's core
# takes 2.1e6. The limit stops the search on cores whose state sets blow up, after ~10 ms.
WORK_LIMIT = 5e6
# States kept after a block above which the search gives up: on 60 random 2- and 3-budget problems
# every core proved within the work limit peaked at 202 states or fewer (LIMPQ ResNet-50: 98); a
# core with 1,000 states after a block will not finish within it.
STATE_LIMIT = 1000
CANDIDATE_WORK = 50
BLOCK_WORK = 25_000
MAX_CORE_ITEMS = 2048  # larger cores are left to the caller's MILP (the bound's tables grow with them)
_DOMINANCE_BLOCK = 512  # rows of the pairwise dominance test per numpy call (bounds memory)
_EAGER_TABLES = 1 << 16  # block ends x table entries up to which the bound's tables are built at once
_EARLIER = np.tri(_DOMINANCE_BLOCK, k=-1, dtype=bool)  # [i, j]: j < i


@dataclass
class MultiCoreResult:
    """Outcome of :func:`solve_multi_core`.

    ``items`` is the best assignment found (the incumbent when nothing beats it); ``complete`` means
    the search ran to the end, so ``items`` is optimal among assignments using the core's items only.
    ``core_groups`` counts the undecided groups, ``peak_states`` the largest state set after a block,
    ``states`` the states kept over all blocks, ``work`` the units of work done (see ``WORK_LIMIT``).
    """

    items: np.ndarray
    complete: bool
    core_groups: int
    peak_states: int
    states: int
    work: float = 0.0


def solve_multi_core(model: CanonicalModel, keep: np.ndarray, incumbent: np.ndarray, lam: np.ndarray, work_limit: float = WORK_LIMIT, deadline: float | None = None) -> MultiCoreResult:
    """Best assignment of a separable model that uses only the items in ``keep`` (plus the
    incumbent's), found by dynamic programming over non-dominated states (see the module docstring).

    ``incumbent`` must meet the budgets (as ``is_feasible`` checks); ``lam`` (``>= 0``, one per
    budget) are Lagrangian multipliers used as one direction of the completion bound: any values are
    valid, the LP multipliers make the bound strongest. Cores of more than ``MAX_CORE_ITEMS`` items,
    more than ``work_limit`` units of work (see ``WORK_LIMIT``), ``STATE_LIMIT`` states and
    ``deadline`` (a ``time.perf_counter()`` value) stop the search: the result is then the best
    assignment found so far, with ``complete=False``.
    """
    incumbent = np.asarray(incumbent, dtype=np.int64)
    keep = np.asarray(keep, dtype=bool).copy()
    keep[incumbent] = True
    kept = np.nonzero(keep)[0]
    core = np.bincount(model.item_group[kept], minlength=model.num_groups) > 1
    num_core = int(core.sum())
    if num_core == 0:
        return MultiCoreResult(incumbent.copy(), True, 0, 1, 1)
    items = kept[core[model.item_group[kept]]]
    if items.size > MAX_CORE_ITEMS:
        return MultiCoreResult(incumbent.copy(), False, num_core, 0, 0)

    # a block's groups have at most BLOCK_COMBINATIONS combinations: with too many blocks to finish
    # within the work limit, do not even start
    combinations = float(np.log2(np.bincount(model.item_group[items], minlength=model.num_groups)[core]).sum())
    if combinations / np.log2(core_dp.BLOCK_COMBINATIONS) * BLOCK_WORK > work_limit:
        return MultiCoreResult(incumbent.copy(), False, num_core, 0, 0)
    scale = budget_row_scales(model)
    groups, items, start = _core_order(model, items, incumbent, scale)
    blocks = _blocks(model, items, start)
    bound_after = _SuffixBound(model, groups, items, start, _directions(lam, scale), [b[0] for b in blocks[:-1]])

    value, weights, m = model.value, model.weights, model.num_budgets
    slack = model.budget_slack
    spare = model.rhs - weights[:, incumbent].sum(axis=1)  # what the incumbent leaves, per budget
    loose, strict = spare + 2.0 * slack, spare + 0.5 * slack
    inc_obj = model.items_objective(incumbent)
    margin = 1e-9 * max(abs(inc_obj), float(np.abs(value[items]).max()), 1e-300)  # round-off of the bounds
    target = 0.0  # value change against the incumbent that a new best must beat
    gain = np.zeros(1)
    cost = np.zeros((m, 1))
    parents: list[np.ndarray] = []
    chosen: list[np.ndarray] = []
    best: tuple[int, int] | None = None
    peak = total = 1
    work = 0
    for b, (last_step, combos, d_cost, d_gain) in enumerate(blocks):
        n = gain.size
        work += BLOCK_WORK + CANDIDATE_WORK * n * combos.shape[0]
        if work > work_limit or (deadline is not None and time.perf_counter() > deadline):
            return MultiCoreResult(_assignment(model, incumbent, groups, blocks, parents, chosen, best), False, num_core, peak, total, work)
        # candidate k is combination k // n of this block after state k % n
        new_cost = (d_cost[:, :, None] + cost[:, None, :]).reshape(m, -1)
        new_gain = (d_gain[:, None] + gain[None, :]).ravel()
        if b == len(blocks) - 1:  # complete assignments
            idx = np.nonzero((new_cost <= loose[:, None]).all(axis=0) & (new_gain <= target + margin))[0]
        else:  # later groups may give budget back: the bound (one direction per budget) checks the fit
            idx = np.nonzero(new_gain + bound_after(last_step, loose[:, None] - new_cost) <= target + margin)[0]
        kept_idx, pairs = _nondominated(new_gain[idx], new_cost[:, idx], (work_limit - work) / m, STATE_LIMIT)
        work += m * pairs
        if kept_idx is None:
            return MultiCoreResult(_assignment(model, incumbent, groups, blocks, parents, chosen, best), False, num_core, max(peak, idx.size), total, work)
        idx = idx[kept_idx]
        gain, cost = new_gain[idx], new_cost[:, idx]
        parents.append(idx % n)
        chosen.append(idx // n)
        total += gain.size
        peak = max(peak, gain.size)
        if gain.size == 0:
            break
        # completed with the incumbent's items for the later groups, each state is an assignment
        fits = np.nonzero((cost <= strict[:, None]).all(axis=0))[0]
        if fits.size:
            i = int(fits[np.argmin(gain[fits])])
            if gain[i] < target:
                target, best = float(gain[i]), (b, i)
    return MultiCoreResult(_assignment(model, incumbent, groups, blocks, parents, chosen, best), True, num_core, peak, total, work)


def _assignment(model: CanonicalModel, incumbent: np.ndarray, groups: np.ndarray, blocks: list, parents: list[np.ndarray], chosen: list[np.ndarray], best: tuple[int, int] | None) -> np.ndarray:
    """The incumbent with the choices of state ``best = (block, state)`` traced back through the
    blocks (the incumbent itself when ``best`` is None or, by round-off, no better or infeasible)."""
    found = incumbent.copy()
    if best is None:
        return found
    b, state = best
    for k in range(b, -1, -1):
        last_step, combos = blocks[k][0], blocks[k][1]
        first = last_step - combos.shape[1] + 1
        found[groups[first:last_step + 1]] = combos[chosen[k][state]]
        state = parents[k][state]
    better = model.items_objective(found) < model.items_objective(incumbent) and is_feasible(model, found)
    return found if better else incumbent.copy()


def _core_order(model: CanonicalModel, items: np.ndarray, incumbent: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Core groups in search order, their items (step after step, the incumbent's first in each)
    and where each step's items start (``steps + 1`` entries).

    Groups go by decreasing least spread over the budgets (the range of a budget's weights among
    the group's items, relative to the budget), then by decreasing total spread: the groups that
    move every budget are decided first, and the later groups each move fewer budgets, which makes
    their LP bound tight.
    """
    group = model.item_group[items]
    groups, first, counts = np.unique(group, return_index=True, return_counts=True)  # items are sorted by group
    rel = model.weights[:, items] / scale[:, None]
    spread = np.maximum.reduceat(rel, first, axis=1) - np.minimum.reduceat(rel, first, axis=1)  # (m, core groups)
    order = np.lexsort((-spread.sum(axis=0), -spread.min(axis=0)))
    step = np.empty_like(order)
    step[order] = np.arange(order.size)
    local = np.repeat(step, counts)  # each item's step
    items = items[np.lexsort((items != incumbent[group], local))]
    start = np.concatenate([[0], np.cumsum(counts[order])])
    return groups[order], items, start


def _blocks(model: CanonicalModel, items: np.ndarray, start: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """The one-budget core's blocks (:func:`mpqopt.algorithms.core_dp._blocks`) with the weight
    change in every budget: ``(last step, combos [n, groups], weight change (m, n), value change)``."""
    blocks = []
    for last_step, combos, _, d_gain in core_dp._blocks(items, start, model.weights[0], model.value):
        d_cost = model.weights[:, combos].sum(axis=2)
        blocks.append((last_step, combos, d_cost - d_cost[:, :1], d_gain))  # combination 0: the steps' first items
    return blocks


def _directions(lam: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Surrogate directions ``(k, m)``: the multipliers ``lam`` and each budget alone, every row
    summing to 1 over budgets divided by ``scale`` (weights of any unit then give O(1) sums)."""
    m = scale.size
    rows = [np.eye(m)]
    # scaled to at most 1 before multiplying, so that no multiplier overflows (any finite lam >= 0
    # gives a valid direction; NaN or inf would not)
    lam = np.nan_to_num(np.maximum(np.asarray(lam, dtype=np.float64), 0.0), nan=0.0, posinf=1.0)
    mix = (lam / lam.max()) * (scale / scale.max()) if lam.max(initial=0.0) > 0 else lam
    if np.count_nonzero(mix) > 1:  # one nonzero multiplier is a budget alone, already a row
        rows.insert(0, (mix / mix.sum())[None, :])
    return np.concatenate(rows) / scale[None, :]


class _SuffixBound:
    """``f(step, spare)``: a lower bound on the value change (against the incumbent) of the core
    groups after ``step`` when they may add at most ``spare`` (``(m, states)``) to each budget
    against the incumbent's items; ``+inf`` where they cannot fit. It is the largest of the
    surrogate LP bounds over the directions (see the module docstring), each read off the later
    groups' hull increments as in :func:`mpqopt.algorithms.core_dp.solve_core`'s one-budget bound.

    The directions' tables are laid end to end (each shifted past the previous one's range) so
    that one ``np.interp`` call evaluates them all.
    """

    def __init__(self, model: CanonicalModel, groups: np.ndarray, items: np.ndarray, start: np.ndarray, directions: np.ndarray, ends: list[int]):
        k, S, n = directions.shape[0], groups.size, items.size
        step_of = np.repeat(np.arange(S), np.diff(start))
        base = items[start[:-1]]
        # one copy of the core per direction, hulled in one call (copy p holds groups p*S...)
        copies = select_items(model, np.tile(items, k), (step_of[None, :] + S * np.arange(k)[:, None]).ravel(), k * S, np.tile(model.free_groups[groups], k))
        costs = directions @ model.weights[:, items]  # (directions, items)
        hull = hull_increments(copies, costs.ravel())
        copy = hull.group // S
        width = int(np.bincount(copy, minlength=k).max(initial=0))
        # increments padded to a common width; a padded one never belongs to a later group
        group = np.full((k, width), -1, dtype=np.int64)
        dcost, dvalue = np.zeros((k, width)), np.zeros((k, width))
        for p in range(k):
            own = copy == p  # a stable selection keeps the decreasing efficiency
            w = int(own.sum())
            group[p, :w], dcost[p, :w], dvalue[p, :w] = hull.group[own] - p * S, hull.dcost[own], hull.dvalue[own]
        # what the incumbent's items of the later groups weigh (surrogate) over the hulls' first
        # items, and the value change of those first items
        at = np.asarray(ends, dtype=np.int64)
        first = hull.start_items.reshape(k, S) - n * np.arange(k)[:, None]  # positions in items
        base_cost = directions @ model.weights[:, base]
        self.offset = np.array([_after(base_cost[p] - costs[p, first[p]])[at] for p in range(k)]).T[:, :, None]
        self.start_value = np.array([_after(model.value[items[first[p]]] - model.value[base])[at] for p in range(k)]).T[:, :, None]
        self.row = {step: r for r, step in enumerate(ends)}
        self.directions, self.group, self.dcost, self.dvalue = directions, group, dcost, dvalue
        # small cores: every end's table at once (one call instead of one per block); large ones
        # build each when needed, as the search may stop long before the last block
        self.tables = self._tables(at) if at.size * group.size <= _EAGER_TABLES else None

    def _tables(self, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per end and direction, the LP of the later groups as a table of (surrogate weight, value)
        over their hulls' first items, each direction's table shifted past the previous ones':
        ``(x, y, top, shift)`` of shapes ``(ends, k, width + 1)`` and ``(ends, k, 1)``."""
        later = self.group[None, :, :] > ends[:, None, None]  # (ends, directions, width)
        shape = (ends.size,) + self.group.shape[:1] + (self.group.shape[1] + 1,)
        cum_cost, cum_value = np.zeros(shape), np.zeros(shape)
        np.cumsum(np.where(later, self.dcost, 0.0), axis=2, out=cum_cost[:, :, 1:])
        np.cumsum(np.where(later, self.dvalue, 0.0), axis=2, out=cum_value[:, :, 1:])
        top = cum_cost[:, :, -1:]
        shift = np.cumsum(top + 1.0, axis=1) - (top + 1.0)
        return cum_cost + shift, cum_value, top, shift

    def __call__(self, step: int, spare: np.ndarray) -> np.ndarray:
        r = self.row[step]
        x_table, y_table, top, shift = (t[r] for t in self.tables) if self.tables is not None else (t[0] for t in self._tables(np.array([step])))
        plain = self.directions @ spare
        offset = self.offset[r]
        # Round-off must never cut a state that fits: the bound falls as room grows, so reading it
        # with a little more room (1e-12 of a budget, like verify.BUDGET_RTOL) stays valid.
        room = plain + offset + 1e-12 * (np.abs(plain) + np.abs(offset) + 1.0)
        x = np.minimum(np.maximum(room, 0.0), top) + shift
        value = np.interp(x.ravel(), x_table.ravel(), y_table.ravel()).reshape(room.shape) + self.start_value[r]
        return np.where(room >= 0.0, value, np.inf).max(axis=0)


def _after(per_step: np.ndarray) -> np.ndarray:
    """Suffix sums: entry ``s`` sums the entries after ``s``."""
    return np.concatenate([np.cumsum(per_step[::-1])[::-1][1:], [0.0]])


def _nondominated(gain: np.ndarray, cost: np.ndarray, budget: float, limit: int) -> tuple[np.ndarray | None, int]:
    """Indices of the states no other state matches or beats in value and every budget (of equal
    states one is kept), or None once more than ``budget`` state pairs are compared or more than
    ``limit`` states kept; and the number of pairs compared.

    In lexicographic order of (cost rows, gain) a dominating state comes first, and a dominated
    dominator is itself dominated by a kept one, so each chunk is tested against the states kept so
    far and its own earlier members: a state is dropped when an earlier one is no worse anywhere.
    """
    if gain.size <= 1:
        return np.arange(gain.size), 0
    keys = np.vstack([cost, gain[None, :]])
    order = np.lexsort(keys[::-1])
    # the first cost row is sorted: only the others and the gain need comparing (of equal states
    # the later ones are beaten by the first)
    rest = keys[1:, order]
    n = order.size
    if n <= _DOMINANCE_BLOCK:  # one chunk, the usual case
        beaten = rest[0][None, :] <= rest[0][:, None]  # [member, earlier member]
        for row in rest[1:]:
            beaten &= row[None, :] <= row[:, None]
        beaten &= _EARLIER[:n, :n]
        kept = np.flatnonzero(~beaten.any(axis=1))
        return (order[kept] if kept.size <= limit else None), n * n
    kept = np.zeros(0, dtype=np.int64)
    work = 0
    for lo in range(0, n, _DOMINANCE_BLOCK):
        hi = min(lo + _DOMINANCE_BLOCK, n)
        against = np.concatenate([kept, np.arange(lo, hi)])
        beaten = rest[0, against][None, :] <= rest[0, lo:hi, None]  # [chunk member, against]
        for row in rest[1:]:
            beaten &= row[against][None, :] <= row[lo:hi, None]
        beaten[:, kept.size:] &= _EARLIER[:hi - lo, :hi - lo]  # own chunk: earlier members only
        kept = np.concatenate([kept, lo + np.flatnonzero(~beaten.any(axis=1))])
        work += (hi - lo) * against.size
        if work > budget or kept.size > limit:
            return None, work
    return order[kept], work
