"""The sensitivity table every estimator returns, and the checks and statistics of measuring one
(framework-free: shared by the torch and ONNX adapters).

>>> import numpy as np
>>> from mpqopt import Option
>>> s = Sensitivity(("a", "b"), (Option(4), Option(8)), np.array([[0.2, 0.0], [0.1, 0.0]]), None, "demo")
>>> s.problem(costs={"size_bits": [[4, 8], [4, 8]]}, budgets={"size_bits": 12}).num_layers
2
>>> [float(v) for v in mean_and_stderr(np.array([1.0, 3.0]))]   # a loss change over two batches
[2.0, 1.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ProblemError
from ..options import Option
from ..problem import Problem

# what the error messages ask the user to check, in the torch adapter's words (the ONNX adapter
# passes its own: inputs and metric)
_CHECK = "the model, data and loss"


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

    @classmethod
    def checked(cls, layers: Sequence[str], options: Sequence[Option], values: np.ndarray, std: np.ndarray | None, method: str,
                pairwise: np.ndarray | None = None, meta: Mapping[str, Any] | None = None, *, check: str = _CHECK) -> "Sensitivity":
        """A table whose every value is finite, else an error naming the first bad layer and option
        (``check`` says what the user should look at).

        >>> Sensitivity.checked(["fc"], [Option(4)], np.array([[np.nan]]), None, "demo")
        Traceback (most recent call last):
        ...
        mpqopt.errors.ProblemError: demo: layer 'fc' option W4 gave a non-finite sensitivity (nan); check the model, data and loss
        """
        bad = ~np.isfinite(values)
        if bad.any():
            i, k = map(int, np.argwhere(bad)[0])
            raise ProblemError(f"{method}: layer {layers[i]!r} option {options[k].label} gave a non-finite sensitivity ({values[i, k]}); check {check}")
        return cls(tuple(layers), tuple(options), values, std, method, pairwise, dict(meta or {}))

    def problem(self, costs: Mapping[str, Any] | None = None, budgets: Mapping[str, Any] | None = None, **kwargs: Any) -> Problem:
        """A :class:`~mpqopt.Problem` with this table as its objective (and pairwise term)."""
        meta = {"estimator": self.method, **{k: v for k, v in self.meta.items() if isinstance(v, (str, int, float, bool))}, **kwargs.pop("meta", {})}
        return Problem(self.layers, self.options, self.values, costs, budgets, sensitivity_std=self.std, pairwise=self.pairwise, meta=meta, **kwargs)


def mean_and_stderr(samples: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Mean over ``axis`` (the batches) and its standard error (0 with a single sample)."""
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.shape[axis]
    mean = samples.mean(axis=axis)
    if n < 2:
        return mean, np.zeros_like(mean)
    return mean, samples.std(axis=axis, ddof=1) / np.sqrt(n)


def check_finite(value: float, what: str, check: str = "the model, the data and the loss function") -> float:
    """``value``, or an error for a NaN/inf loss naming ``what`` produced it (``check``: what the
    user should look at).

    >>> check_finite(float("nan"), "layer 'fc' at W2 (batch 0)")
    Traceback (most recent call last):
    ...
    mpqopt.errors.ProblemError: layer 'fc' at W2 (batch 0) gave a non-finite loss (nan); check the model, the data and the loss function
    """
    if not np.isfinite(value):
        raise ProblemError(f"{what} gave a non-finite loss ({value}); check {check}")
    return value
