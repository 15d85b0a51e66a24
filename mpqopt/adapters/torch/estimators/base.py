"""The set-up every torch sensitivity estimator shares; they return a
:class:`~mpqopt.adapters.sensitivity.Sensitivity`.

>>> import torch
>>> from torch import nn
>>> setup = prepare(nn.Sequential(nn.Linear(2, 2)), [torch.randn(4, 2)], [4, 8], loss="mse")
>>> setup.names, [o.label for o in setup.options]
(('0',), ['W4', 'W8'])
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from torch import nn

from ....errors import ProblemError
from ....options import Option, OptionLike
from ...sensitivity import Sensitivity
from ..data import Evaluator, LossFn
from ..layers import LayerInfo, discover_layers, resolve_layer_names
from ..perturb import WeightCache
from ..quantizer import WeightScheme


def parse_options(options: Sequence[OptionLike]) -> tuple[Option, ...]:
    """Options as :class:`Option` objects, with a clear error for an empty or bad list."""
    if isinstance(options, (str, int)) or not options:
        raise ProblemError(f"options must be a non-empty list such as [2, 4, 8] or ['W4A8', 'W8A8'], got {options!r}")
    return tuple(Option.parse(o) for o in options)


@dataclass
class Setup:
    """The pieces an estimator works with: the layers, options, evaluator and weight cache."""

    model: nn.Module
    layers: list[LayerInfo]
    options: tuple[Option, ...]
    evaluator: Evaluator
    cache: WeightCache
    started: float

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    def result(self, values: np.ndarray, std: np.ndarray | None, method: str, pairwise: np.ndarray | None = None, **meta: Any) -> Sensitivity:
        bad = ~np.isfinite(values)
        if bad.any():
            i, k = map(int, np.argwhere(bad)[0])
            raise ProblemError(f"{method}: layer {self.names[i]!r} option {self.options[k].label} gave a non-finite sensitivity ({values[i, k]}); check the model, data and loss")
        meta.setdefault("seconds", time.perf_counter() - self.started)
        meta.setdefault("loss", self.evaluator.loss_name)
        meta.setdefault("batches", self.evaluator.num_batches)
        return Sensitivity(self.names, self.options, values, std, method, pairwise, meta)


def prepare(
    model: nn.Module,
    data: Iterable[Any],
    options: Sequence[OptionLike],
    *,
    layers: Sequence[str] | None = None,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    loss: str | LossFn = "auto",
    output_fn: Callable[[Any], Any] | None = None,
    scheme: WeightScheme = WeightScheme(),
) -> Setup:
    """Validate the common arguments of every estimator (at the boundary) and build the pieces.

    ``layers`` (exact names) wins over ``include``/``exclude`` patterns. The model is put in eval
    mode; the evaluator's reference outputs are the unquantized model's.
    """
    started = time.perf_counter()
    found = discover_layers(model, include, exclude)
    if layers is not None:
        resolve_layer_names(model, layers)  # names every unknown layer
        by_name = {layer.name: layer for layer in discover_layers(model)}
        found = [by_name[name] for name in layers]
    model.eval()
    evaluator = Evaluator(model, data, loss=loss, output_fn=output_fn)
    return Setup(model, found, parse_options(options), evaluator, WeightCache(model, scheme), started)
