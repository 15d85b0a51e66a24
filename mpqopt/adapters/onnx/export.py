"""Export a bit-width allocation for an ONNX model: a JSON per-node config, or a fake-quantized model.

:func:`allocation_config` lists, per layer, its option, weight and activation bits, nodes, stored
weight tensor and channel axis: what a deployment toolchain needs to quantize each node.
:func:`fake_quantized_model` returns a copy of the model that ONNX Runtime runs:

- ``mode="weights"`` (simulation): each layer's stored weight is replaced by its value rounded to the
  option's grid (:func:`mpqopt.adapters.onnx.quantize.quantize_array`: the torch adapter's quantizer,
  so the same model gives the same numbers in both adapters), and activations with ``a`` bits are
  fake-quantized by float ops (Div, Round, Add, Clip, Sub, Mul: the torch activation quantizer op for
  op, per-tensor asymmetric over the calibrated range);
- ``mode="qdq"`` (deployment): weights of at most 8 bits are stored as int8 (uint8 when asymmetric)
  behind a ``DequantizeLinear`` (per-channel scales along the weight's output-channel axis, opset >=
  13); wider weights are rounded in place; activations get QuantizeLinear (a Clip below 8 bits) and
  DequantizeLinear.

ONNX Runtime rewrites QDQ graphs when it optimizes a session (seen in 1.31): it fuses DQ -> Conv ->
Q into integer kernels (within a rounding step of the simulation); it turns a DequantizeLinear
feeding a MatMul into ``MatMulNBits`` that by default (``accuracy_level`` 4) quantizes the
*activation* to int8 on the fly; and its ``WeightBiasQuantization`` pass quantizes *float* weights
(and biases) to int8 when a node sits between a DequantizeLinear and a QuantizeLinear, so a wider
weight next to quantized activations runs at 8 bits. To run a QDQ model as the exact simulation,
create the session with ``disabled_optimizers=["WeightBiasQuantization"]`` and
``add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "1")`` (fp32 compute), or with
``GraphOptimizationLevel.ORT_ENABLE_BASIC``. ``mode="weights"`` has no QDQ nodes: every
optimization level keeps its numbers.
Activations are quantized only for layers in ``act_ranges={layer: (lo, hi)}``. The allocation is
recorded in the model's ``metadata_props`` (``mpqopt.allocation``).

>>> import numpy as np
>>> from onnx import TensorProto, helper, numpy_helper
>>> w = numpy_helper.from_array(np.array([[0.1, -0.4], [0.25, 0.0]], np.float32), "w")
>>> g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "g",
...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
>>> q = fake_quantized_model(helper.make_model(g), {"fc": 2})
>>> numpy_helper.to_array(q.graph.initializer[0]).tolist()   # per column (MatMul weights are [in, out])
[[0.0, -0.4000000059604645], [0.25, 0.0]]
>>> allocation_config({"fc": "W2A8"}, helper.make_model(g))["layers"]["fc"]["w_bits"]
2
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...errors import ProblemError
from ...options import Option
from ..choices import Solution, choices_of, quantizes_input
from ..scheme import FULL_PRECISION_BITS, WeightScheme, grid_range, parse_scheme
from .layers import OnnxLayer, discover_layers, node_keys, resolve_layers, stored_weight
from .model import ModelLike, OnnxModel, load_model
from .quantize import grid_params, quantize_array

__all__ = ["allocation_config", "write_config", "fake_quantized_model", "save", "choices_of", "CONFIG_FORMAT"]

ActRanges = Mapping[str, Sequence[float]]
CONFIG_FORMAT = "mpqopt.onnx-allocation"
MODES = ("weights", "qdq")
_QDQ_MAX_BITS = 8
_TWO_GIB = 2**31 - 1


def _resolved(m: OnnxModel, solution: Solution, layers: Sequence[OnnxLayer] | None) -> dict[str, tuple[OnnxLayer, Option]]:
    """``{layer name: (layer, option)}``; keys of the solution may be layer or framework names."""
    choices = choices_of(solution, "export")
    found = resolve_layers(layers if layers is not None else discover_layers(m), choices)
    out: dict[str, tuple[OnnxLayer, Option]] = {}
    for key, opt in choices.items():
        layer = found[key]
        if layer.name in out and out[layer.name][1] != opt:
            raise ProblemError(f"layer {layer.name!r} is given twice ({key!r}) with different options {out[layer.name][1].label} and {opt.label}")
        out[layer.name] = (layer, opt)
    return out


# ------------------------------------------------------------------------------ config
def allocation_config(solution: Solution, model: ModelLike | Sequence[OnnxLayer] | None = None, scheme: Any = None) -> dict[str, Any]:
    """The allocation as a JSON-ready dict: per layer its option, ``w_bits``, ``a_bits`` (None when
    activations stay in float) and, when ``model`` (or its layers) is given, its nodes, op type,
    stored weight name and output-channel axis (names in ``solution`` are then checked)."""
    sch = parse_scheme(scheme)
    choices = choices_of(solution, "export")
    if model is None:
        rows = {name: (None, opt) for name, opt in choices.items()}
    elif isinstance(model, (list, tuple)) and all(isinstance(l, OnnxLayer) for l in model):
        found = resolve_layers(model, choices)
        rows = {found[k].name: (found[k], o) for k, o in choices.items()}
    else:
        rows = _resolved(load_model(model), choices, None)  # type: ignore[arg-type]
    layers: dict[str, Any] = {}
    for name, (layer, opt) in rows.items():
        entry: dict[str, Any] = {"option": opt.label, "w_bits": opt.w, "a_bits": opt.a}
        if layer is not None:
            entry.update(nodes=list(layer.nodes), op_type=layer.op_type, weight=layer.weight_name,
                         weight_axis=layer.weight_axis if sch.per_channel else None, framework_name=layer.framework_name)
        layers[name] = entry
    return {"format": CONFIG_FORMAT, "version": 1, "scheme": asdict(sch), "layers": layers}


def write_config(path: str | os.PathLike, solution: Solution, model: ModelLike | Sequence[OnnxLayer] | None = None, scheme: Any = None) -> Path:
    """Write :func:`allocation_config` as indented JSON to ``path``; returns the path."""
    out = Path(path)
    out.write_text(json.dumps(allocation_config(solution, model, scheme), indent=2) + "\n")
    return out


# ------------------------------------------------------------------------------ model
class _Editor:
    """Edits on a copy of the model: replace/add initializers, insert nodes before a given node."""

    def __init__(self, m: OnnxModel):
        self.m = m
        self.proto = onnx.ModelProto()
        self.proto.CopyFrom(m.proto)
        self.g = self.proto.graph
        self.inits = {t.name: t for t in self.g.initializer}
        self.keys = node_keys(m.graph)
        self.before: dict[int, list[onnx.NodeProto]] = {}  # node index -> nodes to insert before it
        self.first: list[onnx.NodeProto] = []
        self.drop_nodes: set[int] = set()
        self.names = {t for n in m.graph.node for t in (*n.input, *n.output)} | set(self.inits) | {i.name for i in self.g.input}

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def set_weight(self, layer: OnnxLayer, value: np.ndarray) -> None:
        """Store ``value`` as the layer's weight tensor (a Constant/ConstantOfShape becomes an initializer)."""
        name = layer.weight_name
        tensor = numpy_helper.from_array(value, name)
        if name in self.inits:
            self.inits[name].CopyFrom(tensor)
        else:
            self._drop_producer(name)
            self.g.initializer.append(tensor)
            self.inits[name] = self.g.initializer[-1]

    def _drop_producer(self, tensor: str) -> None:
        for i, node in enumerate(self.m.graph.node):
            if tensor in node.output:
                self.drop_nodes.add(i)

    def dequantized_weight(self, layer: OnnxLayer, q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int | None) -> None:
        """Replace the weight by ``DequantizeLinear(q, scale, zero)``, producing the same tensor name."""
        name = layer.weight_name
        qn, sn, zn = self.fresh(f"{name}_quantized"), self.fresh(f"{name}_scale"), self.fresh(f"{name}_zero_point")
        if name in self.inits:
            self.g.initializer.remove(self.inits.pop(name))
            inputs = [i for i in self.g.input if i.name == name]  # IR < 4 lists initializers as inputs
            for i in inputs:
                self.g.input.remove(i)
        else:
            self._drop_producer(name)
        self.g.initializer.extend([numpy_helper.from_array(q, qn), numpy_helper.from_array(scale, sn), numpy_helper.from_array(zero, zn)])
        attrs = {"axis": axis} if axis is not None else {}
        self.first.append(helper.make_node("DequantizeLinear", [qn, sn, zn], [name], name=self.fresh(f"{name}_DequantizeLinear"), **attrs))

    def quantize_input(self, layer: OnnxLayer, bits: int, lo: float, hi: float, qdq: bool) -> None:
        """Fake-quantize the activation input of every node of ``layer`` to ``bits`` over ``[lo, hi]``:
        with float ops (``qdq=False``: the torch quantizer's exact arithmetic) or with
        QuantizeLinear/DequantizeLinear (uint8, clipped to ``bits``)."""
        lo32, hi32 = np.float32(min(float(lo), 0.0)), np.float32(max(float(hi), 0.0))
        qmax = 2**bits - 1
        scale = (hi32 - lo32) / np.float32(qmax)  # float32 arithmetic, as the torch quantizer
        if not scale > 0:
            raise ProblemError(f"activation range of layer {layer.name!r} is empty ({lo}, {hi}): cannot quantize its input")
        zero = np.round(-lo32 / scale)
        base = layer.name.strip("/").replace("/", "_") or "act"
        consts = {"scale": np.array(scale, np.float32)}
        if qdq:
            consts.update(zero=np.array(zero, np.uint8), qmin=np.array(0, np.uint8), qmax=np.array(qmax, np.uint8))
        else:
            consts.update(zero=np.array(zero, np.float32), qmin=np.array(0, np.float32), qmax=np.array(qmax, np.float32))
        names = {k: self.fresh(f"{base}_act_{k}") for k in consts}
        self.g.initializer.extend(numpy_helper.from_array(v, names[k]) for k, v in consts.items())
        sn, zn, mn, mx = names["scale"], names["zero"], names["qmin"], names["qmax"]
        index = {k: i for i, k in enumerate(self.keys)}
        for key in layer.nodes:
            i = index[key]
            node = self.g.node[i]
            slot = 0 if node.op_type == "Conv" else 1 - layer.weight_input
            x = node.input[slot]
            t = {k: self.fresh(f"{x}_{k}") for k in ("div", "round", "shift", "q", "unshift", "dq")}

            def op(kind: str, inputs: list[str], out: str) -> onnx.NodeProto:
                return helper.make_node(kind, inputs, [out], name=self.fresh(f"{base}_act_{kind}"))

            if qdq:
                new = [op("QuantizeLinear", [x, sn, zn], t["round"])]
                if bits < 8:
                    new.append(op("Clip", [t["round"], mn, mx], t["q"]))
                else:
                    t["q"] = t["round"]
                new.append(op("DequantizeLinear", [t["q"], sn, zn], t["dq"]))
            else:  # clip(round(x / scale) + zero, 0, qmax) - zero) * scale, op for op as torch
                new = [op("Div", [x, sn], t["div"]), op("Round", [t["div"]], t["round"]), op("Add", [t["round"], zn], t["shift"]),
                       op("Clip", [t["shift"], mn, mx], t["q"]), op("Sub", [t["q"], zn], t["unshift"]), op("Mul", [t["unshift"], sn], t["dq"])]
            self.before.setdefault(i, []).extend(new)
            node.input[slot] = t["dq"]

    def finish(self) -> onnx.ModelProto:
        nodes = list(self.first)
        for i, node in enumerate(self.g.node):
            nodes.extend(self.before.get(i, []))
            if i not in self.drop_nodes:
                nodes.append(node)
        del self.g.node[:]
        self.g.node.extend(nodes)
        return self.proto


def _float_weight(m: OnnxModel, layer: OnnxLayer) -> np.ndarray:
    w = stored_weight(m, layer)
    if not np.issubdtype(w.dtype, np.floating):
        raise ProblemError(f"layer {layer.name!r}: weight {layer.weight_name!r} has dtype {w.dtype}, not floating point (already quantized?)")
    return w


def fake_quantized_model(
    model: ModelLike,
    solution: Solution,
    scheme: Any = None,
    *,
    mode: str = "weights",
    act_ranges: ActRanges | None = None,
    layers: Sequence[OnnxLayer] | None = None,
) -> onnx.ModelProto:
    """A copy of ``model`` with each layer of ``solution`` quantized to its option; ``model`` is untouched.

    ``solution`` is a :class:`~mpqopt.Result` or ``{layer: option}`` (layer names, or the framework
    names of :attr:`OnnxLayer.framework_name`, e.g. PyTorch module names); options of 32 bits and
    more leave the weight as is. ``scheme``: a :class:`~mpqopt.adapters.scheme.WeightScheme`, a dict with
    ``symmetric`` / ``per_channel`` / ``scale``, or None (symmetric per-channel min/max). ``mode``:
    ``"weights"`` or ``"qdq"`` (see the module docstring). ``act_ranges`` ``{layer: (lo, hi)}``
    quantizes the inputs of layers whose option has activation bits (at most 8), e.g. the torch
    adapter's ``calibrate_activations`` ranges; layers without a range keep float activations.
    """
    if mode not in MODES:
        raise ProblemError(f"mode must be one of {MODES}, got {mode!r}")
    sch = parse_scheme(scheme)
    m = load_model(model)
    layers = layers if layers is not None else discover_layers(m)
    rows = _resolved(m, solution, layers)
    # keyed by layer name, keeping the user's key (maybe a framework name) for error messages
    range_of = {layer.name: (key, act_ranges[key]) for key, layer in resolve_layers(layers, act_ranges).items()} if act_ranges else {}
    acts = any(quantizes_input(o) and n in range_of for n, (_, o) in rows.items())
    if mode == "qdq" and (acts or any(o.w <= _QDQ_MAX_BITS for _, o in rows.values())) and m.opset < 13:
        raise ProblemError(f"{m.source}: QuantizeLinear/DequantizeLinear export needs opset >= 13, the model has opset {m.opset}: "
                           "use mode='weights', or convert the model (onnx.version_converter.convert_version)")
    if acts and m.opset < 11:
        raise ProblemError(f"{m.source}: activation fake quantization needs opset >= 11 (Round, Clip with inputs), the model has opset {m.opset}")
    ed = _Editor(m)
    for name, (layer, opt) in rows.items():
        if opt.w < FULL_PRECISION_BITS:
            w = _float_weight(m, layer)
            axis = layer.weight_axis if sch.per_channel else None
            if mode == "qdq" and opt.w <= _QDQ_MAX_BITS:
                _qdq_weight(ed, m, layer, w, opt.w, axis, sch)
            else:
                ed.set_weight(layer, quantize_array(w, opt.w, axis, sch.symmetric, sch.scale).astype(w.dtype))
        if quantizes_input(opt) and name in range_of:
            if opt.a > 8:
                raise ProblemError(f"layer {name!r}: activation quantization in ONNX is exported for at most 8 bits, got {opt.a}")
            lo, hi = _range(range_of[name][1], range_of[name][0])
            ed.quantize_input(layer, opt.a, lo, hi, qdq=mode == "qdq")
    out = ed.finish()
    config = allocation_config({n: o for n, (_, o) in rows.items()}, [r[0] for r in rows.values()], scheme)
    config["mode"] = mode
    helper.set_model_props(out, {**{p.key: p.value for p in out.metadata_props}, "mpqopt.allocation": json.dumps(config)})
    return out


def _range(value: Any, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ProblemError(f"act_ranges[{name!r}] must be a (lo, hi) pair of numbers, got {value!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise ProblemError(f"act_ranges[{name!r}] = ({lo}, {hi}) must be finite with lo <= hi")
    return lo, hi


def _qdq_weight(ed: _Editor, m: OnnxModel, layer: OnnxLayer, w: np.ndarray, bits: int, axis: int | None, sch: WeightScheme) -> None:
    if w.dtype != np.float32:
        raise ProblemError(f"layer {layer.name!r}: mode='qdq' needs float32 weights, {layer.weight_name!r} is {w.dtype}; use mode='weights'")
    scale, zero = grid_params(w, bits, axis, sch.symmetric, sch.scale)
    qmin, qmax = grid_range(bits, sch.symmetric)
    shape = [1] * w.ndim
    if axis is not None and w.ndim > 1:
        shape[axis] = -1
    else:
        axis = None
    s, z = scale.reshape(shape), zero.reshape(shape)
    q = np.clip(np.round(w.astype(np.float32) / s) + z, qmin, qmax)
    dtype = np.int8 if sch.symmetric else np.uint8
    ed.dequantized_weight(layer, q.astype(dtype), scale.astype(np.float32), zero.astype(dtype), axis)


def save(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Save ``model`` to ``path``; a model over 2 GiB gets its weights in ``<name>.data`` beside it.

    The saved file loads back with :func:`~mpqopt.adapters.onnx.model.load_model` and runs in ONNX
    Runtime.
    """
    out = Path(path)
    if model.ByteSize() > _TWO_GIB:
        onnx.save_model(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True, location=out.name + ".data")
    else:
        onnx.save_model(model, str(out))
    return out
