"""Apply a bit-width allocation to a PyTorch model, score it, and compare predicted with measured loss.

``apply`` returns a fake-quantized deep copy (the original model is never touched): each layer's
weight is replaced by its quantized value (the same :class:`~mpqopt.adapters.torch.perturb.WeightCache`
and quantizer the estimators use), and layers whose option has an activation width get a
forward pre-hook that fake-quantizes their input to a calibrated range.

>>> import torch
>>> from torch import nn
>>> from mpqopt.adapters.torch.quantizer import quantize_weight
>>> m = nn.Sequential(nn.Linear(4, 3))
>>> q = apply(m, {"0": 2})
>>> torch.equal(q[0].weight, quantize_weight(m[0].weight, 2)), q is m
(True, False)
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from ...errors import ProblemError
from ...options import Option
from ...problem import Problem
from ...report import fmt_num
from ...verify import violations
from ..choices import Solution, choices_of, quantizes_input
from ..sensitivity import Sensitivity, check_finite, mean_and_stderr
from .data import Evaluator, LossFn
from .formats import apply_reason
from .layers import resolve_layer_names
from .perturb import ActRanges, WeightCache, calibrate_activations, check_act_ranges, input_quantizer, quantized
from .quantizer import WeightScheme

Metric = Callable[[torch.Tensor, Any], float]

__all__ = ["apply", "evaluate", "report", "QuantReport", "choices_of"]


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the block (no BatchNorm statistics updated, dropout off), then the caller's mode back."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _needs_act(choices: Mapping[str, Option]) -> list[str]:
    return [name for name, opt in choices.items() if quantizes_input(opt)]


def _act_ranges(model: nn.Module, choices: Mapping[str, Option], act_ranges: ActRanges | None, calibration: Iterable[Any] | None) -> ActRanges | None:
    """Input ranges for every layer with an activation width: given, or calibrated on the FP32 model."""
    need = _needs_act(choices)
    if not need:
        return act_ranges
    if act_ranges is None:
        if calibration is None:
            raise ProblemError(
                f"layers {need[:5]} have options with activation bits ({choices[need[0]].label}): give calibration= data "
                "or act_ranges= {layer: (lo, hi)} to quantize their inputs, or use weight-only options"
            )
        with _eval_mode(model):
            act_ranges = calibrate_activations(model, need, Evaluator(model, calibration, loss="mse"))
    check_act_ranges(act_ranges, need)
    return act_ranges


def apply(
    model: nn.Module,
    solution: Solution,
    scheme: WeightScheme = WeightScheme(),
    *,
    act_ranges: ActRanges | None = None,
    calibration: Iterable[Any] | None = None,
) -> nn.Module:
    """A fake-quantized deep copy of ``model`` following ``solution``; ``model`` is left untouched.

    ``solution`` is a :class:`~mpqopt.Result` (its problem's options) or ``{layer: option}`` with
    options as labels (``"W4A8"``), :class:`~mpqopt.Option` or ints (weight bits). Layers not named
    stay as they are. Options with an activation width need ``act_ranges`` ``{layer: (lo, hi)}`` or
    ``calibration`` data (batches) to measure them on the FP32 model.
    """
    if not isinstance(model, nn.Module):
        raise ProblemError(f"expected a torch.nn.Module, got {type(model).__name__}")
    choices = choices_of(solution, formats=apply_reason)
    resolve_layer_names(model, choices)  # names any layer the model does not have
    ranges = _act_ranges(model, choices, act_ranges, calibration)
    try:
        out = copy.deepcopy(model)
    except Exception as exc:  # noqa: BLE001 - any deepcopy failure, reported with the cause
        raise ProblemError(f"cannot deep-copy {type(model).__name__} to quantize it: {type(exc).__name__}: {exc}") from None
    cache = WeightCache(out, scheme)
    for name, opt in choices.items():
        module = cache.module(name)
        module.weight.data = cache.get(name, opt)
        if ranges is not None and name in _needs_act({name: opt}):
            lo, hi = ranges[name]
            module.register_forward_pre_hook(input_quantizer(opt.a, lo, hi))
    return out


# ------------------------------------------------------------------------------ scoring
def _outputs(model: nn.Module, batches: Sequence[tuple[Any, Any]], output_fn: Callable[[Any], torch.Tensor] | None) -> list[torch.Tensor]:
    """Scored outputs of ``model`` on already-split batches (the Evaluator's error handling)."""
    with _eval_mode(model):
        return Evaluator(model, batches, loss="mse", output_fn=output_fn).references


def _losses(ev: Evaluator, outputs: Sequence[torch.Tensor], what: str) -> np.ndarray:
    return np.array([check_finite(float(ev.loss_of(i, out)), f"{what} on batch {i}") for i, out in enumerate(outputs)])


def _accuracy(out: torch.Tensor, target: Any, i: int) -> float:
    if target is None:
        raise ProblemError(f"accuracy needs targets, but batch {i} has none: give (inputs, targets) batches")
    target = torch.as_tensor(target)
    if out.shape[:-1] != target.shape:
        raise ProblemError(f"accuracy: batch {i} has outputs {tuple(out.shape)} but targets {tuple(target.shape)}; expected targets of shape {tuple(out.shape[:-1])}")
    return float((out.argmax(dim=-1) == target).float().mean())


def evaluate(
    model: nn.Module,
    data: Iterable[Any],
    metric: str | Metric = "loss",
    *,
    loss: str | LossFn = "auto",
    output_fn: Callable[[Any], torch.Tensor] | None = None,
    reference: nn.Module | None = None,
) -> float:
    """``metric`` of ``model`` on ``data``: the mean over batches weighted by batch size.

    ``metric`` is ``"loss"`` (``loss=`` as in the estimators: ``"ce"`` needs targets; ``"kl"``,
    ``"mse"`` and ``"cosine"`` compare with ``reference``'s outputs, so they need ``reference=``,
    e.g. the FP32 model), ``"accuracy"`` (top-1 over the last output dimension) or a callable
    ``metric(output, target) -> number`` per batch. Runs in eval mode, the model's mode is restored.

    >>> m = nn.Linear(2, 2)
    >>> evaluate(m, [(torch.eye(2), torch.tensor([0, 1]))], "accuracy") in (0.0, 0.5, 1.0)
    True
    """
    if not isinstance(model, nn.Module):
        raise ProblemError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if metric == "loss":
        with _eval_mode(reference or model):
            ev = Evaluator(reference or model, data, loss=loss, output_fn=output_fn)
        if ev.loss_name in ("kl", "mse", "cosine") and reference is None:
            raise ProblemError(f"loss '{ev.loss_name}' compares the model with reference outputs: pass reference= (e.g. the FP32 model), or use labelled data and loss='ce'")
        outputs = ev.references if reference is None else _outputs(model, ev.batches, output_fn)
        values = _losses(ev, outputs, f"loss '{ev.loss_name}'")
        batches = ev.batches
    elif metric == "accuracy" or callable(metric):
        with _eval_mode(model):
            ev = Evaluator(model, data, loss="mse", output_fn=output_fn)
        batches, outputs = ev.batches, ev.references
        values = np.empty(len(outputs))
        for i, (out, (_, target)) in enumerate(zip(outputs, batches)):
            if metric == "accuracy":
                values[i] = _accuracy(out, target, i)
            else:
                try:
                    raw = metric(out, target)
                    values[i] = float(raw)
                except (TypeError, ValueError) as exc:
                    raise ProblemError(f"metric failed on batch {i} or did not return a number: {exc}") from None
                check_finite(values[i], f"metric on batch {i}")
    else:
        raise ProblemError(f"metric must be 'loss', 'accuracy' or a callable(output, target) -> number, got {metric!r}")
    sizes = np.array([out.shape[0] if out.dim() else 1 for out in outputs], dtype=np.float64)
    return float(np.average(values, weights=sizes))


# ------------------------------------------------------------------------------ report
POOR_RANK_CORRELATION = 0.5  # below this Spearman correlation the table's ranking is not trusted


@dataclass
class Reliability:
    """How well a table ranks allocations: predicted and measured loss change of ``len(predicted)``
    random allocations that meet the problem's budgets, and their Spearman rank correlation."""

    predicted: list[float]
    measured: list[float]
    spearman: float | None  # None with fewer than 3 allocations or constant values
    tried: int  # random draws made to find them (draws that broke a budget were skipped)

    @property
    def poor(self) -> bool:
        return self.spearman is None or self.spearman < POOR_RANK_CORRELATION

    def summary(self) -> str:
        rho = "undefined" if self.spearman is None else f"{self.spearman:.2f}"
        verdict = " (poor: the table's ranking of allocations is not trusted; measure candidates)" if self.poor else ""
        return f"reliability: Spearman {rho} between predicted and measured loss change over {len(self.predicted)} random feasible allocations{verdict}"


@dataclass
class QuantReport:
    """Predicted against measured loss change of one allocation.

    ``predicted`` is the problem's objective for the assignment (sum of the chosen sensitivity
    entries plus the pairwise term, ``pairwise``); ``measured`` the mean over batches of the loss
    of the quantized copy minus the FP32 loss (``measured_stderr`` its standard error across the
    ``batches``; None with a single batch, where it cannot be estimated); ``rows``
    ``(layer, option, predicted entry, measured alone or None)``.
    """

    predicted: float
    measured: float
    measured_stderr: float | None
    fp_loss: float
    quantized_loss: float
    loss: str
    pairwise: float
    rows: list[tuple[str, str, float, float | None]]
    batches: int = 1
    reliability: Reliability | None = None

    def table(self) -> str:
        alone = any(r[3] is not None for r in self.rows)
        footer = [] if self.reliability is None else ["", self.reliability.summary()]
        head = ["layer", "option", "predicted"] + (["measured alone"] if alone else [])
        body = [[name, label, fmt_num(pred)] + ([fmt_num(meas)] if alone else []) for name, label, pred, meas in self.rows]
        if self.pairwise:
            body.append(["(pairwise)", "", fmt_num(self.pairwise)] + ([""] if alone else []))
        body.append(["total", "", fmt_num(self.predicted)] + ([fmt_num(sum(r[3] for r in self.rows if r[3] is not None))] if alone else []))
        widths = [max(len(str(row[c])) for row in [head, *body]) for c in range(len(head))]
        lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in [head, *body]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append("")
        lines.append(
            f"loss '{self.loss}': FP32 {fmt_num(self.fp_loss, 6)}, quantized {fmt_num(self.quantized_loss, 6)}; "
            f"change predicted {fmt_num(self.predicted)}, measured {fmt_num(self.measured)}"
            + (f" ± {fmt_num(self.measured_stderr, 2)} (s.e. over {self.batches} batches)" if self.measured_stderr is not None else " (one batch: no standard error)")
        )
        return "\n".join(lines + footer)

    def __str__(self) -> str:
        return self.table()


def _labels_for(problem: Problem, choices: Mapping[str, Option]) -> dict[str, str]:
    """The problem's label for each chosen option (same label, else same (w, a))."""
    by_label = set(problem.option_labels)
    by_bits = {(o.w, o.a): o.label for o in problem.options}
    out = {}
    for name, opt in choices.items():
        if opt.label in by_label:
            out[name] = opt.label
        elif (opt.w, opt.a) in by_bits:
            out[name] = by_bits[(opt.w, opt.a)]
        else:
            raise ProblemError(f"layer {name!r} takes option {opt.label}, which is not one of the problem's options {list(problem.option_labels)}")
    return out


def report(
    model: nn.Module,
    solution: Solution,
    problem: Problem | Sensitivity,
    data: Iterable[Any],
    *,
    scheme: WeightScheme = WeightScheme(),
    act_ranges: ActRanges | None = None,
    calibration: Iterable[Any] | None = None,
    loss: str | LossFn | None = None,
    output_fn: Callable[[Any], torch.Tensor] | None = None,
    per_layer: bool = False,
    reliability: int = 0,
    seed: int = 0,
) -> QuantReport:
    """Predicted (``problem.evaluate(assignment).objective``) against measured loss change on ``data``.

    ``reliability=N`` also measures N random allocations that meet the problem's budgets (one pass
    over ``data`` each) and reports the Spearman rank correlation of predicted against measured
    loss change (``QuantReport.reliability``): a cheap check that the table ranks allocations as the
    model does, with a warning below 0.5, since an exact solve of a table that ranks badly can
    lose to uniform.

    ``loss`` defaults to the one the sensitivity was estimated with (``meta['loss']``), else
    ``"auto"``. ``per_layer=True`` also measures each layer quantized alone (one pass over the
    data per layer). The FP32 model is scored in eval mode and left unchanged.
    """
    if isinstance(problem, Sensitivity):
        problem = problem.problem()
    if not isinstance(problem, Problem):
        raise ProblemError(f"report needs the Problem or Sensitivity that predicted the loss, got {type(problem).__name__}")
    choices = choices_of(solution, formats=apply_reason)
    resolve_layer_names(model, choices)
    predicted_eval = problem.evaluate(_labels_for(problem, choices))  # names missing/unknown layers
    if loss is None:
        named = problem.meta.get("loss")
        loss = named if isinstance(named, str) and named in ("ce", "kl", "mse", "cosine") else "auto"
    ranges = _act_ranges(model, choices, act_ranges, calibration)
    with _eval_mode(model):
        ev = Evaluator(model, data, loss=loss, output_fn=output_fn)
        fp = _losses(ev, ev.references, "the FP32 model")
    qmodel = apply(model, choices, scheme, act_ranges=ranges)
    q = _losses(ev, _outputs(qmodel, ev.batches, output_fn), "the quantized model")
    delta, stderr = mean_and_stderr(q - fp)
    labels = _labels_for(problem, choices)
    rows = []
    cache = WeightCache(model, scheme)
    for name in problem.layers:
        entry = float(problem.sensitivity[problem.layer_index(name), problem.option_index(labels[name])])
        alone = None
        if per_layer:
            with _eval_mode(model), quantized(model, {name: choices[name]}, cache=cache, act_ranges=ranges):
                alone = float(np.mean(_losses(ev, [ev.output(i) for i in range(ev.num_batches)], f"layer {name!r} alone") - fp))
        rows.append((name, labels[name], entry, alone))
    pairwise = predicted_eval.objective - sum(r[2] for r in rows)
    checked = None if not reliability else _reliability(model, problem, ev, fp, scheme, ranges, output_fn, int(reliability), seed)
    return QuantReport(predicted_eval.objective, float(delta), float(stderr) if ev.num_batches > 1 else None, float(fp.mean()), float(q.mean()),
                       ev.loss_name, pairwise if problem.pairwise is not None else 0.0, rows, ev.num_batches, checked)


def measurer(model: nn.Module, data: Iterable[Any], *, loss: str | LossFn = "auto", scheme: WeightScheme = WeightScheme(),
             act_ranges: ActRanges | None = None, calibration: Iterable[Any] | None = None,
             output_fn: Callable[[Any], torch.Tensor] | None = None) -> Callable[[Mapping[str, Any]], tuple[float, float | None]]:
    """``measure(assignment) -> (loss change, standard error or None)`` on ``data``, for
    :func:`mpqopt.refine`: the FP32 losses once, then one quantized copy per call (the model is left
    unchanged; eval mode). Activation ranges come from ``act_ranges`` or ``calibration`` as in :func:`apply`.

    >>> import torch; from torch import nn; import mpqopt
    >>> _ = torch.manual_seed(0)
    >>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> data = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(2)]
    >>> measure = measurer(m, data, loss="ce")
    >>> change, stderr = measure({"0": "W8", "2": "W8"})  # 8-bit weights barely move the loss
    >>> abs(change) < 1e-2, stderr is not None
    (True, True)
    """
    with _eval_mode(model):
        ev = Evaluator(model, data, loss=loss, output_fn=output_fn)
        fp = _losses(ev, ev.references, "the FP32 model")

    def measure(assignment: Mapping[str, Any]) -> tuple[float, float | None]:
        choices = choices_of(dict(assignment))
        resolve_layer_names(model, choices)
        ranges = _act_ranges(model, choices, act_ranges, calibration)
        q = _losses(ev, _outputs(apply(model, choices, scheme, act_ranges=ranges), ev.batches, output_fn), "the quantized model")
        delta, stderr = mean_and_stderr(q - fp)
        return float(delta), (float(stderr) if ev.num_batches > 1 else None)

    return measure


def _reliability(model: nn.Module, problem: Problem, ev: Evaluator, fp: np.ndarray, scheme: WeightScheme, ranges: ActRanges | None,
                 output_fn: Callable[[Any], torch.Tensor] | None, count: int, seed: int) -> Reliability:
    """Predicted vs measured loss change of ``count`` random allocations meeting the problem's budgets
    (uniform over each layer's allowed options, draws that break a budget skipped, at most 200 per
    allocation wanted); a warning when the rank correlation is poor."""
    rng = np.random.default_rng(seed)
    allowed = [np.nonzero(row)[0] for row in problem.allowed]
    fixed = {problem.layer_index(name): problem.option_index(label) for name, label in problem.fixed.items()}
    predicted, measured, tried = [], [], 0
    while len(predicted) < count and tried < 200 * count:
        tried += 1
        x = np.array([fixed.get(i, rng.choice(ok)) for i, ok in enumerate(allowed)])
        for group in problem.ties:  # tied layers share the first member's option
            first = problem.layer_index(group[0])
            x[[problem.layer_index(n) for n in group]] = x[first]
        if violations(problem, x, problem.budgets):
            continue
        labels = problem.to_labels(x)
        qmodel = apply(model, {n: labels[n] for n in problem.layers}, scheme, act_ranges=ranges)
        q = _losses(ev, _outputs(qmodel, ev.batches, output_fn), "a random allocation")
        predicted.append(float(problem.evaluate(x).objective))
        measured.append(float(np.mean(q - fp)))
    rho = None
    if len(predicted) >= 3 and np.ptp(predicted) > 0 and np.ptp(measured) > 0:
        rho = float(spearmanr(predicted, measured)[0])
    result = Reliability(predicted, measured, rho, tried)
    if result.poor:
        warnings.warn(result.summary() + (f" (only {len(predicted)} of {count} found in {tried} draws)" if len(predicted) < count else ""), stacklevel=3)
    return result
