"""llama.cpp ``--tensor-type`` lines: on a 30-block model's full tensor list, each pattern, lower-cased and
regex-searched as llama-quantize does, matches exactly its own tensor; unsupported formats are refused."""

from __future__ import annotations

import re

import numpy as np
import pytest

import mpqopt
from mpqopt.synthetic import llm_problem
from mpqopt.errors import MpqoptError, ProblemError, UnsupportedFormatError
from mpqopt.io.targets import llama_cpp
from mpqopt.io.targets.names import hf_module_name

gguf = pytest.importorskip("gguf")
BLOCKS = 30
KINDS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
TYPES = ("Q2_K", "Q3_K", "Q4_0", "Q4_1", "Q4_K", "Q5_0", "Q5_K", "Q6_K", "Q8_0", "IQ4_XS", "MXFP4", "BF16")


def _model_tensors() -> list[str]:
    """Every tensor llama.cpp's Llama architecture can have, for 30 blocks (gguf's own tables)."""
    return [gguf.TENSOR_NAMES[t].format(bid=b) + ".weight" for t in gguf.MODEL_TENSORS[gguf.MODEL_ARCH.LLAMA] for b in range(BLOCKS)
            if "{bid}" in gguf.TENSOR_NAMES[t] or b == 0]


def _llama_cpp_search(pattern: str, name: str) -> bool:
    # what llama-quantize does: std::transform(..., tolower) on the pattern, std::regex_search on the name
    return re.search(pattern.lower(), name) is not None


def test_each_pattern_matches_exactly_its_tensor_in_a_30_block_model():
    rng = np.random.default_rng(0)
    allocation = {f"blk.{b}.{kind}": str(rng.choice(TYPES)) for b in range(BLOCKS) for kind in KINDS}
    allocation["token_embd"] = "Q6_K"
    allocation["lm_head"] = "Q8_0"  # the HF spelling of output.weight
    lines = llama_cpp.tensor_types(allocation)
    tensors = _model_tensors()
    assert len(lines) == len(allocation)
    for (layer, gtype), line in zip(allocation.items(), lines):
        pattern, _, written_type = line.rpartition("=")
        target = "output.weight" if layer == "lm_head" else layer + ".weight"
        assert [t for t in tensors if _llama_cpp_search(pattern, t)] == [target], line
        assert written_type.lower() == gtype.lower()
        assert " " not in line  # the file is read token by token


def test_an_unanchored_pattern_would_fail_the_same_check():
    tensors = _model_tensors()
    # the naive pattern for block 1: its last '.' matches any character, so blocks 10-19 are hit too
    blocks = {int(t.split(".")[1]) for t in tensors if _llama_cpp_search("blk.1.", t)}
    assert blocks == {1, *range(10, 20)}
    # escaped but not anchored: also a tensor whose name merely contains it
    assert _llama_cpp_search(r"blk\.1\.attn_v", "blk.1.attn_v_b.weight")
    assert not _llama_cpp_search(llama_cpp.tensor_pattern("blk.1.attn_v.weight"), "blk.1.attn_v_b.weight")


def test_file_and_args_carry_the_same_lines(tmp_path):
    allocation = {"model.layers.2.mlp.down_proj": "Q5_K", "blk.2.attn_v": "Q6_K"}
    text = llama_cpp.tensor_type_file(allocation)
    assert text.split() == llama_cpp.tensor_types(allocation) == llama_cpp.tensor_type_args(allocation)[1::2]
    assert llama_cpp.tensor_type_args(allocation)[0::2] == ["--tensor-type"] * 2


def test_a_solve_result_exports_its_assignment():
    p = llm_problem(blocks=2)
    r = mpqopt.solve(p, budgets={"size_bits": "4.5bpw"})
    lines = llama_cpp.tensor_types(r, tensor_names=_model_tensors())
    got = {line.rpartition("=")[0].strip("^$").replace("\\.", ".").removesuffix(".weight"): line.rpartition("=")[2] for line in lines}
    assert got == r.assignment


def test_checked_against_the_models_own_tensor_list():
    tied = [t for t in _model_tensors() if t != "output.weight"]
    with pytest.raises(UnsupportedFormatError, match=r"output\.weight matches no tensor of the model"):
        llama_cpp.tensor_types({"lm_head": "Q8_0"}, tensor_names=tied)


@pytest.mark.parametrize("option, why", [("int4-g128", "GGML types only"), ("nvfp4", "GGML types only"), ("W4", "names no storage format"),
                                         ("Q8_0-a8", "weights only")])
def test_formats_llama_cpp_cannot_store_are_refused_naming_layer_and_format(option, why):
    with pytest.raises(UnsupportedFormatError, match=why) as info:
        llama_cpp.tensor_types({"blk.0.attn_q": "Q4_K", "blk.3.ffn_up": option})
    assert "blk.3.ffn_up" in str(info.value) and option in str(info.value)


def test_bad_names_and_contradictions_are_errors():
    with pytest.raises(ProblemError, match="conv1"):
        llama_cpp.tensor_types({"conv1": "Q4_K"})
    with pytest.raises(UnsupportedFormatError, match="both tensor blk.0.attn_q.weight"):
        llama_cpp.tensor_types({"blk.0.attn_q": "Q4_K", hf_module_name("blk.0.attn_q"): "Q8_0"})
    with pytest.raises(UnsupportedFormatError, match="lower-cases"):
        llama_cpp.tensor_pattern("blk.0.Attn_q.weight")
    with pytest.raises(MpqoptError, match="empty"):
        llama_cpp.tensor_types({})
