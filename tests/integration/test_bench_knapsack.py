"""benchmarks/bench_knapsack.py runs end to end on tiny sizes, and its ratios, agreement and goals say
what the rows measured."""

from __future__ import annotations

import json

from benchmark_scripts import load_benchmark


def test_the_knapsack_benchmark_runs_and_both_solvers_agree(tmp_path, capsys):
    bench = load_benchmark("bench_knapsack")
    assert bench.main(["--sizes", "12x4", "--R", "30", "--no-mpq", "--repeat", "1", "--time-limit", "20", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "knapsack.json").read_text())
    assert [c["kind"] for c in report["grid"]] == list(bench.KNAPSACK_CLASSES)
    assert report["instances_done"] == report["instances_planned"] == 5
    for case in report["grid"]:
        assert case["agree"] is True and not case["contradictions"]
        assert {r["solver"]: r["status"] for r in case["rows"]} == {"mckp": "optimal", "highs:plain": "optimal"}
        assert case["ratio"]["kind"] == "exact" and case["ratio"]["value"] > 0
    assert "worst ratio" in capsys.readouterr().out
    assert "| every grid instance: mckp <= 2x HiGHS" in (tmp_path / "knapsack.md").read_text()


def _row(solver, status, objective, time_s, limit=60.0):
    return {"solver": solver, "status": status, "objective": objective, "bound": objective if status == "optimal" else None,
            "time_s": time_s, "cpu_s": time_s, "time_limit_s": limit}


def test_ratios_agreement_and_goals_from_rows():
    bench = load_benchmark("bench_knapsack")
    both = [_row("mckp", "optimal", 7.0, 3.0), _row("highs:plain", "optimal", 7.0, 1.0)]
    assert bench.ratio(both) == {"value": 3.0, "kind": "exact", "cpu": 3.0}
    assert bench.agreement(both) is True
    assert bench.agreement([_row("mckp", "optimal", 7.0, 1.0), _row("highs:plain", "optimal", 8.0, 1.0)]) is False
    highs_stopped = [_row("mckp", "optimal", 7.0, 3.0), _row("highs:plain", "time_limit", 7.0, 60.0)]
    assert bench.ratio(highs_stopped)["kind"] == "at_most" and bench.agreement(highs_stopped) is None
    assert bench.ratio([_row("mckp", "time_limit", 7.0, 60.0), _row("highs:plain", "time_limit", 7.0, 60.0)]) is None
    case = {"kind": "weakly", "layers": 10, "options": 4, "R": 30, "rows": both, "ratio": bench.ratio(both), "agree": True}
    fast = dict(case, rows=highs_stopped, ratio=bench.ratio(highs_stopped), agree=None)
    goals = bench.goals([case, fast], None)
    assert goals[0]["status"] == "NOT met" and "3.00x" in goals[0]["measured"] and "weakly 10 x 4 R=30" in goals[0]["measured"]
    assert bench.goals([fast], None)[0]["status"] == "met"
