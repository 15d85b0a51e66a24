"""benchmarks/gpu_check.py: without a GPU it says so and runs nothing; its flow runs on the CPU."""

from __future__ import annotations

import json

import pytest

from benchmark_scripts import load_benchmark

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("transformers", reason="transformers is not installed (pip install 'mpqopt[llm]')")
pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'mpqopt[llm]')")


def test_without_a_gpu_it_says_so(capsys, monkeypatch):
    bench = load_benchmark("gpu_check")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main([]) == 0
    assert "no GPU here" in capsys.readouterr().out
    assert bench.main(["--require"]) == 2


def test_the_flow_runs_on_the_cpu(tmp_path):
    bench = load_benchmark("gpu_check")
    assert bench.main(["--device", "cpu", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["ok"] and report["gguf_matches_apply"] and report["steps"]["solve"]["bpw"] <= 6.0 + 1e-9
    assert report["steps"]["imatrix"]["max_rel_diff_vs_cpu"] == 0.0
