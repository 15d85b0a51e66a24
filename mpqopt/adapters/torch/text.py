"""Token data for causal LMs: batches of token ids, next-token loss, and held-out perplexity.

Calibration and evaluation text must not overlap: :func:`split_tokens` takes the calibration
tokens from the start of a token stream and the evaluation tokens from its end, and refuses to let
them meet. :func:`pydoc_text` is a real English text every Python has (CPython's reference prose,
``pydoc_data.topics``, about 113k SmolLM2 tokens).

>>> import torch
>>> calib, held_out = split_tokens(list(range(100)), 40, 30)
>>> int(calib[-1]), int(held_out[0])
(39, 70)
>>> [tuple(b["input_ids"].shape) for b in token_batches(calib, seq_len=8, batch_size=2)]
[(2, 8), (2, 8)]
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ProblemError
from .data import call_model, default_output, model_device, split_batch, to_device

__all__ = ["input_ids", "vocab_size", "next_token_nll", "token_batches", "split_tokens", "perplexity", "pydoc_text"]


def input_ids(batch: Any, index: int = 0, vocab: int | None = None) -> torch.Tensor:
    """The ``[batch, tokens]`` token ids of a batch: a LongTensor, a dict with ``input_ids``, or an
    ``(inputs, targets)`` pair of those. ``vocab`` (:func:`vocab_size`): ids must lie in ``0..vocab-1``
    (else the embedding fails with a bare ``IndexError``)."""
    inputs, _ = split_batch(batch, index)
    ids = inputs.get("input_ids") if isinstance(inputs, dict) else inputs
    if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int64, torch.int32) or ids.dim() != 2:
        raise ProblemError(f"batch {index}: a causal LM batch is a [batch, tokens] integer tensor of token ids or a dict with 'input_ids', got {type(ids).__name__}")
    if vocab is not None and ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        bad = int(ids.max()) if int(ids.max()) >= vocab else int(ids.min())
        raise ProblemError(f"batch {index} holds token id {bad}, but the model's vocabulary has {vocab} ids (0..{vocab - 1}): "
                           "text tokenized for another model?")
    return ids


def vocab_size(model: nn.Module) -> int | None:
    """Rows of the model's token embedding (``get_input_embeddings``, else its only ``nn.Embedding``), or None."""
    get = getattr(model, "get_input_embeddings", None)
    embed = get() if callable(get) else None
    if not isinstance(embed, nn.Embedding):
        embeds = [m for m in model.modules() if isinstance(m, nn.Embedding)]
        embed = embeds[0] if len(embeds) == 1 else None
    return None if embed is None else int(embed.num_embeddings)


def next_token_nll(logits: torch.Tensor, ids: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of each next token: position t predicts token t+1 (the last position predicts nothing).

    >>> round(float(next_token_nll(torch.zeros(1, 3, 4), torch.tensor([[0, 1, 2]]))), 4)   # uniform over 4
    1.3863
    """
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1).to(logits.device), reduction=reduction)


def token_batches(ids: Sequence[int] | torch.Tensor, *, seq_len: int, batch_size: int = 1, max_batches: int | None = None) -> list[dict[str, torch.Tensor]]:
    """``{"input_ids": [batch_size, seq_len]}`` batches of consecutive windows of ``ids`` (the tail that
    does not fill a batch is dropped)."""
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise ProblemError(f"seq_len must be an integer >= 2 (one token predicts the next), got {seq_len!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ProblemError(f"batch_size must be a positive integer, got {batch_size!r}")
    flat = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    n = flat.numel() // (seq_len * batch_size)
    if max_batches is not None:
        n = min(n, int(max_batches))
    if n < 1:
        raise ProblemError(f"{flat.numel()} tokens do not fill one batch of {batch_size} x {seq_len} tokens")
    windows = flat[: n * batch_size * seq_len].reshape(n, batch_size, seq_len)
    return [{"input_ids": w.clone()} for w in windows]


def split_tokens(ids: Sequence[int] | torch.Tensor, calibration: int, evaluation: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint ``(calibration, evaluation)`` token streams: the first ``calibration`` tokens and the
    last ``evaluation`` ones; an error when there are not enough tokens for both."""
    flat = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    if calibration < 1 or evaluation < 1:
        raise ProblemError(f"calibration and evaluation need at least one token each, got {calibration} and {evaluation}")
    if calibration + evaluation > flat.numel():
        raise ProblemError(f"{calibration} calibration + {evaluation} evaluation tokens overlap: the text has only {flat.numel()} tokens")
    return flat[:calibration].clone(), flat[flat.numel() - evaluation :].clone()


def perplexity(model: nn.Module, data: Iterable[Any]) -> float:
    """``exp`` of the mean next-token negative log-likelihood over every predicted token of ``data``
    (batches as :func:`input_ids` reads them; the model is called as ``model(input_ids=...)``, as every
    transformers causal LM is), on the model's device, in eval mode (restored after).

    >>> class Uniform(nn.Module):
    ...     def forward(self, input_ids): return torch.zeros(*input_ids.shape, 10)
    >>> round(perplexity(Uniform(), [torch.zeros(2, 5, dtype=torch.long)]), 4)
    10.0
    """
    was_training = model.training
    model.eval()
    device, vocab = model_device(model), vocab_size(model)
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for i, batch in enumerate(data):
                ids = to_device(input_ids(batch, i, vocab), device)
                logits = default_output(call_model(model, {"input_ids": ids}))
                total += float(next_token_nll(logits, ids, reduction="sum"))
                count += ids.shape[0] * (ids.shape[1] - 1)
    finally:
        model.train(was_training)
    if count == 0:
        raise ProblemError("perplexity needs at least one batch of two or more tokens")
    return math.exp(total / count)


def pydoc_text() -> str:
    """CPython's reference prose: every topic of ``pydoc_data.topics``, sorted by key, joined by blank lines.

    >>> len(pydoc_text()) > 100_000
    True
    """
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))
