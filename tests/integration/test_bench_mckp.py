"""benchmarks/bench_mckp.py runs every case end to end with its sizes shrunk, and writes goals that
say what the rows measured (a case that crashed on a changed helper went unnoticed until a full run)."""

from __future__ import annotations

import json

from benchmark_scripts import load_benchmark


def test_every_case_runs_end_to_end_on_small_sizes(tmp_path, monkeypatch):
    bench = load_benchmark("bench_mckp")
    real = bench.mckp_problem
    monkeypatch.setattr(bench, "mckp_problem", lambda layers, options, budgets, **kw: real(min(layers, 40), options, budgets, **kw))
    monkeypatch.setattr(bench, "SCALING_LAYERS", (20, 40))
    argv = ["--quick", "--cases", "abcefgh", "--solvers", "mckp", "greedy", "highs", "--repeat", "1", "--time-limit", "20", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    report = json.loads((tmp_path / "mckp.json").read_text())
    assert set(report["cases"]) == set("abcefgh")
    for key in "abchfg":
        rows = {r["solver"]: r for r in report["cases"][key]["rows"]}
        assert rows["mckp"]["status"] == "optimal", key
        assert not report["cases"][key]["contradictions"], key
    assert [p["layers"] for p in report["cases"]["e"]["points"]] == [20, 40]
    assert all(p["build_cpu_s"] >= 0 for p in report["cases"]["e"]["points"])
    statuses = {g["goal"][:3]: g["status"] for g in report["goals"]}
    assert statuses["(a)"] == "met" and statuses["(b)"] == "met"  # 40 x 8 is proven far inside the goal times
    assert "| (f) 5,000 x 8, three budgets, defaults" in (tmp_path / "mckp.md").read_text()


def test_settle_waits_for_abandoned_solvers_before_a_measurement(monkeypatch):
    """A solver thread abandoned at an earlier row's time limit must have stopped before the next
    build or row is timed (it shared the CPUs with case (b) and counted in its CPU time)."""
    import importlib
    import threading

    solve_module = importlib.import_module("mpqopt.solve")  # the module, not mpqopt.solve the function
    load_benchmark("bench_mckp")  # puts benchmarks/ on sys.path
    harness = importlib.import_module("harness")
    release = threading.Event()
    worker = threading.Thread(target=release.wait, daemon=True)
    worker.start()
    monkeypatch.setattr(solve_module, "_abandoned", [worker])
    harness.settle(limit=0.01)  # the limit is a limit: it returns with the thread still running
    assert worker.is_alive()
    release.set()
    assert harness.settle() >= 0.0
    assert not worker.is_alive() and solve_module.abandoned_solvers() == []
