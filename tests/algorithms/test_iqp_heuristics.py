"""Cross-layer (IQP) heuristics: local search, annealing, CSQ relaxation and their backends.

They prove nothing, so every check is against independent computations: the exhaustive optimum of
``tests/oracle.py``, objectives summed here from the problem's own tables, budgets re-checked by
:func:`mpqopt.verify.violations`, and neighbourhoods enumerated here move by move.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from oracle import brute_force

import mpqopt
from mpqopt.algorithms import local_search as ls
from mpqopt.algorithms.csq import csq
from mpqopt.algorithms.incumbent import separable_incumbent
from mpqopt.errors import SolverError
from mpqopt.reductions import canonicalize
from mpqopt.solvers import SolveSettings, get_backend
from mpqopt.solvers.mckp import solve_separable
from mpqopt.synthetic import iqp_problem, mckp_problem
from mpqopt.verify import violations

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out

HEURISTICS = ("local", "anneal:5", "csq")


def _random_sign(problem: mpqopt.Problem, seed: int, scale: float = 0.3) -> mpqopt.Problem:
    """The problem with a random-sign, non-symmetric Omega (same-layer entries included: the
    reductions must fold or drop them), sized like the sensitivities."""
    n = problem.num_layers * problem.num_options
    omega = np.random.default_rng(seed).normal(size=(n, n)) * scale * float(np.median(problem.sensitivity))
    return problem.replace(pairwise=omega)


def _exact_budget(problem: mpqopt.Problem, seed: int) -> mpqopt.Problem:
    """Budgets set to exactly the costs of one random assignment: that one binds every row."""
    x = np.random.default_rng(seed).integers(0, problem.num_options, problem.num_layers)
    rows = np.arange(problem.num_layers)
    return problem.replace(budgets={name: float(problem.costs[name][rows, x].sum()) for name in problem.budgets})


INSTANCES = {
    "iqp6-s0": lambda: iqp_problem(6, 3, seed=0),
    "iqp7-s1-noisy": lambda: iqp_problem(7, 3, seed=1, noise=0.5),
    "iqp8-s2": lambda: iqp_problem(8, 3, seed=2),
    "iqp7-tight": lambda: iqp_problem(7, 3, seed=3, noise=0.5, budget_fraction=0.08),
    "sign7-2budgets": lambda: _random_sign(mckp_problem(7, 3, budgets=2, seed=4), 4),
    "sign7-3budgets-exact": lambda: _exact_budget(_random_sign(mckp_problem(7, 3, budgets=3, seed=5), 5), 5),
    "sign8-ties-fixed": lambda: _random_sign(mckp_problem(8, 3, budgets=1, seed=6, ties=1, fixed=1, budget_fraction=0.3), 6),
    "separable7-2budgets": lambda: mckp_problem(7, 3, budgets=2, seed=7, budget_fraction=0.2),
    "separable6-tight": lambda: mckp_problem(6, 4, budgets=1, seed=8, budget_fraction=0.05),
}


@pytest.fixture(scope="module")
def cases() -> dict:
    """name -> (problem, canonical model, exhaustive optimum, one optimal assignment)."""
    out = {}
    for name, make in INSTANCES.items():
        p = make()
        best, argbest = brute_force(p, p.budgets)
        assert best is not None, f"{name}: the test instance should be feasible"
        out[name] = (p, canonicalize(p, p.budgets), best, np.array(argbest[0]))
    return out


def _objective(p: mpqopt.Problem, x: np.ndarray) -> float:
    """Objective summed here from the tables (independent of Problem.evaluate and the reductions)."""
    value = sum(p.sensitivity[l, x[l]] for l in range(p.num_layers))
    if p.pairwise is not None:
        flat = [l * p.num_options + x[l] for l in range(p.num_layers)]
        value += sum(p.pairwise[i, j] for i in flat for j in flat)
    return float(value)


def _tol(p: mpqopt.Problem) -> float:
    return 1e-9 * (1.0 + p.objective_scale)


def _check(p, model, items, optimum, reported=None):
    """Budget-feasible per the problem, objective consistent with a sum done here, never below the optimum."""
    x = model.expand(items)
    assert violations(p, x, p.budgets) == []
    value = _objective(p, x)
    if reported is not None:
        assert reported + model.offset == pytest.approx(value, abs=_tol(p))
    assert value >= optimum - _tol(p)
    return value


def _neighbours(model, items, size):
    """Every assignment that changes exactly ``size`` groups (1 or 2) of ``items``."""
    groups = range(model.num_groups)
    for chosen in itertools.combinations(groups, size):
        choices = [[j for j in range(model.group_start[g], model.group_start[g + 1]) if j != items[g]] for g in chosen]
        for new in itertools.product(*choices):
            trial = items.copy()
            trial[list(chosen)] = new
            yield trial


def _assert_local_optimum(p, model, items, sizes):
    here = _objective(p, model.expand(items))
    for size in sizes:
        for trial in _neighbours(model, items, size):
            x = model.expand(trial)
            if not violations(p, x, p.budgets):
                assert _objective(p, x) >= here - _tol(p), f"a {size}-group move improves on the reported local optimum"


# ------------------------------------------------------------------------------ backends end to end
@pytest.mark.parametrize("name", list(INSTANCES))
def test_backends_return_feasible_consistent_answers_not_below_the_optimum(cases, name):
    p, model, optimum, _ = cases[name]
    for solver in HEURISTICS:
        raw = get_backend(solver).solve(model, SolveSettings())
        assert raw.status == "feasible"
        assert "heuristic, no optimality proof" in raw.message
        # the lower bound from the split relaxation never exceeds the true optimum
        assert raw.bound is not None and raw.bound + model.offset <= optimum + _tol(p)
        assert raw.proof == "mpqopt's split relaxation (no search)"
        _check(p, model, raw.items, optimum, raw.objective)
    r = mpqopt.solve(p, solver="csq:2")
    assert r.status in ("feasible", "optimal") and r.solver == "csq:2"
    assert r.bound <= optimum + _tol(p) and r.gap is not None
    assert r.objective == pytest.approx(_objective(p, r.x), abs=_tol(p)) and r.objective >= optimum - _tol(p)
    assert violations(p, r.x, p.budgets) == []


def test_local_is_exact_on_separable_models(cases):
    """Without a pairwise term the start is the exact separable optimum, and nothing moves off it."""
    for name in ("separable7-2budgets", "separable6-tight"):
        p, model, optimum, _ = cases[name]
        r = mpqopt.solve(p, solver="local")
        assert r.objective == pytest.approx(optimum, abs=_tol(p))


def test_status_and_json_of_a_heuristic_result():
    p = iqp_problem(10, seed=4)
    r = mpqopt.solve(p, solver="csq:3")
    assert r.status in ("feasible", "optimal") and r.success and r.proof == "mpqopt's split relaxation (no search)"
    d = r.to_dict()
    assert d["gap"] == r.gap >= 0 and d["stats"]["method"] == "csq" and d["stats"]["seed"] == 3
    r.to_json()  # the stats must be plain JSON


# ------------------------------------------------------------------------------ local optima and deltas
@pytest.mark.parametrize("name", list(INSTANCES))
def test_one_opt_and_two_opt_stop_at_local_optima(cases, name):
    p, model, optimum, _ = cases[name]
    rng = np.random.default_rng(0)
    starts = [separable_incumbent(model)]
    # plus a few random feasible assignments as starts
    sizes = np.diff(model.group_start)
    for _ in range(200):
        trial = model.group_start[:-1] + rng.integers(0, sizes)
        if not violations(p, model.expand(trial), p.budgets):
            starts.append(trial)
        if len(starts) == 4:
            break
    for start in starts:
        one = ls.one_opt(model, start)
        _check(p, model, one.items, optimum, one.objective)
        _assert_local_optimum(p, model, one.items, (1,))
        two = ls.two_opt(model, start)
        _check(p, model, two.items, optimum, two.objective)
        _assert_local_optimum(p, model, two.items, (1, 2))
        assert two.objective <= model.items_objective(start) + _tol(p)


@pytest.mark.parametrize("name", ["iqp7-s1-noisy", "sign7-2budgets", "sign8-ties-fixed", "separable7-2budgets"])
def test_move_deltas_match_full_reevaluation(cases, name):
    p, model, _, _ = cases[name]
    rng = np.random.default_rng(1)
    sizes = np.diff(model.group_start)
    for _ in range(3):
        items = model.group_start[:-1] + rng.integers(0, sizes)  # feasibility does not matter here
        base = _objective(p, model.expand(items))
        single = ls.single_move_deltas(model, items)
        for j in range(model.num_items):
            trial = items.copy()
            trial[model.item_group[j]] = j
            assert single[j] == pytest.approx(_objective(p, model.expand(trial)) - base, abs=_tol(p))
        J, D = ls.pair_move_deltas(model, items)
        for a, b in itertools.product(range(J.size), repeat=2):
            if model.item_group[J[a]] == model.item_group[J[b]]:
                assert np.isnan(D[a, b])
                continue
            trial = items.copy()
            trial[model.item_group[J[a]]] = J[a]
            trial[model.item_group[J[b]]] = J[b]
            assert D[a, b] == pytest.approx(_objective(p, model.expand(trial)) - base, abs=_tol(p))


# ------------------------------------------------------------------------------ from the optimum
@pytest.mark.parametrize("name", list(INSTANCES))
def test_starting_from_the_optimum_nothing_gets_worse(cases, name):
    p, model, optimum, x_opt = cases[name]
    items = model.items_from_layers(x_opt)
    assert items is not None
    runs = [
        ls.one_opt(model, items), ls.two_opt(model, items), ls.iterated_linearization(model, items, solve_separable=solve_separable),
        ls.anneal(model, items, seed=0, iterations=4000), csq(model, seed=0, warm_start=items, fallback=items, restarts=2),
    ]
    for found in runs[:4]:  # the descents and annealing (best seen includes the start) never lose it
        assert found.objective + model.offset <= optimum + _tol(p)
    for solver in HEURISTICS:
        r = mpqopt.solve(p, solver=solver, warm_start=x_opt)
        assert r.objective == pytest.approx(optimum, abs=_tol(p))
        assert violations(p, r.x, p.budgets) == []


# ------------------------------------------------------------------------------ measured quality
@pytest.mark.parametrize("name", ["iqp6-s0", "iqp7-s1-noisy", "iqp8-s2", "iqp7-tight", "sign7-2budgets", "sign7-3budgets-exact", "sign8-ties-fixed"])
def test_anneal_reaches_the_optimum_on_tiny_instances(cases, name):
    """Measured behaviour, not a guarantee: with seed 0 and the default schedule, annealing found the
    exhaustive optimum of each of these instances."""
    p, model, optimum, _ = cases[name]
    found = ls.anneal(model, separable_incumbent(model), seed=0)
    assert found.objective + model.offset == pytest.approx(optimum, abs=_tol(p))


# ------------------------------------------------------------------------------ budgets
def test_every_accepted_move_meets_the_budgets(cases, monkeypatch):
    """Wrap the state's move so every assignment a search visits is re-checked against the problem."""
    visited = []
    original = ls._State.apply

    def checked(self, new_items, delta):
        done = original(self, new_items, delta)
        visited.append((self.model, self.items.copy()))
        return done

    monkeypatch.setattr(ls._State, "apply", checked)
    for name in ("iqp7-tight", "sign7-3budgets-exact", "separable6-tight", "sign7-2budgets"):
        p, model, optimum, _ = cases[name]
        start = separable_incumbent(model)
        ls.anneal(model, start, seed=1, iterations=3000)
        ls.iterated_linearization(model, start, solve_separable=solve_separable)
        csq(model, seed=2, fallback=start, restarts=2)
        assert visited
        for m, items in visited:
            assert violations(p, m.expand(items), p.budgets) == []
        visited.clear()


def test_infeasible_start_is_refused_and_a_broken_warm_start_repaired(cases):
    p, model, optimum, _ = cases["iqp7-tight"]
    dearest = model.group_start[:-1] + np.argmax(
        np.array([model.weights[0, model.group_start[g]:model.group_start[g + 1]] for g in range(model.num_groups)]), axis=1)
    assert violations(p, model.expand(dearest), p.budgets)
    with pytest.raises(SolverError, match="meets every budget"):
        ls.two_opt(model, dearest)
    r = mpqopt.solve(p, solver="local", warm_start=model.expand(dearest))
    assert r.status == "feasible" and violations(p, r.x, p.budgets) == [] and "repaired" in r.stats["start"]


def test_jointly_infeasible_budgets_are_reported_infeasible():
    """Each budget alone can be met, both together cannot (the exact separable engine proves it)."""
    p = mpqopt.Problem(["a", "b"], [2, 8], [[1.0, 0.0], [1.0, 0.0]],
                       costs={"size": [[1, 2], [1, 2]], "speed": [[2, 1], [2, 1]]},
                       budgets={"size": 2, "speed": 2}, pairwise=np.ones((4, 4)))
    for solver in ("local", "anneal", "csq"):
        assert mpqopt.solve(p, solver=solver).status == "infeasible"


# ------------------------------------------------------------------------------ seeds, limits, names
def test_seeds_make_runs_deterministic_and_bad_arguments_fail():
    p = iqp_problem(20, seed=5, noise=0.5)
    for solver in ("anneal:7", "csq:7"):
        first, second = mpqopt.solve(p, solver=solver), mpqopt.solve(p, solver=solver)
        assert np.array_equal(first.x, second.x) and first.objective == second.objective
    for bad in ("anneal:x", "csq:-1", "local:3"):
        with pytest.raises(SolverError, match=bad.split(":")[0]):
            mpqopt.solve(p, solver=bad)


def test_time_limit_is_honoured():
    """Untimed, annealing runs 161,000 proposals here (~0.6 s) and CSQ 8 restarts: 0.05 s cuts both short."""
    p = iqp_problem(52, 3, seed=0, noise=0.5)
    model = canonicalize(p, p.budgets)
    for solver, done, full in (("anneal", "proposals", ls.default_anneal_iterations(model)), ("csq", "restarts", 8)):
        start = time.perf_counter()
        r = mpqopt.solve(p, solver=solver, time_limit=0.05)
        assert time.perf_counter() - start < 2.0  # generous: a loaded CI machine
        assert r.status == "feasible" and violations(p, r.x, p.budgets) == []
        assert r.stats["timed_out"] and "time limit" in r.message and r.stats[done] < full


def test_models_beyond_the_dense_limit_are_refused_with_a_reason():
    p = mckp_problem(ls.MAX_DENSE_ITEMS // 2, 4, budgets=1, seed=0)  # about 2x the limit in items
    r = mpqopt.solve(p, solver="local")
    assert r.status == "error" and "exceed" in r.message and r.x is None
