"""HAWQ-V3 (Yao et al., ICML 2021): the INT4 / INT8 integer program of ``ILP.ipynb`` as a Problem.

The source (github.com/Zhen-Dong/HAWQ, ``ILP.ipynb``) picks INT4 or INT8 for every layer between the
first conv and the final FC (both fixed to INT8 outside the program; the same bit is used for a
layer's weights and its input activations) to

    minimise  sum_i y_i * T_i * (d8_i - d4_i)         (y_i = 1 for INT8, 0 for INT4)
    s.t.      sum_i c4_i + y_i * (c8_i - c4_i) <= S4 + r * (S8 - S4)       (one budget)
              y_i = y_j for every tied pair (a downsampling conv shares its input quantizer)

with ``T`` the Hutchinson trace per parameter, ``d8``/``d4`` the squared INT8/INT4 weight
perturbations and ``S4``/``S8`` the all-INT4 / all-INT8 totals. Budgets: size (c4 = params / 2,
c8 = params), BOPs (c4 = bops / 64, c8 = bops / 16), latency (measured INT4 / INT8 T4 latency).

Here option ``W4A4`` has sensitivity 0 and ``W8A8`` has ``T * (d8 - d4)`` (negative), so
``Result.objective`` is the source's objective itself. Costs keep the notebook's units:

* ``size``: megabytes of INT8 weights: MiB (2**20 bytes) for the ResNet-18 cell, which divides
  raw parameter counts by 1024 twice, MB (1e6) for ResNet-50, whose literal is in millions; the unit
  is recognised from the numbers (parameter counts are whole) and recorded in ``cost_units``.
* ``bops``: the notebook's BOPs unit, BitOps / 1.024e9 (MACs in millions / 16 at INT8). This has no
  unit mpqopt can convert, so give its budgets as numbers in that unit or as percentages.
* ``latency_ms``: milliseconds on a T4 GPU (per the notebook; the unit is not stated there).

>>> import mpqopt
>>> from mpqopt.importers import hawq_v3_problem
>>> data = {"layer_names_in_bit_config": ["a", "b"], "hutchinson_trace_per_param": [1.0, 0.5],
...         "delta_w_sq_8bit": [0.1, 0.1], "delta_w_sq_4bit": [2.1, 1.1],
...         "params_M_ilp_units": [1.0, 1.0], "bops_ilp_units": [64.0, 64.0],
...         "latency_int4_ms_T4": [0.1, 0.1], "latency_int8_ms_T4": [0.2, 0.2]}
>>> p = hawq_v3_problem(data, "size", 0.5)
>>> mpqopt.solve(p).assignment
{'a': 'W8A8', 'b': 'W4A4'}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import FormatError, ProblemError
from ..options import Option
from ..problem import Problem
from . import get_key, is_integral, name_list, number_list, read_source

HAWQ_OPTIONS = (Option(4, 4, "W4A4"), Option(8, 8, "W8A8"))

# budget kind -> cost table; "modelsize" is the source's own name (bit_config keys, notebook variable)
BUDGET_KINDS = {"size": "size", "modelsize": "size", "bops": "bops", "latency": "latency_ms", "latency_ms": "latency_ms"}

# full-file array name -> fixture name; the fixture holds the same numbers already in ILP units
_FULL_ARRAYS = {
    "Hutchinson_trace": "hutchinson_trace_per_param",
    "delta_weights_8bit_square": "delta_w_sq_8bit",
    "delta_weights_4bit_square": "delta_w_sq_4bit",
    "parameters": "params_M_ilp_units",
    "bops": "bops_ilp_units",
    "latency_int4": "latency_int4_ms_T4",
    "latency_int8": "latency_int8_ms_T4",
}
_TRANSFORM_RE = re.compile(r"\s*([*/])\s*([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)\s*")


@dataclass
class _HawqInputs:
    layers: list[str]
    arrays: dict[str, np.ndarray]  # fixture names, ILP units
    ties: list[tuple[int, int]]
    released: dict[str, list[int]] = field(default_factory=dict)  # source key -> weight bits per layer


def hawq_v3_problem(
    source: str | Path | Mapping[str, Any],
    budget_kind: str | None = None,
    r: float = 0.5,
    *,
    model: str | None = None,
) -> Problem:
    """The HAWQ-V3 ILP for one network as a :class:`~mpqopt.Problem` (options ``W4A4`` / ``W8A8``).

    ``source`` is one of the peer files: ``hawq_v3_resnet18.json`` / ``hawq_v3_resnet50.json`` (the
    notebook literals; the scaling the notebook applies afterwards, given in ``array_notes``, is
    applied here), one entry of ``hawq_v3_ilp_fixture.json``'s ``models``, or that whole fixture with
    ``model="resnet18"``. ``budget_kind`` (``"size"``, ``"bops"`` or ``"latency"``; None for no
    budget) with ``r`` in [0, 1] sets the source's budget ``S4 + r * (S8 - S4)``; any budget can also
    be given later, e.g. ``mpqopt.solve(p, budgets={"bops": "25%"})``.

    >>> p = hawq_v3_problem("../shared/peers/hawq_v3_resnet50.json", "size", 0.25)  # doctest: +SKIP
    >>> round(mpqopt.solve(p).objective, 5)                                          # doctest: +SKIP
    -0.83139
    """
    inputs = _read(source, model)
    a = inputs.arrays
    # the notebook's own expressions, in its operation order, so the objective matches bit for bit
    gain8 = a["hutchinson_trace_per_param"] * (a["delta_w_sq_8bit"] - a["delta_w_sq_4bit"])
    sensitivity = np.stack([np.zeros_like(gain8), gain8], axis=1)
    params, bops = a["params_M_ilp_units"], a["bops_ilp_units"]
    costs = {
        "size": np.stack([0.5 * params, params], axis=1),
        "bops": np.stack([bops / 8 / 8, bops / 4 / 4], axis=1),
        "latency_ms": np.stack([a["latency_int4_ms_T4"], a["latency_int8_ms_T4"]], axis=1),
    }
    size_unit = _size_unit(params)
    cost_units = {"latency_ms": "ms"} | ({"size": size_unit} if size_unit else {})
    meta: dict[str, Any] = {
        "peer": "HAWQ-V3 (github.com/Zhen-Dong/HAWQ ILP.ipynb)",
        "objective": "sum_i y_i * T_i * (d8_i - d4_i), y_i = 1 for INT8 (the source's objective, unshifted)",
        "cost_notes": {
            "size": f"INT8 weight bytes / {'2**20' if size_unit == 'MiB' else '1e6' if size_unit == 'MB' else '?'} (notebook units); INT4 = half",
            "bops": "BitOps / 1.024e9 (the notebook's unit: MACs in millions / 64 at INT4, / 16 at INT8)",
            "latency_ms": "measured T4 latency per layer at INT4 / INT8",
        },
        "excluded_layers": "the first conv and the final FC are fixed to INT8 outside the ILP and not counted",
    }
    budgets = None
    if budget_kind is not None:
        cost = _cost_name(budget_kind)
        if not (isinstance(r, (int, float)) and 0.0 <= float(r) <= 1.0):
            raise ProblemError(f"HAWQ-V3 budget fraction r must lie in [0, 1], got {r!r}")
        s4, s8 = float(costs[cost][:, 0].sum()), float(costs[cost][:, 1].sum())
        budgets = {cost: s4 + float(r) * (s8 - s4)}  # the source's limit, computed as it does
        meta["budget"] = {"kind": cost, "r": float(r), "all_int4_total": s4, "all_int8_total": s8}
    ties = [(inputs.layers[i], inputs.layers[j]) for i, j in inputs.ties]
    return Problem(inputs.layers, HAWQ_OPTIONS, sensitivity, costs, budgets, ties=ties, cost_units=cost_units, meta=meta)


def hawq_v3_released(source: str | Path | Mapping[str, Any], *, model: str | None = None) -> dict[tuple[str, float], dict[str, str]]:
    """The configurations HAWQ-V3 released in ``bit_config.py``: ``{(budget_kind, r): {layer: label}}``.

    ``budget_kind`` is the cost name of :func:`hawq_v3_problem` (``"size"``, ``"bops"``,
    ``"latency_ms"``), so ``hawq_v3_problem(source, kind, r)`` is the problem each one answers.
    """
    inputs = _read(source, model)
    out: dict[tuple[str, float], dict[str, str]] = {}
    for key, bits in inputs.released.items():
        kind, _, frac = key.rpartition("_")
        try:
            r = float(frac)
            cost = _cost_name(kind)
        except (ValueError, ProblemError):
            raise FormatError(f"cannot read released configuration key '{key}' (expected e.g. 'bops_0.5')", "$.released", None) from None
        labels = {4: "W4A4", 8: "W8A8"}
        bad = [b for b in bits if b not in labels]
        if bad:
            raise FormatError(f"released configuration '{key}' has bit-widths {sorted(set(bad))}; HAWQ-V3 uses 4 and 8", "$.released", None)
        out[(cost, r)] = {name: labels[b] for name, b in zip(inputs.layers, bits)}
    return out


def _cost_name(kind: str) -> str:
    if kind not in BUDGET_KINDS:
        raise ProblemError(f"unknown HAWQ-V3 budget kind {kind!r}; use one of 'size', 'bops', 'latency'")
    return BUDGET_KINDS[kind]


def _size_unit(params_ilp: np.ndarray) -> str | None:
    """MiB if the sizes are whole parameter counts / 2**20, MB if / 1e6 (None if neither)."""
    if is_integral(params_ilp * 2.0**20):
        return "MiB"
    if is_integral(params_ilp * 1e6):
        return "MB"
    return None


def _read(source: str | Path | Mapping[str, Any], model: str | None) -> _HawqInputs:
    data, name = read_source(source)
    where = "$"
    if "models" in data:  # the whole fixture: pick one network
        models = get_key(data, "models", where, name)
        if model is None or model not in models:
            raise FormatError(f"this file holds several networks {sorted(models)}: pass model=<one of them>", "$.models", name)
        data, where = models[model], f"$.models.{model}"
    elif model is not None:
        raise FormatError(f"model={model!r} given but the file holds a single network", where, name)
    if "arrays" in data:
        return _read_full(data, name)
    return _read_fixture(data, where, name)


def _read_fixture(data: Mapping[str, Any], where: str, name: str) -> _HawqInputs:
    layers = name_list(get_key(data, "layer_names_in_bit_config", where, name), f"{where}.layer_names_in_bit_config", name)
    arrays = {k: number_list(get_key(data, k, where, name), f"{where}.{k}", name, len(layers)) for k in _FULL_ARRAYS.values()}
    ties = _ties(data.get("tied_pairs_same_bits", []), f"{where}.tied_pairs_same_bits", name, len(layers))
    released = data.get("released_bit_configs_weight_bits", {})
    return _HawqInputs(layers, arrays, ties, _released(released, f"{where}.released_bit_configs_weight_bits", name, len(layers)))


def _read_full(data: Mapping[str, Any], name: str) -> _HawqInputs:
    entries = get_key(data, "layers", "$", name)
    if not isinstance(entries, list) or not entries:
        raise FormatError("expected a non-empty list of layers", "$.layers", name)
    layers = name_list([e.get("bit_config_key") if isinstance(e, Mapping) else None for e in entries], "$.layers[*].bit_config_key", name)
    raw = get_key(data, "arrays", "$", name)
    notes = data.get("array_notes", {})
    arrays = {}
    for key, short in _FULL_ARRAYS.items():
        values = number_list(get_key(raw, key, "$.arrays", name), f"$.arrays.{key}", name, len(layers))
        note = notes.get(key, {}) if isinstance(notes, Mapping) else {}
        transform = note.get("transform_applied_in_source_after_literal") if isinstance(note, Mapping) else None
        arrays[short] = _apply_transform(values, transform, f"$.array_notes.{key}", name)
    formulation = data.get("formulation_in_source", {})
    ties = _ties(formulation.get("tied_layers_equal_bits", []), "$.formulation_in_source.tied_layers_equal_bits", name, len(layers))
    released = {}
    for key, sol in (data.get("reference_solutions") or {}).items():
        released[key] = get_key(sol, "weight_bits_from_bit_config_py", f"$.reference_solutions.{key}", name)
    return _HawqInputs(layers, arrays, ties, _released(released, "$.reference_solutions", name, len(layers)))


def _apply_transform(values: np.ndarray, transform: Any, where: str, name: str) -> np.ndarray:
    """Apply the notebook's post-literal scaling, e.g. ``"/ 1024 / 1024"``, step by step as it does."""
    if transform is None or (isinstance(transform, str) and not transform.strip()):
        return values
    if not isinstance(transform, str):
        raise FormatError(f"cannot read transform {transform!r}", where, name)
    steps = _TRANSFORM_RE.findall(transform)
    if not steps or "".join(op + num for op, num in steps) != re.sub(r"\s+", "", transform):
        raise FormatError(f"cannot read transform {transform!r}: expected steps like '/ 1024 / 1024'", where, name)
    for op, num in steps:
        values = values / float(num) if op == "/" else values * float(num)
    return values


def _ties(value: Any, where: str, name: str, num_layers: int) -> list[tuple[int, int]]:
    if not isinstance(value, list):
        raise FormatError("expected a list of [i, j] layer index pairs", where, name)
    out = []
    for k, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(i, int) and 0 <= i < num_layers for i in pair)):
            raise FormatError(f"entry {k} must be two layer indices in 0..{num_layers - 1}, got {pair!r}", where, name)
        out.append((pair[0], pair[1]))
    return out


def _released(value: Any, where: str, name: str, num_layers: int) -> dict[str, list[int]]:
    if not isinstance(value, Mapping):
        raise FormatError("expected an object of released configurations", where, name)
    out = {}
    for key, bits in value.items():
        if not (isinstance(bits, list) and len(bits) == num_layers and all(isinstance(b, int) for b in bits)):
            raise FormatError(f"expected {num_layers} integer bit-widths", f"{where}.{key}", name)
        out[key] = bits
    return out
