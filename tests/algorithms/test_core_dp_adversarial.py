"""Adversarial properties of the one-budget core DP (``mpqopt.algorithms.core_dp``) against
exhaustive search, in exact integers: block steps cut into chunks of any size, a target lowered
mid-search (``improve``) to any value, below, at or above the optimum, at any point of the search,
any base (over the budget or not, as the Lagrangian choice and the neighbourhood search's incumbent
can be), any floor that is a valid bound, and searches cut short by their limits.

What must hold: a complete search returns the best assignment within ``min(target, lowered)``
(``lowered`` only if ``improve`` was called) and None only if there is none; a search cut short
returns None or a budget-feasible assignment within that target.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fuzz import examples
from mpqopt import Problem
from mpqopt.algorithms import core_dp
from mpqopt.algorithms.hull import greedy
from mpqopt.reductions import canonicalize


@pytest.fixture(autouse=True, params=["lp_bound", "tiny_path"])
def completion_bound(request, monkeypatch):
    """Every case twice: with the LP completion bound on every core (these cores are small enough
    for the tiny path, which skips it), and as the engine runs them (capacity only)."""
    if request.param == "lp_bound":
        monkeypatch.setattr(core_dp, "TINY_CORE_ITEMS", 0)


def assert_complete_answer(model, got, expected, where: str, valid) -> None:
    """A complete core search returns exactly the expected optimum (``valid`` assignment, exact
    objective), or None where ``expected`` is None."""
    assert got.complete, where
    if expected is None:
        assert got.items is None, where
    else:
        assert got.items is not None, where
        assert valid(got.items), where
        assert model.items_objective(got.items) == expected, where


def _instance(rng: np.random.Generator):
    """A small integer one-budget model (ties in weight and value common), a base, alternatives."""
    L, K = int(rng.integers(2, 7)), int(rng.integers(2, 5))
    span = int(rng.choice([3, 10, 1000]))
    cost = rng.integers(1, span + 1, (L, K)).astype(float)
    if rng.random() < 0.5:  # strongly correlated: many equal efficiencies, many equal fronts
        sens = -(cost + 3 * rng.integers(0, 2, (L, K)))
    else:
        sens = rng.integers(-span, span + 1, (L, K)).astype(float)
    lo, hi = cost.min(axis=1).sum(), cost.max(axis=1).sum()
    budget = float(rng.integers(int(lo) - 1, int(hi) + 1))
    problem = Problem([f"l{i}" for i in range(L)], [f"W{k + 1}" for k in range(K)], sens, costs={"size_bits": cost})
    model = canonicalize(problem, {"size_bits": budget}, prune=False)
    base = model.group_start[:-1] + rng.integers(0, K, L)
    in_core = rng.random(L) < 0.8
    alternatives = np.array([j for j in range(model.num_items) if in_core[model.item_group[j]] and j != base[model.item_group[j]]], dtype=np.int64)
    return model, base, alternatives


def _within(model, base, alternatives, limit: float) -> float | None:
    """Least objective over assignments (base, or an alternative, per group) within the budget and
    at most ``limit``: exhaustive search, None if there is none."""
    options = [[int(base[g])] + [int(a) for a in alternatives if model.item_group[a] == g] for g in range(model.num_groups)]
    best = None
    for choice in itertools.product(*options):
        items = np.array(choice)
        if model.weights[0, items].sum() > model.rhs[0]:
            continue
        value = float(model.value[items].sum())
        if value <= limit and (best is None or value < best):
            best = value
    return best


def _valid(model, base, alternatives, items) -> bool:
    allowed = set(base.tolist()) | set(alternatives.tolist())
    return bool(np.all(model.item_group[items] == np.arange(model.num_groups)) and set(items.tolist()) <= allowed
                and model.weights[0, items].sum() <= model.rhs[0])


@pytest.mark.parametrize("seed", range(examples(300)))
def test_chunks_lowered_targets_and_limits_against_enumeration(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    model, base, alternatives = _instance(rng)
    monkeypatch.setattr(core_dp, "CHUNK_STATES", int(rng.choice([1, 2, 3, 5, 17, 1 << 21])))
    monkeypatch.setattr(core_dp, "BLOCK_COMBINATIONS", int(rng.choice([1, 4, 32])))
    everything = _within(model, base, alternatives, np.inf)
    if everything is None:
        target = float(rng.integers(-20, 20))
    else:  # targets around the optimum and the incumbents a caller has
        target = everything + float(rng.choice([-1, 0, 0, 1, 3, 50]))
    lowered = None if rng.random() < 0.2 else target - float(rng.choice([-2, 0, 1, 2, 5]))
    if everything is not None and rng.random() < 0.4:
        lowered = everything + float(rng.choice([-1, 0]))  # at the optimum, or just below it
    called = []

    def improve():
        called.append(True)
        return lowered

    after = int(rng.choice([0, 1, 5, 50, 10**9]))
    floor = None
    if everything is not None and rng.random() < 0.3:
        floor = everything - float(rng.choice([0, 1, 10]))  # a valid lower bound
    lam = greedy(model).lam if greedy(model) is not None else 0.0
    got = core_dp.solve_core(model, base, alternatives, lam, target, floor=floor, improve=improve, improve_after=after)
    limit = min(target, lowered) if called and lowered is not None else target
    expected = _within(model, base, alternatives, limit)
    where = f"seed {seed}: target {target}, lowered {lowered} (called {bool(called)}), floor {floor}, expected {expected}"
    assert_complete_answer(model, got, expected, where, lambda items: _valid(model, base, alternatives, items))
    # cut short by work or states: nothing proven, but whatever it returns is within the target
    for work_limit, state_limit in ((int(rng.integers(1, 60)), 3_000_000), (10**9, int(rng.integers(1, 6)))):
        called.clear()
        cut = core_dp.solve_core(model, base, alternatives, lam, target, state_limit=state_limit, work_limit=work_limit,
                                 improve=improve, improve_after=after)
        limit = min(target, lowered) if called and lowered is not None else target
        if cut.items is not None:
            assert _valid(model, base, alternatives, cut.items), where
            assert model.items_objective(cut.items) <= limit, where
        if cut.complete:
            assert (cut.items is None) == (_within(model, base, alternatives, limit) is None), where


@pytest.mark.parametrize("seed", range(examples(60)))
def test_kept_states_limit_against_enumeration(seed, monkeypatch):
    """A search stopped by the states it keeps for the way back proves nothing, and what it returns
    is a budget-feasible assignment within the target; with room to spare it is exact."""
    rng = np.random.default_rng(10_000 + seed)
    model, base, alternatives = _instance(rng)
    everything = _within(model, base, alternatives, np.inf)
    target = float(rng.integers(-20, 20)) if everything is None else everything + float(rng.choice([0, 1, 3, 50]))
    lam = greedy(model).lam if greedy(model) is not None else 0.0
    monkeypatch.setattr(core_dp, "KEPT_LIMIT", int(rng.integers(0, 8)))
    cut = core_dp.solve_core(model, base, alternatives, lam, target)
    if cut.items is not None:
        assert _valid(model, base, alternatives, cut.items)
        assert model.items_objective(cut.items) <= target
    if cut.complete:
        expected = _within(model, base, alternatives, target)
        assert (cut.items is None) == (expected is None)
        assert cut.items is None or model.items_objective(cut.items) == expected
    monkeypatch.setattr(core_dp, "KEPT_LIMIT", 10**9)
    full = core_dp.solve_core(model, base, alternatives, lam, target)
    expected = _within(model, base, alternatives, target)
    assert full.complete and (full.items is None) == (expected is None)
    assert full.items is None or model.items_objective(full.items) == expected
