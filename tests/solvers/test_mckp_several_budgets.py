"""mckp with two and three budgets at the default mip_gap=0 (issue 19): every ``optimal`` is the
exact optimum of an independent oracle (exhaustive search on small problems, a dynamic programme
over small integer totals or HiGHS at gap 0 on medium ones), every bound is at most that optimum,
budgets met only at equality included; when the default's bounded proof stops, the result is
``feasible`` with a certified gap, and a time limit lets the proof run on instead."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from fuzz import examples
from hypothesis import HealthCheck, event, given, settings
from strategies import several_budgets

import mpqopt
from mpqopt.algorithms.meet_core import solve_meet_core
from mpqopt.algorithms.multi_core import solve_multi_core
from mpqopt.solvers import mckp as mckp_module
from mpqopt.synthetic import mckp_problem
from mpqopt.verify import violations
from oracle import brute_force


def _equality_problem(layers: int, options: int, budgets: int, seed: int, top: int = 9):
    """Integer costs where the budgets can only be met at equality: ``c1`` and ``c2 = top - c1``
    with ``B2 = top * layers - B1`` force ``sum c1 = B1`` exactly; ``B1`` (and ``B3`` of a third,
    independent cost) are the totals of a random assignment, so the budgets are achievable."""
    rng = np.random.default_rng(seed)
    sens = rng.random((layers, options)) * rng.uniform(0.1, 10.0)
    c1 = rng.integers(0, top + 1, (layers, options)).astype(float)
    costs = {"c1": c1, "c2": top - c1}
    x0 = rng.integers(0, options, layers)
    rows = np.arange(layers)
    limits = {"c1": float(c1[rows, x0].sum()), "c2": float(top * layers - c1[rows, x0].sum())}
    if budgets == 3:
        costs["c3"] = rng.integers(0, top + 1, (layers, options)).astype(float)
        limits["c3"] = float(costs["c3"][rows, x0].sum())
    problem = mpqopt.Problem([f"l{i}" for i in range(layers)], [f"W{k + 2}" for k in range(options)], sens, costs=costs)
    return problem, limits


def _dp_optimum(problem, limits: dict[str, float]) -> float:
    """Least objective with ``sum c1 == B1`` (what ``c1 <= B1`` and ``c2 <= B2`` force) and
    ``sum c3 <= B3``, by dynamic programming over the integer totals: independent of mpqopt's
    reductions and solvers."""
    c1 = problem.costs["c1"].astype(np.int64)
    c3 = problem.costs["c3"].astype(np.int64) if "c3" in limits else np.zeros_like(c1)
    b1, b3 = int(limits["c1"]), int(limits.get("c3", c3.max(axis=1).sum()))
    best = np.full((b1 + 1, b3 + 1), np.inf)
    best[0, 0] = 0.0
    for layer in range(problem.num_layers):
        step = np.full_like(best, np.inf)
        for k in range(problem.num_options):
            a, b = int(c1[layer, k]), int(c3[layer, k])
            shifted = np.full_like(best, np.inf)
            shifted[a:, b:] = best[: b1 + 1 - a, : b3 + 1 - b] + problem.sensitivity[layer, k]
            step = np.minimum(step, shifted)
        best = step
    return float(best[b1].min())


def _check(problem, limits, result, optimum: float, proven: bool = True) -> None:
    """``result`` against the exact ``optimum``: an answer that meets every budget, a bound at most
    the optimum; ``optimal`` means equal to it (to the round-off of the float sums)."""
    tol = 1e-9 * max(1.0, abs(optimum))
    assert result.status in (("optimal",) if proven else ("optimal", "feasible")), result.message
    assert violations(problem, result.x, limits) == []
    assert result.objective >= optimum - tol
    assert result.bound is not None and result.bound <= optimum + tol
    if result.status == "optimal":
        assert result.objective == pytest.approx(optimum, rel=1e-12, abs=tol)
        assert result.gap is not None and result.gap <= 1e-9


@pytest.mark.parametrize("budgets", [2, 3])
@pytest.mark.parametrize("seed", range(8))
def test_small_equality_budgets_match_brute_force(seed: int, budgets: int) -> None:
    problem, limits = _equality_problem(6, 4, budgets, seed)
    optimum, _ = brute_force(problem, limits)
    assert optimum == pytest.approx(_dp_optimum(problem, limits), rel=1e-12)  # the two oracles agree
    _check(problem, limits, mpqopt.solve(problem, budgets=limits, solver="mckp"), optimum)


@pytest.mark.parametrize("budgets", [2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_small_synthetic_problems_match_brute_force(seed: int, budgets: int) -> None:
    problem = mckp_problem(6, 4, budgets, seed=seed, budget_fraction=0.2 + 0.12 * seed)
    optimum, _ = brute_force(problem, problem.budgets)
    result = mpqopt.solve(problem, solver="mckp")
    if optimum is None:
        assert result.status == "infeasible"
        return
    _check(problem, result.budgets, result, optimum)


@pytest.mark.parametrize("budgets", [2, 3])
@pytest.mark.parametrize("seed", range(3))
def test_medium_equality_budgets_match_the_dp_oracle(seed: int, budgets: int) -> None:
    """40 layers: past the sizes where every path is the core DP at once; never an error status."""
    problem, limits = _equality_problem(40, 5, budgets, seed)
    _check(problem, limits, mpqopt.solve(problem, budgets=limits, solver="mckp"), _dp_optimum(problem, limits), proven=False)


@pytest.fixture
def no_core_dp(monkeypatch):
    """The core DP and the meet in the middle give up at once, so that the HiGHS cores below
    targets carry the proof."""
    monkeypatch.setattr(mckp_module, "solve_multi_core", functools.partial(solve_multi_core, work_limit=0))
    monkeypatch.setattr(mckp_module, "solve_meet_core", functools.partial(solve_meet_core, state_limit=0))




@pytest.fixture
def meet_proves(monkeypatch):
    """The core DP gives up, and neither the first cores nor HiGHS's quick look run, so that meeting
    in the middle carries the proof below the incumbent (HiGHS only where it gives up)."""
    monkeypatch.setattr(mckp_module, "solve_multi_core", functools.partial(solve_multi_core, work_limit=0))
    monkeypatch.setattr(mckp_module, "FIRST_CORE_GROUPS", ())
    monkeypatch.setattr(mckp_module, "QUICK_PROOF_SECONDS", 0.0)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=several_budgets())
def test_meet_in_the_middle_path_matches_the_exhaustive_oracle(meet_proves, case) -> None:
    """Random small problems (ties, plateaus, masks, fixed layers, budgets at or just under an
    assignment's totals) through the meet in the middle below rising targets: ``optimal`` is the
    exhaustive optimum, and the bound never exceeds it, whichever stage closes the gap."""
    problem, budgets = case
    best, _ = brute_force(problem, budgets)
    result = mpqopt.solve(problem, budgets=budgets, solver="mckp")
    if best is None:
        assert result.status == "infeasible", result.message
        return
    event("meet in the middle" if "meet in the middle" in result.message else result.message.split(" (")[0][:60])
    tol = 1e-9 * problem.objective_scale
    assert result.status == "optimal", result.message
    assert violations(problem, result.x, budgets) == []
    assert abs(result.objective - best) <= tol
    assert result.bound <= best + tol


@pytest.mark.parametrize("top", [2**4, 2**20, 2**49])
def test_meet_in_the_middle_path_on_large_integer_costs(meet_proves, top: int) -> None:
    """Integer cost tables up to 2**49 per entry (totals just under 2**53, checked to the unit),
    budgets at or one or two units under a random assignment's totals (met only near equality),
    plateaued or random sensitivities: every result against exhaustive search with exact budgets."""
    for seed in range(25):
        rng = np.random.default_rng(seed)
        layers, options, count = int(rng.integers(5, 8)), int(rng.integers(2, 5)), int(rng.integers(2, 4))
        sens = np.round(rng.random((layers, options)) * 3) / 3 if seed % 2 else rng.random((layers, options))
        costs = {f"c{i}": rng.integers(0, top, (layers, options)).astype(float) for i in range(count)}
        x = rng.integers(0, options, layers)
        limits = {name: float(table[np.arange(layers), x].sum()) - float(rng.integers(0, 3)) for name, table in costs.items()}
        problem = mpqopt.Problem([f"l{i}" for i in range(layers)], [f"W{k + 2}" for k in range(options)], sens, costs=costs)
        optimum, _ = brute_force(problem, limits, rtol=0.0)  # exact integer totals: no relative slack
        result = mpqopt.solve(problem, budgets=limits, solver="mckp")
        if optimum is None:
            assert result.status == "infeasible", (seed, result.message)
        else:
            _check(problem, limits, result, optimum)


# each proof route on its own (the fixture switches the others off), against HiGHS at mip_gap=0
PROOF_ROUTES = [pytest.param("no_core_dp", "HiGHS core", marks=pytest.mark.slow, id="highs-core"),
                pytest.param("meet_proves", "meet in the middle", id="meet-in-the-middle")]


@pytest.mark.parametrize(("route", "route_message"), PROOF_ROUTES)
@pytest.mark.parametrize("budgets", [2, 3])
@pytest.mark.parametrize("seed", range(3))
def test_proof_route_matches_exact_highs(request, route: str, route_message: str, seed: int, budgets: int) -> None:
    request.getfixturevalue(route)
    problem = mckp_problem(80, 6, budgets, seed=seed, budget_fraction=0.35)
    exact = mpqopt.solve(problem, solver="highs:plain", threads=1)
    assert exact.status == "optimal"
    result = mpqopt.solve(problem, solver="mckp", threads=1)
    assert route_message in result.message, result.message
    # HiGHS's own optimum holds to its tolerances (~1e-9 relative): the oracle is that loose
    _check(problem, result.budgets, result, exact.objective)


@pytest.mark.parametrize("budgets", [2, 3])
@pytest.mark.parametrize("seed", range(3))
def test_equality_budgets_through_the_meet_in_the_middle(meet_proves, seed: int, budgets: int) -> None:
    """Budgets met only at equality: the windows of unused budget are a few units of round-off."""
    problem, limits = _equality_problem(60, 5, budgets, seed)
    result = mpqopt.solve(problem, budgets=limits, solver="mckp", threads=1, time_limit=600)
    _check(problem, limits, result, _dp_optimum(problem, limits))


@pytest.mark.slow
def test_stopped_proof_reports_a_certified_gap_and_a_time_limit_lifts_the_cap(no_core_dp, monkeypatch) -> None:
    """Without a time limit the exact proof gets PROOF_SECONDS (0 here): the result is ``feasible``
    with a bound at most the optimum and says why; with a time limit the proof runs to the end.
    (No first cores: on these small problems they often prove the optimum themselves.)"""
    monkeypatch.setattr(mckp_module, "PROOF_SECONDS", 0.0)
    monkeypatch.setattr(mckp_module, "FIRST_CORE_GROUPS", ())
    stopped = 0
    for seed in range(3):
        problem = mckp_problem(80, 6, 3, seed=seed, budget_fraction=0.35)
        optimum = mpqopt.solve(problem, solver="highs:plain", threads=1).objective
        capped = mpqopt.solve(problem, solver="mckp", threads=1)
        _check(problem, capped.budgets, capped, optimum, proven=False)
        if capped.status == "feasible":
            stopped += 1
            assert "the exact proof stopped" in capped.message and capped.gap > 0
        _check(problem, capped.budgets, mpqopt.solve(problem, solver="mckp", threads=1, time_limit=600), optimum)
    assert stopped  # the cap was reached at least once: the case is exercised


@pytest.mark.slow
@pytest.mark.parametrize("budgets", [2, 3])
@pytest.mark.parametrize("seed", range(3))
def test_equality_budgets_through_the_highs_cores(no_core_dp, seed: int, budgets: int) -> None:
    """Budgets met only at equality, proved by HiGHS on the cores (the DP switched off): HiGHS's
    tolerances must neither lose the optimum nor end in an error status."""
    problem, limits = _equality_problem(60, 5, budgets, seed)
    result = mpqopt.solve(problem, budgets=limits, solver="mckp", threads=1, time_limit=600)
    _check(problem, limits, result, _dp_optimum(problem, limits))


@pytest.mark.slow
def test_a_time_limit_ends_the_proof_with_status_time_limit_and_a_valid_bound() -> None:
    """mckp_problem(2000, 8, 3, seed=1): its proof core takes HiGHS 40+ s; under a 3 s limit the
    result is the best assignment with the bound proved by then (not 'feasible': the limit ended it)."""
    problem = mckp_problem(2000, 8, 3, seed=1)
    result = mpqopt.solve(problem, solver="mckp", threads=1, time_limit=3)
    assert result.status in ("time_limit", "optimal"), result.message
    assert violations(problem, result.x, result.budgets) == []
    assert result.bound is not None and result.bound <= result.objective
    if result.status == "time_limit":
        assert "time limit of 3 s" in result.message and result.gap > 0


def _exact_total_problem(layers: int, options: int, budgets: int, seed: int, bits: int = 24, minus: int = 0):
    """Integer costs near ``2**bits`` where ``u <= S`` and ``v = T - u <= L*T - S - minus`` force
    ``sum u == S`` (``minus=1``: no assignment meets both); the sensitivity ``max(u) - u`` makes
    every assignment at ``sum u == S`` optimal, so the optimum is ``sum(max u) - S`` exactly (an
    oracle at any size). A third budget is met by the random assignment defining ``S``."""
    rng = np.random.default_rng(seed)
    top = 2 ** (bits + 2)
    u = rng.integers(2**bits, 2 ** (bits + 1), (layers, options))
    x0 = rng.integers(0, options, layers)
    rows = np.arange(layers)
    total = int(u[rows, x0].sum())
    costs = {"u": u, "v": top - u}
    limits = {"u": total, "v": layers * top - total - minus}
    if budgets == 3:
        costs["w"] = rng.integers(2**bits, 2 ** (bits + 1), (layers, options))
        limits["w"] = int(costs["w"][rows, x0].sum())
    sens = (u.max(axis=1, keepdims=True) - u).astype(float)
    problem = mpqopt.Problem([f"l{i}" for i in range(layers)], [f"W{k + 2}" for k in range(options)], sens, costs={n: c.astype(float) for n, c in costs.items()})
    return problem, {n: float(v) for n, v in limits.items()}, int(u.max(axis=1).sum()) - total


@pytest.mark.parametrize("solver", ["mckp", "highs"])
@pytest.mark.parametrize("budgets", [2, 3])
@pytest.mark.parametrize("seed", range(2))
def test_large_exact_total_budgets_are_proven(solver: str, budgets: int, seed: int) -> None:
    """300 x 8 with costs near 2**24: HiGHS accepts totals ~1e-7 of a row off (hundreds of units),
    its answers used to end in 'error' ("could not be repaired"); the exact fix closes them."""
    problem, limits, optimum = _exact_total_problem(300, 8, budgets, seed)
    # each proves these in under a second; highs used to find the optimum and then run into the time
    # limit (its MILP, accepting rows ~1e-7 of their scale over, never closed the proof): its rounded
    # LP solution meets the LP bound, which now proves it before any MILP
    result = mpqopt.solve(problem, budgets=limits, solver=solver, threads=1, time_limit=120)
    _check_exact_total(problem, limits, optimum, result)


def _check_exact_total(problem: mpqopt.Problem, limits: dict, optimum: int, result: mpqopt.Result) -> None:
    assert result.status == "optimal", result.message
    rows = np.arange(problem.num_layers)
    for name, limit in limits.items():
        assert int(problem.costs[name][rows, result.x].sum()) <= limit  # to the unit
    assert result.objective == optimum
    assert result.bound is not None and optimum - 0.5 <= result.bound <= optimum


@pytest.mark.parametrize("bits", [30, 41])
@pytest.mark.parametrize("budgets", [2, 3])
def test_highs_proves_exact_totals_at_large_integer_costs(bits: int, budgets: int) -> None:
    """Costs near 2**30 and 2**41 (totals near 2**49): HiGHS's row tolerance is then thousands to
    billions of units, its own bound far short of the optimum; the LP bound, within half a unit
    of it, proves the rounded LP solution."""
    problem, limits, optimum = _exact_total_problem(200, 8, budgets, seed=2, bits=bits)
    result = mpqopt.solve(problem, budgets=limits, solver="highs", threads=1, time_limit=120)
    _check_exact_total(problem, limits, optimum, result)
    assert "meets it, proven optimal" in result.message


@pytest.mark.slow  # 3-30 s: the exact fix's rounds run before the solvers conclude 'infeasible'
@pytest.mark.parametrize("solver", ["mckp", "highs"])
def test_one_unit_short_of_the_exact_total_is_infeasible(solver: str) -> None:
    problem, limits, _ = _exact_total_problem(300, 8, 2, 0, minus=1)
    assert mpqopt.solve(problem, budgets=limits, solver=solver, threads=1, time_limit=120).status == "infeasible"
