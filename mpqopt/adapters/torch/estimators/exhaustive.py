"""Ground truth for small models: the measured loss of every allocation.

With L layers and K options that is K**L evaluations (the digits CNN: 4**5 = 1024), so it is
for validating estimators and solvers on small networks, not for real models.

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
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from torch import nn

from ....errors import ProblemError
from ....options import Option, OptionLike
from ....problem import Problem
from ...sensitivity import check_finite
from ...choices import quantizes_input
from ..perturb import calibrate_activations, check_act_ranges, quantized
from .base import prepare

MAX_EVALUATIONS = 100_000


@dataclass
class GroundTruth:
    """``change[n]``: measured loss increase over FP32 of ``assignments[n]`` (option index per layer)."""

    layers: tuple[str, ...]
    options: tuple[Option, ...]
    assignments: np.ndarray  # (N, L) option indices
    change: np.ndarray  # (N,)
    fp_loss: float

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


def exhaustive_losses(model: nn.Module, data: Iterable[Any], options: Sequence[OptionLike], *,
                      act_ranges: Mapping[str, tuple[float, float]] | None = None, **prepare_kwargs: Any) -> GroundTruth:
    """Measure the loss of every assignment of ``options`` to the model's quantizable layers
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
