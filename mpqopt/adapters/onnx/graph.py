"""An ONNX model as a ``networkx`` graph, and tie groups of layers that read the same tensor.

The graph is bipartite: ``("tensor", name)`` nodes (attributes ``kind``: ``input``, ``initializer``,
``constant`` or ``activation``, and ``shape``) and ``("node", key)`` nodes (``op``, ``name``, and
``layer`` for nodes of a quantizable layer); edges run tensor -> node (``index``: input position) and
node -> tensor. A layer's activation quantizer sits on its input, so layers reading the same tensor
(attention q/k/v, an MLP's gate and up projections, a residual block's first conv and its
downsample conv) are tied. A layer's input is found by walking back through ops that only move or
pass values (Identity, Reshape, Flatten, Transpose, (Un)Squeeze, Expand, Dropout, Cast, and
QuantizeLinear/DequantizeLinear of an already quantized graph); ops that change values (Relu, Add,
BatchNormalization...) make a new tensor, hence a new quantizer.

>>> import numpy as np
>>> from onnx import TensorProto, helper, numpy_helper
>>> ws = [numpy_helper.from_array(np.ones((4, 4), np.float32), n) for n in ("wq", "wk", "wv")]
>>> nodes = [helper.make_node("MatMul", ["h", w.name], [w.name[1]], name=w.name[1]) for w in ws]
>>> g = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info("h", TensorProto.FLOAT, [2, 4])],
...     [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "qkv"], ws)
>>> find_ties(helper.make_model(g)).groups
(('q', 'k', 'v'),)
"""

from __future__ import annotations

from typing import Iterable, Sequence, Union

import networkx as nx

from ...errors import ProblemError
from ..ties import ModelGraph, Ties, TieSpec, resolve_ties
from .layers import OnnxLayer, discover_layers, node_keys, resolve_layers
from .model import ModelLike, OnnxModel, load_model

__all__ = ["ACT_PASS_OPS", "model_graph", "find_ties", "ModelGraph", "Ties"]

# ops whose output holds the values of their first input (so the same quantizer applies)
ACT_PASS_OPS = frozenset({"Identity", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Expand", "Dropout", "Cast", "QuantizeLinear", "DequantizeLinear"})

LayersLike = Union[Sequence[OnnxLayer], Sequence[str], None]


def _layers(m: OnnxModel, layers: LayersLike) -> list[OnnxLayer]:
    """Layer objects as given, or resolved from names (default: every quantizable layer)."""
    if layers is not None and all(isinstance(l, OnnxLayer) for l in layers):
        return list(layers)  # type: ignore[arg-type]
    found = discover_layers(m)
    return found if layers is None else list(resolve_layers(found, layers).values())  # type: ignore[arg-type]


def model_graph(model: ModelLike, layers: LayersLike = None) -> ModelGraph:
    """The model's dataflow graph and, per layer, the tensor(s) its activation input comes from.

    ``layers``: :class:`~mpqopt.adapters.onnx.layers.OnnxLayer` objects or layer names (default:
    every quantizable layer).
    """
    m = load_model(model)
    chosen = _layers(m, layers)
    keys = node_keys(m.graph)
    layer_of = {k: l.name for l in chosen for k in l.nodes}
    g = nx.DiGraph()
    for name in m.inputs:
        g.add_node(("tensor", name), kind="input", shape=m.shape(name))
    for name in m.initializers:
        g.add_node(("tensor", name), kind="initializer", shape=m.shape(name))
    for key, node in zip(keys, m.graph.node):
        attrs = {"op": node.op_type, "name": node.name}
        if key in layer_of:
            attrs["layer"] = layer_of[key]
        g.add_node(("node", key), **attrs)
        for i, t in enumerate(node.input):
            if t:
                if ("tensor", t) not in g:
                    g.add_node(("tensor", t), kind="activation", shape=m.shape(t))
                g.add_edge(("tensor", t), ("node", key), index=i)
        for t in node.output:
            if t:
                kind = "constant" if node.op_type in ("Constant", "ConstantOfShape") else "activation"
                g.add_node(("tensor", t), kind=kind, shape=m.shape(t))
                g.add_edge(("node", key), ("tensor", t))
    nodes = dict(zip(keys, m.graph.node))
    inputs: dict[str, tuple[str, ...]] = {}
    for layer in chosen:
        sources = []
        for key in layer.nodes:
            if key not in nodes:
                raise ProblemError(f"{m.source}: layer {layer.name!r} reads node {key!r}, which the model does not have (layers from another model?)")
            node = nodes[key]
            tensor = node.input[0] if node.op_type == "Conv" else node.input[1 - layer.weight_input]
            sources.append(_source(m, tensor))
        inputs[layer.name] = tuple(dict.fromkeys(sources))
    return ModelGraph(g, inputs, "onnx")


def _source(m: OnnxModel, tensor: str) -> str:
    """Walk back from a layer's input through value-preserving ops to the tensor's producer."""
    seen = set()
    while tensor not in seen:
        seen.add(tensor)
        node = m.producers.get(tensor)
        if node is None or node.op_type not in ACT_PASS_OPS or node.domain not in ("", "ai.onnx") or not node.input:
            return tensor
        tensor = node.input[0]
    return tensor


def find_ties(
    model: ModelLike,
    layers: LayersLike = None,
    ties: TieSpec = "auto",
    *,
    extra: Iterable[Sequence[str]] | None = None,
    exclude: str | Iterable[str] | None = None,
) -> Ties:
    """Tie groups among ``layers`` (default: every quantizable layer) of an ONNX model.

    ``ties``: ``"auto"`` (layers reading the same tensor), ``None`` (no ties), a list of layer-name
    lists (used as given), or a callable ``(ModelGraph) -> groups`` for your own rule, e.g. tie
    every layer whose input comes from the same node type. ``extra`` groups are added; ``exclude``
    (names or patterns, glob or ``re:``) takes layers out of every group.
    """
    m = load_model(model)
    chosen = _layers(m, layers)
    names = [l.name for l in chosen]
    return resolve_ties(ties, names, lambda: model_graph(m, chosen), extra=extra, exclude=exclude)
