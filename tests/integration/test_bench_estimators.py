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
    md = (tmp_path / "estimators.md").read_text()
    rows = [(r["estimator"], r["model"]) for r in report["rows"]]
    assert rows[:4] == [("exhaustive_losses", "digits CNN"), ("estimate_delta_loss", "digits CNN"), ("estimate_delta_loss", "digits CNN"),
                        ("estimate_delta_loss", "random conv chain, 8 layers")]
    # Fashion-MNIST and MiniLM run where their data and weights are installed, else the report says why not
    models = {"digits CNN"} | {m for m, key in (("Fashion-MNIST CNN", "fashion"), ("MiniLM-L6", "minilm")) if key not in report["skipped"]}
    for key, why in report["skipped"].items():
        assert f"{key}: skipped: {why}" in md
    expected = {("exhaustive_losses", m) for m in models - {"MiniLM-L6"}} | {("estimate_delta_loss", m) for m in models}
    assert expected <= set(rows) and {r["model"] for r in report["hessian"]} == models
    for r in report["rows"]:
        if r["estimator"] == "estimate_delta_loss":  # joined, stacked or channels-last forwards: float round-off at most
            assert r["agrees"] and r["max_abs_diff"] <= 1e-6 and r.get("after_nchw_equal", {"max_abs_diff": 0.0})["max_abs_diff"] <= 1e-6
        else:  # exhaustive_losses: the reference's shapes, so bit for bit
            assert r["identical"]
        assert r["before_s"] > 0 and r["after_s"] > 0 and r["before_cpu_s"] > 0 and r["after_cpu_s"] > 0
        assert r.get("max_abs_diff_onnx", 0.0) < 1e-5  # the ONNX export agrees to float round-off
        if r["estimator"] == "estimate_delta_loss" and r["model"] != "MiniLM-L6":  # the CNNs export to ONNX
            assert "onnx_error" not in r and "max_abs_diff_onnx" in r
        if "onnx_mode" in r:  # ONNX delta_output: cached suffix runs (where auto finds they pay) give the whole-graph table
            assert r["onnx_cached_vs_full_max_rel"] <= 1e-6 and 0 < r["onnx_step_fraction"] <= 1
        assert f"| {r['estimator']} | {r['model']} | {r['batches']} |" in md
    for r in report["rows"]:
        if r["estimator"] == "exhaustive_losses":  # the yardstick enumeration measures the same losses
            assert r["bare_max_abs_diff"] < 1e-6 and r["allocations"] == 4**5
    for h in report["hessian"]:  # one probe per HVP call before, up to 8 probes per batched call after; traces within their standard errors
        (b,), (a,) = h["runs"]["before"], h["runs"]["after"]
        assert (b["hvp"], a["hvp"], h["seeds"]) == ("loop", "batched", 1) and h["within_se"]
        assert b["hvp_calls"] == b["steps"] == b["iterations"] and a["hvp_calls"] == a["steps"] == -(-a["iterations"] // h["probes_per_step"])
        assert b["s"] > 0 and a["s"] > 0 and b["cpu_s"] > 0 and h["before_hvp_calls"] == b["hvp_calls"]
        assert f"| {h['model']} | {h['batches']} |" in md
    assert report["hessian"][0]["probes_per_step"] == 8  # digits: 20 batches, max_iter 400
    assert "## estimate_hessian_trace: batched probes" in md


@pytest.mark.slow
def test_only_runs_the_named_estimators_and_the_report_says_so(tmp_path):
    bench = load_benchmark("bench_estimators")
    assert bench.main(["--quick", "--repeat", "1", "--models", "digits", "--only", "delta_loss", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "estimators.json").read_text())
    assert report["only"] == ["delta_loss"] and not report["hessian"]
    assert {r["estimator"] for r in report["rows"]} == {"estimate_delta_loss"} and len(report["rows"]) == 3
    assert "Partial run (`--only delta_loss`)" in (tmp_path / "estimators.md").read_text()
    with pytest.raises(SystemExit):
        bench.main(["--only", "delta"])
