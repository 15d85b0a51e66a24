"""Exchange local search on a few candidate items: the best move of up to three groups at once.

1-opt (:func:`mpqopt.algorithms.heuristics.improve`) stalls when the budgets are nearly spent:
a better assignment then changes several groups together, one giving back budget another takes.
Among a small candidate set (items whose reduced cost is near zero) every single, pair and triple
move is scored at once with numpy broadcasting (``k**3`` cells, so ``k`` is capped).

>>> import numpy as np, mpqopt
>>> from mpqopt.reductions import canonicalize
>>> p = mpqopt.Problem(["a", "b"], [2, 4, 8], [[1.0, 0.3, 0.0], [2.0, 0.5, 0.0]],
...                    costs={"bits": [[2, 4, 8], [2, 4, 8]]})
>>> m = canonicalize(p, {"bits": 12.0})
>>> start = np.array([m.group_start[0] + 2, m.group_start[1] + 0])  # a: W8, b: W2 -> 2.0
>>> m.items_objective(exchange(m, start, np.arange(m.num_items)))  # a: W4, b: W8
0.3
"""

from __future__ import annotations

import numpy as np

from ..reductions import CanonicalModel
from ..verify import BUDGET_RTOL
from .heuristics import totals

MAX_TRIPLE_CANDIDATES = 80  # 80**3 * budgets booleans per round stays a few tens of MB


def exchange(model: CanonicalModel, items: np.ndarray, candidates: np.ndarray, max_rounds: int = 100) -> np.ndarray:
    """Apply the best improving move of one, two or three groups to ``candidates`` items (triples only
    while at most ``MAX_TRIPLE_CANDIDATES`` are open) until none improves; budgets always hold."""
    items = np.array(items, dtype=np.int64)
    candidates = np.asarray(candidates, dtype=np.int64)
    limit = model.rhs + model.budget_slack
    tol = BUDGET_RTOL * (1.0 + float(np.abs(model.value).max(initial=0.0)))
    for _ in range(max_rounds):
        open_ = candidates[candidates != items[model.item_group[candidates]]]
        if open_.size == 0:
            break
        group = model.item_group[open_]
        current = items[group]
        dw = model.weights[:, open_] - model.weights[:, current]  # (m, k)
        gain = model.value[current] - model.value[open_]
        slack = limit - totals(model, items)
        best, move = tol, None
        one = np.where((dw <= slack[:, None]).all(axis=0), gain, -np.inf)
        i = int(np.argmax(one))
        if one[i] > best:
            best, move = one[i], (i,)
        distinct = group[:, None] != group[None, :]
        dw2 = dw[:, :, None] + dw[:, None, :]
        two = np.where(distinct & (dw2 <= slack[:, None, None]).all(axis=0), gain[:, None] + gain[None, :], -np.inf)
        ij = np.unravel_index(int(np.argmax(two)), two.shape)
        if two[ij] > best:
            best, move = two[ij], ij
        if open_.size <= MAX_TRIPLE_CANDIDATES:
            fits = (dw2[:, :, :, None] + dw[:, None, None, :] <= slack[:, None, None, None]).all(axis=0)
            fits &= distinct[:, :, None] & distinct[:, None, :] & distinct[None, :, :]
            three = np.where(fits, gain[:, None, None] + gain[None, :, None] + gain[None, None, :], -np.inf)
            ijl = np.unravel_index(int(np.argmax(three)), three.shape)
            if three[ijl] > best:
                best, move = three[ijl], ijl
        if move is None:
            break
        for q in move:
            items[group[q]] = open_[q]
    return items
