"""Primal heuristics on the canonical model: repair to feasibility, then 1-opt improvement.

These give the incumbent that reduced-cost fixing needs. They never claim optimality.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from ..reductions import CanonicalModel
from .exact_fix import close_exactly
from ..verify import BUDGET_RTOL

MAX_FIX_GROUPS = 16  # about the groups one exact_fix round changes
_TOL = BUDGET_RTOL  # round-off floor of moves (budgets themselves use model.budget_slack, as verify does)


def totals(model: CanonicalModel, items: np.ndarray) -> np.ndarray:
    return model.weights[:, items].sum(axis=1) if model.num_budgets else np.zeros(0)


def is_feasible(model: CanonicalModel, items: np.ndarray) -> bool:
    return bool((totals(model, items) <= model.rhs + model.budget_slack).all())


def repair(model: CanonicalModel, items: np.ndarray, max_moves: int | None = None, deadline: float | None = None) -> np.ndarray | None:
    """Swap items until every budget holds, each time taking the swap that removes the most
    (relative) violation per unit of objective increase. None if it gets stuck, or is still short
    at ``deadline`` (a ``time.perf_counter()`` value: each move is a pass over every item, and a
    Lagrangian choice far from the budgets needs thousands of moves on 20,000 layers)."""
    items = np.array(items, dtype=np.int64)
    if model.num_budgets == 0:
        return items
    scale = np.maximum(np.abs(model.budgets), 1e-300)
    max_moves = max_moves if max_moves is not None else 4 * model.num_groups + 10
    for _ in range(max_moves):
        load = totals(model, items)
        excess = np.maximum(load - model.rhs, 0.0) / scale
        if not (excess > model.budget_slack / scale).any():
            return items
        if deadline is not None and time.perf_counter() > deadline:
            return None
        current = items[model.item_group]  # the chosen item of each item's group
        new_load = load[:, None] + model.weights - model.weights[:, current]  # (m, n)
        new_excess = (np.maximum(new_load - model.rhs[:, None], 0.0) / scale[:, None]).sum(axis=0)
        relief = excess.sum() - new_excess
        extra = model.value - model.value[current]
        # a move must relieve more than round-off; on exact integer budgets one unit of excess is
        # all there may be (1/2**49 of a budget), so the floor is relative to the excess itself
        floor = min(_TOL, 1e-9 * float(excess.sum()))
        with np.errstate(over="ignore"):  # free relief scores +inf: exactly the move we want first
            score = np.where(relief > floor, relief / (np.maximum(extra, 0.0) + 1e-12 * (1 + np.abs(model.value))), -np.inf)
        j = int(np.argmax(score))
        if not np.isfinite(score[j]):
            return _stuck(model, items, excess > model.budget_slack / scale, deadline)
        items[model.item_group[j]] = j
    return items if is_feasible(model, items) else None


def _stuck(model: CanonicalModel, items: np.ndarray, violated: np.ndarray, deadline: float | None) -> np.ndarray | None:
    """Repair stuck: on exact integer budgets, no single swap may land in a window a few units wide
    (budgets met only at equality); a search over a few groups at once can (:mod:`.exact_fix`)."""
    if model.exact_rows is None or not model.exact_rows[violated].all():
        return None
    # a few groups at once reach only so far: an excess beyond what MAX_FIX_GROUPS of the widest
    # groups could take back is not a few units off (greedy repair failed for another reason)
    excess = (model.weights[:, items].sum(axis=1) - model.rhs)[violated]
    lo = np.minimum.reduceat(model.weights[violated], model.group_start[:-1], axis=1)
    hi = np.maximum.reduceat(model.weights[violated], model.group_start[:-1], axis=1)
    reach = np.sort(hi - lo, axis=1)[:, -MAX_FIX_GROUPS:].sum(axis=1)
    if (excess > reach).any():
        return None
    return close_exactly(model, items, deadline=deadline)


IMPROVE_MOVES = 100  # each move is a pass over every item: uncapped, 30,000 layers took minutes


def improve(model: CanonicalModel, items: np.ndarray, max_moves: int = IMPROVE_MOVES) -> np.ndarray:
    """Best-improvement 1-opt: switch one group at a time while the objective drops and budgets hold."""
    items = np.array(items, dtype=np.int64)
    limit = model.rhs + model.budget_slack
    for _ in range(max_moves):
        current = items[model.item_group]
        gain = model.value[current] - model.value
        if model.num_budgets:
            load = totals(model, items)
            ok = (load[:, None] + model.weights - model.weights[:, current] <= limit[:, None]).all(axis=0)
            gain = np.where(ok, gain, -np.inf)
        j = int(np.argmax(gain))
        # round-off floor; integer objectives move in whole units, so half a unit is enough
        if not gain[j] > min(_TOL * (1 + abs(model.value[j])), 0.5 if model.integral_objective else np.inf):
            break
        items[model.item_group[j]] = j
    return items


FILL_BLOCK = 1 << 18  # items per block of fill's candidate search: its temporaries stay small


def fill(model: CanonicalModel, items: np.ndarray, max_candidates: int = 10_000) -> np.ndarray:
    """Spend leftover budget: apply improving single-group switches that fit the remaining slack,
    best gain first (one pass, vectorized candidate search, block by block)."""
    items = np.array(items, dtype=np.int64)
    slack = model.rhs - totals(model, items)
    found, gains = [], []
    for lo in range(0, model.num_items, FILL_BLOCK):
        block = slice(lo, lo + FILL_BLOCK)
        current = items[model.item_group[block]]
        gain = model.value[current] - model.value[block]
        extra = model.weights[:, block] - model.weights[:, current]  # (m, block)
        fits = np.nonzero((gain > 0) & (extra <= slack[:, None]).all(axis=0))[0]
        found.append(fits + lo)
        gains.append(gain[fits])
    candidates, gain = np.concatenate(found), np.concatenate(gains)
    if candidates.size == 0:
        return items
    best = np.argsort(-gain, kind="stable")[:max_candidates]
    candidates = candidates[best]
    # every group moves at most once, so its current item is still the one it had
    extra = model.weights[:, candidates] - model.weights[:, items[model.item_group[candidates]]]
    moved = np.zeros(model.num_groups, dtype=bool)
    for n, j in enumerate(candidates.tolist()):
        g = model.item_group[j]
        if moved[g] or (extra[:, n] > slack).any():
            continue
        items[g] = j
        slack -= extra[:, n]
        moved[g] = True
    return items


def round_lp(model: CanonicalModel, lp_values: np.ndarray, max_combinations: int = 4096, deadline: float | None = None) -> np.ndarray | None:
    """A feasible assignment from an LP solution: groups the LP sets integral keep their item; the
    few fractional ones (at most one per budget at a vertex) try every combination of the items the
    LP mixes, keeping the best that meets the budgets; then fill and 1-opt. Falls back to repairing
    the largest-value rounding; None if that fails too."""
    x = np.asarray(lp_values)
    best_in_group = np.maximum.reduceat(x, model.group_start[:-1])
    idx = np.nonzero(x >= best_in_group[model.item_group])[0]
    items = np.full(model.num_groups, -1, dtype=np.int64)
    items[model.item_group[idx[::-1]]] = idx[::-1]  # largest LP value, lowest index among ties
    fractional = np.nonzero(best_in_group < 1.0 - 1e-9)[0]
    support = [np.nonzero(x[model.group_start[g]:model.group_start[g + 1]] > 1e-9)[0] + model.group_start[g] for g in fractional.tolist()]
    count = int(np.prod([s.size for s in support], dtype=np.float64)) if support else 1
    best = None
    if 0 < count <= max_combinations:
        for combo in itertools.product(*support):
            trial = items.copy()
            trial[fractional] = combo
            if is_feasible(model, trial) and (best is None or model.items_objective(trial) < model.items_objective(best)):
                best = trial
    if best is None:
        best = repair(model, items, deadline=deadline)
    return None if best is None else improve(model, fill(model, best))
