"""Solver-neutral matrix forms of the canonical model: row and objective scaling, the column-wise
(CSC) constraint matrix, the whole MILP as arrays and the linearization the MILP backends use.

Solvers with absolute tolerances (HiGHS, the dual's master LP) see every budget row near 1 and an
objective whose per-group spread is at most 1, whatever the user's units. Nothing here imports a
solver: the backends (:mod:`mpqopt.solvers`), the convex relaxation (:mod:`.convexify`) and file
export (:mod:`mpqopt.io.export`) all build on these arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .canonical import CanonicalModel
from .linearize import Linearization, linearize

# interaction blocks whose every |entry| is at most this fraction of the largest are dropped from
# the linearization (reported; the bound is lowered by the most they could contribute)
BLOCK_RTOL = 1e-12


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


def csc_arrays(model: CanonicalModel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Column-wise constraint matrix and row bounds: F one-hot rows, then m scaled budget rows.

    Returns ``(start, index, value, row_lower, row_upper)``.
    """
    n, F, m = model.num_items, model.num_groups, model.num_budgets
    scale = budget_row_scales(model)
    rows = np.empty((n, 1 + m), dtype=np.int32)
    vals = np.empty((n, 1 + m), dtype=np.float64)
    rows[:, 0] = model.item_group
    vals[:, 0] = 1.0
    rows[:, 1:] = F + np.arange(m)
    vals[:, 1:] = (model.weights / scale[:, None]).T
    keep = vals != 0.0
    start = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(keep.sum(axis=1), out=start[1:])
    row_lower = np.concatenate([np.ones(F), np.full(m, -np.inf)])
    row_upper = np.concatenate([np.ones(F), model.rhs / scale])
    return start, rows[keep], vals[keep], row_lower, row_upper


def _with_linearization(start, index, value, row_lower, row_upper, n: int, linear: Linearization):
    """Append the pair columns and the linearization's equality rows to the CSC arrays."""
    x_part = sp.csc_array((value, index, start), shape=(row_lower.size, n))
    pairs = linear.pair_first.size
    full = sp.vstack([sp.hstack([x_part, sp.csc_array((row_lower.size, pairs))]), linear.rows]).tocsc()
    full.sort_indices()
    zeros = np.zeros(linear.rows.shape[0])
    return (full.indptr.astype(np.int32), full.indices.astype(np.int32), full.data, np.concatenate([row_lower, zeros]), np.concatenate([row_upper, zeros]))


@dataclass
class MilpArrays:
    """The canonical model as one MILP in column-wise (CSC) arrays, shared by every HiGHS-based
    backend (``highs``, ``scipy``) and by :func:`mpqopt.io.export.export`.

    Columns: the ``num_items`` binary item columns, then (pairwise problems) one continuous column per
    item pair of the one-hot linearization. Rows: one-hot rows, budget rows divided by ``row_scale``,
    then the linearization's equality rows. ``cost`` is in normalized units:
    ``canonical objective = cost @ columns * scale + constant``.
    """

    cost: np.ndarray
    scale: float
    constant: float
    start: np.ndarray
    index: np.ndarray
    value: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    row_scale: np.ndarray
    num_items: int

    @property
    def num_cols(self) -> int:
        return int(self.cost.size)

    @property
    def num_rows(self) -> int:
        return int(self.row_lower.size)

    def integrality(self) -> np.ndarray:
        """1 (integer) for item columns, 0 for pair columns: the equality rows make those 0/1 at integral x."""
        return (np.arange(self.num_cols) < self.num_items).astype(np.uint8)

    def start_values(self, items: np.ndarray, linear: Linearization | None) -> np.ndarray:
        """Every column's value at one chosen item per group (pair columns = products)."""
        x0 = np.zeros(self.num_items)
        x0[np.asarray(items)] = 1.0
        if linear is not None:
            x0 = np.concatenate([x0, x0[linear.pair_first] * x0[linear.pair_second]])
        return x0


def milp_arrays(model: CanonicalModel, linear: Linearization | None = None) -> MilpArrays:
    """Build :class:`MilpArrays` for ``model`` (with ``linear``'s pair columns and rows if given)."""
    cost, constant, scale = normalized_columns(model, None if linear is None else linear.pair_cost)
    start, index, value, row_lower, row_upper = csc_arrays(model)
    if linear is not None:
        start, index, value, row_lower, row_upper = _with_linearization(start, index, value, row_lower, row_upper, model.num_items, linear)
    return MilpArrays(cost, scale, constant, start, index, value, row_lower, row_upper, budget_row_scales(model), model.num_items)


def linearization_for(model: CanonicalModel) -> Linearization:
    """The one-hot linearization of ``model.quadratic`` the MILP backends and export use:
    blocks whose every |entry| is at most ``BLOCK_RTOL`` of the largest are dropped."""
    return linearize(model, BLOCK_RTOL * float(abs(model.quadratic).max()))
