"""Run a model from the middle: the activation cache behind the pairwise (CLADO) estimator.

Measuring ``L(q_i, q_j)`` for every pair of perturbations repeats the unperturbed computation up
to the first perturbed layer, and, for a fixed first perturbation, up to the second. A
:class:`StagedModel` splits the forward pass into steps so the values alive at a *cut* (computed
before the first step that touches a layer and still needed after it) can be kept and only the
rest of the model run from them:

- ``"fx"``: the torch.fx graph (quantizable layers kept as leaf calls); a step is one graph node,
  so cuts are exact inside nested blocks and with skip connections. An ``fx.GraphModule`` you
  traced yourself (e.g. with ``transformers.utils.fx``) is used as it is.
- ``"sequential"``: an ``nn.Sequential`` that fx cannot trace; a step is one child.
- ``"memo"``: any other model whose forward calls the same modules in the same order on every
  batch (most Hugging Face models, which fx cannot trace): a step is a leaf module call, and the
  calls finished before a cut return their recorded FP32 outputs while the model's own code
  reruns (see :mod:`.memo`); refused when those outputs would take over ``memo.MEMO_MAX_BYTES``
  (1 GiB) for the example batch. The options of a layer called once (and holding its weight alone)
  are stacked as in fx mode: inputs and recorded outputs repeated along the batch, the layer
  computing each slice with its own option (tables equal to float round-off, bit-identical on
  MiniLM-L6 and a tiny BERT where the CPU's matrix kernels do not depend on the row count;
  on CPU 40% more CPU time than one option per forward on MiniLM-L6 with 16 rows, so "auto"
  stacks on CPU only for batches of 16 rows or fewer, as in fx mode); unstacked, with the reason,
  when the repeated outputs would exceed ``MEMO_MAX_BYTES``.
- ``"full"``: anything else; one step, the whole model (nothing saved, same answers).

The mode is checked at construction: the staged forward must reproduce the model's output on an
example batch, otherwise the next mode is tried (``reason`` says why).

>>> import torch
>>> from torch import nn
>>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
>>> staged = stage_model(m, ["0", "2"], torch.randn(3, 4))
>>> staged.mode, staged.cut["2"], staged.num_steps
('fx', 2, 3)
>>> x = torch.randn(3, 4)
>>> env = staged.advance(staged.start(x), 0, staged.cut["2"])   # the cached values before layer "2"
>>> torch.allclose(staged.finish(env, staged.cut["2"]), m(x))
True
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import torch
from torch import fx, nn

from ...errors import ProblemError
from . import memo
from .data import call_model, default_output, iter_tensors
from .graph import LeafTracer, mutates
from .memo import ModuleMemo, readers

Env = dict[Any, Any]
MODES = ("auto", "fx", "sequential", "memo", "full")


class Unbatchable(Exception):
    """Several perturbations cannot share one forward pass from this cut (internal signal)."""


def batch_size(inputs: Any) -> int | None:
    """Leading dimension of the first tensor in a batch's inputs (None when there is none)."""
    return next((int(t.shape[0]) for t in iter_tensors(inputs) if t.dim()), None)


def _cat(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(values, dim=0)
    if isinstance(first, (tuple, list)) and all(isinstance(v, type(first)) and len(v) == len(first) for v in values):
        return type(first)(_cat([v[k] for v in values]) for k in range(len(first)))
    raise Unbatchable(f"a {type(first).__name__} value changes with the perturbation and cannot be stacked")


def _repeat(value: Any, copies: int, size: int) -> Any:
    """Stack ``copies`` copies of a batch-carrying value along dimension 0."""
    if isinstance(value, torch.Tensor):
        if value.dim() and value.shape[0] == size:
            return value.repeat(copies, *([1] * (value.dim() - 1)))
        raise Unbatchable(f"a tensor of shape {tuple(value.shape)} computed from the inputs has no batch dimension of {size}")
    if isinstance(value, (tuple, list)):
        return type(value)(_repeat(v, copies, size) for v in value)
    raise Unbatchable(f"a {type(value).__name__} computed from the inputs (e.g. a size) would change with the batch")


class StagedModel:
    """A model's forward pass as ``num_steps`` steps. ``cut[name]`` is the first step that uses the
    layer's weights; ``single_use[name]`` says the layer is used by that step only (then several
    perturbations of it can share one forward, stacked along the batch)."""

    mode = "full"
    num_steps = 1

    def __init__(self, model: nn.Module, names: Sequence[str]):
        self.model = model
        self.names = tuple(names)
        self.cut: dict[str, int] = {name: 0 for name in self.names}  # one step: the whole model
        self.single_use: dict[str, bool] = {name: False for name in self.names}
        self.graph: fx.Graph | None = None  # the fx graph in "fx" mode
        self.reason = ""  # why an earlier (faster) mode was not used
        self.peak_bytes = 0  # largest set of live values in one forward of the example batch
        self.steps_run = 0  # steps executed so far (a measure of the work the cache saves)

    def start(self, inputs: Any) -> Env:
        """The values at step 0 for one batch's inputs."""
        return {"inputs": inputs}

    def advance(self, env: Env, start: int, stop: int) -> Env:
        """Run steps ``start .. stop-1`` from the values at ``start``; ``env`` is not modified."""
        if stop <= start:
            return env
        self.steps_run += stop - start
        return {"output": call_model(self.model, env["inputs"])}

    def output(self, env: Env) -> Any:
        return env["output"]

    def finish(self, env: Env, start: int) -> Any:
        """The model's output, running the steps from ``start`` to the end."""
        return self.output(self.advance(env, start, self.num_steps))

    def merge(self, envs: list[Env], size: int) -> Env:
        """One set of values holding several perturbations' values stacked along the batch: values
        all perturbations share are repeated, values that differ are concatenated."""
        first = envs[0]
        out = {}
        for key, value in first.items():
            if all(e[key] is value for e in envs):
                out[key] = _repeat(value, len(envs), size) if self._batch_carrying(key) else value
            else:
                out[key] = _cat([e[key] for e in envs])
        return out

    def _batch_carrying(self, key: Any) -> bool:
        return True

    def stacked(self, env: Env, step: int, size: int, contexts: Sequence[Callable[[], Any]]) -> Any:
        """The model's output with ``len(contexts)`` perturbations of the layer whose (only) step is
        ``step`` stacked along the batch (``size`` rows each), from the values ``env`` before it:
        the step runs inside each ``contexts[k]()``, the rest of the model once on the stacked values.
        Raises :class:`Unbatchable` when they cannot be stacked."""
        envs = []
        for context in contexts:
            with context():
                envs.append(self.advance(env, step, step + 1))
        return self.finish(self.merge(envs, size), step + 1)

    max_live_bytes = float("inf")  # a mode whose cached values of the example batch exceed this is refused

    def live_bytes(self, env: Env) -> int:
        """Bytes of the tensors ``env`` holds."""
        return _live_bytes(env)

    def check_points(self) -> list[int]:
        """The steps at which construction checks the staged forward (and measures ``peak_bytes``)."""
        return list(range(self.num_steps + 1))


class _SequentialStages(StagedModel):
    mode = "sequential"

    def __init__(self, model: nn.Sequential, names: Sequence[str]):
        super().__init__(model, names)
        self.children = list(model._modules.items())
        self.num_steps = len(self.children)
        position = {child_name: k for k, (child_name, _) in enumerate(self.children)}
        counts: dict[int, int] = {}
        for _, mod in model.named_modules(remove_duplicate=False):
            counts[id(mod)] = counts.get(id(mod), 0) + 1
        modules = dict(model.named_modules())
        for name in self.names:
            self.cut[name] = position[name.split(".")[0]]
            self.single_use[name] = counts[id(modules[name])] == 1

    def start(self, inputs: Any) -> Env:
        if isinstance(inputs, (tuple, list)) and len(inputs) == 1:
            inputs = inputs[0]
        if not isinstance(inputs, torch.Tensor):
            raise ProblemError(f"an nn.Sequential takes one tensor, got a {type(inputs).__name__}")
        return {"x": inputs}

    def advance(self, env: Env, start: int, stop: int) -> Env:
        if stop <= start:
            return env
        x = env["x"].clone()  # children may write into their input in place: keep the cache intact
        for _, child in self.children[start:stop]:
            x = child(x)
        self.steps_run += stop - start
        return {"x": x}

    def output(self, env: Env) -> Any:
        return env["x"]


def _storages(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _storages(v)]
    return []


def _rebind(value: Any, old: int, storage: Any) -> Any:
    """``value`` with every tensor on storage ``old`` moved onto ``storage`` (same views)."""
    if isinstance(value, torch.Tensor):
        if value.untyped_storage().data_ptr() != old:
            return value
        return torch.empty(0, dtype=value.dtype, device=value.device).set_(storage, value.storage_offset(), value.size(), value.stride())
    if isinstance(value, (tuple, list)):
        return type(value)(_rebind(v, old, storage) for v in value)
    return value


def _fetch_attr(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


class _FxStages(StagedModel):
    mode = "fx"

    def __init__(self, model: nn.Module, names: Sequence[str], graph: fx.Graph):
        super().__init__(model, names)
        self.graph = graph  # refers to modules by name: it also serves copies of the model
        self.modules = dict(model.named_modules())
        nodes = list(graph.nodes)
        self.placeholders = [n for n in nodes if n.op == "placeholder"]
        self.steps = [n for n in nodes if n.op not in ("placeholder", "output")]
        self.output_node = next(n for n in nodes if n.op == "output")
        self.num_steps = len(self.steps)
        index = {n: k for k, n in enumerate(self.steps)}
        # the last step reading each value (num_steps = the output): values are dropped after it
        self.last_use = {n: max((index.get(u, self.num_steps) for u in n.users), default=-1) for n in self.placeholders + self.steps}
        # steps that write into their first input (relu_, +=, inplace=True): copy-on-write below
        self.mutating = [bool(n.args) and isinstance(n.args[0], fx.Node) and mutates(n, self.modules) for n in self.steps]
        self.carrying: dict[fx.Node, bool] = {n: True for n in self.placeholders}
        for n in self.steps:
            self.carrying[n] = n.op != "get_attr" and any(self.carrying[i] for i in n.all_input_nodes)
        for name in self.names:
            refs = [k for k, n in enumerate(self.steps) if _refers(n, name)]
            if not refs:
                raise ProblemError(f"layer {name!r} is never called in the traced graph")
            self.cut[name] = refs[0]
            self.single_use[name] = len(refs) == 1
        self._signature = _parameters(model)

    def start(self, inputs: Any) -> Env:
        args: tuple = ()
        kwargs: dict[str, Any] = {}
        if isinstance(inputs, dict):
            kwargs = dict(inputs)
        elif isinstance(inputs, (tuple, list)):
            args = tuple(inputs)
        else:
            args = (inputs,)
        env: Env = {}
        for k, ph in enumerate(self.placeholders):
            name = str(ph.target)
            if k < len(args):
                value = args[k]
            elif name in kwargs:
                value = kwargs.pop(name)
            elif ph.args:
                value = ph.args[0]  # the argument's default
            elif name in self._signature and self._signature[name] is not inspect.Parameter.empty:
                value = self._signature[name]
            else:
                raise ProblemError(f"the traced model needs input {name!r}, which the batch does not give")
            if ph.users:
                env[ph] = value
        if len(args) > len(self.placeholders) or kwargs:
            raise ProblemError(f"the traced model takes {[str(p.target) for p in self.placeholders]}, the batch gives more")
        return env

    def _run(self, node: fx.Node, env: Env) -> Any:
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "call_module":
            module = self.modules[node.target]
            if type(module) is nn.MaxPool2d and not kwargs and len(args) == 1 and _pools_faster_channels_last(module, args[0]):
                return _max_pool_channels_last(module, args[0])
            return module(*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        return _fetch_attr(self.model, node.target)  # get_attr: read live, so weight swaps show

    def advance(self, env: Env, start: int, stop: int) -> Env:
        if stop <= start:
            return env
        shared = {t.untyped_storage().data_ptr() for v in env.values() for t in _storages(v)} if any(self.mutating[start:stop]) else set()
        env = dict(env)
        for k in range(start, stop):
            node = self.steps[k]
            if self.mutating[k]:
                self._copy_on_write(env, node.args[0], shared)
            value = self._run(node, env)
            if self.last_use[node] > k:
                env[node] = value
            for i in node.all_input_nodes:
                if self.last_use[i] == k:
                    env.pop(i, None)  # dead from here on: free it
        self.steps_run += stop - start
        return env

    @staticmethod
    def _copy_on_write(env: Env, target: fx.Node, shared: set[int]) -> None:
        """Before an in-place write into memory the caller's values use (the cache, which later
        runs start from again), move every value on that memory to a private copy, views kept."""
        value = env.get(target)
        if not isinstance(value, torch.Tensor):
            return
        old = value.untyped_storage().data_ptr()
        if old not in shared:
            return
        storage = value.untyped_storage().clone()
        for key in list(env):
            env[key] = _rebind(env[key], old, storage)
        shared.discard(old)

    def output(self, env: Env) -> Any:
        return fx.node.map_arg(self.output_node.args[0], lambda n: env[n])

    def _batch_carrying(self, key: Any) -> bool:
        return self.carrying.get(key, False)


class _MemoStages(StagedModel):
    """Module memoization (:mod:`.memo`): a step is a leaf module call; the calls finished before a
    step are replayed from their recorded outputs. ``single_use``: the layer is the only module
    holding its weight and is called once; then its options are stacked along the batch
    (:meth:`.memo.ModuleMemo.run_stacked`: inputs and recorded outputs repeated, the layer computing
    each slice with its own option)."""

    mode = "memo"

    def __init__(self, model: nn.Module, names: Sequence[str], example: Any):
        super().__init__(model, names)
        self.memo = ModuleMemo(model, example)
        self.num_steps = self.memo.num_steps
        for name in self.names:
            step = self.memo.first_step(readers(model, name))
            if step is None:
                raise ProblemError(f"layer {name!r} is never called in the model's forward")
            self.cut[name] = step
            layer = readers(model, name)
            self.single_use[name] = len(layer) == 1 and sum(m is layer[0] for m in self.memo.calls or []) == 1

    def start(self, inputs: Any) -> Env:
        return {"inputs": inputs, "records": {}}

    def stacked(self, env: Env, step: int, size: int, contexts: Sequence[Callable[[], Any]]) -> Any:
        try:
            return self.memo.run_stacked(env["inputs"], env["records"], step, size, contexts, self)
        except ValueError as exc:
            raise Unbatchable(str(exc)) from exc

    def advance(self, env: Env, start: int, stop: int) -> Env:
        if stop <= start:
            return env
        out, records = self.memo.run(env["inputs"], env["records"], start, stop, self)
        return {"inputs": env["inputs"], "records": records, **({"output": out} if stop >= self.num_steps else {})}

    def finish(self, env: Env, start: int) -> Any:
        return self.memo.run(env["inputs"], env["records"], start, None, self)[0]

    def live_bytes(self, env: Env) -> int:
        return sum(r.nbytes for r in env["records"].values())

    @property
    def max_live_bytes(self) -> float:  # type: ignore[override]
        return memo.MEMO_MAX_BYTES  # read here, so a test can lower it

    def check_points(self) -> list[int]:
        """Every layer's cut (one forward in all), not every step."""
        return sorted({0, *self.cut.values(), self.num_steps})


def _pools_faster_channels_last(module: nn.MaxPool2d, x: Any) -> bool:
    """torch's max pooling of a contiguous NCHW tensor on CPU runs a scalar loop per plane (5-12x
    slower than its channels-last kernel on the digits CNN's 8x8 maps with 32 channels)."""
    return (isinstance(x, torch.Tensor) and x.dim() == 4 and x.device.type == "cpu" and x.is_floating_point() and x.shape[1] >= 8
            and x.is_contiguous() and not module.return_indices and not module._forward_hooks and not module._forward_pre_hooks)


def _max_pool_channels_last(module: nn.MaxPool2d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` computed on a channels-last copy and returned contiguous (NCHW), so later steps
    see the same layout. Bit-identical: a maximum is exact, and both kernels scan each window in the
    same order keeping the first largest value (or the first NaN)."""
    out = torch.nn.functional.max_pool2d(x.contiguous(memory_format=torch.channels_last), module.kernel_size, module.stride, module.padding, module.dilation, ceil_mode=module.ceil_mode)
    return out.contiguous()


def _refers(node: fx.Node, name: str) -> bool:
    """Does this graph node use the weights of layer ``name``?"""
    target = str(node.target)
    if node.op == "call_module":
        return target == name or name.startswith(target + ".")  # the layer, or a leaf containing it
    if node.op == "get_attr":
        return target == name or target.startswith(name + ".")  # e.g. a tied weight read directly
    return False


def _parameters(model: nn.Module) -> dict[str, Any]:
    try:
        return {k: p.default for k, p in inspect.signature(model.forward).parameters.items()}
    except (TypeError, ValueError):
        return {}


def _build(mode: str, model: nn.Module, names: Sequence[str], example: Any, graph: fx.Graph | None = None) -> StagedModel:
    if mode == "fx":
        if graph is None:
            graph = model.graph if isinstance(model, fx.GraphModule) else LeafTracer(set(names)).trace(model)
        return _FxStages(model, names, graph)
    if mode == "sequential":
        if not isinstance(model, nn.Sequential):
            raise ProblemError(f"a {type(model).__name__} is not an nn.Sequential")
        return _SequentialStages(model, names)
    if mode == "memo":
        return _MemoStages(model, names, example)
    return StagedModel(model, names)


def _live_bytes(env: Env) -> int:
    total = 0
    for v in env.values():
        for t in v if isinstance(v, (tuple, list)) else (v,):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def stage_model(
    model: nn.Module,
    names: Sequence[str],
    example: Any,
    *,
    mode: str = "auto",
    output_fn: Callable[[Any], torch.Tensor] = default_output,
    graph: fx.Graph | None = None,
) -> StagedModel:
    """Split ``model`` (in eval mode) into steps, checked on ``example`` inputs (one batch).

    ``mode="auto"`` tries fx, then (for an ``nn.Sequential``) its children, then module
    memoization, then the full model;
    an explicit mode that does not work is an error saying why. ``graph``: an fx graph already
    traced from this model (or a copy of it) to use instead of tracing again (tracing patches
    ``nn.Module.__call__`` process-wide, so it must not run while other threads run models).
    """
    if mode not in MODES:
        raise ProblemError(f"mode must be one of {MODES}, got {mode!r}")
    candidates = ["fx", "sequential", "memo", "full"] if mode == "auto" else [mode]
    if mode == "auto" and not isinstance(model, nn.Sequential):
        candidates.remove("sequential")
    reasons = []
    with torch.no_grad():
        reference = output_fn(call_model(model, example))
        for candidate in candidates:
            try:
                staged = _build(candidate, model, names, example, graph)
                env = staged.start(example)
                peak = staged.live_bytes(env)
                points = staged.check_points()
                for a, b in zip(points, points[1:]):
                    env = staged.advance(env, a, b)
                    peak = max(peak, staged.live_bytes(env))
                    if peak > staged.max_live_bytes:
                        raise ProblemError(f"its cached values would take over {peak / 2**20:.0f} MiB of one batch (the cap is {staged.max_live_bytes / 2**20:.0f} MiB)")
                got = output_fn(staged.output(env))
                if not (isinstance(got, torch.Tensor) and got.shape == reference.shape and torch.allclose(got, reference, rtol=1e-5, atol=1e-6)):
                    raise ProblemError("the staged forward pass does not reproduce the model's output")
            except Exception as exc:  # noqa: BLE001 - tracing fails in many ways; the reason is reported
                reasons.append(f"{candidate}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip())
                continue
            staged.peak_bytes = peak
            staged.steps_run = 0
            staged.reason = "; ".join(reasons)
            return staged
    raise ProblemError(f"cannot run the model in {mode!r} mode: {'; '.join(reasons)}")
