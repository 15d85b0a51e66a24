"""The canonical form (``mpqopt.reductions.canonical``): what a backend sees must price every assignment
exactly as the user's problem does, and pruning may only drop options no optimum needs."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from fuzz import examples

from mpqopt.reductions import canonicalize
from mpqopt.synthetic import iqp_problem, mckp_problem

from oracle import brute_force


@st.composite
def structured_problems(draw):
    """Small problems with ties, fixed layers, masks, one or two budgets, with or without a pairwise term."""
    L = draw(st.integers(5, 6))  # room for a tie group (up to 4 layers) and a fixed layer
    K = draw(st.integers(2, 4))
    seed = draw(st.integers(0, 2**16))
    if draw(st.booleans()):
        problem = iqp_problem(L, K, seed=seed)
    else:
        problem = mckp_problem(L, K, budgets=draw(st.integers(1, 2)), seed=seed, ties=draw(st.integers(0, 1)), fixed=draw(st.integers(0, 1)), masked=draw(st.sampled_from([0.0, 0.3])))
    return problem, np.random.default_rng(seed)


def _valid_assignments(problem):
    """Every assignment that respects masks, ties and fixed layers (budgets aside)."""
    L, K = problem.num_layers, problem.num_options
    index = {name: i for i, name in enumerate(problem.layers)}
    label = {o.label: k for k, o in enumerate(problem.options)}
    for x in itertools.product(range(K), repeat=L):
        if not all(problem.allowed[i, x[i]] for i in range(L)):
            continue
        if any(x[index[n]] != label[lab] for n, lab in problem.fixed.items()):
            continue
        if any(len({x[index[n]] for n in group}) > 1 for group in problem.ties):
            continue
        yield np.array(x)


@given(structured_problems())
@settings(max_examples=examples(40), deadline=None)
def test_unpruned_form_prices_every_assignment_like_the_problem(case):
    problem, _ = case
    model = canonicalize(problem, problem.budgets, prune=False)
    for x in _valid_assignments(problem):
        items = model.items_from_layers(x)
        assert items is not None
        assert np.array_equal(model.expand(items), x)
        evaluation = problem.evaluate(x)
        scale = max(problem.objective_scale, 1e-300)
        assert abs(model.items_objective(items) + model.offset - evaluation.objective) <= 1e-9 * scale
        for row, name in enumerate(model.budget_names):
            # budget rows: what the free choices add, against the limit minus the forced decisions
            used = float(model.weights[row, items].sum())
            assert abs((model.budgets[row] - model.rhs[row]) + used - evaluation.costs[name]) <= 1e-9 * max(abs(evaluation.costs[name]), 1.0)


@given(structured_problems())
@settings(max_examples=examples(40), deadline=None)
def test_pruning_keeps_an_optimum(case):
    problem, _ = case
    best, optima = brute_force(problem, problem.budgets)
    model = canonicalize(problem, problem.budgets, prune=True)
    if best is None:
        return
    # some optimal assignment is still representable after dominated options were dropped
    assert any(model.items_from_layers(np.array(x)) is not None for x in optima)


def test_scoped_budget_rows_price_every_assignment_like_the_scope():
    """A scoped budget row has zeros outside its scope; a tied group straddling the scope weighs
    what its members inside cost; forced decisions come off the row's rhs by their in-scope cost."""
    import mpqopt

    layers = ["blk.0.q", "blk.0.mlp", "blk.1.q", "blk.1.mlp", "head"]
    params = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    bits = np.array([2.0, 4.0, 8.0])
    problem = mpqopt.Problem(layers, ["W2", "W4", "W8"], np.random.default_rng(1).random((5, 3)),
                             costs={"size_bits": np.outer(params, bits)},
                             ties=[["blk.0.q", "blk.1.q"]], fixed={"head": "W4"})
    limits = {"size_bits[s0:blk.0.*]": 200.0, "size_bits": 900.0, "size_bits[h:head,blk.1.mlp]": 600.0}
    model = canonicalize(problem, limits, prune=False)
    inside = {"size_bits[s0:blk.0.*]": [0, 1], "size_bits": [0, 1, 2, 3, 4], "size_bits[h:head,blk.1.mlp]": [3, 4]}
    assert model.budget_names == tuple(limits)
    for r, key in enumerate(model.budget_names):
        # forced 'head' at W4 costs 50 * 4 where the scope holds it
        assert model.rhs[r] == limits[key] - (200.0 if 4 in inside[key] else 0.0)
    sizes = [range(model.group_start[f], model.group_start[f + 1]) for f in range(model.num_groups)]
    for items in itertools.product(*sizes):
        x = model.expand(np.array(items))
        for r, key in enumerate(model.budget_names):
            own = sum(params[l] * bits[x[l]] for l in inside[key])
            forced = limits[key] - model.rhs[r]
            assert model.weights[r, list(items)].sum() + forced == own


def _dominated_by_definition(value, costs, candidates):
    """Option o of a group is dominated when another candidate p is no worse in sensitivity and every
    cost and strictly better in one, or identical with a lower index: loops, straight from the words."""
    G, K = value.shape
    out = np.zeros((G, K), dtype=bool)
    for g in range(G):
        for o in range(K):
            if not candidates[g, o]:
                continue
            for p in range(K):
                if p == o or not candidates[g, p]:
                    continue
                mine = [value[g, o], *(c[g, o] for c in costs)]
                theirs = [value[g, p], *(c[g, p] for c in costs)]
                if all(t <= m for t, m in zip(theirs, mine)) and (any(t < m for t, m in zip(theirs, mine)) or p < o):
                    out[g, o] = True
    return out


@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.integers(1, 5), st.booleans())
@settings(max_examples=examples(100), deadline=None)
def test_dominated_options_match_the_definition(seed, m, K, broadcast):
    """Monotone groups (dearer and better with every option) skip the pairwise comparison; the answer
    is the definition's, for monotone rows, rows with ties and equal options, and masked rows alike,
    on both ways of comparing the rest (one [G, K, K] broadcast for few groups, column pairs in blocks)."""
    from unittest import mock

    from mpqopt.reductions import canonical

    rng = np.random.default_rng(seed)
    G = 40
    value = np.cumsum(rng.integers(1, 4, (G, K)), axis=1)[:, ::-1].astype(float)
    costs = np.cumsum(rng.integers(1, 4, (m, G, K)), axis=2).astype(float)
    messy = rng.random(G) < 0.5  # half the rows: small integers, so ties, equal options and dominance
    value[messy] = rng.integers(0, 3, (int(messy.sum()), K))
    costs[:, messy] = rng.integers(0, 3, (m, int(messy.sum()), K))
    candidates = rng.random((G, K)) >= 0.2
    candidates[rng.random(G) < 0.5] = True
    with mock.patch.object(canonical, "_PAIR_BROADCAST", G * K * K if broadcast else 0):
        found = canonical._dominated(value, costs, candidates)
    assert np.array_equal(found, _dominated_by_definition(value, costs, candidates))


def test_a_full_rectangular_model_is_the_tables_in_row_major_order():
    """No mask, no ties, nothing fixed or pruned: item f*K + k is option k of layer f, with the
    problem's own numbers (views of its read-only tables, not copies)."""
    problem = mckp_problem(200, 8, budgets=1, seed=4, kind="groups")
    model = canonicalize(problem, problem.budgets)
    L, K = problem.num_layers, problem.num_options
    assert model.num_groups == L and model.num_items == L * K and model.options_pruned == 0
    assert np.array_equal(model.item_group, np.repeat(np.arange(L), K))
    assert np.array_equal(model.item_option, np.tile(np.arange(K), L))
    assert np.array_equal(model.value, problem.sensitivity.ravel())
    assert np.array_equal(model.weights[0], problem.costs["size_bits"].ravel())
    assert not model.value.flags.writeable and not model.weights.flags.writeable
    x = np.random.default_rng(0).integers(0, K, L)
    items = np.arange(L) * K + x
    assert np.array_equal(model.expand(items), x)
    assert model.items_objective(items) == problem.evaluate(x).objective
