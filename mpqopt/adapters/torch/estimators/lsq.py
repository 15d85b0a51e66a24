"""LIMPQ's learned importance indicators: LSQ step sizes trained jointly for every candidate bit-width.

LIMPQ (Tang, Ouyang, Wang, Yang, Tang, Zhang, Liu, Zhu and Li, "Mixed-Precision Neural Network
Quantization via Learned Layer-wise Importance", ECCV 2022; github.com/1hunters/LIMPQ) gives every
layer one LSQ step size per candidate bit-width, for its weights and for its input activations,
and trains them all at once: each step runs one forward/backward per *uniform* policy (every layer
at bit ``b``, for each candidate ``b``) plus one *random mixed* policy (each layer at a random
candidate), accumulates the gradients and takes one optimizer step. The learned step sizes are the
importance indicators: the ILP minimises ``sum_l act[l][a_l] + alpha * weight[l][w_l]``.

LSQ (Esser, McKinstry, Bablani, Appuswamy and Modha, "Learned Step Size Quantization", ICLR 2020):
``q(x) = round(clamp(x / s, Qn, Qp)) * s`` with a straight-through rounding gradient, and the step's
gradient scaled by ``g = 1 / sqrt(numel(x) * Qp)``; :func:`lsq_quantize` implements it.

As in LIMPQ's ``indicators_pretraining``: step sizes are per tensor; weights use the signed grid
``[-2^(b-1), 2^(b-1) - 1]`` and start at ``max(|mu - 3 sigma|, |mu + 3 sigma|) / 2^(b-1)``;
activations use the unsigned grid ``[0, 2^b - 1]`` (the signed one when the calibrated input range
goes below zero) and start at ``2 mean|x| / sqrt(Qp)`` on their first training batch; gradients are
clipped to +-1 by value; SGD with momentum 0.9. Differences: the copy is trained in eval mode
(BatchNorm statistics frozen) where LIMPQ keeps one BatchNorm per bit-width; step sizes are clamped
below at 1e-5 but not above at 1 (LIMPQ's cap assumes ImageNet-normalised inputs); by default only
the step sizes train (``train_weights=True`` trains the weights too, as LIMPQ does: in 60 steps on
the digits CNN that raised the 8-bit policy's loss from 0.018 to 0.04-1.7 depending on the weight
learning rate, since one set of weights must serve every bit-width, while the 2-bit loss fell).

Candidate bits are the options' distinct weight bits (and activation bits) below 32. Uniform policy
``r`` puts every layer at the ``r``-th highest weight bit and ``r``-th highest activation bit (the
lowest when a list is shorter); the random policy draws one rank per layer, so with LIMPQ's crossed
options (``W6A6`` ... ``W2A2``) both follow the source exactly.

The table: ``values[l, k] = alpha * weight[l][w_k] + act[l][a_k]`` (a term is 0 at 32 bits or
more, the activation term 0 for weight-only options), computed by
:func:`mpqopt.importers.limpq_indicators.indicator_table`. ``meta["indicators"]`` is the LIMPQ
indicator dict (``{"weight": {layer: {"4": s}}, "act": ..., "layer_name": [...]}``, what LIMPQ's
``search.py`` reads); ``meta["allowed"]`` masks LIMPQ's "wired points" (pass
``allowed=s.meta["allowed"]`` to :meth:`~.base.Sensitivity.problem` to reproduce its preprocessing).

>>> import torch; from torch import nn
>>> _ = torch.manual_seed(0)
>>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
>>> data = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(2)]
>>> s = estimate_lsq_indicators(m, data, [2, 4, 8], steps=3)
>>> sorted(s.meta["indicators"]["weight"]["0"]), s.meta["backward_passes"]
(['2', '4', '8'], 12)
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ....errors import ProblemError
from ....importers.limpq_indicators import indicator_table
from ....options import OptionLike
from ...scheme import grid_range
from ...sensitivity import check_finite
from ..layers import resolve_layer_names
from ..perturb import calibrate_activations
from ..quantizer import FULL_PRECISION_BITS
from .base import Sensitivity, prepare
from .training import OptimizerFactory, batch_loss, batch_schedule, check_count, make_optimizer, training_evaluator

MIN_STEP = 1e-5  # LIMPQ's lower clamp: a step size must stay positive


# ---------------------------------------------------------------- LSQ fake quantization
def grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` in the forward pass; its gradient multiplied by ``scale`` in the backward pass."""
    scaled = x * scale
    return (x - scaled).detach() + scaled


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` with the identity as gradient (straight-through)."""
    return (x.round() - x).detach() + x


def lsq_grid(bits: int, signed: bool) -> tuple[int, int]:
    """``(Qn, Qp)``: the integer range of a ``bits``-bit grid (LIMPQ's signed grid keeps -2^(b-1),
    as the weight quantizers' symmetric grid does).

    >>> lsq_grid(4, True), lsq_grid(4, False)
    ((-8, 7), (0, 15))
    """
    qn, qp = grid_range(bits, signed)
    return int(qn), int(qp)


def lsq_quantize(x: torch.Tensor, step: torch.Tensor, qn: int, qp: int, grad_factor: float | None = None) -> torch.Tensor:
    """LSQ fake quantization ``round(clamp(x / s, Qn, Qp)) * s``, differentiable in ``x`` (straight
    through inside the range, zero outside) and in ``s`` (LSQ's gradient times ``grad_factor``,
    default ``1 / sqrt(numel(x) * Qp)``).

    >>> x = torch.tensor([0.26, -1.0, 3.0])
    >>> lsq_quantize(x, torch.tensor(0.5), -2, 1).tolist()
    [0.5, -1.0, 0.5]
    """
    g = grad_factor if grad_factor is not None else 1.0 / float(np.sqrt(x.numel() * qp))
    s = grad_scale(step, g)
    return round_ste(torch.clamp(x / s, qn, qp)) * s


class LsqBank(nn.Module):
    """One learnable step size per candidate bit-width for one tensor; ``active`` picks the bit
    (None = leave the tensor FP32). Used as a weight parametrization and as an input pre-hook."""

    def __init__(self, bits: Sequence[int], signed: bool, init: Sequence[float] | None = None):
        super().__init__()
        self.bits = tuple(int(b) for b in bits)
        self.signed = signed
        start = [1.0] * len(self.bits) if init is None else [float(v) for v in init]
        self.step = nn.Parameter(torch.tensor(start, dtype=torch.float32))
        self.ready = [init is not None] * len(self.bits)  # activations initialise on first use
        self.active: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active is None:
            return x
        idx = self.active
        qn, qp = lsq_grid(self.bits[idx], self.signed)
        if not self.ready[idx]:
            with torch.no_grad():  # LSQ's initial step: 2 mean|x| / sqrt(Qp), from the first batch seen
                self.step[idx] = max(float(x.detach().abs().mean()) * 2.0 / float(np.sqrt(qp)), MIN_STEP)
            self.ready[idx] = True
        return lsq_quantize(x, self.step[idx].clamp_min(MIN_STEP), qn, qp)


def weight_init(weight: torch.Tensor, bits: Sequence[int]) -> list[float]:
    """LIMPQ's per-tensor initial weight steps: ``max(|mu - 3 sigma|, |mu + 3 sigma|) / 2^(b-1)``."""
    w = weight.detach().float()
    mu, sigma = float(w.mean()), float(w.std()) if w.numel() > 1 else 0.0
    span = max(abs(mu - 3 * sigma), abs(mu + 3 * sigma), MIN_STEP)
    return [span / 2 ** (b - 1) for b in bits]


def _candidates(values: Iterable[int | None]) -> tuple[int, ...]:
    return tuple(sorted({int(b) for b in values if b is not None and b < FULL_PRECISION_BITS}, reverse=True))


def _set_policy(banks: list[tuple[LsqBank, LsqBank | None]], ranks: Sequence[int]) -> None:
    """Put layer ``l`` at rank ``ranks[l]`` of its weight and activation candidates."""
    for (wb, ab), r in zip(banks, ranks):
        for bank in (wb, ab):
            if bank is not None:
                bank.active = min(r, len(bank.bits) - 1)


def estimate_lsq_indicators(
    model: nn.Module,
    data: Iterable[Any],
    options: Sequence[OptionLike],
    *,
    train_data: Iterable[Any] | None = None,
    steps: int = 100,
    alpha: float = 2.0,
    train_weights: bool = False,
    lr: float = 0.01,
    weight_lr: float = 1e-3,
    optimizer: OptimizerFactory | None = None,
    seed: int = 0,
    **kw: Any,
) -> Sensitivity:
    """LIMPQ indicators: train per-bit LSQ step sizes jointly on a copy and read them out.

    ``steps`` optimizer steps, each with one forward/backward per uniform policy and one for a
    random mixed policy, on ``train_data`` (default ``data``). The step sizes train with SGD
    (momentum 0.9) at ``lr``; ``train_weights=True`` also trains the weights at ``weight_lr``, as
    LIMPQ does (``optimizer``, a callable ``params -> Optimizer``, receives the steps first, then
    the weights). ``alpha`` weighs the weight indicators against the activation ones (LIMPQ's
    ``--alpha``, default 2). Other keyword arguments are the estimators' shared ones (``layers``,
    ``include``, ``exclude``, ``loss``, ``output_fn``, ``scheme``: see :mod:`mpqopt.adapters.torch.estimators`). ``meta``:
    ``indicators`` (LIMPQ's dict), ``allowed`` / ``wired_points``, ``initial_indicators``,
    ``uniform_losses_before`` / ``uniform_losses_after`` (mean loss on ``data`` of each uniform
    policy with the initial and the learned steps), ``forward_passes``, ``backward_passes``,
    ``seconds``.
    """
    steps = check_count(steps, "steps")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not np.isfinite(alpha) or alpha < 0:
        raise ProblemError(f"alpha must be a finite non-negative number, got {alpha!r}")
    work = copy.deepcopy(model)
    setup = prepare(work, data, options, **kw)
    ev = setup.evaluator
    train_ev = training_evaluator(work, train_data, ev, kw)
    forward = ev.num_batches + (train_ev.num_batches if train_ev is not ev else 0)
    w_bits = _candidates(o.w for o in setup.options)
    a_bits = _candidates(o.a for o in setup.options)
    if not w_bits:
        raise ProblemError("LIMPQ indicators need weight bit-widths below 32: every option has 32-bit (or more) weights")
    modules = resolve_layer_names(work, setup.names)

    ranges = {}
    if a_bits:
        ranges = calibrate_activations(work, setup.names, ev)  # only the sign of each input matters here
        forward += ev.num_batches
    banks: list[tuple[LsqBank, LsqBank | None]] = []
    for name in setup.names:
        module = modules[name]
        wb = LsqBank(w_bits, signed=True, init=weight_init(module.weight, w_bits))
        ab = LsqBank(a_bits, signed=ranges[name][0] < 0) if a_bits else None
        parametrize.register_parametrization(module, "weight", wb)
        if ab is not None:
            module.register_forward_pre_hook(lambda mod, args, bank=ab: (bank(args[0]), *args[1:]))
        banks.append((wb, ab))

    n_uniform = max(len(w_bits), len(a_bits))
    gen = torch.Generator().manual_seed(int(seed))

    def uniform_losses() -> list[float]:
        out = []
        for r in range(n_uniform):
            _set_policy(banks, [r] * len(banks))
            out.append(float(np.mean([check_finite(v, f"uniform policy {r}") for v in ev.batch_losses()])))
        return out

    # activation steps initialise on the first training batch, as in LIMPQ; then measure the start
    with torch.no_grad():
        for r in range(n_uniform):
            _set_policy(banks, [r] * len(banks))
            batch_loss(train_ev, work, 0)
    forward += n_uniform
    initial = _indicator_dict(setup.names, banks)
    before = uniform_losses()

    step_params = [bank.step for pair in banks for bank in pair if bank is not None]
    ids = {id(p) for p in step_params}
    weights = [p for p in work.parameters() if p.requires_grad and id(p) not in ids] if train_weights else []
    if optimizer is None:  # LIMPQ's SGD with momentum: LSQ's gradient scale assumes SGD (Adam would undo it)
        for what, value in (("lr", lr), ("weight_lr", weight_lr)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ProblemError(f"{what} must be a positive number, got {value!r}")
        groups = [{"params": step_params, "lr": float(lr)}] + ([{"params": weights, "lr": float(weight_lr)}] if weights else [])
        optim: torch.optim.Optimizer = torch.optim.SGD(groups, momentum=0.9)
    else:
        optim = make_optimizer(optimizer, step_params + weights, lr)
    for t, batch in enumerate(batch_schedule(train_ev.num_batches, steps, seed)):
        optim.zero_grad(set_to_none=True)
        policies = [[r] * len(banks) for r in range(n_uniform)]
        policies.append(torch.randint(0, n_uniform, (len(banks),), generator=gen).tolist())
        for ranks in policies:
            _set_policy(banks, ranks)
            loss = batch_loss(train_ev, work, batch)
            check_finite(float(loss.detach()), f"LSQ training step {t} (training batch {batch}); lower lr")
            loss.backward()
        for p in step_params + weights:  # LIMPQ clips every gradient to +-1 by value
            if p.grad is not None:
                p.grad.clamp_(-1.0, 1.0)
        optim.step()
    after = uniform_losses()
    n_policies = n_uniform + 1
    forward += steps * n_policies + 2 * n_uniform * ev.num_batches

    indicators = _indicator_dict(setup.names, banks)
    table = indicator_table(indicators, setup.options, alpha=alpha)
    return setup.result(
        table.values, None, "lsq_indicators",
        forward_passes=forward, backward_passes=steps * n_policies, steps=steps, alpha=float(alpha),
        indicators=indicators, initial_indicators=initial, allowed=table.allowed, wired_points=table.wired,
        uniform_bits={"weight": list(w_bits), "act": list(a_bits)},
        uniform_losses_before=before, uniform_losses_after=after,
    )


def _indicator_dict(names: Sequence[str], banks: list[tuple[LsqBank, LsqBank | None]]) -> dict[str, Any]:
    """LIMPQ's indicator file layout: ``{"weight": {layer: {"4": s}}, "act": {...}, "layer_name": [...]}``."""
    out: dict[str, Any] = {"layer_name": list(names)}
    for key, which in (("weight", 0), ("act", 1)):
        per_layer = {}
        for name, pair in zip(names, banks):
            bank = pair[which]
            if bank is not None:
                steps = bank.step.detach().clamp_min(MIN_STEP).tolist()
                per_layer[name] = {str(b): float(v) for b, v in zip(bank.bits, steps)}
        if per_layer:
            out[key] = per_layer
    return out
