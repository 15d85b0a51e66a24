"""Temporarily quantize chosen layers of a model in place, and restore them exactly.

Every estimator perturbs the model through :func:`quantized`; quantized weights are computed once
per (layer, bits) by a :class:`WeightCache`, so thousands of perturbations cost one quantization
each.

>>> import torch
>>> from torch import nn
>>> m = nn.Sequential(nn.Linear(4, 4))
>>> before = m[0].weight.clone()
>>> with quantized(m, {"0": 2}):
...     changed = not torch.equal(m[0].weight, before)
>>> changed, torch.equal(m[0].weight, before)
(True, True)
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping

import torch
from torch import nn

from ...errors import ProblemError
from ...options import Option, OptionLike
from ..choices import parse_option, quantizes_input
from ..scheme import parse_scheme
from .data import Evaluator, call_model
from .formats import quantize_to_format
from .layers import resolve_layer_names
from .quantizer import WeightScheme, quantize_activation, quantize_weight

ActRanges = Mapping[str, tuple[float, float]]


class WeightCache:
    """Quantized weights per (layer, option), computed on first use from the layer's current
    (FP32) weight: a plain option (or an int, its weight bits) by the ``scheme``, an option with a
    named format by that format's quantizer (:mod:`.formats`).

    >>> m = nn.Sequential(nn.Linear(32, 2))
    >>> cache = WeightCache(m)
    >>> cache.get("0", 4) is cache.get("0", 4), cache.get("0", "int4-g32") is cache.get("0", Option(format="int4-g32"))
    (True, True)
    """

    def __init__(self, model: nn.Module, scheme: WeightScheme = WeightScheme()):
        self.model = model
        self.scheme = parse_scheme(scheme)  # a WeightScheme, or a dict of its fields as the ONNX adapter takes
        self._modules: dict[str, nn.Module] = {}
        self._cache: dict[tuple[str, Any], torch.Tensor] = {}

    def module(self, name: str) -> nn.Module:
        if name not in self._modules:
            self._modules.update(resolve_layer_names(self.model, [name]))
        return self._modules[name]

    def get(self, name: str, option: OptionLike) -> torch.Tensor:
        opt = parse_option(option, name)
        key = (name, opt.w if opt.format is None else opt.format)
        if key not in self._cache:
            self._cache[key] = quantize_option(self.module(name).weight, opt, self.scheme, name)
        return self._cache[key]


def quantize_option(weight: torch.Tensor, option: Option, scheme: WeightScheme = WeightScheme(), name: str = "weight") -> torch.Tensor:
    """``weight`` fake-quantized to ``option``: its named format, else ``w`` bits by ``scheme``.

    >>> quantize_option(torch.ones(2, 32), Option(format="int8-g32")).shape
    torch.Size([2, 32])
    """
    if option.format is None:
        return quantize_weight(weight, option.w, scheme)
    return quantize_to_format(weight, option.format, name=name)


@contextmanager
def quantized(
    model: nn.Module,
    choices: Mapping[str, OptionLike],
    *,
    scheme: WeightScheme = WeightScheme(),
    cache: WeightCache | None = None,
    act_ranges: ActRanges | None = None,
) -> Iterator[nn.Module]:
    """Within the block, each named layer's weight is fake-quantized to its option (``w`` bits, or
    its named format) and,
    when the option has ``a`` bits and ``act_ranges`` has the layer, its input is fake-quantized to
    ``a`` bits. Weights are restored bit-exactly on exit, even after an exception.
    """
    cache = cache or WeightCache(model, scheme)
    saved: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = []
    try:
        for name, value in choices.items():
            opt = parse_option(value, name)
            module = cache.module(name)
            saved.append((module, module.weight.data))
            module.weight.data = cache.get(name, opt)
            if quantizes_input(opt):
                if act_ranges is None:  # silently skipping the activations would measure the wrong thing
                    raise ProblemError(f"layer {name!r} has option {opt.label} with activation bits: give act_ranges (from calibrate_activations)")
                if name not in act_ranges:
                    raise ProblemError(f"layer {name!r} has option {opt.label} with activation bits but no calibrated activation range")
                lo, hi = act_ranges[name]
                hooks.append(module.register_forward_pre_hook(input_quantizer(opt.a, lo, hi)))
        yield model
    finally:
        for module, weight in reversed(saved):
            module.weight.data = weight
        for h in hooks:
            h.remove()


def input_quantizer(bits: int, lo: float, hi: float) -> Any:
    """A forward pre-hook that fake-quantizes a layer's input to ``bits`` over ``[lo, hi]``."""
    def hook(module: nn.Module, args: tuple) -> tuple:
        return (quantize_activation(args[0], bits, lo, hi), *args[1:])

    return hook


def calibrate_activations(model: nn.Module, layers: Iterable[str], evaluator: Evaluator) -> dict[str, tuple[float, float]]:
    """Per-tensor min/max of each layer's input over the evaluator's batches (FP32 model).

    >>> m = nn.Sequential(nn.Linear(2, 2))
    >>> ev = Evaluator(m, [torch.tensor([[-1.0, 3.0]])], loss="mse")
    >>> calibrate_activations(m, ["0"], ev)
    {'0': (-1.0, 3.0)}
    """
    modules = resolve_layer_names(model, layers)
    ranges: dict[str, list[float]] = {}

    def observer(name: str) -> Any:
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            lo, hi = float(x.min()), float(x.max())
            cur = ranges.setdefault(name, [lo, hi])
            cur[0], cur[1] = min(cur[0], lo), max(cur[1], hi)

        return hook

    hooks = [m.register_forward_pre_hook(observer(n)) for n, m in modules.items()]
    try:
        with torch.no_grad():
            for inputs, _ in evaluator.batches:
                call_model(model, inputs)
    finally:
        for h in hooks:
            h.remove()
    missing = [n for n in modules if n not in ranges]
    if missing:
        raise ProblemError(f"layers {missing} never ran on the calibration data, so their activation range is unknown")
    return {n: (ranges[n][0], ranges[n][1]) for n in modules}


def check_act_ranges(act_ranges: Mapping[str, tuple[float, float]], layers: Iterable[str]) -> None:
    """Name the layers whose options quantize their input but have no range in ``act_ranges``."""
    missing = [name for name in layers if name not in act_ranges]
    if missing:
        raise ProblemError(f"act_ranges has no range for layers {missing[:5]}, whose options quantize activations")
