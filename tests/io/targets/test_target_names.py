"""HF <-> GGUF names of Llama models (``mpqopt.io.targets.names``) against llama.cpp's own map
(``gguf.TensorNameMap``) over every module of a real ``transformers`` Llama."""

from __future__ import annotations

import pytest

from mpqopt.errors import ProblemError
from mpqopt.io.targets.names import gguf_tensor_name, hf_module_name, is_gguf_name, llama_tensor_names, module_name

gguf = pytest.importorskip("gguf")


def _hf_llama_modules(blocks: int) -> list[str]:
    """Module names of a tiny random LlamaForCausalLM with parameters (Linear, Embedding, RMSNorm)."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=blocks,
                                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(config)
    return [name for name, module in model.named_modules() if name and next(module.parameters(recurse=False), None) is not None]


def test_every_llama_module_maps_as_llama_cpp_maps_it_and_back():
    blocks = 12
    oracle = gguf.TensorNameMap(gguf.MODEL_ARCH.LLAMA, blocks)
    modules = _hf_llama_modules(blocks)
    assert len(modules) == 3 + 9 * blocks  # embed, norm, lm_head; 7 linears + 2 norms per block
    for hf in modules:
        expected = oracle.get_name(hf)
        assert expected is not None, hf
        assert gguf_tensor_name(hf) == expected + ".weight"
        assert gguf_tensor_name(hf + ".weight", suffix=False) == expected
        assert hf_module_name(expected) == hf
        assert hf_module_name(expected + ".weight") == hf
        assert is_gguf_name(expected) and not is_gguf_name(hf)
        assert module_name(expected) == hf == module_name(hf)


def test_block_numbers_are_not_confused():
    assert gguf_tensor_name("model.layers.1.self_attn.v_proj") == "blk.1.attn_v.weight"
    assert gguf_tensor_name("model.layers.10.self_attn.v_proj") == "blk.10.attn_v.weight"
    assert hf_module_name("blk.10.attn_v", prefix="") == "layers.10.self_attn.v_proj"


def test_tensor_list_is_llama_cpps():
    blocks = 30
    expected = {gguf.TENSOR_NAMES[t].format(bid=b) + ".weight" for t in gguf.MODEL_TENSORS[gguf.MODEL_ARCH.LLAMA]
                for b in range(blocks)}
    names = llama_tensor_names(blocks)
    assert len(names) == len(set(names)) and set(names) <= expected
    assert "output.weight" not in llama_tensor_names(blocks, tied=True)


@pytest.mark.parametrize("name", ["model.layers.3.self_attn.rotary", "blk.3.attn_qkv", "blk.x.attn_q", "model.lm_head", "conv1", ""])
def test_unknown_names_are_errors_naming_the_tensor(name):
    with pytest.raises(ProblemError, match=repr(name).replace(".", r"\.")):
        gguf_tensor_name(name)


def test_non_llama_names_pass_through_for_hf_tools_but_not_bad_gguf_names():
    assert module_name("encoder.layer.0.attention.self.query.weight") == "encoder.layer.0.attention.self.query"
    with pytest.raises(ProblemError, match="blk.3.attn_qkv"):
        module_name("blk.3.attn_qkv")
