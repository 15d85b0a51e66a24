"""The set-up every torch sensitivity estimator shares; they return a
:class:`~mpqopt.adapters.sensitivity.Sensitivity`.

>>> import torch
>>> from torch import nn
>>> setup = prepare(nn.Sequential(nn.Linear(2, 2)), [torch.randn(4, 2)], [4, 8], loss="mse")
>>> setup.names, [o.label for o in setup.options]
(('0',), ['W4', 'W8'])
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from torch import nn

from ....options import Option, OptionLike
from ...choices import parse_options
from ...sensitivity import Sensitivity
from ..data import Evaluator, LossFn
from ..layers import LayerInfo, discover_layers, resolve_layer_names
from ..perturb import WeightCache
from ..quantizer import WeightScheme
from ..stages import stage_model


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
        meta.setdefault("seconds", time.perf_counter() - self.started)
        meta.setdefault("loss", self.evaluator.loss_name)
        meta.setdefault("batches", self.evaluator.num_batches)
        return Sensitivity.checked(self.names, self.options, values, std, method, pairwise, meta)


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
    """Validate the common arguments of every estimator (at the boundary) and build the pieces;
    what they mean for users is documented in :mod:`mpqopt.adapters.torch.estimators`.

    ``layers`` (exact names) wins over ``include``/``exclude`` patterns. The model is put in eval
    mode; the evaluator's reference outputs are the unquantized model's.
    """
    started = time.perf_counter()
    found = discover_layers(model, include, exclude)
    if layers is not None:
        resolve_layer_names(model, layers)  # names every unknown layer
        by_name = {layer.name: layer for layer in discover_layers(model, embeddings=True)}
        found = [by_name[name] for name in layers]
    model.eval()
    evaluator = Evaluator(model, data, loss=loss, output_fn=output_fn)
    return Setup(model, found, parse_options(options), evaluator, WeightCache(model, scheme), started)


@dataclass
class StagedJob:
    """What a worker needs to rebuild a staged estimator run, picklable (see :mod:`.runs`): the
    model travels with its weights; subclasses add their own share of the work (and ``graph``, the
    fx graph traced here so workers need not trace it again)."""

    token: str
    origin_pid: int
    model: nn.Module
    batches: list[Any]
    options: tuple[Option, ...]
    names: tuple[str, ...]
    loss: Any
    output_fn: Any
    scheme: WeightScheme
    act_ranges: dict[str, tuple[float, float]] | None
    mode: str

    def staged(self, graph: Any = None) -> tuple[Setup, Any]:
        """A worker's own copy of the model, prepared and split into stages."""
        setup = prepare(copy.deepcopy(self.model), self.batches, self.options, layers=self.names, loss=self.loss, output_fn=self.output_fn, scheme=self.scheme)
        return setup, stage_model(setup.model, setup.names, setup.evaluator.batches[0][0], mode=self.mode, output_fn=setup.evaluator.output_fn, graph=graph)
