"""A tiny random-initialised Llama (transformers' LlamaConfig) for the LLM tests: runs in milliseconds.

Row lengths: every projection reads 64 features except ``down_proj`` (``intermediate`` = 256), so
block-size rules of 32-weight (Q4_0, int g32) and 256-weight (K-quants, TQ2_0) formats both show.
"""

from __future__ import annotations

import pytest


def tiny_llama(**kw):
    """:func:`mpqopt.examples.llm.tiny_llama`, skipping the test when torch or transformers is missing."""
    pytest.importorskip("torch", reason="the torch extra is not installed")
    pytest.importorskip("transformers", reason="transformers is not installed (pip install 'mpqopt[llm]')")
    from mpqopt.examples.llm import tiny_llama as build

    return build(**kw)


def token_batches(vocab: int = 256, batches: int = 2, batch: int = 2, length: int = 32, seed: int = 1):
    """Random token ids as ``{"input_ids": ...}`` batches (no labels)."""
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, vocab, (batch, length), generator=g)} for _ in range(batches)]


def load_gguf_model(path):
    """:func:`mpqopt.adapters.torch.load_gguf_model` (transformers' own GGUF reader), checking the
    head stays tied to the embedding when the file has no ``output.weight``."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from mpqopt.adapters.torch import load_gguf_model as load

    model = load(path)
    if model.config.tie_word_embeddings:
        assert model.lm_head.weight is model.model.embed_tokens.weight
    return model
