"""Block-by-block passes over every item (``heuristics.fill``, ``lagrangian_bound``, the mckp core's
candidates and base items) give what the one-pass definitions give, whatever the block size:
checked against loops written from the definitions."""

from __future__ import annotations

import numpy as np
import pytest

from mpqopt import Problem
from mpqopt.algorithms import heuristics, lagrangian
from mpqopt.algorithms.heuristics import fill
from mpqopt.algorithms.lagrangian import lagrangian_bound
from mpqopt.reductions import canonicalize
from mpqopt.solvers import mckp


def _model(seed, L=60, K=5, masked=0.0, budgets=1):
    rng = np.random.default_rng(seed)
    sens = rng.integers(0, 20, (L, K)).astype(float)
    costs = {f"c{b}": rng.integers(1, 30, (L, K)).astype(float) for b in range(budgets)}
    allowed = rng.random((L, K)) >= masked
    allowed[:, 0] = True
    p = Problem([f"l{i}" for i in range(L)], [f"W{k + 1}" for k in range(K)], sens, costs=costs, allowed=allowed)
    limits = {name: float(t[:, 0].sum()) * 1.1 for name, t in costs.items()}  # option 0 (always allowed) and some room
    return canonicalize(p, limits, prune=False), rng


def _fill_by_definition(model, items, max_candidates=10_000):
    """Every single-group switch that gains and fits the slack left by ``items``, best gain first
    (ties: lower item first), applied while it still fits, one per group."""
    items = np.array(items)
    slack = model.rhs - model.weights[:, items].sum(axis=1)
    start = items.copy()
    moves = []
    for j in range(model.num_items):
        g = model.item_group[j]
        gain = model.value[start[g]] - model.value[j]
        extra = model.weights[:, j] - model.weights[:, start[g]]
        if gain > 0 and (extra <= slack).all():
            moves.append((-gain, j, extra))
    moves.sort(key=lambda m: (m[0], m[1]))
    moved = set()
    for _, j, extra in moves[:max_candidates]:
        g = model.item_group[j]
        if g in moved or (extra > slack).any():
            continue
        items[g] = j
        slack = slack - extra
        moved.add(g)
    return items


@pytest.mark.parametrize("block", [1, 7, 1 << 18])
@pytest.mark.parametrize("seed, masked, budgets", [(0, 0.0, 1), (1, 0.3, 1), (2, 0.3, 2)])
def test_fill_is_the_definition(monkeypatch, block, seed, masked, budgets):
    monkeypatch.setattr(heuristics, "FILL_BLOCK", block)
    model, rng = _model(seed, masked=masked, budgets=budgets)
    start = model.group_start[:-1].copy()  # option 0 everywhere
    filled = fill(model, start)
    assert not np.array_equal(filled, start)  # the budget leaves room: something moves
    assert np.array_equal(filled, _fill_by_definition(model, start))
    assert np.array_equal(fill(model, start, max_candidates=3), _fill_by_definition(model, start, max_candidates=3))


@pytest.mark.parametrize("block", [1, 7, 1 << 18])
def test_lagrangian_bound_is_the_definition(monkeypatch, block):
    monkeypatch.setattr(lagrangian, "_BLOCK", block)
    model, _ = _model(3, masked=0.3, budgets=2)
    lam = np.array([0.3, 1.7])
    bound, reduced = lagrangian_bound(model, lam)
    cost = [model.value[j] + lam @ model.weights[:, j] for j in range(model.num_items)]
    best = [min(cost[model.group_start[f]:model.group_start[f + 1]]) for f in range(model.num_groups)]
    assert np.allclose(reduced, [cost[j] - best[model.item_group[j]] for j in range(model.num_items)], rtol=0, atol=1e-9)
    assert (reduced >= 0).all() and bound == pytest.approx(sum(best) - lam @ model.rhs, rel=1e-12)


@pytest.mark.parametrize("masked", [0.0, 0.4])
def test_core_base_and_candidates_are_the_definition(monkeypatch, masked):
    monkeypatch.setattr(mckp, "_BLOCK", 7)
    model, rng = _model(4, masked=masked)
    _, reduced = lagrangian_bound(model, np.array([0.5]))
    base = mckp._first_zero(model, reduced)
    want = [next(j for j in range(model.group_start[f], model.group_start[f + 1]) if reduced[j] == 0) for f in range(model.num_groups)]
    assert base.tolist() == want
    limit = float(np.median(reduced))
    got = mckp._blockwise_nonzero(reduced, lambda r: r <= limit)
    assert got.tolist() == [j for j in range(model.num_items) if reduced[j] <= limit]
    assert mckp._blockwise_nonzero(np.zeros(0), lambda r: r <= 0).size == 0
