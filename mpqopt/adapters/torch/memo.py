"""Run a model from the middle without a graph: module memoization, behind the ``"memo"`` mode of :mod:`.stages`.

When torch.fx cannot trace a model (data-dependent slices and branches: most Hugging Face models),
its forward still calls its submodules in a fixed order. Everything a module call computes before
the perturbed layer's first call starts is unchanged by the perturbation, so such a call, when it
is not an ancestor of the layer (the embeddings and the blocks before the layer's block, and the
layer's siblings that ran before it), can return its FP32 output instead of running. Calls are
numbered in call order (a pre-order walk: a container's call comes before its children's) on the
example batch; a step is a leaf call (one that calls no module: the work). The model's own Python
code between calls runs every time, the recorded calls' outputs come from the cache.

Recording: a forward up to step ``stop`` (aborted there) keeps the outputs of the outermost calls
that finished (a call's output replaces its children's). A call whose output is changed in place
later in that forward is not kept (it runs again). On replay each cached output is returned as a
copy (tensors cloned inside tuples, lists and dicts, their aliasing kept), so code that writes into
it leaves the cache intact; a call whose output holds other objects is not kept.

Assumptions, checked where it is cheap: the model calls the same modules in the same order before
the perturbed layer on every batch (checked: a different module at a step is an error); a layer's
weight is read only by the modules that hold it (tied weights: the cut is the first call of any
module holding the same parameter); glue code that reads the weight directly before that is not
seen.

>>> import torch
>>> from torch import nn
>>> class Net(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)
...     def forward(self, x):
...         h = self.a(x)
...         return self.b(h[: int(h.shape[0])])   # fx cannot trace the int()
>>> from mpqopt.adapters.torch.stages import stage_model   # its mode "memo" is built on ModuleMemo
>>> m, x = Net().eval(), torch.randn(3, 4)
>>> staged = stage_model(m, ["a", "b"], x)
>>> staged.mode, staged.reason.split(":")[0], staged.num_steps, staged.cut   # steps: the calls of a and b
('memo', 'fx', 2, {'a': 0, 'b': 1})
>>> env = staged.advance(staged.start(x), 0, staged.cut["b"])   # runs a, stops at b
>>> torch.equal(staged.finish(env, staged.cut["b"]), m(x)), staged.steps_run   # then b: a's output is cached
(True, 2)
"""

from __future__ import annotations

import bisect
import copy
import functools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ...errors import ProblemError
from .data import call_model

MEMO_MAX_BYTES = 2**30  # cached module outputs of one batch above this: memo mode is refused


_ATOMS = (bool, int, float, complex, str, bytes, torch.Size, torch.dtype, torch.device)  # immutable: returned as they are


class _Stop(BaseException):
    """The recording forward reached its stop (BaseException: model code catching Exception lets it pass)."""


class _Unkeepable(Exception):
    """A value that cannot be copied safely (internal)."""


@dataclass(frozen=True)
class _Record:
    end: int  # the step after the call's last nested call: replaying it skips steps index..end-1
    output: Any
    nbytes: int


def _copy(value: Any, seen: dict[int, Any]) -> Any:
    """``value`` with its tensors cloned (the same tensor twice: one clone) inside tuples, lists and dicts."""
    if isinstance(value, torch.Tensor):
        if id(value) not in seen:
            seen[id(value)] = value.clone()
        return seen[id(value)]
    if value is None or isinstance(value, _ATOMS):
        return value
    if isinstance(value, tuple):
        items = [_copy(v, seen) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, list):
        return [_copy(v, seen) for v in value]
    if type(value) is dict:
        return {k: _copy(v, seen) for k, v in value.items()}
    if isinstance(value, dict):  # e.g. a transformers ModelOutput, whose items mirror its attributes
        out = copy.copy(value)
        for k, v in value.items():
            out[k] = _copy(v, seen)
        return out
    raise _Unkeepable(type(value).__name__)


def _keepable(value: Any) -> bool:
    """Can :func:`_copy` copy it?"""
    if isinstance(value, torch.Tensor) or value is None or isinstance(value, _ATOMS):
        return True
    if isinstance(value, (tuple, list)):
        return all(_keepable(v) for v in value)
    if isinstance(value, dict):
        return all(_keepable(v) for v in value.values())
    return False


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _versions(value: Any) -> tuple[int, ...]:
    return tuple(t._version for t in _tensors(value))


def _nbytes(value: Any) -> int:
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in _tensors(value)}
    return sum(storages.values())


class _Run:
    """One forward of the model with every module's ``forward`` routed through :meth:`call`: calls
    below ``start`` with a record return it; calls are recorded (when ``stop`` is given) and the
    forward stops at call ``stop``."""

    def __init__(self, memo: ModuleMemo, records: dict[int, _Record], start: int, stop: int | None, counter: Any,
                 override: dict[int, Callable[..., Any]] | None = None):
        self.memo, self.records, self.start, self.stop, self.counter = memo, records, start, stop, counter
        self.override = override or {}  # call -> what computes it instead of the module's forward (stacked options)
        self.n = 0
        self.calls: list[nn.Module] = []  # every call's module, in order (the first run's, for the layout)
        self.ends: dict[int, int] = {}
        self.kept: list[tuple[int, nn.Module, Any, tuple[int, ...]]] = []  # outermost finished calls (index, module, output, versions)
        self.checked = memo.calls

    def call(self, module: nn.Module, forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        c = self.n
        limit = self.start if self.stop is None else self.stop
        if self.checked is not None and c < limit and (c >= len(self.checked) or self.checked[c] is not module):
            raise ProblemError(f"memo: call {c} is {type(module).__name__}, not the {type(self.checked[c]).__name__ if c < len(self.checked) else 'end of the forward'} "
                               "of the recorded forward: the model calls its modules in a data-dependent order")
        if c == self.stop:
            raise _Stop
        record = self.records.get(c)
        if record is not None and record.end <= self.start:  # computed before the first step to run
            self.n = record.end
            return _copy(record.output, {})
        self.n += 1
        self.calls.append(module)
        if self.checked is not None and c in self.memo.leaf_calls:
            self.counter.steps_run += 1
        out = self.override[c](forward, *args, **kwargs) if c in self.override else forward(*args, **kwargs)
        self.ends[c] = self.n
        if self.stop is not None:
            while self.kept and self.kept[-1][0] > c:
                self.kept.pop()  # the children: this call's output replaces theirs
            self.kept.append((c, module, out, _versions(out)))
        return out

    def __call__(self, inputs: Any) -> Any:
        originals: list[tuple[nn.Module, Any]] = []
        try:
            for module in self.memo.model.modules():
                originals.append((module, module.__dict__.get("forward")))
                forward = module.forward
                module.forward = functools.wraps(forward)(functools.partial(self.call, module, forward))
            try:
                out = call_model(self.memo.model, inputs)
            except _Stop:
                return None
            if self.stop is not None:
                raise ProblemError(f"memo: the forward ended after {self.n} module calls, before call {self.stop} of the recorded forward: "
                                   "the model calls its modules in a data-dependent order")
            return out
        finally:
            for module, own in originals:
                if own is None:
                    module.__dict__.pop("forward", None)
                else:
                    module.__dict__["forward"] = own

    def new_records(self) -> dict[int, _Record]:
        """The outermost calls this run finished, whose outputs were not changed in place afterwards
        and can be copied."""
        out = {}
        for c, _, value, versions in self.kept:
            if _versions(value) != versions:
                continue  # written into after the call: the output at the call's end is gone
            if not _keepable(value):
                continue
            out[c] = _Record(self.ends[c], value, _nbytes(value))
        return out


class ModuleMemo:
    """A model's module calls on an example batch (its layout), and forwards that replay recorded
    outputs: ``steps`` are the leaf calls (calls that call no module: the work), ``records`` map a
    call to its output. Work done is counted in ``counter.steps_run`` (leaf calls run)."""

    def __init__(self, model: nn.Module, example: Any):
        self.model = model
        self.calls: list[nn.Module] | None = None
        first = _Run(self, {}, 0, None, None)
        with torch.no_grad():
            first(example)
        self.calls = first.calls
        leaves = [c for c in range(len(self.calls)) if first.ends[c] == c + 1]
        self.leaf_calls = set(leaves)
        self._call = leaves + [len(self.calls)]  # step -> its call
        self.num_steps = len(leaves)

    def first_step(self, modules: Sequence[nn.Module]) -> int | None:
        """The first step inside the first call of any of ``modules`` (None: never called)."""
        calls = [c for c, m in enumerate(self.calls or []) if any(m is r for r in modules)]
        return bisect.bisect_left(self._call[:-1], calls[0]) if calls else None

    def run(self, inputs: Any, records: dict[int, _Record], start: int, stop: int | None, counter: Any) -> tuple[Any, dict[int, _Record]]:
        """A forward from step ``start`` (the calls finished before it replayed from ``records``) to the
        end, giving ``(output, records)``; or, with ``stop``, up to that step, giving ``(None, records)``
        with the outermost calls finished before ``stop`` recorded."""
        if stop is None or stop >= self.num_steps:
            return _Run(self, records, self._call[start], None, counter)(inputs), records
        run = _Run(self, records, self._call[start], self._call[stop], counter)
        run(inputs)
        new = run.new_records()
        kept = {c: r for c, r in records.items() if not any(k <= c < n.end for k, n in new.items())}  # superseded by an outer call
        return None, {**kept, **new}

    def run_stacked(self, inputs: Any, records: dict[int, _Record], step: int, size: int, contexts: Sequence[Callable[[], Any]], counter: Any) -> Any:
        """The forward from ``step`` (a call of a module called once) with the ``len(contexts)``
        perturbations stacked along the batch: the inputs and recorded outputs are repeated that many
        times (``size`` rows each), the step's module computes slice k of its input inside
        ``contexts[k]()`` (its weights and input pre-hooks as that perturbation sets them), and the
        rest of the model runs once on the stacked values. Raises :class:`~.stages.Unbatchable`-like
        ``ValueError`` when a value cannot be stacked or the repeated records would exceed
        ``MEMO_MAX_BYTES``."""
        copies = len(contexts)
        if sum(r.nbytes for r in records.values()) * copies > MEMO_MAX_BYTES:
            raise ValueError(f"{copies} stacked copies of the recorded outputs would take over {MEMO_MAX_BYTES / 2**20:.0f} MiB")
        call = self._call[step]
        module = self.calls[call]  # type: ignore[index]
        stacked = {c: _Record(r.end, _stack(r.output, copies, size), r.nbytes * copies) for c, r in records.items()}

        def each(forward: Callable[..., Any], x: Any, *rest: Any, **kwargs: Any) -> Any:
            if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] != copies * size:
                raise ValueError(f"the input of {type(module).__name__} does not carry the {copies} x {size} stacked rows along dimension 0")
            own = set(module._forward_pre_hooks)
            outs = []
            for k, piece in enumerate(torch.split(x, size)):
                with contexts[k]():
                    args = (piece, *rest)
                    for key, hook in list(module._forward_pre_hooks.items()):
                        if key not in own:  # added by the perturbation (input fake-quantization): run it on this slice
                            args = hook(module, args) or args
                    outs.append(forward(*args, **kwargs))
            if not all(isinstance(o, torch.Tensor) for o in outs):
                raise ValueError(f"{type(module).__name__} returns a {type(outs[0]).__name__}, not one tensor")
            return torch.cat(outs, dim=0)

        counter.steps_run += copies - 1  # the step runs once per perturbation
        return _Run(self, stacked, call, None, counter, {call: each})(_stack(inputs, copies, size))


def _stack(value: Any, copies: int, size: int) -> Any:
    """``value`` with each tensor carrying ``size`` rows along dimension 0 repeated ``copies`` times
    along it; tensors with one row (broadcast over the batch) or none, and atoms, as they are."""
    if isinstance(value, torch.Tensor):
        if value.dim() and value.shape[0] == size:
            return value.repeat(copies, *([1] * (value.dim() - 1)))
        if value.dim() == 0 or value.shape[0] == 1:
            return value
        raise ValueError(f"a tensor of shape {tuple(value.shape)} has no batch dimension of {size}")
    if value is None or isinstance(value, _ATOMS):
        return value
    if isinstance(value, tuple):
        items = [_stack(v, copies, size) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, list):
        return [_stack(v, copies, size) for v in value]
    if type(value) is dict:
        return {k: _stack(v, copies, size) for k, v in value.items()}
    if isinstance(value, dict):
        out = copy.copy(value)
        for k, v in value.items():
            out[k] = _stack(v, copies, size)
        return out
    raise ValueError(f"a {type(value).__name__} cannot be stacked")


def readers(model: nn.Module, name: str) -> list[nn.Module]:
    """Layer ``name`` and every module holding its weight (tied weights): perturbing the layer changes their outputs."""
    modules = dict(model.named_modules())
    weight = getattr(modules[name], "weight", None)
    return [m for m in modules.values() if m is modules[name] or (weight is not None and any(p is weight for p in m._parameters.values()))]
