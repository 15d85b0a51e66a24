"""Which quantizable layers read the same input tensor, and so share one input (activation) quantizer.

A layer's activation quantizer sits on its input; layers fed by the same tensor (a residual block's
first conv and its downsample conv, attention q/k/v, an MLP's gate and up projections) must agree on
its bit-width, so mpqopt ties them. The dataflow graph comes from a ``torch.fx`` symbolic trace turned
into a ``networkx.DiGraph``; a layer's input is the node feeding it after walking back through ops
that only reshape or pass values through (view, reshape, flatten, permute, transpose, contiguous,
(un)squeeze, expand, clone, detach, Identity, Dropout in eval mode). Ops that change values (ReLU,
BatchNorm, add...) produce a new tensor, hence a new quantizer.

When fx cannot trace the model (data-dependent control flow; many Hugging Face models), one forward
on an example input records, with hooks, which layers received the very same tensor data (same
storage, offset and element count for dense tensors; the same tensor object otherwise). This finds
the same groups when layers read one tensor directly or through views, but not through copies
(``.contiguous()`` of a transposed tensor, ``.to()``). :class:`Ties` says which method was used.

>>> import torch
>>> from torch import nn
>>> class MLP(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.gate, self.up, self.down = nn.Linear(4, 8), nn.Linear(4, 8), nn.Linear(8, 4)
...     def forward(self, x):
...         return self.down(torch.relu(self.gate(x)) * self.up(x))
>>> t = find_ties(MLP(), ["gate", "up", "down"])
>>> t.groups, t.method
((('gate', 'up'),), 'fx')
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Iterable, Mapping, Sequence

import networkx as nx
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ...errors import ProblemError
from ..ties import ModelGraph, Ties, TieSpec, resolve_ties, same_input_groups
from .costs import run_hooked
from .layers import resolve_layer_names

__all__ = ["find_ties", "model_graph", "fx_graph", "hook_graph", "same_input_groups", "LeafTracer", "mutates", "ModelGraph", "Ties", "TieSpec"]

# ops whose output holds the same values as their first input (so the same quantizer applies)
_PASS_METHODS = frozenset({
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "permute", "transpose", "t",
    "contiguous", "unsqueeze", "squeeze", "expand", "expand_as", "clone", "detach",
})
_PASS_FUNCTIONS = frozenset({
    torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze, torch.unsqueeze, torch.t,
    torch.clone, torch.detach, torch.unflatten, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
})
_PASS_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Flatten, nn.Unflatten)


# ------------------------------------------------------------------------------ fx
class LeafTracer(fx.Tracer):
    """Keeps quantizable layers as single call_module nodes even when they subclass nn.Linear/Conv
    outside torch.nn (fx would otherwise trace into them)."""

    def __init__(self, leaves: set[str]):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaves or super().is_leaf_module(m, qualname)


def _passes_through(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    if node.op == "call_method":
        return node.target in _PASS_METHODS
    if node.op == "call_function":
        return node.target in _PASS_FUNCTIONS
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), _PASS_MODULES)
    return False


def _source(node: fx.Node, modules: Mapping[str, nn.Module]) -> fx.Node:
    """Walk back from a layer's input through value-preserving ops to the tensor's producer."""
    while _passes_through(node, modules) and node.args and isinstance(node.args[0], fx.Node):
        node = node.args[0]
    return node


_INPLACE_OPERATORS = frozenset({operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv, operator.imod, operator.ipow, operator.iand, operator.ior, operator.ixor})


def mutates(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    """True when ``node`` writes into its first input in place (``relu_``, ``inplace=True``, ``+=``)."""
    if node.kwargs.get("inplace") is True:
        return True
    if node.op == "call_method":
        return str(node.target).endswith("_") and not str(node.target).startswith("__")
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        return node.target in _INPLACE_OPERATORS or (name.endswith("_") and not name.startswith("__"))
    if node.op == "call_module":
        return getattr(modules.get(str(node.target)), "inplace", False) is True
    return False


def fx_graph(model: nn.Module, layers: Sequence[str]) -> ModelGraph:
    """Trace ``model`` with ``torch.fx`` (raises whatever fx raises when it cannot).

    A tensor written in place (``relu_``, ``inplace=True``) between two layers' reads holds different
    values for each, so its reads are told apart by a version suffix (``node@1``).
    """
    leaves = set(layers)
    traced = LeafTracer(leaves).trace(model)
    modules = dict(model.named_modules())
    g = nx.DiGraph()
    inputs: dict[str, list[str]] = {}
    versions: dict[str, int] = {}
    for node in traced.nodes:
        attrs: dict[str, Any] = {"op": node.op, "target": str(node.target) if node.op != "call_function" else getattr(node.target, "__name__", str(node.target))}
        first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        if node.op == "call_module" and node.target in leaves:
            attrs["layer"] = node.target
            if first is not None:
                src = _source(first, modules).name
                version = versions.get(src, 0)
                inputs.setdefault(str(node.target), []).append(f"{src}@{version}" if version else src)
        elif first is not None and mutates(node, modules):
            src = _source(first, modules).name  # writing into a view writes into its base
            versions[src] = versions.get(src, 0) + 1
        g.add_node(node.name, **attrs)
        for src_node in node.all_input_nodes:
            g.add_edge(src_node.name, node.name)
    missing = [name for name in layers if name not in inputs]
    if missing:
        raise _FxIncomplete(f"the fx graph never calls layers {missing[:5]} as modules")
    return ModelGraph(g, {name: tuple(dict.fromkeys(inputs[name])) for name in layers}, "fx")


class _FxIncomplete(Exception):
    pass


# ------------------------------------------------------------------------------ hooks
def _dense(t: torch.Tensor) -> bool:
    """True when ``t`` covers exactly ``numel`` consecutive storage elements in some dim order
    (a contiguous tensor or a permutation of one), so equal (storage, offset, numel) means equal data."""
    dims = sorted((s, n) for s, n in zip(t.stride(), t.shape) if n > 1)
    expected = 1
    for stride, size in dims:
        if stride != expected:
            return False
        expected *= size
    return True


def _tensor_key(t: torch.Tensor) -> tuple:
    # the version counter tells apart reads before and after an in-place write into the same memory
    try:
        version = t._version
    except RuntimeError:  # inference-mode tensors have no version counter (and cannot be written in place)
        version = 0
    if _dense(t):
        return ("data", t.untyped_storage().data_ptr(), t.storage_offset(), t.numel(), t.dtype, version)
    return ("object", id(t), version)


def hook_graph(model: nn.Module, layers: Sequence[str], example_input: Any, reason: str = "") -> ModelGraph:
    """One forward on ``example_input``, recording which layers received the same input data."""
    modules = resolve_layer_names(model, layers)
    keys: dict[tuple, str] = {}
    inputs: dict[str, list[str]] = {}
    keep: list[torch.Tensor] = []  # held until the end so no freed storage is reused by a later tensor

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple) -> None:
            if not args or not isinstance(args[0], torch.Tensor):
                return
            keep.append(args[0])
            node = keys.setdefault(_tensor_key(args[0]), f"input{len(keys)}")
            inputs.setdefault(name, []).append(node)

        return record

    run_hooked(model, example_input, [m.register_forward_pre_hook(hook(n)) for n, m in modules.items()])
    g = nx.DiGraph()
    for node in keys.values():
        g.add_node(node, op="tensor", target="")
    for name, nodes in inputs.items():
        g.add_node(name, op="call_module", target=name, layer=name)
        for node in nodes:
            g.add_edge(node, name)
    return ModelGraph(g, {name: tuple(dict.fromkeys(inputs.get(name, ()))) for name in layers}, "hooks", reason)


def model_graph(model: nn.Module, layers: Sequence[str], example_input: Any = None) -> ModelGraph:
    """The fx graph, or the hook-recorded one when fx cannot trace ``model`` (needs ``example_input``)."""
    try:
        return fx_graph(model, layers)
    except _FxIncomplete as exc:
        reason = f"torch.fx traced {type(model).__name__}, but {exc}"
    except Exception as exc:  # noqa: BLE001 - fx fails in many ways (TraceError, TypeError, NotImplementedError...)
        reason = f"torch.fx could not trace {type(model).__name__}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    if example_input is None:
        raise ProblemError(f"{reason}; give an example input so shared inputs can be recorded with hooks, or pass ties=None or explicit tie groups")
    return hook_graph(model, layers, example_input, reason)


# ------------------------------------------------------------------------------ user-facing
def find_ties(
    model: nn.Module,
    layers: Sequence[str],
    ties: TieSpec = "auto",
    *,
    example_input: Any = None,
    extra: Iterable[Sequence[str]] | None = None,
    exclude: str | Iterable[str] | None = None,
) -> Ties:
    """Tie groups among ``layers`` (names of the problem's layers).

    ``ties``: ``"auto"`` (layers reading the same tensor, from the graph), ``None`` (no ties), a list
    of layer-name lists (used as given), or a callable ``(ModelGraph) -> groups`` for your own rule.
    ``extra`` groups are added to the result; ``exclude`` (names or patterns, glob or ``re:``) takes
    layers out of every group. Overlapping groups are merged (the rules are the framework-free
    :func:`mpqopt.adapters.ties.resolve_ties`, shared with the ONNX adapter; the graph is traced
    only when the spec needs it).
    """
    resolve_layer_names(model, layers)
    return resolve_ties(ties, layers, lambda: model_graph(model, layers, example_input), extra=extra, exclude=exclude)
