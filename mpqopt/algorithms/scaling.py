"""Numerical scaling of the canonical model: budget rows by their limits, the objective per group.

Solvers with absolute tolerances (HiGHS, the dual's master LP) see every budget row near 1 and an
objective whose per-group spread is at most 1, whatever the user's units.
"""

from __future__ import annotations

import numpy as np

from ..reductions import CanonicalModel


def budget_row_scales(model: CanonicalModel) -> np.ndarray:
    """Divide each budget row by its right-hand side (bits budgets of 1e7 upset HiGHS's row checks)."""
    scale = np.abs(model.rhs).astype(np.float64)
    fallback = np.abs(model.weights).max(axis=1, initial=0.0) if model.num_items else np.ones_like(scale)
    scale = np.where(scale > 0, scale, fallback)
    return np.where(scale > 0, scale, 1.0)


def normalized_objective(model: CanonicalModel) -> tuple[np.ndarray, np.ndarray, float]:
    """Objective shifted so each group's best item costs 0, then scaled to max 1.

    HiGHS's tolerances are absolute (~1e-7..1e-9): sensitivities of 1e-9 would all look equal and
    large offsets would swamp small differences. Returns ``(values, group_shift, scale)`` with
    ``original = values * scale + group_shift[item_group]``.
    """
    shift = np.minimum.reduceat(model.value, model.group_start[:-1]) if model.num_items else np.zeros(0)
    shifted = model.value - shift[model.item_group]
    scale = float(shifted.max(initial=0.0))
    scale = scale if scale > 0 else 1.0
    return shifted / scale, shift, scale


def normalized_columns(model: CanonicalModel, pair_cost: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    """Normalized costs of the item columns, then of a linearization's pair columns (``pair_cost``):
    ``original objective = cost @ columns * scale + constant``. The pair columns share the scale,
    which must cover their costs too. Returns ``(cost, constant, scale)``."""
    cost, shift, scale = normalized_objective(model)
    if pair_cost is not None and pair_cost.size:
        pair_scale = float(np.abs(pair_cost).max())
        if pair_scale > scale:
            cost, scale = cost * (scale / pair_scale), pair_scale
        cost = np.concatenate([cost, pair_cost / scale])
    return cost, float(shift.sum()), scale
