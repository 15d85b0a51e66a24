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

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from torch import nn

from ...errors import ProblemError
from ...options import Option, OptionLike
from ...problem import Problem
from ..choices import parse_options
from ..sensitivity import Sensitivity
from .costs import LATENCY_COST, Benchmark, LayerCost, check_latency, cost_tables, example_batch_size, latency_table, measure_layers, unused_error
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
    opts, values = _sensitivity(sensitivity, options, names)
    if isinstance(sensitivity, Sensitivity):
        names = list(sensitivity.layers)  # same set, the sensitivity's order

    # every quantizable layer is measured so "first" and "last" are the model's, not the selection's
    if batch_size is None:
        batch_size = example_batch_size(split_batch(example_input)[0])
    measured = {c.name: c for c in measure_layers(model, example_input, discover_layers(model), batch_size=batch_size, skip_unused=True)}
    unused = [n for n in names if n not in measured]
    if unused:
        raise unused_error(unused)
    layer_costs = [measured[n] for n in names]
    tables = cost_tables(layer_costs, opts, costs, default_act_bits=default_act_bits)
    if latency is not None:
        tables[LATENCY_COST] = latency_table(model, names, opts, latency) if callable(latency) else check_latency(latency, names, opts)

    note = ""
    if isinstance(ties, str) and ties == "auto" and not any(o.a is not None for o in opts):
        ties, note = None, "weight-only options: layers share no input quantizer"
    found = find_ties(model, names, ties, example_input=example_input, extra=tie_extra, exclude=tie_exclude)

    fixed = _first_last(keep_first_last, measured, names, opts)
    meta: dict[str, Any] = {
        "source": "torch",
        "model": type(model).__name__,
        "ties_method": found.method,
        "macs_per_sample": [c.macs for c in layer_costs],
        "batch_size": batch_size,
    }
    if found.reason or note:
        meta["ties_note"] = found.reason or note
    if "bitops" in tables:
        meta["default_act_bits"] = default_act_bits
    if fixed:
        meta["keep_first_last"] = sorted(fixed, key=names.index)
    kwargs: dict[str, Any] = dict(ties=found.groups, fixed=fixed, cost_units={"bitops": "bitops"} if "bitops" in tables else None, meta=meta)
    if isinstance(sensitivity, Sensitivity):
        return sensitivity.problem(tables, budgets, **kwargs)
    return Problem(names, opts, values, tables, budgets, **kwargs)


def _sensitivity(sensitivity: Any, options: Sequence[OptionLike] | None, names: list[str]) -> tuple[tuple[Option, ...], np.ndarray]:
    """``(options, values)`` from a Sensitivity or a plain table, checked against the selected layers."""
    if isinstance(sensitivity, Sensitivity):
        got = list(sensitivity.layers)
        extra = [n for n in got if n not in set(names)]
        missing = [n for n in names if n not in set(got)]
        if extra or missing:
            raise ProblemError(
                f"the sensitivity's layers do not match the model's selected layers: in the sensitivity but not selected {extra[:8]}, "
                f"selected but missing from the sensitivity {missing[:8]} (give the include=/exclude= the estimator was given)"
            )
        opts = tuple(sensitivity.options)
        if options is not None and parse_options(options) != opts:
            raise ProblemError(f"options {[o.label for o in parse_options(options)]} differ from the sensitivity's {[o.label for o in opts]}; pass options=None to use the sensitivity's")
        return opts, sensitivity.values
    if options is None:
        raise ProblemError("options are needed when the sensitivity is a plain table (only a Sensitivity carries its own)")
    opts = parse_options(options)
    try:
        values = np.array(sensitivity, dtype=np.float64)
    except (TypeError, ValueError):
        raise ProblemError(f"sensitivity must be a Sensitivity or a numeric [layers x options] table, got {type(sensitivity).__name__}") from None
    if values.shape != (len(names), len(opts)):
        raise ProblemError(f"sensitivity table has shape {values.shape}, but the model has {len(names)} selected layers {names[:8]} and {len(opts)} options")
    return opts, values


def _first_last(keep: OptionLike | None, measured: Mapping[str, LayerCost], names: Sequence[str], opts: Sequence[Option]) -> dict[str, str]:
    """``{layer: label}`` fixing the first and last layers that run (if they are in the problem)."""
    if keep is None:
        return {}
    label = _keep_option(keep, opts)
    ordered = sorted(measured.values(), key=lambda c: c.order)
    ends = {ordered[0].name, ordered[-1].name}
    return {n: label for n in names if n in ends}


def _keep_option(keep: OptionLike, opts: Sequence[Option]) -> str:
    labels = [o.label for o in opts]
    if isinstance(keep, int) and not isinstance(keep, bool):
        same_w = [o for o in opts if o.w == keep]
        if not same_w:
            raise ProblemError(f"keep_first_last={keep} needs an option with {keep}-bit weights among the options {labels}; add it, or exclude= the first/last layers to leave them unquantized")
        # W8A8 over W8A4 for keep_first_last=8: the first/last layers are kept high precision in both
        return max(same_w, key=lambda o: (o.a == keep, o.a or 0)).label
    try:
        want = Option.parse(keep)
    except ProblemError as exc:
        raise ProblemError(f"keep_first_last: {exc}") from None
    if want.label in labels:
        return want.label
    match = [o.label for o in opts if (o.w, o.a) == (want.w, want.a)]
    if match:
        return match[0]
    raise ProblemError(f"keep_first_last={want.label} is not one of the options {labels}")
