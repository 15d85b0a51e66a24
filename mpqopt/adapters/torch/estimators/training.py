"""What the training estimators share (fine-tune gain, LIMPQ's LSQ indicators, CSQ): the training
evaluator, a differentiable batch loss, the batch order, the optimizer, and argument checks.

>>> batch_schedule(3, 7, seed=0)   # shuffled epochs over 3 batches, cut to 7 steps
[2, 0, 1, 2, 1, 0, 1]
>>> check_count(5, "steps")
5
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from ....errors import ProblemError
from ..data import Evaluator, call_model

__all__ = ["OptimizerFactory", "training_evaluator", "batch_loss", "batch_schedule", "check_count", "make_optimizer"]

OptimizerFactory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


def training_evaluator(model: nn.Module, train_data: Iterable[Any] | None, evaluator: Evaluator, kw: dict[str, Any]) -> Evaluator:
    """An evaluator over the training batches with the same loss and output choice as ``evaluator``
    (``kw``: the estimator's keyword arguments, read for ``loss`` and ``output_fn``).

    Built while ``model`` is still FP32, so KL/MSE losses distil towards the FP32 outputs.
    """
    if train_data is None:
        return evaluator
    return Evaluator(model, train_data, loss=kw.get("loss", "auto"), output_fn=kw.get("output_fn"))


def batch_loss(evaluator: Evaluator, model: nn.Module, index: int) -> torch.Tensor:
    """Differentiable loss of ``model`` (as it is now) on batch ``index`` of ``evaluator``."""
    inputs, _ = evaluator.batches[index]
    return evaluator.loss_of(index, evaluator.output_fn(call_model(model, inputs)))


def batch_schedule(num_batches: int, steps: int, seed: int) -> list[int]:
    """Batch index of each step: shuffled epochs over the batches, deterministic for a seed."""
    gen = torch.Generator().manual_seed(int(seed))
    order: list[int] = []
    while len(order) < steps:
        order.extend(torch.randperm(num_batches, generator=gen).tolist())
    return order[:steps]


def check_count(value: Any, what: str, minimum: int = 1) -> int:
    """A whole number of at least ``minimum`` (steps, epochs...), or a ProblemError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ProblemError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def make_optimizer(factory: OptimizerFactory | None, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """``factory(params)``, or Adam at ``lr`` when no factory is given."""
    if not params:
        raise ProblemError("nothing to train: every parameter of the model has requires_grad=False")
    if factory is None:
        if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0):
            raise ProblemError(f"lr must be a positive number, got {lr!r}")
        return torch.optim.Adam(params, lr=float(lr))
    opt = factory(params)
    if not isinstance(opt, torch.optim.Optimizer):
        raise ProblemError(f"optimizer must be a callable returning a torch.optim.Optimizer, got {type(opt).__name__}")
    return opt
