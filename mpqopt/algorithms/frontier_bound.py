"""A lower bound on the best objective at every cost of a frontier's axis, valid for the problem as posed.

* One budget (the axis): the LP relaxation's value function, exactly, from the per-group lower hulls
  (its vertices are MPQCO's greedy allocations).
* Other budgets too: the LP at each sampled axis budget (HiGHS). The LP value is convex and
  non-increasing in the axis budget, so its tangents, with the axis row's dual as slope, lie below
  it everywhere; the curve is their upper envelope, through the LP value at each sampled budget.
* A pairwise term: the LP of a separable underestimate (:func:`separable_underestimate`), since
  dropping the term would not bound it from below (negative cross terms lower the objective).

>>> import mpqopt
>>> p = mpqopt.Problem(["a", "b"], [2, 4], [[1.0, 0.0], [1.0, 0.0]], costs={"bits": [[2, 4], [2, 4]]},
...                    pairwise=[[0, 0, -0.5, 0], [0, 0, 0, 0], [-0.5, 0, 0, 0], [0, 0, 0, 0]])
>>> costs, values, note = lp_frontier(p, "bits")
>>> costs.tolist(), values.tolist()  # at 4 bits the exact objective: 1 + 1 - 0.5 - 0.5
([4.0, 6.0], [1.0, 0.0])
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

import numpy as np

from ..deadline import Deadline
from ..highs_runtime import highs_lp, new_highs
from ..highs_runtime import run as run_highs
from ..problem import Problem
from ..reductions import CanonicalModel, canonicalize
from ..reductions.matrix import milp_arrays
from .hull import hull_increments

MAX_DENSE_ITEMS = 20_000  # the underestimate reads every entry of the n x n pairwise matrix (time ~ n^2)
_CHUNK_ENTRIES = 1 << 22  # ... a block of rows at a time (32 MiB of floats)


def separable_underestimate(model: CanonicalModel) -> CanonicalModel | None:
    """``model`` without its quadratic term, each item's value lowered so that the linear objective
    is at most the quadratic one at every assignment: for groups ``g < h`` the cross term of the
    chosen items ``i in g, j in h`` is ``2 Q[i, j] >= min_j' 2 Q[i, j']``, charged to ``i``.
    None when the matrix is too large to read densely."""
    if model.quadratic is None or model.num_groups == 0:
        return replace(model, quadratic=None)
    if model.num_items > MAX_DENSE_ITEMS:
        return None
    quadratic = model.quadratic.tocsr()
    extra = np.empty(model.num_items)
    step = max(1, _CHUNK_ENTRIES // model.num_items)  # rows read densely at a time: bounded memory
    for first in range(0, model.num_items, step):
        rows = np.arange(first, min(first + step, model.num_items))
        block_min = np.minimum.reduceat(2.0 * quadratic[rows].toarray(), model.group_start[:-1], axis=1)  # (rows, groups)
        later = np.arange(model.num_groups)[None, :] > model.item_group[rows, None]
        extra[rows] = np.where(later, block_min, 0.0).sum(axis=1)
    return replace(model, value=model.value + extra, quadratic=None)


def lp_frontier(problem: Problem, name: str, others: Mapping[str, float] | None = None,
                at: Sequence[float] = (), clock: Deadline | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Vertices ``(costs, values)`` of a lower bound on the objective against cost ``name``
    (interpolate linearly between them; nothing is feasible left of the first; flat right of the
    last), and a note on how it was made ("" for the plain LP). With ``others`` (further budgets)
    the LP is solved at the axis budgets ``at``, within ``clock`` (the dearest budget first, the rest
    while time is left). Empty arrays and the reason when there is none."""
    others = {k: v for k, v in (others or {}).items() if k != name}
    lo, hi = problem.cost_range(name)
    model = canonicalize(problem, {**others, name: hi})
    note = ""
    if model.quadratic is not None:
        model = separable_underestimate(model)
        if model is None:
            return np.zeros(0), np.zeros(0), f"no LP bound: the pairwise term is over {MAX_DENSE_ITEMS} items, too large for the separable underestimate"
        note = "LP of a separable underestimate of the pairwise term (each cross term at its block's least entry)"
    axis = model.num_budgets - 1
    fixed = model.budgets - model.rhs  # cost of forced decisions
    if model.num_groups == 0:
        return np.array([lo]), np.array([model.offset]), note
    if not others:
        inc = hull_increments(model, model.weights[axis])
        costs = fixed[axis] + float(model.weights[axis, inc.start_items].sum()) + np.concatenate([[0.0], np.cumsum(inc.dcost)])
        values = model.offset + float(model.value[inc.start_items].sum()) + np.concatenate([[0.0], np.cumsum(inc.dvalue)])
        return costs, values, note
    costs, values, complete = _tangent_envelope(model, axis, fixed[axis], sorted(set(float(b) for b in at) | {hi}), clock)
    extra = "LP at each sampled budget with every other budget, joined by its tangents"
    if not complete:
        extra += f" ({clock.message()} before every sampled budget was solved: the first tangent extends to the cheapest)"
    return costs, values, f"{note}; {extra}" if note else extra


class _AxisLp:
    """The LP relaxation loaded into HiGHS once; each call changes the axis row's limit and
    re-solves from the last basis (dual simplex: one budget to the next is a few pivots, where a
    fresh LP of 160,000 columns took seconds)."""

    def __init__(self, model: CanonicalModel, axis: int, clock: Deadline | None):
        import highspy

        self.hs, self.model, self.axis, self.clock = highspy, model, axis, clock
        self.arrays = milp_arrays(model)
        self.row = model.num_groups + axis
        self.h = new_highs()
        self.h.passModel(highs_lp(highspy, self.arrays, integer=False))

    def at(self, rhs: float) -> tuple[float, float] | None:
        """LP value and axis-row dual (>= 0, objective per unit of cost) with the axis row's
        right-hand side ``rhs``; None if the LP is infeasible or unsolved (in the time left too)."""
        scale = float(self.arrays.row_scale[self.axis])
        self.h.changeRowBounds(self.row, -np.inf, rhs / scale)
        if self.clock is not None and self.clock.at is not None:
            self.h.setOptionValue("time_limit", float(self.clock.remaining()))
        run_highs(self.h)
        if self.h.getModelStatus() != self.hs.HighsModelStatus.kOptimal:
            return None
        value = float(self.h.getInfo().objective_function_value) * self.arrays.scale + self.arrays.constant + self.model.offset
        dual = -float(np.asarray(self.h.getSolution().row_dual)[self.row])
        return value, max(dual, 0.0) * self.arrays.scale / scale


def _tangent_envelope(model: CanonicalModel, axis: int, fixed: float, budgets: list[float], clock: Deadline | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Upper envelope of the LP value function's tangents at ``budgets`` (sorted), as vertices, and
    whether every budget was reached before ``clock`` ran out. The dearest budget goes first: the
    value function is convex and non-increasing, so tangents at any subset bound it from below, and
    with the dearest one solved the curve is valid flat to its right."""
    lp = _AxisLp(model, axis, clock)
    last = lp.at(budgets[-1] - fixed)
    if last is None:  # infeasible at the dearest budget (so everywhere), or no time: no curve
        return np.zeros(0), np.zeros(0), clock is None or not clock.expired()
    solved = {budgets[-1]: last}
    infeasible: list[float] = []
    complete = True
    for b in budgets[:-1]:
        if clock is not None and clock.expired():
            complete = False
            break
        found = lp.at(b - fixed)
        if found is None:
            infeasible.append(b)
        else:
            solved[b] = found
    points = [(b, *solved[b]) for b in sorted(solved)]
    if not points:
        return np.zeros(0), np.zeros(0), complete
    costs, values = [], []
    # left of the first solved budget: the LP is infeasible below the last budget that failed; when
    # the clock cut the sampling short, the first tangent (a valid underestimate) down to the cheapest budget
    below = [b for b in infeasible if b < points[0][0]]
    start = max(below) if below else (None if complete else budgets[0])
    if start is not None and start < points[0][0]:
        b, v, mu = points[0]
        costs.append(start)
        values.append(v + mu * (b - start))
    for k, (b, v, mu) in enumerate(points):
        costs.append(b)
        values.append(v)
        if k + 1 < len(points):
            b2, v2, mu2 = points[k + 1]
            if mu > mu2:  # the two tangents cross between the budgets (exactly so in exact arithmetic)
                cross = min(max((v - v2 + mu * b - mu2 * b2) / (mu - mu2), b), b2)
                costs.append(cross)
                values.append(min(v - mu * (cross - b), v2 - mu2 * (cross - b2)))
    return np.array(costs), np.array(values), complete
