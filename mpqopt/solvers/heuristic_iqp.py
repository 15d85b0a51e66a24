"""Heuristic backends for cross-layer (IQP) problems: ``local``, ``anneal`` and ``csq``.

None searches for a proof: each returns a budget-feasible assignment with status ``feasible`` and,
as its bound, mpqopt's split relaxation (the bound ``bnb`` starts from, without any search), so the
gap says how far from optimal the answer can be. They also take separable problems (where ``mckp``
is exact and faster).

- ``local``: the separable MCKP optimum (pairwise term ignored, engine ``mckp``) or the warm start,
  then iterated linearization and 2-opt (:func:`mpqopt.algorithms.local_search.iterated_linearization`).
- ``anneal`` / ``anneal:SEED``: simulated annealing over 1- and 2-group moves from that start, best
  assignment polished by 2-opt (:func:`mpqopt.algorithms.local_search.anneal`).
- ``csq`` / ``csq:SEED``: annealed softmax relaxation with a budget penalty, rounded, repaired and
  polished by 2-opt, best of several restarts (:func:`mpqopt.algorithms.csq.csq`).

Each honours ``time_limit`` (the search stops and returns the best assignment so far) and
``warm_start``, and never returns anything worse than its start.

>>> import mpqopt, mpqopt.synthetic
>>> r = mpqopt.solve(mpqopt.synthetic.iqp_problem(10, seed=0), solver="anneal:3")
>>> r.status, r.solver, r.bound <= r.objective
('feasible', 'anneal:3', True)
"""

from __future__ import annotations

import dataclasses
import time
from abc import abstractmethod
from typing import ClassVar

import numpy as np

from ..deadline import seconds_left
from ..algorithms.csq import csq
from ..algorithms.heuristics import is_feasible, repair
from ..algorithms.incumbent import separable_incumbent
from ..algorithms.iqp_bound import lower_bound
from ..algorithms.local_search import MAX_DENSE_ITEMS, Objective, SearchResult, anneal, iterated_linearization
from ..errors import MpqoptError, SolverError
from ..reductions import CanonicalModel
from .base import Backend, RawSolution, SolveSettings, get_backend, register
from .mckp import solve_separable

BOUND_ITERATIONS = 200  # split-bound ascent steps after the search (about 0.1 s at 52 x 3)


def heuristic_start(model: CanonicalModel, settings: SolveSettings, deadline: float | None) -> tuple[np.ndarray | None, str]:
    """The warm start (repaired if it breaks a budget), else the exact optimum of the separable part.

    Returns ``(items, where from)``; items None means the budgets cannot be met (the ``mckp`` engine's
    proof: the pairwise term does not change which assignments are feasible).
    """
    if settings.warm_start is not None:
        warm = np.asarray(settings.warm_start, dtype=np.int64)
        if is_feasible(model, warm):
            return warm, "warm start"
        fixed = repair(model, warm, deadline=deadline)
        if fixed is not None:
            return fixed, "warm start (repaired to meet the budgets)"
    linear = dataclasses.replace(model, quadratic=None)
    try:
        raw = get_backend("mckp").solve(linear, SolveSettings(time_limit=seconds_left(deadline)))
    except MpqoptError:
        raw = RawSolution("error")
    if raw.status == "infeasible":
        return None, raw.message
    if raw.items is not None and is_feasible(model, raw.items):
        return np.asarray(raw.items, dtype=np.int64), "separable optimum (pairwise term ignored)"
    fallback = separable_incumbent(model)
    if fallback is None:
        raise SolverError("no assignment meeting the budgets was found to start the heuristic from")
    return fallback, "separable greedy (pairwise term ignored)"


class _HeuristicBackend(Backend):
    """Shared frame: find a start, run the method, never return worse than the start."""

    exact = False
    supports_quadratic = True
    seeded: ClassVar[bool] = False

    def __init__(self, arg: str | None = None):
        self.seed, self.arg = 0, arg
        if arg is None:
            return
        if not self.seeded:
            raise SolverError(f"solver '{self.name}' takes no ':{arg}' argument")
        try:
            self.seed = int(arg)
        except ValueError:
            raise SolverError(f"solver '{self.name}' takes a seed, a non-negative integer ('{self.name}:7'), got ':{arg}'") from None
        if self.seed < 0:
            raise SolverError(f"solver '{self.name}' takes a non-negative seed, got ':{arg}'")

    @property
    def label(self) -> str:
        return self.name if self.arg is None else f"{self.name}:{self.seed}"

    def solve(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        deadline = settings.stop_at
        objective = Objective(model)
        start, origin = heuristic_start(model, settings, deadline)
        if start is None:
            return RawSolution("infeasible", message=origin)
        settings.deadline.offer(start, objective(start))  # what solve() returns if the search overruns
        found = self.search(model, start, objective, settings, deadline)
        items = found.items
        kept_start = objective(start) < objective(items)  # the methods descend, but annealing/CSQ may not
        if kept_start:
            items = start
        value = model.items_objective(items)
        stats = {"method": self.name, "start": origin, "start_objective": model.items_objective(start),
                 "iterations": found.iterations, "moves": found.moves, "timed_out": found.timed_out,
                 **{k: _plain(v) for k, v in found.stats.items()}}
        text = f"{self.label}: heuristic, no optimality proof; {self.summary(found)}; start: {origin}"
        if kept_start:
            text += " (kept: the search found nothing better)"
        if found.timed_out:
            text += "; stopped at the time limit"
        bound, proof = self._bound(model, value, deadline)
        return RawSolution("feasible", items=np.asarray(items, dtype=np.int64), objective=value, bound=bound, message=text, stats=stats, proof=proof)

    @staticmethod
    def _bound(model: CanonicalModel, value: float, deadline: float | None) -> tuple[float | None, str]:
        """A lower bound from the exact machinery (the split relaxation bnb starts from), so the answer
        comes with a gap; skipped past the time limit."""
        if (deadline is not None and time.perf_counter() > deadline) or model.num_items > MAX_DENSE_ITEMS:
            return None, ""
        bound = lower_bound(model, value, iterations=BOUND_ITERATIONS, deadline=deadline)
        if not np.isfinite(bound):
            return None, ""
        return min(bound, value), "mpqopt's split relaxation (no search)"

    @abstractmethod
    def search(self, model: CanonicalModel, start: np.ndarray, objective: Objective, settings: SolveSettings, deadline: float | None) -> SearchResult:
        """Run the method from ``start``; each subclass is one heuristic."""

    @abstractmethod
    def summary(self, found: SearchResult) -> str:
        """One line on what the search did, for the result message."""


def _plain(value):
    """numpy scalars to Python numbers, so ``Result.to_json`` can write the stats."""
    return value.item() if isinstance(value, np.generic) else value


@register
class LocalBackend(_HeuristicBackend):
    name = "local"
    description = "heuristic, no optimality proof: separable optimum, then iterated linearization (exact MCKP on the tangent) + 2-opt; pairwise terms"

    def search(self, model, start, objective, settings, deadline):
        return iterated_linearization(model, start, solve_separable=solve_separable, deadline=deadline, objective=objective)

    def summary(self, found):
        s = found.stats
        return f"{s['mckp_solves']} MCKP solves, {s['linearizations_taken']} taken, {s['two_opt_moves']} 2-opt moves"


@register
class AnnealBackend(_HeuristicBackend):
    name = "anneal"
    seeded = True
    description = "heuristic, no optimality proof: simulated annealing over 1- and 2-layer moves + 2-opt ('anneal:SEED'); pairwise terms"

    def search(self, model, start, objective, settings, deadline):
        return anneal(model, start, self.seed, deadline=deadline, objective=objective)

    def summary(self, found):
        s = found.stats
        return f"seed {self.seed}, {s.get('proposals', 0)} proposals, {s.get('accepted', 0)} accepted, {s.get('two_opt_moves', 0)} 2-opt moves"


@register
class CsqBackend(_HeuristicBackend):
    name = "csq"
    seeded = True
    description = "heuristic, no optimality proof: CSQ-style annealed softmax relaxation + budget penalty, rounded, repaired, 2-opt ('csq:SEED'); pairwise terms"

    def search(self, model, start, objective, settings, deadline):
        warm = start if settings.warm_start is not None else None
        return csq(model, self.seed, warm_start=warm, fallback=start, deadline=deadline, objective=objective)

    def summary(self, found):
        s = found.stats
        return f"seed {self.seed}, {s['restarts']} restarts, {s['steps']} Adam steps, {s['repaired_runs']} roundings repaired"
