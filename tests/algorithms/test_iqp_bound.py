"""The split bound's budget products (per-item multipliers ``lam``): a lower bound for ANY split and
ANY signed multipliers, at the root and at nodes, for the node and for each child; checked against
enumeration of every completion (no code shared with the bound)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import mpqopt
from mpqopt.algorithms.iqp_bound import PairBound
from mpqopt.reductions import canonicalize
from mpqopt.synthetic import iqp_problem


def _random_sign(layers: int, options: int, seed: int, budgets: int) -> mpqopt.Problem:
    rng = np.random.default_rng(seed)
    costs = {f"c{i}": rng.integers(1, 9, (layers, options)).astype(float) for i in range(budgets)}
    problem = mpqopt.Problem([f"l{i}" for i in range(layers)], [f"W{b}" for b in range(2, 2 + options)], rng.random((layers, options)), costs=costs,
                             pairwise=rng.normal(size=(layers * options, layers * options)))
    fraction = rng.uniform(0.2, 0.8)
    return problem.replace(budgets={name: lo + fraction * (hi - lo) for name in costs for lo, hi in [problem.cost_range(name)]})


def _best_with(model, choice, allowed):
    """Per item, the least objective of a feasible completion of the node that takes it (inf: none)."""
    groups = [[g_item] if choice[g] >= 0 else [a for a in range(model.group_start[g], model.group_start[g + 1]) if allowed[a]]
              for g, g_item in enumerate(choice)]
    best = np.full(model.num_items, np.inf)
    limit = model.rhs + model.budget_slack
    for items in itertools.product(*groups):
        items = np.array(items)
        if (model.weights[:, items].sum(axis=1) <= limit).all():
            best[items] = np.minimum(best[items], model.items_objective(items))
    return best


def _problems():
    for seed in range(4):
        yield _random_sign(5, 3, seed, budgets=1 + seed % 3)
        yield iqp_problem(5, 3, seed=seed, noise=0.5, budget_fraction=[0.2, 0.5, 0.8, 0.35][seed])


@pytest.mark.parametrize("case", range(8))
def test_any_split_and_any_signed_budget_multipliers_give_lower_bounds(case):
    problem = list(_problems())[case]
    model = canonicalize(problem, problem.budgets)
    rng = np.random.default_rng(case)
    pb = PairBound(model)
    F, n = model.num_groups, model.num_items
    for trial in range(8):
        choice = np.full(F, -1, dtype=np.int64)
        allowed = np.ones(n, dtype=bool)
        if trial % 2:  # a node: one group fixed, some items excluded (one kept per group)
            g = rng.integers(F)
            choice[g] = rng.integers(model.group_start[g], model.group_start[g + 1])
            allowed &= rng.random(n) < 0.8
            allowed[model.group_start[:-1]] = True
        view = pb.node(choice, allowed)
        best_with = _best_with(model, choice, allowed)
        node_best = best_with.min()
        k = view.sub.num_items
        if trial >= 2:  # near an ascended split, where bounds are tight enough to expose a wrong term
            view.optimize(node_best, 60)
        U = rng.normal(size=(k, k)) * np.abs(view.Q).mean() * rng.choice([0.02, 1.0])
        view.D = view.D + (U - U.T)  # any split: D + D^T = 2 Q
        scale = 1.0 / np.maximum(np.abs(view.sub.weights).sum(axis=1), 1.0)  # multipliers of the weights' order
        view.lam = view.lam + rng.normal(size=(k, model.num_budgets)) * scale * rng.choice([0.1, 1.0, 10.0])
        assert view.bound() <= node_best + 1e-9
        probe = view.probe()
        child_best = best_with[view.items]
        finite = np.isfinite(child_best)
        assert (probe.child[finite] <= child_best[finite] + 1e-9).all()
        assert probe.node_bound <= node_best + 1e-9


@pytest.mark.parametrize("case", range(8))
def test_ascent_with_budget_products_stays_below_the_optimum_and_never_below_the_split_alone(case):
    problem = list(_problems())[case]
    model = canonicalize(problem, problem.budgets)
    best = _best_with(model, np.full(model.num_groups, -1), np.ones(model.num_items, dtype=bool)).min()
    root = lambda: PairBound(model).node(np.full(model.num_groups, -1), np.ones(model.num_items, dtype=bool))  # noqa: E731
    plain, products = root(), root()
    without = plain.optimize(best, 100, budget_products=False)
    with_products = products.optimize(best, 100)
    assert with_products <= best + 1e-9 and products.bound() == pytest.approx(with_products, abs=1e-12)
    assert (plain.lam == 0).all()
    # starting from lam = 0 the first step is the plain split's: the best kept is never below it
    assert with_products >= root().bound() - 1e-12
    assert without <= best + 1e-9


@pytest.mark.parametrize("seed", range(6))
def test_node_ascent_with_budget_products_from_an_inherited_split_stays_below_each_node_optimum(seed):
    """As bnb's nodes run it: several layers fixed, items excluded, the split and multipliers inherited
    from an ascended parent, the products ascended again; node and child bounds against enumeration."""
    rng = np.random.default_rng(100 + seed)
    problem = iqp_problem(7, 3, seed=seed, noise=float(rng.uniform(0.05, 0.8)), budget_fraction=float(rng.uniform(0.15, 0.85)))
    model = canonicalize(problem, problem.budgets)
    F, n = model.num_groups, model.num_items
    pb = PairBound(model)
    choice = np.full(F, -1, dtype=np.int64)
    allowed = np.ones(n, dtype=bool)
    parent = pb.node(choice, allowed)
    parent.optimize(_best_with(model, choice, allowed).min() + 1.0, 60)
    for depth in range(1, 4):
        g = int(rng.choice(np.nonzero(choice < 0)[0]))
        choice[g] = rng.integers(model.group_start[g], model.group_start[g + 1])
        allowed &= (rng.random(n) < 0.85) | (np.arange(n) == model.group_start[model.item_group])
        best_with = _best_with(model, choice, allowed)
        if not np.isfinite(best_with.min()):
            return  # no completion fits: nothing left to check below
        view = pb.node(choice, allowed, parent.split())
        bound = view.optimize(best_with.min(), 40)  # the node's optimum as the target: the tightest ascent
        assert bound <= best_with.min() + 1e-9, depth
        probe = view.probe()
        child_best = best_with[view.items]
        finite = np.isfinite(child_best)
        assert (probe.child[finite] <= child_best[finite] + 1e-9).all(), depth
        assert probe.node_bound <= best_with.min() + 1e-9, depth
        parent = view


@pytest.mark.parametrize("seed", range(4))
def test_partner_blocks_and_split_subgradient_match_their_dense_definitions(seed):
    """The ascent's building blocks on nodes with unequal groups (excluded items) and a fractional
    relaxed choice: per-group partner costs padded with inf, and the subgradient y - y^T built by
    scattering (y[a, b] = x_a where b is a's cheapest partner in b's group, a's own group left out)."""
    problem = iqp_problem(6, 3, seed=seed, noise=0.5, budget_fraction=0.4)
    model = canonicalize(problem, problem.budgets)
    rng = np.random.default_rng(seed)
    allowed = rng.random(model.num_items) < 0.7
    allowed[model.group_start[:-1]] = True
    view = PairBound(model).node(np.full(model.num_groups, -1), allowed)
    view.optimize(view.bound() + 1.0, 5)
    sub, k = view.sub, view.sub.num_items
    D = view.D + rng.normal(size=(k, k))  # any matrix: blocks and subgradient do not need a split
    blocks = view._blocks(D)
    for g in range(sub.num_groups):
        lo, hi = sub.group_start[g], sub.group_start[g + 1]
        np.testing.assert_array_equal(blocks[:, g, : hi - lo], D[:, lo:hi])
        assert np.isinf(blocks[:, g, hi - lo:]).all()
    x = np.zeros(k)
    x[sub.group_start[:-1]] = 1.0
    g = int(rng.integers(sub.num_groups))
    if sub.group_start[g + 1] - sub.group_start[g] > 1:  # a fractional group, as the one-budget LP leaves
        x[sub.group_start[g]], x[sub.group_start[g] + 1] = 0.25, 0.75
    y = np.zeros((k, k))
    for a in np.nonzero(x)[0]:
        for h in range(sub.num_groups):
            if h != sub.item_group[a]:
                lo, hi = sub.group_start[h], sub.group_start[h + 1]
                y[a, lo + int(np.argmin(D[a, lo:hi]))] = x[a]
    np.testing.assert_array_equal(view._subgradient(x, blocks)[0], y - y.T)
