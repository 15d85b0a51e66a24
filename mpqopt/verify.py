"""Independent re-check of an assignment against every constraint of a problem.

This deliberately uses only the ``Problem`` (never a backend's canonical model), so a bug in a
reduction or a backend cannot hide a violated constraint.
"""

from __future__ import annotations

import weakref
from typing import Mapping

import numpy as np

from .problem import Problem, is_frozen

# Budgets of non-integer tables are compared with a relative tolerance: costs are sums of floats whose order differs
# between solvers, so an exactly-binding budget may differ in the last few bits. It is far below
# any solver's feasibility tolerance: 1e-12 of a 1e12-bit budget is one bit.
# The one budget tolerance: the algorithms (is_feasible, repair, the dual, the DPs, local search) use
# it too, so an assignment they accept verifies.
BUDGET_RTOL = 1e-12
# Integer tables whose largest row entries sum to at most this are summed exactly in float64 in any
# order (every partial sum is an integer of at most 2**53): their budgets are checked exactly, and
# a relative slack would let through real violations (1e-12 of a 2**49 budget is 563 units).
EXACT_INTEGER_MAX = 2.0**53


def exact_integer(table: np.ndarray) -> bool:
    """Whether every total of ``table`` (one entry per row, summed in any order) is exact in float64:
    finite integer entries whose largest absolute entries per row sum to at most 2**53.

    >>> exact_integer(np.array([[2.0**49, 1.0], [3.0, 4.0]])), exact_integer(np.array([[0.5, 1.0]]))
    (True, False)

    A table mpqopt froze (:func:`~mpqopt.problem.freeze`: every table of a ``Problem``) is checked once: the answer
    is remembered for as long as the array lives (a 1,000,000 x 8 table took ~0.3 s a check, and a
    solve asks up to five times).
    """
    t = np.asarray(table, dtype=np.float64)
    if t.size == 0:
        return True
    frozen = is_frozen(t)  # a user's read-only array can be made writeable, changed and frozen again
    if frozen and (known := _exact_known.get(id(t))) is not None and known[0]() is t:
        return known[1]
    answer = _exact_integer(t)
    if frozen:
        key = id(t)
        _exact_known[key] = (weakref.ref(t, lambda _, key=key: _exact_known.pop(key, None)), answer)
    return answer


_exact_known: dict[int, tuple[weakref.ref, bool]] = {}
_EXACT_ROWS = 1 << 15  # rows per block: the checks' temporaries stay small


def _exact_integer(t: np.ndarray) -> bool:
    rows = t.reshape(t.shape[0], -1)
    row_max = np.empty(rows.shape[0])
    for lo in range(0, rows.shape[0], _EXACT_ROWS):
        block = rows[lo:lo + _EXACT_ROWS]
        if not (np.isfinite(block).all() and (block == np.round(block)).all()):
            return False
        np.abs(block).max(axis=1, out=row_max[lo:lo + _EXACT_ROWS])
    return float(row_max.sum()) <= EXACT_INTEGER_MAX


def limit_roundoff(limit):
    """The slack of a budget on an exact integer table: the round-off of computing the limit itself
    (4.1 bits per weight times 3e9 weights is 12299999999.999998), a few ulps and never more than a
    quarter unit, so an integer total one unit over is always a violation. Elementwise on arrays."""
    return np.minimum(4.0 * np.spacing(np.abs(limit)), 0.25)


def budget_tolerance(table: np.ndarray, limit: float, total: float) -> float:
    """How far ``total`` may exceed ``limit`` and still meet the budget: :func:`limit_roundoff` for
    an :func:`exact_integer` table, else ``BUDGET_RTOL`` of the larger of the two (sums in another
    order round differently)."""
    return float(limit_roundoff(limit)) if exact_integer(table) else BUDGET_RTOL * max(abs(limit), abs(total))


def loss_exceeds(problem: Problem, loss: float, max_loss: float) -> bool:
    """Whether a total predicted loss breaks ``loss <= max_loss`` beyond round-off: the loss sums terms
    of either sign, so the tolerance is relative to the problem's objective scale too."""
    return loss > max_loss + BUDGET_RTOL * max(abs(max_loss), abs(loss), problem.objective_scale)


def violations(problem: Problem, x: np.ndarray, budgets: Mapping[str, float], max_loss: float | None = None) -> list[str]:
    """Every constraint that ``x`` (option index per layer) breaks, as readable sentences; with
    ``max_loss`` (accuracy-target mode) also a total predicted loss above it."""
    x = np.asarray(x)
    if x.shape != (problem.num_layers,) or not np.issubdtype(x.dtype, np.integer):
        return [f"assignment has shape {x.shape} and dtype {x.dtype}, expected {problem.num_layers} option indices"]
    if x.min() < 0 or x.max() >= problem.num_options:
        return ["assignment has option indices out of range"]
    found: list[str] = []
    rows = np.arange(problem.num_layers)
    for l in np.nonzero(~problem.allowed[rows, x])[0][:5]:
        found.append(f"layer '{problem.layers[l]}' got option '{problem.options[x[l]].label}', which is not allowed")
    for name, label in problem.fixed.items():
        l = problem.layer_index(name)
        if problem.options[x[l]].label != label:
            found.append(f"layer '{name}' is fixed to '{label}' but got '{problem.options[x[l]].label}'")
    for group in problem.ties:
        chosen = {problem.options[x[problem.layer_index(n)]].label for n in group}
        if len(chosen) > 1:
            found.append(f"tied layers {list(group)} got different options {sorted(chosen)}")
    for name, limit in budgets.items():
        table = problem.budget_table(name)
        total = float(table[rows, x].sum())
        if total > limit + budget_tolerance(table, limit, total):
            found.append(f"budget '{name}' broken: total {total:.12g} > limit {limit:.12g}")
    if max_loss is not None:
        loss = problem.evaluate(x).objective
        if loss_exceeds(problem, loss, max_loss):
            found.append(f"max_loss broken: predicted loss {loss:.12g} > {max_loss:.12g}")
    return found
