"""Exact linearization of the cross-layer quadratic term (one-hot RLT form) into MILP columns.

For every pair of groups ``(g, h)`` with an interaction block above ``tolerance``, one continuous
``y[i, j] >= 0`` per item pair ``i in g, j in h`` stands for ``x_i * x_j``, tied by::

    sum_{j in h} y[i, j] = x_i   for every i in g        sum_{i in g} y[i, j] = x_j   for every j in h

With one item chosen per group these force ``y[i, j] = x_i x_j`` exactly, and their LP relaxation is
far tighter than per-pair McCormick rows. Blocks whose entries are all below ``tolerance`` (in
absolute value) are dropped: the objective then ignores them, and the count is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .canonical import CanonicalModel


@dataclass
class Linearization:
    """Extra columns and rows that express ``x^T Q x`` linearly (see the module docstring)."""

    pair_first: np.ndarray  # (p,) item i of each y column
    pair_second: np.ndarray  # (p,) item j (a later group)
    pair_cost: np.ndarray  # (p,) 2 * Q[i, j]: both triangle halves of the symmetric matrix
    rows: sp.csr_array  # (r, n + p) equality rows: sum of y minus x = 0
    blocks_kept: int
    blocks_dropped: int
    tolerance: float  # absolute: blocks whose every |entry| is at most this were dropped
    dropped_mass: float = 0.0  # most the dropped blocks can add to or take from the objective


def linearize(model: CanonicalModel, tolerance: float = 0.0) -> Linearization:
    """The RLT linearization of ``model.quadratic`` (symmetric, cross-group entries only)."""
    if model.quadratic is None:
        raise ValueError("linearize() needs a model with a quadratic term")
    n = model.num_items
    coo = sp.triu(model.quadratic, k=1).tocoo()
    group = model.item_group.astype(np.int64, copy=False)  # keys below multiply groups by groups and items
    g_row, g_col = group[coo.row], group[coo.col]
    big = np.abs(coo.data) > tolerance
    # blocks (g, h), g < h, with at least one entry above the tolerance
    lo, hi = np.minimum(g_row, g_col), np.maximum(g_row, g_col)
    all_blocks = np.unique(np.stack([lo, hi], axis=1), axis=0) if coo.nnz else np.zeros((0, 2), dtype=np.int64)
    kept_blocks = np.unique(np.stack([lo[big], hi[big]], axis=1), axis=0) if big.any() else np.zeros((0, 2), dtype=np.int64)
    # one pair per block is chosen, worth 2 Q[i, j]: a dropped block moves the objective by at most
    # twice its largest entry
    block_key = lo * model.num_groups + hi
    dropped = ~np.isin(block_key, kept_blocks[:, 0] * model.num_groups + kept_blocks[:, 1])
    block_max = {}
    for key, value in zip(block_key[dropped].tolist(), np.abs(coo.data[dropped]).tolist()):
        block_max[key] = max(block_max.get(key, 0.0), value)
    dropped_mass = 2.0 * float(sum(block_max.values()))
    firsts, seconds = [], []
    for g, h in kept_blocks.tolist():
        gi = np.arange(model.group_start[g], model.group_start[g + 1])
        hj = np.arange(model.group_start[h], model.group_start[h + 1])
        firsts.append(np.repeat(gi, hj.size))
        seconds.append(np.tile(hj, gi.size))
    first = np.concatenate(firsts) if firsts else np.zeros(0, dtype=np.int64)
    second = np.concatenate(seconds) if seconds else np.zeros(0, dtype=np.int64)
    dense_q = model.quadratic.tocsr()
    cost = 2.0 * np.asarray(dense_q[first, second]).ravel() if first.size else np.zeros(0)
    p = first.size
    # rows: (item i, other group h) -> sum_j y[i, j] - x_i = 0, and the same from j's side
    row_keys = np.concatenate([group[second] * n + first, group[first] * n + second])
    keys, row_index = np.unique(row_keys, return_inverse=True)
    y_cols = np.concatenate([np.arange(p), np.arange(p)]) + n
    x_of_row = keys % n
    r = keys.size
    data = np.concatenate([np.ones(2 * p), -np.ones(r)])
    rows_idx = np.concatenate([row_index, np.arange(r)])
    cols_idx = np.concatenate([y_cols, x_of_row])
    rows = sp.csr_array((data, (rows_idx, cols_idx)), shape=(r, n + p))
    return Linearization(first, second, cost, rows, int(kept_blocks.shape[0]), int(all_blocks.shape[0] - kept_blocks.shape[0]), tolerance, dropped_mass)
