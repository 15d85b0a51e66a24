"""Score an ONNX model with perturbed weights in ONE ONNX Runtime session.

:class:`OnnxEvaluator` rewrites the model once so the chosen weight tensors (initializers or
``Constant`` outputs) become graph inputs, builds a single ``InferenceSession`` (CPU, one intra-op
thread by default) and feeds the weights with every run: the stored FP32 values, or a perturbed
copy given in ``overrides``. No file and no session is made per perturbation. (Plain graph inputs
rather than "overridable initializers" because ONNX Runtime honours those only from IR version 4
and treats them differently across versions; feeding a weight costs nothing measurable: on
MiniLM-L3 a run with its 18 weights fed took the same time as the original model.)

A *batch* is a dict ``{input name: array}`` (with optional ``"labels"`` when no model input has
that name), an array (models with one input), or an ``(inputs, labels)`` tuple; ``inputs`` is a
list of batches (a single dict is one batch). Every batch is checked against the model's declared
inputs (names, dtype, rank, fixed and named dimensions) with an error naming the input.

Metrics (``metric=``), as in the torch adapter's :mod:`~mpqopt.adapters.torch.data`: ``"ce"``
cross-entropy to integer labels; ``"kl"`` KL(FP32 ‖ perturbed) of the softmax outputs (the last
axis holds the classes); ``"mse"`` and ``"cosine"`` (1 − cosine along the last axis) against the
FP32 output (embeddings); ``"auto"`` = ``"ce"`` when every batch has labels, else ``"kl"``; or a
callable ``metric(output, reference, labels) -> float``. Losses are computed in float64.

>>> from onnx import TensorProto, helper, numpy_helper
>>> w = numpy_helper.from_array(np.eye(3, dtype=np.float32), "w")
>>> g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], [w])
>>> model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
>>> ev = OnnxEvaluator(model, [{"x": np.ones((2, 3), np.float32)}], metric="mse", weights=["w"])
>>> ev.batch_losses().tolist(), ev.batch_losses({"w": 2 * np.eye(3, dtype=np.float32)}).tolist()
([0.0], [1.0])
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from ...errors import ProblemError
from ..losses import LOSS_NAMES, choose_loss
from .model import ModelLike, OnnxModel, load_model

METRICS = LOSS_NAMES
MetricFn = Callable[[np.ndarray, np.ndarray, Any], float]
_MAX_PROTO_BYTES = 2**31 - 1  # protobuf cannot serialise more: ONNX Runtime gets the model as bytes
# operator domains ONNX Runtime's CPU build registers kernels for
_KNOWN_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft", "com.microsoft.nchwc", "ai.onnx.training", "ai.onnx.preview.training")


# ------------------------------------------------------------------------------ metrics (numpy)
def _rows(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)


def _log_softmax(a: np.ndarray) -> np.ndarray:
    shifted = a - a.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _ce(out: np.ndarray, ref: np.ndarray, target: Any) -> float:
    logp = _log_softmax(_rows(out))
    return float(-logp[np.arange(logp.shape[0]), target].mean())


def _kl(out: np.ndarray, ref: np.ndarray, target: Any) -> float:
    # KL(ref || out) summed over classes, averaged over rows (torch's kl_div "batchmean")
    lr, lo = _log_softmax(_rows(ref)), _log_softmax(_rows(out))
    return float((np.exp(lr) * (lr - lo)).sum() / lr.shape[0])


def _mse(out: np.ndarray, ref: np.ndarray, target: Any) -> float:
    return float(np.mean(np.square(np.asarray(out, np.float64) - np.asarray(ref, np.float64))))


def _cosine(out: np.ndarray, ref: np.ndarray, target: Any) -> float:
    o, r = _rows(out), _rows(ref)
    eps = 1e-8  # torch.cosine_similarity's: an all-zero row has similarity 0, not NaN
    cos = (o * r).sum(axis=1) / (np.maximum(np.linalg.norm(o, axis=1), eps) * np.maximum(np.linalg.norm(r, axis=1), eps))
    return float(1.0 - cos.mean())


# the torch adapter has the same losses as torch ops (mpqopt/adapters/torch/data.py); these stay
# numpy: this adapter must not import torch
_METRIC_FNS: dict[str, MetricFn] = {"ce": _ce, "kl": _kl, "mse": _mse, "cosine": _cosine}


# ------------------------------------------------------------------------------ ORT errors
def _ort_text(exc: BaseException) -> str:
    """ONNX Runtime's message without its error-code prefix and C++ source location."""
    text = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", str(exc).strip())
    m = re.match(r"^/\S+:\d+\s", text)
    if m:  # "/src/file.cc:256 ret ns::Function(args...) message": drop through the signature's ")"
        depth, start = 0, m.end()
        for i, ch in enumerate(text[start:], start):
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    text = text[i + 1 :].strip()
                    break
    return text


def _session_error(model: OnnxModel, exc: BaseException) -> ProblemError:
    """Say why ONNX Runtime cannot load the model, in terms of the model."""
    text = _ort_text(exc)
    where = f"{model.source}: ONNX Runtime {ort.__version__} cannot run this model"
    ir = re.search(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)", text)
    if ir:
        return ProblemError(f"{where}: its IR version is {ir.group(1)} and this ONNX Runtime reads up to {ir.group(2)} "
                            f"(save it with an older onnx package, or lower model.ir_version if it uses no newer features)")
    opset = re.search(r"Opset (\d+) is under development.*?support for domain (\S+) is till opset (\d+)", text, re.S)
    if opset:
        return ProblemError(f"{where}: it uses opset {opset.group(1)} of domain {opset.group(2)}, newer than the "
                            f"opset {opset.group(3)} this ONNX Runtime supports (convert it with onnx.version_converter, or upgrade onnxruntime)")
    custom = [(n.name or n.op_type, n.op_type, n.domain) for n in model.graph.node if n.domain not in _KNOWN_DOMAINS]
    if custom and "not a registered function/op" in text:
        listed = ", ".join(f"{name!r} ({op} in domain {dom!r})" for name, op, dom in custom[:5])
        return ProblemError(f"{where}: node{'s' if len(custom) > 1 else ''} {listed} use{'' if len(custom) > 1 else 's'} operators it has no kernel for "
                            f"(custom ops must be registered with ONNX Runtime): {text}")
    return ProblemError(f"{where}: {text}")


def make_session(proto: onnx.ModelProto, model: OnnxModel, threads: int = 1) -> ort.InferenceSession:
    """One CPU ``InferenceSession`` for ``proto`` with ``threads`` intra-op threads; ONNX Runtime's
    load errors become a :class:`~mpqopt.errors.ProblemError` saying what in the model is at fault."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ProblemError(f"threads must be a positive integer, got {threads!r}")
    if proto.ByteSize() > _MAX_PROTO_BYTES:
        raise ProblemError(f"{model.source}: the model is over 2 GB, which cannot be handed to ONNX Runtime in memory; not supported yet")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # warnings about unused initializers etc. are noise here
    try:
        return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
        raise _session_error(model, exc) from None


# ------------------------------------------------------------------------------ the rewrite
def expose_weights(model: OnnxModel, weights: Sequence[str], output: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A copy of the model where each tensor of ``weights`` is a graph input (its initializer or
    ``Constant`` node removed) and ``output`` a graph output; and the weights' stored values."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    g = proto.graph
    values: dict[str, np.ndarray] = {}
    for name in weights:
        if name in values:
            continue
        value = model.constant(name)
        if value is None:
            kind = model.producers[name].op_type if name in model.producers else "graph input" if name in model.inputs else "unknown tensor"
            raise ProblemError(f"{model.source}: weight {name!r} is not an initializer or Constant output ({kind}); only stored weights can be perturbed")
        values[name] = np.ascontiguousarray(value)
    if values:
        keep = [t for t in g.initializer if t.name not in values]
        del g.initializer[:]
        g.initializer.extend(keep)
        nodes = [n for n in g.node if not (n.op_type == "Constant" and n.output and n.output[0] in values)]
        del g.node[:]
        g.node.extend(nodes)
        declared = {i.name for i in g.input}  # IR < 4 models list initializers as inputs already
        for name, value in values.items():
            if name not in declared:
                g.input.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)))
    if output not in {o.name for o in g.output}:
        g.output.append(onnx.ValueInfoProto(name=output))  # an intermediate tensor: ORT infers its type
    return proto, values


# ------------------------------------------------------------------------------ batches
def _declared(model: OnnxModel) -> dict[str, tuple[np.dtype | None, tuple[int | str | None, ...] | None]]:
    """Per runtime input: numpy dtype (None if not a tensor) and dims (int, dim name, or None)."""
    out = {}
    by_name = {i.name: i for i in model.graph.input}
    for name in model.inputs:
        t = by_name[name].type
        if not t.HasField("tensor_type"):
            out[name] = (None, None)
            continue
        dtype = helper.tensor_dtype_to_np_dtype(t.tensor_type.elem_type) if t.tensor_type.elem_type else None
        dims = None
        if t.tensor_type.HasField("shape"):
            dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None) for d in t.tensor_type.shape.dim)
        out[name] = (np.dtype(dtype) if dtype is not None else None, dims)
    return out


def _fmt_dims(dims: tuple[int | str | None, ...]) -> str:
    return "[" + ", ".join("?" if d is None else repr(d) if isinstance(d, str) else str(d) for d in dims) + "]"


def _split(batch: Any, index: int, names: list[str]) -> tuple[dict[str, Any], Any]:
    """``(inputs, labels)`` of one batch (labels None when absent)."""
    if isinstance(batch, tuple) and len(batch) in (1, 2):
        inputs, target = batch if len(batch) == 2 else (batch[0], None)
    else:
        inputs, target = batch, None
    if isinstance(inputs, np.ndarray):
        if len(names) != 1:
            raise ProblemError(f"batch {index} is a single array, but the model has {len(names)} inputs {names}: give a dict {{input name: array}}")
        inputs = {names[0]: inputs}
    if not isinstance(inputs, Mapping):
        raise ProblemError(f"batch {index} is a {type(inputs).__name__}: expected a dict {{input name: array}}, an array, or an (inputs, labels) tuple")
    inputs = dict(inputs)
    if "labels" in inputs and "labels" not in names:
        if target is not None:
            raise ProblemError(f"batch {index} gives labels twice (a 'labels' entry and a tuple's second item)")
        target = inputs.pop("labels")
    return inputs, target


def _check_inputs(inputs: dict[str, Any], index: int, declared: Mapping[str, tuple[Any, Any]], weights: Iterable[str]) -> dict[str, np.ndarray]:
    """The batch's arrays, checked against the model's declared inputs."""
    weights = set(weights)
    expected = list(declared)
    for name in inputs:
        if name not in declared:
            why = " (a weight: perturb it through the estimator, not the batch)" if name in weights else ""
            raise ProblemError(f"batch {index} has input {name!r}, which the model does not take{why}; its inputs are {expected}")
    missing = [n for n in expected if n not in inputs]
    if missing:
        raise ProblemError(f"batch {index} lacks model input{'s' if len(missing) > 1 else ''} {missing}; the model takes {expected}")
    feeds: dict[str, np.ndarray] = {}
    sizes: dict[str, tuple[int, str]] = {}  # named dimension -> (size, where first seen)
    for name in expected:
        dtype, dims = declared[name]
        try:
            arr = np.asarray(inputs[name])
        except Exception as exc:  # noqa: BLE001 - ragged lists and other non-arrays
            raise ProblemError(f"batch {index}: input {name!r} is not an array ({type(exc).__name__}: {exc})") from None
        if dtype is not None and arr.dtype != dtype:
            raise ProblemError(f"batch {index}: input {name!r} has dtype {arr.dtype}, the model expects {dtype} (convert with .astype(np.{dtype.name}))")
        if dims is not None:
            if arr.ndim != len(dims):
                raise ProblemError(f"batch {index}: input {name!r} has shape {list(arr.shape)} (rank {arr.ndim}), the model expects rank {len(dims)}: {_fmt_dims(dims)}")
            for axis, (d, size) in enumerate(zip(dims, arr.shape)):
                if isinstance(d, int) and d != size:
                    raise ProblemError(f"batch {index}: input {name!r} has shape {list(arr.shape)}, the model expects {_fmt_dims(dims)} (dim {axis} must be {d})")
                if isinstance(d, str):
                    seen = sizes.setdefault(d, (size, f"{name!r} dim {axis}"))
                    if seen[0] != size:
                        raise ProblemError(f"batch {index}: dimension {d!r} is {seen[0]} in input {seen[1]} but {size} in input {name!r} dim {axis}")
        feeds[name] = np.ascontiguousarray(arr)
    return feeds


def _batches(inputs: Any) -> list[Any]:
    if isinstance(inputs, (Mapping, np.ndarray)):
        return [inputs]  # one batch
    try:
        batches = list(inputs)
    except TypeError:
        raise ProblemError(f"inputs must be a list of batches (dicts {{input name: array}}), got {type(inputs).__name__}") from None
    if not batches:
        raise ProblemError("inputs is empty: give at least one calibration batch")
    return batches


# ------------------------------------------------------------------------------ the evaluator
class OnnxEvaluator:
    """Scores ``model`` on fixed calibration batches with any of ``weights`` replaced.

    ``output`` names the scored tensor (default: the first graph output; an intermediate tensor is
    made an output). ``labels`` gives one label array per batch (or put them in the batches). The
    FP32 reference outputs are computed at construction; :meth:`batch_losses` then scores one
    perturbation per call. ``runs`` counts model runs on one batch (the references included).
    """

    def __init__(
        self,
        model: ModelLike,
        inputs: Any,
        output: str | None = None,
        metric: str | MetricFn = "auto",
        labels: Sequence[Any] | None = None,
        weights: Sequence[str] = (),
        *,
        threads: int = 1,
    ):
        self.model = load_model(model)
        m = self.model
        outputs = [o.name for o in m.graph.output]
        if output is None:
            output = outputs[0]
        elif output not in outputs and output not in m.producers:
            raise ProblemError(f"{m.source}: no tensor named {output!r} to score; graph outputs are {outputs}")
        self.output_name = output
        if isinstance(weights, str):
            weights = [weights]
        declared = _declared(m)
        names = list(declared)
        self.batches: list[tuple[dict[str, np.ndarray], Any]] = []
        raw = _batches(inputs)
        if labels is not None:
            labels = list(labels)
            if len(labels) != len(raw):
                raise ProblemError(f"labels has {len(labels)} entries for {len(raw)} batches: give one label array per batch")
        for b, batch in enumerate(raw):
            ins, target = _split(batch, b, names)
            if labels is not None:
                if target is not None:
                    raise ProblemError(f"batch {b} carries labels and labels= gives them too: give them once")
                target = labels[b]
            self.batches.append((_check_inputs(ins, b, declared, weights), target))
        self.metric_name, self._metric = choose_loss(metric, [t is not None for _, t in self.batches], _METRIC_FNS, what="metric",
                                                     target="labels", fix="pass labels= or use metric='kl'")
        proto, self.weights = expose_weights(m, list(weights), output)
        self.session = make_session(proto, m, threads)
        self.runs = 0
        self.references = [self.run(b) for b in range(self.num_batches)]
        if self.metric_name == "ce":
            self.batches = [(feeds, self._check_labels(b, target)) for b, (feeds, target) in enumerate(self.batches)]
        self.base_losses = self.batch_losses_of(self.references)

    def _check_labels(self, b: int, target: Any) -> np.ndarray:
        ref = self.references[b]
        rows = int(np.prod(ref.shape[:-1])) if ref.ndim > 1 else 1
        classes = ref.shape[-1] if ref.ndim else 1
        t = np.asarray(target)
        if not np.issubdtype(t.dtype, np.integer):
            raise ProblemError(f"batch {b}: metric 'ce' needs integer class labels, got dtype {t.dtype}")
        if t.size != rows:
            raise ProblemError(f"batch {b}: {t.size} labels for output {self.output_name!r} of shape {list(ref.shape)} ({rows} rows of {classes} classes)")
        if t.size and (t.min() < 0 or t.max() >= classes):
            raise ProblemError(f"batch {b}: labels must lie in [0, {classes}) for output {self.output_name!r}, got {int(t.min())}..{int(t.max())}")
        return t.reshape(-1)

    @property
    def num_batches(self) -> int:
        return len(self.batches)

    def _feeds(self, index: int, overrides: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        feeds = {**self.batches[index][0], **self.weights}
        for name, value in (overrides or {}).items():
            stored = self.weights.get(name)
            if stored is None:
                raise ProblemError(f"cannot override {name!r}: it is not one of the evaluator's weights {list(self.weights)[:8]}{'...' if len(self.weights) > 8 else ''}")
            value = np.asarray(value)
            if value.shape != stored.shape:
                raise ProblemError(f"override of weight {name!r} has shape {list(value.shape)}, the stored weight {list(stored.shape)}")
            feeds[name] = np.ascontiguousarray(value, dtype=stored.dtype)
        return feeds

    def run(self, index: int, overrides: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """The scored output on batch ``index`` with ``overrides`` (weight name -> array) in place."""
        feeds = self._feeds(index, overrides)
        try:
            out = self.session.run([self.output_name], feeds)[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime's pybind exception types
            raise ProblemError(f"{self.model.source}: ONNX Runtime failed on batch {index}: {_ort_text(exc)}") from None
        self.runs += 1
        return np.asarray(out)

    def loss_of(self, index: int, output: np.ndarray) -> float:
        """The metric of ``output`` against batch ``index``'s reference (and labels)."""
        try:
            return float(self._metric(output, self.references[index], self.batches[index][1]))
        except (ValueError, IndexError, TypeError) as exc:
            raise ProblemError(f"metric '{self.metric_name}' failed on batch {index}: {exc}") from None

    def batch_losses_of(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        return np.array([self.loss_of(b, out) for b, out in enumerate(outputs)])

    def batch_losses(self, overrides: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """The loss of every batch with ``overrides`` in place (none: the FP32 model)."""
        return np.array([self.loss_of(b, self.run(b, overrides)) for b in range(self.num_batches)])
