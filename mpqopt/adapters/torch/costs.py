"""Per-layer cost facts of a PyTorch model from one forward pass on an example input.

Forward hooks record every quantizable layer's actual input and output shapes, so MACs are exact
whatever the stride, padding, dilation or groups: a convolution or linear layer does
``prod(weight.shape[1:])`` multiply-accumulates per output element (``in_channels / groups *
prod(kernel)`` for a conv, ``in_features`` for a linear). MACs are reported *per sample*: the total
over the example input divided by its batch size (its leading dimension unless ``batch_size=`` says
otherwise), summed over every call when a module runs more than once.

Cost tables (:func:`mpqopt.adapters.tables.cost_tables`, shared with the ONNX adapter) reuse the
core's models (:func:`mpqopt.costs.size_bits`, :func:`mpqopt.costs.bitops`): weights only (biases
stay in high precision whatever the option), BitOps per sample. A measured latency table comes from
a benchmark callable the user provides.

>>> import torch
>>> from torch import nn
>>> m = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.Flatten(), nn.Linear(8 * 3 * 3, 10))  # 7x7 -> 3x3
>>> [(c.name, c.macs, c.weight_params) for c in measure_layers(m, torch.randn(4, 3, 7, 7))]
[('0', 1944.0, 216), ('2', 720.0, 720)]
>>> cost_tables(measure_layers(m, torch.randn(1, 3, 7, 7)), [4, 8], ["size_bits"])["size_bits"].tolist()
[[864.0, 1728.0], [2880.0, 5760.0]]
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ...errors import ProblemError
from ...options import Option, OptionLike
from ..tables import COST_NAMES, LATENCY_COST, LayerCost, check_latency, cost_tables  # framework-free, shared with the ONNX adapter
from .data import call_model, iter_tensors, model_device, split_batch, to_device
from .layers import LayerInfo, discover_layers

__all__ = ["LayerCost", "measure_layers", "example_batch_size", "run_example", "run_hooked", "latency_table", "cost_tables", "check_latency", "COST_NAMES", "LATENCY_COST"]

Benchmark = Callable[[nn.Module, str, Option], float]


def example_batch_size(inputs: Any) -> int:
    """Leading dimension of the first tensor in ``inputs`` (a tensor, a sequence or a dict of them).

    >>> example_batch_size({"input_ids": torch.zeros(3, 7, dtype=torch.long)})
    3
    """
    first = next(iter_tensors(inputs), None)
    if first is None:
        raise ProblemError(f"the example input ({type(inputs).__name__}) holds no tensor: give a tensor, a tuple of tensors or a dict of them")
    if first.dim() == 0:
        raise ProblemError("the example input is a 0-d tensor: it has no batch dimension; pass batch_size=")
    return int(first.shape[0])


def run_example(model: nn.Module, example_input: Any) -> Any:
    """Run ``model`` once on ``example_input`` without gradients, with errors that say what failed.

    ``example_input`` follows the data convention (a tensor, ``(inputs, targets)``, ``(inputs,)`` or
    a dict of keyword inputs whose ``"labels"`` are dropped): pass one batch of your data as it is.
    """
    inputs, _ = split_batch(example_input)
    inputs = to_device(inputs, model_device(model))
    with torch.no_grad():
        try:
            return call_model(model, inputs)
        except (RuntimeError, TypeError, ValueError, IndexError) as exc:
            raise ProblemError(f"the model failed on the example input (wrong shape or type?): {exc}") from None


def run_hooked(model: nn.Module, example_input: Any, hooks: Iterable[Any]) -> Any:
    """:func:`run_example` in eval mode with ``hooks`` (handles of hooks just registered) in place;
    afterwards the hooks are removed and the model's train/eval mode restored, even on an error.
    (A forward in train mode would update BatchNorm statistics.)"""
    handles = list(hooks)
    was_training = model.training
    model.eval()
    try:
        return run_example(model, example_input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()


def measure_layers(
    model: nn.Module,
    example_input: Any,
    layers: Sequence[LayerInfo] | None = None,
    *,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    batch_size: int | None = None,
    skip_unused: bool = False,
) -> list[LayerCost]:
    """Parameters and per-sample MACs of each quantizable layer, from one forward on ``example_input``.

    ``layers`` (from :func:`~mpqopt.adapters.torch.layers.discover_layers`) wins over the
    ``include``/``exclude`` patterns. The result is in the order of ``layers`` (module order). A
    layer that never runs on the example input is an error (its cost would silently be zero), or
    left out of the result with ``skip_unused=True``.
    The model's train/eval mode is left as it was (the caller chooses; BatchNorm statistics do not
    change MAC counts, but a forward in train mode would update them, so it runs in eval mode).
    """
    if layers is None:
        layers = discover_layers(model, include, exclude)
    if batch_size is None:
        batch_size = example_batch_size(split_batch(example_input)[0])
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ProblemError(f"batch_size must be a positive integer, got {batch_size!r}")
    modules = dict(model.named_modules())
    seen: dict[str, dict[str, Any]] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                return
            # MACs per output element: in_channels/groups * prod(kernel) for a conv, in_features for a linear
            macs = float(output.numel()) * math.prod(module.weight.shape[1:])
            entry = seen.get(name)
            if entry is None:
                x = args[0] if args and isinstance(args[0], torch.Tensor) else None
                seen[name] = {"macs": macs, "calls": 1, "order": len(seen),
                              "input": tuple(x.shape) if x is not None else (), "output": tuple(output.shape)}
            else:
                entry["macs"] += macs
                entry["calls"] += 1

        return record

    for layer in layers:
        if layer.name not in modules:
            raise ProblemError(f"model has no layer named {layer.name!r}")
    run_hooked(model, example_input, [modules[layer.name].register_forward_hook(hook(layer.name)) for layer in layers])
    missing = [layer.name for layer in layers if layer.name not in seen]
    if missing and not skip_unused:
        raise unused_error(missing)
    return [
        LayerCost(l.name, l.kind, l.weight_shape, l.groups, l.params, l.weight_params, seen[l.name]["macs"] / batch_size,
                  seen[l.name]["calls"], seen[l.name]["order"], seen[l.name]["input"], seen[l.name]["output"])
        for l in layers
        if l.name in seen
    ]


def unused_error(names: Sequence[str]) -> ProblemError:
    """The error for layers that never ran on the example input."""
    return ProblemError(f"layers {list(names)[:8]} never ran on the example input, so their cost is unknown; exclude= them if they are unused")


def latency_table(model: nn.Module, layers: Sequence[str], options: Sequence[OptionLike], benchmark: Benchmark) -> np.ndarray:
    """``[layers x options]`` latency in seconds, one ``benchmark(model, layer_name, option)`` call per cell.

    The benchmark measures on the user's hardware (it may build the quantized kernel, time it and
    return the median); it must return a finite non-negative number of seconds.

    >>> lat = latency_table(nn.Linear(2, 2), ["x"], [4, 8], lambda m, name, o: o.w * 1e-6)
    >>> lat.tolist()
    [[4e-06, 8e-06]]
    """
    if not callable(benchmark):
        raise ProblemError(f"benchmark must be a callable (model, layer_name, option) -> seconds, got {type(benchmark).__name__}")
    opts = [Option.parse(o) for o in options]
    table = np.empty((len(layers), len(opts)))
    for i, name in enumerate(layers):
        for k, opt in enumerate(opts):
            value = benchmark(model, name, opt)
            table[i, k] = _seconds(value, f"benchmark for layer {name!r} option {opt.label}")
    return table


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise ProblemError(f"{what} returned {value!r}, not a number of seconds")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ProblemError(f"{what} returned {value!r}, not a number of seconds") from None
    if not math.isfinite(out) or out < 0:
        raise ProblemError(f"{what} returned {out}: latency must be finite and non-negative")
    return out
