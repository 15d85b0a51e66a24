"""Measured sensitivity: the loss increase when one layer alone is quantized.

``values[l, k] = mean_b [ loss_b(layer l at option k, every other layer FP32) - loss_b(FP32) ]``
over the batches ``b``; ``std`` is the standard error of that mean across batches (None with a
single batch: one batch gives no spread). The loss is cross-entropy to the targets, or KL to the
FP32 model's outputs for unlabelled data (see :mod:`..data` for the other losses).

It needs one forward pass per batch per (layer, option); options at 32 bits or more (weights, and
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
from torch import nn

from ....options import OptionLike
from ...choices import is_identity
from ...sensitivity import check_finite, mean_and_stderr
from ..perturb import calibrate_activations, quantized
from .base import Sensitivity, prepare


def estimate_delta_loss(model: nn.Module, data: Iterable[Any], options: Sequence[OptionLike], **kw: Any) -> Sensitivity:
    """Loss increase of quantizing each layer alone to each option (others FP32).

    Keyword arguments are the estimators' shared ones (``layers``, ``include``, ``exclude``,
    ``loss``, ``output_fn``, ``scheme``: see :mod:`mpqopt.adapters.torch.estimators`). ``meta`` records ``forward_passes`` (model calls on one
    batch, including the FP32 reference pass), ``backward_passes`` (0) and ``seconds``.
    """
    setup = prepare(model, data, options, **kw)
    ev = setup.evaluator
    nb = ev.num_batches
    base = ev.reference_losses()  # from the reference outputs the evaluator already holds: no extra pass
    forward = nb
    act_ranges = None
    if any(o.a is not None for o in setup.options):
        act_ranges = calibrate_activations(setup.model, setup.names, ev)
        forward += nb
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
