"""Convex hulls, greedy increments and the LP bound (``mpqopt.algorithms.hull``) against independent
answers: Andrew's monotone chain for each group's lower hull, and scipy's LP solver (HiGHS via
``linprog``) for the LP relaxation of the whole one-budget problem."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from fuzz import examples

from mpqopt import Problem
from mpqopt.algorithms.hull import greedy, hull_increments, lower_hulls
from mpqopt.reductions import canonicalize


def _model(sens, cost, budget, prune=False):
    L, K = sens.shape
    problem = Problem([f"l{i}" for i in range(L)], [f"W{k + 1}" for k in range(K)], sens, costs={"size_bits": cost})
    return canonicalize(problem, {"size_bits": budget}, prune=prune)


def _monotone_chain_lower_hull(points: list[tuple[float, float]]) -> set[tuple[float, float]]:
    """Vertices of the lower-left hull: the lower convex hull up to its lowest point (beyond it a
    dearer point is never better). Andrew's algorithm, independent of mpqopt's pairwise slopes."""
    pts = sorted(set(points))
    hull: list[tuple[float, float]] = []
    for p in pts:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) <= 0:  # not a strict left turn
                hull.pop()
            else:
                break
        hull.append(p)
    lowest = min(range(len(hull)), key=lambda i: (hull[i][1], hull[i][0]))
    return set(hull[: lowest + 1])


@st.composite
def tables(draw):
    L = draw(st.integers(1, 6))
    K = draw(st.integers(1, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):  # integers: ties, collinear points, equal costs
        return rng.integers(0, 6, (L, K)).astype(float), rng.integers(1, 6, (L, K)).astype(float), rng
    return rng.random((L, K)), rng.random((L, K)) + 0.01, rng


@given(tables())
@settings(max_examples=examples(200), deadline=None)
def test_lower_hulls_are_the_monotone_chain_hulls(case):
    sens, cost, _ = case
    model = _model(sens, cost, float(cost.max(axis=1).sum()))
    C, V, item, on_hull = lower_hulls(model, model.weights[0])
    for g in range(model.num_groups):
        members = item[g][item[g] >= 0]
        points = [(float(model.weights[0, i]), float(model.value[i])) for i in members]
        got = {(float(C[g, j]), float(V[g, j])) for j in np.nonzero(on_hull[g])[0]}
        assert got == _monotone_chain_lower_hull(points), (g, points)


@given(tables(), st.floats(0.0, 1.0))
@settings(max_examples=examples(200), deadline=None)
def test_greedy_lp_bound_is_the_lp_relaxation(case, fraction):
    sens, cost, _ = case
    lo, hi = float(cost.min(axis=1).sum()), float(cost.max(axis=1).sum())
    budget = lo + fraction * (hi - lo)
    model = _model(sens, cost, budget)
    assume(model.num_groups > 0)  # one option everywhere: nothing left to decide
    solution = greedy(model)
    assert solution is not None
    # the LP relaxation, solved from scratch: one-hot rows as equalities, x in [0, 1]
    groups = model.num_groups
    A_eq = np.zeros((groups, model.num_items))
    A_eq[model.item_group, np.arange(model.num_items)] = 1.0
    lp = linprog(model.value, A_ub=model.weights[:1], b_ub=[float(model.rhs[0])], A_eq=A_eq, b_eq=np.ones(groups), bounds=(0, 1), method="highs")
    assert lp.status == 0
    scale = max(1.0, float(np.abs(model.value).sum()))
    assert solution.lp_bound == pytest.approx(lp.fun, abs=1e-7 * scale)
    # the greedy's integer choice is feasible and no better than the LP
    assert float(model.weights[0, solution.items].sum()) <= float(model.rhs[0]) * (1 + 1e-12) + 1e-12
    assert float(model.value[solution.items].sum()) >= solution.lp_bound - 1e-9 * scale


def test_increments_are_sorted_by_efficiency_and_walk_each_hull():
    rng = np.random.default_rng(7)
    model = _model(rng.random((30, 6)), rng.random((30, 6)) + 0.1, 10.0)
    inc = hull_increments(model)
    assert np.all(np.diff(inc.efficiency) <= 1e-12) and np.all(inc.dcost > 0) and np.all(inc.dvalue < 0)
    for g in range(model.num_groups):
        mine = np.nonzero(inc.group == g)[0]
        chain = [inc.start_items[g]] + [int(inc.item_to[i]) for i in mine]
        assert [int(inc.item_from[i]) for i in mine] == chain[:-1]  # consecutive hull vertices, in hull order
        hull = inc.hull_items[g][inc.hull_items[g] >= 0].tolist()
        assert chain == hull


def test_greedy_is_none_when_even_the_cheapest_breaks_the_budget():
    model = _model(np.array([[1.0, 0.0]]), np.array([[2.0, 4.0]]), 10.0)
    tight = model.__class__(**{**model.__dict__, "rhs": np.array([1.0])})
    assert greedy(tight) is None


def _sorted_greedy(model):
    """The greedy as MPQCO states it: every increment in one global order (decreasing efficiency, ties
    in group order), taken while it fits; the answer of greedy(model, hull_increments(model))."""
    return greedy(model, hull_increments(model))


@st.composite
def many_group_models(draw):
    """Models of up to 3,000 groups (more than the sample the threshold search starts from when it
    is made small): integer tables (ties everywhere), floats, rows sorted or not, masked options."""
    L = draw(st.integers(1, 3000))
    K = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = draw(st.sampled_from(["integer", "float", "monotone"]))
    if shape == "integer":
        sens, cost = rng.integers(0, 6, (L, K)).astype(float), rng.integers(1, 6, (L, K)).astype(float)
    elif shape == "float":
        sens, cost = rng.random((L, K)), rng.random((L, K)) + 0.01
    else:  # more bits: dearer and better, the fast path without a sort
        cost = np.cumsum(rng.integers(1, 50, (L, K)), axis=1).astype(float)
        sens = np.cumsum(rng.random((L, K)), axis=1)[:, ::-1].copy()
    allowed = rng.random((L, K)) >= draw(st.sampled_from([0.0, 0.3]))
    allowed[np.arange(L), rng.integers(0, K, L)] = True
    lo, hi = float(np.where(allowed, cost, np.inf).min(axis=1).sum()), float(np.where(allowed, cost, -np.inf).max(axis=1).sum())
    budget = lo + draw(st.floats(0.0, 1.0)) * (hi - lo)
    problem = Problem([f"l{i}" for i in range(L)], [f"W{k + 1}" for k in range(K)], sens, costs={"size_bits": cost}, allowed=allowed)
    return canonicalize(problem, {"size_bits": budget}, prune=draw(st.booleans()))


def _same_greedy(got, want):
    assert (got is None) == (want is None)
    if want is not None:
        assert np.array_equal(got.items, want.items)
        assert got.taken == want.taken and got.lam == want.lam
        scale = max(1.0, abs(want.lp_bound))
        assert got.lp_bound == pytest.approx(want.lp_bound, abs=1e-9 * scale)
        assert got.capacity_left == pytest.approx(want.capacity_left, abs=1e-9 * max(1.0, abs(float(want.capacity_left))))


@given(many_group_models(), st.sampled_from([1, 2, 16, 4096]))
@settings(max_examples=examples(60), deadline=None)
def test_threshold_greedy_is_the_sorted_greedy(model, sample_rows):
    """The threshold search (no global sort) takes the same increments as the sorted walk, ties
    included, whatever the sample it starts from (a sample of 1 row misses the break often)."""
    assume(model.num_groups > 0)
    from mpqopt.algorithms import hull

    saved = hull.SAMPLE_ROWS
    hull.SAMPLE_ROWS = sample_rows
    try:
        _same_greedy(greedy(model), _sorted_greedy(model))
    finally:
        hull.SAMPLE_ROWS = saved


@pytest.mark.parametrize("bracket", [(1e300, 1e301), (-1e301, -1e300), (0.5, 0.5)])
def test_threshold_greedy_recovers_from_a_bracket_that_misses(monkeypatch, bracket):
    """A bracket above, below or empty around the break is detected and widened to every increment."""
    from mpqopt.algorithms import hull

    rng = np.random.default_rng(3)
    model = _model(rng.random((500, 6)), rng.random((500, 6)) + 0.1, 150.0)
    monkeypatch.setattr(hull, "SAMPLE_ROWS", 16)  # more groups than that: the bracket is tried first
    calls = []
    monkeypatch.setattr(hull._Hulls, "_bracket", lambda self, rhs, base: calls.append(rhs) or bracket)
    _same_greedy(greedy(model), _sorted_greedy(model))
    assert calls, "the bracket was never tried"


def test_threshold_greedy_when_everything_or_nothing_fits():
    rng = np.random.default_rng(5)
    sens, cost = rng.random((50, 4)), rng.random((50, 4)) + 0.1
    for budget in (float(cost.max(axis=1).sum()) * 2, float(cost.min(axis=1).sum())):
        model = _model(sens, cost, budget)
        _same_greedy(greedy(model), _sorted_greedy(model))
    assert greedy(_model(sens, cost, float(cost.min(axis=1).sum()) * 0.5)) is None
