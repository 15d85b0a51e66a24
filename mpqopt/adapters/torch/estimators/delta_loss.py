"""Measured sensitivity: the loss increase when one layer alone is quantized.

``values[l, k] = mean_b [ loss_b(layer l at option k, every other layer FP32) - loss_b(FP32) ]``
over the batches ``b``; ``std`` is the standard error of that mean across batches (None with a
single batch: one batch gives no spread). The loss is cross-entropy to the targets, or KL to the
FP32 model's outputs for unlabelled data (see :mod:`..data` for the other losses).

The FP32 activations before each layer are computed once per batch (see :mod:`..stages`), and only
the rest of the model runs per (layer, option); the options of one layer share one forward, stacked
along the batch, where that pays (small batches, or an accelerator). It needs one (partial) forward
pass per batch per (layer, option); options at 32 bits or more (weights, and
activations when the option has an activation width) are exactly zero and cost nothing. An option with activation bits (``W4A8``) also
fake-quantizes that layer's input to ``a`` bits, on a per-tensor range calibrated on the same data
(one extra pass per batch).

>>> import torch; from torch import nn
>>> _ = torch.manual_seed(0)
>>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
>>> data = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(2)]
>>> s = estimate_delta_loss(m, data, [2, 8, 32])
>>> s.values.shape, float(s.values[0, 2]), s.meta["forward_passes"]
((2, 3), 0.0, 10)
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ....options import OptionLike
from ...choices import is_identity
from ...sensitivity import check_finite, mean_and_stderr
from ..perturb import calibrate_activations, quantized
from ..stages import stage_model
from .base import Sensitivity, prepare
from .pairwise import _Runner, _stack_size


def estimate_delta_loss(model: nn.Module, data: Iterable[Any], options: Sequence[OptionLike], *,
                        batch_perturbations: int | str = "auto", mode: str = "auto", **kw: Any) -> Sensitivity:
    """Loss increase of quantizing each layer alone to each option (others FP32).

    Keyword arguments are the estimators' shared ones (``layers``, ``include``, ``exclude``,
    ``loss``, ``output_fn``, ``scheme``: see :mod:`mpqopt.adapters.torch.estimators`).
    ``batch_perturbations`` and ``mode`` as in :func:`~mpqopt.adapters.torch.estimate_pairwise`:
    the FP32 activations before each layer are computed once per batch and only the rest of the model
    runs per option, the options of one layer stacked along the batch where that pays.
    ``meta`` records ``forward_passes`` (model calls on one batch, partial ones included, with the
    FP32 reference pass; the staged forward's check on one batch is not counted), ``backward_passes``
    (0), ``mode``, ``step_fraction`` (steps run / steps of full forwards), ``batch_perturbations``
    and ``seconds``.
    """
    setup, base, act_ranges, forward = _measurement_setup(model, data, options, kw)
    ev, nb = setup.evaluator, setup.evaluator.num_batches
    L, K = len(setup.names), len(setup.options)
    live = [k for k, o in enumerate(setup.options) if not is_identity(o)]  # the others are exactly zero, no pass
    losses = np.zeros((L, K, nb))
    meta: dict[str, Any] = {"mode": "none", "step_fraction": 0.0, "batch_perturbations": 1}
    if live:
        staged = stage_model(setup.model, setup.names, ev.batches[0][0], mode=mode, output_fn=ev.output_fn)
        runner = _Runner(setup, staged, act_ranges, _stack_size(batch_perturbations, setup, staged), {})
        order = sorted(range(L), key=lambda l: (staged.cut[setup.names[l]], l))  # forward order
        with torch.no_grad():
            for b, (inputs, _) in enumerate(ev.batches):
                env, pos = staged.start(inputs), 0
                for i in order:  # the FP32 values before each layer, advanced once per batch
                    env, pos = staged.advance(env, pos, runner.cut[i]), runner.cut[i]
                    losses[i, live, b] = runner.options_at(env, b, i)
        forward += runner.evaluations
        meta = {"mode": staged.mode, "mode_reason": staged.reason, "step_fraction": round(staged.steps_run / (staged.num_steps * max(runner.evaluations, 1)), 4),
                "batch_perturbations": min(runner.group, len(live)) if runner.batching else 1, "batching_note": runner.note}
    values = np.zeros((L, K))
    std = np.zeros((L, K))
    for i in range(L):
        for k in live:
            values[i, k], std[i, k] = mean_and_stderr(losses[i, k] - base)
    return setup.result(values, std if nb > 1 else None, "delta_loss", forward_passes=forward, backward_passes=0, **meta)


def _delta_loss_reference(model: nn.Module, data: Iterable[Any], options: Sequence[OptionLike], **kw: Any) -> Sensitivity:
    """The plain measurement, a full forward per (layer, option, batch): what :func:`estimate_delta_loss`
    must equal (kept for its tests and benchmarks/bench_estimators.py).

    Loss increase of quantizing each layer alone to each option (others FP32).

    Keyword arguments are the estimators' shared ones (``layers``, ``include``, ``exclude``,
    ``loss``, ``output_fn``, ``scheme``: see :mod:`mpqopt.adapters.torch.estimators`). ``meta`` records ``forward_passes`` (model calls on one
    batch, including the FP32 reference pass), ``backward_passes`` (0) and ``seconds``.
    """
    setup, base, act_ranges, forward = _measurement_setup(model, data, options, kw)
    ev, nb = setup.evaluator, setup.evaluator.num_batches
    L, K = len(setup.names), len(setup.options)
    values = np.zeros((L, K))
    std = np.zeros((L, K))
    for i, name in enumerate(setup.names):
        for k, opt in enumerate(setup.options):
            if is_identity(opt):
                continue  # exactly zero, no pass needed
            with quantized(setup.model, {name: opt}, cache=setup.cache, act_ranges=act_ranges):
                losses = ev.batch_losses()
            forward += nb
            for b, value in enumerate(losses):
                check_finite(value, f"layer {name!r} at option {opt.label} (batch {b})")
            values[i, k], std[i, k] = mean_and_stderr(losses - base)
    return setup.result(values, std if nb > 1 else None, "delta_loss", forward_passes=forward, backward_passes=0)


def _measurement_setup(model: nn.Module, data: Iterable[Any], options: Sequence[OptionLike], kw: dict[str, Any]) -> tuple[Any, np.ndarray, Any, int]:
    """What both delta_loss paths start from: the setup, the FP32 losses per batch (from the reference
    outputs the evaluator already holds: no extra pass), activation ranges when an option quantizes
    inputs, and the forward passes spent so far."""
    setup = prepare(model, data, options, **kw)
    ev = setup.evaluator
    forward = ev.num_batches
    act_ranges = None
    if any(o.a is not None for o in setup.options):
        act_ranges = calibrate_activations(setup.model, setup.names, ev)
        forward += ev.num_batches
    return setup, ev.reference_losses(), act_ranges, forward
