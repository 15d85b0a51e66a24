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
