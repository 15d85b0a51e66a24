"""Accuracy-target mode as a reduction: least total of a cost table subject to total predicted loss
<= ``max_loss`` (plus the other budgets).

Separable problems swap the roles of value and weight (:func:`swap_objective`): the cost table
becomes the objective and the sensitivity table becomes one more budgeted cost, so every MCKP
backend solves it. Cost tables must be non-negative and sensitivities may not be, so each layer's
row is shifted by its smallest entry and the shift comes off the loss budget.

A pairwise term makes the loss quadratic, so it cannot be a budget row on the item columns alone;
:func:`loss_target_arrays` writes it as one linear row over the item columns and the pair columns
of the exact one-hot linearization (:mod:`.linearize`), a MILP for HiGHS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import scipy.sparse as sp

from ..problem import Problem
from .canonical import CanonicalModel, canonicalize
from .linearize import Linearization, linearize
from .matrix import MilpArrays, budget_row_scales, csc_arrays, normalized_objective


@dataclass
class SwappedProblem:
    """A problem whose objective is cost ``minimize`` and whose costs hold the shifted loss table
    ``loss_name`` (``None`` when no loss limit applies). A loss limit ``max_loss`` becomes the budget
    ``loss_budget(max_loss)`` on that table."""

    problem: Problem
    minimize: str
    loss_name: str | None
    shift: float  # sum over layers of the smallest sensitivity: loss = shifted total + shift

    def loss_budget(self, max_loss: float) -> float:
        """The budget on the shifted loss table that means ``loss <= max_loss`` (negative: unreachable)."""
        return max_loss - self.shift


def fresh_name(taken: Mapping[str, object], name: str = "loss") -> str:
    """``name``, or ``name_2``, ``name_3``... if a cost table already has it.

    >>> fresh_name({"loss": 1, "size_bits": 2})
    'loss_2'
    """
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name}_{n}"
    return out


def swap_objective(problem: Problem, minimize: str, with_loss: bool = True) -> SwappedProblem:
    """The separable problem ``min costs[minimize]`` whose cost tables add the loss (``with_loss``).

    >>> p = Problem(["a", "b"], [4, 8], [[0.5, 0.0], [0.1, -0.2]], costs={"size_bits": [[4, 8], [4, 8]]})
    >>> s = swap_objective(p, "size_bits")
    >>> s.loss_name, s.problem.costs["loss"].tolist(), round(s.shift, 3), s.loss_budget(0.3)
    ('loss', [[0.5, 0.0], [0.30000000000000004, 0.0]], -0.2, 0.5)
    """
    if problem.pairwise is not None and with_loss:
        raise ValueError("swap_objective() with a loss table needs a separable problem; a pairwise loss is not a linear budget")
    costs = dict(problem.costs)
    name, shift = None, 0.0
    if with_loss:
        name = fresh_name(costs)
        row_min = problem.sensitivity.min(axis=1)
        costs[name] = problem.sensitivity - row_min[:, None]  # >= 0 entry by entry: a - min >= 0 in floats too
        shift = float(row_min.sum())
    swapped = problem.replace(sensitivity=problem.costs[minimize], pairwise=None, sensitivity_std=None, costs=costs, budgets={})
    return SwappedProblem(swapped, minimize, name, shift)


@dataclass
class LossTargetModel:
    """The pairwise accuracy-target MILP: ``cost_model`` (objective: the cost table; its budget rows)
    and ``loss_model`` (the loss's linear part, quadratic term and offset) over the same items."""

    cost_model: CanonicalModel
    loss_model: CanonicalModel
    linear: Linearization


def loss_target_model(problem: Problem, minimize: str, budgets: Mapping[str, float]) -> LossTargetModel:
    """Canonical models of the cost objective and of the loss, item for item the same (no pruning:
    dominance on cost and budgets alone would ignore the loss)."""
    swapped = swap_objective(problem, minimize, with_loss=False).problem
    cost_model = canonicalize(swapped, budgets, prune=False)
    loss_model = canonicalize(problem, budgets, prune=False)
    assert np.array_equal(cost_model.item_option, loss_model.item_option)  # same candidates, same forced groups
    linear = linearize(loss_model, 0.0)  # nothing dropped: the loss row must be exact
    return LossTargetModel(cost_model, loss_model, linear)


def loss_target_arrays(target: LossTargetModel, max_loss: float) -> MilpArrays:
    """The MILP ``min cost @ x`` over the one-hot rows, the budget rows, one loss row
    ``loss value @ x + pair cost @ y <= max_loss - loss offset`` and the linearization's rows.

    The loss row is divided by its largest coefficient; ``row_scale`` lists it after the budgets'.
    """
    model, loss, linear = target.cost_model, target.loss_model, target.linear
    n, pairs = model.num_items, linear.pair_first.size
    values, shift, scale = normalized_objective(model)
    start, index, value, row_lower, row_upper = csc_arrays(model)
    x_part = sp.csc_array((value, index, start), shape=(row_lower.size, n))
    coefficients = np.concatenate([loss.value, linear.pair_cost])
    row_scale = float(np.abs(coefficients).max(initial=0.0)) or 1.0
    loss_row = sp.csr_array(coefficients[None, :] / row_scale)
    full = sp.vstack([sp.hstack([x_part, sp.csc_array((row_lower.size, pairs))]), loss_row, linear.rows]).tocsc()
    full.sort_indices()
    equalities = np.zeros(linear.rows.shape[0])
    rhs = (max_loss - loss.offset) / row_scale
    return MilpArrays(
        cost=np.concatenate([values, np.zeros(pairs)]),
        scale=scale,
        constant=float(shift.sum()),
        start=full.indptr.astype(np.int32),
        index=full.indices.astype(np.int32),
        value=full.data,
        row_lower=np.concatenate([row_lower, [-np.inf], equalities]),
        row_upper=np.concatenate([row_upper, [rhs], equalities]),
        row_scale=np.concatenate([budget_row_scales(model), [row_scale]]),
        num_items=n,
    )
