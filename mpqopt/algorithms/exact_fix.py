"""Meet budgets met only at (near) equality exactly: a meet-in-the-middle search over a few groups.

Greedy repair (:func:`mpqopt.algorithms.heuristics.repair`) moves one group at a time, so it gets
stuck a few units off when the budgets leave a window narrower than any single move: ``c1 <= S``
with ``c2 = T - c1`` and ``c2 <= L*T - S`` forces ``sum c1 == S`` exactly, a subset-sum condition
on integers near 2**40 that no single swap hits (and that a MILP solver accepts within its
feasibility tolerance of ~1e-7 of the row, i.e. tens of thousands of units off). Changing ``k``
groups at once reaches ``options**k`` totals, dense enough at ``k ~ 12`` to hit a given integer;
splitting the groups into two halves, sorting one half's totals and looking up each of the other's
makes that ``options**(k/2)`` work.
"""

from __future__ import annotations

import time

import numpy as np

from ..reductions import CanonicalModel

HALF_COMBINATIONS = 1 << 21  # assignments of one half's groups enumerated per round (~1 s at 2**21)
ROUNDS = 8  # random sets of groups tried before giving up
NEAREST = 2  # per assignment of one half: the other half's closest totals on the key row checked


def _half(model: CanonicalModel, items: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every assignment of ``groups`` (the others as in ``items``): budget deltas (m, N) and
    objective deltas (N,); assignment ``i`` is :func:`_decode`'s."""
    deltas = np.zeros((model.num_budgets, 1))
    values = np.zeros(1)
    for g in groups.tolist():
        options = np.arange(model.group_start[g], model.group_start[g + 1])
        dw = model.weights[:, options] - model.weights[:, [items[g]]]
        deltas = (deltas[:, :, None] + dw[:, None, :]).reshape(model.num_budgets, -1)
        values = (values[:, None] + (model.value[options] - model.value[items[g]])[None, :]).reshape(-1)
    return deltas, values


def _decode(model: CanonicalModel, groups: np.ndarray, index: int) -> np.ndarray:
    """The items of assignment ``index`` of :func:`_half` (mixed radix, the last group fastest)."""
    chosen = np.empty(groups.size, dtype=np.int64)
    for k in range(groups.size - 1, -1, -1):
        g = int(groups[k])
        size = int(model.group_start[g + 1] - model.group_start[g])
        index, option = divmod(index, size)
        chosen[k] = model.group_start[g] + option
    return chosen


def _pick_groups(model: CanonicalModel, key: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random sets of groups with at most HALF_COMBINATIONS assignments each (and at
    most half the groups with a choice each), fewer where the key row's weights are small: the two
    halves' ``N**2`` totals need only cover their spread (~ a few times the spread of a group's
    weights times the groups) densely for an exact hit."""
    sizes = np.diff(model.group_start)
    order = rng.permutation(np.nonzero(sizes > 1)[0])
    order = order[: 2 * (order.size // 2)]
    spread = np.maximum.reduceat(model.weights[key], model.group_start[:-1]) - np.minimum.reduceat(model.weights[key], model.group_start[:-1])
    wanted = np.clip(np.sqrt(64.0 * 16 * max(float(np.mean(spread)), 1.0)), 1 << 10, HALF_COMBINATIONS)
    halves = []
    for part in (order[: order.size // 2], order[order.size // 2:]):
        logs = np.cumsum(np.log2(sizes[part]))
        fits = logs <= np.log2(HALF_COMBINATIONS)
        fits &= np.concatenate([[True], logs[:-1] < np.log2(wanted)])  # stop once past what is wanted
        halves.append(part[fits])
    return halves[0], halves[1]


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() > deadline


def close_exactly(model: CanonicalModel, items: np.ndarray, deadline: float | None = None, seed: int = 0) -> np.ndarray | None:
    """A feasible assignment that differs from ``items`` (a few units over some budget) in a few
    groups (the cheapest in the first set of groups that holds one); None if ROUNDS random sets of groups hold none (or at
    ``deadline``, a ``time.perf_counter()`` value).

    >>> import mpqopt
    >>> from mpqopt.reductions import canonicalize
    >>> c = np.array([[3.0, 5.0, 8.0]] * 4)
    >>> p = mpqopt.Problem([f"l{i}" for i in range(4)], ["W2", "W3", "W4"], np.zeros((4, 3)), costs={"u": c, "v": 20 - c})
    >>> m = canonicalize(p, {"u": 23.0, "v": 57.0}, prune=False)  # only sum(u) == 23 meets both
    >>> fixed = close_exactly(m, np.array([2, 5, 8, 11]))  # 32: nine over
    >>> float(m.weights[0, fixed].sum())
    23.0
    """
    items = np.array(items, dtype=np.int64)
    rng = np.random.default_rng(seed)
    need = model.rhs + model.budget_slack - model.weights[:, items].sum(axis=1)  # allowed change per row
    key = int(np.argmin(need))  # the most violated row orders the lookups
    for _ in range(ROUNDS):
        if _past(deadline):
            break
        left, right = _pick_groups(model, key, rng)
        if left.size == 0 or right.size == 0:
            break
        # both halves sorted by their key-row change (left descending): the lookups and every
        # gather below then run through memory in order
        da, va = _half(model, items, left)
        oa = np.argsort(-da[key], kind="stable")
        da, va = da[:, oa], va[oa]
        if _past(deadline):  # a half of 2**21 assignments and its sort take seconds on a loaded machine
            break
        db, vb = _half(model, items, right)
        ob = np.argsort(db[key], kind="stable")
        db, vb = db[:, ob], vb[ob]
        # for each left assignment, the right ones with the largest key-row change that still fits
        top = np.searchsorted(db[key], need[key] - da[key], side="right")
        found_a, found_b = [], []
        for r in range(1, NEAREST + 1):
            a = np.nonzero(top >= r)[0]
            b = top[a] - r
            fits = ((da[:, a] + db[:, b]) <= need[:, None]).all(axis=0)
            found_a.append(a[fits])
            found_b.append(b[fits])
        a, b = np.concatenate(found_a), np.concatenate(found_b)
        if a.size:
            j = int(np.argmin(va[a] + vb[b]))  # the cheapest of the fixes found
            fixed = items.copy()
            fixed[left] = _decode(model, left, int(oa[a[j]]))
            fixed[right] = _decode(model, right, int(ob[b[j]]))
            return fixed
    return None
