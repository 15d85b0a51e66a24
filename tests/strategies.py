"""Random problems and the exhaustive-oracle check that the property tests of several folders share
(tests/core, tests/solvers, tests/reductions): tests/ is on sys.path (tests/conftest.py), a test folder is
only while its own files run, so shared strategies live here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import event
from hypothesis import strategies as st
from oracle import brute_force

import mpqopt
from mpqopt.verify import BUDGET_RTOL, exact_integer, violations

MAGNITUDES = [1e-9, 1e-3, 1.0, 1e3, 1e7]
DATA = Path(__file__).resolve().parent / "data"


def pinned(name: str) -> tuple[mpqopt.Problem, dict[str, float]]:
    """A counterexample fuzzing found, kept in tests/data with its budgets (``@example``)."""
    problem = mpqopt.load(DATA / name)
    return problem, dict(problem.budgets)


# pyomo:appsi_highs and highs: HiGHS 1.16 returned the warm start as 'Optimal' with a presolved-space objective
HIGHS116_START_PRESOLVE = pinned("highs116_start_presolve.json")


@st.composite
def problems(draw, pairwise: bool = False):
    L = draw(st.integers(1, 6 if not pairwise else 5))
    K = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from(MAGNITUDES))
    sens = rng.random((L, K)) * scale
    if draw(st.booleans()):  # plateaus: equal and zero sensitivities
        sens = np.round(sens / scale * 3) * scale / 3
        sens[rng.random((L, K)) < 0.2] = 0.0
    if draw(st.booleans()):  # signed values (HAWQ-style objectives are negative)
        sens -= scale / 2
    n_costs = draw(st.integers(1, 3))
    costs = {}
    for c in range(n_costs):
        cost_scale = draw(st.sampled_from(MAGNITUDES))
        table = rng.integers(0, 5, (L, K)).astype(float) if draw(st.booleans()) else rng.random((L, K))
        costs[f"c{c}"] = table * cost_scale
    allowed = None
    if draw(st.booleans()):
        allowed = rng.random((L, K)) < 0.75
        allowed[np.arange(L), rng.integers(0, K, L)] = True
    problem_kwargs = dict(costs=costs, allowed=allowed)
    layers = [f"layer{i}" for i in range(L)]
    base = mpqopt.Problem(layers, [f"W{k + 2}" for k in range(K)], sens, **problem_kwargs)
    ties = []
    if L >= 2 and draw(st.booleans()):
        members = draw(st.lists(st.sampled_from(layers), min_size=2, max_size=3, unique=True))
        common = np.all(base.allowed[[layers.index(m) for m in members]], axis=0)
        if common.any():
            ties = [members]
    fixed = {}
    if draw(st.booleans()):
        name = draw(st.sampled_from(layers))
        i = layers.index(name)
        ok = np.nonzero(base.allowed[i])[0]
        fixed = {name: base.options[int(rng.choice(ok))].label}
    omega = None
    if pairwise:
        omega = rng.normal(size=(L * K, L * K)) * scale * draw(st.sampled_from([0.1, 1.0]))
    try:
        problem = base.replace(ties=ties, fixed=fixed, pairwise=omega)
    except mpqopt.ProblemError:  # tie/fixed combination with no common option: valid input rejection
        problem = base.replace(pairwise=omega)
    budgets = {}
    for name in costs:
        if draw(st.integers(0, 4)) > 0:
            lo, hi = problem.cost_range(name)
            frac = draw(st.sampled_from([-0.1, 0.0, 0.3, 0.5, 1.0]))
            budgets[name] = max(lo + frac * (hi - lo), 0.0)
    return problem, budgets


def _check_against_oracle(problem, budgets, solver):
    best, optimal_set = brute_force(problem, budgets)
    result = mpqopt.solve(problem, budgets=budgets, solver=solver)
    event(f"status={result.status}, ties={bool(problem.ties)}, fixed={bool(problem.fixed)}, budgets={len(budgets)}")
    if best is None:
        assert result.status == "infeasible", result.message
        assert result.x is None
        assert result.infeasibility is not None and result.infeasibility.message
        return
    assert result.status == "optimal", result.message
    assert violations(problem, result.x, budgets) == []
    # right relative to the problem's own magnitude (sensitivities of 1e-9 are as exact as of 1e7)
    tol = 1e-9 * problem.objective_scale
    assert result.objective == pytest.approx(best, rel=1e-9, abs=tol)
    assert result.gap is not None and result.gap <= 1e-9
    assert result.bound <= result.objective + tol
    for name, limit in budgets.items():
        assert result.costs[name] <= limit * (1 + 1e-9)
        # slack is never negative: a total within verify.BUDGET_RTOL above the limit meets it, slack 0
        assert result.slack[name] == pytest.approx(max(limit - result.costs[name], 0.0))
        assert limit - result.costs[name] >= -BUDGET_RTOL * max(abs(limit), abs(result.costs[name]))


# Problems with several budgets for the multi-budget core searches (tests/algorithms)
COST_MAGNITUDES = [1e-6, 1.0, 1e4, 1e10]


@st.composite
def several_budgets(draw):
    """Problems with two or three budgets, all set: random, plateaued or integer tables, budgets at
    fractions of their range or exactly at the totals of a random assignment (binding to the last
    bit), with masks, ties and fixed layers."""
    K = draw(st.integers(2, 4))
    L = draw(st.integers(2, {2: 12, 3: 9, 4: 7}[K]))  # at most ~20,000 assignments to enumerate
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from(MAGNITUDES))
    sens = rng.random((L, K)) * scale
    if draw(st.booleans()):  # plateaus: ties between options in value
        sens = np.round(sens / scale * 3) * scale / 3
    if draw(st.booleans()):
        sens -= scale / 2
    costs = {}
    for c in range(draw(st.integers(2, 3))):
        magnitude = draw(st.sampled_from(COST_MAGNITUDES))
        table = rng.integers(0, 5, (L, K)).astype(float) if draw(st.booleans()) else rng.random((L, K))
        if draw(st.booleans()):  # a budget some layers do not move (LIMPQ: size ignores activations)
            table[rng.random(L) < 0.5] = table[0].mean()
        costs[f"c{c}"] = table * magnitude
    allowed = None
    if draw(st.booleans()):
        allowed = rng.random((L, K)) < 0.75
        allowed[np.arange(L), rng.integers(0, K, L)] = True
    layers = [f"l{i}" for i in range(L)]
    problem = mpqopt.Problem(layers, [f"W{k + 2}" for k in range(K)], sens, costs=costs, allowed=allowed)
    if draw(st.booleans()):
        members = layers[:draw(st.integers(2, min(3, L)))]
        if np.all(problem.allowed[: len(members)], axis=0).any():
            problem = problem.replace(ties=[members])
    if draw(st.booleans()):
        i = L - 1
        option = int(rng.choice(np.nonzero(problem.allowed[i])[0]))
        try:
            problem = problem.replace(fixed={layers[i]: problem.options[option].label})
        except mpqopt.ProblemError:  # the layer is tied to others that cannot take that option
            pass
    budgets = {}
    mode = draw(st.sampled_from(["totals", "fractions", "within slack"]))
    if mode != "fractions":  # the totals of one random (valid) assignment: exactly, or less a
        # third of the relative slack is_feasible allows (the assignment then overuses each budget
        # by less than the slack and is feasible: bounds must not exclude it)
        x = np.array([rng.choice(np.nonzero(row)[0]) for row in problem.allowed])
        for tie in problem.ties:
            x[[layers.index(n) for n in tie]] = x[layers.index(tie[0])]
        for name, label in problem.fixed.items():
            x[layers.index(name)] = problem.option_labels.index(label)
        for name in costs:
            # (exact integer tables are checked to the unit, with no relative slack)
            shrink = 1.0 - BUDGET_RTOL / 3 if mode == "within slack" and not exact_integer(problem.costs[name]) else 1.0
            budgets[name] = float(problem.costs[name][np.arange(L), x].sum()) * shrink
    else:
        for name in costs:
            lo, hi = problem.cost_range(name)
            budgets[name] = lo + draw(st.sampled_from([0.0, 0.2, 0.5, 0.8, 1.0])) * (hi - lo)
    return problem, budgets


def all_assignments(model, keep=None):
    """Every assignment of the kept items ``(count, groups)`` and its weight totals, by brute force."""
    keep = np.ones(model.num_items, dtype=bool) if keep is None else keep
    if model.num_groups == 0:
        return np.zeros((1, 0), dtype=np.int64), np.zeros((model.num_budgets, 1))
    per_group = [np.nonzero(keep[model.group_start[g]:model.group_start[g + 1]])[0] + model.group_start[g] for g in range(model.num_groups)]
    grid = np.indices([p.size for p in per_group]).reshape(model.num_groups, -1)
    items = np.stack([p[i] for p, i in zip(per_group, grid)], axis=1)
    return items, model.weights[:, items].sum(axis=2)


def best_of_kept(model, keep):
    """Best objective over assignments of the kept items that meet every budget (as ``is_feasible``
    and ``verify`` check: within ``model.budget_slack``); None if there is none."""
    items, totals = all_assignments(model, keep)
    fits = (totals <= (model.rhs + model.budget_slack)[:, None]).all(axis=0)
    return float(model.value[items[fits]].sum(axis=1).min()) if fits.any() else None


def close_objectives(a: float, b: float, scale: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), scale)
