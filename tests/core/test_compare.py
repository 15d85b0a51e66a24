"""``mpqopt.compare`` and ``mpqopt compare``: several solvers on one problem, side by side.

Expected values come from individual ``mpqopt.solve`` calls, the exhaustive oracle (tests/oracle.py)
and numpy sums computed here, never from compare's own output.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from oracle import brute_force

import mpqopt
from mpqopt import cli
from mpqopt.compare import compare, contradictions
from mpqopt.errors import MpqoptError, SolverError
from mpqopt.result import relative_gap
from mpqopt.solvers import backend_class
from mpqopt.synthetic import iqp_problem

LAYERS = ["conv1", "conv2", "fc1", "fc2"]
SENS = np.array([[0.90, 0.20, 0.0], [0.50, 0.12, 0.01], [0.30, 0.05, 0.0], [0.70, 0.30, 0.02]])
SIZE = np.array([100.0, 400.0, 250.0, 50.0])[:, None] * np.array([2.0, 4.0, 8.0])[None, :]
BUDGET = 3600.0
SEPARABLE = ["mckp", "highs", "greedy", "bruteforce"]
PAIRWISE = ["bnb", "highs", "local"]


@pytest.fixture
def toy() -> mpqopt.Problem:
    return mpqopt.Problem(LAYERS, ["W2", "W4", "W8"], SENS, costs={"size_bits": SIZE}, budgets={"size_bits": BUDGET})


@pytest.fixture
def toy_file(tmp_path, toy) -> str:
    path = tmp_path / "toy.json"
    mpqopt.save(toy, path)
    return str(path)


def by_solver(comparison) -> dict[str, dict]:
    return {r["solver"]: r for r in comparison.records}


def _agrees_with_solve(problem, solvers):
    comparison = compare(problem, solvers)
    assert [r["solver"] for r in comparison.records] == solvers
    for name, rec in by_solver(comparison).items():
        alone = mpqopt.solve(problem, solver=name)
        assert rec["status"] == alone.status, name
        assert rec["objective"] == pytest.approx(alone.objective, rel=1e-12), name
        assert rec["bound"] == pytest.approx(alone.bound, rel=1e-12), name
        assert rec["proof"] == alone.proof
    return comparison


@pytest.mark.parametrize("kind", ["separable", "pairwise"])
def test_records_agree_with_solve_and_the_oracle(kind, toy):
    problem, solvers = (toy, SEPARABLE) if kind == "separable" else (iqp_problem(7, seed=3), PAIRWISE)
    comparison = _agrees_with_solve(problem, solvers)
    best, argbest = brute_force(problem, problem.budgets)
    assert comparison.best_objective == pytest.approx(best, rel=1e-9)
    scale = problem.objective_scale
    for rec in comparison.records:
        # distance above the best, in Result.gap's convention, from the oracle's optimum
        assert rec["rel_diff"] == pytest.approx(relative_gap(rec["objective"], best, scale), rel=1e-6, abs=1e-12)
        assert rec["bound"] <= best * (1 + 1e-9) + 1e-12  # every proven bound is valid...
        assert rec["consistent"]  # ...so no pair contradicts
        assert len(rec["times"]) == 1 and rec["time_s"] == rec["times"][0]
    assert comparison.consistent and comparison.contradictions == []
    exact = [r for r in comparison.records if r["solver"] not in ("greedy", "local")]
    assert all(r["rel_diff"] == 0 and r["status"] == "optimal" for r in exact)
    # relative slack of the one budget, from the optimal assignment's size summed here
    x = np.asarray(argbest[0])
    size = problem.costs["size_bits"][np.arange(problem.num_layers), x].sum()
    limit = problem.budgets["size_bits"]
    if len(argbest) == 1:
        assert exact[0]["slack"]["size_bits"] == pytest.approx((limit - size) / limit, rel=1e-9)


def test_greedy_distance_to_best_on_the_toy(toy):
    """On the toy greedy stops above the optimum: its row says by how much, relative to its objective."""
    best, _ = brute_force(toy, {"size_bits": BUDGET})
    greedy = mpqopt.solve(toy, solver="greedy")
    assert greedy.objective > best + 1e-9  # the case worth showing; the toy was chosen for it
    rec = by_solver(compare(toy, SEPARABLE))["greedy"]
    assert rec["rel_diff"] == pytest.approx((greedy.objective - best) / greedy.objective)


def test_unknown_solver_is_a_clear_error(toy):
    with pytest.raises(SolverError, match=r"unknown solver 'nosuch'; known solvers: auto, .*mckp"):
        compare(toy, ["highs", "nosuch"])
    with pytest.raises(SolverError, match="takes no ':foo' argument"):
        compare(toy, ["gurobi:foo"])
    with pytest.raises(SolverError, match="no solver"):
        compare(toy, [])


def test_unavailable_backend_becomes_a_row(toy, monkeypatch):
    monkeypatch.setattr(backend_class("highs"), "available", classmethod(lambda cls: False))
    comparison = compare(toy, ["mckp", "highs"])
    rows = by_solver(comparison)
    assert rows["highs"]["status"] == "unavailable"
    assert "pip install" in rows["highs"]["message"] and "highspy" in rows["highs"]["message"]
    assert rows["highs"]["objective"] is None and rows["highs"]["times"] == []
    assert rows["mckp"]["status"] == "optimal"
    assert comparison.best_objective == pytest.approx(brute_force(toy, {"size_bits": BUDGET})[0])
    assert "highs: solver 'highs' needs highspy" in comparison.table()


def test_backend_refusing_to_start_becomes_an_unavailable_row(toy, monkeypatch):
    """As 'pyomo:glpk' without glpk: the package is there, its constructor finds the solver missing."""
    from mpqopt.errors import SolverUnavailableError

    def refuse(self, arg=None):
        raise SolverUnavailableError("bruteforce: not on this machine (install: test hint)")

    monkeypatch.setattr(backend_class("bruteforce"), "__init__", refuse)
    rows = by_solver(compare(toy, ["mckp", "bruteforce"]))
    assert rows["bruteforce"]["status"] == "unavailable" and "test hint" in rows["bruteforce"]["message"]
    assert rows["mckp"]["status"] == "optimal"


def test_backend_failure_becomes_an_error_row():
    problem = iqp_problem(5, seed=1)
    rows = by_solver(compare(problem, ["bnb", "greedy"]))
    assert rows["greedy"]["status"] == "error" and "separable" in rows["greedy"]["message"]
    assert rows["bnb"]["status"] == "optimal"


def test_repeat_reports_every_time_and_the_median(toy, monkeypatch):
    calls = []
    module = sys.modules["mpqopt.compare"]  # the attribute mpqopt.compare is the function
    real = module.solve_with

    def timed(*args, **kwargs):  # known, distinct times so the median is checkable
        result = real(*args, **kwargs)
        result.solve_time_s = [0.3, 0.1, 0.2][len(calls) % 3]
        calls.append(kwargs["solver"])
        return result

    monkeypatch.setattr(module, "solve_with", timed)
    rec = compare(toy, ["mckp"], repeat=3).records[0]
    assert calls == ["mckp"] * 3
    assert rec["times"] == [0.3, 0.1, 0.2] and rec["time_s"] == 0.2
    with pytest.raises(MpqoptError, match="repeat"):
        compare(toy, ["mckp"], repeat=0)


def test_contradiction_check_on_fabricated_records():
    ok = {"solver": "exact", "status": "optimal", "objective": 1.0, "bound": 1.0}
    above = {"solver": "heur", "status": "feasible", "objective": 1.5, "bound": 0.8}
    assert contradictions([ok, above]) == []
    roundoff = {"solver": "r", "status": "optimal", "objective": 1.0 - 1e-11, "bound": 1.0 - 1e-11}
    assert contradictions([ok, roundoff]) == []  # below by 1e-11 relative: round-off, not a clash
    below = {"solver": "bad", "status": "feasible", "objective": 0.9, "bound": None}
    found = contradictions([ok, below])
    assert [(c["solver"], c["against"]) for c in found] == [("bad", "exact")]
    infeasible = {"solver": "inf", "status": "infeasible", "objective": None, "bound": None}
    found = contradictions([ok, infeasible])
    assert [(c["solver"], c["against"]) for c in found] == [("exact", "inf")] and "infeasible" in found[0]["reason"]
    # near-zero objectives: the tolerance follows the scale of the summed terms
    tiny = [{"solver": "a", "status": "optimal", "objective": 0.0, "bound": 0.0},
            {"solver": "b", "status": "optimal", "objective": -1e-12, "bound": -1e-12}]
    assert contradictions(tiny, scale=10.0) == [] and len(contradictions(tiny)) == 1


def _overclaiming_greedy(monkeypatch):
    """Make greedy claim its (suboptimal on the toy) answer is optimal: bound = its objective."""
    cls = backend_class("greedy")
    real = cls.solve

    def solve(self, model, settings):
        raw = real(self, model, settings)
        raw.bound = raw.objective
        return raw

    monkeypatch.setattr(cls, "solve", solve)


def test_compare_flags_a_solver_that_overclaims(toy, monkeypatch):
    _overclaiming_greedy(monkeypatch)
    comparison = compare(toy, ["mckp", "greedy"])
    rows = by_solver(comparison)
    assert not comparison.consistent
    assert not rows["mckp"]["consistent"] and not rows["greedy"]["consistent"]
    assert [(c["solver"], c["against"]) for c in comparison.contradictions] == [("mckp", "greedy")]
    assert "CONTRADICTION" in comparison.table()


def test_cli_compare_table_and_json(toy_file, toy, capfd):
    assert cli.main(["compare", toy_file, "--solvers", ",".join(SEPARABLE), "--repeat", "2"]) == cli.EXIT_OK
    out = capfd.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["solver", "status", "objective", "bound", "gap"]
    for name in SEPARABLE:
        assert any(line.split()[0] == name for line in lines[1:])
    best, _ = brute_force(toy, {"size_bits": BUDGET})
    assert cli.main(["compare", toy_file, "--solvers", "mckp,highs", "--json", "--budget", "size=4000"]) == cli.EXIT_OK
    data = json.loads(capfd.readouterr().out)
    best4000, _ = brute_force(toy, {"size_bits": 4000.0})
    assert data["budgets"] == {"size_bits": 4000.0} and best4000 < best
    assert [r["solver"] for r in data["records"]] == ["mckp", "highs"]
    assert all(r["objective"] == pytest.approx(best4000) for r in data["records"])
    assert data["best_objective"] == pytest.approx(best4000) and data["consistent"] is True


def test_cli_compare_exit_codes(toy_file, capfd, monkeypatch):
    assert cli.main(["compare", toy_file, "--solvers", "highs,nosuch"]) == cli.EXIT_INPUT
    err = capfd.readouterr().err
    assert "unknown solver 'nosuch'" in err and "known solvers: auto" in err and "mckp" in err
    assert cli.main(["compare", toy_file, "--solvers", "mckp", "--budget", "size=1"]) == cli.EXIT_INFEASIBLE
    assert cli.main(["compare", toy_file, "--budget", "nosuch=5"]) == cli.EXIT_INPUT
    capfd.readouterr()
    _overclaiming_greedy(monkeypatch)
    assert cli.main(["compare", toy_file, "--solvers", "mckp,greedy"]) == cli.EXIT_INTERNAL
    assert "contradict" in capfd.readouterr().err


def test_to_pandas_without_pandas_is_a_clear_error(toy, monkeypatch):
    comparison = compare(toy, ["mckp"])
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if not installed
    with pytest.raises(MpqoptError, match="needs pandas, which is not installed: pip install pandas"):
        comparison.to_pandas()


def test_to_pandas(toy):
    pd = pytest.importorskip("pandas", reason="pandas not installed (optional dependency of Comparison.to_pandas)")
    comparison = compare(toy, ["mckp", "greedy"])
    frame = comparison.frame
    assert isinstance(frame, pd.DataFrame) and list(frame["solver"]) == ["mckp", "greedy"]
    assert frame["objective"].tolist() == [r["objective"] for r in comparison.records]


def test_infeasible_budgets_are_diagnosed_once_for_all_solvers(monkeypatch):
    """The diagnosis depends on the budgets alone: every infeasible row carries the same one, made once."""
    solve_module = sys.modules["mpqopt.solve"]  # the attribute mpqopt.solve is the function
    problem = mpqopt.Problem(["a", "b"], ["W4", "W8"], [[1.0, 0.0], [1.0, 0.0]],
                             costs={"size_bits": [[4, 8], [4, 8]], "latency": [[8, 4], [8, 4]]})
    budgets = {"size_bits": 11, "latency": 11}  # each alone can be met, not both
    calls = []
    real = solve_module.diagnose_joint
    monkeypatch.setattr(solve_module, "diagnose_joint", lambda *a, **k: calls.append(1) or real(*a, **k))
    comparison = compare(problem, ["highs", "mckp", "bnb", "scipy"], budgets)
    assert [r["status"] for r in comparison.records] == ["infeasible"] * 4
    assert len(calls) == 1
    messages = {r["message"] for r in comparison.records}
    assert len(messages) == 1 and "'size_bits' and 'latency' conflict" in messages.pop()
    assert mpqopt.solve(problem, budgets, solver="highs").message == comparison.records[0]["message"]  # as a lone solve says
