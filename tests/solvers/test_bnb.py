"""mpqopt's IQP branch-and-bound: exact against independent solvers, valid bounds when stopped early,
and the split bound it rests on (a lower bound at every split, never below Gilmore-Lawler's)."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import brute_force

import mpqopt
from mpqopt.algorithms.iqp_bound import PairBound
from mpqopt.reductions import canonicalize
from mpqopt.synthetic import iqp_problem
from mpqopt.verify import violations

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out


def _random_sign(layers: int, options: int, seed: int, budgets: int = 1) -> mpqopt.Problem:
    """Dense random-sign Omega (the hard case for every method) with ``budgets`` cost tables."""
    rng = np.random.default_rng(seed)
    costs = {f"c{i}": rng.integers(1, 9, (layers, options)).astype(float) for i in range(budgets)}
    n = layers * options
    omega = rng.normal(size=(n, n))
    problem = mpqopt.Problem([f"l{i}" for i in range(layers)], [f"W{b}" for b in range(2, 2 + options)], rng.random((layers, options)), costs=costs, pairwise=omega)
    limits = {name: 0.5 * sum(problem.cost_range(name)) for name in costs}
    return problem.replace(budgets=limits)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("noise", [0.1, 0.5])
def test_bnb_matches_exhaustive_search_on_clado_shaped_problems(seed, noise):
    problem = iqp_problem(7, 3, seed=seed, noise=noise, budget_fraction=[0.2, 0.5, 0.8][seed % 3])
    best, _ = brute_force(problem, problem.budgets)
    result = mpqopt.solve(problem, solver="bnb")
    assert result.status == "optimal", result.message
    assert result.objective == pytest.approx(best, rel=1e-9, abs=1e-12)
    assert result.bound <= result.objective + 1e-12 and result.gap <= 1e-9
    # the result names what proved it, in the record and in the table
    assert result.proof.startswith("mpqopt branch-and-bound") and result.to_dict()["proof"] == result.proof
    assert f"bound by   {result.proof}" in result.table()


@pytest.mark.parametrize("budgets", [1, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_bnb_matches_exhaustive_search_on_random_sign_matrices_with_several_budgets(seed, budgets):
    problem = _random_sign(6, 3, seed, budgets)
    best, _ = brute_force(problem, problem.budgets)
    result = mpqopt.solve(problem, solver="bnb")
    if best is None:
        assert result.status == "infeasible"
        return
    assert result.status == "optimal", result.message
    assert violations(problem, result.x, problem.budgets) == []
    assert result.objective == pytest.approx(best, rel=1e-9, abs=1e-12)


def test_bnb_with_the_convex_node_bound_at_every_node_matches_exhaustive_search(monkeypatch):
    """The convex bound (qcr_bound) closing nodes and dropping items at every node, never skipped:
    the same optimum as enumeration, on CLADO-shaped and random-sign problems; it must close some."""
    from mpqopt.solvers import bnb

    monkeypatch.setattr(bnb, "_CONVEX_RATE", 0.0)
    closed = 0
    for seed in range(8):
        for problem in (iqp_problem(8, 3, seed=seed, noise=[0.3, 0.5, 0.8][seed % 3], budget_fraction=[0.3, 0.5, 0.7, 0.45][seed % 4]),
                        _random_sign(7, 3, seed)):
            best, _ = brute_force(problem, problem.budgets)
            result = mpqopt.solve(problem, solver="bnb")
            assert result.status == "optimal", result.message
            assert result.objective == pytest.approx(best, rel=1e-9, abs=1e-12), seed
            assert result.stats["convex_runs"] >= min(result.stats["nodes"], 1)
            closed += result.stats["convex_closed"]
    assert closed > 0


def test_bnb_skips_the_convex_bound_on_nodes_over_its_size_limit(monkeypatch):
    """Its cost grows as k^3: no node over the limit runs it, and the search proves the same optimum."""
    from mpqopt.solvers import bnb

    problem = iqp_problem(8, 3, seed=1, noise=0.3, budget_fraction=0.5)
    best, _ = brute_force(problem, problem.budgets)
    runs = {}
    for limit in (0, 24):
        monkeypatch.setattr(bnb, "_CONVEX_MAX_ITEMS", limit)
        result = mpqopt.solve(problem, solver="bnb")
        assert result.objective == pytest.approx(best, rel=1e-9, abs=1e-12)
        runs[limit] = result.stats["convex_runs"]
    assert runs[0] == 0 < runs[24]


@pytest.mark.parametrize("seed", range(3))
def test_bnb_and_highs_linearization_agree_on_mid_sized_problems(seed):
    """Two exact methods that share nothing but the canonical model: beyond brute force's reach."""
    problem = iqp_problem(16, 3, seed=seed, noise=0.3, budget_fraction=0.5)
    ours = mpqopt.solve(problem, solver="bnb", time_limit=60)
    highs = mpqopt.solve(problem, solver="highs", time_limit=60)
    assert ours.status == highs.status == "optimal", (ours.message, highs.message)
    assert ours.objective == pytest.approx(highs.objective, rel=1e-7)


def test_bnb_stopped_early_returns_a_feasible_answer_and_a_valid_bound():
    problem = iqp_problem(30, 3, seed=3, noise=0.5, budget_fraction=0.5)
    short = mpqopt.solve(problem, solver="bnb", time_limit=0.05)
    assert short.status == "time_limit", short.message
    assert violations(problem, short.x, problem.budgets) == []
    full = mpqopt.solve(problem, solver="bnb")
    assert full.status == "optimal"
    # the bound of the interrupted run may not exceed what a complete solver finds
    assert short.bound <= full.objective + 1e-9 * abs(full.objective)
    assert short.objective >= full.bound - 1e-9 * abs(full.bound)


def test_bnb_reports_infeasible_budgets():
    problem = iqp_problem(6, 3, seed=0)
    lo, _ = problem.cost_range("size_bits")
    result = mpqopt.solve(problem, budgets={"size_bits": 0.9 * lo}, solver="bnb")
    assert result.status == "infeasible" and "size_bits" in result.message


def test_bnb_starts_from_a_warm_start():
    problem = iqp_problem(10, 3, seed=1, noise=0.3)
    best = mpqopt.solve(problem, solver="bruteforce")
    result = mpqopt.solve(problem, solver="bnb", warm_start=best.assignment)
    assert result.status == "optimal" and result.objective == pytest.approx(best.objective, rel=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_split_bound_is_a_lower_bound_and_ascent_only_raises_it(seed):
    problem = _random_sign(6, 3, seed)
    best, _ = brute_force(problem, problem.budgets)
    model = canonicalize(problem, problem.budgets)
    view = PairBound(model).node(np.full(model.num_groups, -1), np.ones(model.num_items, dtype=bool))
    gilmore_lawler = view.bound() + model.offset  # the split D = Q
    raised = view.optimize(target=best - model.offset, iterations=300) + model.offset
    assert gilmore_lawler <= raised <= best + 1e-9 * max(1.0, abs(best))
    # the node's D still splits the pair terms exactly
    np.testing.assert_allclose(view.D + view.D.T, 2 * model.quadratic.toarray(), atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_probe_child_bounds_are_lower_bounds_of_each_child(seed):
    """Every child bound is at most the best objective with that item forced (enumerated)."""
    problem = _random_sign(5, 3, seed)
    model = canonicalize(problem, problem.budgets)
    view = PairBound(model).node(np.full(model.num_groups, -1), np.ones(model.num_items, dtype=bool))
    view.optimize(target=view.bound() + 1.0, iterations=50)
    probe = view.probe()
    import itertools

    best_with = np.full(model.num_items, np.inf)
    groups = [range(model.group_start[g], model.group_start[g + 1]) for g in range(model.num_groups)]
    for items in itertools.product(*groups):
        items = np.array(items)
        if (model.weights[:, items].sum(axis=1) <= model.rhs * (1 + 1e-12)).all():
            best_with[items] = np.minimum(best_with[items], model.items_objective(items))
    finite = np.isfinite(best_with)
    assert (probe.child[finite] <= best_with[finite] + 1e-9).all()
    assert probe.node_bound <= best_with.min() + 1e-9


@pytest.mark.parametrize("seed", range(8))
def test_single_budget_master_is_the_exact_lp(seed):
    """The relaxation's single-budget LP (dual walk over minimizer intervals) against scipy's LP solver,
    with ties, equal weights and masked items in the mix."""
    from scipy.optimize import linprog

    rng = np.random.default_rng(seed)
    problem = iqp_problem(9, 4, seed=seed, budget_fraction=[0.05, 0.3, 0.6, 0.95][seed % 4])
    model = canonicalize(problem, problem.budgets)
    allowed = rng.random(model.num_items) < 0.8
    allowed[model.group_start[:-1]] = True
    view = PairBound(model).node(np.full(model.num_groups, -1), allowed)
    h = np.round(rng.normal(size=view.sub.num_items), 1)  # rounding makes ties
    out = view.master(h)
    sub = view.sub
    A_eq = np.zeros((sub.num_groups, sub.num_items))
    A_eq[sub.item_group, np.arange(sub.num_items)] = 1.0
    lp = linprog(h, A_ub=sub.weights, b_ub=sub.rhs, A_eq=A_eq, b_eq=np.ones(sub.num_groups), bounds=(0, 1), method="highs")
    if lp.status == 2:
        assert out is None
        return
    bound, x, _ = out
    assert bound == pytest.approx(lp.fun, rel=1e-9, abs=1e-9)
    assert x @ h == pytest.approx(lp.fun, rel=1e-9, abs=1e-9)  # x is an optimal LP point
    assert sub.weights @ x <= sub.rhs * (1 + 1e-9)


def test_bnb_refuses_models_too_large_to_hold_dense_with_a_clear_message():
    from mpqopt.synthetic import mckp_problem

    result = mpqopt.solve(mckp_problem(1100, 4, seed=0), solver="bnb")  # 4,400 options > 4,000
    assert result.status == "error" and "bnb holds the pairwise matrix" in result.message and "'mckp'" in result.message
