"""Re-run only the part of an ONNX graph that a perturbed weight changes, from cached FP32 tensors.

Quantizing one weight changes only the nodes downstream of it. :func:`plan_suffix` finds them (those
the scored output needs) and the tensors they read that were computed before them, in FP32: the
layer's input, and every other earlier tensor the rest of the graph reads (a residual branch's skip
tensor, a graph input read again further on). :class:`SuffixRuns` computes those tensors once per
batch in one FP32 pass (a session of the whole graph with them made graph outputs), builds one
ONNX Runtime session per layer for its suffix (once, not per batch) and feeds it the cached tensors
with the perturbed weight. Nodes whose inputs are all constants (shape arithmetic) stay in a suffix
so ONNX Runtime folds them there as in the whole graph.

A layer runs the whole graph instead (its reason in :attr:`SuffixRuns.reasons`) when its suffix
leaves out nothing that computes (only shape and value-moving ops come before it), when its
suffix's FP32 output on the first batch is not the whole graph's (nondeterministic ops, a fusion
that rounds differently), or (``mode="auto"``) when its runs would save less time than its session
costs to build; the whole model does when a node holds a subgraph (``If``, ``Loop``,
``Scan``: their outer-scope reads are not sliced) or the nodes are not in topological order.

>>> import numpy as np
>>> from onnx import TensorProto, helper, numpy_helper
>>> w = {n: numpy_helper.from_array(np.ones((4, 4), np.float32), n) for n in ("w1", "w2")}
>>> g = helper.make_graph([helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
...     helper.make_node("Add", ["r", "x"], ["s"]), helper.make_node("MatMul", ["s", "w2"], ["y"])], "g",
...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(w.values()))
>>> plan_suffix(g, "w2", "y", {"w1", "w2"})
Suffix(nodes=(3,), cached=('s',), weights=('w2',))
>>> plan_suffix(g, "w1", "y", {"w1", "w2"})   # the skip connection reads x again
Suffix(nodes=(0, 1, 2, 3), cached=('x',), weights=('w1', 'w2'))
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from ...errors import ProblemError
from .graph import ACT_PASS_OPS
from .runtime import OnnxEvaluator, _ort_text, expose_weights, make_session

MODES = ("auto", "suffix", "full")
# ops that only move values or compute shapes: a suffix that leaves out only these saves nothing
_CHEAP_OPS = ACT_PASS_OPS | {"Shape", "Size", "Constant", "ConstantOfShape", "Gather", "Concat", "Slice"}
# ops whose outputs are not functions of their inputs: never treated as constants
_RANDOM_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"})


@dataclass(frozen=True)
class Suffix:
    """The nodes (indices into ``graph.node``, in graph order) a perturbed weight changes that the
    output needs, with the constant-only nodes they read; ``cached``: the tensors computed before
    them (or graph inputs) they read; ``weights``: the fed weights they read."""

    nodes: tuple[int, ...]
    cached: tuple[str, ...]
    weights: tuple[str, ...]


def unsliceable(graph: onnx.GraphProto, fed: set[str]) -> str:
    """Why no suffix of ``graph`` can be run on its own ("" when they can)."""
    known = fed | {t.name for t in graph.initializer} | {t.name for t in graph.sparse_initializer} | {i.name for i in graph.input}
    for node in graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            return f"node {node.name or node.op_type!r} ({node.op_type}) holds a subgraph, whose outer-scope reads are not sliced"
        missing = [t for t in node.input if t and t not in known]
        if missing:
            return f"node {node.name or node.op_type!r} reads {missing[0]!r} before it is computed (nodes not in topological order)"
        known.update(node.output)
    return ""


class NodeTable:
    """A graph's nodes as plain tuples ``(op_type, inputs, outputs)`` (empty names dropped) and its
    constant tensors: initializers not in ``fed``, and outputs of nodes computed from constants
    only (``Constant``, shape arithmetic on initializers; never random ops). Built once per graph:
    protobuf field access is slow."""

    def __init__(self, graph: onnx.GraphProto, fed: set[str]):
        self.nodes = [(n.op_type, tuple(t for t in n.input if t), tuple(t for t in n.output if t)) for n in graph.node]
        self.fed = set(fed)
        self.const = ({t.name for t in graph.initializer} | {t.name for t in graph.sparse_initializer}) - self.fed
        for op, ins, outs in self.nodes:
            if op not in _RANDOM_OPS and (op == "Constant" or (ins and all(t in self.const for t in ins))):
                self.const.update(outs)

    def ancestors(self, output: str) -> set[int]:
        """Indices of the nodes ``output`` is computed from."""
        need, out = {output}, set()
        for idx in reversed(range(len(self.nodes))):
            _, ins, outs = self.nodes[idx]
            if any(t in need for t in outs):
                out.add(idx)
                need.update(ins)
        return out


def plan_suffix(graph: onnx.GraphProto | NodeTable, weight: str, output: str, fed: set[str] | None = None) -> Suffix:
    """The suffix of ``graph`` that perturbing ``weight`` changes, for scoring ``output``.

    ``fed``: tensors fed at run time besides the graph's inputs (the exposed weights), never
    constants (with a :class:`NodeTable`, its own). ``graph`` must pass :func:`unsliceable`. An empty
    ``nodes`` means the weight does not reach ``output``.
    """
    table = graph if isinstance(graph, NodeTable) else NodeTable(graph, fed or set())
    nodes, const = table.nodes, table.const
    changed = {weight}
    affected = set()
    for idx, (_, ins, outs) in enumerate(nodes):
        if any(t in changed for t in ins):
            affected.add(idx)
            changed.update(outs)
    if output not in changed:
        return Suffix((), (), ())
    keep, need = [], {output}
    for idx in reversed(range(len(nodes))):
        _, ins, outs = nodes[idx]
        if any(t in need for t in outs) and (idx in affected or all(t in const for t in outs)):
            keep.append(idx)
            need.update(ins)
    keep.reverse()
    made = {t for idx in keep for t in nodes[idx][2]}
    read = list(dict.fromkeys(t for idx in keep for t in nodes[idx][1] if t not in made and t not in const))
    return Suffix(tuple(keep), tuple(t for t in read if t not in table.fed), tuple(t for t in read if t in table.fed))


def suffix_model(proto: onnx.ModelProto, suffix: Suffix, output: str, examples: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """A model of ``suffix``'s nodes: graph inputs are its cached tensors (dtype and rank of
    ``examples``, every dimension dynamic) and its weights (as declared in ``proto``)."""
    g = proto.graph
    nodes = [g.node[i] for i in suffix.nodes]
    reads = {t for n in nodes for t in n.input}
    declared = {i.name: i for i in g.input}
    inputs = [helper.make_tensor_value_info(t, helper.np_dtype_to_tensor_dtype(examples[t].dtype), [f"{t}_d{a}" for a in range(examples[t].ndim)])
              for t in suffix.cached]
    inputs += [declared[t] for t in suffix.weights]
    inits = [t for t in g.initializer if t.name in reads]
    inputs += [declared[t.name] for t in inits if t.name in declared]  # IR < 4 lists initializers as inputs too
    made = {t for n in nodes for t in n.output}
    value_info = [v for v in g.value_info if v.name in made and v.name != output]
    outputs = [o for o in g.output if o.name == output] or [onnx.ValueInfoProto(name=output)]
    graph = helper.make_graph(nodes, f"{g.name}_suffix", inputs, outputs, inits, value_info=value_info,
                              sparse_initializer=[t for t in g.sparse_initializer if t.values.name in reads])
    model = helper.make_model(graph, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
    model.functions.extend(proto.functions)
    return model


def _steps(table: NodeTable, output: str) -> int:
    """Nodes of a whole-graph run: the output's ancestors, less ``Constant`` nodes holding fed weights."""
    return sum(1 for j in table.ancestors(output) if not set(table.nodes[j][2]) <= table.fed)


def check_mode(mode: str) -> str:
    """``mode`` when it is one of :data:`MODES`, else an error listing them."""
    if mode not in MODES:
        raise ProblemError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


class SuffixRuns:
    """Score one perturbed weight at a time by running only its layer's suffix.

    ``weights``: the perturbed weight of each layer (all exposed by ``ev``); ``evaluations``: the
    runs each layer's suffix will get (one number, or one per layer); ``threads``: intra-op
    threads of the sessions it makes. Call :meth:`load` with a batch index (one FP32 pass caching
    the tensors every suffix reads), then :meth:`run` for any layer and weight value, or
    :meth:`run_many` for several layers at once (the suffix of one of them when it holds the
    others' changes). Runs are counted in ``ev.runs``; ``steps`` counts the nodes they ran and
    ``full_steps`` the nodes of a whole-graph run. Memory: one session per layer whose suffix
    runs, and one batch's cached tensors.

    ``mode="suffix"``: every layer whose suffix can run alone does; ``"auto"``: only where the time
    it saves pays for building its session, estimated from the caching session's build time and
    one timed whole-graph run (so on a few short runs it may choose the whole graph: same table);
    ``"full"``: the whole graph for every layer (the reference).
    """

    def __init__(self, ev: OnnxEvaluator, weights: Sequence[str], *, evaluations: int | Sequence[int] = 1, mode: str = "auto", threads: int = 1):
        check_mode(mode)
        self.ev, self.weights, self.threads, self.policy = ev, list(weights), threads, mode
        self.evaluations = [evaluations] * len(self.weights) if isinstance(evaluations, int) else list(evaluations)
        self.plans: dict[int, frozenset[int]] = {}  # layer -> the nodes its weight changes that the output needs
        self.suffixes: dict[int, Suffix] = {}
        self.sessions: dict[int, object] = {}
        self.reasons: dict[int, str] = {}  # layer index -> why it runs the whole graph
        self.reason = "mode='full'" if mode == "full" else ""  # why no layer runs a suffix
        self.steps = 0
        self.cache: dict[str, np.ndarray] = {}
        self._batch = -1
        self._cache_session = None
        self._cached: list[str] = []
        fed = set(ev.weights)
        if mode == "full":  # no copy of the model
            self.full_steps = _steps(NodeTable(ev.model.graph, fed), ev.output_name)
            return
        proto, _ = expose_weights(ev.model, list(ev.weights), ev.output_name)
        g = proto.graph
        table = NodeTable(g, fed)
        whole = table.ancestors(ev.output_name)
        self.full_steps = _steps(table, ev.output_name)
        self.reason = unsliceable(g, fed)
        if self.reason:
            return
        for i, w in enumerate(self.weights):
            s = plan_suffix(table, w, ev.output_name)
            self.plans[i] = frozenset(s.nodes)
            if s.nodes and all(table.nodes[j][0] in _CHEAP_OPS for j in whole.difference(s.nodes)):
                self.reasons[i] = "its suffix is the whole graph"
            else:
                self.suffixes[i] = s
        if not self.suffixes:
            self.reason = "no layer's suffix leaves out a computing node"
            return
        self._build(proto)

    def _build(self, proto: onnx.ModelProto) -> None:
        ev = self.ev
        model_inputs = set(ev.model.inputs)
        self._cached = list(dict.fromkeys(t for s in self.suffixes.values() for t in s.cached if t not in model_inputs))
        built = 0.0  # seconds to build a session of the whole graph
        if self._cached:
            g = proto.graph
            have = {o.name for o in g.output}
            g.output.extend(onnx.ValueInfoProto(name=t) for t in self._cached if t not in have)
            try:
                started = time.perf_counter()
                self._cache_session = make_session(proto, ev.model, self.threads)
                built = time.perf_counter() - started
                self.load(0)  # here: an error in it is a reason to fall back
            except ProblemError as exc:
                self.reasons.update((i, "the FP32 caching pass fails") for i in self.suffixes)
                self.suffixes, self._cache_session, self.reason = {}, None, f"the FP32 pass caching the suffixes' inputs fails: {exc}"
                return
            finally:
                del g.output[len(have):]  # the suffix models copy this proto's outputs: only the scored one
        self.load(0)
        ref = ev.references[0]
        if self.policy == "auto":
            started = time.perf_counter()
            ev.run(0)  # a whole-graph run in steady state, timed
            run_s = time.perf_counter() - started
            self.steps += self.full_steps
        saved = 0.0
        for i, s in list(self.suffixes.items()):
            if not s.nodes:
                continue  # the weight does not reach the output: the FP32 output, no run
            share = len(s.nodes) / self.full_steps
            if self.policy == "auto":
                gain, cost = self.evaluations[i] * run_s * (1 - share), (built + run_s) * share  # its session's build and check
                if gain <= cost:
                    self._drop(i, f"its {self.evaluations[i]} runs would save about {gain * 1e3:.3g} ms, less than its session costs ({cost * 1e3:.3g} ms)")
                    continue
                saved += gain - cost
            try:
                session = make_session(suffix_model(proto, s, ev.output_name, self.cache), ev.model, self.threads)
                out = self._run(session, s, {})
            except Exception as exc:  # noqa: BLE001 - a tensor type a graph input cannot take, ORT's own errors
                self._drop(i, f"its suffix does not run on its own: {type(exc).__name__}: {exc}")
                continue
            if out.shape != ref.shape or not np.array_equal(out, ref):
                diff = float(np.max(np.abs(out.astype(np.float64) - ref))) if out.shape == ref.shape else float("nan")
                self._drop(i, f"its suffix's FP32 output differs from the whole graph's on batch 0 (max abs diff {diff:.3g})")
                continue
            self.sessions[i] = session
        if self.policy == "auto" and self.sessions and self._cache_session is not None and saved <= (ev.num_batches - 1) * run_s:
            for i in self.sessions:
                self._drop(i, "the suffixes save less than the caching passes cost")
            self.sessions = {}
        if not self.sessions:  # nothing left reads the cache
            self._cache_session, self.cache, self._batch = None, {}, -1
        if self.suffixes:
            return
        if any("differs" in r for r in self.reasons.values()):
            self.reason = "no layer's suffix reproduced the whole graph's output"
        else:
            self.reason = "no layer's suffix pays for its session" if self.policy == "auto" else "no layer's suffix runs on its own"

    def _drop(self, i: int, why: str) -> None:
        del self.suffixes[i]
        self.reasons[i] = why

    @property
    def mode(self) -> str:
        """``"suffix"`` when some layer runs only its suffix, else ``"full"``."""
        return "suffix" if self.suffixes else "full"

    def load(self, b: int) -> None:
        """Cache the tensors the suffixes read on batch ``b`` (one FP32 pass; none in full mode)."""
        if not self.suffixes or b == self._batch:
            return
        feeds = self.ev.batches[b][0]
        self.cache = dict(feeds)
        if self._cache_session is not None:
            try:
                values = self._cache_session.run(self._cached, {**feeds, **self.ev.weights})
            except Exception as exc:  # noqa: BLE001 - onnxruntime's pybind exception types
                raise ProblemError(f"{self.ev.model.source}: ONNX Runtime failed on batch {b}: {_ort_text(exc)}") from None
            self.cache.update(zip(self._cached, values))
            self.ev.runs += 1
            self.steps += self.full_steps
        self._batch = b

    def _run(self, session: object, s: Suffix, overrides: Mapping[str, np.ndarray]) -> np.ndarray:
        feeds = {t: self.cache[t] for t in s.cached}
        feeds.update((t, overrides.get(t, self.ev.weights[t])) for t in s.weights)
        try:
            out = session.run([self.ev.output_name], feeds)[0]  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - onnxruntime's pybind exception types
            raise ProblemError(f"{self.ev.model.source}: ONNX Runtime failed on batch {self._batch}: {_ort_text(exc)}") from None
        return np.asarray(out)

    def run(self, b: int, i: int, value: np.ndarray) -> np.ndarray:
        """The scored output on batch ``b`` with layer ``i``'s weight set to ``value``."""
        name = self.weights[i]
        s = self.suffixes.get(i)
        if s is None:
            self.steps += self.full_steps
            return self.ev.run(b, {name: value})
        if not s.nodes:
            return self.ev.references[b]
        self.load(b)
        out = self._run(self.sessions[i], s, {name: np.ascontiguousarray(value, dtype=self.ev.weights[name].dtype)})
        self.ev.runs += 1
        self.steps += len(s.nodes)
        return out

    def run_many(self, b: int, changes: Mapping[int, np.ndarray]) -> np.ndarray:
        """The scored output on batch ``b`` with each layer of ``changes`` set to its value: the
        suffix of a layer whose suffix holds every node the others change, else the whole graph."""
        if len(changes) == 1:
            (i, value), = changes.items()
            return self.run(b, i, value)
        for i in changes:
            s = self.suffixes.get(i)
            if s is not None and s.nodes and all(self.plans[j] <= self.plans[i] for j in changes):
                self.load(b)
                out = self._run(self.sessions[i], s, {self.weights[j]: np.ascontiguousarray(v, dtype=self.ev.weights[self.weights[j]].dtype) for j, v in changes.items()})
                self.ev.runs += 1
                self.steps += len(s.nodes)
                return out
        self.steps += self.full_steps
        return self.ev.run(b, {self.weights[j]: v for j, v in changes.items()})
