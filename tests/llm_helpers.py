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
