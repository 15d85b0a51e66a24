"""Lagrangian bounds for the canonical multiple-choice model and exact reduced-cost fixing.

Relaxing the budget rows with multipliers ``lam >= 0`` keeps one-item-per-group, which is solved by
taking each group's cheapest item under ``value + lam @ weights``::

    L(lam) = sum_g min_{j in g} (value_j + lam @ weights_j) - lam @ rhs  <=  optimum

For the optimal ``lam`` this equals the LP relaxation bound. An item ``k`` whose *reduced cost*
``value_k + lam @ weights_k - min_{j in g}(...)`` lifts ``L(lam)`` above a known feasible objective
cannot be part of any better solution, so it can be dropped without losing optimality.
"""

from __future__ import annotations

from fractions import Fraction

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
    if model.integral_objective and model.num_budgets:
        bound = _valid_to_a_unit(model, lam, group_min, bound)
    return bound, reduced


# Items x budgets up to which an integer-objective bound whose float round-off may reach a unit is
# evaluated exactly (Python fractions: 300 x 8 x 3 in ~20 ms); past it the round-off is subtracted
EXACT_BOUND_ITEMS = 20_000


def _valid_to_a_unit(model: CanonicalModel, lam: np.ndarray, group_min: np.ndarray, bound: float) -> float:
    """``bound`` (L(lam) summed in float64) as a bound that holds to the unit on an integer objective.

    A bound within half a unit of an integer objective proves it (:func:`gap_closed`), but at
    magnitudes near 2**52 float64 sums round by half a unit and more (a bound 0.5 above the exact
    L(lam) called an assignment one unit above the optimum optimal). Where the round-off of the
    sums (selection of each group's least item included) may reach 1e-3 of a unit, L(lam) is
    computed exactly from the float multipliers and rounded down; on models too large for that,
    the round-off is subtracted.
    """
    eps = float(np.finfo(np.float64).eps)
    F, m = model.num_groups, model.num_budgets
    # largest |weight| per row and |value| by reductions only (no n-sized temporaries: 1,000,000 x 8)
    w_max = np.maximum(model.weights.max(axis=1, initial=0.0), -model.weights.min(axis=1, initial=0.0))
    v_max = max(float(model.value.max(initial=0.0)), -float(model.value.min(initial=0.0)))
    per_item = (m + 1) * eps * (float(np.abs(lam) @ w_max) + v_max)
    roundoff = 2 * F * per_item + F * eps * float(np.abs(group_min).sum()) + (m + 1) * eps * float(np.abs(lam) @ np.abs(model.rhs)) + eps * abs(bound)
    if roundoff < 1e-3:
        return bound
    if model.num_items * m > EXACT_BOUND_ITEMS:
        return bound - roundoff
    lam_q = [Fraction(float(x)) for x in lam]
    weights = model.weights.tolist()
    values = model.value.tolist()
    adjusted = [Fraction(values[j]) + sum(l * Fraction(row[j]) for l, row in zip(lam_q, weights)) for j in range(model.num_items)]
    starts = model.group_start.tolist()
    exact = sum(min(adjusted[starts[g]:starts[g + 1]]) for g in range(F)) - sum(l * Fraction(float(r)) for l, r in zip(lam_q, model.rhs))
    down = float(exact)
    return down if Fraction(down) <= exact else float(np.nextafter(down, -np.inf))


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
