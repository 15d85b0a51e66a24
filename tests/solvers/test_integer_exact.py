"""Integer data is exact data (issue 19): with integer costs and sensitivities whose totals stay below
2**53, float64 sums are exact, so every exact backend's answer is checked in integer arithmetic
against an independent integer oracle: budgets to the unit (one unit over is a violation, a budget
one unit below the only reachable total is infeasible), 'optimal' only at the exact optimum, and
every bound at most the exact optimum. Never an 'error' status.

Two instance families: random costs of 2**40..2**50 on a few layers (exhaustive int64 oracle), and
larger ones whose huge per-layer constants hide small integer choices (dynamic programming oracle
over the small parts), which reach the engines' core searches and HiGHS cores.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mpqopt
from mpqopt.solvers import backend_class

EXACT_SOLVERS = [s for s in ("mckp", "highs", "highs:plain", "scipy", "gurobi", "pyomo", "bnb", "bruteforce") if backend_class(s).available()]
pytestmark = pytest.mark.slow  # ~75 s in all (bnb and pyomo 7-14 s each on the hypothesis family)
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def _problem(sens: np.ndarray, costs: dict[str, np.ndarray]) -> mpqopt.Problem:
    L, K = sens.shape
    return mpqopt.Problem([f"l{i}" for i in range(L)], [f"W{k + 2}" for k in range(K)], sens.astype(np.float64),
                          costs={n: c.astype(np.float64) for n, c in costs.items()})


def enumerated_optimum(sens: np.ndarray, costs: dict[str, np.ndarray], limits: dict[str, int]) -> int | None:
    """Least total sensitivity over every assignment meeting every ``total <= limit``, in int64; None: none does."""
    L, K = sens.shape
    x = np.array(list(itertools.product(range(K), repeat=L)), dtype=np.int64)
    rows = np.arange(L)
    ok = np.ones(len(x), dtype=bool)
    for name, limit in limits.items():
        ok &= costs[name][rows, x].sum(axis=1) <= limit
    return int(sens[rows, x].sum(axis=1)[ok].min()) if ok.any() else None


def _check(solver: str, sens: np.ndarray, costs: dict[str, np.ndarray], limits: dict[str, int], best: int | None) -> mpqopt.Result:
    """Solve and check the answer in integer arithmetic against the oracle's ``best``."""
    problem = _problem(sens, costs)
    result = mpqopt.solve(problem, {n: float(v) for n, v in limits.items()}, solver=solver, time_limit=30)
    assert result.status != "error", result.message
    if best is None:
        assert result.status == "infeasible", (result.status, result.message)
        return result
    assert result.status != "infeasible", result.message
    if result.x is not None:
        rows = np.arange(sens.shape[0])
        for name, limit in limits.items():
            assert int(costs[name][rows, result.x].sum()) <= limit, f"budget {name} broken by {int(costs[name][rows, result.x].sum()) - limit}"
        objective = int(sens[rows, result.x].sum())
        assert result.objective == objective  # float64 holds it exactly
        assert objective >= best
        if result.status == "optimal":
            assert objective == best, f"'optimal' {objective} is {objective - best} above the exact optimum {best}"
    if result.bound is not None:
        assert result.bound <= best, f"bound {result.bound:.17g} is above the exact optimum {best}"
    return result


@st.composite
def big_instances(draw):
    """A few layers with costs of 2**40..2**50 (totals below 2**53), one to three budgets, each at a
    fraction of its range, at a reachable total (feasible only at or below it) or one unit below one."""
    L, K, m = draw(st.integers(2, 6)), draw(st.integers(2, 4)), draw(st.integers(1, 3))
    bits = draw(st.integers(40, 49))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    costs = {f"c{i}": rng.integers(2**bits, 2**(bits + 1), (L, K)) for i in range(m)}
    if draw(st.booleans()):  # subset-sum-like: sensitivity mirrors the first cost
        sens = costs["c0"].max(axis=1, keepdims=True) - costs["c0"]
    else:
        sens = rng.integers(0, 2**bits, (L, K))
    limits = {}
    for name, c in costs.items():
        how = draw(st.sampled_from(["fraction", "reachable", "reachable - 1"]))
        if how == "fraction":
            lo, hi = int(c.min(axis=1).sum()), int(c.max(axis=1).sum())
            limits[name] = lo + int((hi - lo) * draw(st.sampled_from([0.0, 0.3, 0.5, 0.9])))
        else:
            total = int(c[np.arange(L), rng.integers(0, K, L)].sum())
            limits[name] = total - (how == "reachable - 1")
    return sens, costs, limits


@pytest.mark.parametrize("solver", EXACT_SOLVERS)
@settings(max_examples=25, **SETTINGS)
@given(instance=big_instances())
def test_large_integers_are_exact(solver, instance):
    sens, costs, limits = instance
    best = enumerated_optimum(sens, costs, limits)
    result = _check(solver, sens, costs, limits, best)
    if solver in ("mckp", "bruteforce") and len(limits) == 1 and best is not None:
        assert result.status == "optimal", result.message  # exact engines prove one budget


@pytest.mark.parametrize("solver", EXACT_SOLVERS)
@pytest.mark.parametrize("minus", [0, 1])
def test_two_budgets_met_only_at_equality(solver, minus):
    """``c1 = T - c0`` on every item: ``c0 <= S`` and ``c1 <= L*T - S`` hold only where ``c0`` totals
    exactly ``S``; with the second limit one unit lower no assignment meets both (costs near 2**49)."""
    rng = np.random.default_rng(3)
    L, K, T = 5, 4, 2**49
    c0 = rng.integers(2**47, 2**48, (L, K))
    x = rng.integers(0, K, L)
    S = int(c0[np.arange(L), x].sum())
    costs = {"c0": c0, "c1": T - c0}
    limits = {"c0": S, "c1": L * T - S - minus}
    sens = c0.max(axis=1, keepdims=True) - c0
    best = enumerated_optimum(sens, costs, limits)
    assert (best is None) == bool(minus)
    _check(solver, sens, costs, limits, best)


def offset_instance(L: int, K: int, m: int, seed: int, R: int = 20, big: int = 2**44):
    """Costs and sensitivities ``big * a_l + small`` with ``a_l`` fixed per layer (totals near 2**50)
    and small parts in ``[0, R]``: the choices are a small integer problem, the magnitudes huge."""
    rng = np.random.default_rng(seed)
    small = [rng.integers(0, R + 1, (L, K)) for _ in range(m)]
    e = rng.integers(0, R + 1, (L, K))
    a, c = rng.integers(1, 4, (L, 1)), rng.integers(1, 4, (L, 1))
    costs = {f"c{i}": big * a + s for i, s in enumerate(small)}
    caps = [int(s.min(axis=1).sum()) + int((s.max(axis=1).sum() - s.min(axis=1).sum()) * rng.uniform(0.2, 0.8)) for s in small]
    limits = {f"c{i}": big * int(a.sum()) + cap for i, cap in enumerate(caps)}
    return big * c + e, costs, limits, (small, e, caps, big * int(c.sum()))


def dp_optimum(small: list[np.ndarray], e: np.ndarray, caps: list[int], constant: int) -> int | None:
    """Exact optimum of an :func:`offset_instance` by dynamic programming over the small budget totals."""
    shape = tuple(cap + 1 for cap in caps)
    inf = np.iinfo(np.int64).max // 4
    table = np.full(shape, inf, dtype=np.int64)
    table[(0,) * len(caps)] = 0
    for layer in range(e.shape[0]):
        new = np.full(shape, inf, dtype=np.int64)
        for k in range(e.shape[1]):
            shift = [int(s[layer, k]) for s in small]
            if any(d >= n for d, n in zip(shift, shape)):
                continue
            src = tuple(slice(0, n - d) for d, n in zip(shift, shape))
            dst = tuple(slice(d, n) for d, n in zip(shift, shape))
            np.minimum(new[dst], table[src] + int(e[layer, k]), out=new[dst])
        table = new
    least = int(table.min())
    return None if least >= inf else least + constant


@pytest.mark.parametrize("solver", [s for s in EXACT_SOLVERS if s not in ("bruteforce", "bnb")])
@pytest.mark.parametrize("m", [1, 2, 3])
def test_huge_constants_small_choices(solver, m):
    """30 layers x 6 options with totals near 2**50: a relative tolerance of 1e-12 there is ~1,000
    units, more than every choice is worth; answers must still be exact to the unit."""
    for seed in range(4):
        sens, costs, limits, parts = offset_instance(30 if m < 3 else 12, 6 if m < 3 else 4, m, seed)
        _check(solver, sens, costs, limits, dp_optimum(*parts))


def test_mckp_proves_huge_constants_one_budget():
    """The one-budget engine proves these to the unit (no relative tolerance stands in its way)."""
    for seed in range(6):
        sens, costs, limits, parts = offset_instance(40, 6, 1, seed)
        assert _check("mckp", sens, costs, limits, dp_optimum(*parts)).status == "optimal"


def resolution_instance(L: int, K: int, seed: int, R: int = 20):
    """Sensitivities ``2**44 * a + e`` (``a`` in 0..2 falling as the option gets dearer, ``e`` below
    1,000) and small integer costs: options differ by units far below a MILP solver's tolerance in
    its normalized objective (HiGHS 1.16 and scipy called answers 1,000-4,000 units above the
    optimum 'Optimal', with bounds above it)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(0, R + 1, (L, K))
    a = np.take_along_axis(np.sort(rng.integers(0, 3, (L, K)), axis=1)[:, ::-1], np.argsort(np.argsort(w, axis=1), axis=1), axis=1)
    sens = 2**44 * a + rng.integers(0, 1000, (L, K))
    cap = int(w.min(axis=1).sum() + (w.max(axis=1).sum() - w.min(axis=1).sum()) // 2)
    return sens, {"c0": w}, {"c0": cap}, ([w], sens, [cap], 0)


@pytest.mark.parametrize("solver", [s for s in EXACT_SOLVERS if s not in ("bruteforce", "bnb")])
def test_objective_differences_below_solver_tolerance(solver):
    for seed in range(3):
        sens, costs, limits, parts = resolution_instance(60, 8, seed)
        result = _check(solver, sens, costs, limits, dp_optimum(*parts))
        if solver == "mckp":
            assert result.status == "optimal", result.message
