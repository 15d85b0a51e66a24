"""Fine-tune gain (ALPS): the loss a layer's reduced precision still costs after a short fine-tune.

ALPS (Accuracy-aware Layer Precision Selection; Bablani, McKinstry, Esser, Appuswamy and Modha,
"Efficient and Effective Methods for Mixed Precision Neural Network Quantization for Faster,
Energy-efficient Inference", arXiv:2301.13330, 2023) lowers one layer's precision, fine-tunes the
network briefly and ranks the layers by what the fine-tune recovers. Here, for every layer ``l``
and option ``k``, on a deep copy of the model (the caller's model is never touched):

1. layer ``l`` is quantized to option ``k``, every other layer stays FP32, and the loss on ``data``
   is measured (this is :func:`~.delta_loss.estimate_delta_loss`'s number);
2. the copy is fine-tuned for ``steps`` optimizer steps on ``train_data`` (default: ``data``);
3. the loss on ``data`` is measured again, with layer ``l`` still quantized.

``values[l, k] = mean_b [loss_b(after fine-tune) - loss_b(FP32)]``: the loss increase that
*remains*, which is what an allocation should minimise. ``meta["before"]`` holds step 1's table and
``meta["gain"] = before - values`` what the fine-tune recovered. Every entry starts from the same
FP32 weights (the copy is reset between entries) and sees the same batches in the same order.

``mode="ste"`` (default) trains the whole network with layer ``l``'s weight re-quantized at every
forward and a straight-through gradient (quantization-aware training of that layer);
``mode="freeze"`` keeps layer ``l`` at the quantized FP32 weight and trains the other parameters
around it. The copy stays in eval mode throughout: BatchNorm statistics are frozen (a few steps
cannot re-estimate them) and the losses before and after are measured the same way.

Cost: per entry, ``steps`` forward+backward passes on training batches and two passes over
``data``; ``total_steps=`` spreads a global budget evenly over the entries instead. Options that
quantize nothing (32 bits or more, weights and activations) are exactly zero and cost nothing.

>>> import torch; from torch import nn
>>> _ = torch.manual_seed(0)
>>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
>>> data = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(2)]
>>> s = estimate_finetune_gain(m, data, [2, 32], steps=3)
>>> s.values.shape, float(s.values[0, 1]), s.meta["backward_passes"]
((2, 2), 0.0, 6)
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ....errors import ProblemError
from ....options import OptionLike
from ...choices import is_identity
from ...sensitivity import check_finite, mean_and_stderr
from ..layers import resolve_layer_names
from ..perturb import input_quantizer, calibrate_activations
from ..quantizer import FULL_PRECISION_BITS, WeightScheme, quantize_weight
from .base import Sensitivity, prepare
from .training import OptimizerFactory, batch_loss, batch_schedule, check_count, make_optimizer, training_evaluator

MODES = ("ste", "freeze")


# ---------------------------------------------------------------- the estimator
class _QuantizedWeight(nn.Module):
    """Parametrization of a layer's weight: re-quantized at every forward with a straight-through
    gradient, or (``frozen``) a constant quantized tensor the optimizer cannot move."""

    def __init__(self, bits: int, scheme: WeightScheme, frozen: torch.Tensor | None = None):
        super().__init__()
        self.bits, self.scheme = bits, scheme
        self.register_buffer("frozen", frozen, persistent=False)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.frozen is not None:
            return self.frozen
        return weight + (quantize_weight(weight, self.bits, self.scheme) - weight).detach()


def estimate_finetune_gain(
    model: nn.Module,
    data: Iterable[Any],
    options: Sequence[OptionLike],
    *,
    train_data: Iterable[Any] | None = None,
    steps: int = 20,
    total_steps: int | None = None,
    mode: str = "ste",
    lr: float = 1e-4,
    optimizer: OptimizerFactory | None = None,
    seed: int = 0,
    **kw: Any,
) -> Sensitivity:
    """Loss increase that remains after a short fine-tune with one layer at reduced precision.

    ``steps`` optimizer steps per (layer, option) entry, or ``total_steps`` shared evenly by the
    entries that need one. ``optimizer`` is a callable ``params -> torch.optim.Optimizer`` (default
    Adam at ``lr``). Other keyword arguments are the estimators' shared ones (``layers``,
    ``include``, ``exclude``, ``loss``, ``output_fn``, ``scheme``: see :mod:`mpqopt.adapters.torch.estimators`). ``meta``: ``before`` and ``gain``
    tables, ``steps_per_entry``, ``mode``, ``forward_passes``, ``backward_passes``, ``seconds``.
    """
    if mode not in MODES:
        raise ProblemError(f"mode must be one of {MODES}, got {mode!r}")
    work = copy.deepcopy(model)  # everything below changes weights: never the caller's model
    setup = prepare(work, data, options, **kw)
    ev = setup.evaluator
    train_ev = training_evaluator(work, train_data, ev, kw)
    scheme = setup.cache.scheme
    nb = ev.num_batches
    base = ev.reference_losses()
    forward = nb + (train_ev.num_batches if train_ev is not ev else 0)
    act_ranges = None
    if any(o.a is not None for o in setup.options):
        act_ranges = calibrate_activations(work, setup.names, ev)
        forward += nb

    entries = [(i, k) for i in range(len(setup.names)) for k, o in enumerate(setup.options) if not is_identity(o)]
    if total_steps is not None:
        total = check_count(total_steps, "total_steps")
        if entries and total < len(entries):
            raise ProblemError(f"total_steps={total} is fewer than the {len(entries)} (layer, option) entries to fine-tune: give at least one step each")
        steps = total // max(len(entries), 1)
    steps = check_count(steps, "steps")
    schedule = batch_schedule(train_ev.num_batches, steps, seed)
    state = {k: v.detach().clone() for k, v in work.state_dict().items()}
    modules = resolve_layer_names(work, setup.names)

    L, K = len(setup.names), len(setup.options)
    values, std, before = np.zeros((L, K)), np.zeros((L, K)), np.zeros((L, K))
    backward = 0
    for i, k in entries:
        name, opt = setup.names[i], setup.options[k]
        module = modules[name]
        work.load_state_dict(state)
        hooks, parametrized, frozen_param, was_trainable = [], False, None, True
        try:
            if opt.w < FULL_PRECISION_BITS:
                frozen = setup.cache.get(name, opt) if mode == "freeze" else None
                parametrize.register_parametrization(module, "weight", _QuantizedWeight(opt.w, scheme, frozen))
                parametrized = True
                if mode == "freeze":
                    frozen_param = module.parametrizations.weight.original
                    was_trainable = frozen_param.requires_grad
                    frozen_param.requires_grad_(False)
            if opt.a is not None and act_ranges is not None:
                hooks.append(module.register_forward_pre_hook(input_quantizer(opt.a, *act_ranges[name])))
            what = f"layer {name!r} at option {opt.label}"
            loss_before = np.array([check_finite(v, f"{what} before fine-tuning") for v in ev.batch_losses()])
            params = [p for p in work.parameters() if p.requires_grad]
            optim = make_optimizer(optimizer, params, lr)
            for b in schedule:
                optim.zero_grad(set_to_none=True)
                loss = batch_loss(train_ev, work, b)
                check_finite(float(loss.detach()), f"{what} while fine-tuning (training batch {b}); lower lr")
                loss.backward()
                optim.step()
            loss_after = np.array([check_finite(v, f"{what} after fine-tuning; lower lr") for v in ev.batch_losses()])
        finally:
            for h in hooks:
                h.remove()
            if frozen_param is not None:
                frozen_param.requires_grad_(was_trainable)
            if parametrized:
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        forward += 2 * nb + steps
        backward += steps
        before[i, k] = float(np.mean(loss_before - base))
        values[i, k], std[i, k] = mean_and_stderr(loss_after - base)
    work.load_state_dict(state)
    return setup.result(
        values, std if nb > 1 else None, "finetune_gain",
        forward_passes=forward, backward_passes=backward, steps_per_entry=steps, mode=mode,
        before=before, gain=before - values,
    )
