"""``mpqopt.pareto`` and ``mpqopt pareto``: the frontier against an independent exhaustive one.

Expected frontiers come from enumerating every assignment here (the constraint checks follow
tests/oracle.py: masks, fixed layers and ties read straight off the Problem) and applying the
definition of Pareto optimality literally; sampled points are checked against ``mpqopt.solve``, the
LP frontier against the ``greedy`` solver, and HAWQ-V3 ResNet-50 against the peer's own optima and
an exact dynamic program over integer size units written here.
"""

from __future__ import annotations

import csv
import io
import json
import math
from functools import reduce

import numpy as np
import pytest
from fuzz import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mpqopt
from mpqopt import cli
from mpqopt.errors import MpqoptError, ProblemError
from mpqopt.synthetic import mckp_problem
from mpqopt.verify import violations

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out

RTOL = 1e-9


# ------------------------------------------------------------------------------ brute force
def all_assignments(problem: mpqopt.Problem) -> np.ndarray:
    """Every assignment (rows of option indices) that masks, fixed layers and ties allow."""
    L, K = problem.num_layers, problem.num_options
    x = np.indices((K,) * L).reshape(L, -1).T
    ok = problem.allowed[np.arange(L), x].all(axis=1)
    for name, label in problem.fixed.items():
        ok &= x[:, problem.layers.index(name)] == [o.label for o in problem.options].index(label)
    for group in problem.ties:
        idx = [problem.layers.index(n) for n in group]
        ok &= (x[:, idx] == x[:, idx[:1]]).all(axis=1)
    return x[ok]


def brute_frontier(problem: mpqopt.Problem, cost: str) -> list[tuple[float, float]]:
    """Pareto-optimal (cost, objective) pairs by the definition: no other assignment has cost <= and
    objective <, or cost < and objective <=."""
    x = all_assignments(problem)
    rows = np.arange(problem.num_layers)
    pairs = np.unique(np.stack([problem.costs[cost][rows, x].sum(axis=1), problem.sensitivity[rows, x].sum(axis=1)], axis=1), axis=0)
    c, v = pairs[:, 0], pairs[:, 1]
    dominated = (((c[None, :] <= c[:, None]) & (v[None, :] < v[:, None])) | ((c[None, :] < c[:, None]) & (v[None, :] <= v[:, None]))).any(axis=1)
    return sorted(map(tuple, pairs[~dominated].tolist()))


def assert_same_pairs(found: list[tuple[float, float]], expected: list[tuple[float, float]], vscale: float) -> None:
    assert len(found) == len(expected), (found, expected)
    for (c, v), (ce, ve) in zip(found, expected):
        assert c == pytest.approx(ce, rel=RTOL, abs=1e-12)
        assert v == pytest.approx(ve, rel=RTOL, abs=RTOL * max(vscale, 1e-300))


def check_points(problem: mpqopt.Problem, frontier: mpqopt.Frontier) -> None:
    """Every point's assignment is valid and reproduces its cost and objective; costs rise, objectives fall."""
    for pt in frontier.points:
        assert violations(problem, pt.x, {}) == []
        ev = problem.evaluate(pt.x)
        assert pt.cost == pytest.approx(ev.costs[frontier.cost], rel=1e-12, abs=1e-300)
        assert pt.objective == pytest.approx(ev.objective, rel=1e-12, abs=1e-12 * problem.objective_scale)
    costs = [pt.cost for pt in frontier.points]
    values = [pt.objective for pt in frontier.points]
    assert all(a < b for a, b in zip(costs, costs[1:]))
    assert all(a > b for a, b in zip(values, values[1:]))


# ------------------------------------------------------------------------------ random problems
@st.composite
def dyadic_problems(draw):
    """Small problems whose numbers are integers times a power of two, so every sum is exact and
    ties (equal costs, equal and zero sensitivities) are real ties."""
    L = draw(st.integers(1, 6))
    K = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 2.0 ** draw(st.sampled_from([-30, -3, 0, 20]))
    sens = rng.integers(0, draw(st.sampled_from([2, 4, 33])), (L, K)) * scale
    if draw(st.booleans()):
        sens[rng.random(L) < 0.3] = 0.0  # layers that do not care
    if draw(st.booleans()):
        sens -= 8 * scale  # signed objectives (HAWQ-style)
    cost_scale = 2.0 ** draw(st.sampled_from([-20, 0, 30]))
    cost = rng.integers(0, draw(st.sampled_from([3, 6, 40])), (L, K)) * cost_scale
    layers = [f"l{i}" for i in range(L)]
    allowed = None
    if draw(st.booleans()):
        allowed = rng.random((L, K)) < 0.7
        allowed[np.arange(L), rng.integers(0, K, L)] = True
    base = mpqopt.Problem(layers, [f"W{k + 2}" for k in range(K)], sens, costs={"c": cost, "other": cost[:, ::-1]}, allowed=allowed)
    ties, fixed = [], {}
    if L >= 2 and draw(st.booleans()):
        ties = [draw(st.lists(st.sampled_from(layers), min_size=2, max_size=3, unique=True))]
    if draw(st.booleans()):
        name = draw(st.sampled_from(layers))
        fixed = {name: base.options[int(rng.choice(np.nonzero(base.allowed[layers.index(name)])[0]))].label}
    try:
        return base.replace(ties=ties, fixed=fixed)
    except ProblemError:  # the tie group has no common option, or the fixed option breaks it
        return base


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dyadic_problems())
def test_full_frontier_equals_brute_force(problem):
    frontier = mpqopt.pareto(problem, cost="c")
    assert frontier.complete
    check_points(problem, frontier)
    assert_same_pairs([(pt.cost, pt.objective) for pt in frontier.points], brute_frontier(problem, "c"), problem.objective_scale)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(L=st.integers(5, 6), K=st.integers(1, 4), seed=st.integers(0, 10**6), kind=st.sampled_from(["cnn", "llm", "groups"]),
       cost=st.sampled_from(["size_bits", "bitops", "latency_ms"]), ties=st.integers(0, 1), fixed=st.integers(0, 1),
       masked=st.sampled_from([0.0, 0.3]))
def test_full_frontier_of_synthetic_problems_equals_brute_force(L, K, seed, kind, cost, ties, fixed, masked):
    problem = mckp_problem(L, K, budgets=0, seed=seed, kind=kind, ties=ties, fixed=fixed, masked=masked)
    frontier = mpqopt.pareto(problem, cost=cost)
    check_points(problem, frontier)
    assert_same_pairs([(pt.cost, pt.objective) for pt in frontier.points], brute_frontier(problem, cost), problem.objective_scale)


def test_costs_equal_up_to_round_off_are_one_cost():
    # Choosing a and b costs 0.1 + 0.2 = 0.30000000000000004, choosing c costs 0.3: the same size.
    # a + b is better (1.9 < 2.0), so c alone is dominated and must not be a frontier point.
    p = mpqopt.Problem(["a", "b", "c"], [4, 8], [[1.0, 0.5], [1.0, 0.4], [1.0, 0.0]],
                       costs={"size": [[0.0, 0.1], [0.0, 0.2], [0.0, 0.3]]})
    frontier = mpqopt.pareto(p, cost="size")
    check_points(p, frontier)
    expected = [(0.0, 3.0), (0.1, 2.5), (0.2, 2.4), (0.3, 1.9), (0.4, 1.5), (0.5, 1.4), (0.6, 0.9)]
    assert_same_pairs([(pt.cost, pt.objective) for pt in frontier.points], expected, 1.0)
    assert [p.to_labels(pt.x) for pt in frontier.points][3] == {"a": "W8", "b": "W8", "c": "W4"}


# ------------------------------------------------------------------------------ sampled frontiers
def test_sampled_frontier_matches_solve_at_each_budget():
    problem = mckp_problem(200, 8, budgets=2, seed=3, ties=10, fixed=3, masked=0.2)  # a bitops budget applies too
    frontier = mpqopt.pareto(problem, cost="size_bits", points=12)
    assert not frontier.complete and frontier.other_budgets == {"bitops": problem.budgets["bitops"]}
    lo, hi = problem.cost_range("size_bits")
    found = {pt.budget: pt for pt in frontier.points}
    assert set(found) <= set(np.linspace(lo, hi, 12).tolist())
    matched = 0
    for b in np.linspace(lo, hi, 12).tolist():
        result = mpqopt.solve(problem, budgets={"size_bits": b})
        if result.x is None:
            assert result.status == "infeasible" and b not in found
            continue
        # a budget whose allocation another budget already found is merged into that point
        pt = found.get(b) or next(q for q in frontier.points if q.objective == pytest.approx(result.objective, rel=RTOL))
        assert pt.status == "optimal" and pt.objective == pytest.approx(result.objective, rel=RTOL)
        assert violations(problem, pt.x, {"size_bits": b, "bitops": problem.budgets["bitops"]}) == []
        matched += 1
    assert matched >= 5 and len(frontier.points) <= matched
    check_points(problem, frontier)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_points_lie_on_the_full_frontier(seed):
    problem = mckp_problem(12, 4, budgets=0, seed=seed, ties=1, fixed=1, masked=0.2)
    full = mpqopt.pareto(problem, cost="size_bits")
    sampled = mpqopt.pareto(problem, cost="size_bits", points=9)
    costs = np.array([pt.cost for pt in full.points])
    for pt in sampled.points:
        best = full.points[int(np.searchsorted(costs, pt.budget * (1 + 1e-12), side="right")) - 1]  # dearest point within budget
        assert (pt.cost, pt.objective) == (pytest.approx(best.cost, rel=1e-12), pytest.approx(best.objective, rel=1e-12))


def test_single_point_solves_the_dearest_budget():
    problem = mckp_problem(8, 4, budgets=0, seed=4)
    frontier = mpqopt.pareto(problem, cost="bitops", points=1)
    full = mpqopt.pareto(problem, cost="bitops")
    assert len(frontier.points) == 1 and frontier.points[0].objective == pytest.approx(full.points[-1].objective, rel=1e-12)


# ------------------------------------------------------------------------------ LP frontier
@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dyadic_problems())
def test_lp_frontier_bounds_every_point_and_its_vertices_are_greedy(problem):
    frontier = mpqopt.pareto(problem, cost="c")
    tol = 1e-9 * max(problem.objective_scale, 1e-300)
    for pt in frontier.points:
        assert frontier.lp_bound(pt.cost) <= pt.objective + tol
    assert np.all(np.diff(frontier.lp_costs) > 0) and np.all(np.diff(frontier.lp_values) < 0)
    assert frontier.lp_costs[0] == pytest.approx(problem.cost_range("c")[0], rel=1e-12, abs=1e-300)
    alone = problem.replace(budgets={})
    for c, v in zip(frontier.lp_costs.tolist(), frontier.lp_values.tolist()):
        greedy = mpqopt.solve(alone, budgets={"c": c}, solver="greedy")
        assert greedy.x is not None and greedy.costs["c"] <= c * (1 + 1e-12)
        assert greedy.objective == pytest.approx(v, rel=RTOL, abs=tol)


def test_lp_frontier_of_a_synthetic_problem():
    problem = mckp_problem(300, 8, budgets=1, seed=5, kind="llm")
    frontier = mpqopt.pareto(problem, cost="size_bits", points=6)
    for pt in frontier.points:
        assert frontier.lp_bound(pt.cost) <= pt.objective + 1e-9 * problem.objective_scale
    alone = problem.replace(budgets={})
    for i in np.linspace(0, frontier.lp_costs.size - 1, 15).astype(int).tolist():
        greedy = mpqopt.solve(alone, budgets={"size_bits": float(frontier.lp_costs[i])}, solver="greedy")
        assert greedy.objective == pytest.approx(float(frontier.lp_values[i]), rel=RTOL)


def test_uniform_points_are_uniform_assignments():
    problem = mckp_problem(10, 4, budgets=0, seed=6)
    frontier = mpqopt.pareto(problem, cost="size_bits")
    assert [label for label, _, _ in frontier.uniform] == list(problem.option_labels)
    for k, (_label, c, v) in enumerate(frontier.uniform):
        assert c == pytest.approx(problem.costs["size_bits"][:, k].sum()) and v == pytest.approx(problem.sensitivity[:, k].sum())


# ------------------------------------------------------------------------------ errors
def test_errors_are_clean():
    problem = mckp_problem(6, 4, budgets=2, seed=0)
    with pytest.raises(MpqoptError, match="nope"):
        mpqopt.pareto(problem, cost="nope")
    for bad in (0, -3, 2.5, "4"):
        with pytest.raises(ProblemError, match="points"):
            mpqopt.pareto(problem, cost="size_bits", points=bad)
    with pytest.raises(ProblemError, match="bitops"):  # the file's bitops budget needs points=N
        mpqopt.pareto(problem, cost="size_bits")
    with pytest.raises(ProblemError, match="latency_ms"):
        mpqopt.pareto(problem, cost="size_bits", budgets={"bitops": None, "latency": "50%"})
    assert mpqopt.pareto(problem, cost="size_bits", budgets={"bitops": None}).complete  # dropping it is fine
    K = problem.num_options
    pairwise = problem.replace(budgets={}, pairwise=np.eye(problem.num_layers * K) * 0.01)
    with pytest.raises(ProblemError, match="pairwise"):
        mpqopt.pareto(pairwise, cost="size_bits")


# ------------------------------------------------------------------------------ output
def test_records_csv_and_json_round_trip():
    problem = mckp_problem(6, 4, budgets=0, seed=7, ties=1)
    frontier = mpqopt.pareto(problem, cost="size_bits")
    data = json.loads(frontier.to_json())
    assert data["complete"] is True and data["cost"] == "size_bits"
    assert [r["objective"] for r in data["points"]] == [pt.objective for pt in frontier.points]
    assert [r["assignment"] for r in data["points"]] == [problem.to_labels(pt.x) for pt in frontier.points]
    rows = list(csv.DictReader(io.StringIO(frontier.to_csv())))
    assert len(rows) == len(frontier.points)
    for row, pt in zip(rows, frontier.points):
        assert float(row["cost"]) == pt.cost and float(row["objective"]) == pt.objective
        assert problem.as_indices({n: row[n] for n in problem.layers}).tolist() == pt.x.tolist()


# ------------------------------------------------------------------------------ CLI
TOY_LAYERS = ["conv1", "conv2", "fc1", "fc2"]
TOY_SENS = np.array([[0.90, 0.20, 0.0], [0.50, 0.12, 0.01], [0.30, 0.05, 0.0], [0.70, 0.30, 0.02]])
TOY_SIZE = np.array([100.0, 400.0, 250.0, 50.0])[:, None] * np.array([2.0, 4.0, 8.0])[None, :]


@pytest.fixture
def toy_file(tmp_path) -> str:
    d = {"format": "mpqopt.problem", "version": 1, "layers": TOY_LAYERS, "options": [{"label": f"W{w}", "w": w} for w in (2, 4, 8)],
         "sensitivity": TOY_SENS.tolist(), "costs": {"size_bits": TOY_SIZE.tolist(), "bitops": (TOY_SIZE * 80).tolist()},
         "budgets": {"size_bits": 3600.0}}
    path = tmp_path / "toy.json"
    path.write_text(json.dumps(d))
    return str(path)


def toy_problem() -> mpqopt.Problem:
    return mpqopt.Problem(TOY_LAYERS, ["W2", "W4", "W8"], TOY_SENS, costs={"size_bits": TOY_SIZE, "bitops": TOY_SIZE * 80})


def run(capfd, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capfd.readouterr()
    return code, out, err


def test_cli_table_lists_the_brute_force_frontier(capfd, toy_file):
    expected = brute_frontier(toy_problem(), "size_bits")
    code, out, err = run(capfd, "pareto", toy_file, "--cost", "size")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["cost", "objective", "lp_bound"] and lines[0].split()[3:] == ["W2", "W4", "W8"]
    body = lines[1:-1]
    assert [float(line.split()[0]) for line in body] == pytest.approx([c for c, _ in expected], rel=1e-5)
    assert [float(line.split()[1]) for line in body] == pytest.approx([v for _, v in expected], rel=1e-5, abs=1e-9)
    assert all(sum(map(int, line.split()[3:])) == len(TOY_LAYERS) for line in body)
    assert f"{len(expected)} points" in lines[-1] and "size_bits" in lines[-1]


def test_cli_json_csv_and_output_file(capfd, toy_file, tmp_path):
    expected = brute_frontier(toy_problem(), "size_bits")
    out_csv, out_json = tmp_path / "f.csv", tmp_path / "f.json"
    code, out, err = run(capfd, "pareto", toy_file, "--cost", "size_bits", "--json", "--csv", str(out_csv), "-o", str(out_json))
    assert code == 0, err
    data = json.loads(out)  # stdout is only the JSON
    assert {"cost", "complete", "points", "lp_frontier", "uniform", "other_budgets", "time_s"} <= set(data)
    assert {"cost", "objective", "gap", "status", "lp_bound", "assignment"} <= set(data["points"][0])
    assert [(p["cost"], p["objective"]) for p in data["points"]] == [pytest.approx(pair) for pair in expected]
    assert json.loads(out_json.read_text())["points"] == data["points"]
    header, *rows = list(csv.reader(out_csv.open()))
    assert header[:5] == ["cost", "objective", "gap", "status", "lp_bound"] and header[5:] == TOY_LAYERS
    assert len(rows) == len(expected)


def test_cli_sampled_with_other_budget(capfd, toy_file):
    code, out, err = run(capfd, "pareto", toy_file, "--cost", "size", "--points", "5", "--budget", "bitops=50%", "--json")
    assert code == 0, err
    data = json.loads(out)
    problem = toy_problem()
    limit = mpqopt.resolve_budgets(problem, {"bitops": "50%"})["bitops"]
    assert data["complete"] is False and data["other_budgets"] == {"bitops": limit}
    lo, hi = problem.cost_range("size_bits")
    x = all_assignments(problem)
    rows = np.arange(len(TOY_LAYERS))
    size, bitops, value = TOY_SIZE[rows, x].sum(axis=1), (TOY_SIZE * 80)[rows, x].sum(axis=1), TOY_SENS[rows, x].sum(axis=1)
    for p in data["points"]:  # each is the exhaustive optimum at its budget
        ok = (size <= p["budget"] * (1 + 1e-12)) & (bitops <= limit * (1 + 1e-12))
        assert p["objective"] == pytest.approx(value[ok].min(), abs=1e-12)
        assert lo <= p["budget"] <= hi


def test_cli_plot_writes_a_png(capfd, toy_file, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "front.png"
    code, out, err = run(capfd, "pareto", toy_file, "--cost", "size", "--plot", str(path))
    assert code == 0, err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_plot_without_matplotlib_exits_2(capfd, toy_file, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import matplotlib now fails
    path = tmp_path / "front.png"
    code, out, err = run(capfd, "pareto", toy_file, "--cost", "size", "--plot", str(path))
    assert code == 2 and out == "" and not path.exists()
    assert err.strip() == "mpqopt: error: --plot needs matplotlib, which is not installed: pip install mpqopt[plot]"


@pytest.mark.parametrize("args, needle", [
    (["--cost", "nope"], "nope"),
    (["--cost", "size", "--budget", "bitops=50%"], "points"),  # other budgets need --points
    (["--cost", "size", "--budget", "bitops"], "NAME=VALUE"),
    (["--cost", "size", "--points", "3", "--budget", "bitops=12parsecs"], "parsecs"),
    (["--cost", "size", "--points", "3", "--solver", "nope"], "nope"),
    (["--cost", "size", "--plot", "/nonexistent-dir/f.png"], "nonexistent-dir"),
])
def test_cli_bad_input_exits_2_with_one_line(capfd, toy_file, args, needle):
    code, out, err = run(capfd, "pareto", toy_file, *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("mpqopt: error: ") and needle in err


@pytest.mark.parametrize("args", [["--points", "0"], ["--points", "x"], []])  # [] : --cost is required
def test_cli_bad_arguments_exit_2(capfd, toy_file, args):
    cost = [] if not args else ["--cost", "size"]
    code, out, err = run(capfd, "pareto", toy_file, *cost, *args)
    assert code == 2 and "usage:" in err


def test_cli_missing_file_exits_2(capfd, tmp_path):
    code, out, err = run(capfd, "pareto", str(tmp_path / "missing.json"), "--cost", "size")
    assert code == 2 and "missing.json" in err and out == ""


def test_cli_no_feasible_sample_exits_3(capfd, toy_file):
    code, out, err = run(capfd, "pareto", toy_file, "--cost", "size", "--points", "3", "--budget", "bitops=0")
    assert code == 3 and "bitops" in err


# ------------------------------------------------------------------------------ HAWQ-V3 ResNet-50
def test_hawq_v3_resnet50_frontier_contains_each_golden_size_optimum(peers_dir):
    from mpqopt.importers import hawq_v3_problem

    path = peers_dir / "hawq_v3_resnet50.json"
    refs = json.loads(path.read_text())["reference_solutions"]
    frontier = mpqopt.pareto(hawq_v3_problem(path, None), cost="size")
    check_points(frontier.problem, frontier)
    costs = np.array([pt.cost for pt in frontier.points])
    for r in (0.25, 0.5, 0.75):
        problem = hawq_v3_problem(path, "size", r)
        budget = problem.budgets["size"]
        pt = frontier.points[int(np.searchsorted(costs, budget * (1 + 1e-12), side="right")) - 1]
        result = mpqopt.solve(problem)
        assert result.status == "optimal"
        assert pt.objective == pytest.approx(result.objective, abs=1e-12)
        assert pt.objective == pytest.approx(refs[f"modelsize_{r}"]["reoptimized_with_HiGHS_gap0"]["objective"], abs=1e-12)


def test_hawq_v3_resnet50_frontier_equals_integer_dp(peers_dir):
    """Sizes are whole multiples of 2048 bytes: a DP over exact integer sizes gives the frontier with
    no round-off (the frontier once kept 13 extra points whose sizes differed only in the last bit)."""
    from mpqopt.importers import hawq_v3_problem

    problem = hawq_v3_problem(peers_dir / "hawq_v3_resnet50.json", None)
    size_bits = problem.costs["size"] * 8e6  # the table is in MB
    assert np.array_equal(size_bits, np.rint(size_bits))
    unit = reduce(math.gcd, np.rint(size_bits).astype(np.int64).ravel().tolist())
    units = np.rint(size_bits / unit).astype(np.int64)
    best = np.full(int(units.max(axis=1).sum()) + 1, np.inf)  # least objective at exactly this size
    best[0] = 0.0
    for members in problem.group_members:
        new = np.full_like(best, np.inf)
        for k in range(problem.num_options):
            c, v = int(units[members, k].sum()), float(problem.sensitivity[members, k].sum())
            new[c:] = np.minimum(new[c:], best[:best.size - c] + v)
        best = new
    expected, running = [], np.inf
    for c in np.nonzero(np.isfinite(best))[0].tolist():
        if best[c] < running:
            expected.append((c * unit / 8e6, float(best[c])))
            running = best[c]
    frontier = mpqopt.pareto(problem, cost="size")
    assert len(expected) == 201
    assert_same_pairs([(pt.cost, pt.objective) for pt in frontier.points], expected, problem.objective_scale)
