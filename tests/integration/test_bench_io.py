"""benchmarks/bench_io.py runs end to end in --smoke mode, and its round-trip check catches a load that changes the problem."""

from __future__ import annotations

import json

import mpqopt
from benchmark_scripts import load_benchmark


def test_the_io_benchmark_runs_and_every_round_trip_is_exact(tmp_path):
    bench = load_benchmark("bench_io")
    assert bench.main(["--smoke", "--tmp", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "io.json").read_text())
    assert report["mode"] == "smoke" and report["layers"] == bench.SMOKE_LAYERS and report["repeat"] == 1
    assert [(c["problem"], c["format"]) for c in report["cases"]] == [(p, f) for p in ("random", "synthetic") for f in ("npz", "json")]
    for case in report["cases"]:
        assert case["equal"] and case["differences"] == []
        assert case["bytes"] > 0 and case["mb"] == case["bytes"] / 1e6
        for part in ("save", "load"):
            assert len(case[part]["wall_s"]) == 1 and case[part]["wall"]["median_ms"] > 0
    sizes = {(c["problem"], c["format"]): c["bytes"] for c in report["cases"]}
    assert sizes["random", "json"] > sizes["random", "npz"]  # 17-digit decimals against 8-byte floats
    assert list((tmp_path).glob("mpqopt_bench_io_*")) == []  # the temporary files are gone
    assert "| random | NPZ |" in (tmp_path / "out" / "io.md").read_text()


def test_a_load_that_changes_one_entry_fails_the_benchmark(tmp_path, monkeypatch):
    bench = load_benchmark("bench_io")
    real = mpqopt.load

    def load_and_nudge(path):
        p = real(path)
        if str(path).endswith(".json"):
            size = p.costs["size_bits"].copy()
            size[3, 2] = float(size[3, 2]) * (1 + 2**-52)  # one ulp
            p = p.replace(costs={**p.costs, "size_bits": size})
        return p

    monkeypatch.setattr(mpqopt, "load", load_and_nudge)
    assert bench.main(["--smoke", "--tmp", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    report = json.loads((tmp_path / "out" / "io.json").read_text())
    assert {c["format"]: c["differences"] for c in report["cases"] if c["problem"] == "random"} == {"npz": [], "json": ["costs['size_bits']"]}
    assert "NO: costs['size_bits']" in (tmp_path / "out" / "io.md").read_text()
