"""CLADO's cross-layer sensitivity, measured: every pair of quantized layers, by forward passes.

CLADO's matrix ``Ω`` has ``Ω_ii = 2ΔL_i`` and ``Ω_ij = L(q_i, q_j) − L(q_i) − L(q_j) + L(0)``, and
predicts the loss change of a joint assignment as ``½ xᵀΩx = Σ_i ΔL_i + Σ_{i<j} Ω_ij``. In mpqopt's
form ``sᵀx + xᵀPx`` (``xᵀPx`` sums over every ordered pair) that is ``values = ΔL`` (the separable
table, with its standard error across batches) and ``pairwise = P`` with ``P_ij = P_ji = Ω_ij / 2``
and a zero diagonal, so ``problem.evaluate(assignment).objective`` is CLADO's prediction of
``L(assignment) − L(0)``. :func:`clado_matrix` gives CLADO's ``Ω`` back.

Cost: one evaluation per (layer, option) and per pair of options of every pair of layers,
``O((L·K)²)``, each on every batch. Each is made cheap: the values before the first perturbed layer
are computed once per layer, the values before the second once per first perturbation, and only
the rest of the model runs (see :mod:`..stages`; ``meta["mode"]`` says whether the fx graph, an
``nn.Sequential``'s children or full forwards were used); the options of the second layer share
one forward, stacked along the batch (``batch_perturbations``). Pairs can be restricted
(``window``, ``pairs``); a run can be spread over any ``concurrent.futures.Executor`` or a Dask
``Client``, shows a progress bar with ETA, and with ``checkpoint=`` saves finished work to an
``.npz`` file and resumes from it. Only one batch's cached activations are held at a time.

Measured on the digits CNN (5 layers, options W2/W3/W4/W8, 20 batches of 64, one CPU thread): 180
entries, 3,600 batch evaluations; 10.5 s with full forwards, 2.3-2.8 s with the cache (31% of the
graph's steps run). On every one of its 1,024 joint assignments the pairwise prediction's mean
absolute error is 0.048 against 0.158 for the separable sum of ΔL (measured loss changes average 0.22).

>>> import torch; from torch import nn
>>> _ = torch.manual_seed(0)
>>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
>>> data = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(2)]
>>> s = estimate_pairwise(m, data, [2, 4], progress=False)
>>> s.pairwise.shape, s.meta["mode"], s.meta["entries"], s.meta["evaluations"]   # 8 losses, on 2 batches
((4, 4), 'fx', 8, 16)
>>> problem = s.problem()
>>> x = [0, 1]   # layer "0" at W2, layer "2" at W4: ΔL_0 + ΔL_1 + Ω_01
>>> omega = clado_matrix(s)
>>> bool(np.isclose(problem.evaluate(x).objective, 0.5 * omega[[0, 3]][:, [0, 3]].sum()))
True
"""

from __future__ import annotations

import functools

import hashlib
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ....errors import ProblemError
from ....options import OptionLike
from ....progress import Progress
from ...choices import is_identity
from ...pairs import PairFilter, clado_matrix, pair_mask, pairwise_terms
from ...sensitivity import Sensitivity, check_finite
from ..perturb import calibrate_activations, quantized
from ..stages import StagedModel, Unbatchable, batch_size, stage_model
from .base import Setup, StagedJob, prepare
from .runs import checkpoint_path, load_checkpoint, rebatch, run_on, save_checkpoint, split_costs

__all__ = ["estimate_pairwise", "clado_matrix", "PairFilter"]

AUTO_BATCH_BYTES = 256 * 2**20  # live activations of stacked perturbations stay under this
AUTO_STACK_CPU_ROWS = 16  # on CPU, "auto" stacks perturbations only for batches this small
_CHECKPOINT_VERSION = 1


# --------------------------------------------------------------------------- the work itself
@dataclass
class _Job(StagedJob):
    """A group of first layers and their partners (:class:`.base.StagedJob`)."""

    group: int
    partners: dict[int, list[int]]
    graph: Any = None  # the fx graph traced here, so workers need not trace (None: they do)

    def build(self) -> _Runner:
        """A worker's runner, on its own copy of the model."""
        setup, staged = self.staged(self.graph)
        return _Runner(setup, staged, self.act_ranges, self.group, self.partners)


class _Runner:
    """Measures rows ``(i, o)``: layer i at option o alone, and with each partner j at each option."""

    def __init__(self, setup: Setup, staged: StagedModel, act_ranges: Any, group: int, partners: dict[int, list[int]]):
        self.setup, self.staged, self.act_ranges = setup, staged, act_ranges
        self.model, self.cache, self.ev = setup.model, setup.cache, setup.evaluator
        self.names, self.options = setup.names, setup.options
        self.cut = [staged.cut[n] for n in self.names]
        self.partners = partners
        self.live = [k for k, o in enumerate(self.options) if not is_identity(o)]
        self.group = max(1, min(group, len(self.live))) if staged.mode != "full" else 1
        self.batching: bool | None = None if self.group > 1 else False  # None: not checked yet
        self.note = ""
        self.evaluations = 0
        self.sizes = [batch_size(inputs) for inputs, _ in self.ev.batches]

    def _loss(self, b: int, output: Any, what: Callable[[], str]) -> Any:
        self.evaluations += 1
        return self._finite(self._score(b, self.ev.output_fn(output)), what)

    # what a unit ``b`` of work is: here one batch and its loss; delta_loss's runner makes it several
    # batches concatenated, with a loss per batch
    def _rows(self, b: int) -> int:
        """Rows of unit b's scored output."""
        return self.ev.references[b].shape[0]

    def _score(self, b: int, scored: torch.Tensor) -> Any:
        return float(self.ev.loss_of(b, scored))

    def _finite(self, value: Any, what: Callable[[], str]) -> Any:
        if not np.all(np.isfinite(value)):  # the message is built only for the error
            for v in np.atleast_1d(value):
                check_finite(float(v), what())
        return value

    @staticmethod
    def _agree(a: Any, b: Any) -> bool:
        return bool(np.all(np.abs(np.subtract(a, b)) <= 1e-6 * np.maximum(1.0, np.abs(a))))  # a few float32 ulps

    def _with(self, j: int, p: int) -> Any:
        return quantized(self.model, {self.names[j]: self.options[p]}, cache=self.cache, act_ranges=self.act_ranges)

    def _one_by_one(self, env: Any, b: int, i: int, o: int, j: int, ps: list[int]) -> list[float]:
        out = []
        for p in ps:
            with self._with(j, p):
                out.append(self._loss(b, self.staged.finish(env, self.cut[j]), lambda: self._what(i, o, j, p, b)))
        return out

    def _stacked(self, env: Any, b: int, j: int, ps: list[int]) -> list[float]:
        """All options ``ps`` of layer j in one forward: layer j's step runs once per option, the
        rest of the model once on the outputs stacked along the batch."""
        contexts = [functools.partial(self._with, j, p) for p in ps]
        scored = self.ev.output_fn(self.staged.stacked(env, self.cut[j], self.sizes[b], contexts))
        rows = self._rows(b)
        if not isinstance(scored, torch.Tensor) or scored.shape[0] != rows * len(ps):
            raise Unbatchable("the output is not stacked along its first dimension")
        self.evaluations += len(ps)
        return [self._score(b, piece) for piece in torch.split(scored, rows)]

    def _pairs(self, env: Any, b: int, i: int | None, o: int | None, j: int) -> list[Any]:
        ps = self.live
        if self.batching is False or not self.staged.single_use[self.names[j]]:
            return self._one_by_one(env, b, i, o, j, ps)
        out: list[float] = []
        for start in range(0, len(ps), self.group):
            chunk = ps[start : start + self.group]
            if len(chunk) == 1 or self.batching is False:
                out += self._one_by_one(env, b, i, o, j, chunk)
                continue
            try:
                losses = self._stacked(env, b, j, chunk)
            except (Unbatchable, RuntimeError) as exc:
                self.batching, self.note = False, f"stacking perturbations failed ({exc}); one forward each"
                out += self._one_by_one(env, b, i, o, j, chunk)
                continue
            if self.batching is None:
                # first stacked forward: it must agree with separate ones (models that mix the
                # samples of a batch, or hard-code its size, would not)
                check = self._one_by_one(env, b, i, o, j, chunk[:1])[0]
                self.evaluations -= 1  # a check, not an entry: counts stay the same however the work is split
                self.batching = self._agree(check, losses[0])
                if not self.batching:
                    self.note = f"stacked perturbations changed the loss ({losses[0]!r} vs {check!r}); one forward each"
                    losses = self._one_by_one(env, b, i, o, j, chunk)
            for p, v in zip(chunk, losses):
                self._finite(v, lambda: self._what(i, o, j, p, b))
            out += losses
        return out

    def _what(self, i: int | None, o: int | None, j: int | None, p: int | None, b: int) -> str:
        if i is None:  # one layer alone (options_at)
            return f"layer {self.names[j]!r} at option {self.options[p].label} (batch {b})"
        pair = "" if j is None else f" with layer {self.names[j]!r} at {self.options[p].label}"
        return f"layer {self.names[i]!r} at {self.options[o].label}{pair} (batch {b})"

    def options_at(self, env: Any, b: int, j: int) -> list[Any]:
        """Batch b's loss with layer j at each non-identity option (the rest as it is now), from the
        values ``env`` before layer j's step: stacked along the batch when possible (used by
        estimate_delta_loss)."""
        return self._pairs(env, b, None, None, j)

    def _row_batch(self, i: int, o: int, b: int, env: Any, single: np.ndarray, sums: np.ndarray) -> None:
        """Batch b of row (i, o), from the unperturbed values ``env`` before layer i's step: the
        values before each partner's step are reached once, then each partner option runs the rest."""
        st, pos = self.staged, self.cut[i]
        with self._with(i, o):
            for j in self.partners.get(i, []):
                env, pos = st.advance(env, pos, self.cut[j]), self.cut[j]
                sums[j, self.live] += self._pairs(env, b, i, o, j)
            single[b] = self._loss(b, st.finish(env, pos), lambda: self._what(i, o, None, None, b))

    def rows(self, rows: Sequence[tuple[int, int]]) -> dict[str, Any]:
        """Measure rows ``(i, o)``: layer i at option o alone (per batch), and the mean loss with each
        partner j at each option. Rows of one layer share its cached values, one batch at a time
        (only one batch's activations are held)."""
        steps, evals = self.staged.steps_run, self.evaluations
        L, K, nb = len(self.names), len(self.options), self.ev.num_batches
        by_layer: dict[int, list[int]] = {}
        for i, o in rows:
            by_layer.setdefault(i, []).append(o)
        out = []
        st = self.staged
        with torch.no_grad():
            for i, opts in by_layer.items():
                single, sums = {o: np.empty(nb) for o in opts}, {o: np.zeros((L, K)) for o in opts}
                for b, (inputs, _) in enumerate(self.ev.batches):
                    front = st.advance(st.start(inputs), 0, self.cut[i])  # unperturbed prefix, once
                    for o in opts:
                        self._row_batch(i, o, b, front, single[o], sums[o])
                for o in opts:
                    pair = np.full((L, K), np.nan)
                    for j in self.partners.get(i, []):
                        pair[j, self.live] = sums[o][j, self.live] / nb
                    out.append((i, o, single[o], pair))
        return {"rows": out, "steps": st.steps_run - steps, "evaluations": self.evaluations - evals, "batching": self.batching, "note": self.note}

    run = rows  # what a worker calls (.runs)


# --------------------------------------------------------------------------- checkpoints
@dataclass
class _State:
    """Everything measured so far (NaN where not yet)."""

    base: np.ndarray  # [nb] FP32 losses
    single: np.ndarray  # [L, K, nb]
    pair: np.ndarray  # [L*K, L*K] mean loss, row = first layer's (layer, option)
    done: np.ndarray  # [L, K] rows finished
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def record(self, i: int, o: int, single: np.ndarray, pair: np.ndarray) -> None:
        K = self.done.shape[1]
        self.single[i, o] = single
        computed = ~np.isnan(pair.ravel())
        self.pair[i * K + o, computed] = pair.ravel()[computed]
        self.done[i, o] = True

    def save(self, path: Path) -> None:
        save_checkpoint(path, _CHECKPOINT_VERSION, self.fingerprint, {"base": self.base, "single": self.single, "pair": self.pair, "done": self.done})


def _fingerprint(setup: Setup, pair_mask: np.ndarray) -> dict[str, Any]:
    """What a checkpoint's numbers depend on; resuming with anything different is refused."""
    ev = setup.evaluator
    return {
        "method": "clado",
        "layers": list(setup.names),
        "options": [[o.label, o.w, o.a] for o in setup.options],
        "batches": ev.num_batches,
        "samples": int(sum(batch_size(inputs) or 0 for inputs, _ in ev.batches)),
        "scheme": asdict(setup.cache.scheme),
        "loss": ev.loss_name,
        "pairs": hashlib.sha256(np.packbits(pair_mask).tobytes()).hexdigest()[:16],
    }


def _load(path: Path, fresh: _State) -> _State:
    stored = load_checkpoint(path, _CHECKPOINT_VERSION, fresh.fingerprint, {"base": fresh.base})
    return _State(fresh.base, stored["single"].copy(), stored["pair"].copy(), stored["done"].copy(), dict(fresh.fingerprint))


# --------------------------------------------------------------------------- the estimator
def estimate_pairwise(
    model: nn.Module,
    data: Iterable[Any],
    options: Sequence[OptionLike],
    *,
    window: int | None = None,
    pairs: PairFilter | None = None,
    executor: Any = None,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
    batch_perturbations: int | str = "auto",
    mode: str = "auto",
    chunks: int | None = None,
    checkpoint_every: float = 30.0,
    **kw: Any,
) -> Sensitivity:
    """CLADO's pairwise sensitivity by forward passes (module docstring: the convention).

    ``window``: measure only pairs at most this many layers apart (module order); ``pairs``: a
    callable ``(layer_a, layer_b) -> bool`` or a list of layer-name pairs to measure. Pairs not
    measured are 0 in ``pairwise`` (the separable prediction for them).
    ``executor``: a ``concurrent.futures.Executor`` (e.g. ``ProcessPoolExecutor``) or a Dask
    ``Client``; the work is sent in ``chunks`` tasks (default: up to 32) with the model, so the
    model, data, loss and ``output_fn`` must be picklable (module-level functions).
    ``checkpoint``: an ``.npz`` path; finished work is saved there (at most every
    ``checkpoint_every`` seconds, and when the run ends or is interrupted) and a later call with the
    same path skips it. A checkpoint from another run (layers, options, data size, weight scheme,
    loss, pairs, or different weights) is refused.
    ``batch_perturbations``: how many options of the second layer share one forward (stacked along
    the batch; the first stacked forward is checked against separate ones, and stacking is dropped
    if they differ); ``"auto"``: all of them while the stacked activations stay under 256 MiB, but
    on CPU only for batches of at most 16 samples (beyond that it measured slower); 1 = off.
    ``mode``: ``"auto"``, ``"fx"``, ``"sequential"``, ``"memo"`` or ``"full"`` (see :mod:`..stages`).
    Other keywords are the estimators' shared ones (``layers``, ``include``, ``exclude``, ``loss``,
    ``output_fn``, ``scheme``: see :mod:`mpqopt.adapters.torch.estimators`).

    ``meta``: ``forward_passes`` (model evaluations on one batch, partial ones included),
    ``entries`` (perturbations: ΔL entries and pairs of options), ``evaluations`` (perturbed losses
    measured in this call, one per entry and batch), ``resumed_entries`` (from the checkpoint), ``mode``, ``step_fraction`` (steps
    run / steps of full forwards: what the cache saved), ``batch_perturbations``, ``seconds``.
    """
    setup = prepare(model, data, options, **kw)
    ev = setup.evaluator
    names, opts = setup.names, setup.options
    L, K, nb = len(names), len(opts), ev.num_batches
    mask = pair_mask(names, window, pairs)
    base = ev.reference_losses()
    forward = nb
    act_ranges = None
    if any(o.a is not None for o in opts):
        act_ranges = calibrate_activations(setup.model, names, ev)
        forward += nb
    staged = stage_model(setup.model, names, ev.batches[0][0], mode=mode, output_fn=ev.output_fn)
    forward += 2  # the check of the staged forward against the model's, on batch 0
    group = _stack_size(batch_perturbations, setup, staged)

    # each pair is measured in the row of the layer cut first (ties: module order)
    order = sorted(range(L), key=lambda l: (staged.cut[names[l]], l))
    rank = {l: r for r, l in enumerate(order)}
    partners = {i: sorted((j for j in range(L) if j != i and (mask[i, j] or mask[j, i]) and rank[j] > rank[i]), key=rank.get) for i in range(L)}
    live = [k for k, o in enumerate(opts) if not is_identity(o)]
    rows = [(i, o) for i in order for o in live]
    cost = {i: 1 + len(partners[i]) * len(live) for i in range(L)}  # entries per row

    state = _State(base, np.full((L, K, nb), np.nan), np.full((L * K, L * K), np.nan), np.zeros((L, K), dtype=bool), _fingerprint(setup, mask))
    path = checkpoint_path(checkpoint)
    if path is not None and path.exists():
        state = _load(path, state)
    todo = [r for r in rows if not state.done[r]]
    total = sum(cost[i] for i, _ in rows)
    resumed = total - sum(cost[i] for i, _ in todo)

    stats: dict[str, Any] = {"steps": 0, "evaluations": 0, "batching": None if group > 1 else False, "note": "", "saved": time.perf_counter()}

    def absorb(result: dict[str, Any], bar: Progress) -> None:
        for i, o, single, pair in result["rows"]:
            state.record(i, o, single, pair)
            bar.update(cost[i])
        stats["steps"] += result["steps"]
        stats["evaluations"] += result["evaluations"]
        if result["batching"] is False:
            stats["batching"], stats["note"] = False, result["note"] or stats["note"]
        elif result["batching"] and stats["batching"] is None:
            stats["batching"] = True
        if path is not None and time.perf_counter() - stats["saved"] >= checkpoint_every:
            state.save(path)
            stats["saved"] = time.perf_counter()

    with Progress(total, "CLADO pairwise", enabled=progress, initial=resumed) as bar:
        try:
            if executor is None:
                runner = _Runner(setup, staged, act_ranges, group, partners)
                parts = _by_layer(todo)  # one layer's rows at a time: they share its prefix
                for part in parts:
                    absorb(runner.rows(part), bar)
            else:
                job = _Job(uuid.uuid4().hex, os.getpid(), setup.model, [rebatch(x, t) for x, t in ev.batches], opts, names, kw.get("loss", "auto"), kw.get("output_fn"), setup.cache.scheme, act_ranges, staged.mode, group, partners, staged.graph)
                parts = split_costs(todo, [cost[i] for i, _ in todo], chunks or min(len(todo), 32)) if todo else []
                sent = {"model": job.model, "data": job.batches, "loss": job.loss, "output_fn": job.output_fn}
                run_on(executor, job, parts, lambda result: absorb(result, bar), sent)
        finally:
            if path is not None:
                state.save(path)  # also when interrupted: the next call resumes from here

    values, std, pairwise = pairwise_terms(state.base, state.single, state.pair, opts)
    evaluations = stats["evaluations"]
    return setup.result(
        values,
        std if nb > 1 else None,
        "clado",
        pairwise=pairwise,
        forward_passes=forward + evaluations,
        backward_passes=0,
        evaluations=evaluations,
        resumed_entries=resumed,
        entries=total,
        layer_pairs=int(mask.sum()),
        mode=staged.mode,
        mode_reason=staged.reason,
        step_fraction=round(stats["steps"] / (staged.num_steps * max(evaluations, 1)), 4),
        batch_perturbations=min(group, len(live)) if stats["batching"] else 1,
        batching_note=stats["note"],
        chunks=len(parts),
        executor=type(executor).__name__ if executor is not None else "serial",
    )


def _stack_size(batch_perturbations: int | str, setup: Setup, staged: StagedModel, batches: int = 1) -> int:
    """How many perturbations may share one forward (each forward on ``batches`` batches concatenated)."""
    if batch_perturbations == "auto":
        on_cpu = all(t.device.type == "cpu" for t in setup.model.parameters())
        samples = (batch_size(setup.evaluator.batches[0][0]) or 1) * batches
        # on CPU the convolutions dominate from a few samples on: stacking gained 10% with batches
        # of 4 and lost 20% with batches of 32+ (digits CNN); on an accelerator bigger batches pay
        if on_cpu and samples > AUTO_STACK_CPU_ROWS:
            return 1
        return max(1, int(AUTO_BATCH_BYTES // max(staged.peak_bytes * batches, 1)))
    if isinstance(batch_perturbations, int) and not isinstance(batch_perturbations, bool) and batch_perturbations >= 1:
        return batch_perturbations
    raise ProblemError(f"batch_perturbations must be 'auto' or a positive integer, got {batch_perturbations!r}")


def _by_layer(rows: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    groups: dict[int, list[tuple[int, int]]] = {}
    for row in rows:
        groups.setdefault(row[0], []).append(row)
    return list(groups.values())
