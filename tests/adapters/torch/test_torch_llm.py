"""Causal-LM discovery (mpqopt.adapters.torch.llm) on a tiny random Llama: the decisions, tied
embeddings as one decision, shared q/k/v and gate/up formats, params and row lengths in the problem."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("transformers", reason="transformers is not installed (pip install 'mpqopt[llm]')")
from torch import nn  # noqa: E402

import mpqopt  # noqa: E402
from mpqopt.adapters.torch.llm import discover_llm_layers, llm_problem  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402
from llm_helpers import tiny_llama  # noqa: E402

torch.set_num_threads(1)
PROJ = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def test_every_block_linear_and_the_tied_embedding_as_one_decision():
    model = tiny_llama(tied=True)
    found = discover_llm_layers(model)
    expected = ["model.embed_tokens"] + [f"model.layers.{b}.{p}" for b in range(2) for p in PROJ]
    assert list(found.names) == expected
    assert found.tied == {"lm_head": "model.embed_tokens"} and model.lm_head.weight is model.model.embed_tokens.weight
    assert found.block_of["model.layers.1.mlp.down_proj"] == 1 and found.block_of["model.embed_tokens"] is None
    modules = dict(model.named_modules())
    for layer in found.layers:
        assert layer.weight_params == modules[layer.name].weight.numel()
        assert found.row_length(layer.name) == modules[layer.name].weight.shape[1]


def test_untied_head_is_its_own_decision_and_can_be_left_out():
    model = tiny_llama(tied=False)
    found = discover_llm_layers(model)
    assert found.tied == {} and found.names[-1] == "lm_head" and found.names[0] == "model.embed_tokens"
    assert "lm_head" not in discover_llm_layers(model, lm_head=False).names
    assert "model.embed_tokens" not in discover_llm_layers(model, embeddings=False).names
    assert discover_llm_layers(model, include="*.mlp.*").names == tuple(f"model.layers.{b}.mlp.{p}" for b in range(2) for p in ("gate_proj", "up_proj", "down_proj"))


def test_shared_formats_tie_qkv_and_gate_up_per_block():
    model = tiny_llama()
    found = discover_llm_layers(model, shared=("qkv", "gate_up"))
    want = [tuple(f"model.layers.{b}.{p}" for p in group) for b in range(2)
            for group in (PROJ[:3], PROJ[4:6])]
    assert sorted(found.ties) == sorted(want)
    with pytest.raises(ProblemError, match="shared='qk'"):
        discover_llm_layers(model, shared="qk")


def test_problem_carries_params_and_row_lengths_bpw_and_block_rules():
    model = tiny_llama(tied=True)
    options = ["Q4_0", "Q4_K", "Q8_0"]
    found = discover_llm_layers(model)
    L = len(found.names)
    rng = np.random.default_rng(0)
    table = np.sort(rng.random((L, 3)), axis=1)[:, ::-1].copy()  # more bits, less loss
    problem = llm_problem(model, table, options, budgets={"size_bits": "6.0bpw"}, shared="qkv")
    params = np.array([l.weight_params for l in found.layers], dtype=float)
    assert problem.params.tolist() == params.tolist()
    assert problem.row_lengths.tolist() == [found.row_length(n) for n in found.names]
    # Q4_K needs rows of 256: only down_proj (intermediate 256) may take it
    down = [i for i, n in enumerate(found.names) if n.endswith("down_proj")]
    assert problem.allowed[:, 1].nonzero()[0].tolist() == down
    # size in effective bits: 4.5 / 8.5 per weight (GGUF block layouts)
    assert np.allclose(problem.costs["size_bits"][:, [0, 2]], params[:, None] * [4.5, 8.5])
    result = mpqopt.solve(problem)
    assert result.status == "optimal"
    chosen = np.array([problem.costs["size_bits"][i, k] for i, k in enumerate(result.x)])
    assert chosen.sum() / params.sum() <= 6.0 + 1e-9
    for group in problem.ties:  # shared q/k/v take one format
        assert len({int(result.x[problem.layer_index(n)]) for n in group}) == 1


def test_model_without_linear_layers_is_a_clear_error():
    with pytest.raises(ProblemError, match="no nn.Linear layer"):
        discover_llm_layers(nn.Sequential(nn.Embedding(10, 4), nn.ReLU()))
    with pytest.raises(ProblemError, match="torch.nn.Module"):
        discover_llm_layers("model")
