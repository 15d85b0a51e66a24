"""Ground truth for small models: the measured loss of every allocation.

With L layers and K options that is K**L evaluations (the digits CNN: 4**5 = 1024), so it is
for validating estimators and solvers on small networks, not for real models.

The enumeration is depth first over the layers in the order the forward pass reaches them, and
keeps the activations before each layer (see :mod:`..stages`): under a fixed prefix of choices the
model runs only from the next layer on, so the leaves cost one tail each instead of a full forward.
The values are the same as full forwards' (the same operations on the same inputs). A model that
cannot be split into steps (``meta`` ``mode`` ``"full"``, with a warning saying why) is run whole.
Like :func:`~mpqopt.adapters.torch.estimate_pairwise` it shows progress, can run on an executor,
and with ``checkpoint=`` saves finished work and resumes from it.

Measured on the digits CNN (W2/W3/W4/W8, 1,024 allocations): see benchmarks/results/estimators.md.

>>> import torch
>>> from torch import nn
>>> m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3))
>>> truth = exhaustive_losses(m, [torch.randn(16, 4)], [2, 8], loss="kl")
>>> truth.assignments.shape, truth.change.shape
((4, 2), (4,))
>>> bool(truth.change[-1] < truth.change[0])   # both layers at W8 beat both at W2
True
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ....errors import ProblemError
from ....options import Option, OptionLike
from ....problem import Problem
from ....progress import Progress
from ...sensitivity import check_finite
from ...choices import quantizes_input
from ..perturb import calibrate_activations, check_act_ranges, quantized
from ..stages import StagedModel, batch_size, stage_model
from .base import Setup, StagedJob, prepare
from .runs import checkpoint_path, load_checkpoint, rebatch, run_on, save_checkpoint, split_costs

MAX_EVALUATIONS = 100_000
PREFIX_TASKS = 64  # work is split (and checkpointed) by the choices of the first layers: about this many parts
_CHECKPOINT_VERSION = 1


@dataclass
class GroundTruth:
    """``change[n]``: measured loss increase over FP32 of ``assignments[n]`` (option index per layer)."""

    layers: tuple[str, ...]
    options: tuple[Option, ...]
    assignments: np.ndarray  # (N, L) option indices
    change: np.ndarray  # (N,)
    fp_loss: float
    meta: dict[str, Any] = field(default_factory=dict)  # mode, mode_reason, seconds, evaluations, ...

    def lookup(self, x: Sequence[int] | np.ndarray) -> float:
        """Measured loss change of one assignment (option indices in layer order)."""
        k = len(self.options)
        x = np.asarray(x)
        if x.shape != (len(self.layers),) or not np.issubdtype(x.dtype, np.integer) or (x < 0).any() or (x >= k).any():
            raise ProblemError(f"an assignment here is {len(self.layers)} option indices in 0..{k - 1} (layers {list(self.layers)}), got {x.tolist()!r}")
        index = int(np.ravel_multi_index(tuple(x), (k,) * len(self.layers)))
        return float(self.change[index])

    def best(self, problem: Problem, budgets: Mapping[str, float] | None = None) -> tuple[np.ndarray, float] | None:
        """The truly best assignment under ``problem``'s budgets (costs from the problem), with its
        measured loss change; None when no assignment meets them."""
        if tuple(problem.layers) != self.layers or tuple(o.label for o in problem.options) != tuple(o.label for o in self.options):
            raise ProblemError("the problem's layers/options differ from the ground truth's")
        limits = problem.budgets if budgets is None else budgets
        ok = np.ones(len(self.change), dtype=bool)
        rows = np.arange(len(self.layers))
        for name, limit in limits.items():
            total = problem.costs[name][rows[None, :], self.assignments].sum(axis=1)
            ok &= total <= limit * (1 + 1e-12)
        ok &= problem.allowed[rows[None, :], self.assignments].all(axis=1)
        if not ok.any():
            return None
        i = int(np.flatnonzero(ok)[np.argmin(self.change[ok])])
        return self.assignments[i].copy(), float(self.change[i])


class _Enumerator:
    """Measures the allocations under given prefixes (choices of the first ``depth`` layers in
    forward order), depth first, one batch at a time: the values before each layer are computed
    once per prefix of choices above it."""

    def __init__(self, setup: Setup, staged: StagedModel, act_ranges: Any, order: Sequence[int], depth: int):
        self.setup, self.staged, self.act_ranges = setup, staged, act_ranges
        self.order, self.depth = list(order), depth
        self.names, self.options = setup.names, setup.options
        L, K = len(self.names), len(self.options)
        self.cut = [staged.cut[self.names[l]] for l in self.order]
        self.weight = [K ** (L - 1 - l) for l in range(L)]  # an allocation's index: option indices in names order, base K
        self.losses = np.full((K**L, setup.evaluator.num_batches), np.nan)
        self.evaluations = 0

    def _descend(self, env: Any, pos: int, level: int, b: int, node: dict | None, index: int) -> None:
        st, ev = self.staged, self.setup.evaluator
        if level == len(self.order):
            value = float(ev.loss_of(b, ev.output_fn(st.finish(env, pos))))
            self.evaluations += 1
            if not np.isfinite(value):
                check_finite(value, f"allocation {self._describe(index)} (batch {b})")
            self.losses[index, b] = value
            return
        layer = self.order[level]
        env, pos = st.advance(env, pos, self.cut[level]), self.cut[level]  # choices above are in place
        for k in (node if node is not None else range(len(self.options))):
            with quantized(self.setup.model, {self.names[layer]: self.options[k]}, cache=self.setup.cache, act_ranges=self.act_ranges):
                child = node[k] if node is not None and level + 1 < self.depth else None
                self._descend(env, pos, level + 1, b, child, index + k * self.weight[layer])

    def _describe(self, index: int) -> dict[str, str]:
        x = np.unravel_index(index, (len(self.options),) * len(self.names))
        return {name: self.options[int(k)].label for name, k in zip(self.names, x)}

    def run(self, prefixes: list[tuple[int, ...]]) -> dict[str, Any]:
        """The per-batch losses of every allocation under ``prefixes`` (a worker's task)."""
        steps, evals = self.staged.steps_run, self.evaluations
        trie: dict = {}
        for p in prefixes:
            node = trie
            for k in p:
                node = node.setdefault(k, {})
        st = self.staged
        with torch.no_grad():
            for b, (inputs, _) in enumerate(self.setup.evaluator.batches):
                self._descend(st.start(inputs), 0, 0, b, trie if self.depth else None, 0)
        rows = [(p, self.losses[leaves(p, self.order, self.weight, len(self.options))]) for p in prefixes]
        return {"rows": rows, "steps": st.steps_run - steps, "evaluations": self.evaluations - evals}


def leaves(prefix: tuple[int, ...], order: Sequence[int], weight: Sequence[int], K: int) -> np.ndarray:
    """Indices of the allocations whose first ``len(prefix)`` layers in ``order`` take ``prefix``."""
    index = sum(k * weight[order[t]] for t, k in enumerate(prefix))
    free = order[len(prefix):]
    offsets = np.zeros(1, dtype=np.int64)
    for l in free:
        offsets = (offsets[:, None] + np.arange(K, dtype=np.int64)[None, :] * weight[l]).ravel()
    return index + offsets


@dataclass
class _Job(StagedJob):
    """A depth-first enumeration's share of the work (:class:`.base.StagedJob`)."""

    order: list[int]
    depth: int
    graph: Any = None

    def build(self) -> _Enumerator:
        setup, staged = self.staged(self.graph)
        return _Enumerator(setup, staged, self.act_ranges, self.order, self.depth)


def _fingerprint(setup: Setup, act_ranges: Any, depth: int) -> dict[str, Any]:
    """What a checkpoint's numbers depend on; resuming with anything different is refused."""
    ev = setup.evaluator
    return {
        "method": "exhaustive",
        "layers": list(setup.names),
        "options": [[o.label, o.w, o.a] for o in setup.options],
        "batches": ev.num_batches,
        "samples": int(sum(batch_size(inputs) or 0 for inputs, _ in ev.batches)),
        "scheme": asdict(setup.cache.scheme),
        "loss": ev.loss_name,
        "act_ranges": None if act_ranges is None else sorted([k, float(v[0]), float(v[1])] for k, v in act_ranges.items()),
        "depth": depth,
    }


def exhaustive_losses(model: nn.Module, data: Iterable[Any], options: Sequence[OptionLike], *,
                      act_ranges: Mapping[str, tuple[float, float]] | None = None, mode: str = "auto",
                      executor: Any = None, checkpoint: str | os.PathLike | None = None, progress: bool = True,
                      chunks: int | None = None, checkpoint_every: float = 30.0, **prepare_kwargs: Any) -> GroundTruth:
    """Measure the loss of every assignment of ``options`` to the model's quantizable layers
    (``layers=`` / ``include=`` / ``exclude=`` choose them; ``loss=``, ``output_fn=`` and ``scheme=``
    as in the estimators: see :mod:`mpqopt.adapters.torch.estimators`).

    Options with activation bits quantize each layer's input to ``act_ranges`` ``{layer: (lo, hi)}``
    (e.g. calibrated on other data than ``data``), or by default to ranges calibrated on ``data``.

    ``mode``: how the forward pass is split to reuse the activations of shared prefixes
    (``"auto"``, ``"fx"``, ``"sequential"``, ``"memo"``, ``"full"``: see :mod:`..stages`). ``executor``,
    ``chunks``, ``checkpoint``, ``checkpoint_every`` and ``progress`` as in
    :func:`~mpqopt.adapters.torch.estimate_pairwise` (a checkpoint is refused by a run with other
    layers, options, data size, scheme, loss, activation ranges or weights). ``meta`` records
    ``mode``, ``mode_reason``, ``evaluations`` (losses measured in this call: allocations x batches),
    ``resumed`` (allocations read from the checkpoint), ``step_fraction`` (steps run / steps of
    full forwards) and ``seconds``.
    """
    setup = prepare(model, data, options, **prepare_kwargs)
    ev = setup.evaluator
    names, opts = setup.names, setup.options
    L, K, nb = len(names), len(opts), ev.num_batches
    total = K**L
    if total > MAX_EVALUATIONS:
        raise ProblemError(f"{K} options over {L} layers is {total:,} allocations; exhaustive evaluation is limited to {MAX_EVALUATIONS:,}")
    base = ev.reference_losses()
    if any(quantizes_input(o) for o in opts):
        if act_ranges is None:
            act_ranges = calibrate_activations(setup.model, names, ev)
        check_act_ranges(act_ranges, names)
        act_ranges = {k: (float(v[0]), float(v[1])) for k, v in act_ranges.items()}
    staged = stage_model(setup.model, names, ev.batches[0][0], mode=mode, output_fn=ev.output_fn)
    if staged.mode == "full" and mode != "full":
        warnings.warn(f"exhaustive_losses: the model cannot be run from the middle ({staged.reason}); every allocation runs a full forward", stacklevel=2)
    order = sorted(range(L), key=lambda l: (staged.cut[names[l]], l))  # forward order
    depth = 0
    while depth < L and K**depth < PREFIX_TASKS:
        depth += 1
    prefixes = list(itertools.product(range(K), repeat=depth))
    tail = K ** (L - depth)

    fingerprint = _fingerprint(setup, act_ranges, depth)
    losses, done = np.full((total, nb), np.nan), np.zeros(len(prefixes), dtype=bool)
    path = checkpoint_path(checkpoint)
    if path is not None and path.exists():
        stored = load_checkpoint(path, _CHECKPOINT_VERSION, fingerprint, {"base": base})
        losses, done = stored["losses"].copy(), stored["done"].copy()
    position = {p: n for n, p in enumerate(prefixes)}
    todo = [p for p in prefixes if not done[position[p]]]
    weight = [K ** (L - 1 - l) for l in range(L)]
    stats = {"steps": 0, "evaluations": 0, "saved": time.perf_counter()}

    def save() -> None:
        save_checkpoint(path, _CHECKPOINT_VERSION, fingerprint, {"base": base, "losses": losses, "done": done})
        stats["saved"] = time.perf_counter()

    def absorb(result: dict[str, Any], bar: Progress) -> None:
        for p, rows in result["rows"]:
            losses[leaves(p, order, weight, K)] = rows
            done[position[p]] = True
            bar.update(tail)
        stats["steps"] += result["steps"]
        stats["evaluations"] += result["evaluations"]
        if path is not None and time.perf_counter() - stats["saved"] >= checkpoint_every:
            save()

    with Progress(total, "exhaustive", enabled=progress, initial=total - len(todo) * tail) as bar:
        try:
            if executor is None:
                runner = _Enumerator(setup, staged, act_ranges, order, depth)
                groups: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
                for p in todo:  # one part per choice of all but the last prefix layer: progress and
                    groups.setdefault(p[:-1], []).append(p)  # checkpoints K**(depth-1) times, at the cost of recomputing the layers above
                parts = list(groups.values())
                for part in parts:
                    absorb(runner.run(part), bar)
            else:
                job = _Job(uuid.uuid4().hex, os.getpid(), setup.model, [rebatch(x, t) for x, t in ev.batches], opts, names, prepare_kwargs.get("loss", "auto"),
                           prepare_kwargs.get("output_fn"), setup.cache.scheme, act_ranges, staged.mode, order, depth, staged.graph)
                parts = split_costs(todo, [1] * len(todo), chunks or min(len(todo), 32)) if todo else []
                sent = {"model": job.model, "data": job.batches, "loss": job.loss, "output_fn": job.output_fn}
                run_on(executor, job, parts, lambda result: absorb(result, bar), sent)
        finally:
            if path is not None:
                save()  # also when interrupted: the next call resumes from here

    fp = float(base.mean())
    change = np.empty(total)
    for n in range(total):
        change[n] = float(losses[n].mean()) - fp
    assignments = np.array(list(itertools.product(range(K), repeat=L)), dtype=np.int64)
    evaluations = stats["evaluations"]
    meta = {"mode": staged.mode, "mode_reason": staged.reason, "evaluations": evaluations, "resumed": total - len(todo) * tail,
            "step_fraction": round(stats["steps"] / (staged.num_steps * max(evaluations, 1)), 4), "chunks": len(parts),
            "executor": type(executor).__name__ if executor is not None else "serial", "seconds": time.perf_counter() - setup.started}
    return GroundTruth(names, opts, assignments, change, fp, meta)


def _exhaustive_reference(model: nn.Module, data: Iterable[Any], options: Sequence[OptionLike], *,
                      act_ranges: Mapping[str, tuple[float, float]] | None = None, **prepare_kwargs: Any) -> GroundTruth:
    """The plain enumeration, one full forward per allocation and batch: what :func:`exhaustive_losses`
    must equal (kept for its tests and benchmarks/bench_estimators.py).

    Measure the loss of every assignment of ``options`` to the model's quantizable layers
    (``layers=`` / ``include=`` / ``exclude=`` choose them; ``loss=``, ``output_fn=`` and ``scheme=``
    as in the estimators: see :mod:`mpqopt.adapters.torch.estimators`).

    Options with activation bits quantize each layer's input to ``act_ranges`` ``{layer: (lo, hi)}``
    (e.g. calibrated on other data than ``data``), or by default to ranges calibrated on ``data``."""
    setup = prepare(model, data, options, **prepare_kwargs)
    L, K = len(setup.layers), len(setup.options)
    total = K**L
    if total > MAX_EVALUATIONS:
        raise ProblemError(f"{K} options over {L} layers is {total:,} allocations; exhaustive evaluation is limited to {MAX_EVALUATIONS:,}")
    fp = float(setup.evaluator.batch_losses().mean())
    # options with activation bits quantize each layer's input too: to the given ranges, or to ranges
    # calibrated on the FP32 model over ``data``
    if any(quantizes_input(o) for o in setup.options):
        if act_ranges is None:
            act_ranges = calibrate_activations(setup.model, setup.names, setup.evaluator)
        check_act_ranges(act_ranges, setup.names)
    assignments = np.array(list(itertools.product(range(K), repeat=L)), dtype=np.int64)
    change = np.empty(total)
    for n, x in enumerate(assignments):
        choice = {name: setup.options[k] for name, k in zip(setup.names, x.tolist())}
        with quantized(setup.model, choice, cache=setup.cache, act_ranges=act_ranges):
            value = float(setup.evaluator.batch_losses().mean())
        change[n] = check_finite(value, f"allocation {dict((k, v.label) for k, v in choice.items())}") - fp
    return GroundTruth(setup.names, setup.options, assignments, change, fp)
