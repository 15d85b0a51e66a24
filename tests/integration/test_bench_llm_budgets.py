"""benchmarks/bench_llm_budgets.py runs end to end on tiny sizes and checks what it reports."""

from __future__ import annotations

import json

from benchmark_scripts import load_benchmark


def test_the_llm_budgets_benchmark_runs_and_its_answers_agree(tmp_path, capsys):
    bench = load_benchmark("bench_llm_budgets")
    assert bench.main(["--sizes", "2,4", "--repeat", "1", "--time-limit", "20", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "llm_budgets.json").read_text())
    assert [row["blocks"] for row in report["sizes"]] == [2, 4]
    for row in report["sizes"]:
        assert row["same_answer"]  # '4.0bpw' and the same limit in bits give one answer
        staged = row["cases"]["bpw + stages"]
        assert staged["status"] == "optimal" and staged["bpw"] <= 4.0 + 1e-9
        assert len(staged["stage_bytes"]) == 2 and all(v > 0 for v in staged["stage_bytes"].values())
    assert "| bpw / bits |" in (tmp_path / "llm_budgets.md").read_text()
