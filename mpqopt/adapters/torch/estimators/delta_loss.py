"""Measured sensitivity: the loss increase when one layer alone is quantized.

``values[l, k] = mean_b [ loss_b(layer l at option k, every other layer FP32) - loss_b(FP32) ]``
over the batches ``b``; ``std`` is the standard error of that mean across batches (None with a
single batch: one batch gives no spread). The loss is cross-entropy to the targets, or KL to the
FP32 model's outputs for unlabelled data (see :mod:`..data` for the other losses).

The FP32 activations before each layer are computed once per batch (see :mod:`..stages`), and only
the rest of the model runs per (layer, option); the options of one layer share one forward, stacked
along the batch, where that pays (small batches, or an accelerator). Small batches are joined
(consecutive batches concatenated along the batch, each batch's loss taken on its own rows of the
output) when the model treats its samples independently, checked on the FP32 output of each joined
forward: a batch of 4 costs mostly per-call overhead. It counts as one (partial) forward
pass per batch per (layer, option); options at 32 bits or more (weights, and
activations when the option has an activation width) are exactly zero and cost nothing. An option with activation bits (``W4A8``) also
fake-quantizes that layer's input to ``a`` bits, on a per-tensor range calibrated on the same data
(one extra pass per batch).

>>> import torch; from torch import nn
>>> _ = torch.manual_seed(0)
>>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
>>> data = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(2)]
>>> s = estimate_delta_loss(m, data, [2, 8, 32])
>>> s.values.shape, float(s.values[0, 2]), s.meta["forward_passes"], s.meta["concat_batches"]   # both batches in one forward
((2, 3), 0.0, 10, 2)
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ....errors import ProblemError
from ....options import OptionLike
from ...choices import is_identity
from ...sensitivity import check_finite, mean_and_stderr
from ..layout import with_memory_format
from ..perturb import calibrate_activations, quantized
from ..stages import StagedModel, Unbatchable, batch_size, stage_model
from .base import Sensitivity, Setup, prepare
from .pairwise import AUTO_BATCH_BYTES, _Runner, _stack_size


AUTO_CONCAT_CPU_ROWS = 256  # on CPU, "auto" joins batches into forwards of up to this many samples


def estimate_delta_loss(model: nn.Module, data: Iterable[Any], options: Sequence[OptionLike], *,
                        batch_perturbations: int | str = "auto", concat_batches: int | str = "auto", mode: str = "auto",
                        memory_format: str = "auto", **kw: Any) -> Sensitivity:
    """Loss increase of quantizing each layer alone to each option (others FP32).

    Keyword arguments are the estimators' shared ones (``layers``, ``include``, ``exclude``,
    ``loss``, ``output_fn``, ``scheme``: see :mod:`mpqopt.adapters.torch.estimators`).
    ``batch_perturbations`` and ``mode`` as in :func:`~mpqopt.adapters.torch.estimate_pairwise`:
    the FP32 activations before each layer are computed once per batch and only the rest of the model
    runs per option, the options of one layer stacked along the batch where that pays.
    ``concat_batches``: how many consecutive batches share one forward, concatenated along the batch
    (the loss is still taken per batch, on its rows of the output); ``"auto"``: up to 256 samples on
    CPU, on an accelerator while the activations stay under 256 MiB; 1 = off. Each joined forward's
    FP32 output must give every batch's own FP32 loss (to 1e-6 relative), else (a model that mixes
    the samples of a batch, or fixes its size) the batches run one at a time from there on.
    ``meta`` records ``forward_passes`` (model calls on one batch, partial ones included, with the
    FP32 reference pass; the staged forward's check on one batch is not counted), ``backward_passes``
    (0), ``mode``, ``step_fraction`` (steps run / steps of full forwards), ``batch_perturbations``,
    ``concat_batches`` (most batches in one forward), ``concat_note`` (why batches were not joined,
    if so) and ``seconds``.
    ``memory_format``: ``"auto"`` measures a CNN (a model with 2-D convolutions) on a private
    channels-last copy of the model and inputs (faster on CPU; the table differs from the NCHW one
    by float round-off only, at most 2.1e-7 measured, see :mod:`..layout`), ``"channels_last"``
    always, ``"preserve"`` never; ``meta["memory_format"]`` says which was used.
    Exactness: with one batch and one option per forward (``concat_batches=1,
    batch_perturbations=1``) and ``"preserve"``, each forward runs the operations and shapes of a
    full forward, so the table equals full forwards bit for bit on any machine. Joined batches and
    stacked options change the row count of each matrix product; CPU GEMM kernels that block by it
    round the last bits differently on some machines (seen in CI; not on AVX2), so the table agrees
    with full forwards to float32 round-off of the loss (8e-8 at most on losses of order 1 in CI).
    """
    model, data, used = with_memory_format(model, data, memory_format)
    setup, base, act_ranges, forward = _measurement_setup(model, data, options, kw)
    ev, nb = setup.evaluator, setup.evaluator.num_batches
    L, K = len(setup.names), len(setup.options)
    live = [k for k, o in enumerate(setup.options) if not is_identity(o)]  # the others are exactly zero, no pass
    losses = np.zeros((L, K, nb))
    meta: dict[str, Any] = {"mode": "none", "step_fraction": 0.0, "batch_perturbations": 1, "concat_batches": 1}
    if live:
        staged = stage_model(setup.model, setup.names, ev.batches[0][0], mode=mode, output_fn=ev.output_fn)
        per = _concat_size(concat_batches, setup, staged)
        runner = _JoinedRunner(setup, staged, act_ranges, _stack_size(batch_perturbations, setup, staged, per), per, base)
        order = sorted(range(L), key=lambda l: (staged.cut[setup.names[l]], l))  # forward order
        with torch.no_grad():  # not inference_mode: buffers a model creates lazily would stay inference tensors (no gain measured either)
            runner.measure(order, losses)
        forward += L * len(live) * nb  # what full forwards would count: one per (layer, option, batch)
        meta = {"mode": staged.mode, "mode_reason": staged.reason, "step_fraction": round(staged.steps_run / (staged.num_steps * max(runner.evaluations, 1)), 4),
                "batch_perturbations": min(runner.group, len(live)) if runner.batching else 1, "batching_note": runner.note,
                "concat_batches": runner.joined, "concat_note": runner.concat_note}
    values = np.zeros((L, K))
    std = np.zeros((L, K))
    for i in range(L):
        for k in live:
            values[i, k], std[i, k] = mean_and_stderr(losses[i, k] - base)
    return setup.result(values, std if nb > 1 else None, "delta_loss", forward_passes=forward, backward_passes=0, memory_format=used, **meta)


class _JoinedRunner(_Runner):
    """The options of each layer, measured on several batches at once: a unit of work is consecutive
    batches concatenated along the batch (one forward), scored per batch on its rows of the output."""

    def __init__(self, setup: Setup, staged: StagedModel, act_ranges: Any, group: int, per: int, base: np.ndarray):
        super().__init__(setup, staged, act_ranges, group, {})
        self.per, self.base = per, base
        self.units: list[list[int]] = []  # unit -> its batches
        self.sizes_of = self.sizes  # batch -> samples
        self.sizes = []  # unit -> samples
        self.joined = 1  # most batches joined in one forward
        self.concat_note = ""

    def _rows(self, u: int) -> int:
        return sum(self.ev.references[b].shape[0] for b in self.units[u])

    def _score(self, u: int, scored: torch.Tensor) -> np.ndarray:
        batches = self.units[u]
        pieces = torch.split(scored, [self.ev.references[b].shape[0] for b in batches])
        return np.array([float(self.ev.loss_of(b, piece)) for b, piece in zip(batches, pieces)])

    def _what(self, i: int | None, o: int | None, j: int | None, p: int | None, u: int) -> str:
        # an error in joined batches is raised again by them one at a time: this names the batch
        return super()._what(i, o, j, p, self.units[u][0])

    def _unit(self, batches: list[int]) -> tuple[int, Any]:
        """A new unit of work for ``batches`` and its inputs (None when they cannot be joined)."""
        inputs = self.ev.batches[batches[0]][0]
        if len(batches) > 1:
            try:
                inputs = _join([self.ev.batches[b][0] for b in batches], [self.sizes_of[b] for b in batches])
            except (Unbatchable, RuntimeError) as exc:
                self._give_up(f"the batches' inputs cannot be concatenated ({exc})")
                return -1, None
        self.units.append(batches)
        self.sizes.append(batch_size(inputs))
        return len(self.units) - 1, inputs

    def _give_up(self, why: str) -> None:
        self.per, self.concat_note = 1, f"{why}; one batch per forward"

    def measure(self, order: list[int], out: np.ndarray) -> None:
        """``out[i, live, b]``: batch b's loss with layer i at each live option, for every batch."""
        st, nb, live = self.staged, self.ev.num_batches, self.live
        first = 0
        while first < nb:
            u, inputs = self._unit(list(range(first, min(first + self.per, nb))))
            if inputs is None:
                continue  # _give_up: one batch at a time from here
            batches = self.units[u]
            try:
                got = np.empty((len(order), len(live), len(batches)))
                env, pos = st.start(inputs), 0
                for r, i in enumerate(order):  # the FP32 values before each layer, advanced once per unit
                    env, pos = st.advance(env, pos, self.cut[i]), self.cut[i]
                    got[r] = np.reshape(self.options_at(env, u, i), (len(live), len(batches)))
                if len(batches) > 1:
                    self._check_joined(u, env, pos)
            except (Unbatchable, RuntimeError, ProblemError) as exc:
                if len(batches) == 1:
                    raise
                # a model that mixes or counts the samples of a batch; or an error (a non-finite
                # loss), which the batches one at a time raise again, naming the batch
                self._give_up(f"batches {batches[0]}-{batches[-1]} joined: {exc}")
                continue
            for r, i in enumerate(order):
                out[i][np.ix_(live, batches)] = got[r]
            self.joined = max(self.joined, len(batches))
            first = batches[-1] + 1

    def _check_joined(self, u: int, env: Any, pos: int) -> None:
        """The joined FP32 forward must give each batch's FP32 loss (from the rest of the model after
        the last layer's cut, not counted as steps run)."""
        steps = self.staged.steps_run
        scored = self.ev.output_fn(self.staged.finish(env, pos))
        self.staged.steps_run = steps
        if not isinstance(scored, torch.Tensor) or scored.dim() == 0 or scored.shape[0] != self._rows(u):
            raise Unbatchable("the output of joined batches is not their outputs stacked along the first dimension")
        losses, want = self._score(u, scored), self.base[self.units[u]]
        if not self._agree(want, losses):
            worst = int(np.argmax(np.abs(losses - want)))
            raise Unbatchable(f"joining batches changed the FP32 loss of batch {self.units[u][worst]} ({losses[worst]!r} vs {want[worst]!r}): the model mixes the samples of a batch")


def _join(inputs: list[Any], sizes: list[int | None]) -> Any:
    """Several batches' inputs as one: tensors concatenated along dimension 0, where each must have
    its batch's ``sizes[b]`` rows; tuples, lists and dicts item by item; anything else equal in all."""
    first = inputs[0]
    if isinstance(first, torch.Tensor):
        if any(not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] != n for x, n in zip(inputs, sizes)):
            raise Unbatchable("an input tensor does not carry its batch along dimension 0")
        return torch.cat(inputs, dim=0)
    if isinstance(first, dict) and all(isinstance(x, dict) and x.keys() == first.keys() for x in inputs):
        return {k: _join([x[k] for x in inputs], sizes) for k in first}
    if isinstance(first, (tuple, list)) and all(type(x) is type(first) and len(x) == len(first) for x in inputs):
        return type(first)(_join([x[k] for x in inputs], sizes) for k in range(len(first)))
    try:
        same = all(x is first or (type(x) is type(first) and bool(x == first)) for x in inputs)
    except Exception:  # noqa: BLE001 - e.g. arrays, whose == is elementwise: not joined
        same = False
    if not same:
        raise Unbatchable(f"a {type(first).__name__} input differs between batches")
    return first


def _concat_size(concat_batches: int | str, setup: Setup, staged: StagedModel) -> int:
    """How many batches may share one forward."""
    if concat_batches == "auto":
        per = max(1, int(AUTO_BATCH_BYTES // max(staged.peak_bytes, 1)))
        if all(t.device.type == "cpu" for t in setup.model.parameters()):
            per = min(per, max(1, AUTO_CONCAT_CPU_ROWS // (batch_size(setup.evaluator.batches[0][0]) or 1)))
        return per
    if isinstance(concat_batches, int) and not isinstance(concat_batches, bool) and concat_batches >= 1:
        return concat_batches
    raise ProblemError(f"concat_batches must be 'auto' or a positive integer, got {concat_batches!r}")


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
