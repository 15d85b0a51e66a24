"""Per-layer cost facts of an ONNX model from shape inference (no run needed).

A layer's multiply-accumulates are ``output elements x K`` per node reading its weight, with ``K``
the reduction length of one output element:

- Conv: ``K = in_channels / groups * prod(kernel) = prod(weight.shape[1:])`` (grouped and depthwise
  convolutions included), the output shape carrying stride, padding and dilation;
- Gemm: ``K`` = the weight's input-feature dimension (``transB`` respected);
- MatMul: ``K = weight.shape[-2]`` for a weight on the right (``[.., K, N]``; batched weights and
  batched activations ``[.., M, K]`` included), ``weight.shape[-1]`` for one on the left.

MACs are *per sample*: divided by ``batch_size``, by default the leading dimension of the first
graph input. Dynamic input dimensions must be given concrete sizes (``input_shapes=``) first; an
unknown output shape is an error naming the node and the dynamic inputs. Tables reuse
:func:`mpqopt.adapters.tables.cost_tables` (the torch adapter's semantics).

>>> import numpy as np
>>> from onnx import TensorProto, helper, numpy_helper
>>> w = numpy_helper.from_array(np.ones((8, 1, 3, 3), np.float32), "dw")   # depthwise 3x3, 8 channels
>>> g = helper.make_graph([helper.make_node("Conv", ["x", "dw"], ["y"], name="dw", group=8, pads=[1, 1, 1, 1])], "g",
...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8, 5, 5])],
...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
>>> [(c.name, c.macs, c.output_shape) for c in layer_costs(helper.make_model(g), input_shapes={"x": [2, 8, 5, 5]})]
[('dw', 1800.0, (2, 8, 5, 5))]
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Iterable, Sequence

from ...errors import ProblemError
from ..tables import COST_NAMES, LATENCY_COST, LayerCost, check_latency, cost_tables
from .layers import OnnxLayer, discover_layers, node_keys
from .model import InputShapes, ModelLike, OnnxModel, load_model

__all__ = ["LayerCost", "OnnxLayerCost", "layer_costs", "node_macs", "cost_tables", "check_latency", "COST_NAMES", "LATENCY_COST"]


# the adapters share one record (framework-free, in mpqopt.adapters.tables); the ONNX name stays
OnnxLayerCost = LayerCost


def _reduction(layer: OnnxLayer) -> int:
    """Multiply-accumulates per output element (K)."""
    shape = layer.weight_shape
    if layer.op_type == "Conv":
        return math.prod(shape[1:])
    if layer.op_type == "Gemm":
        return shape[1 - layer.out_axis] if layer.out_axis is not None else shape[0]
    if len(shape) == 1:
        return shape[0]
    return shape[-2] if layer.weight_input == 1 else shape[-1]


def node_macs(model: OnnxModel, layer: OnnxLayer, node_output: str) -> float:
    """MACs of one node of ``layer`` (whole batch) from its output's inferred shape."""
    out = model.static_shape(node_output, f"the MAC count of layer {layer.name!r}")
    return float(math.prod(out)) * _reduction(layer)


def _batch_size(model: OnnxModel) -> int:
    """The leading dimension of the first graph input with one (1 when no input has a dimension)."""
    for name in model.inputs:
        shape = model.input_shapes.get(name)
        if shape == ():
            continue  # a scalar input has no batch dimension
        if not shape or shape[0] is None:
            model.static_shape(name, "the per-sample MAC count (the batch size)")  # raises, naming the dynamic dims
        return int(shape[0])  # type: ignore[index,arg-type]
    return 1


def layer_costs(
    model: ModelLike,
    layers: Sequence[OnnxLayer] | None = None,
    *,
    input_shapes: InputShapes | None = None,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    batch_size: int | None = None,
) -> list[LayerCost]:
    """Parameters and per-sample MACs of each quantizable layer, from shape inference, as
    :class:`~mpqopt.adapters.tables.LayerCost` records (the torch adapter's): ``order`` is the
    position of the layer's first node in graph order, shapes are its first node's.

    ``layers`` (from :func:`~mpqopt.adapters.onnx.layers.discover_layers`) wins over ``include`` /
    ``exclude``; the result follows their order.
    """
    m = load_model(model, input_shapes)
    if layers is None:
        layers = discover_layers(m, include, exclude)
    if batch_size is None:
        batch_size = _batch_size(m)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ProblemError(f"batch_size must be a positive integer, got {batch_size!r}")
    nodes = dict(zip(node_keys(m.graph), m.graph.node))
    order = {key: i for i, key in enumerate(nodes)}
    out = []
    for layer in layers:
        missing = [k for k in layer.nodes if k not in nodes]
        if missing:
            raise ProblemError(f"{m.source}: layer {layer.name!r} reads nodes {missing} that the model does not have (layers from another model?)")
        macs = sum(node_macs(m, layer, nodes[k].output[0]) for k in layer.nodes)
        in_shape = m.shape(layer.input_name) or ()
        out_shape = m.shape(layer.output_name) or ()
        out.append(LayerCost(layer.name, layer.kind, layer.weight_shape, layer.groups, layer.params, layer.weight_params,
                             macs / batch_size, len(layer.nodes), order[layer.nodes[0]], tuple(in_shape), tuple(out_shape)))  # type: ignore[arg-type]
    ranks = {c.name: r for r, c in enumerate(sorted(out, key=lambda c: c.order))}
    return [replace(c, order=ranks[c.name]) for c in out]
