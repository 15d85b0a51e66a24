"""Primal heuristics on the canonical model: repair to feasibility, then 1-opt improvement.

These give the incumbent that reduced-cost fixing needs. They never claim optimality.
"""

from __future__ import annotations

import numpy as np

from ..reductions import CanonicalModel

_TOL = 1e-12


def totals(model: CanonicalModel, items: np.ndarray) -> np.ndarray:
    return model.weights[:, items].sum(axis=1) if model.num_budgets else np.zeros(0)


def is_feasible(model: CanonicalModel, items: np.ndarray) -> bool:
    return bool((totals(model, items) <= model.rhs + _TOL * np.abs(model.budgets)).all())


def repair(model: CanonicalModel, items: np.ndarray, max_moves: int | None = None) -> np.ndarray | None:
    """Swap items until every budget holds, each time taking the swap that removes the most
    (relative) violation per unit of objective increase. None if it gets stuck."""
    items = np.array(items, dtype=np.int64)
    if model.num_budgets == 0:
        return items
    scale = np.maximum(np.abs(model.budgets), 1e-300)
    max_moves = max_moves if max_moves is not None else 4 * model.num_groups + 10
    for _ in range(max_moves):
        load = totals(model, items)
        excess = np.maximum(load - model.rhs, 0.0) / scale
        if not (excess > _TOL).any():
            return items
        current = items[model.item_group]  # the chosen item of each item's group
        new_load = load[:, None] + model.weights - model.weights[:, current]  # (m, n)
        new_excess = (np.maximum(new_load - model.rhs[:, None], 0.0) / scale[:, None]).sum(axis=0)
        relief = excess.sum() - new_excess
        extra = model.value - model.value[current]
        with np.errstate(over="ignore"):  # free relief scores +inf: exactly the move we want first
            score = np.where(relief > _TOL, relief / (np.maximum(extra, 0.0) + 1e-12 * (1 + np.abs(model.value))), -np.inf)
        j = int(np.argmax(score))
        if not np.isfinite(score[j]):
            return None
        items[model.item_group[j]] = j
    return items if is_feasible(model, items) else None


def improve(model: CanonicalModel, items: np.ndarray, max_moves: int | None = None) -> np.ndarray:
    """Best-improvement 1-opt: switch one group at a time while the objective drops and budgets hold."""
    items = np.array(items, dtype=np.int64)
    max_moves = max_moves if max_moves is not None else 4 * model.num_groups + 10
    limit = model.rhs + _TOL * np.abs(model.budgets)
    for _ in range(max_moves):
        current = items[model.item_group]
        gain = model.value[current] - model.value
        if model.num_budgets:
            load = totals(model, items)
            ok = (load[:, None] + model.weights - model.weights[:, current] <= limit[:, None]).all(axis=0)
            gain = np.where(ok, gain, -np.inf)
        j = int(np.argmax(gain))
        if not gain[j] > _TOL * (1 + abs(model.value[j])):
            break
        items[model.item_group[j]] = j
    return items


def fill(model: CanonicalModel, items: np.ndarray, max_candidates: int = 10_000) -> np.ndarray:
    """Spend leftover budget: apply improving single-group switches that fit the remaining slack,
    best gain first (one pass, vectorized candidate search)."""
    items = np.array(items, dtype=np.int64)
    current = items[model.item_group]
    gain = model.value[current] - model.value
    extra = model.weights - model.weights[:, current]  # (m, n)
    slack = model.rhs - totals(model, items)
    fits = (gain > 0) & (extra <= slack[:, None]).all(axis=0)
    candidates = np.nonzero(fits)[0]
    if candidates.size == 0:
        return items
    candidates = candidates[np.argsort(-gain[candidates], kind="stable")][:max_candidates]
    moved = np.zeros(model.num_groups, dtype=bool)
    for j in candidates.tolist():
        g = model.item_group[j]
        if moved[g] or (extra[:, j] > slack).any():
            continue
        items[g] = j
        slack -= extra[:, j]
        moved[g] = True
    return items
