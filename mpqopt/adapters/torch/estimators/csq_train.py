"""CSQ by training: learn each layer's bit-width through annealed masks over its weight bit planes.

CSQ (Xiao, Yang, Dong, Keutzer, Du and Zhang, "CSQ: Growing Mixed-Precision Quantization Scheme
with Bi-level Continuous Sparsification", DAC 2023), after BSQ (Yang et al., ICLR 2021), writes
every weight in bits and learns, per layer, which bit planes to keep: plane ``p`` of layer ``l``
is scaled by a gate ``m_lp = sigmoid(beta * g_lp)`` whose temperature ``beta`` rises during
training until the gates are 0 or 1 (continuous sparsification, Savarese et al., NeurIPS 2020),
and a budget-aware regulariser pushes the gates down while the network is above the precision
budget and lets them grow back while it is below. A layer's bit-width is its count of active planes.

Here, on a copy of the model: each weight is sign-magnitude quantized to the options' largest
bit-width ``N`` (per output channel, ``N - 1`` magnitude planes plus the sign);
``W_eff = scale * sign(W) * sum_p 2^p m_lp bit_p(W)`` with a straight-through gradient to ``W``
(the bits follow the trained weight; CSQ learns per-weight bits by continuous sparsification too,
this keeps only the layer-level gates continuous). The loss is
``task + lam * (B_hard - B_target) * B_soft`` where ``B`` is the parameter-weighted average of
``1 + sum_p m_lp`` (soft) or of ``1 + #{g_lp > 0}`` (hard, no gradient): CSQ's sign-switching
budget term, measured in weight bits so that a size budget is what it steers. ``beta`` grows
geometrically from 1 to ``final_temp``; the copy stays in eval mode (BatchNorm statistics frozen).

At the end each layer's trained bit-width (sign plus active planes, ``trained_bits``) is mapped to
the largest option not above it (the smallest option when none is). The sign-switching term only
oscillates around its target, so the trained widths may be over budget: then layers step down to
their next lower option, least confident plane first (smallest gate logit), until the allocation
fits (``meta["repaired"]`` lists the steps). The result's :attr:`CsqResult.allocation` and ``bits``
(its widths) always meet the budget; compare it with the solvers' allocations on a sensitivity
table. Three losses on ``data``: ``loss``, the allocation applied with the project's standard
quantizer to the FP32 weights (what a solver's allocation is scored by); ``model_loss``, of
``model``: the trained weights fine-tuned for ``finetune_steps`` at the allocation's bit-widths
(straight-through), as CSQ fine-tunes its final scheme, and stored quantized at them; and
``trained_loss``, of ``trained_model``: the copy at the trained (gate) widths, which may not fit.

This is the model-training counterpart of :mod:`mpqopt.algorithms.csq` (``solver="csq"``), which
applies the same annealed-gate idea to an already measured sensitivity table and never sees the
model; here the data decide, the result depends on training length, and there is no table to be
optimal for (nothing is exact: compare its allocation's measured loss with the solvers').

>>> import torch; from torch import nn
>>> _ = torch.manual_seed(0)
>>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
>>> data = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(2)]
>>> r = train_csq(m, data, [2, 4, 8], budget="50%", steps=5)
>>> r.budget_bits, r.size_bits <= r.budget_bits   # 50% of the way from 56 weights x 2 to x 8 bits
(280.0, True)
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ....costs import size_bits
from ....errors import BudgetError, ProblemError
from ....options import Option, OptionLike
from ....problem import Problem
from ..perturb import calibrate_activations, quantized
from ..quantizer import FULL_PRECISION_BITS, quantize_weight
from .base import prepare
from .training import OptimizerFactory, batch_loss, batch_schedule, check_count, make_optimizer, training_evaluator

GATE_INIT = 2.0  # sigmoid(2) = 0.88: every plane starts mostly on and the budget term prunes (at 1.0 the
# digits CNN's loss started 20x higher, its weights scaled by 0.73)


@dataclass
class CsqResult:
    """What CSQ training decided (module docstring): ``allocation`` (layer -> option label) and
    ``bits``, its weight bit-widths, which meet the budget (``size_bits <= budget_bits``);
    ``trained_bits``, the widths the gates ended at (sign + active planes, before mapping to an
    option and any repair: may exceed the budget); the final gate values per layer (least
    significant plane first); ``model``, the network at the allocation (fine-tuned at its widths,
    weights stored quantized) with ``model_loss``; ``trained_model``, the copy at the trained widths
    (its weights replaced by their masked quantized values) with ``trained_loss``; ``loss``, the
    allocation applied to the FP32 weights, and ``loss_fp``; the per-step ``history``."""

    allocation: dict[str, str]
    bits: dict[str, int]
    trained_bits: dict[str, int]
    gates: dict[str, list[float]]
    size_bits: float
    budget_bits: float
    loss: float
    loss_fp: float
    model_loss: float
    trained_loss: float
    history: list[dict[str, float]]
    model: nn.Module
    trained_model: nn.Module
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        """True when the allocation's weight size meets the budget."""
        return self.size_bits <= self.budget_bits * (1 + 1e-9)


class _FixedWidthWeight(nn.Module):
    """Weight parametrization for fine-tuning at a fixed bit-width: the project's quantizer forward,
    straight-through backward."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return quantize_weight(weight, self.bits) + (weight - weight.detach())


class _BitPlaneWeight(nn.Module):
    """Weight parametrization: sign-magnitude ``N``-bit planes, each scaled by a temperature gate."""

    def __init__(self, bits: int, init: float):
        super().__init__()
        self.planes = bits - 1
        self.gate = nn.Parameter(torch.full((self.planes,), float(init)))
        self.beta = 1.0
        self.hard = False

    def masks(self) -> torch.Tensor:
        if self.hard:
            return (self.gate.detach() > 0).float()
        return torch.sigmoid(self.beta * self.gate)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        w = weight.detach()
        flat = w.reshape(w.shape[0], -1) if w.dim() > 1 else w.reshape(1, -1)
        top = 2.0**self.planes - 1
        scale = flat.abs().max(dim=1, keepdim=True).values / top
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.clamp(torch.round(flat.abs() / scale), 0, top).to(torch.int64)
        plane = torch.arange(self.planes, dtype=torch.int64)
        bits = ((q.unsqueeze(0) >> plane.view(-1, 1, 1)) & 1).to(w.dtype)  # [planes, rows, cols]
        weights = (self.masks() * 2.0 ** plane.to(w.dtype)).view(-1, 1, 1)
        value = (torch.sign(flat) * scale * (weights * bits).sum(dim=0)).reshape(w.shape)
        return value + (weight - w)  # straight-through to the FP weight


def _resolve_budget(names: Sequence[str], options: Sequence[Option], params: np.ndarray, budget: Any) -> float:
    """The budget in weight bits, read like any mpqopt size budget (number, '50%', '3KiB')."""
    costs = {"size_bits": size_bits(params, options)}
    problem = Problem(names, options, np.zeros((len(names), len(options))), costs, {"size_bits": budget})
    if "size_bits" not in problem.budgets:
        raise BudgetError("CSQ needs a size budget, got none")
    limit = problem.budgets["size_bits"]
    lo = problem.cost_range("size_bits")[0]
    if limit < lo:
        raise BudgetError(f"size budget {limit:g} bits is below the smallest possible size {lo:g} bits (every layer at W{min(o.w for o in options)})")
    return float(limit)


def _allocate(
    names: Sequence[str], options: Sequence[Option], params: np.ndarray, bits: dict[str, int], logits: dict[str, list[float]], budget: float
) -> tuple[dict[str, str], list[str]]:
    """Each layer's largest option not above its trained bit-width (the smallest when none is);
    then, while the size is over ``budget`` (the budget term ended above its target), the layer
    whose next lower option drops the least confident plane (smallest gate logit) steps down."""
    by_w = sorted(options, key=lambda o: o.w)
    level = {}
    for name in names:
        fitting = [i for i, o in enumerate(by_w) if o.w <= bits[name]]
        level[name] = fitting[-1] if fitting else 0
    weight = dict(zip(names, params))
    repaired: list[str] = []
    while sum(weight[n] * by_w[level[n]].w for n in names) > budget * (1 + 1e-12):
        movable = [n for n in names if level[n] > 0]
        # stepping down to w' keeps the w' - 1 strongest planes: the strongest one dropped is the cost
        cost = {n: (logits[n][by_w[level[n] - 1].w - 1] if by_w[level[n] - 1].w - 1 < len(logits[n]) else -np.inf) for n in movable}
        worst = min(movable, key=lambda n: (cost[n], -weight[n]))
        level[worst] -= 1
        repaired.append(worst)
    return {n: by_w[level[n]].label for n in names}, repaired


def train_csq(
    model: nn.Module,
    data: Iterable[Any],
    options: Sequence[OptionLike],
    *,
    budget: Any,
    train_data: Iterable[Any] | None = None,
    steps: int = 300,
    lam: float = 0.5,
    final_temp: float = 200.0,
    lr: float = 1e-4,
    gate_lr: float = 0.1,
    gate_init: float = GATE_INIT,
    optimizer: OptimizerFactory | None = None,
    seed: int = 0,
    finetune_steps: int | None = None,
    **kw: Any,
) -> CsqResult:
    """Train bit-plane gates on a copy of ``model`` towards a weight-size ``budget`` and return the
    allocation they select.

    ``budget`` limits the weights' size in bits: a number, a percentage (``"50%"``: halfway from all
    layers at the smallest option to all at the largest) or a size (``"12KiB"``). ``options`` are the
    allowed weight bit-widths (options at 32 bits are never chosen; options must not differ only in
    activation bits: CSQ chooses weight bits). ``steps`` training steps on ``train_data`` (default
    ``data``); Adam with ``gate_lr`` for the gates and ``lr`` for the weights unless ``optimizer``
    (called with the gates first, then the weights) is given. ``lam`` scales the budget term.
    Other keyword arguments are the estimators' shared ones (``layers``, ``include``, ``exclude``,
    ``loss``, ``output_fn``, ``scheme``: see :mod:`mpqopt.adapters.torch.estimators`).
    ``finetune_steps`` (default ``steps // 4``; 0 skips it) fine-tune ``model`` at the allocation.
    """
    started = time.perf_counter()
    steps = check_count(steps, "steps")
    finetune_steps = steps // 4 if finetune_steps is None else finetune_steps
    if isinstance(finetune_steps, bool) or not isinstance(finetune_steps, int) or finetune_steps < 0:
        raise ProblemError(f"finetune_steps must be a whole number >= 0, got {finetune_steps!r}")
    for what, value in (("lam", lam), ("final_temp", final_temp), ("gate_lr", gate_lr), ("lr", lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
            raise ProblemError(f"{what} must be a positive number, got {value!r}")
    work = copy.deepcopy(model)
    setup = prepare(work, data, options, **kw)
    ev = setup.evaluator
    finite = [o for o in setup.options if o.w < FULL_PRECISION_BITS]
    if not finite:
        raise ProblemError("CSQ needs at least one option below 32 bits")
    if len({o.w for o in finite}) != len(finite):
        raise ProblemError(f"CSQ chooses weight bits only: options {[o.label for o in finite]} repeat a weight bit-width")
    top = max(o.w for o in finite)
    if top < 2:
        raise ProblemError("CSQ's sign-magnitude planes need a largest option of at least 2 bits")
    names = setup.names
    params = np.array([layer.weight_params for layer in setup.layers], dtype=np.float64)
    budget_bits = _resolve_budget(names, finite, params, budget)
    target = budget_bits / params.sum()  # average weight bits the gates steer towards
    train_ev = training_evaluator(work, train_data, ev, kw)
    forward = ev.num_batches + (train_ev.num_batches if train_ev is not ev else 0)

    trained = copy.deepcopy(work)
    modules = dict(trained.named_modules())
    gates: list[_BitPlaneWeight] = []
    for name in names:
        gate = _BitPlaneWeight(top, gate_init)
        parametrize.register_parametrization(modules[name], "weight", gate)
        gates.append(gate)
    share = torch.tensor(params / params.sum(), dtype=torch.float32)

    def average_bits(hard: bool) -> torch.Tensor:
        per_layer = torch.stack([(g.gate.detach() > 0).float().sum() if hard else g.masks().sum() for g in gates])
        return ((1.0 + per_layer) * share).sum()

    gate_params = [g.gate for g in gates]
    ids = {id(p) for p in gate_params}
    weights = [p for p in trained.parameters() if p.requires_grad and id(p) not in ids]
    if optimizer is None:
        groups = [{"params": gate_params, "lr": float(gate_lr)}] + ([{"params": weights, "lr": float(lr)}] if weights else [])
        optim = torch.optim.Adam(groups)
    else:
        optim = make_optimizer(optimizer, gate_params + weights, lr)
    history: list[dict[str, float]] = []
    for t, b in enumerate(batch_schedule(train_ev.num_batches, steps, seed)):
        beta = float(final_temp) ** (t / max(steps - 1, 1))
        for g in gates:
            g.beta = beta
        optim.zero_grad(set_to_none=True)
        task = batch_loss(train_ev, trained, b)
        soft = average_bits(hard=False)
        hard = float(average_bits(hard=True))
        loss = task + lam * (hard - target) * soft  # CSQ's budget-aware sign-switching term
        if not torch.isfinite(loss.detach()):
            raise ProblemError(f"CSQ training step {t} (training batch {b}) gave a non-finite loss; lower lr or gate_lr")
        loss.backward()
        optim.step()
        history.append({"step": t, "beta": beta, "task_loss": float(task.detach()), "soft_bits": float(soft.detach()), "hard_bits": hard})
    forward += steps

    logits = {name: sorted(g.gate.detach().tolist(), reverse=True) for name, g in zip(names, gates)}
    bits = {name: 1 + sum(v > 0 for v in logits[name]) for name in names}
    allocation, repaired = _allocate(names, finite, params, bits, logits, budget_bits)
    chosen = {o.label: o for o in finite}
    alloc_size = float(sum(p * chosen[allocation[n]].w for n, p in zip(names, params)))

    base = np.array([float(ev.loss_of(i, ev.references[i])) for i in range(ev.num_batches)])
    act_ranges = None
    if any(o.a is not None for o in finite):  # the options' (shared) activation bits count in the loss
        act_ranges = calibrate_activations(work, names, ev)
        forward += ev.num_batches
    with quantized(work, allocation, cache=setup.cache, act_ranges=act_ranges):
        alloc_losses = ev.batch_losses()
    for g in gates:
        g.hard = True
    with torch.no_grad():
        trained_losses = [float(batch_loss(ev, trained, i)) for i in range(ev.num_batches)]
    for name in names:
        parametrize.remove_parametrizations(modules[name], "weight", leave_parametrized=True)
    forward += 2 * ev.num_batches
    tuned, model_losses = _finetune_at(trained, names, {n: chosen[allocation[n]].w for n in names}, ev, train_ev, finetune_steps, lr, seed)
    forward += finetune_steps + ev.num_batches
    return CsqResult(
        allocation=allocation, bits={n: chosen[allocation[n]].w for n in names}, trained_bits=bits,
        gates={name: torch.sigmoid(g.beta * g.gate.detach()).tolist() for name, g in zip(names, gates)},
        size_bits=alloc_size, budget_bits=budget_bits,
        loss=float(np.mean(alloc_losses)), loss_fp=float(np.mean(base)), model_loss=float(np.mean(model_losses)),
        trained_loss=float(np.mean(trained_losses)), history=history, model=tuned, trained_model=trained,
        meta={"method": "csq_train", "steps": steps, "finetune_steps": finetune_steps, "repaired": repaired, "target_avg_bits": float(target),
              "planes": top - 1, "forward_passes": forward, "backward_passes": steps + finetune_steps, "seconds": time.perf_counter() - started},
    )


def _finetune_at(trained: nn.Module, names: Sequence[str], widths: dict[str, int], ev: Any, train_ev: Any, steps: int, lr: float, seed: int) -> tuple[nn.Module, list[float]]:
    """A copy of ``trained`` fine-tuned ``steps`` steps at the fixed ``widths`` (straight-through), its
    weights then stored quantized at them; and its loss per batch of ``ev``."""
    tuned = copy.deepcopy(trained)
    modules = dict(tuned.named_modules())
    for name in names:
        parametrize.register_parametrization(modules[name], "weight", _FixedWidthWeight(widths[name]))
    weights = [p for p in tuned.parameters() if p.requires_grad]
    if steps and weights:
        optim = torch.optim.Adam(weights, lr=float(lr))
        for b in batch_schedule(train_ev.num_batches, steps, seed + 1):
            optim.zero_grad(set_to_none=True)
            loss = batch_loss(train_ev, tuned, b)
            if not torch.isfinite(loss.detach()):
                raise ProblemError(f"CSQ fine-tuning at the allocation (training batch {b}) gave a non-finite loss; lower lr")
            loss.backward()
            optim.step()
    for name in names:
        parametrize.remove_parametrizations(modules[name], "weight", leave_parametrized=True)
    with torch.no_grad():
        losses = [float(batch_loss(ev, tuned, i)) for i in range(ev.num_batches)]
    return tuned, losses
