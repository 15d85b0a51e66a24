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


def roundoff(model: CanonicalModel, items: np.ndarray) -> float:
    """What summing ``items``' values in another order can change: ``F`` additions, each rounding
    by at most one ulp of the running total (``F * eps * sum |value|``). Objectives and bounds that
    differ by no more are equal as far as float data can tell. Integer objectives (sums exact below
    2**53) have none: there only a bound within half a unit of the objective proves it."""
    if model.integral_objective:
        return 0.5
    return model.num_groups * float(np.finfo(np.float64).eps) * (float(np.abs(model.value[items]).sum()) + abs(model.offset))


def gap_closed(model: CanonicalModel, items: np.ndarray, bound: float, mip_gap: float = 0.0) -> bool:
    """Whether ``bound`` proves ``items`` optimal within ``mip_gap`` (relative to the user's
    objective, ``model.offset`` included) or within :func:`roundoff` at ``mip_gap=0``.

    >>> from mpqopt.synthetic import mckp_problem
    >>> from mpqopt.reductions import canonicalize
    >>> m = canonicalize(mckp_problem(4, 2, 0), {})
    >>> best = m.group_start[:-1] + np.argmin(m.value.reshape(-1, 2), axis=1)
    >>> gap_closed(m, best, m.items_objective(best)), gap_closed(m, best, m.items_objective(best) - 1.0)
    (True, False)
    """
    objective = model.items_objective(items)
    return objective - bound <= max(mip_gap * abs(objective + model.offset), roundoff(model, items))
