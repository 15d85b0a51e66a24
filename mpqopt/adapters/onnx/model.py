"""Load an ONNX model with clear errors, and infer the shape of every tensor.

:func:`load_model` reads a file (or takes a ``ModelProto``), loads external weight files (an error
names the tensor and the missing file), checks that every node input is produced by something (a
truncated file often still parses), and runs ONNX shape inference on a weight-less copy with the
graph inputs' dynamic dimensions set from ``input_shapes``. The model itself (``.proto``) keeps its
dynamic dimensions, so it still runs on batches of any size.

>>> import numpy as np
>>> from onnx import TensorProto, helper, numpy_helper
>>> w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
>>> g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "g",
...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
>>> m = load_model(helper.make_model(g), input_shapes={"x": [2, 4]})
>>> m.shape("y"), m.dynamic_dims
((2, 3), {})
>>> load_model(helper.make_model(g)).dynamic_dims
{'x': ('batch',)}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from ...errors import FormatError, ProblemError

Shape = tuple[Union[int, None], ...]  # None = a dimension shape inference could not fix
ModelLike = Union[str, os.PathLike, onnx.ModelProto, "OnnxModel"]
InputShapes = Mapping[str, Union[Sequence[int], int]]

# float initializers above this many elements are left out of the shape-inference copy (only their
# dims matter); small ones (shape tensors, axes) keep their values for data propagation
_KEEP_VALUES = 4096


@dataclass
class OnnxModel:
    """A loaded ONNX model and what shape inference found.

    ``proto`` is the model as given (weights in memory, dynamic dimensions kept); ``source`` names it
    in errors; ``shapes[tensor]`` is the inferred shape (``None`` entries = unknown dimensions; a
    tensor absent from it has unknown rank); ``input_shapes`` the graph inputs' shapes used for
    inference; ``dynamic_dims`` the inputs whose dimensions stayed symbolic (name -> dim names);
    ``shape_error`` the message of strict inference when it failed and a lenient pass was used.
    """

    proto: onnx.ModelProto
    source: str
    shapes: dict[str, Shape]
    input_shapes: dict[str, Shape]
    dynamic_dims: dict[str, tuple[str, ...]]
    shape_error: str = ""
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict, repr=False)
    producers: dict[str, onnx.NodeProto] = field(default_factory=dict, repr=False)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict, repr=False)
    inferred: onnx.ModelProto | None = field(default=None, repr=False)  # weight-less copy with fixed inputs
    symbolic_done: bool = field(default=False, repr=False)

    @property
    def graph(self) -> onnx.GraphProto:
        return self.proto.graph

    @property
    def opset(self) -> int:
        """Version of the default (``ai.onnx``) operator set."""
        return next((o.version for o in self.proto.opset_import if o.domain in ("", "ai.onnx")), 1)

    @property
    def inputs(self) -> list[str]:
        """Graph inputs that are fed at run time (initializers listed as inputs, IR < 4, excluded)."""
        return [i.name for i in self.graph.input if i.name not in self.initializers]

    def shape(self, tensor: str) -> Shape | None:
        """Inferred shape of ``tensor`` (None when its rank is unknown)."""
        return self.shapes.get(tensor)

    def static_shape(self, tensor: str, what: str) -> tuple[int, ...]:
        """The fully known shape of ``tensor``, or an error saying what ``what`` needs and how to fix it.

        When ONNX shape inference left it unknown although every input size is fixed (ops of other
        domains, e.g. ONNX Runtime's ``com.microsoft`` fused ops), ONNX Runtime's symbolic shape
        inference is tried once.
        """
        shape = self.shapes.get(tensor)
        if (shape is None or None in shape) and not self.dynamic_dims and not self.symbolic_done:
            self._symbolic_shapes()
            shape = self.shapes.get(tensor)
        if shape is not None and all(d is not None for d in shape):
            return tuple(int(d) for d in shape)  # type: ignore[arg-type]
        if self.dynamic_dims:
            dyn = "; ".join(f"input {k!r} has dynamic dims {list(v)}" for k, v in self.dynamic_dims.items())
            fix = f"{dyn}: pass input_shapes={{{', '.join(repr(k) + ': [...]' for k in self.dynamic_dims)}}} with concrete sizes"
        else:
            fix = "shape inference could not determine it" + (f" ({self.shape_error})" if self.shape_error else "")
        got = "unknown" if shape is None else list(shape)
        raise ProblemError(f"{self.source}: {what} needs the shape of tensor {tensor!r}, which is {got}; {fix}")

    def _symbolic_shapes(self) -> None:
        """Fill unknown shapes from ``onnxruntime.tools.symbolic_shape_infer`` (when installed)."""
        self.symbolic_done = True
        if self.inferred is None:
            return
        try:
            from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

            out = SymbolicShapeInference.infer_shapes(self.inferred, auto_merge=True, guess_output_rank=True)
        except Exception as exc:  # noqa: BLE001 - not installed, or an op it does not know
            self.shape_error = f"{self.shape_error}; symbolic shape inference failed: {type(exc).__name__}: {exc}".lstrip("; ")
            return
        for vi in [*out.graph.value_info, *out.graph.output]:
            dims = _dims(vi)
            old = self.shapes.get(vi.name)
            if dims is not None and (old is None or sum(d is None for d in dims) < sum(d is None for d in old)):
                self.shapes[vi.name] = dims

    def constant(self, tensor: str) -> np.ndarray | None:
        """Value of ``tensor`` when it is an initializer or the output of a ``Constant`` node, else None."""
        init = self.initializers.get(tensor)
        if init is not None:
            return tensor_array(init, self.source)
        node = self.producers.get(tensor)
        if node is not None and node.op_type == "Constant" and not node.domain:
            return _constant_node_value(node)
        return None


def tensor_array(t: onnx.TensorProto, source: str = "") -> np.ndarray:
    """``numpy_helper.to_array`` with an error naming the tensor when its data is missing or corrupt."""
    if t.data_location == onnx.TensorProto.EXTERNAL:
        loc = {e.key: e.value for e in t.external_data}.get("location", "?")
        raise FormatError(f"the data of initializer {t.name!r} is in external file {loc!r}, which was not loaded: load the model from its path", f"initializer {t.name!r}", source or None)
    try:
        return numpy_helper.to_array(t)
    except Exception as exc:  # noqa: BLE001 - protobuf/numpy errors on a corrupt tensor
        raise FormatError(f"cannot read initializer {t.name!r} (dims {list(t.dims)}): {type(exc).__name__}: {exc}", f"initializer {t.name!r}", source or None) from None


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name == "value_float":
            return np.array(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.array(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), dtype=np.int64)
    return None  # sparse or string constants: not weights


# ------------------------------------------------------------------------------ reading
def _read(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise FormatError("no such file", "$", str(path))
    if path.is_dir():
        raise FormatError("is a directory, not an ONNX file", "$", str(path))
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
        raise FormatError(f"not a readable ONNX model (corrupt or truncated file?): {type(exc).__name__}: {exc}", "$", str(path)) from None


def _load_external(proto: onnx.ModelProto, base_dir: Path | None, source: str) -> None:
    """Load external tensor data, with an error naming the tensor and the file when one is missing."""
    external = [t for t in _all_tensors(proto) if t.data_location == onnx.TensorProto.EXTERNAL]
    if not external:
        return
    if base_dir is None:
        return  # a ModelProto without a directory: tensor_array() names the tensor if its data is needed
    for t in external:
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        f = base_dir / loc
        if not loc or not f.is_file():
            raise FormatError(f"external data file {loc!r} of initializer {t.name!r} is missing (looked in {base_dir})", f"initializer {t.name!r}", source)
        end = int(info.get("offset", 0) or 0) + int(info.get("length", 0) or 0)
        if f.stat().st_size < end:
            raise FormatError(f"external data file {loc!r} is truncated: initializer {t.name!r} needs bytes up to {end}, the file has {f.stat().st_size}", f"initializer {t.name!r}", source)
    try:
        onnx.external_data_helper.load_external_data_for_model(proto, str(base_dir))
    except Exception as exc:  # noqa: BLE001 - checker/IO errors
        raise FormatError(f"cannot load external data: {type(exc).__name__}: {exc}", "$", source) from None


def _all_tensors(proto: onnx.ModelProto) -> list[onnx.TensorProto]:
    return list(onnx.external_data_helper._get_all_tensors(proto))


def _check_structure(proto: onnx.ModelProto, source: str) -> None:
    """A model with no graph, or a node reading a tensor nothing produces, is corrupt (often truncated)."""
    g = proto.graph
    if not g.node:
        raise FormatError("the model has no graph nodes (empty, corrupt or not an ONNX file)", "graph", source)
    known = {i.name for i in g.input} | {t.name for t in g.initializer} | {t.values.name for t in g.sparse_initializer} | {""}
    for k, node in enumerate(g.node):
        for name in node.input:
            if name not in known:
                raise FormatError(f"node {node.name or node.op_type + '#' + str(k)!r} ({node.op_type}) reads tensor {name!r}, which no input, initializer or earlier node provides (truncated or corrupt file, or nodes out of order)", f"node {node.name or k!r}", source)
        known.update(node.output)
    for out in g.output:
        if out.name not in known:
            raise FormatError(f"graph output {out.name!r} is produced by no node (truncated or corrupt file?)", "graph.output", source)


# ------------------------------------------------------------------------------ shapes
def _dims(value_info: onnx.ValueInfoProto) -> Shape | None:
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.tensor_type.shape.dim)


def _fix_inputs(proto: onnx.ModelProto, input_shapes: InputShapes | None, source: str) -> tuple[dict[str, onnx.ValueInfoProto], dict[str, tuple[int, ...]], dict[str, int]]:
    """The runtime inputs, the user's shape per input and size per named dimension, checked."""
    inits = {t.name for t in proto.graph.initializer}
    inputs = {i.name: i for i in proto.graph.input if i.name not in inits}
    given: dict[str, tuple[int, ...]] = {}
    by_param: dict[str, int] = {}
    for key, value in (input_shapes or {}).items():
        if key not in inputs and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            params = {d.dim_param for i in inputs.values() for d in i.type.tensor_type.shape.dim if d.dim_param}
            if key in params:  # {"batch": 1}: a named dynamic dimension
                by_param[key] = _positive(value, f"input_shapes[{key!r}]", source)
                continue
        if key not in inputs:
            raise ProblemError(f"{source}: input_shapes names {key!r}, which is not an input of the model; inputs are {list(inputs)}")
        try:
            dims = tuple(value)  # type: ignore[arg-type]
        except TypeError:
            raise ProblemError(f"{source}: input_shapes[{key!r}] must be a list of sizes, got {value!r}") from None
        given[key] = tuple(_positive(d, f"input_shapes[{key!r}]", source) for d in dims)
    out: dict[str, tuple[int, ...]] = {}
    for name, shape in given.items():
        model_dims = inputs[name].type.tensor_type.shape.dim
        if inputs[name].type.tensor_type.HasField("shape") and len(model_dims) != len(shape):
            raise ProblemError(f"{source}: input_shapes[{name!r}] = {list(shape)} has rank {len(shape)}, but input {name!r} has rank {len(model_dims)} ({[d.dim_value or d.dim_param or '?' for d in model_dims]})")
        for axis, (d, size) in enumerate(zip(model_dims, shape)):
            if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != size:
                raise ProblemError(f"{source}: input_shapes[{name!r}] sets dim {axis} to {size}, but the model fixes it to {d.dim_value}")
            if d.dim_param:
                if by_param.get(d.dim_param, size) != size:
                    raise ProblemError(f"{source}: dynamic dim {d.dim_param!r} gets two sizes ({by_param[d.dim_param]} and {size}) in input_shapes")
                by_param[d.dim_param] = size
        out[name] = shape
    return inputs, out, by_param


def _positive(value: Any, what: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ProblemError(f"{source}: {what} must hold positive integer sizes, got {value!r}")
    return int(value)


def _light_copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model without large initializer data (shape inference needs only their dims), so inference
    neither copies nor serialises the weights."""
    light = onnx.ModelProto()
    light.ir_version = proto.ir_version
    light.opset_import.extend(proto.opset_import)
    light.functions.extend(proto.functions)
    g, src = light.graph, proto.graph
    g.name = src.name
    g.node.extend(src.node)
    g.input.extend(src.input)
    g.output.extend(src.output)
    g.value_info.extend(src.value_info)
    g.sparse_initializer.extend(src.sparse_initializer)
    for t in src.initializer:
        numel = int(np.prod(t.dims)) if len(t.dims) else 1
        if numel <= _KEEP_VALUES and t.data_location != onnx.TensorProto.EXTERNAL:
            g.initializer.append(t)
        else:
            g.initializer.append(onnx.TensorProto(name=t.name, dims=t.dims, data_type=t.data_type))
    return light


def _infer(proto: onnx.ModelProto, inputs: Mapping[str, onnx.ValueInfoProto], fixed: Mapping[str, tuple[int, ...]], params: Mapping[str, int]) -> tuple[onnx.ModelProto, str]:
    """Shape inference on a weight-less copy whose inputs take the given sizes; strict first, then
    lenient (keeping what it can) with the strict error returned to explain unknown shapes."""
    light = _light_copy(proto)
    for vi in light.graph.input:
        if vi.name not in inputs:
            continue
        dims = vi.type.tensor_type.shape.dim
        shape = fixed.get(vi.name)
        if shape is not None and not vi.type.tensor_type.HasField("shape"):
            vi.type.tensor_type.shape.SetInParent()
            dims.extend(onnx.TensorShapeProto.Dimension() for _ in shape)
        for axis, d in enumerate(dims):
            size = shape[axis] if shape is not None else params.get(d.dim_param)
            if size is not None:
                d.Clear()
                d.dim_value = size
    try:
        return shape_inference.infer_shapes(light, check_type=False, strict_mode=True, data_prop=True), ""
    except Exception as exc:  # noqa: BLE001 - InferenceError and friends: retry leniently, keep the reason
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    try:
        return shape_inference.infer_shapes(light, check_type=False, strict_mode=False, data_prop=True), error
    except Exception as exc:  # noqa: BLE001
        return light, f"{error}; lenient inference also failed: {type(exc).__name__}: {exc}"


def load_model(
    model: ModelLike,
    input_shapes: InputShapes | None = None,
    *,
    external_data_dir: str | os.PathLike | None = None,
) -> OnnxModel:
    """Load ``model`` (a path, a ``ModelProto`` or an :class:`OnnxModel`) and infer tensor shapes.

    ``input_shapes`` gives concrete sizes for dynamic input dimensions: ``{input: [1, 3, 224, 224]}``
    or ``{dim_name: size}`` for a named dimension shared by several inputs (``{"batch": 1}``). A
    dimension named in one input's shape is set in every input that uses the same name. External
    data is read from the model's directory (or ``external_data_dir``).
    Errors: :class:`~mpqopt.errors.FormatError` for a missing, corrupt or truncated file or missing
    external data; :class:`~mpqopt.errors.ProblemError` for input shapes that do not fit the model.
    """
    if isinstance(model, OnnxModel):
        if input_shapes is None:
            return model
        model = model.proto
    if isinstance(model, onnx.ModelProto):
        proto, source = model, f"<ModelProto {model.graph.name or 'unnamed'}>"
        base = Path(external_data_dir) if external_data_dir is not None else None
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        proto, source = _read(path), str(path)
        base = Path(external_data_dir) if external_data_dir is not None else path.resolve().parent
    else:
        raise ProblemError(f"expected an ONNX file path or an onnx.ModelProto, got {type(model).__name__}")
    _check_structure(proto, source)
    _load_external(proto, base, source)
    inputs, fixed, params = _fix_inputs(proto, input_shapes, source)
    inferred, error = _infer(proto, inputs, fixed, params)
    shapes: dict[str, Shape] = {}
    g = inferred.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = _dims(vi)
        if dims is not None:
            shapes[vi.name] = dims
    for t in proto.graph.initializer:
        shapes[t.name] = tuple(int(d) for d in t.dims)
    dynamic = {name: tuple(d.dim_param or f"dim{axis}" for axis, d in enumerate(vi.type.tensor_type.shape.dim) if not (d.HasField("dim_value") and d.dim_value > 0))
               for name, vi in ((vi.name, vi) for vi in g.input if vi.name in inputs)}
    dynamic = {k: v for k, v in dynamic.items() if v}
    producers: dict[str, onnx.NodeProto] = {}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in proto.graph.node:
        for out in node.output:
            if out:
                producers[out] = node
        for name in node.input:
            if name:
                consumers.setdefault(name, []).append(node)
    return OnnxModel(
        proto=proto,
        source=source,
        shapes=shapes,
        input_shapes={name: shapes.get(name, ()) for name in inputs},
        dynamic_dims=dynamic,
        shape_error=error,
        initializers={t.name: t for t in proto.graph.initializer},
        producers=producers,
        consumers=consumers,
        inferred=inferred,
    )
