"""``[layers x options]`` cost tables from per-layer facts (framework-free: any adapter's layer costs).

:class:`LayerCost` is the record both adapters measure (the torch adapter from a forward pass, the
ONNX adapter from shape inference). A layer-cost record needs ``weight_params`` (weights only: biases stay in high precision whatever the
option) and ``macs`` (per sample). The tables reuse the core's models
(:func:`mpqopt.costs.size_bits`, :func:`~mpqopt.costs.size_bytes`, :func:`~mpqopt.costs.bitops`).

>>> from types import SimpleNamespace
>>> fc = SimpleNamespace(weight_params=6, macs=6.0)
>>> cost_tables([fc], ["W4A8", "W8A8"], ["size_bits", "bitops"])["bitops"].tolist()
[[192.0, 384.0]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from .. import costs as core_costs
from ..errors import ProblemError
from ..options import Option, OptionLike

# cost names made from layer facts (latency needs a benchmark or a table)
COST_NAMES = ("size_bits", "size_bytes", "bitops")
LATENCY_COST = "latency_s"


@dataclass(frozen=True)
class LayerCost:
    """Cost facts of one quantizable layer.

    ``params`` counts weight and bias, ``weight_params`` the weight alone; ``macs`` is per sample,
    summed over the layer's ``calls`` (module calls in torch, nodes reading the weight in ONNX);
    ``order`` is its position among the measured layers in execution order (torch: first call;
    ONNX: first node in graph order); ``input_shape`` / ``output_shape`` are those of its first
    call, with the batch.
    """

    name: str
    kind: str
    weight_shape: tuple[int, ...]
    groups: int
    params: int
    weight_params: int
    macs: float
    calls: int
    order: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


def cost_tables(layer_costs: Sequence[Any], options: Sequence[OptionLike], costs: Iterable[str] = ("size_bits", "bitops"), *, default_act_bits: int | None = 8,
                row_lengths: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """``[layers x options]`` tables by name.

    ``size_bits`` / ``size_bytes``: weight storage (``weight_params`` times the option's effective
    bits; with ``row_lengths`` per-row scales of per-channel formats too). ``bitops``: ``MACs * w * a``
    per sample; options without an activation width use ``default_act_bits``.
    """
    if isinstance(costs, str):
        costs = (costs,)
    opts = [Option.parse(o) for o in options]
    weight_params = [c.weight_params for c in layer_costs]
    out: dict[str, np.ndarray] = {}
    for name in costs:
        if name == "size_bits":
            out[name] = core_costs.size_bits(weight_params, opts, row_lengths)
        elif name == "size_bytes":
            out[name] = core_costs.size_bytes(weight_params, opts, row_lengths)
        elif name == "bitops":
            out[name] = core_costs.bitops([c.macs for c in layer_costs], opts, default_act_bits)
        elif name == LATENCY_COST:
            raise ProblemError(f"cost '{LATENCY_COST}' is measured: give latency= (a benchmark callable or a [layers x options] table in seconds)")
        else:
            raise ProblemError(f"unknown cost {name!r}; costs made from layer facts are {list(COST_NAMES)} (and '{LATENCY_COST}' from latency=)")
    return out


def check_latency(table: Any, layers: Sequence[str], options: Sequence[OptionLike]) -> np.ndarray:
    """Validate a user-given ``[layers x options]`` latency table (seconds), naming the bad cell.

    >>> check_latency([[1e-3, 2e-3]], ["fc"], [4, 8]).shape
    (1, 2)
    """
    try:
        arr = np.array(table, dtype=np.float64)
    except (TypeError, ValueError):
        raise ProblemError("latency must be a benchmark callable or a numeric [layers x options] table in seconds") from None
    shape = (len(layers), len(options))
    if arr.shape != shape:
        raise ProblemError(f"latency table has shape {arr.shape}, expected {shape} (layers x options)")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        i, k = map(int, np.argwhere(bad)[0])
        raise ProblemError(f"latency of layer {layers[i]!r} option {Option.parse(options[k]).label} is {arr[i, k]}: must be finite and non-negative seconds")
    return arr
