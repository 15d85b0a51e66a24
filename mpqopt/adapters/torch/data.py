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

from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ProblemError
from ..losses import LOSS_NAMES, choose_loss
from ..sensitivity import check_finite, mean_and_stderr  # noqa: F401 - framework-free; importable from here too

LOSSES = LOSS_NAMES
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


def iter_tensors(value: Any) -> Iterator[torch.Tensor]:
    """The tensors in a batch's inputs (a tensor, or tuples, lists and dicts of them, nested), in order.

    >>> [tuple(t.shape) for t in iter_tensors({"ids": torch.zeros(2, 3), "extra": (torch.zeros(()), 7)})]
    [(2, 3), ()]
    """
    if isinstance(value, torch.Tensor):
        yield value
        return
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, (tuple, list)) else ()
    for item in items:
        yield from iter_tensors(item)


def model_device(model: nn.Module) -> torch.device:
    """Where the model's weights are (its first parameter or buffer; CPU for a model with none).

    >>> model_device(nn.Linear(2, 2)).type
    'cpu'
    """
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it (nested tuples, lists and dicts) moved to ``device``: batches
    go where the model is.

    >>> to_device({"ids": torch.zeros(2), "n": 3}, torch.device("cpu"))["n"]
    3
    """
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(v, device) for v in value)
    return value


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


def _ce(out: torch.Tensor, ref: torch.Tensor, target: Any) -> torch.Tensor:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))


def _kl(out: torch.Tensor, ref: torch.Tensor, target: Any) -> torch.Tensor:
    ref_log = F.log_softmax(ref.reshape(-1, ref.shape[-1]), dim=-1)
    out_log = F.log_softmax(out.reshape(-1, out.shape[-1]), dim=-1)
    return F.kl_div(out_log, ref_log, log_target=True, reduction="batchmean")


def _mse(out: torch.Tensor, ref: torch.Tensor, target: Any) -> torch.Tensor:
    return F.mse_loss(out, ref)


def _cosine(out: torch.Tensor, ref: torch.Tensor, target: Any) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(out.reshape(-1, out.shape[-1]), ref.reshape(-1, ref.shape[-1]), dim=-1).mean()


# the ONNX adapter has the same losses in numpy (mpqopt/adapters/onnx/runtime.py); these must stay
# torch ops, differentiable, for the gradient estimators
_LOSS_FNS: dict[str, LossFn] = {"ce": _ce, "kl": _kl, "mse": _mse, "cosine": _cosine}


class Evaluator:
    """Scores the current state of ``model`` on fixed data, batch by batch.

    The FP32 reference outputs are computed once at construction (the model must be unquantized
    then); every later call measures the model as it is (estimators perturb it in between). The
    batches (inputs and targets) are moved to the model's device once, here.
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
        device = model_device(model)
        # None, a number, a string or one dict of model inputs is not a collection of batches
        if data is None or isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
            raise ProblemError(f"data must be an iterable of batches (a list of tensors, (inputs, targets) tuples or dicts), got {type(data).__name__}")
        self.batches: list[tuple[Any, Any]] = [to_device(split_batch(b, i), device) for i, b in enumerate(data)]
        if not self.batches:
            raise ProblemError("data is empty: give at least one batch")
        self.output_fn = output_fn or default_output
        has_target = [t is not None for _, t in self.batches]
        self.loss_name, self._loss = choose_loss(loss, has_target, _LOSS_FNS)
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

    def reference_losses(self) -> np.ndarray:
        """Loss of each batch for the unquantized model, from the stored reference outputs (no
        forward pass), rejecting a non-finite one."""
        return np.array([check_finite(float(self.loss_of(i, self.references[i])), f"the unquantized model on batch {i}") for i in range(self.num_batches)])

    def batch_losses(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """Loss of each batch for the model as it is now."""
        idx = range(self.num_batches) if indices is None else indices
        return np.array([float(self.loss_of(i, self.output(i))) for i in idx])
