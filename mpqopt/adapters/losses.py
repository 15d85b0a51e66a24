"""Which loss a measured sensitivity scores, by name or callable (framework-free: the rule both
adapters follow).

The names: ``"ce"`` cross-entropy to targets; ``"kl"`` KL(FP32 ‖ quantized) of the softmax outputs;
``"mse"`` and ``"cosine"`` against the FP32 output; ``"auto"`` = ``"ce"`` when every batch has
targets, else ``"kl"``. The functions themselves stay in each adapter (torch's must be
differentiable for the gradient estimators; the ONNX adapter computes them in numpy and must not
import torch).

>>> choose_loss("auto", [True, False], {"ce": min, "kl": max})
('kl', <built-in function max>)
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence, TypeVar

from ..errors import ProblemError

LOSS_NAMES = ("auto", "ce", "kl", "mse", "cosine")
F = TypeVar("F", bound=Callable)


def choose_loss(choice: str | F, has_target: Sequence[bool], functions: Mapping[str, F], *, what: str = "loss",
                target: str = "targets", fix: str = "give (inputs, targets) batches or use loss='kl'") -> tuple[str, F]:
    """``(name, function)`` for ``choice`` (a name of :data:`LOSS_NAMES` or a callable), given which
    batches carry targets; ``functions`` maps the names to the adapter's functions. ``what``,
    ``target`` and ``fix`` word the errors in the adapter's terms (e.g. "metric", "labels")."""
    if isinstance(choice, str):
        if choice not in LOSS_NAMES:
            raise ProblemError(f"{what} must be one of {LOSS_NAMES} or a callable, got {choice!r}")
        if choice == "auto":
            choice = "ce" if all(has_target) else "kl"
        if choice == "ce" and not all(has_target):
            raise ProblemError(f"{what} 'ce' needs {target}, but batch {list(has_target).index(False)} has none: {fix}")
        return choice, functions[choice]
    if callable(choice):
        return getattr(choice, "__name__", "custom"), choice
    raise ProblemError(f"{what} must be one of {LOSS_NAMES} or a callable, got {type(choice).__name__}")
