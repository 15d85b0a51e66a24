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
