"""How estimators read data and score a model: batches, outputs and losses.

A *batch* is a tensor (inputs only), a ``(inputs, targets)`` tuple, or a dict of keyword inputs
(e.g. a tokenizer's output, with optional ``"labels"``). ``output_fn`` turns the model's output
into the tensor that is scored (default: the tensor itself, ``.logits``, or ``.last_hidden_state``).

Losses (``loss=``): ``"ce"`` cross-entropy to the targets; ``"kl"`` KL(FP32 ‖ quantized) of the
softmax outputs (unlabelled classifiers); ``"mse"`` and ``"cosine"`` (1 − cosine) against the FP32
output (embeddings); ``"auto"`` = ``"ce"`` when batches carry targets, else ``"kl"``; or a callable
``loss(output, reference, target) -> scalar tensor``.

>>> import torch
>>> from torch import nn
>>> m = nn.Linear(4, 3)
>>> ev = Evaluator(m, [(torch.randn(8, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))])
>>> ev.loss_name, ev.batch_losses().shape
('ce', (1,))
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ProblemError

LOSSES = ("auto", "ce", "kl", "mse", "cosine")
LossFn = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


def split_batch(batch: Any, index: int = 0) -> tuple[Any, Any]:
    """``(inputs, target)`` of one batch; target is None for unlabelled data."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, dict):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return inputs, batch.get("labels")
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1:
            return batch[0], None
        if len(batch) == 2:
            return batch[0], batch[1]
        raise ProblemError(f"batch {index} is a sequence of {len(batch)} items: expected (inputs,) or (inputs, targets)")
    raise ProblemError(f"batch {index} is a {type(batch).__name__}: expected a tensor, an (inputs, targets) tuple or a dict of model inputs")


def call_model(model: nn.Module, inputs: Any) -> Any:
    """Run ``model`` on one batch's inputs (a tensor, a tuple of positional tensors, or keywords)."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def default_output(output: Any) -> torch.Tensor:
    """The tensor to score from a model's output."""
    if isinstance(output, torch.Tensor):
        return output
    for attr in ("logits", "last_hidden_state"):
        value = getattr(output, attr, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ProblemError(f"cannot find the output tensor in a {type(output).__name__}: pass output_fn= to pick it")


def _named_loss(name: str) -> LossFn:
    def ce(out: torch.Tensor, ref: torch.Tensor, target: Any) -> torch.Tensor:
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))

    def kl(out: torch.Tensor, ref: torch.Tensor, target: Any) -> torch.Tensor:
        ref_log = F.log_softmax(ref.reshape(-1, ref.shape[-1]), dim=-1)
        out_log = F.log_softmax(out.reshape(-1, out.shape[-1]), dim=-1)
        return F.kl_div(out_log, ref_log, log_target=True, reduction="batchmean")

    def mse(out: torch.Tensor, ref: torch.Tensor, target: Any) -> torch.Tensor:
        return F.mse_loss(out, ref)

    def cosine(out: torch.Tensor, ref: torch.Tensor, target: Any) -> torch.Tensor:
        return 1.0 - F.cosine_similarity(out.reshape(-1, out.shape[-1]), ref.reshape(-1, ref.shape[-1]), dim=-1).mean()

    return {"ce": ce, "kl": kl, "mse": mse, "cosine": cosine}[name]


class Evaluator:
    """Scores the current state of ``model`` on fixed data, batch by batch.

    The FP32 reference outputs are computed once at construction (the model must be unquantized
    then); every later call measures the model as it is (estimators perturb it in between).
    """

    def __init__(
        self,
        model: nn.Module,
        data: Iterable[Any],
        loss: str | LossFn = "auto",
        output_fn: Callable[[Any], torch.Tensor] | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise ProblemError(f"expected a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.batches: list[tuple[Any, Any]] = [split_batch(b, i) for i, b in enumerate(data)]
        if not self.batches:
            raise ProblemError("data is empty: give at least one batch")
        self.output_fn = output_fn or default_output
        has_target = [t is not None for _, t in self.batches]
        if isinstance(loss, str):
            if loss not in LOSSES:
                raise ProblemError(f"loss must be one of {LOSSES} or a callable, got {loss!r}")
            if loss == "auto":
                loss = "ce" if all(has_target) else "kl"
            if loss == "ce" and not all(has_target):
                raise ProblemError(f"loss 'ce' needs targets, but batch {has_target.index(False)} has none: give (inputs, targets) batches or use loss='kl'")
            self.loss_name, self._loss = loss, _named_loss(loss)
        elif callable(loss):
            self.loss_name, self._loss = getattr(loss, "__name__", "custom"), loss
        else:
            raise ProblemError(f"loss must be one of {LOSSES} or a callable, got {type(loss).__name__}")
        self.references = [self.output(i) for i in range(len(self.batches))]

    @property
    def num_batches(self) -> int:
        return len(self.batches)

    def output(self, index: int) -> torch.Tensor:
        """The model's scored output on batch ``index`` (no gradient)."""
        inputs, _ = self.batches[index]
        with torch.no_grad():
            try:
                out = call_model(self.model, inputs)
            except (RuntimeError, TypeError, ValueError) as exc:
                raise ProblemError(f"the model failed on batch {index} (wrong input shape or type?): {exc}") from None
            return self.output_fn(out).detach()

    def loss_of(self, index: int, output: torch.Tensor) -> torch.Tensor:
        """Loss of ``output`` on batch ``index`` (differentiable when ``output`` is)."""
        _, target = self.batches[index]
        try:
            return self._loss(output, self.references[index], target)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ProblemError(f"loss '{self.loss_name}' failed on batch {index} (targets of the wrong shape?): {exc}") from None

    def batch_losses(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """Loss of each batch for the model as it is now."""
        idx = range(self.num_batches) if indices is None else indices
        return np.array([float(self.loss_of(i, self.output(i))) for i in idx])


def mean_and_stderr(samples: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Mean over ``axis`` and its standard error (0 with a single sample).

    >>> [float(v) for v in mean_and_stderr(np.array([1.0, 3.0]))]
    [2.0, 1.0]
    """
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.shape[axis]
    mean = samples.mean(axis=axis)
    if n < 2:
        return mean, np.zeros_like(mean)
    return mean, samples.std(axis=axis, ddof=1) / np.sqrt(n)


def check_finite(value: float, what: str) -> float:
    """Reject NaN/inf losses with a message naming what produced them."""
    if not np.isfinite(value):
        raise ProblemError(f"{what} gave a non-finite loss ({value}); check the model, the data and the loss function")
    return value
