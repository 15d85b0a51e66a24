"""The sensitivity table every estimator returns (framework-free: shared by the torch and ONNX adapters).

>>> import numpy as np
>>> from mpqopt import Option
>>> s = Sensitivity(("a", "b"), (Option(4), Option(8)), np.array([[0.2, 0.0], [0.1, 0.0]]), None, "demo")
>>> s.problem(costs={"size_bits": [[4, 8], [4, 8]]}, budgets={"size_bits": 12}).num_layers
2
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..options import Option
from ..problem import Problem


@dataclass
class Sensitivity:
    """An estimated sensitivity table ``values[layer, option]`` (loss increase, or the method's
    proxy for it), its standard error across batches (None when the method has none), the pairwise
    matrix for cross-layer methods, and how it was made (``meta``: passes, seconds, loss...)."""

    layers: tuple[str, ...]
    options: tuple[Option, ...]
    values: np.ndarray
    std: np.ndarray | None
    method: str
    pairwise: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def problem(self, costs: Mapping[str, Any] | None = None, budgets: Mapping[str, Any] | None = None, **kwargs: Any) -> Problem:
        """A :class:`~mpqopt.Problem` with this table as its objective (and pairwise term)."""
        meta = {"estimator": self.method, **{k: v for k, v in self.meta.items() if isinstance(v, (str, int, float, bool))}, **kwargs.pop("meta", {})}
        return Problem(self.layers, self.options, self.values, costs, budgets, sensitivity_std=self.std, pairwise=self.pairwise, meta=meta, **kwargs)
