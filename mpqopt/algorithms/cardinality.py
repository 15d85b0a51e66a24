"""A lower bound for one budget from the number of weight steps an assignment can afford (single budget).

Number each group's items by weight, lightest 0 (``rank``). Whatever the assignment, its ranks sum to
an integer, and no more than the most the budget affords: ``K``, the LP maximum of that sum (on the
lower convex hulls of rank against weight), rounded down. The valid inequality ``sum rank <= K`` is a
cardinality cut (Martello, Pisinger and Toth's bounds for strongly correlated knapsacks), and the
Lagrangian relaxation of both rows gives, for any ``lam, mu >= 0``,

    L(lam, mu) = sum over groups of min(value + lam * weight + mu * rank) - lam * budget - mu * K,

a lower bound on every assignment's objective. For a fixed ``mu`` the best ``lam`` is the LP's (the
hull greedy on ``value + mu * rank``); ``mu`` is searched. The cut only helps where the LP leaves a
fraction of a rank step (every item on its group's hull, all of similar efficiency: Pisinger's
strongly correlated class, where the LP bound stops 5-9 units short of the optimum that this bound
meets exactly); elsewhere ``mu = 0`` is best and the bound is the LP bound.

>>> from mpqopt.synthetic import knapsack_problem
>>> from mpqopt.reductions import canonicalize
>>> from mpqopt.algorithms.hull import greedy
>>> model = canonicalize(p := knapsack_problem(100, 10, "strongly", R=1000, seed=0), dict(p.budgets))
>>> card = rank_bound(model)
>>> bool(card.bound >= greedy(model).lp_bound)
True
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..reductions import CanonicalModel
from .hull import greedy

# evaluations of the LP (one hull greedy each) the search over mu may spend
MAX_EVALUATIONS = 48


@dataclass
class RankBound:
    bound: float  # valid lower bound on every assignment's objective (-inf if none was found)
    lam: float
    mu: float
    max_ranks: int  # K
    evaluations: int


def item_ranks(model: CanonicalModel) -> np.ndarray:
    """Each item's place in its group by weight (lightest 0, ties by item order)."""
    order = np.lexsort((np.arange(model.num_items), model.weights[0], model.item_group))
    ranks = np.empty(model.num_items, dtype=np.int64)
    ranks[order] = np.arange(model.num_items) - model.group_start[model.item_group[order]]
    return ranks


def max_ranks(model: CanonicalModel, ranks: np.ndarray) -> int | None:
    """``K``: the largest rank sum an assignment within the budget can have, from above (None: the
    cheapest choice breaks the budget)."""
    counted = greedy(dataclasses.replace(model, value=-ranks.astype(np.float64), integral_objective=False))
    if counted is None:
        return None
    most = -counted.lp_bound
    return int(math.floor(most + 1e-9 * (abs(most) + 1.0)))  # rounded up past the LP's round-off: K only weakens


def lagrangian_value(model: CanonicalModel, ranks: np.ndarray, K: int, lam: float, mu: float) -> float:
    """``L(lam, mu)`` less a bound on its float64 round-off: valid as it is."""
    adjusted = model.value + lam * model.weights[0] + mu * ranks
    group_min = np.minimum.reduceat(adjusted, model.group_start[:-1])
    rhs = float(model.rhs[0] + model.budget_slack[0])
    total = float(group_min.sum()) - lam * rhs - mu * K
    scale = float(np.maximum.reduceat(np.abs(model.value) + lam * np.abs(model.weights[0]) + mu * ranks, model.group_start[:-1]).sum())
    roundoff = 1e-15 * (model.num_groups + 16) * (scale + abs(lam * rhs) + mu * K + 1.0)
    return total - roundoff


def rank_bound(model: CanonicalModel, max_evaluations: int = MAX_EVALUATIONS, goal: float = np.inf, deadline: Any = None) -> RankBound:
    """The best ``L(lam, mu)`` found (rounded up on an integer objective); single budget only. The
    search stops once the bound reaches ``goal`` (an incumbent's objective: nothing more to prove),
    or once ``deadline`` (anything with ``expired()``) has passed: every multiplier tried gives a
    valid bound, so an early stop only weakens it."""
    if model.num_budgets != 1:
        raise ValueError("rank_bound needs exactly one budget")
    ranks = item_ranks(model)
    K = max_ranks(model, ranks)
    if K is None:
        return RankBound(-np.inf, 0.0, 0.0, -1, 0)
    evaluations = 0
    cache: dict[float, tuple[float, float]] = {}

    def lp(mu: float) -> tuple[float, float]:
        """(LP bound of value + mu * rank, less mu * K; its multiplier)."""
        nonlocal evaluations
        if mu not in cache and cache and deadline is not None and deadline.expired():
            return (-np.inf, 0.0)  # out of time: an untried mu counts as no better
        if mu not in cache:
            evaluations += 1
            start = greedy(dataclasses.replace(model, value=model.value + mu * ranks, integral_objective=False))
            cache[mu] = (-np.inf, 0.0) if start is None else (start.lp_bound - mu * K, start.lam)
        return cache[mu]

    def settle() -> tuple[float, float, float]:
        """The bound at the best mu so far, evaluated as it holds (round-off subtracted, rounded up on
        an integer objective). Multipliers found by search are a little off the peak; a short fraction
        near them is often the exact one (mu = 10, lam = 1 on Pisinger's strongly correlated class)."""
        best = max(cache, key=lambda m: cache[m][0])
        candidates = {best} | {round(best * d) / d for d in (1, 2, 4, 8)}
        tried = []
        for mu in sorted(m for m in candidates if m >= 0):
            lam = lp(mu)[1]
            for lam_try in {lam, round(lam * 8) / 8, float(round(lam))}:
                if lam_try >= 0:
                    tried.append((lagrangian_value(model, ranks, K, lam_try, mu), lam_try, mu))
        bound, lam, mu = max(tried)
        if model.integral_objective and np.isfinite(bound):
            bound = float(math.ceil(bound))
        return bound, lam, mu

    # f(mu) is concave: bracket its peak by doubling, then a golden-section search
    span = float(np.ptp(model.value)) if model.num_items else 0.0
    lo, hi = 0.0, 1e-4 * max(span, 1.0) / max(float(ranks.max(initial=0)), 1.0)
    if not lp(hi)[0] > lp(lo)[0]:  # f falls from mu = 0 on: the cut does not bind, the LP bound is it
        bound, lam, mu = settle()
        return RankBound(bound, lam, mu, K, evaluations)
    while evaluations < max_evaluations // 2 and lp(hi)[0] > lp(lo)[0]:
        lo, hi = hi, 2.0 * hi
    lo = lo / 2.0
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    settled = settle()
    steps = 0
    while settled[0] < goal and evaluations < max_evaluations - 4 and hi - lo > 1e-12 * max(hi, 1.0) and not (deadline is not None and deadline.expired()):
        if lp(a)[0] >= lp(b)[0]:
            hi, b = b, a
            a = hi - ratio * (hi - lo)
        else:
            lo, a = a, b
            b = lo + ratio * (hi - lo)
        steps += 1
        if steps % 4 == 0:
            settled = max(settled, settle())
    bound, lam, mu = max(settled, settle())
    return RankBound(bound, lam, mu, K, evaluations)
