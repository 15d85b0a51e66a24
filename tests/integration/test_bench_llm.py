"""benchmarks/bench_llm.py: the llama.cpp-style recipe it compares against, and the whole study on a
tiny random Llama (the code ``make bench-llm`` runs on SmolLM2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark_scripts import load_benchmark

KINDS = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
         "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def llama_like(blocks: int, rng: np.random.Generator):
    """A Problem over Llama-named layers (HF names), random sizes, options in rising bits."""
    from mpqopt import Problem

    layers = ["model.embed_tokens"] + [f"model.layers.{b}.{m}" for b in range(blocks) for m in KINDS]
    params = rng.integers(50, 400, len(layers)).astype(float)
    bits = np.array([2.5, 3.0, 3.5, 4.0, 4.5, 5.0])
    return Problem(layers, ["W2", "W3", "W4", "W5", "W6", "W8"], rng.random((len(layers), len(bits))), costs={"size_bits": params[:, None] * bits[None, :]},
                   params=params)


def test_use_more_bits_is_llama_cpps_rule():
    bench = load_benchmark("bench_llm")
    # llama.cpp, 30 blocks: the first and last eighth (0-2, 26-29) and every third block from 3 on, starting at 5
    assert [i for i in range(30) if bench.use_more_bits(i, 30)] == [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]
    assert [i for i in range(8) if bench.use_more_bits(i, 8)] == [0, 3, 6, 7]


@pytest.mark.parametrize("seed", range(4))
def test_recipe_fits_favours_llama_cpps_tensors_and_leaves_no_affordable_step(seed):
    bench = load_benchmark("bench_llm")
    rng = np.random.default_rng(seed)
    p = llama_like(8, rng)
    cost = p.costs["size_bits"]
    lo, hi = cost[:, 0].sum(), cost[:, -1].sum()
    for limit in np.linspace(lo, hi, 7)[1:-1]:
        levels = bench.recipe(p, float(limit), blocks=8)
        assert levels is not None
        total = cost[np.arange(p.num_layers), levels].sum()
        assert total <= limit
        # the fill leaves no single tensor that could go one option up within the limit
        for i, k in enumerate(levels):
            if k < p.num_options - 1:
                assert total - cost[i, k] + cost[i, k + 1] > limit, (i, k)
        # before the fill, promoted tensors sat two options above the base: they never end below the base tensors
        favoured = [i for i, name in enumerate(p.layers) if name == "model.embed_tokens"
                    or (("v_proj" in name or "down_proj" in name) and bench.use_more_bits(int(name.split(".")[2]), 8))]
        others = [i for i in range(p.num_layers) if i not in favoured]
        assert min(levels[i] for i in favoured) >= min(levels[i] for i in others)
    assert bench.recipe(p, float(lo) - 1.0, blocks=8) is None
    # just above the cheapest total there is no room for promotions: the cheapest base, then the fill
    tight = bench.recipe(p, float(lo) + 0.5 * float(cost[:, 1].min() - cost[:, 0].min()), blocks=8)
    assert tight is not None and cost[np.arange(p.num_layers), tight].sum() <= lo + cost[:, 1].min()


def test_best_uniform_is_the_dearest_that_fits():
    bench = load_benchmark("bench_llm")
    p = llama_like(2, np.random.default_rng(7))
    totals = p.costs["size_bits"].sum(axis=0)
    for limit, want in [(totals[0] - 1, None), (totals[0], 0), (totals[3] + 0.5, 3), (totals[-1], p.num_options - 1)]:
        assert bench.best_uniform(p, float(limit)) == want


def test_the_llm_study_runs_on_a_tiny_llama(tmp_path):
    pytest.importorskip("torch", reason="the torch extra is not installed")
    pytest.importorskip("transformers", reason="transformers is not installed (pip install 'mpqopt[llm]')")
    pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'mpqopt[llm]')")
    bench = load_benchmark("bench_llm")
    assert bench.main(["--model", "tiny", "--budgets", "3.0,4.5", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "llm_tiny.json").read_text())
    assert report["decisions"] == 15  # 2 blocks x 7 Linears + the embedding (the head is tied to it)
    assert set(report["estimators"]) == set(bench.ESTIMATORS)
    for cell in report["budgets"]:
        rows = {row["method"]: row for row in cell["rows"]}
        assert any(m.startswith("uniform") for m in rows) and "llama.cpp-style recipe" in rows
        for row in rows.values():
            assert row["bpw"] <= cell["bpw"] + 1e-9 and sum(row["formats"].values()) == 15
        for name in bench.ESTIMATORS:  # exact is never predicted worse than greedy on its own table
            exact, greedy = rows[f"exact · {name}"], rows[f"greedy · {name}"]
            assert exact["status"] == "optimal" and exact["predicted"] <= greedy["predicted"] + 1e-12
    flow = report["gguf_flow"]
    assert flow["status"] == "optimal" and flow["loaded_matches_apply"]
    assert flow["rows"][0]["bpw"] <= bench.GGUF_BUDGET + 1e-9 and set(flow["rows"][0]["formats"]) <= set(bench.GGUF_OPTIONS)
    text = (tmp_path / "llm_tiny.md").read_text()
    assert "## Held-out perplexity at each budget" in text and "## The GGUF flow" in text
    assert report["checks"]["bpw_within_budget"]
