"""Frontiers that tell the truth: every bound a frontier returns lies at or below the exhaustive
optimum at that cost (pairwise terms and other budgets included), every point and uniform point
shown meets every budget, and the plot draws points as points (checked on matplotlib's Agg objects)."""

from __future__ import annotations

import numpy as np
import pytest
from fuzz import examples
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import mpqopt
from mpqopt.algorithms import frontier_bound
from mpqopt.verify import violations


def enumerate_all(problem: mpqopt.Problem) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Every allowed assignment (rows), its objective and its cost totals, by plain numpy sums."""
    L, K = problem.num_layers, problem.num_options
    x = np.indices((K,) * L).reshape(L, -1).T
    ok = problem.allowed[np.arange(L), x].all(axis=1)
    labels = [o.label for o in problem.options]
    for name, label in problem.fixed.items():
        ok &= x[:, problem.layers.index(name)] == labels.index(label)
    for group in problem.ties:
        idx = [problem.layers.index(n) for n in group]
        ok &= (x[:, idx] == x[:, idx[:1]]).all(axis=1)
    x = x[ok]
    rows = np.arange(L)
    objective = problem.sensitivity[rows, x].sum(axis=1)
    if problem.pairwise is not None:
        omega = np.asarray(problem.pairwise)
        flat = rows * K + x
        objective = objective + omega[flat[:, :, None], flat[:, None, :]].sum(axis=(1, 2))
    return x, objective, {name: table[rows, x].sum(axis=1) for name, table in problem.costs.items()}


def exhaustive_optimum(enumerated, budgets: dict[str, float]) -> float:
    """Least objective with every cost within its budget (inf if none)."""
    _, objective, costs = enumerated
    ok = np.ones(objective.size, dtype=bool)
    for name, limit in budgets.items():
        ok &= costs[name] <= limit + 1e-12 * abs(limit)
    return float(objective[ok].min()) if ok.any() else np.inf


@st.composite
def cases(draw):
    L = draw(st.integers(1, 5))
    K = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sens = rng.random((L, K)) - draw(st.sampled_from([0.0, 0.5]))
    costs = {"size_bits": rng.integers(1, 9, (L, K)).astype(float), "latency_ms": rng.random((L, K))}
    allowed = None
    if draw(st.booleans()):
        allowed = rng.random((L, K)) < 0.75
        allowed[np.arange(L), rng.integers(0, K, L)] = True
    pairwise = rng.normal(size=(L * K, L * K)) * draw(st.sampled_from([0.1, 0.5])) if draw(st.booleans()) else None
    problem = mpqopt.Problem([f"l{i}" for i in range(L)], [f"W{k + 2}" for k in range(K)], sens, costs=costs, allowed=allowed, pairwise=pairwise)
    if L >= 2 and draw(st.booleans()):
        try:
            problem = problem.replace(ties=[problem.layers[:2]])
        except mpqopt.ProblemError:
            pass
    others = {}
    if draw(st.booleans()):
        lo, hi = problem.cost_range("latency_ms")
        others["latency_ms"] = lo + draw(st.sampled_from([0.2, 0.5, 0.8])) * (hi - lo)
    return problem, others, draw(st.integers(2, 9))


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_bounds_lie_below_the_exhaustive_optimum_and_points_meet_every_budget(case):
    problem, others, points = case
    full = not others and problem.is_separable
    frontier = mpqopt.pareto(problem, cost="size_bits", points=None if full else points, budgets=others)
    event(f"pairwise={not problem.is_separable}, other budget={bool(others)}, bound={frontier.lp_costs.size > 0}")
    enumerated = enumerate_all(problem)
    lo, hi = problem.cost_range("size_bits")
    grid = np.concatenate([np.linspace(lo - 1, hi + 1, 41), frontier.lp_costs, [pt.cost for pt in frontier.points]])
    tol = 1e-9 * max(problem.objective_scale, 1.0)
    for c in grid:
        best = exhaustive_optimum(enumerated, {**others, "size_bits": float(c)})
        bound = float(frontier.lp_bound(c))
        assert not np.isnan(bound), frontier.lp_note
        assert bound <= best + tol, f"bound {bound} above the optimum {best} at cost {c} ({frontier.lp_note})"
    for pt in frontier.points:
        limit = pt.cost if pt.budget is None else pt.budget
        assert violations(problem, pt.x, {**others, "size_bits": limit}) == []
        assert pt.objective == pytest.approx(exhaustive_optimum(enumerated, {**others, "size_bits": limit}), abs=tol)
    for label, cost, objective in frontier.uniform:
        x = np.full(problem.num_layers, problem.option_index(label))
        assert violations(problem, x, others) == []
        assert (cost, objective) == pytest.approx((problem.evaluate(x).costs["size_bits"], problem.evaluate(x).objective))
    for *_, broken in frontier.uniform_excluded:
        assert broken and set(broken) <= set(others)


def test_pairwise_bound_stays_below_the_exact_objective_where_dropping_the_term_did_not():
    """Negative cross terms: the LP of the separable part alone lies above the exact optimum."""
    rng = np.random.default_rng(3)
    L, K = 4, 3
    omega = -np.abs(rng.normal(size=(L * K, L * K))) * 0.2
    p = mpqopt.Problem([f"l{i}" for i in range(L)], [2, 4, 8], rng.random((L, K)), costs={"size_bits": rng.integers(1, 9, (L, K)).astype(float)}, pairwise=omega)
    enumerated = enumerate_all(p)
    dropped = mpqopt.pareto(p.replace(pairwise=None), cost="size_bits")
    frontier = mpqopt.pareto(p, cost="size_bits", points=5)
    lo, hi = p.cost_range("size_bits")
    grid = np.linspace(lo, hi, 30)
    optimum = np.array([exhaustive_optimum(enumerated, {"size_bits": c}) for c in grid])
    assert (dropped.lp_bound(grid) > optimum + 1e-9).any()  # the old curve was no bound here
    assert (frontier.lp_bound(grid) <= optimum + 1e-9).all()
    assert "separable underestimate" in frontier.lp_note


def test_other_budget_is_in_the_bound_and_excludes_uniform_points():
    """A latency budget that uniform W8 breaks: W8 is left out (and listed), and the bound rises above
    the single-budget LP where the latency budget binds."""
    L = 4
    sens = np.array([[0.9, 0.3, 0.0]] * L) * np.arange(1, L + 1)[:, None]
    size = np.array([[2.0, 4.0, 8.0]] * L)
    latency = np.array([[1.0, 1.5, 3.0]] * L)
    p = mpqopt.Problem([f"l{i}" for i in range(L)], ["W2", "W4", "W8"], sens, costs={"size_bits": size, "latency_ms": latency})
    frontier = mpqopt.pareto(p, cost="size_bits", points=9, budgets={"latency_ms": 7.0})
    assert [u[0] for u in frontier.uniform] == ["W2", "W4"]
    assert [(u[0], u[3]) for u in frontier.uniform_excluded] == [("W8", ["latency_ms"])]
    plain = mpqopt.pareto(p, cost="size_bits", points=9)
    enumerated = enumerate_all(p)
    grid = np.linspace(8, 32, 25)
    optimum = np.array([exhaustive_optimum(enumerated, {"latency_ms": 7.0, "size_bits": c}) for c in grid])
    assert (frontier.lp_bound(grid) <= optimum + 1e-9).all()
    assert (frontier.lp_bound(grid) > plain.lp_bound(grid) + 1e-6).any()  # the budget is in the bound
    assert frontier.to_dict()["uniform_excluded"] == [{"option": "W8", "cost": 32.0, "objective": 0.0, "violates": ["latency_ms"]}]


def test_no_bound_is_returned_without_a_valid_one(monkeypatch):
    monkeypatch.setattr(frontier_bound, "MAX_DENSE_ITEMS", 0)
    p = mpqopt.Problem(["a", "b"], [2, 4], [[1.0, 0.0], [1.0, 0.0]], costs={"size_bits": [[2, 4], [2, 4]]}, pairwise=np.eye(4) * 0.1)
    frontier = mpqopt.pareto(p, cost="size_bits", points=3)
    assert frontier.lp_costs.size == 0 and "no LP bound" in frontier.lp_note
    assert np.isnan(frontier.lp_bound(4.0)) and all(r["lp_bound"] is None for r in frontier.records())
    assert "lp_bound: no LP bound" in frontier.table()
    assert ",," in frontier.to_csv().splitlines()[1]  # an empty lp_bound cell
    ax = _plot(frontier)
    assert not any("bound" in (line.get_label() or "") for line in ax.lines)
    assert "no LP bound" in ax.get_title()


def _plot(frontier):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    frontier.plot(ax=ax)
    plt.close(fig)
    return ax


def test_plot_draws_points_as_markers_and_the_bound_separately():
    rng = np.random.default_rng(0)
    L, K = 5, 3
    p = mpqopt.Problem([f"l{i}" for i in range(L)], ["W2", "W4", "W8"], rng.random((L, K)), costs={"size_bits": rng.integers(1, 9, (L, K)).astype(float)})
    frontier = mpqopt.pareto(p, cost="size_bits", points=6)
    ax = _plot(frontier)
    assert all(line.get_drawstyle() == "default" for line in ax.lines)  # no steps anywhere
    by_label = {line.get_label(): line for line in ax.lines}
    markers = by_label["solved allocations (sampled budgets)"]
    assert markers.get_linestyle() == "None" and markers.get_marker() == "o"
    assert list(markers.get_xdata()) == [pt.cost for pt in frontier.points]
    assert list(markers.get_ydata()) == [pt.objective for pt in frontier.points]
    assert "line joining the solved points" in by_label
    bound = next(line for label, line in by_label.items() if "bound" in label)
    assert list(bound.get_xdata()) == frontier.lp_costs.tolist() and bound.get_marker() in ("None", None, "")
    shown = {(line.get_xdata()[0], line.get_ydata()[0]) for line in ax.lines if line.get_marker() == "s" and len(line.get_xdata())}
    assert shown == {(c, v) for _, c, v in frontier.uniform}
