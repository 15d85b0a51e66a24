"""Build an mpqopt :class:`~mpqopt.Problem` from a PyTorch model, an example input and a sensitivity table.

>>> import numpy as np, torch
>>> from torch import nn
>>> m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
>>> p = problem_from_model(m, torch.randn(1, 1, 8, 8), [4, 8], np.array([[0.3, 0.0], [0.1, 0.0]]),
...                        budgets={"size_bits": "50%"})
>>> p.layers, sorted(p.costs), p.meta["ties_method"]
(('0', '3'), ['bitops', 'size_bits'], 'none')
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Mapping, Sequence

from torch import nn

from ...options import OptionLike
from ...problem import Problem
from ..build import assemble_problem, check_sensitivity
from ..sensitivity import Sensitivity
from .costs import LATENCY_COST, Benchmark, check_latency, example_batch_size, latency_table, measure_layers, unused_error
from .data import split_batch
from .graph import TieSpec, find_ties
from .layers import discover_layers


def problem_from_model(
    model: nn.Module,
    example_input: Any,
    options: Sequence[OptionLike] | None,
    sensitivity: Sensitivity | Any,
    *,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    costs: Iterable[str] = ("size_bits", "bitops"),
    budgets: Mapping[str, Any] | None = None,
    ties: TieSpec = "auto",
    tie_extra: Iterable[Sequence[str]] | None = None,
    tie_exclude: str | Iterable[str] | None = None,
    keep_first_last: OptionLike | None = None,
    latency: Benchmark | Any = None,
    default_act_bits: int | None = 8,
    batch_size: int | None = None,
) -> Problem:
    """The allocation problem for ``model``'s quantizable layers.

    * Layers: :func:`~mpqopt.adapters.torch.layers.discover_layers` with ``include``/``exclude``
      patterns; when ``sensitivity`` is a :class:`Sensitivity` its layers must be exactly these (in
      any order: the problem follows the sensitivity's order) and ``options`` may be None (its
      options are used) or must equal its options. A plain array must be ``[layers x options]`` in
      module order.
    * Costs (``costs``): ``size_bits``, ``size_bytes`` (weights only), ``bitops`` (per-sample MACs
      × w × a, ``default_act_bits`` for weight-only options), all from one forward on
      ``example_input`` (one batch of data; MACs are divided by its batch size). ``latency`` adds a
      ``latency_s`` table: a benchmark ``callable(model, layer_name, option) -> seconds`` called once
      per cell, or an ``[layers x options]`` table in seconds.
    * Ties (``ties``): ``"auto"`` ties layers that read the same tensor (they share an input
      quantizer) when the options carry activation bit-widths; with weight-only options nothing is
      shared, so ``"auto"`` adds no tie. ``None``, a list of name lists or a ``callable(graph)``
      override it; ``tie_extra`` adds groups, ``tie_exclude`` removes layers from groups
      (see :func:`~mpqopt.adapters.torch.graph.find_ties`).
    * ``keep_first_last``: e.g. ``8`` or ``"W8A8"`` fixes the first and last quantizable layers that
      run in the forward (of the whole model, before ``include``/``exclude``: an excluded first
      layer is already left alone) to that option; its costs still count toward the budgets. An int
      picks the option with that weight width, preferring the same activation width.

    ``problem.meta`` records the method used for ties, the per-sample MACs and the batch size (and,
    from a :class:`Sensitivity`, the estimator and its scalar meta).
    """
    layers = discover_layers(model, include, exclude)
    names = [layer.name for layer in layers]
    opts, _ = check_sensitivity(sensitivity, options, names)
    if isinstance(sensitivity, Sensitivity):
        names = list(sensitivity.layers)  # same set, the sensitivity's order

    # every quantizable layer is measured so "first" and "last" are the model's, not the selection's
    if batch_size is None:
        batch_size = example_batch_size(split_batch(example_input)[0])
    measured = {c.name: c for c in measure_layers(model, example_input, discover_layers(model), batch_size=batch_size, skip_unused=True)}
    unused = [n for n in names if n not in measured]
    if unused:
        raise unused_error(unused)
    extra = {}
    if latency is not None:
        extra[LATENCY_COST] = latency_table(model, names, opts, latency) if callable(latency) else check_latency(latency, names, opts)

    note = ""
    if isinstance(ties, str) and ties == "auto" and not any(o.a is not None for o in opts):
        ties, note = None, "weight-only options: layers share no input quantizer"
    found = find_ties(model, names, ties, example_input=example_input, extra=tie_extra, exclude=tie_exclude)
    if note and not found.reason:
        found = replace(found, reason=note)
    return assemble_problem(
        [measured[n] for n in names], opts, sensitivity, source="torch", all_layers=list(measured.values()), costs=costs, extra_tables=extra,
        budgets=budgets, ties=found, keep_first_last=keep_first_last, default_act_bits=default_act_bits,
        meta={"model": type(model).__name__, "batch_size": batch_size},
    )
