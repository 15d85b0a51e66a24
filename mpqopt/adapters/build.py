"""Framework-free assembly of a :class:`~mpqopt.Problem` from what an adapter measured: the
sensitivity checked against the selected layers, cost tables, ties, and the first/last layers kept
at high precision. The torch and ONNX adapters' builders both end here.

>>> from mpqopt.adapters.tables import LayerCost
>>> c = [LayerCost("a", "linear", (4, 4), 1, 20, 16, 16.0, 1, 0, (1, 4), (1, 4)),
...      LayerCost("b", "linear", (2, 4), 1, 10, 8, 8.0, 1, 1, (1, 4), (1, 2))]
>>> p = assemble_problem(c, [4, 8], [[0.3, 0.0], [0.1, 0.0]], source="demo", budgets={"size_bits": "50%"})
>>> p.layers, sorted(p.costs)
(('a', 'b'), ['bitops', 'size_bits'])
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import ProblemError
from ..options import Option, OptionLike
from ..problem import Problem
from .choices import parse_options
from .sensitivity import Sensitivity
from .tables import LayerCost, cost_tables
from .ties import Ties


def assemble_problem(
    layer_costs: Sequence[LayerCost],
    options: Sequence[OptionLike] | None,
    sensitivity: Sensitivity | Any,
    *,
    source: str,
    all_layers: Sequence[LayerCost] | None = None,
    costs: Iterable[str] = ("size_bits", "bitops"),
    extra_tables: Mapping[str, np.ndarray] | None = None,
    budgets: Mapping[str, Any] | None = None,
    ties: Ties | None = None,
    keep_first_last: OptionLike | None = None,
    default_act_bits: int | None = 8,
    meta: Mapping[str, Any] | None = None,
    row_lengths: Mapping[str, int] | None = None,
) -> Problem:
    """The problem over ``layer_costs`` (the selected layers, measured), in the sensitivity's order
    when it is a :class:`Sensitivity`. ``all_layers`` (default: the selection) decides which layers
    are the model's first and last for ``keep_first_last``. With ``row_lengths`` ``{layer: weights
    per output row}`` the problem carries ``params`` (weight counts) and ``row_lengths``, so bpw
    budgets and formats' block rules apply, and size tables count per-row scales."""
    by_name = {c.name: c for c in layer_costs}
    names = list(by_name)
    opts, values = check_sensitivity(sensitivity, options, names)
    if isinstance(sensitivity, Sensitivity):
        names = list(sensitivity.layers)  # same set, the sensitivity's order
    ordered = [by_name[n] for n in names]
    rows = None if row_lengths is None else [int(row_lengths[n]) for n in names]
    tables = cost_tables(ordered, opts, costs, default_act_bits=default_act_bits, row_lengths=rows)
    tables.update(extra_tables or {})
    measured = {c.name: c for c in (all_layers if all_layers is not None else layer_costs)}
    fixed = first_last_fixed(keep_first_last, measured, names, opts)
    info: dict[str, Any] = {"source": source, **(meta or {}), "macs_per_sample": [c.macs for c in ordered]}
    if ties is not None:
        info["ties_method"] = ties.method
        if ties.reason:
            info["ties_note"] = ties.reason
    if "bitops" in tables:
        info["default_act_bits"] = default_act_bits
    if fixed:
        info["keep_first_last"] = sorted(fixed, key=names.index)
    kwargs: dict[str, Any] = dict(ties=() if ties is None else ties.groups, fixed=fixed, cost_units={"bitops": "bitops"} if "bitops" in tables else None, meta=info)
    if rows is not None:
        kwargs.update(params=[c.weight_params for c in ordered], row_lengths=rows)
    if isinstance(sensitivity, Sensitivity):
        return sensitivity.problem(tables, budgets, **kwargs)
    return Problem(names, opts, values, tables, budgets, **kwargs)


def check_sensitivity(sensitivity: Any, options: Sequence[OptionLike] | None, names: list[str]) -> tuple[tuple[Option, ...], np.ndarray]:
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


def first_last_fixed(keep: OptionLike | None, measured: Mapping[str, LayerCost], names: Sequence[str], opts: Sequence[Option]) -> dict[str, str]:
    """``{layer: label}`` fixing the first and last layers that run (if they are in the problem)."""
    if keep is None:
        return {}
    label = keep_option(keep, opts)
    ordered = sorted(measured.values(), key=lambda c: c.order)
    ends = {ordered[0].name, ordered[-1].name}
    return {n: label for n in names if n in ends}


def keep_option(keep: OptionLike, opts: Sequence[Option]) -> str:
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
