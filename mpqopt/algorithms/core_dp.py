"""Exact search of the core left after reduced-cost fixing (single budget).

Every group starts at its ``base`` item (the Lagrangian choice, reduced cost 0). The few groups that
have *alternatives* (items whose reduced cost is small enough to matter) form the core, solved by
dynamic programming over non-dominated (cost change, value change) states, Nemhauser-Ullmann style.
Two prunings keep it small: the completion bound (the LP relaxation of the later core groups at the
state's own leftover capacity, read off their hull increments in a segment tree, so it stays exact
on cores of any size: :class:`~mpqopt.algorithms.suffix_lp.SuffixLP`), and a target that falls as the search
goes, because every state completed with ``base`` for the later groups is a full solution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..deadline import Deadline
from ..reductions import CanonicalModel, select_items
from .hull import hull_increments
from .suffix_lp import SuffixLP



# States generated before the search hands over (about a minute of numpy on a 2-core machine); MPQ
# cores stay far below it (200,000 x 8 cnn: see test_core_dp), Pisinger's hard classes do not.
WORK_LIMIT = 300_000_000
# States kept over all steps (8 bytes each: parent and combination, int32), whatever the work limit:
# a search that a time limit bounds instead (mckp's DP_WORK_TIMED) reached 2.4 GB resident in 50 s
# on inverse_strongly 2,500 x 10, R=10,000 when they were int64; past this many (~2.4 GB) it gives up
# as on its other limits
KEPT_LIMIT = 300_000_000
# cores of at most this many items (base choices included) skip the LP completion bound: they have at
# most 2 x 3^10 states, and the bound's hulls took 0.3 of HAWQ-V3 ResNet-18's ~1.1 ms solves
TINY_CORE_ITEMS = 32


@dataclass
class CoreResult:
    items: np.ndarray | None  # best choice with objective <= target found, or None if none was
    complete: bool  # False when the search gave up (limits, deadline): items, if any, are not proven optimal
    core_groups: int
    max_states: int
    work: int = 0  # states generated in all (before pruning): what the search cost


def solve_core(model: CanonicalModel, base: np.ndarray, alternatives: np.ndarray, lam: float, target: float, state_limit: int = 3_000_000, work_limit: int = WORK_LIMIT, deadline: Deadline | None = None, floor: float | None = None,
               improve: Callable[[], float | None] | None = None, improve_after: int = 0, refloor: Callable[[], float | None] | None = None) -> CoreResult:
    """Best choice within ``target`` when each group takes its ``base`` item or one of ``alternatives``.

    Every such solution of objective ``<= target`` survives the pruning, so with ``complete`` a
    returned ``items`` is optimal among them, and ``items is None`` proves there is none. The search
    gives up (``complete=False``, nothing proven) when the states alive pass ``state_limit``, the
    states kept for the way back pass ``KEPT_LIMIT``, the states generated pass ``work_limit``, or
    ``deadline`` expires: on classes where many items share
    one efficiency the state count explodes, and the caller hands over instead; ``items`` is then
    the best assignment within ``target`` met so far (an incumbent), or None. ``floor``: a lower
    bound on every solution's objective (the integer-rounded LP bound); a choice reaching it is
    optimal, and the search stops there at once (subset-sum: the first exact fill ends it).
    ``improve``: called once, when ``improve_after`` states have been generated, it may return a
    lower target (the caller found a better assignment elsewhere); the search goes on below it,
    and ``items`` then answer the lowered target. ``refloor``: called right after ``improve``, it
    may return a higher ``floor`` (a stronger lower bound found meanwhile); a search whose target
    falls below the floor stops there, complete: nothing lies at or below it.
    """
    weight, value = model.weights[0], model.value
    capacity = float(model.rhs[0]) - float(weight[base].sum()) + float(model.budget_slack[0])  # round-off only (0 on exact integer budgets)
    base_value = float(value[base].sum())
    target -= base_value  # from here on: changes against base
    enough = -np.inf if floor is None else floor - base_value
    margin = 1e-9 * max(abs(target), float(np.abs(value).max(initial=0.0)), 1e-300)
    best_step = -1 if capacity >= 0 and target >= 0 else None  # base alone already qualifies
    target = min(target, 0.0) if best_step is not None else target
    alternatives = np.asarray(alternatives, dtype=np.int64)
    if alternatives.size == 0:
        return CoreResult(base.copy() if best_step is not None else None, True, 0, 1)

    core_groups, core_items, start = _core_order(model, base, alternatives, lam)
    cost = np.zeros(1)
    gain = np.zeros(1)  # value change
    parents: list[np.ndarray] = []
    chosen: list[np.ndarray] = []
    best_state = 0
    peak = 1
    work = 0
    kept = 0
    blocks = _blocks(core_items, start, weight, value)
    # after the last block nothing is left to bound but the capacity itself; on a tiny core
    # (TINY_CORE_ITEMS) the LP completion bound costs more than the states it would prune, and each
    # later group's best value and lightest item, apart, bound it instead
    if len(blocks) == 1:
        bound_after = _capacity_only
    elif core_items.size <= TINY_CORE_ITEMS:
        bound_after = _separate_bound(model, core_items, start)
    else:
        bound_after = _completion_bound(model, core_groups, core_items, start)
    for b, (last_step, _combos, d_cost, d_gain) in enumerate(blocks):
        # one run per combination, each sorted by cost like the states: a stable sort merges runs
        # cheaply. The combinations go a chunk of states at a time with the deadline checked after
        # each: a block of 32 combinations over 500,000 states took 4.7 s in one numpy step, and
        # the time limit was overrun by that (weakly 4,000 x 10, R=10,000: 63 s under 60 s)
        rows = max(1, CHUNK_STATES // cost.size)
        parts = []
        for first in range(0, d_cost.size, rows):
            new_cost = (d_cost[first:first + rows, None] + cost[None, :]).ravel()
            new_gain = (d_gain[first:first + rows, None] + gain[None, :]).ravel()
            work += new_cost.size
            ok = np.flatnonzero(new_gain + bound_after(last_step, capacity - new_cost) <= target + margin)
            # flat index: combination * states + parent; each chunk's own front first (what one
            # chunk dominates is dominated), so the merge below sorts fronts, not every survivor
            parts.append(_front(new_cost[ok], new_gain[ok], ok + first * cost.size))
            if work > work_limit or (deadline is not None and deadline.expired()):
                return _stopped(blocks, core_groups, parents, chosen, base, best_step, best_state, peak, work)
        new_cost, new_gain, flat = _front(*(np.concatenate(part) for part in zip(*parts))) if len(parts) > 1 else parts[0]
        combo, parent = np.divmod(flat, cost.size)
        cost, gain = new_cost, new_gain
        # each state's parent and combination are kept for the way back: 8 bytes a state, all steps
        parents.append(parent.astype(np.int32))
        chosen.append(combo.astype(np.int32))
        kept += cost.size
        peak = max(peak, cost.size)
        if cost.size > state_limit or kept > KEPT_LIMIT or work > work_limit or (deadline is not None and deadline.expired()):
            return _stopped(blocks, core_groups, parents, chosen, base, best_step, best_state, peak, work)
        if improve is not None and work >= improve_after:
            lowered, improve = improve(), None
            if lowered is not None and lowered - base_value < target:
                # the best state so far (its value change is the target) no longer qualifies
                target, best_step = lowered - base_value, None
            raised = None if refloor is None else refloor()
            if raised is not None:
                enough = max(enough, raised - base_value)
            # a best state at the floor is optimal; with none, nothing below the floor exists
            if (best_step is not None and target <= enough) or (best_step is None and target < enough):
                break
        if cost.size == 0:
            break
        # completed with base, each state is a full solution; along the front value falls as cost
        # rises, so the best feasible one is the last within capacity
        last = int(np.searchsorted(cost, capacity, side="right")) - 1
        if last >= 0 and gain[last] <= target:
            target, best_step, best_state = float(gain[last]), b, last
            if target <= enough:
                break
    items = None if best_step is None else _assignment(blocks, core_groups, parents, chosen, base, best_step, best_state)
    return CoreResult(items, True, core_groups.size, peak, work)


def _front(cost: np.ndarray, gain: np.ndarray, tag: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The states no other beats in both cost and value change, sorted by cost, with their tags
    (equal costs in either order: at worst a dominated twin survives one step)."""
    order = np.argsort(cost, kind="stable")
    cost, gain, tag = cost[order], gain[order], tag[order]
    keep = gain < np.minimum.accumulate(np.concatenate([[np.inf], gain[:-1]]))
    return cost[keep], gain[keep], tag[keep]


def _assignment(blocks: list, core_groups: np.ndarray, parents: list[np.ndarray], chosen: list[np.ndarray], base: np.ndarray, step: int, state: int) -> np.ndarray:
    """The full assignment of ``state`` after block ``step``: its choices back to the first block,
    ``base`` for every other group."""
    items = base.copy()
    for b in range(step, -1, -1):
        last_step, combos = blocks[b][0], blocks[b][1]
        first = last_step - combos.shape[1] + 1
        items[core_groups[first : last_step + 1]] = combos[chosen[b][state]]
        state = parents[b][state]
    return items


def _stopped(blocks: list, core_groups: np.ndarray, parents: list[np.ndarray], chosen: list[np.ndarray], base: np.ndarray, best_step: int | None, best_state: int, peak: int, work: int) -> CoreResult:
    """The search gave up (limits or deadline): nothing proven, but the best assignment within the
    target it met on the way (if any) is returned, an incumbent better than the caller's."""
    items = None if best_step is None else _assignment(blocks, core_groups, parents, chosen, base, best_step, best_state)
    return CoreResult(items, False, core_groups.size, peak, work)


# Core groups are taken a block at a time: the per-step cost is numpy call overhead for the small
# fronts of typical cores, so enumerating a block's combinations (at most this many) at once cuts
# the steps several-fold; pruning waits for the block's end, which is still exact.
BLOCK_COMBINATIONS = 32
# States a block step generates between two looks at the deadline (a few tenths of a second)
CHUNK_STATES = 1 << 21


def _blocks(items: np.ndarray, start: np.ndarray, weight: np.ndarray, value: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Consecutive steps merged into blocks of at most ``BLOCK_COMBINATIONS`` combinations:
    ``(last step, combos [n, groups] of items, cost change, value change)`` against base, the
    combinations ordered with the all-base one first."""
    sizes = np.diff(start).tolist()
    blocks = []
    i = 0
    while i < len(sizes):
        n, j = sizes[i], i + 1
        while j < len(sizes) and n * sizes[j] <= BLOCK_COMBINATIONS:
            n, j = n * sizes[j], j + 1
        # every combination as positions within its groups (row 0: all base), then as items
        local = np.indices(sizes[i:j]).reshape(j - i, n).T
        combos = items[start[i:j] + local]
        base_items = items[start[i:j]]
        d_cost = weight[combos].sum(axis=1) - weight[base_items].sum()
        d_gain = value[combos].sum(axis=1) - value[base_items].sum()
        blocks.append((j - 1, combos, d_cost, d_gain))
        i = j
    return blocks


def _capacity_only(step: int, spare: np.ndarray) -> np.ndarray:
    return np.where(spare >= 0, 0.0, np.inf)


def _core_order(model: CanonicalModel, base: np.ndarray, alternatives: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Core groups and their items (base first), decided groups first and the most ambiguous last:
    states multiply where choices are close, and late in the order most of them are cut.

    Returns ``(core_groups, items, start)``: step ``s`` chooses among ``items[start[s]:start[s+1]]``.
    """
    alt_group = model.item_group[alternatives]
    reduced = value_plus(model, alternatives, lam) - value_plus(model, base[alt_group], lam)
    idx = np.argsort(alt_group, kind="stable")
    core_groups, starts, counts = np.unique(alt_group[idx], return_index=True, return_counts=True)
    nearest = np.minimum.reduceat(reduced[idx], starts)
    order = np.argsort(-nearest, kind="stable")
    start = np.concatenate([[0], np.cumsum(counts[order] + 1)])
    items = np.empty(int(start[-1]), dtype=np.int64)
    items[start[:-1]] = base[core_groups[order]]
    step_of = np.empty(order.size, dtype=np.int64)
    step_of[order] = np.arange(order.size)
    rank = np.repeat(np.arange(core_groups.size), counts)  # each sorted alternative's group rank
    items[start[step_of[rank]] + 1 + np.arange(idx.size) - starts[rank]] = alternatives[idx]
    return core_groups[order], items, start


def value_plus(model: CanonicalModel, items: np.ndarray, lam: float) -> np.ndarray:
    return model.value[items] + lam * model.weights[0, items]


def _after(per_group: np.ndarray) -> np.ndarray:
    """Suffix sums over the core's steps: entry s sums the core groups after step s."""
    return np.concatenate([np.cumsum(per_group[::-1])[::-1][1:], [0.0]])


def _separate_bound(model: CanonicalModel, items: np.ndarray, start: np.ndarray) -> Callable[[int, np.ndarray], np.ndarray]:
    """:func:`_completion_bound`'s contract, weaker and a few sums to set up: each later group's best
    value change, whatever its cost, where their lightest items together leave room (a base may
    be over the budget: later groups can still free capacity)."""
    weight, value = model.weights[0][items], model.value[items]
    first = start[:-1]
    freed_after = _after(weight[first] - np.minimum.reduceat(weight, first))  # >= 0: capacity the later groups can free
    gain_after = _after(np.minimum.reduceat(value, first) - value[first])  # <= 0

    def separate(step: int, spare: np.ndarray) -> np.ndarray:
        return np.where(spare + freed_after[step] >= 0, gain_after[step], np.inf)

    return separate


def _completion_bound(model: CanonicalModel, core_groups: np.ndarray, items: np.ndarray, start: np.ndarray) -> Callable[[int, np.ndarray], np.ndarray]:
    """``f(step, spare)``, called with increasing steps: lower bound on the value change the core groups
    after ``step`` can add when the states leave ``spare`` capacity against base (``+inf`` where
    nothing fits)."""
    num_steps = core_groups.size
    new_group = np.repeat(np.arange(num_steps), np.diff(start))
    base_items = items[start[:-1]]
    weight = model.weights[0]
    base_cost_after = _after(weight[base_items])
    base_value_after = _after(model.value[base_items])
    sub = select_items(model, items, new_group, num_steps, model.free_groups[core_groups])
    inc = hull_increments(sub)
    start_cost_after = _after(sub.weights[0, inc.start_items])
    start_value_after = _after(sub.value[inc.start_items])
    suffix = SuffixLP(inc.dcost, inc.dvalue, inc.group)  # exact LP of the later groups, O(increments) memory

    def lp(step: int, spare: np.ndarray) -> np.ndarray:
        suffix.remove_through(step)
        room = spare + base_cost_after[step] - start_cost_after[step]
        bound = start_value_after[step] + suffix(np.maximum(room, 0.0)) - base_value_after[step]
        return np.where(room >= 0, bound, np.inf)

    return lp
