"""Measure and refine: check the solver's allocation against the model, correct the table, solve again.

An exact solve is only as good as its sensitivity table, and tables can mislead (a layer predicted to
cost 0.002 at W2 measured 0.084; an exact allocation from such a table lost to uniform W3 by 14x).
:func:`refine` measures instead of trusting:

1. every uniform allocation that meets the budgets (each layer at one option, fixed layers kept) is
   measured, so the answer can never be worse than the best of them;
2. the table is solved; its allocation and up to ``alternatives`` distinct runners-up (solves at
   budgets tightened by 2 %, 5 %, 10 % ..., which meet the original budgets too) are measured;
3. where a measurement contradicts the table (beyond twice its standard error, or by more than 10 %
   without one), the chosen entries of that allocation are corrected so that the table predicts what
   was measured: scaled by measured / predicted when both are positive, otherwise shifted by the
   difference spread over the allocation's layers; the corrected table is solved again;
4. it stops when the solver's allocation is already measured and is the best measured one
   (``converged``), or when ``max_evaluations`` measurements are spent.

The answer is the best *measured* allocation, so on the measurement data it is never worse than the
best measured uniform allocation that fits. ``measure(assignment)`` is any callable returning the
loss change of ``{layer: option label}`` (a number, or ``(mean, standard error)``): the PyTorch
adapter's :func:`mpqopt.adapters.torch.measurer`, the ONNX adapter's, or your own evaluation.

>>> import numpy as np, mpqopt
>>> truth = np.array([[0.9, 0.2, 0.0], [0.5, 0.1, 0.0], [0.1, 0.05, 0.0]])
>>> table = truth.copy(); table[0, 0] = 0.01  # the table is wrong about layer a at W2
>>> p = mpqopt.Problem(["a", "b", "c"], ["W2", "W4", "W8"], table, costs={"size_bits": [[2, 4, 8]] * 3})
>>> measure = lambda assignment: sum(truth[i, ["W2", "W4", "W8"].index(assignment[n])] for i, n in enumerate("abc"))
>>> r = refine(p, measure, {"size_bits": 12})
>>> r.assignment, round(r.measured, 3), r.converged
({'a': 'W4', 'b': 'W4', 'c': 'W4'}, 0.35, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from .arguments import validated_arguments
from .budgets import resolve_budgets
from .errors import ArgumentError, MpqoptError
from .problem import Problem
from .result import Result
from .solve import solve
from .verify import violations

Measure = Callable[[dict[str, str]], Any]  # {layer: label} -> loss change, or (loss change, standard error)
TIGHTEN = (0.98, 0.95, 0.9, 0.8, 0.7)  # budget shares of the runners-up solves
SIGMAS = 2.0  # a measurement contradicts the table beyond this many standard errors
REL_TOL = 0.1  # ... or, without a standard error, by more than this share


@dataclass
class Measurement:
    """One measured allocation: what the original table predicted and what was measured."""

    x: np.ndarray
    assignment: dict[str, str]
    predicted: float
    measured: float
    stderr: float | None
    source: str  # "uniform W4", "solve 1", "runner-up 1.2"...


@dataclass
class RefineResult:
    """The best measured allocation and how it was found.

    ``assignment``/``x``, ``predicted`` (by the original table) and ``measured`` (± ``stderr``) of the
    answer; ``measurements`` (every allocation measured, in order), ``evaluations`` (their count),
    ``corrected`` (``(layer, option) -> (original entry, corrected entry)``), ``problem`` (the
    corrected table), ``result`` (the last solve), ``best_uniform`` (the best measured uniform
    allocation that fits, or None), ``converged`` and ``message``.
    """

    x: np.ndarray
    assignment: dict[str, str]
    predicted: float
    measured: float
    stderr: float | None
    measurements: list[Measurement]
    corrected: dict[tuple[str, str], tuple[float, float]]
    problem: Problem
    result: Result | None
    best_uniform: Measurement | None
    converged: bool
    message: str = ""
    budgets: dict[str, float] = field(default_factory=dict)

    @property
    def evaluations(self) -> int:
        return len(self.measurements)

    def table(self) -> str:
        lines = [f"{'source':<16} {'predicted':>12} {'measured':>12}  assignment"]
        for m in self.measurements:
            mark = " *" if m.x.tolist() == self.x.tolist() else ""
            lines.append(f"{m.source:<16} {m.predicted:>12.6g} {m.measured:>12.6g}  {' '.join(m.assignment.values())}{mark}")
        lines.append(self.message)
        return "\n".join(lines)


def refine(problem: Problem, measure: Measure, budgets: Mapping[str, Any] | None = None, *, solver: str = "auto",
           max_evaluations: int = 20, alternatives: int = 2, time_limit: float | None = None) -> RefineResult:
    """Solve, measure the answer, its runners-up and the uniform allocations that fit, correct the
    table where measurements contradict it, and repeat; return the best measured allocation (module
    docstring). ``time_limit`` applies to each solve; ``max_evaluations`` bounds the measurements."""
    if not isinstance(problem, Problem):
        raise ArgumentError(f"refine() needs an mpqopt.Problem, got {type(problem).__name__}")
    if not callable(measure):
        raise ArgumentError(f"measure must be a callable {{layer: label}} -> loss change, got {type(measure).__name__}")
    for name, value, least in (("max_evaluations", max_evaluations, 1), ("alternatives", alternatives, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ArgumentError(f"{name} must be a whole number >= {least}, got {value!r}")
    solver = validated_arguments(solver=solver, time_limit=time_limit).solver
    limits = resolve_budgets(problem, budgets, base=problem.budgets)
    measured: dict[tuple[int, ...], Measurement] = {}
    order: list[Measurement] = []

    def take(x: np.ndarray, source: str) -> Measurement | None:
        key = tuple(int(v) for v in x)
        if key in measured:
            return measured[key]
        if len(order) >= max_evaluations:
            return None
        assignment = problem.to_labels(x)
        value, stderr = _read(measure(dict(assignment)), source)
        m = Measurement(np.array(key), assignment, float(problem.evaluate(x).objective), value, stderr, source)
        measured[key] = m
        order.append(m)
        return m

    uniform = [m for m in (take(x, f"uniform {label}") for x, label in _uniform_fits(problem, limits)) if m is not None]
    best_uniform = min(uniform, key=lambda m: m.measured, default=None)
    current, corrected, result, converged = problem, {}, None, False
    for round_ in range(1, max_evaluations + 1):
        result = solve(current, limits, solver=solver, time_limit=time_limit)
        if result.x is None:
            break
        answer = take(result.x, f"solve {round_}")
        if answer is None:
            break
        best = min(order, key=lambda m: m.measured)
        if round_ > 1 and answer is best and not _contradicts(answer, current):
            converged = True
            break
        for j, share in enumerate(TIGHTEN[:alternatives], start=1):
            tighter = {name: limit * share if limit > 0 else limit for name, limit in limits.items()}
            runner = solve(current, tighter, solver=solver, time_limit=time_limit) if limits else None
            if runner is not None and runner.x is not None and not violations(problem, runner.x, limits):
                take(runner.x, f"runner-up {round_}.{j}")
        current, changed = _corrected(problem, current, order, corrected)
        if not changed:  # every measurement agrees with the corrected table: its optimum stands
            converged = answer is min(order, key=lambda m: m.measured)
            break
    if not order:
        raise MpqoptError("refine: no allocation meets the budgets, so none could be measured" + (f" ({result.message})" if result is not None else ""))
    best = min(order, key=lambda m: m.measured)
    message = (f"best of {len(order)} measured allocations ({best.source}): measured {best.measured:.6g}, predicted {best.predicted:.6g}"
               + ("" if best_uniform is None else f"; best uniform that fits ({best_uniform.source}) measured {best_uniform.measured:.6g}")
               + f"; {len(corrected)} table entries corrected; " + ("converged: the solver's allocation is the best measured one" if converged
                                                                   else "stopped: " + ("measurement budget spent" if len(order) >= max_evaluations else "no further progress")))
    return RefineResult(best.x, best.assignment, best.predicted, best.measured, best.stderr, order, corrected, current, result, best_uniform,
                        converged, message, dict(limits))


def _read(value: Any, source: str) -> tuple[float, float | None]:
    """A measurement as (loss change, standard error or None); clear errors for anything else."""
    stderr = None
    if isinstance(value, tuple) and len(value) == 2:
        value, stderr = value
    try:
        value = float(value)
        stderr = None if stderr is None else float(stderr)
    except (TypeError, ValueError):
        raise MpqoptError(f"refine: measure() returned {value!r} for {source}; it must return a number or (number, standard error)") from None
    if not math.isfinite(value) or (stderr is not None and not (math.isfinite(stderr) and stderr >= 0)):
        raise MpqoptError(f"refine: measure() returned a non-finite loss change or standard error for {source} ({value}, {stderr})")
    return value, stderr


def _uniform_fits(problem: Problem, limits: Mapping[str, float]) -> list[tuple[np.ndarray, str]]:
    """Each option as a uniform allocation (fixed layers keep theirs) that is allowed and meets the budgets."""
    fixed = {problem.layer_index(name): problem.option_index(label) for name, label in problem.fixed.items()}
    out = []
    for k, option in enumerate(problem.options):
        x = np.array([fixed.get(i, k) for i in range(problem.num_layers)])
        if problem.allowed[np.arange(problem.num_layers), x].all() and not violations(problem, x, limits):
            out.append((x, option.label))
    return out


def _contradicts(m: Measurement, table: Problem) -> bool:
    predicted = float(table.evaluate(m.x).objective)
    if m.stderr is not None and m.stderr > 0:
        return abs(m.measured - predicted) > SIGMAS * m.stderr
    return abs(m.measured - predicted) > REL_TOL * max(abs(m.measured), abs(predicted), 1e-12)


def _corrected(original: Problem, table: Problem, order: list[Measurement], corrected: dict) -> tuple[Problem, bool]:
    """The table with each contradicted allocation's chosen entries corrected to predict its measurement."""
    values = np.array(table.sensitivity, dtype=np.float64)
    rows = np.arange(original.num_layers)
    changed = False
    for m in order:
        now = table.replace(sensitivity=values)
        if not _contradicts(m, now):
            continue
        current = float(now.evaluate(m.x).objective)
        chosen = values[rows, m.x]
        separable = float(chosen.sum())
        rest = current - separable  # the pairwise term's share stays as the table has it
        target = m.measured - rest
        if separable > 0 and target > 0:
            values[rows, m.x] = chosen * (target / separable)
        else:
            values[rows, m.x] = chosen + (target - separable) / original.num_layers
        changed = True
    if not changed:
        return table, False
    for i, k in zip(*np.nonzero(values != original.sensitivity)):
        corrected[(original.layers[i], original.options[k].label)] = (float(original.sensitivity[i, k]), float(values[i, k]))
    return table.replace(sensitivity=values), True
