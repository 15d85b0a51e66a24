"""Accuracy-target mode: least cost subject to total predicted loss <= max_loss, against an
independent exhaustive oracle and against the Pareto frontier."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from fuzz import examples
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import mpqopt
from mpqopt.errors import ArgumentError, SolverError
from mpqopt.verify import violations

MAGNITUDES = [1e-6, 1.0, 1e4]


def enumerate_all(problem: mpqopt.Problem):
    """Every assignment the ties, masks and fixed layers allow, as (x, loss, costs), computed
    with plain sums over the tables (no mpqopt code)."""
    L, K = problem.num_layers, problem.num_options
    index = {name: i for i, name in enumerate(problem.layers)}
    labels = [o.label for o in problem.options]
    omega = None
    if problem.pairwise is not None:
        omega = np.asarray(problem.pairwise.todense() if hasattr(problem.pairwise, "todense") else problem.pairwise)
    for x in itertools.product(range(K), repeat=L):
        if not all(problem.allowed[l, x[l]] for l in range(L)):
            continue
        if any(x[index[n]] != labels.index(lab) for n, lab in problem.fixed.items()):
            continue
        if any(len({x[index[n]] for n in group}) > 1 for group in problem.ties):
            continue
        loss = sum(problem.sensitivity[l, x[l]] for l in range(L))
        if omega is not None:
            flat = [l * K + x[l] for l in range(L)]
            loss += sum(omega[i, j] for i in flat for j in flat)
        costs = {name: sum(table[l, x[l]] for l in range(L)) for name, table in problem.costs.items()}
        yield np.array(x), loss, costs


def oracle(problem, minimize, max_loss, budgets):
    """(least cost, least loss under the budgets alone) by enumeration; None where nothing qualifies."""
    tol = 1e-12 * problem.objective_scale
    best, least = None, None
    for _, loss, costs in enumerate_all(problem):
        if any(costs[n] > limit + 1e-12 * abs(limit) for n, limit in budgets.items()):
            continue
        least = loss if least is None else min(least, loss)
        if loss <= max_loss + tol and (best is None or costs[minimize] < best):
            best = costs[minimize]
    return best, least


@st.composite
def cases(draw, pairwise: bool = False):
    L = draw(st.integers(1, 5 if not pairwise else 4))
    K = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from(MAGNITUDES))
    sens = rng.random((L, K)) * scale
    if draw(st.booleans()):  # signed losses (HAWQ-style)
        sens -= scale / 2
    if draw(st.booleans()):  # plateaus: equal losses
        sens = np.round(sens / scale * 2) * scale / 2
    costs = {"size_bits": rng.integers(0, 9, (L, K)).astype(float) * draw(st.sampled_from(MAGNITUDES))}
    if draw(st.booleans()):
        costs["latency_ms"] = rng.random((L, K))
    allowed = None
    if draw(st.booleans()):
        allowed = rng.random((L, K)) < 0.75
        allowed[np.arange(L), rng.integers(0, K, L)] = True
    layers = [f"l{i}" for i in range(L)]
    problem = mpqopt.Problem(layers, [f"W{k + 2}" for k in range(K)], sens, costs=costs, allowed=allowed)
    if L >= 2 and draw(st.booleans()):
        try:
            problem = problem.replace(ties=[layers[:2]])
        except mpqopt.ProblemError:  # no common option: valid input rejection
            pass
    if draw(st.booleans()):
        i = draw(st.integers(0, L - 1))
        try:
            problem = problem.replace(fixed={layers[i]: problem.options[int(np.nonzero(problem.allowed[i])[0][0])].label})
        except mpqopt.ProblemError:
            pass
    if pairwise:
        problem = problem.replace(pairwise=rng.normal(size=(L * K, L * K)) * scale * draw(st.sampled_from([0.1, 1.0])))
    budgets = {}
    if "latency_ms" in costs and draw(st.booleans()):
        lo, hi = problem.cost_range("latency_ms")
        budgets["latency_ms"] = lo + draw(st.sampled_from([0.0, 0.5, 1.0])) * (hi - lo)
    losses = sorted(loss for _, loss, _ in enumerate_all(problem))
    # a limit below every loss, at an achievable loss (binding), between two, or above all
    pick = draw(st.sampled_from(["below", "at", "between", "above"]))
    i = draw(st.integers(0, len(losses) - 1))
    span = max(losses[-1] - losses[0], scale)
    max_loss = {"below": losses[0] - 0.1 * span, "at": losses[i], "between": losses[i] + 1e-3 * span, "above": losses[-1] + span}[pick]
    return problem, budgets, float(max_loss)


def check(problem, budgets, max_loss, solver):
    best, least = oracle(problem, "size_bits", max_loss, budgets)
    result = mpqopt.solve(problem, budgets=budgets, solver=solver, minimize="size", max_loss=max_loss)
    event(f"status={result.status}")
    assert result.minimize == "size_bits" and result.max_loss == max_loss
    if best is None:
        assert result.status == "infeasible", result.message
        assert result.x is None and result.infeasibility is not None
        if least is not None:  # the other budgets can be met: the diagnosis gives the least loss they allow
            assert result.infeasibility.unmet == ["max_loss"]
            assert result.infeasibility.cheapest["max_loss"] == pytest.approx(least, rel=1e-9, abs=1e-9 * problem.objective_scale)
        return
    assert result.status == "optimal", result.message
    assert violations(problem, result.x, budgets, max_loss) == []
    evaluation = problem.evaluate(result.x)
    assert result.objective == evaluation.costs["size_bits"] and result.loss == evaluation.objective
    assert result.objective == pytest.approx(best, rel=1e-9, abs=1e-9 * np.abs(problem.costs["size_bits"]).max(axis=1).sum())
    assert result.bound is not None and result.bound <= result.objective
    assert result.gap is not None and result.gap <= 1e-9


@pytest.mark.parametrize("solver", ["auto", "highs", "bnb"])
@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_separable_target_matches_oracle(solver, case):
    check(*case, solver=solver)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(pairwise=True))
def test_pairwise_target_matches_oracle(case):
    check(*case, solver="auto")


@pytest.mark.parametrize("seed", range(6))
def test_target_agrees_with_the_full_pareto_frontier(seed):
    """Min cost at loss <= eps is the frontier point of least cost with objective <= eps, and each
    frontier point's loss, as a limit, gives back exactly that point's cost."""
    rng = np.random.default_rng(seed)
    L, K = 6, 4
    p = mpqopt.Problem([f"l{i}" for i in range(L)], [2, 3, 4, 8], rng.random((L, K)) - 0.2,
                       costs={"size_bits": rng.integers(1, 20, (L, K)).astype(float)})
    frontier = mpqopt.pareto(p, cost="size_bits")
    for pt in frontier.points:
        r = mpqopt.solve(p, minimize="size_bits", max_loss=pt.objective)
        assert r.status == "optimal" and r.objective == pytest.approx(pt.cost) and r.loss <= pt.objective + 1e-12
    losses = [pt.objective for pt in frontier.points]
    for eps in np.linspace(min(losses), max(losses), 7):
        expected = min(pt.cost for pt in frontier.points if pt.objective <= eps)
        assert mpqopt.solve(p, minimize="size_bits", max_loss=float(eps)).objective == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(3))
def test_pairwise_target_agrees_with_sampled_frontier(seed):
    """At each sampled point (least loss at cost <= b), the least cost at that loss is at most the
    point's cost, and spending it gives back that loss: the two problems answer each other."""
    rng = np.random.default_rng(seed)
    L, K = 5, 3
    p = mpqopt.Problem([f"l{i}" for i in range(L)], [2, 4, 8], rng.random((L, K)),
                       costs={"size_bits": rng.integers(1, 20, (L, K)).astype(float)}, pairwise=rng.normal(size=(L * K, L * K)) * 0.05)
    frontier = mpqopt.pareto(p, cost="size_bits", points=6)
    for pt in frontier.points:
        r = mpqopt.solve(p, minimize="size_bits", max_loss=pt.objective)
        assert r.status == "optimal" and r.objective <= pt.cost + 1e-9
        back = mpqopt.solve(p, budgets={"size_bits": r.objective})
        assert back.objective == pytest.approx(pt.objective, abs=1e-9)


def test_minimize_without_max_loss_is_the_cheapest_assignment():
    p = mpqopt.Problem(["a", "b"], [2, 4, 8], [[0.9, 0.2, 0.0], [0.5, 0.1, 0.0]], costs={"size_bits": [[2, 4, 8], [20, 40, 80]]},
                       pairwise=np.eye(6) * 0.01)
    r = mpqopt.solve(p, minimize="size")
    assert r.status == "optimal" and r.objective == p.cost_range("size_bits")[0] and r.max_loss is None
    assert r.loss == pytest.approx(p.evaluate(r.x).objective)


def test_arguments_are_checked():
    p = mpqopt.Problem(["a"], [2, 4], [[0.5, 0.0]], costs={"size_bits": [[2, 4]]})
    with pytest.raises(ArgumentError, match="max_loss needs minimize"):
        mpqopt.solve(p, max_loss=0.1)
    with pytest.raises(ArgumentError, match="minimize='bits'"):
        mpqopt.solve(p, minimize="bits", max_loss=0.1)
    for bad in (float("nan"), float("inf"), "0.1", True):
        with pytest.raises(ArgumentError, match="max_loss must be a finite number"):
            mpqopt.solve(p, minimize="size", max_loss=bad)


def test_pairwise_with_a_backend_that_cannot_take_it_names_what_can():
    p = mpqopt.Problem(["a", "b"], [2, 4], [[0.5, 0.0], [0.3, 0.0]], costs={"size_bits": [[2, 4], [2, 4]]}, pairwise=np.eye(4) * 0.1)
    with pytest.raises(SolverError, match="'auto' or 'highs'"):
        mpqopt.solve(p, minimize="size", max_loss=0.5, solver="bnb")


def test_result_says_what_was_minimized():
    p = mpqopt.Problem(["a", "b"], [4, 8], [[0.5, 0.0], [0.1, 0.0]], costs={"size_bits": [[4, 8], [4, 8]]})
    r = mpqopt.solve(p, minimize="size_bits", max_loss=0.2)
    d = r.to_dict()
    assert (d["minimize"], d["objective"], d["loss"], d["max_loss"]) == ("size_bits", 12.0, pytest.approx(0.1), 0.2)
    assert "minimized 'size_bits' = 12" in str(r) and "size_bits = 12 (minimized)" in r.table()
    plain = mpqopt.solve(p, budgets={"size_bits": 12})
    assert plain.to_dict()["minimize"] == "loss" and plain.loss == plain.objective and plain.max_loss is None
