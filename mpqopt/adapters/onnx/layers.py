"""Find the quantizable layers of an ONNX graph: Conv, Gemm and MatMul nodes with a constant weight.

A weight is an initializer, a ``Constant`` node's value, or a ``ConstantOfShape`` output whose shape is
constant (the placeholder-weight model-zoo graphs), possibly reached through ``Transpose``, ``Cast``,
``Identity`` or a reshape (``Reshape``, ``Flatten``, ``(Un)Squeeze`` with known shapes): fp16 weights
cast up, PyTorch's transposed Linear weights, a classifier weight flattened from 4-D. The
*output-channel axis* is tracked back through those ops to the stored tensor, so per-channel
quantization uses the right axis: 0 for Conv weights ``[out, in/groups, *kernel]`` and Gemm with
``transB=1`` (``[out, in]``), 1 for MatMul and Gemm ``transB=0`` weights stored ``[in, out]``. (A
reshape that merges the channel axis with others leaves ``weight_axis`` None: one scale.)

Layer names are the node names (the PyTorch exporter's ``/layer1/layer1.0/conv1/Conv``), falling back
to the weight's name when a node has none or only a generated one (``n12``, ``Conv_3``: the model
zoo's ``gpu_0/conv1_w_0`` says more); they are unique (``#2`` suffixes on clashes) and stable (graph
order). ``framework_name`` is the PyTorch module the layer came from when the names show it
(``layer1.0.conv1``). A weight read by several nodes (a module called twice, tied weights) is one
layer whose ``nodes`` lists every reader: it has one stored tensor, hence one bit-width.

>>> import numpy as np
>>> from onnx import TensorProto, helper, numpy_helper
>>> w = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "conv.weight")
>>> g = helper.make_graph([helper.make_node("Conv", ["x", "conv.weight"], ["y"], name="/conv/Conv")], "g",
...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
>>> [(l.name, l.op_type, l.weight_shape, l.weight_axis, l.params, l.framework_name) for l in discover_layers(helper.make_model(g))]
[('/conv/Conv', 'Conv', (8, 3, 3, 3), 0, 216, 'conv')]
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import onnx

from ...errors import ProblemError
from ..patterns import select
from .model import ModelLike, OnnxModel, load_model, tensor_array

QUANTIZABLE_OPS = ("Conv", "Gemm", "MatMul")
# ops a weight may pass through between its stored tensor and the layer (values unchanged, axes permuted)
WEIGHT_PASS_OPS = ("Transpose", "Cast", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze")
_RESHAPE_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


@dataclass(frozen=True)
class OnnxLayer:
    """One quantizable layer of an ONNX graph.

    ``nodes`` are the node keys reading the weight (``node_name`` the first); ``weight_name`` the
    stored tensor (initializer, Constant or ConstantOfShape output) and ``weight_source`` its kind;
    ``weight_shape`` the weight as the node sees it (after ``weight_path``'s Transpose/Cast ops) and
    ``stored_shape`` as stored; ``out_axis`` its output-channel axis as the node sees it and
    ``weight_axis`` in the stored tensor (None: one output channel); ``weight_input`` which node input
    is the weight; ``input_name`` the activation input of the first node and ``output_name`` its
    output; ``params`` counts weight and bias, ``weight_params`` the weight alone.
    """

    name: str
    node_name: str
    nodes: tuple[str, ...]
    op_type: str
    kind: str
    weight_name: str
    weight_source: str
    weight_shape: tuple[int, ...]
    stored_shape: tuple[int, ...]
    out_axis: int | None
    weight_axis: int | None
    weight_input: int
    weight_path: tuple[str, ...]
    groups: int
    params: int
    weight_params: int
    bias_name: str | None
    input_name: str
    output_name: str
    framework_name: str | None

    @property
    def depthwise(self) -> bool:
        return self.op_type == "Conv" and self.groups > 1 and self.weight_shape[1] == 1


def node_keys(graph: onnx.GraphProto) -> list[str]:
    """A unique, stable key per node: its name, or ``<op_type>#<index>`` for unnamed nodes, ``#k``
    appended on clashes."""
    keys, seen = [], set()
    for i, node in enumerate(graph.node):
        base = node.name or f"{node.op_type}#{i}"
        key, k = base, 2
        while key in seen:
            key, k = f"{base}#{k}", k + 1
        seen.add(key)
        keys.append(key)
    return keys


def _attr(node: onnx.NodeProto, name: str, default):  # noqa: ANN001, ANN202 - tiny accessor
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


@dataclass(frozen=True)
class _Source:
    """Where a node's weight input comes from: the stored tensor and the ops walked to reach it
    (``steps`` from the node back to the store: ``("Transpose", perm)``, ``("Reshape", in, out)``,
    ``("Cast", None)``...)."""

    name: str
    kind: str
    stored_shape: tuple[int, ...]
    steps: tuple[tuple, ...]

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(s[0] for s in self.steps)

    def shapes(self) -> list[tuple[int, ...]]:
        """Shape after each step, from the store outwards (last = as the node sees it)."""
        shapes = [self.stored_shape]
        for step in reversed(self.steps):
            shape = shapes[-1]
            if step[0] == "Transpose":
                perm = step[1] or tuple(range(len(shape)))[::-1]
                shape = tuple(shape[i] for i in perm)
            elif step[0] == "Reshape":
                shape = step[2]
            shapes.append(shape)
        return shapes

    @property
    def shape(self) -> tuple[int, ...]:
        return self.shapes()[-1]

    def stored_axis(self, axis: int | None) -> int | None:
        """The stored-tensor axis that becomes ``axis`` as the node sees it (None when a Reshape
        mixes it with other axes: the layer is then quantized with one scale)."""
        shapes = self.shapes()
        for k, step in enumerate(self.steps):  # from the node back to the store
            if axis is None:
                return None
            before = shapes[len(self.steps) - 1 - k]  # shape at this step's input
            if step[0] == "Transpose":
                axis = (step[1] or tuple(range(len(before)))[::-1])[axis]
            elif step[0] == "Reshape":
                axis = _reshape_axis(axis, before, step[2])
        return axis


def _reshape_axis(axis: int, before: tuple[int, ...], after: tuple[int, ...]) -> int | None:
    """The axis of ``before`` that a Reshape turns into ``after[axis]`` unchanged (same size, same
    number of elements before it), else None."""
    prefix = math.prod(after[:axis])
    for b in range(len(before)):
        if math.prod(before[:b]) == prefix and before[b] == after[axis]:
            return b
    return None


def _weight_source(model: OnnxModel, tensor: str) -> _Source | None:
    """Walk back from a node input through Transpose/Cast/Identity/Reshape-like ops to a constant,
    or None when the input is not a constant (an activation)."""
    steps: list[tuple] = []
    while True:
        if tensor in model.initializers:
            return _Source(tensor, "initializer", tuple(int(d) for d in model.initializers[tensor].dims), tuple(steps))
        node = model.producers.get(tensor)
        if node is None or node.domain not in ("", "ai.onnx"):
            return None
        if node.op_type == "Constant":
            value = model.constant(tensor)
            return _Source(tensor, "constant", tuple(value.shape), tuple(steps)) if value is not None else None
        if node.op_type == "ConstantOfShape":
            shape = model.constant(node.input[0]) if node.input else None
            if shape is not None:
                return _Source(tensor, "constant_of_shape", tuple(int(d) for d in np.asarray(shape).reshape(-1)), tuple(steps))
            inferred = model.shape(tensor)  # a shape that inference resolved
            if inferred is None or any(d is None for d in inferred):
                return None
            return _Source(tensor, "constant_of_shape", tuple(int(d) for d in inferred), tuple(steps))  # type: ignore[arg-type]
        if not node.input or node.op_type not in WEIGHT_PASS_OPS:
            return None
        if node.op_type == "Transpose":
            steps.append(("Transpose", tuple(_attr(node, "perm", ()))))
        elif node.op_type in _RESHAPE_OPS:
            before, after = model.shape(node.input[0]), model.shape(node.output[0])
            if before is None or after is None or None in before or None in after:
                return None  # a reshape of unknown shapes: cannot follow the channel axis
            steps.append(("Reshape", before, after))
        else:
            steps.append((node.op_type, None))
        tensor = node.input[0]


def _weight_input(model: OnnxModel, node: onnx.NodeProto) -> int | None:
    """Which input of a Conv/Gemm/MatMul node is its constant weight (None: no constant weight)."""
    if node.op_type == "Conv":
        return 1 if len(node.input) > 1 and _weight_source(model, node.input[1]) else None
    if len(node.input) < 2:
        return None
    a, b = (_weight_source(model, node.input[i]) is not None for i in (0, 1))
    if b and not a:
        return 1
    if a and not b:
        return 0
    return None  # both constant (foldable) or neither (activation x activation, e.g. attention scores)


def _out_axis(node: onnx.NodeProto, weight_input: int, rank: int) -> int | None:
    """Output-channel axis of the weight as the node sees it."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        if weight_input == 1:  # B: [K, N], or [N, K] with transB
            return 0 if _attr(node, "transB", 0) else 1
        return 1 if _attr(node, "transA", 0) else 0  # A: [M, K], or [K, M] with transA
    if rank < 2:
        return None  # a vector weight: one output channel
    return rank - 1 if weight_input == 1 else rank - 2  # MatMul: B [.., K, N] -> N; A [.., M, K] -> M


def _kind(op_type: str, shape: tuple[int, ...]) -> str:
    if op_type == "Conv":
        return f"conv{len(shape) - 2}d"
    return "linear" if op_type == "Gemm" or len(shape) == 2 else "matmul"


def _bias(model: OnnxModel, node: onnx.NodeProto) -> str | None:
    """The bias tensor: Conv/Gemm input 2, or a constant added right after a MatMul (PyTorch exports
    Linear on 3-D inputs as MatMul + Add)."""
    if node.op_type in ("Conv", "Gemm"):
        return node.input[2] if len(node.input) > 2 and node.input[2] else None
    users = model.consumers.get(node.output[0], [])
    if len(users) == 1 and users[0].op_type == "Add":
        others = [t for t in users[0].input if t != node.output[0]]
        if len(others) == 1 and _weight_source(model, others[0]) is not None:
            return others[0]
    return None


def _numel(model: OnnxModel, tensor: str | None) -> int:
    if not tensor:
        return 0
    src = _weight_source(model, tensor)
    if src is not None:
        return math.prod(src.shape)
    shape = model.shape(tensor)
    return math.prod(shape) if shape is not None and all(d is not None for d in shape) else 0  # type: ignore[arg-type]


def _generic(node: onnx.NodeProto) -> bool:
    """True for an empty or converter-generated node name: ``n12``, ``node_3``, ``Conv_3``, ``MatMul``
    (the op type itself, case-sensitive, so ``conv1`` is a real name)."""
    return not node.name or re.fullmatch(rf"(n|node_?)\d+|{re.escape(node.op_type)}(_\d+)?", node.name) is not None


def framework_name(node_name: str, weight_name: str) -> str | None:
    """The PyTorch module a layer was exported from, when the names show it.

    ``layer1.0.down.weight`` -> ``layer1.0.down``; otherwise the exporter's node scope
    ``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1`` (each scope is the child's name, or its
    full dotted path when it extends its parent's).

    >>> framework_name("/layer1/layer1.0/conv1/Conv", "onnx::Conv_53"), framework_name("/0/Conv", "0.weight")
    ('layer1.0.conv1', '0')
    """
    if weight_name.endswith(".weight") and not weight_name.startswith("onnx::"):
        return weight_name[: -len(".weight")]
    if node_name.startswith("/") and node_name.count("/") >= 2:
        path = ""
        for scope in node_name.strip("/").split("/")[:-1]:
            path = scope if (not path or scope.startswith(path + ".")) else f"{path}.{scope}"
        return path or None
    return None


def discover_layers(model: ModelLike, include: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None) -> list[OnnxLayer]:
    """Quantizable layers of ``model`` (a path, ``ModelProto`` or :class:`OnnxModel`) in graph order.

    ``include`` keeps only matching layer names, ``exclude`` drops matching names (globs or
    ``re:<regex>``). An include pattern matching nothing, or a model with no quantizable layer, is a
    :class:`~mpqopt.errors.ProblemError`. Nodes inside subgraphs (If/Loop bodies) are not searched.
    """
    m = load_model(model)
    keys = node_keys(m.graph)
    by_weight: dict[str, dict] = {}
    for key, node in zip(keys, m.graph.node):
        if node.op_type not in QUANTIZABLE_OPS or node.domain not in ("", "ai.onnx"):
            continue
        wi = _weight_input(m, node)
        if wi is None:
            continue
        src = _weight_source(m, node.input[wi])
        if src is None:  # cannot happen: _weight_input found it; keeps the type checker honest
            continue
        if src.name in by_weight:  # a second reader of the same stored weight
            by_weight[src.name]["nodes"].append(key)
            continue
        shape = src.shape
        out_axis = _out_axis(node, wi, len(shape))
        bias = _bias(m, node)
        wp = math.prod(shape)
        by_weight[src.name] = dict(
            node=node, nodes=[key], op_type=node.op_type, kind=_kind(node.op_type, shape), weight_name=src.name, weight_source=src.kind,
            weight_shape=shape, stored_shape=src.stored_shape, out_axis=out_axis, weight_axis=src.stored_axis(out_axis),
            weight_input=wi, weight_path=src.path, groups=int(_attr(node, "group", 1)) if node.op_type == "Conv" else 1,
            params=wp + _numel(m, bias), weight_params=wp, bias_name=bias, input_name=node.input[1 - wi] if node.op_type != "Conv" else node.input[0],
            output_name=node.output[0],
        )
    if not by_weight:
        ops = sorted({n.op_type for n in m.graph.node})
        raise ProblemError(f"{m.source} has no quantizable layer (Conv, Gemm or MatMul with a constant weight); its ops are {ops[:20]}")
    layers, used = [], set()
    for info in by_weight.values():
        node = info.pop("node")
        base = info["weight_name"] if _generic(node) else node.name
        name, k = base, 2
        while name in used:
            name, k = f"{base}#{k}", k + 1
        used.add(name)
        layers.append(OnnxLayer(name=name, node_name=info["nodes"][0], **{**info, "nodes": tuple(info["nodes"])},
                                framework_name=framework_name(node.name, info["weight_name"])))
    kept = set(select([l.name for l in layers], include, exclude))
    return [l for l in layers if l.name in kept]


def resolve_layers(layers: Sequence[OnnxLayer], names: Iterable[str]) -> dict[str, OnnxLayer]:
    """``{name: layer}`` for ``names``, with an error naming any unknown name (and close matches).

    >>> resolve_layers([], ["fc"])
    Traceback (most recent call last):
    ...
    mpqopt.errors.ProblemError: the model has no quantizable layer named 'fc'
    """
    by_name = {l.name: l for l in layers}
    by_framework = {l.framework_name: l for l in layers if l.framework_name}
    out = {}
    for name in names:
        layer = by_name.get(name) or by_framework.get(name)
        if layer is None:
            close = difflib.get_close_matches(str(name), list(by_name), n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ProblemError(f"the model has no quantizable layer named {name!r}{hint}")
        out[name] = layer
    return out


def stored_weight(model: OnnxModel, layer: OnnxLayer) -> np.ndarray:
    """The stored weight tensor's value (initializer or Constant; a ConstantOfShape is materialised).

    Its output channels lie along ``layer.weight_axis``.
    """
    if layer.weight_source == "initializer":
        return tensor_array(model.initializers[layer.weight_name], model.source)
    if layer.weight_source == "constant":
        value = model.constant(layer.weight_name)
        if value is None:
            raise ProblemError(f"{model.source}: cannot read the Constant weight {layer.weight_name!r} of layer {layer.name!r}")
        return value
    node = model.producers[layer.weight_name]
    fill = next((onnx.numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"), np.zeros(1, np.float32))
    return np.full(layer.stored_shape, fill.reshape(-1)[0], dtype=fill.dtype)
