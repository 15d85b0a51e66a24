"""Scoped budgets (a budget over a subset of the layers) on every exact backend, against the
independent exhaustive oracle: block ranges, attention vs MLP, explicit layer lists and per-layer
caps, several scopes on one cost table beside a global budget on it, ties straddling a scope."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from fuzz import examples
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from oracle import brute_force

import mpqopt
from mpqopt import Budget
from mpqopt.verify import violations

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out

KINDS = ("attn", "mlp")


def _layer_names(L: int) -> list[str]:
    return [f"blk.{i // 2}.{KINDS[i % 2]}" for i in range(L)]


@st.composite
def scoped_problems(draw, max_layers: int = 6):
    """A problem with 1-2 cost tables, maybe ties, a fixed layer and a mask, and budgets: maybe a
    global one, and 1-3 scoped ones, each with the layers it sums worked out here (for the oracle)."""
    L = draw(st.integers(2, max_layers))
    K = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    layers = _layer_names(L)
    sens = rng.random((L, K)) * draw(st.sampled_from([1e-6, 1.0, 1e4]))
    if draw(st.booleans()):
        sens = np.round(sens * 3) / 3  # plateaus: equal values
    costs = {}
    for c in range(draw(st.integers(1, 2))):
        table = rng.integers(0, 5, (L, K)).astype(float) if draw(st.booleans()) else rng.random((L, K))
        costs[f"c{c}_bits"] = table * draw(st.sampled_from([1.0, 1e6]))
    allowed = None
    if draw(st.booleans()):
        allowed = rng.random((L, K)) < 0.75
        allowed[np.arange(L), rng.integers(0, K, L)] = True
    problem = mpqopt.Problem(layers, [f"W{k + 2}" for k in range(K)], sens, costs=costs, allowed=allowed)
    ties, fixed = [], {}
    if draw(st.booleans()):
        members = draw(st.lists(st.sampled_from(layers), min_size=2, max_size=3, unique=True))
        if problem.allowed[[layers.index(m) for m in members]].all(axis=0).any():
            ties = [members]
    if draw(st.booleans()):
        i = draw(st.integers(0, L - 1))
        fixed = {layers[i]: problem.options[int(rng.choice(np.nonzero(problem.allowed[i])[0]))].label}
    try:
        problem = problem.replace(ties=ties, fixed=fixed)
    except mpqopt.ProblemError:  # the tie and the fixed layer share no option: keep neither
        pass

    budgets, scopes = [], {}
    names = list(costs)
    blocks = (L + 1) // 2
    for s in range(draw(st.integers(1, 3))):
        cost = draw(st.sampled_from(names))
        kind = draw(st.sampled_from(["range", "kind", "list", "one"]))
        if kind == "range":
            a = draw(st.integers(0, blocks - 1))
            b = draw(st.integers(a, blocks - 1))
            patterns, members = [f"blk.{{{a}..{b}}}.*"], [n for n in layers if a <= int(n.split(".")[1]) <= b]
        elif kind == "kind":
            k = draw(st.sampled_from(KINDS))
            patterns, members = [f"*.{k}"], [n for n in layers if n.endswith("." + k)]
            if not members:  # one layer: no mlp
                patterns, members = ["*.attn"], [n for n in layers if n.endswith(".attn")]
        elif kind == "list":
            members = draw(st.lists(st.sampled_from(layers), min_size=1, max_size=L, unique=True))
            patterns = list(members)
        else:  # a per-layer cap
            members = [draw(st.sampled_from(layers))]
            patterns = list(members)
        budget = Budget(cost, 0.0, layers=patterns, name=f"s{s}")
        key = mpqopt.resolve_budgets(problem, [budget])  # only the key: its limit is drawn below
        (key,) = key
        lo, hi = problem.cost_range(key)
        frac = draw(st.sampled_from([-0.1, 0.0, 0.3, 0.6, 1.0]))
        budgets.append(Budget(cost, max(lo + frac * (hi - lo), 0.0), layers=patterns, name=f"s{s}"))
        scopes[key] = (cost, members)
    if draw(st.booleans()):  # a global budget on a table the scopes may share
        cost = draw(st.sampled_from(names))
        lo, hi = problem.cost_range(cost)
        budgets.append(Budget(cost, lo + draw(st.sampled_from([0.2, 0.5, 0.8])) * (hi - lo)))
    return problem, budgets, scopes


def _limits(problem, budgets) -> dict[str, float]:
    return mpqopt.resolve_budgets(problem, budgets)


def check_against_oracle(problem, budgets, scopes, solver):
    limits = _limits(problem, budgets)
    best, _ = brute_force(problem, limits, scopes=scopes)
    result = mpqopt.solve(problem, budgets=budgets, solver=solver)
    if best is None:
        assert result.status == "infeasible", result.message
        assert result.x is None and result.infeasibility is not None
        return result
    assert result.status == "optimal", result.message
    assert violations(problem, result.x, limits) == []
    tol = 1e-9 * problem.objective_scale
    assert result.objective == pytest.approx(best, rel=1e-9, abs=tol)
    assert result.bound <= result.objective + tol
    rows = np.arange(problem.num_layers)
    for key, limit in limits.items():
        cost, members = scopes.get(key, (key, problem.layers))
        idx = [problem.layers.index(n) for n in members]
        total = float(problem.costs[cost][rows, result.x][idx].sum())
        assert result.costs[key] == pytest.approx(total, rel=1e-12, abs=1e-300)
        assert result.slack[key] == pytest.approx(max(limit - total, 0.0), rel=1e-9, abs=1e-9 * max(limit, 1.0))
    return result


@pytest.mark.parametrize("solver", ["mckp", "bnb", "highs", "highs:plain", "bruteforce"])
@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=scoped_problems())
def test_exact_backends_match_oracle_with_scoped_budgets(solver, case):
    result = check_against_oracle(*case, solver=solver)
    event(f"status={result.status}, budgets={len(result.budgets)}, ties={bool(case[0].ties)}")


@pytest.mark.parametrize("solver", ["scipy", "pyomo"])
@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=scoped_problems(max_layers=5))
def test_milp_backends_match_oracle_with_scoped_budgets(solver, case):
    if solver == "pyomo" and importlib.util.find_spec("pyomo") is None:
        pytest.skip("pyomo is not installed")
    check_against_oracle(*case, solver=solver)


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=scoped_problems(max_layers=4))
def test_gurobi_matches_oracle_with_scoped_budgets(case):
    pytest.importorskip("gurobipy", reason="gurobipy is not installed")
    check_against_oracle(*case, solver="gurobi")  # tiny: within the size-limited licence


@pytest.mark.parametrize("solver", ["mckp", "bnb", "highs", "scipy"])
def test_one_scoped_budget_alone_and_two_stages_on_one_table(solver):
    """A single scoped budget (the one-budget engine path, a row with zeros) and a two-stage split of
    one cost table beside a global budget on it."""
    rng = np.random.default_rng(7)
    L, K = 8, 4
    layers = _layer_names(L)
    problem = mpqopt.Problem(layers, ["W2", "W3", "W4", "W8"], rng.random((L, K)),
                             costs={"size_bits": mpqopt.size_bits(rng.integers(10, 100, L), ["W2", "W3", "W4", "W8"])})
    stage0 = [n for n in layers if int(n.split(".")[1]) <= 1]
    cases = [
        ([Budget("size", "40%", layers="blk.{0..1}.*", name="stage0")], {"size_bits[stage0:blk.{0..1}.*]": ("size_bits", stage0)}),
        ([Budget("size", "60%"), Budget("size", "30%", layers="blk.{0..1}.*", name="stage0"),
          Budget("size", "70%", layers="blk.{2..3}.*", name="stage1")],
         {"size_bits[stage0:blk.{0..1}.*]": ("size_bits", stage0),
          "size_bits[stage1:blk.{2..3}.*]": ("size_bits", [n for n in layers if n not in stage0])}),
    ]
    for budgets, scopes in cases:
        result = check_against_oracle(problem, budgets, scopes, solver)
        assert result.status == "optimal"
