"""The Lagrangian dual solver: its optimum is the LP relaxation, its bound is always valid.

The reference LP is built here from the raw ``Problem`` (one variable per allowed layer option, tie
and fixed-layer constraints written out) and solved by scipy's HiGHS, sharing no code with the
canonical reduction or the dual solver.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from fuzz import examples

import mpqopt
from mpqopt.algorithms.dual import solve_dual
from mpqopt.algorithms.heuristics import improve, is_feasible, repair
from mpqopt.algorithms.lagrangian import lagrangian_bound, lagrangian_costs
from mpqopt.reductions import canonicalize

OPTIONS_WA = ["W2A4", "W2A8", "W3A8", "W4A4", "W4A8", "W6A8", "W8A4", "W8A8"]


def random_problem(layers: int, budgets: int, seed: int, *, options: int = 8, masks: bool = False, ties: bool = False, fractions=None) -> mpqopt.Problem:
    """MPQ-shaped instance: sensitivity ~ s_l 4^-(w-2) + t_l 4^-(a-4) with noise; size = params*w,
    BitOps = MACs*w*a, latency from a per-layer table increasing in bits, more costs as scaled sizes."""
    rng = np.random.default_rng(seed)
    labels = OPTIONS_WA[:options] if options <= 8 else [f"W{b}" for b in range(2, 2 + options)]
    opts = [mpqopt.Option.parse(o) for o in labels]
    w = np.array([o.w for o in opts], dtype=float)
    a = np.array([o.a or 8 for o in opts], dtype=float)
    sens = (rng.lognormal(size=layers)[:, None] * 4.0 ** (2 - w) + 0.5 * rng.lognormal(size=layers)[:, None] * 4.0 ** (4 - a))
    sens *= rng.uniform(0.9, 1.1, (layers, options))
    params = rng.lognormal(9, 1.5, layers).round() + 10
    macs = params * rng.lognormal(2, 1.5, layers)
    tables = {"size": params[:, None] * w, "bitops": macs[:, None] * w * a}
    lut = np.cumsum(np.cumsum(rng.uniform(0.5, 2.0, (layers, 8, 8)), axis=1), axis=2)
    tables["latency"] = rng.uniform(0.1, 1.0, layers)[:, None] * lut[:, w.astype(int) - 1, a.astype(int) - 1]
    for i in range(3, budgets):
        tables[f"cost{i}"] = params[:, None] * w * rng.lognormal(0, 1, layers)[:, None] * rng.uniform(0.8, 1.2, (layers, options))
    names = list(tables)[:budgets]
    allowed = None
    if masks:
        allowed = rng.random((layers, options)) > 0.35
        allowed[np.arange(layers), rng.integers(0, options, layers)] = True
    tie_groups = [(f"l{i}", f"l{i + 1}") for i in range(0, layers - 1, 7)] if ties else ()
    if masks and ties:  # tied layers need an option in common
        for i in range(0, layers - 1, 7):
            allowed[i + 1, np.argmax(allowed[i])] = True
    problem = mpqopt.Problem([f"l{i}" for i in range(layers)], labels, sens, costs={n: tables[n] for n in names}, allowed=allowed, ties=tie_groups)
    fractions = rng.uniform(0.2, 0.8, budgets) if fractions is None else fractions
    return problem.replace(budgets={n: f"{100 * f:.3f}%" for n, f in zip(names, fractions)})


def raw_lp(problem: mpqopt.Problem, budgets: dict[str, float]) -> float | None:
    """LP relaxation of the raw problem (None if infeasible)."""
    L, K = problem.num_layers, problem.num_options
    allowed = problem.allowed.copy()
    for name, label in problem.fixed.items():
        row = problem.layer_index(name)
        allowed[row] = False
        allowed[row, problem.option_index(label)] = True
    cols = np.flatnonzero(allowed.ravel())
    var = np.full(L * K, -1)
    var[cols] = np.arange(cols.size)
    layer, option = cols // K, cols % K
    rows, data, ci = [layer], [np.ones(cols.size)], [np.arange(cols.size)]
    eq_rhs = [np.ones(L)]
    r = L
    for group in problem.ties:  # x[a, o] == x[b, o]: a missing variable is 0
        idx = [problem.layer_index(n) for n in group]
        for a_, b_ in zip(idx, idx[1:]):
            for o in range(K):
                va, vb = var[a_ * K + o], var[b_ * K + o]
                if va < 0 and vb < 0:
                    continue
                for v, s in ((va, 1.0), (vb, -1.0)):
                    if v >= 0:
                        rows.append(np.array([r])), data.append(np.array([s])), ci.append(np.array([v]))
                eq_rhs.append(np.zeros(1))
                r += 1
    A_eq = sp.csr_array((np.concatenate(data), (np.concatenate(rows), np.concatenate(ci))), shape=(r, cols.size))
    names = list(budgets)
    A_ub = np.array([problem.costs[n][layer, option] / budgets[n] for n in names]) if names else None
    b_ub = np.ones(len(names)) if names else None
    res = so.linprog(problem.sensitivity[layer, option], A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=np.concatenate(eq_rhs), bounds=(0, 1), method="highs")
    if res.status == 2:
        return None
    assert res.status == 0, res.message
    return float(res.fun)


def dual_of(problem: mpqopt.Problem, budgets: dict[str, float] | None = None, **kw):
    model = canonicalize(problem, problem.budgets if budgets is None else budgets)
    return model, solve_dual(model, **kw)


def scale_of(model) -> float:
    """The objective's total range: the unit the relative tolerance refers to."""
    return float(np.abs(model.value).sum()) + abs(model.offset) + 1e-300


@pytest.mark.parametrize("budgets", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dual_optimum_is_the_lp_relaxation(budgets, seed):
    problem = random_problem(80 + 30 * seed, budgets, seed)
    model, r = dual_of(problem)
    lp = raw_lp(problem, problem.budgets)
    assert r.converged and not r.unbounded
    assert r.bound + model.offset == pytest.approx(lp, rel=1e-9, abs=1e-12)
    assert r.upper + model.offset >= lp - 1e-9 * abs(lp)  # the certified upper bound is valid
    assert (r.lam >= 0).all() and r.lam.shape == (budgets,)
    # independent recomputation of L at the returned multipliers
    assert lagrangian_bound(model, r.lam)[0] == pytest.approx(r.bound, rel=1e-12, abs=1e-12 * scale_of(model))
    assert np.all(np.diff(r.history) >= 0)


@pytest.mark.parametrize("budgets", [3, 5])
def test_thousands_of_groups_match_the_lp(budgets):
    # large enough that late steps evaluate only the groups screening leaves unsettled
    problem = random_problem(3000, budgets, seed=31, fractions=[0.4, 0.3, 0.6, 0.5, 0.5][:budgets])
    model, r = dual_of(problem)
    assert r.converged
    assert r.bound + model.offset == pytest.approx(raw_lp(problem, problem.budgets), rel=1e-9)
    assert lagrangian_bound(model, r.lam)[0] == pytest.approx(r.bound, rel=1e-12)


def test_budget_at_its_cheapest_total_is_feasible():
    # (6 layers, seed 0): the "0%" budget, re-summed in another order, overshoots in the last bit
    for layers, budgets, seed in ((6, 2, 0), (40, 1, 13), (40, 2, 13)):
        problem = random_problem(layers, budgets, seed, options=3, masks=True, fractions=[0.0] * budgets)
        model, r = dual_of(problem)
        lp = raw_lp(problem, problem.budgets)
        if lp is None:  # two budgets at "0%" whose cheapest choices differ: truly infeasible
            _assert_infeasibility_certificate(model, r)
        else:
            assert r.converged and not r.unbounded
            assert r.bound + model.offset == pytest.approx(lp, rel=1e-9)


def test_model_is_not_modified():
    for layers, budgets in ((1, 2), (1, 1), (30, 1), (30, 3)):
        problem = random_problem(layers, budgets, seed=6, options=3)
        model = canonicalize(problem, problem.budgets)
        before = (model.value.copy(), model.weights.copy(), model.rhs.copy())
        solve_dual(model)
        assert all(np.array_equal(a, b) for a, b in zip(before, (model.value, model.weights, model.rhs)))


@pytest.mark.parametrize("budgets", [1, 3])
def test_masks_ties_and_uneven_groups(budgets):
    problem = random_problem(90, budgets, seed=11, masks=True, ties=True)
    problem = problem.replace(fixed={"l3": problem.option_labels[int(np.flatnonzero(problem.allowed[3])[0])]})
    model, r = dual_of(problem)
    assert len(set(np.diff(model.group_start).tolist())) > 1  # groups really have different sizes
    assert r.converged
    assert r.bound + model.offset == pytest.approx(raw_lp(problem, problem.budgets), rel=1e-9)


@pytest.mark.parametrize("budgets", [1, 2, 3])
def test_bound_is_below_the_integer_optimum(budgets):
    for seed in range(3):
        problem = random_problem(14, budgets, 100 + seed, options=4)
        model, r = dual_of(problem)
        exact = mpqopt.solve(problem, solver="highs:plain")
        assert exact.status == "optimal"
        assert r.bound + model.offset <= exact.objective + 1e-9 * abs(exact.objective)


def test_items_minimise_the_lagrangian_and_one_budget_items_are_feasible():
    for budgets in (1, 3):
        problem = random_problem(200, budgets, seed=5)
        model, r = dual_of(problem)
        costs = lagrangian_costs(model, r.lam)
        group_min = np.minimum.reduceat(costs, model.group_start[:-1])
        reduced = costs[r.items] - group_min
        assert np.all(model.item_group[r.items] == np.arange(model.num_groups))
        assert reduced.sum() <= 1e-9 * scale_of(model)
        if budgets == 1:  # at the breakpoint the lighter choice is taken: it meets the budget
            assert model.weights[0, r.items].sum() <= model.rhs[0] * (1 + 1e-12)
            assert r.lam[0] > 0


def test_one_budget_stops_exactly_at_a_breakpoint():
    problem = random_problem(300, 1, seed=17)
    model, r = dual_of(problem, tol=0.0)
    assert r.converged and r.gap == 0.0
    # the LP multiplier of one budget is where two items of some group cost the same under lam
    v, w, grp = model.value, model.weights[0], model.item_group
    a, b = np.nonzero((grp[:, None] == grp[None, :]) & (w[:, None] < w[None, :]))
    breakpoints = (v[a] - v[b]) / (w[b] - w[a])
    assert np.min(np.abs(breakpoints - r.lam[0])) <= 1e-12 * r.lam[0]
    assert r.bound + model.offset == pytest.approx(raw_lp(problem, problem.budgets), rel=1e-12)


def test_loose_budget_gets_zero_multiplier():
    problem = random_problem(100, 3, seed=7, fractions=[0.35, 0.3, 1.0])
    model, r = dual_of(problem)
    assert r.converged and r.lam[2] == 0.0 and (r.lam[:2] > 0).all()
    without = {k: v for k, v in problem.budgets.items() if k != "latency"}
    _, r2 = dual_of(problem, without)
    assert r.bound == pytest.approx(r2.bound, rel=1e-9)


@pytest.mark.parametrize("budgets", [1, 3])
def test_all_budgets_loose_gives_unconstrained_optimum(budgets):
    problem = random_problem(60, budgets, seed=3, fractions=[1.0] * budgets)
    model, r = dual_of(problem)
    group_min = np.minimum.reduceat(model.value, model.group_start[:-1])
    assert r.converged and r.iterations == 1
    assert np.all(r.lam == 0.0)
    assert r.bound == pytest.approx(group_min.sum(), rel=1e-12)
    assert np.allclose(model.value[r.items], group_min)


def test_no_budgets():
    problem = random_problem(50, 2, seed=4).replace(budgets={})
    model, r = dual_of(problem)
    assert model.num_budgets == 0 and r.lam.shape == (0,)
    assert r.converged and r.gap == 0.0
    assert r.bound == pytest.approx(np.minimum.reduceat(model.value, model.group_start[:-1]).sum(), rel=1e-12)
    assert r.bound + model.offset == pytest.approx(raw_lp(problem, {}), rel=1e-9)


def _assert_infeasibility_certificate(model, r):
    """L(lam) above the largest objective any assignment can have proves the budgets infeasible."""
    group_max = np.maximum.reduceat(model.value, model.group_start[:-1])
    assert r.unbounded and not r.converged
    assert lagrangian_bound(model, r.lam)[0] > group_max.sum()


@pytest.mark.parametrize("budgets", [1, 3])
def test_budget_below_the_cheapest_assignment_is_unbounded(budgets):
    problem = random_problem(40, budgets, seed=8)
    limits = dict(problem.budgets)
    name = next(iter(limits))
    limits[name] = problem.cost_range(name)[0] * 0.999
    model, r = dual_of(problem, limits)
    assert raw_lp(problem, limits) is None
    _assert_infeasibility_certificate(model, r)


def test_jointly_infeasible_budgets_are_unbounded():
    # option W4 uses cost c1, option W8 uses cost c2: every layer spends 1 in total, budgets allow 0.9
    L = 30
    problem = mpqopt.Problem([f"l{i}" for i in range(L)], ["W4", "W8"], np.tile([0.0, 1.0], (L, 1)),
                             costs={"c1": np.tile([1.0, 0.0], (L, 1)), "c2": np.tile([0.0, 1.0], (L, 1))})
    tight = {"c1": 0.45 * L, "c2": 0.45 * L}
    assert raw_lp(problem, tight) is None
    assert all(raw_lp(problem, {k: v}) is not None for k, v in tight.items())  # each alone is fine
    model, r = dual_of(problem, tight)
    _assert_infeasibility_certificate(model, r)
    # exactly enough room: feasible (integrally, with 15 of each), LP bound = 15
    model, r = dual_of(problem, {"c1": 0.5 * L, "c2": 0.5 * L})
    assert r.converged and not r.unbounded
    assert r.bound == pytest.approx(raw_lp(problem, {"c1": 0.5 * L, "c2": 0.5 * L}), rel=1e-9)


@pytest.mark.parametrize("budgets", [1, 3])
@pytest.mark.parametrize("factor, shift", [(1e-9, 0.0), (1e7, 0.0), (1.0, 1e3)])
def test_objective_scale_and_offset_do_not_matter(budgets, factor, shift):
    problem = random_problem(120, budgets, seed=9)
    model, r = dual_of(problem)
    scaled = problem.replace(sensitivity=problem.sensitivity * factor + shift)
    model_s, r_s = dual_of(scaled)
    assert r_s.converged
    expected = r.bound * factor + shift * model.num_groups  # every free group pays the shift once
    assert r_s.bound == pytest.approx(expected, rel=1e-8)
    assert np.allclose(r_s.lam, r.lam * factor, rtol=1e-6, atol=1e-12 * factor * np.abs(r.lam).max())


def test_pairwise_models_are_rejected():
    problem = random_problem(6, 1, seed=1, options=3)
    K = problem.num_options * problem.num_layers
    problem = problem.replace(pairwise=sp.random(K, K, density=0.2, random_state=1) * 0.01)
    with pytest.raises(mpqopt.SolverError, match="separable"):
        dual_of(problem)


@pytest.mark.parametrize("budgets", [1, 3])
def test_iteration_and_time_limits_keep_a_valid_bound(budgets):
    problem = random_problem(150, budgets, seed=12)
    lp = raw_lp(problem, problem.budgets)
    model, r = dual_of(problem, max_iter=3)
    assert r.iterations <= 3 and not r.converged
    assert r.bound + model.offset <= lp + 1e-9 * abs(lp)
    model, r = dual_of(problem, time_limit=1e-9)
    assert r.iterations <= 3 and r.bound + model.offset <= lp + 1e-9 * abs(lp)


def test_every_group_forced():
    problem = random_problem(5, 1, seed=2, options=3)
    fixed = {name: "W2A8" for name in problem.layers}
    forced = problem.replace(fixed=fixed)
    model, r = dual_of(forced)
    assert model.num_groups == 0 and r.converged and r.bound == 0.0 and r.items.size == 0
    over = {"size": forced.cost_range("size")[0] * 0.5}
    model, r = dual_of(forced, over)
    assert r.unbounded and r.bound > 0


def test_large_model_converges_with_a_valid_bound():
    problem = random_problem(20_000, 3, seed=21, fractions=[0.4, 0.3, 0.6])
    model, r = dual_of(problem)
    assert r.converged and (r.lam > 0).all()
    assert r.iterations < 150
    assert r.gap <= 1e-9 * max(abs(r.bound), 1.0) + 1e-12 * scale_of(model)
    feasible = repair(model, r.items)
    assert feasible is not None and is_feasible(model, feasible)
    incumbent = improve(model, feasible)
    objective = model.items_objective(incumbent)
    # on 20,000 groups the Lagrangian solution repaired is within 1e-4 of the bound
    assert r.bound <= objective <= r.bound + 1e-4 * abs(r.bound)


@settings(max_examples=examples(25), deadline=None)
@given(seed=st.integers(0, 10**6), budgets=st.integers(1, 4), layers=st.integers(1, 25), options=st.integers(2, 8), frac=st.floats(0.0, 1.0))
def test_property_matches_lp(seed, budgets, layers, options, frac):
    problem = random_problem(layers, budgets, seed, options=options, masks=True, fractions=[frac] * budgets)
    model, r = dual_of(problem)
    lp = raw_lp(problem, problem.budgets)
    if lp is None:
        _assert_infeasibility_certificate(model, r)
        return
    assert not r.unbounded and r.converged
    assert r.bound + model.offset == pytest.approx(lp, rel=1e-8, abs=1e-9 * scale_of(model))
