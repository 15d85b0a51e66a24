"""Build an mpqopt :class:`~mpqopt.Problem` from an ONNX model and a sensitivity table.

>>> import numpy as np, onnx
>>> from onnx import helper, TensorProto, numpy_helper
>>> w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
>>> g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "g",
...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
>>> m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
>>> p = problem_from_model(m, [4, 8], [[0.2, 0.0]], budgets={"size_bits": "50%"})
>>> p.layers, p.costs["size_bits"].tolist()
(('fc',), [[48.0, 96.0]])
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Mapping, Sequence

from ...options import OptionLike
from ...problem import Problem
from ..build import assemble_problem, check_sensitivity
from ..deprecation import warn_deprecated
from ..sensitivity import Sensitivity
from ..tables import LATENCY_COST, check_latency
from ..ties import TieSpec
from .costs import layer_costs
from .graph import find_ties
from .layers import discover_layers
from .model import load_model


def problem_from_model(
    model: Any,
    options: Sequence[OptionLike] | None,
    sensitivity: Sensitivity | Any,
    *,
    input_shapes: Mapping[str, Any] | None = None,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    costs: Iterable[str] = ("size_bits", "bitops"),
    budgets: Mapping[str, Any] | None = None,
    ties: TieSpec = "auto",
    tie_extra: Iterable[Sequence[str]] | None = None,
    tie_exclude: str | Iterable[str] | None = None,
    keep_first_last: OptionLike | None = None,
    latency: Any = None,
    default_act_bits: int | None = 8,
) -> Problem:
    """The allocation problem for an ONNX model's quantizable layers (a path, a ``ModelProto`` or an
    :class:`~mpqopt.adapters.onnx.OnnxModel`).

    The PyTorch adapter's :func:`~mpqopt.adapters.torch.problem_from_model` without its
    ``example_input`` (shapes come from the graph, ``input_shapes`` instead of ``batch_size``), with
    the same argument order, keywords and conventions otherwise: a :class:`Sensitivity`'s layers
    must be the selected layers (the problem follows its order; ``options=None`` uses its
    options), a plain table is ``[layers x options]`` in graph order; costs from shape inference
    (``input_shapes`` gives concrete sizes for dynamic dimensions); ``ties="auto"`` ties layers
    reading the same tensor when the options carry activation bits; ``keep_first_last`` fixes the
    first and last layers in graph order; ``latency`` is a measured ``[layers x options]`` table in seconds.
    """
    m = load_model(model, input_shapes)
    selected = discover_layers(m, include, exclude)
    names = [layer.name for layer in selected]
    opts, _ = check_sensitivity(sensitivity, options, names)
    if isinstance(sensitivity, Sensitivity):
        names = list(sensitivity.layers)
    everything = layer_costs(m, discover_layers(m))  # "first" and "last" are the model's, not the selection's
    by_name = {c.name: c for c in everything}
    extra = {LATENCY_COST: check_latency(latency, names, opts)} if latency is not None else {}
    note = ""
    if isinstance(ties, str) and ties == "auto" and not any(o.a is not None for o in opts):
        ties, note = None, "weight-only options: layers share no input quantizer"
    found = find_ties(m, [layer for layer in selected if layer.name in set(names)], ties, extra=tie_extra, exclude=tie_exclude)
    if note and not found.reason:
        found = replace(found, reason=note)
    return assemble_problem(
        [by_name[n] for n in names], opts, sensitivity, source="onnx", all_layers=everything, costs=costs, extra_tables=extra,
        budgets=budgets, ties=found, keep_first_last=keep_first_last, default_act_bits=default_act_bits,
    )


def problem_from_onnx(model: Any, sensitivity: Sensitivity | Any, options: Sequence[OptionLike] | None = None, **kwargs: Any) -> Problem:
    """Deprecated: :func:`problem_from_model` with its old argument order ``(model, sensitivity,
    options=None)``; warns, and will be removed in the next release."""
    warn_deprecated("problem_from_onnx(model, sensitivity, options)", "mpqopt.adapters.onnx.problem_from_model(model, options, sensitivity)")
    return problem_from_model(model, options, sensitivity, **kwargs)
