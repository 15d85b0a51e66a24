"""Lagrangian bounds for the canonical multiple-choice model and exact reduced-cost fixing.

Relaxing the budget rows with multipliers ``lam >= 0`` keeps one-item-per-group, which is solved by
taking each group's cheapest item under ``value + lam @ weights``::

    L(lam) = sum_g min_{j in g} (value_j + lam @ weights_j) - lam @ rhs  <=  optimum

For the optimal ``lam`` this equals the LP relaxation bound. An item ``k`` whose *reduced cost*
``value_k + lam @ weights_k - min_{j in g}(...)`` lifts ``L(lam)`` above a known feasible objective
cannot be part of any better solution, so it can be dropped without losing optimality.
"""

from __future__ import annotations

import numpy as np

from ..reductions import CanonicalModel

_BLOCK = 1 << 18  # items per block of in-place updates


def lagrangian_costs(model: CanonicalModel, lam: np.ndarray) -> np.ndarray:
    """``value + lam @ weights`` per item."""
    if model.num_budgets == 0:
        return model.value.copy()
    adjusted = lam @ model.weights
    adjusted += model.value  # in place: value + lam @ weights without a second n-sized array
    return adjusted


def lagrangian_bound(model: CanonicalModel, lam: np.ndarray) -> tuple[float, np.ndarray]:
    """``(L(lam), reduced cost per item)``: a valid lower bound for any ``lam >= 0``."""
    lam = np.maximum(np.asarray(lam, dtype=np.float64), 0.0)
    adjusted = lagrangian_costs(model, lam)
    group_min = np.minimum.reduceat(adjusted, model.group_start[:-1])
    reduced = adjusted  # in place, block by block: no n-sized temporaries
    for lo in range(0, reduced.size, _BLOCK):
        reduced[lo:lo + _BLOCK] -= group_min[model.item_group[lo:lo + _BLOCK]]
    bound = float(group_min.sum() - (lam @ model.rhs if model.num_budgets else 0.0))
    return bound, reduced


def fixable_items(model: CanonicalModel, lam: np.ndarray, incumbent_objective: float, rtol: float = 1e-9) -> tuple[np.ndarray, float]:
    """Mask of items that no solution better than ``incumbent_objective`` can use, and the bound used.

    A safety margin of ``rtol`` (relative to the objective's magnitude) keeps round-off from
    dropping an item that ties the incumbent.
    """
    bound, reduced = lagrangian_bound(model, lam)
    margin = rtol * max(abs(incumbent_objective), abs(bound), float(np.abs(model.value).max(initial=0.0)), 1e-300)
    # a solution may exceed a budget by its slack (is_feasible): its objective is then as low as
    # L(lam) + reduced - lam @ budget_slack
    if model.num_budgets:
        margin += float(np.maximum(np.asarray(lam, dtype=np.float64), 0.0) @ model.budget_slack)
    return bound + reduced > incumbent_objective + margin, bound
