"""Reduce a ``Problem`` plus budgets to the canonical multiple-choice form every backend solves.

Canonical form (``n`` items in ``F`` groups, ``m`` budgets)::

    minimise   value @ x  (+ x^T quadratic x)
    subject to sum(x[group f]) == 1      for every free group f
               weights @ x <= rhs        (m rows)
               x binary

Reductions applied, in order: tied layers merged into one decision (tables summed); masks applied;
fixed decisions removed (their cost comes off the budgets, their sensitivity goes to ``offset``);
options dominated on sensitivity and every budgeted cost dropped (separable problems only); groups
left with a single option forced. ``expand`` maps an item choice back to one option per layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np
import scipy.sparse as sp

from ..problem import Problem
from ..verify import BUDGET_RTOL, exact_integer, limit_roundoff


@dataclass
class CanonicalModel:
    """The reduced problem handed to a backend; see the module docstring for the form."""

    problem: Problem
    budget_names: tuple[str, ...]
    budgets: np.ndarray  # (m,) the user's absolute limits
    rhs: np.ndarray  # (m,) limits minus the cost of forced decisions
    free_groups: np.ndarray  # (F,) problem group index of each free group
    group_start: np.ndarray  # (F+1,) items of free group f are group_start[f]:group_start[f+1]
    # (n,) free group / option index of each item: int32 while the items fit (canonicalize), int64
    # otherwise; arithmetic that can pass 2**31 (group * items) converts first
    item_group: np.ndarray
    item_option: np.ndarray
    value: np.ndarray  # (n,)
    weights: np.ndarray  # (m, n)
    offset: float  # objective contributed by forced decisions
    forced_choice: np.ndarray  # (G,) option of each forced group, -1 where free
    quadratic: sp.csr_array | None = None  # (n, n) symmetric, cross-group terms only
    options_pruned: int = 0
    notes: list[str] = field(default_factory=list)
    # (m,) budgets whose table is integer and summed exactly (verify.exact_integer): checked to the
    # unit (budget_slack); None: none
    exact_rows: np.ndarray | None = None
    integral_objective: bool = False  # integer sensitivities, no pairwise term, sums exact: objectives are integers

    @property
    def budget_slack(self) -> np.ndarray:
        """(m,) how far a total may exceed ``rhs`` and still meet its budget: the limit's own round-off
        (under a quarter unit, ``verify.limit_roundoff``) on exact integer rows, ``BUDGET_RTOL`` of the budget (round-off of sums in another order) on the others."""
        slack = BUDGET_RTOL * np.abs(self.budgets)
        return slack if self.exact_rows is None else np.where(self.exact_rows, limit_roundoff(self.budgets), slack)

    @property
    def num_items(self) -> int:
        return int(self.value.size)

    @property
    def num_groups(self) -> int:
        return int(self.free_groups.size)

    @property
    def num_budgets(self) -> int:
        return len(self.budget_names)

    def items_objective(self, items: np.ndarray) -> float:
        """Canonical objective (without ``offset``) of one chosen item per free group."""
        total = float(self.value[items].sum())
        if self.quadratic is not None and items.size:
            total += float(self.quadratic[items][:, items].sum())
        return total

    def expand(self, items: np.ndarray) -> np.ndarray:
        """Option index per layer for one chosen item per free group."""
        items = np.asarray(items, dtype=np.int64)
        choice = self.forced_choice.copy()
        choice[self.free_groups] = self.item_option[items]
        return choice[self.problem.layer_group]

    def items_from_layers(self, x: np.ndarray) -> np.ndarray | None:
        """The item choice that corresponds to a per-layer assignment, or None if it is not representable."""
        group_choice = np.asarray(x)[self.problem.group_first_layer]
        items = np.empty(self.num_groups, dtype=np.int64)
        for f, g in enumerate(self.free_groups.tolist()):
            lo, hi = self.group_start[f], self.group_start[f + 1]
            hit = np.nonzero(self.item_option[lo:hi] == group_choice[g])[0]
            if hit.size == 0:
                return None
            items[f] = lo + hit[0]
        return items


def canonicalize(problem: Problem, budgets: Mapping[str, float], prune: bool = True) -> CanonicalModel:
    """Build the canonical model for ``problem`` under absolute ``budgets`` (keyed by budget key).

    A scoped budget (``size_bits[stage0:blk.*]``) is a row of its cost table with zeros outside the
    scope; a group of tied layers that straddles the scope weighs what its members inside it cost.
    """
    names = tuple(budgets)
    limits = np.array([budgets[n] for n in names], dtype=np.float64)
    value_g = problem.group_table(problem.sensitivity)  # (G, K)
    tables = [problem.group_table(problem.budget_table(n)) for n in names]
    # one budget: its table itself (read-only, like every table of the problem), no copy
    costs_g = tables[0][None] if len(tables) == 1 else np.stack(tables) if names else np.zeros((0,) + value_g.shape)
    G, K = value_g.shape
    notes: list[str] = []

    quadratic_g = None
    if problem.pairwise is not None:
        value_g, quadratic_g, extra = _group_pairwise(problem, value_g)
        notes.extend(extra)

    candidates = problem.group_candidates

    pruned = 0
    if prune and quadratic_g is None:
        before = int(candidates.sum())
        candidates &= ~_dominated(value_g, costs_g, candidates)
        pruned = before - int(candidates.sum())

    counts = candidates.sum(axis=1)
    forced = counts == 1
    forced_choice = np.where(forced, np.argmax(candidates, axis=1), -1)
    free_groups = np.nonzero(~forced)[0]
    # every option of every group a choice (K > 1): the items are the tables' entries in row-major
    # order, and the model's arrays are views of them (1,000,000 x 8: ~1 GB of copies saved)
    full = K > 1 and bool(candidates.all())
    # item indices in int32 while they fit: half the memory a solve allocates and first touches for
    # them (1,000,000 x 8: 64 MB instead of 128 MB)
    index = np.int32 if G * K < 2**31 else np.int64
    if full:
        g_idx, o_idx = np.repeat(np.arange(G, dtype=index), K), np.tile(np.arange(K, dtype=index), G)
    else:
        g_idx, o_idx = (i.astype(index) for i in np.nonzero(candidates[free_groups]))  # row-major: items sorted by group
    group_start = np.zeros(free_groups.size + 1, dtype=np.int64)
    np.cumsum(counts[free_groups], out=group_start[1:])

    forced_rows = np.nonzero(forced)[0]
    forced_opts = forced_choice[forced_rows]
    offset = float(value_g[forced_rows, forced_opts].sum())
    exact_rows = np.array([exact_integer(problem.budget_table(n)) for n in names], dtype=bool)
    # on exact rows the forced total is an exact integer and limit - total keeps the limit's
    # fraction exactly (as long as the limit is not below it: then the budget cannot be met anyway)
    rhs = limits - costs_g[:, forced_rows, forced_opts].sum(axis=1) if names else limits

    item_groups_abs = g_idx if full else free_groups[g_idx]
    quadratic = None
    if quadratic_g is not None:
        offset, value_items, quadratic = _restrict_quadratic(quadratic_g, K, item_groups_abs, o_idx, forced_rows, forced_opts, value_g, offset)
    elif full:
        value_items = value_g.reshape(-1)
    else:
        value_items = value_g[item_groups_abs, o_idx]
    if full:
        weights = costs_g.reshape(len(names), G * K)
    else:
        weights = costs_g[:, item_groups_abs, o_idx]

    return CanonicalModel(
        problem=problem,
        budget_names=names,
        budgets=limits,
        rhs=rhs,
        free_groups=free_groups,
        group_start=group_start,
        item_group=g_idx,
        item_option=o_idx,
        value=np.ascontiguousarray(value_items, dtype=np.float64),
        weights=np.ascontiguousarray(weights, dtype=np.float64),
        offset=offset,
        forced_choice=forced_choice,
        quadratic=quadratic,
        options_pruned=pruned,
        notes=notes,
        exact_rows=exact_rows,
        integral_objective=problem.pairwise is None and exact_integer(problem.sensitivity),
    )


def _dominated(value: np.ndarray, costs: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """``[G, K]`` mask of candidate options that another candidate of the same group dominates.

    p dominates o when it is no worse in sensitivity and in every budgeted cost, and strictly better in
    one of them; of identical options the lowest index survives.

    Groups whose options all are candidates, each dearer in every cost and strictly better in
    sensitivity than the one before (more bits: bigger, slower, more accurate), have none: only the
    other groups are compared pair by pair (1,000,000 x 8 x 8 comparisons took seconds).

    >>> v = np.array([[3.0, 2.0, 1.0], [3.0, 3.0, 1.0]]); c = np.array([[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]])
    >>> _dominated(v, c, np.ones((2, 3), dtype=bool)).tolist()
    [[False, False, False], [False, True, False]]
    """
    G, K = value.shape
    regular = candidates.all(axis=1)
    for j in range(1, K):
        regular &= value[:, j] < value[:, j - 1]
        for table in costs:
            regular &= table[:, j] > table[:, j - 1]
    dominated = np.zeros((G, K), dtype=bool)
    rest = np.nonzero(~regular)[0]
    if rest.size:
        dominated[rest] = _dominated_pairs(value[rest], costs[:, rest], candidates[rest])
    return dominated


_PAIR_ROWS = 1 << 15  # groups per block of the pairwise comparison: its columns stay in cache
# up to this many (group, option, option) triples the comparison is one [G, K, K] broadcast: few groups
# of many options (LIMPQ's 52 x 25) spent 8 ms in the K^2 loop's numpy calls, 0.3 ms this way
_PAIR_BROADCAST = 1 << 18


def _dominated_pairs(value: np.ndarray, costs: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """:func:`_dominated` by comparing every ordered pair of options, column against column, block
    by block of groups (no ``[G, K, K]`` arrays: 1,000,000 x 8 took ~10 s that way), or in one
    broadcast when there are few groups."""
    G, K = value.shape
    if G * K * K <= _PAIR_BROADCAST:
        return _dominated_broadcast(value, costs, candidates)
    dominated = np.zeros((G, K), dtype=bool)
    for lo in range(0, G, _PAIR_ROWS):
        rows = slice(lo, lo + _PAIR_ROWS)
        tables = [np.ascontiguousarray(value[rows].T)] + [np.ascontiguousarray(t[rows].T) for t in costs]  # (K, rows) each
        cand = np.ascontiguousarray(candidates[rows].T)
        out = dominated[rows]
        for o in range(K):
            for p in range(K):
                if p == o:
                    continue
                # p is at least as good as o everywhere, and strictly better somewhere (or equal with a lower index)
                weak = cand[p] & cand[o]
                strict = np.zeros_like(weak) if p > o else np.ones_like(weak)
                for t in tables:
                    weak &= t[p] <= t[o]
                    strict |= t[p] < t[o]
                out[:, o] |= weak & strict
    return dominated


def _dominated_broadcast(value: np.ndarray, costs: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """:func:`_dominated_pairs` as ``[G, o, p]`` arrays: p dominates o when both are candidates, p is
    no worse in every table and strictly better in one, or identical with a lower index."""
    K = value.shape[1]
    weak = candidates[:, :, None] & candidates[:, None, :]
    strict = np.broadcast_to(np.arange(K)[None, :] < np.arange(K)[:, None], weak.shape).copy()  # [o, p]: p < o
    for t in (value, *costs):
        weak &= t[:, None, :] <= t[:, :, None]
        strict |= t[:, None, :] < t[:, :, None]
    weak &= strict  # never on the diagonal: an option is not strictly better than itself
    return weak.any(axis=2)


def _group_pairwise(problem: Problem, value_g: np.ndarray) -> tuple[np.ndarray, sp.csr_array, list[str]]:
    """Pairwise matrix at group level: same-group diagonal folded into the linear term, the rest cross-group."""
    K = problem.num_options
    G = value_g.shape[0]
    if isinstance(problem.pairwise, np.ndarray) and G == problem.num_layers and np.array_equal(problem.layer_group, np.arange(G)):
        return _dense_pairwise(problem, value_g)
    omega = sp.csr_array(problem.pairwise)
    coo = omega.tocoo()
    row_layer, col_layer = coo.row // K, coo.col // K
    # two different options of one layer are never chosen together: those entries never matter
    keep = (row_layer != col_layer) | (coo.row == coo.col)
    group = problem.layer_group
    rows = group[row_layer[keep]] * K + coo.row[keep] % K
    cols = group[col_layer[keep]] * K + coo.col[keep] % K
    omega_g = sp.csr_array((coo.data[keep], (rows, cols)), shape=(G * K, G * K))
    omega_g.sum_duplicates()
    coo_g = omega_g.tocoo()
    same_group = coo_g.row // K == coo_g.col // K
    diagonal = same_group & (coo_g.row == coo_g.col)
    linear = np.zeros(G * K)
    np.add.at(linear, coo_g.row[diagonal], coo_g.data[diagonal])
    cross = ~same_group
    quad = sp.csr_array((coo_g.data[cross], (coo_g.row[cross], coo_g.col[cross])), shape=(G * K, G * K))
    quad = ((quad + quad.T) * 0.5).tocsr()
    notes = []
    dropped = int((~keep).sum())
    if dropped:
        notes.append(f"{dropped} pairwise entries between two options of the same layer ignored (never chosen together)")
    return value_g + linear.reshape(G, K), quad, notes


def _dense_pairwise(problem: Problem, value_g: np.ndarray) -> tuple[np.ndarray, sp.csr_array, list[str]]:
    """``_group_pairwise`` for a dense matrix and no tied layers (groups are layers), in dense numpy:
    the same numbers, 5-10x faster than through three sparse conversions (1,000 x 4: 8 s -> ~1 s),
    which matters because canonicalization counts against a time limit."""
    L, K = value_g.shape
    omega = np.array(problem.pairwise, dtype=np.float64)  # a copy: same-layer blocks are cleared below
    linear = np.diagonal(omega).copy()  # same layer, same option: a linear term
    blocks = omega.reshape(L, K, L, K)
    layer = np.arange(L)
    same = blocks[layer, :, layer, :]  # (L, K, K): two options of one layer, never chosen together
    dropped = int(np.count_nonzero(same)) - int(np.count_nonzero(np.diagonal(same, axis1=1, axis2=2)))
    blocks[layer, :, layer, :] = 0.0
    sym = omega + omega.T  # (Q + Q^T) / 2 as in the sparse path (in place, numpy copies the transpose: slower)
    sym *= 0.5
    # CSR by hand: sp.csr_array(dense) took 15 s on 4,000 x 4,000 here, this ~0.4 s
    nonzero = sym != 0.0
    indptr = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))])
    columns = np.broadcast_to(np.arange(sym.shape[1]), sym.shape)[nonzero]  # row-major, as CSR wants
    quad = sp.csr_array((sym[nonzero], columns, indptr), shape=sym.shape)
    notes = [f"{dropped} pairwise entries between two options of the same layer ignored (never chosen together)"] if dropped else []
    return value_g + linear.reshape(L, K), quad, notes


def _restrict_quadratic(quad_g, K, item_groups, item_opts, forced_rows, forced_opts, value_g, offset):
    """Fold terms with forced decisions into the linear part and offset; keep free-free terms."""
    item_flat = item_groups * K + item_opts
    forced_flat = forced_rows * K + forced_opts
    value_items = value_g[item_groups, item_opts].copy()
    if forced_flat.size:
        # free-forced terms appear twice in a symmetric matrix: x_i * Q[i,f] + x_f * Q[f,i]
        value_items += 2.0 * np.asarray(quad_g[item_flat][:, forced_flat].sum(axis=1)).ravel()
        offset += float(quad_g[forced_flat][:, forced_flat].sum())
    if np.array_equal(item_flat, np.arange(quad_g.shape[0])):
        quadratic = sp.csr_array(quad_g)  # nothing pruned: indexing rows and columns took 5 s on 1,000 x 4
    else:
        quadratic = sp.csr_array(quad_g[item_flat][:, item_flat])
    return offset, value_items, quadratic


def restrict(model: CanonicalModel, keep: np.ndarray) -> tuple[CanonicalModel, np.ndarray]:
    """The same model with only the items in ``keep`` (every group must keep one), and the map from
    the new item indices to the old ones."""
    kept = np.nonzero(keep)[0]
    return select_items(model, kept, model.item_group[kept], model.num_groups, model.free_groups), kept


def select_items(model: CanonicalModel, items: np.ndarray, new_group: np.ndarray, num_groups: int, free_groups: np.ndarray) -> CanonicalModel:
    """A model over the listed ``items`` (sorted by ``new_group``, every new group non-empty).

    With fewer groups than ``model`` it describes part of the problem only (``rhs`` is unchanged):
    use it for bounds, not as a model to solve.
    """
    counts = np.bincount(new_group, minlength=num_groups)
    if (counts == 0).any():
        raise ValueError("select_items() would leave a group empty")
    group_start = np.zeros(num_groups + 1, dtype=np.int64)
    np.cumsum(counts, out=group_start[1:])
    quadratic = None if model.quadratic is None else sp.csr_array(model.quadratic[items][:, items])
    return replace(
        model,
        free_groups=free_groups,
        group_start=group_start,
        item_group=np.asarray(new_group, dtype=np.int64),
        item_option=model.item_option[items],
        value=model.value[items],
        weights=model.weights[:, items],
        quadratic=quadratic,
    )
