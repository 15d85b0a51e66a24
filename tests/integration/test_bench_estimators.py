"""benchmarks/bench_estimators.py runs end to end on small data and checks what it reports."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
pytest.importorskip("sklearn", reason="the digits example needs scikit-learn")

from benchmark_scripts import load_benchmark  # noqa: E402


@pytest.mark.slow
def test_the_estimators_benchmark_runs_and_its_tables_agree(tmp_path):
    bench = load_benchmark("bench_estimators")
    assert bench.main(["--quick", "--repeat", "1", "--out", str(tmp_path)]) == 0  # 0: every new table equals the old one
    report = json.loads((tmp_path / "estimators.json").read_text())
    names = [r["estimator"] for r in report["rows"]]
    assert names[0] == "exhaustive_losses" and names.count("estimate_delta_loss") == 3
    for r in report["rows"]:
        assert r["identical"] and r["before_s"] > 0 and r["after_s"] > 0
        assert r.get("max_abs_diff_onnx", 0.0) < 1e-5  # the ONNX export agrees to float round-off
        if "onnx_mode" in r:  # ONNX delta_output: cached suffix runs (where auto finds they pay) give the whole-graph table
            assert r["onnx_cached_vs_full_max_rel"] <= 1e-6 and 0 < r["onnx_step_fraction"] <= 1
    assert report["rows"][0]["bare_max_abs_diff"] < 1e-6  # the yardstick enumeration measures the same losses
    assert "| exhaustive_losses | digits CNN |" in (tmp_path / "estimators.md").read_text()
    (h,) = report["hessian"]  # one probe per HVP call before, 8 probes per batched call after; traces within their standard errors
    (b,), (a,) = h["runs"]["before"], h["runs"]["after"]
    assert (b["hvp"], a["hvp"], h["probes_per_step"], h["seeds"]) == ("loop", "batched", 8, 1) and h["within_se"]
    assert b["hvp_calls"] == b["steps"] == b["iterations"] and a["hvp_calls"] == a["steps"] == -(-a["iterations"] // 8)
    assert b["s"] > 0 and a["s"] > 0 and h["before_hvp_calls"] == b["hvp_calls"]
    assert "## estimate_hessian_trace: batched probes" in (tmp_path / "estimators.md").read_text()
