"""LIMPQ (Tang et al., ECCV 2022): the bit-width search of ``quantization_search/search.py`` as a Problem.

The source (github.com/1hunters/LIMPQ) gives every layer between the stem conv and the FC one
(weight bit, activation bit) pair from a candidate list (``--b 6 5 4 3 2``: 25 pairs per layer) to

    minimise  sum_l act[l][a] + alpha * weight[l][w]                 (learned importance indicators)
    s.t.      sum_l MACs_l * w * a  <=  sum_l MACs_l * wb * ab                     (BitOps, --wb --ab)
              8 * (n_stem + n_fc) + sum_l params_l * w  <=  32 * (sum params + n_stem + n_fc) / cr

The stem conv and the FC keep 8-bit weights; they enter only the size budget, so here the budget
on ``size_bits`` (the searched layers' weight bits) is the source's limit minus their fixed
``8 * (n_stem + n_fc)`` bits (recorded in ``meta["fixed_8bit_layers"]``).

**Wired points.** Before solving, the source replaces a non-monotone indicator (a lower bit that
looks *less* important than the next higher one: ``v[b-1] < v[b]`` for ``b`` in ``bits[:-1]``,
found on the original values, weights and activations separately) by 1e8. Here those options are
disallowed in ``Problem.allowed`` instead. The optimum is the same whenever some assignment that
avoids them meets the budgets: every such assignment costs less than 52 * max(indicator) << 1e8,
so an optimum never takes a 1e8 entry. (Only if none exists would the source return a policy
scoring 1e8 where mpqopt reports the budgets infeasible.) The highest candidate bit is never wired.

**MACs.** The source counts MACs with a forward hook that computes the output area with true
division, so its six stride-2 convs count e.g. 812 output positions instead of 784
(``macs="hook"``, which reproduces the published policy); ``macs="exact"`` uses the true counts.

>>> import mpqopt
>>> from mpqopt.importers import limpq_problem
>>> data = {"layer_name": ["l1", "l2"],
...         "weight": {"l1": {"4": 0.1, "3": 0.2, "2": 0.4}, "l2": {"4": 0.1, "3": 0.3, "2": 0.2}},
...         "act": {"l1": {"4": 0.1, "3": 0.2, "2": 0.3}, "l2": {"4": 0.2, "3": 0.3, "2": 0.5}},
...         "search_args": {"bits": [4, 3, 2], "alpha": 2.0, "wb": 3, "ab": 3, "cr": 8.0},
...         "layer_macs_hook": [100, 100], "layer_macs_exact": [100, 100],
...         "layer_params": [1000, 1000], "n_first_conv": 10, "n_fc": 10}
>>> p = limpq_problem(data)
>>> p.allowed.sum(axis=1).tolist()   # l2: weight bit 2 looks better than 3, so W2 is wired
[9, 6]
>>> mpqopt.solve(p).assignment
{'l1': 'W3A2', 'l2': 'W4A3'}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..costs import bitops, size_bits
from ..errors import FormatError, ProblemError
from ..options import Option
from ..problem import Problem
from . import get_key, name_list, number_list, read_source

# the search arguments of LIMPQ's README example (ResNet-50, W3A4, compression ratio 12.2), also the
# argparse defaults of search.py; used when a file does not carry its own "search_args"
LIMPQ_README_ARGS: dict[str, Any] = {"bits": [6, 5, 4, 3, 2], "alpha": 2.0, "wb": 3, "ab": 4, "cr": 12.2}
SOURCE_WIRED_VALUE = 1e8  # what search.py writes over a wired point (kept in meta for reference)


def limpq_problem(
    source: str | Path | Mapping[str, Any],
    macs: str = "hook",
    alpha: float | None = None,
    wb: float | None = None,
    ab: float | None = None,
    cr: float | None = None,
) -> Problem:
    """The LIMPQ search for one network as a :class:`~mpqopt.Problem` (options ``W6A6`` ... ``W2A2``).

    ``source`` is ``limpq_resnet50.json`` or ``limpq_resnet50_indicators_fixture.json`` (or such a
    dict). ``macs`` is ``"hook"`` (the source's count, which reproduces the published policy) or
    ``"exact"``. ``alpha``, ``wb``, ``ab`` and ``cr`` default to the file's search arguments (or the
    README example: alpha 2, W3A4 BitOps, compression ratio 12.2); ``cr <= 0`` drops the size budget
    as the source does. Budgets: ``bitops`` and ``size_bits``.

    >>> p = limpq_problem("../shared/peers/limpq_resnet50.json")   # doctest: +SKIP
    >>> mpqopt.solve(p).objective                                   # doctest: +SKIP
    4.617439227178686
    """
    data, name = read_source(source)
    layers = name_list(get_key(data, "layer_name", "$", name), "$.layer_name", name)
    args = {**LIMPQ_README_ARGS, **_search_args(data, name)}
    for key, value in (("alpha", alpha), ("wb", wb), ("ab", ab), ("cr", cr)):
        if value is not None:
            args[key] = value
    bits = _bits(args["bits"], name)
    for key in ("alpha", "wb", "ab", "cr"):
        if isinstance(args[key], bool) or not isinstance(args[key], (int, float)) or not np.isfinite(args[key]):
            raise ProblemError(f"LIMPQ search argument '{key}' must be a number, got {args[key]!r}")
    if args["wb"] <= 0 or args["ab"] <= 0:
        raise ProblemError(f"LIMPQ average bit-widths wb and ab must be positive, got wb={args['wb']!r}, ab={args['ab']!r}")

    weight = _indicator_table(get_key(data, "weight", "$", name), layers, bits, "$.weight", name)
    act = _indicator_table(get_key(data, "act", "$", name), layers, bits, "$.act", name)
    costs_in = _layer_costs(data, name, len(layers), macs)

    options = [Option(w, a) for w in bits for a in bits]  # the source's variable order: l{i}_w{j}_a{k}
    w_idx = np.repeat(np.arange(len(bits)), len(bits))
    a_idx = np.tile(np.arange(len(bits)), len(bits))
    sensitivity = act[:, a_idx] + args["alpha"] * weight[:, w_idx]  # the source's coefficient, same order
    wired_w, wired_a = wired_points(weight, bits), wired_points(act, bits)
    allowed = ~(wired_w[:, w_idx] | wired_a[:, a_idx])

    costs = {"bitops": bitops(costs_in["macs"], options), "size_bits": size_bits(costs_in["params"], options)}
    fixed_bits = 8.0 * (costs_in["n_first_conv"] + costs_in["n_fc"])
    fp32_bits = 32.0 * (float(costs_in["params"].sum()) + costs_in["n_first_conv"] + costs_in["n_fc"])
    budgets: dict[str, float] = {"bitops": float((costs_in["macs"] * args["wb"] * args["ab"]).sum())}
    if args["cr"] > 0:  # search.py: "compress ratio constraint (enable: >0)"
        budgets["size_bits"] = fp32_bits / args["cr"] - fixed_bits
    meta = {
        "peer": "LIMPQ (github.com/1hunters/LIMPQ quantization_search/search.py)",
        "search_args": {**args, "bits": bits, "macs": macs},
        "fixed_8bit_layers": {"n_first_conv": costs_in["n_first_conv"], "n_fc": costs_in["n_fc"], "size_bits": fixed_bits},
        "fp32_size_bits": fp32_bits,
        "size_bits_limit_with_fixed_layers": fp32_bits / args["cr"] if args["cr"] > 0 else None,
        "wired_points": {
            "weight": [[layers[l], bits[b]] for l, b in zip(*np.nonzero(wired_w))],
            "act": [[layers[l], bits[b]] for l, b in zip(*np.nonzero(wired_a))],
            "handling": f"options using a wired bit are disallowed (the source sets them to {SOURCE_WIRED_VALUE:g})",
        },
    }
    return Problem(layers, options, sensitivity, costs, budgets, allowed=allowed, meta=meta)


def wired_points(table: np.ndarray, bits: Sequence[int]) -> np.ndarray:
    """``[L, B]`` mask of the indicators LIMPQ treats as outliers ("wired points").

    A candidate bit is wired when its indicator is *smaller* than that of the next higher candidate
    (a lower bit cannot be less harmful); the highest bit never is. Comparisons use the original
    values, as the source does before overwriting anything. (The source compares ``v[b-1]`` with
    ``v[b]`` for ``b`` in ``bits[:-1]``, the same thing for its consecutive descending candidates.)

    >>> wired_points(np.array([[0.1, 0.3, 0.2]]), [4, 3, 2]).tolist()
    [[False, False, True]]
    """
    table = np.asarray(table, dtype=np.float64)
    order = np.argsort(-np.asarray(bits), kind="stable")  # columns from the highest bit down
    ranked = table[:, order]
    wired_ranked = np.zeros(ranked.shape, dtype=bool)
    wired_ranked[:, 1:] = ranked[:, 1:] < ranked[:, :-1]
    wired = np.empty_like(wired_ranked)
    wired[:, order] = wired_ranked
    return wired


def limpq_published_policy(source: str | Path | Mapping[str, Any]) -> dict[str, str]:
    """The policy LIMPQ published for this file's setting, as ``{layer: "W3A4", ...}``."""
    data, name = read_source(source)
    layers = name_list(get_key(data, "layer_name", "$", name), "$.layer_name", name)
    if "reference_policy" in data:
        ref, where = get_key(data, "reference_policy", "$", name), "$.reference_policy"
        w_key, a_key = "weight_bits", "act_bits"
    else:
        ref, where, w_key, a_key = data, "$", "expected_weight_bits", "expected_act_bits"
    w = number_list(get_key(ref, w_key, where, name), f"{where}.{w_key}", name, len(layers))
    a = number_list(get_key(ref, a_key, where, name), f"{where}.{a_key}", name, len(layers))
    return {layer: Option(int(wi), int(ai)).label for layer, wi, ai in zip(layers, w, a)}


def _search_args(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    args = data.get("search_args")
    if args is None:
        return {}
    if not isinstance(args, Mapping):
        raise FormatError("expected an object", "$.search_args", name)
    return {k: args[k] for k in ("bits", "alpha", "wb", "ab", "cr") if k in args}


def _bits(value: Any, name: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in value):
        raise FormatError(f"expected a list of positive integer bit-widths, got {value!r}", "$.search_args.bits", name)
    if len(set(value)) != len(value):
        raise FormatError(f"duplicate bit-widths in {value!r}", "$.search_args.bits", name)
    return list(value)


def _indicator_table(value: Any, layers: list[str], bits: list[int], where: str, name: str) -> np.ndarray:
    """``[L, B]`` indicators from ``{layer: {"6": v, ...}}`` (the pickle's string keys)."""
    if not isinstance(value, Mapping):
        raise FormatError("expected an object {layer: {bit: indicator}}", where, name)
    out = np.empty((len(layers), len(bits)))
    for l, layer in enumerate(layers):
        row = get_key(value, layer, where, name)
        for b, bit in enumerate(bits):
            key = str(bit)
            entry = get_key(row, key, f"{where}.{layer}", name)
            if isinstance(entry, bool) or not isinstance(entry, (int, float)) or not np.isfinite(entry):
                raise FormatError(f"indicator must be a finite number, got {entry!r}", f"{where}.{layer}.{key}", name)
            out[l, b] = entry
    return out


def _layer_costs(data: Mapping[str, Any], name: str, num_layers: int, macs: str) -> dict[str, Any]:
    """MACs, parameters and the fixed stem / FC sizes from either peer file layout."""
    if macs not in ("hook", "exact"):
        raise ProblemError(f"macs must be 'hook' (the source's count) or 'exact', got {macs!r}")
    if "derived_costs_NOT_in_source" in data:  # limpq_resnet50.json
        src, where = data["derived_costs_NOT_in_source"], "$.derived_costs_NOT_in_source"
        keys = {"hook": "macs_limpq_hook", "exact": "macs_true", "params": "params", "stem": "first_conv_params", "fc": "fc_params"}
    else:  # the indicators fixture
        src, where = data, "$"
        keys = {"hook": "layer_macs_hook", "exact": "layer_macs_exact", "params": "layer_params", "stem": "n_first_conv", "fc": "n_fc"}
    out: dict[str, Any] = {
        "macs": number_list(get_key(src, keys[macs], where, name), f"{where}.{keys[macs]}", name, num_layers),
        "params": number_list(get_key(src, keys["params"], where, name), f"{where}.{keys['params']}", name, num_layers),
    }
    for key in ("stem", "fc"):
        value = get_key(src, keys[key], where, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise FormatError(f"expected a non-negative parameter count, got {value!r}", f"{where}.{keys[key]}", name)
        out["n_first_conv" if key == "stem" else "n_fc"] = float(value)
    for key in ("macs", "params"):
        if (out[key] < 0).any():
            raise FormatError(f"{key} must be non-negative", where, name)
    return out
