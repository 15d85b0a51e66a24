"""A tiny random-initialised Llama (transformers' LlamaConfig) for the LLM tests: runs in milliseconds.

Row lengths: every projection reads 64 features except ``down_proj`` (``intermediate`` = 256), so
block-size rules of 32-weight (Q4_0, int g32) and 256-weight (K-quants, TQ2_0) formats both show.
"""

from __future__ import annotations

import pytest


def tiny_llama(*, tied: bool = True, layers: int = 2, hidden: int = 64, intermediate: int = 256, vocab: int = 256, seed: int = 0):
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")
    transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install 'mpqopt[llm]')")
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=tied)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # larger weights than the 0.02 init, so the logits (and quantization errors) are not all tiny
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(5.0)
    return model


def token_batches(vocab: int = 256, batches: int = 2, batch: int = 2, length: int = 32, seed: int = 1):
    """Random token ids as ``{"input_ids": ...}`` batches (no labels)."""
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, vocab, (batch, length), generator=g)} for _ in range(batches)]


def load_gguf_model(path):
    """A transformers model from a GGUF file through transformers' own GGUF reader (config from the
    file's metadata, tensors dequantized and un-permuted by ``load_gguf_checkpoint``).
    ``from_pretrained(gguf_file=)`` is the same path but also needs ``accelerate``, which the test
    environment lacks; it is used when installed."""
    import importlib.util
    from pathlib import Path

    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path = Path(path)
    if importlib.util.find_spec("accelerate") is not None:
        return transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = transformers.AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict({k: torch.as_tensor(v) for k, v in tensors.items()}, strict=False)
    assert not unexpected, unexpected
    assert set(missing) <= {"lm_head.weight"} and (not missing or model.lm_head.weight is model.model.embed_tokens.weight), missing
    return model
