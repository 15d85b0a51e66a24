"""The one base of the backends that hand the canonical model to a MILP solver (``highs``, ``gurobi``,
``pyomo``, ``scipy``).

A backend implements :meth:`MilpBackend.run_milp` (build the solver's model, set its options, solve,
read its answer into a :class:`MilpRun`) and declares a ``STATUS_MAP`` from the solver's own status
to mpqopt's. Everything after the solve is policy shared here, in :meth:`MilpBackend.finish`:

* the status, mapped once (a status not in the map is an ``error`` naming it);
* no assignment: the caller's start if it meets the budgets, else none; the solver's bound is kept;
* a claimed objective that is not its assignment's (HiGHS 1.16 after a MIP start, see
  :data:`~.base.INCONSISTENT_START`): solved again without the start, or no bound taken;
* an assignment over a budget within the solver's tolerance: repaired to a feasible neighbour,
  improved by 1-opt when the objective is linear; ``optimal`` becomes ``feasible`` (the repaired
  answer is not proven), ``time_limit`` stays (it says why the solver stopped); one that no
  neighbour repairs: enumerated when tiny, else the start, else the solver again on exact integer
  budgets tightened by its tolerance (:meth:`MilpBackend._unrepaired`), 'error' only after all that;
* the bound: the solver's own primal-dual gap, measured in its units from its own assignment and
  subtracted from that assignment's exact objective (converting both ends separately would add
  round-off, and a repaired, dearer assignment must not raise the bound); on integer objectives
  less the solver's tolerance and rounded up to an integer (:func:`integer_bound`).

>>> from mpqopt import solve
>>> from mpqopt.synthetic import mckp_problem
>>> p = mckp_problem(30, 4, seed=1)
>>> results = [solve(p, solver=s) for s in ("highs:plain", "scipy")]
>>> [r.status for r in results], abs(results[0].objective - results[1].objective) <= 1e-9 * abs(results[0].objective)
(['optimal', 'optimal'], True)
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from ..algorithms.heuristics import improve, is_feasible, repair
from ..reductions import CanonicalModel
from ..reductions.linearize import Linearization
from ..reductions.matrix import budget_row_scales, linearization_for
from ..result import Status
from .bruteforce import BruteForceBackend
from .base import INCONSISTENT_START, Backend, RawSolution, SolveSettings, claim_matches, items_from_values


# What a MILP solver's bound may be off by, relative to the unit of the normalized objective it sees
# (largest objective range 1): HiGHS's dual feasibility tolerance is 1e-7. Integer costs near 2**45
# (one unit is 3e-14 there) got 'Optimal' from HiGHS 1.16 with a bound 3.2e6 units above the true
# optimum: about 1e-7 of the scale. Taken off bounds on integer objectives only (where it can matter
# to a proof; elsewhere mpqopt.solve's relative 1e-9 check stands).
MILP_BOUND_RTOL = 1e-6
# ... and relative to the size of the objective itself: a solver's arithmetic in float64 is exact to
# ~1e-16 of the values it adds, so once an integer objective is large, its bound is off by units even
# where its normalized unit is one (mpqopt's re-solve in integer units). HiGHS 1.16 there claimed
# optima 1 unit too good at objectives near 2**40 (9e-13 relative) and 1-38 units at 2**52 (up to
# 8e-15): bounds on integer objectives lose this fraction of the objective's size, so HiGHS proves
# integer objectives exactly up to ~5e10 and reports a certified gap beyond.
MILP_BOUND_MAGNITUDE_RTOL = 1e-11
# A MILP solver accepts a budget row up to its feasibility tolerance (HiGHS 1e-7, Gurobi and scipy
# 1e-6) of the row's scale: an exact integer budget tightened by this many units (plus one) is met
# by whatever it accepts.
TIGHTEN_RTOL = 1e-6
EXACT_FALLBACK_ASSIGNMENTS = 1 << 16  # models this small are enumerated when a solver's answer cannot be repaired


def integer_bound(bound: float, scale: float, magnitude: float = 0.0) -> float:
    """A MILP solver's ``bound`` on an integer objective, made safe and exact: less its tolerance
    (``MILP_BOUND_RTOL`` of its objective unit ``scale``, ``MILP_BOUND_MAGNITUDE_RTOL`` of the
    ``magnitude`` of the objective it summed), rounded up to the next integer (the optimum is one).
    A proven optimum keeps a bound equal to it where the tolerance is below a unit.

    >>> integer_bound(41.9999999, 1.0), integer_bound(42.0, 5e6), integer_bound(2.0**45, 1.0, 2.0**45) == 2.0**45 - 351
    (42.0, 37.0, True)
    """
    return float(np.ceil(bound - MILP_BOUND_RTOL * scale - MILP_BOUND_MAGNITUDE_RTOL * magnitude))


@dataclass
class MilpRun:
    """One MILP solver call's answer in the solver's own objective units, where a canonical
    objective (``model.offset`` excluded) is ``solver value * scale + constant``."""

    status: Any  # the solver's own status: a key of the backend's STATUS_MAP
    text: str  # that status in words, as the message will say it
    values: np.ndarray | None = None  # column values of its assignment (items first); None: it has none
    objective: float | None = None  # the objective it claims for that assignment
    assignment_value: float | None = None  # that assignment's objective computed from ``values`` (None: not checked)
    bound: float | None = None  # its dual bound (None or non-finite: none; ignored unless ``trusted``)
    scale: float = 1.0
    constant: float = 0.0
    trusted: bool = True  # False when its bound proves nothing (numeric trouble, a different objective)
    stats: dict[str, Any] = field(default_factory=dict)

    def canonical(self, value: float) -> float:
        return value * self.scale + self.constant

    @property
    def dual(self) -> float | None:
        """The bound in the solver's units if there is a usable one."""
        if not self.trusted or self.bound is None or not np.isfinite(self.bound) or abs(self.bound) >= 1e99:
            return None
        return float(self.bound)

    @property
    def inconsistent(self) -> bool:
        """Whether its claimed objective is not that of its assignment (then it proved nothing)."""
        return (self.values is not None and self.objective is not None and self.assignment_value is not None
                and not claim_matches(self.objective, self.assignment_value))


class MilpBackend(Backend):
    """Base of the MILP backends: a ``STATUS_MAP``, :meth:`run_milp`, and the shared :meth:`finish`."""

    STATUS_MAP: ClassVar[Mapping[Any, Status]]  # solver status -> mpqopt status (others: 'error')
    supports_quadratic = True  # through the exact one-hot linearization unless solve() says otherwise

    @property
    def display(self) -> str:
        """The solver as messages name it (``'HiGHS'``, ``'pyomo:glpk'``)."""
        return self.label

    def proof(self, model: CanonicalModel, linear: Linearization | None) -> str:
        """What established the bound of an answer from this solver."""
        return f"{self.display} MILP" + (" on the one-hot linearization" if linear is not None else "")

    def limit_text(self, settings: SolveSettings, native: str) -> str:
        """A stop at the time limit in the user's words (the solver's own may say 'interrupted')."""
        return settings.deadline.message() if settings.deadline.limit is not None else native

    @abstractmethod
    def run_milp(self, model: CanonicalModel, settings: SolveSettings, warm: np.ndarray | None, linear: Linearization | None, **options: Any) -> MilpRun:
        """Solve the MILP of ``model`` (``linear``: with its pair columns and rows), started from
        ``warm`` (one item per group) where the solver takes a start."""

    def solve(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        if model.quadratic is not None:
            return solve_linearized(model, lambda linear: self.solve_milp(model, settings, settings.warm_start, linear))
        return self.solve_milp(model, settings, settings.warm_start)

    def solve_milp(self, model: CanonicalModel, settings: SolveSettings, warm: np.ndarray | None, linear: Linearization | None = None, **options: Any) -> RawSolution:
        """:meth:`run_milp` then :meth:`finish`; a start the solver answered inconsistently is dropped
        and the model solved again without it."""
        run = self.run_milp(model, settings, warm, linear, **options)
        if warm is not None and run.inconsistent:
            raw = self.solve_milp(model, settings, None, linear, **options)
            raw.message += f"; {INCONSISTENT_START}"
            raw.stats["inconsistent_start"] = True
            return raw
        return self.finish(model, settings, run, warm, linear, own_arrays="arrays" in options)

    def finish(self, model: CanonicalModel, settings: SolveSettings, run: MilpRun, warm: np.ndarray | None = None, linear: Linearization | None = None,
               own_arrays: bool = False) -> RawSolution:
        """The RawSolution of ``run``: status mapped, assignment re-verified (and repaired), bound
        from the solver's gap (module docstring)."""
        kind = self.STATUS_MAP.get(run.status)
        stats, text = run.stats, run.text
        if kind is None or kind == "error":
            return RawSolution("error", message=f"{self.display} stopped with status '{text}'", stats=stats)
        if kind == "infeasible":
            return RawSolution("infeasible", message=f"{self.display} proved the budgets cannot all be met", stats=stats)
        dual = run.dual
        if run.values is None:
            bound = None if dual is None else run.canonical(dual)
            if bound is not None and model.integral_objective:
                bound = integer_bound(bound, run.scale, abs(bound) + abs(run.constant))
            if warm is not None and is_feasible(model, np.asarray(warm)):  # the solver never got to it
                warm = np.asarray(warm)
                return RawSolution(kind, items=warm, objective=model.items_objective(warm), bound=bound, message=f"{self.display}: {text}; returning the starting assignment", stats=stats)
            return RawSolution(kind, bound=bound, message=f"{self.display}: {text}, no assignment found", stats=stats)
        if run.inconsistent:
            stats["inconsistent_claim"] = True
            kind, dual = "feasible", None
            text = f"{text}, but its objective {run.objective:.12g} disagrees with its assignment's {run.assignment_value:.12g}: no bound taken from it"
        value = run.assignment_value if run.assignment_value is not None else run.objective  # its assignment's, in its units
        if dual is None and kind == "optimal" and value is not None and run.trusted:
            dual = value  # the solver reports no bound: its optimality is the proof
        gap = None if dual is None or value is None else max(value - dual, 0.0) * run.scale
        items = items_from_values(model, run.values[: model.num_items])
        found = model.items_objective(items)  # the solver's own assignment, before any repair
        bound = None if gap is None else found - gap
        if bound is not None and model.integral_objective:
            bound = integer_bound(bound, run.scale, max(abs(found), abs(bound)) + abs(run.constant))
        if not is_feasible(model, items):
            # within the solver's tolerance but over a budget in exact arithmetic: a feasible neighbour
            repaired = repair(model, items, deadline=settings.deadline.at)
            if repaired is None:
                return self._unrepaired(model, settings, kind, text, bound, warm, linear, stats, own_arrays)
            items = repaired if model.quadratic is not None else improve(model, repaired)  # 1-opt is linear-only
            kind = "feasible" if kind == "optimal" else kind
            text = f"{text}; its assignment exceeded a budget by the solver's tolerance and was repaired"
        return RawSolution(kind, items=items, objective=model.items_objective(items), bound=bound, message=f"{self.display}: {text}",
                           stats=stats, proof=self.proof(model, linear) if bound is not None else "")

    def _unrepaired(self, model: CanonicalModel, settings: SolveSettings, kind: Status, text: str, bound: float | None,
                    warm: np.ndarray | None, linear: Linearization | None, stats: dict[str, Any], own_arrays: bool = False) -> RawSolution:
        """The solver's assignment breaks a budget (within its tolerance) and no neighbour meets them:
        an exact answer by enumeration when the model is tiny; else the start, if it meets the
        budgets; else the solver again with exact integer budgets tightened by its tolerance, so
        that what it accepts meets them (its bound and any 'infeasible' from it prove nothing, the
        first run's bound stands). 'error' only when all of that fails. ``own_arrays``: the run solved a
        caller's own arrays (the accuracy target's loss row) that enumeration and the re-solve would
        not see, so only the start is tried."""
        said = f"{self.display}: {text}; its assignment exceeds a budget by the solver's feasibility tolerance and could not be repaired"
        if not own_arrays and float(np.log2(np.diff(model.group_start)).sum()) <= np.log2(EXACT_FALLBACK_ASSIGNMENTS):
            raw = BruteForceBackend().solve(model, settings)
            raw.message = f"{said}; all assignments enumerated instead: {raw.message}"
            raw.stats.update(stats)
            return raw
        status: Status = "time_limit" if kind == "time_limit" else "feasible"
        if warm is not None and is_feasible(model, np.asarray(warm)):
            warm = np.asarray(warm)
            objective = model.items_objective(warm)
            return RawSolution(status, items=warm, objective=objective, bound=None if bound is None else min(bound, objective), stats=stats,
                               message=f"{said}; returning the starting assignment", proof=self.display if bound is not None else "")
        exact = model.exact_rows if model.exact_rows is not None else np.zeros(model.num_budgets, dtype=bool)
        resolved = exact.any() and not own_arrays and not settings.deadline.expired()
        if resolved:
            margin = np.ceil(TIGHTEN_RTOL * budget_row_scales(model)) + 1.0
            tight = dataclasses.replace(model, rhs=np.where(exact, model.rhs - margin, model.rhs))
            run = self.run_milp(tight, settings, None, linear)
            if run.values is not None:
                items = items_from_values(model, run.values[: model.num_items])
                if is_feasible(model, items):
                    objective = model.items_objective(items)
                    return RawSolution(status, items=items, objective=objective, bound=None if bound is None else min(bound, objective), stats=stats,
                                       message=f"{said}; solved again with the integer budgets tightened by its tolerance: {run.text}",
                                       proof=self.display if bound is not None else "")
        tried = "; solved again on the integer budgets tightened by its tolerance, it found none (budgets met only near equality?)" if resolved else ""
        if kind == "time_limit":
            # the solver ran out of time before an assignment that meets the budgets: no assignment,
            # its bound, as any search stopped at its limit (not an error of the solver)
            return RawSolution("time_limit", bound=bound, stats=stats, message=f"{said}{tried}; no assignment within the time limit",
                               proof=self.display if bound is not None else "")
        return RawSolution("error", bound=bound, stats=stats, message=said + tried)


def solve_linearized(model: CanonicalModel, run: Callable[[Linearization], RawSolution]) -> RawSolution:
    """``run(linear)`` on the model's linearization; record it in the stats and lower the bound by
    what dropped blocks could contribute."""
    linear = linearization_for(model)
    raw = run(linear)
    raw.stats.update(pair_blocks_kept=linear.blocks_kept, pair_blocks_dropped=linear.blocks_dropped, drop_tolerance=linear.tolerance)
    if linear.blocks_dropped:
        raw.message += f"; {linear.blocks_dropped} interaction blocks with every |entry| <= {linear.tolerance:.3g} dropped"
        if raw.bound is not None:
            raw.bound -= linear.dropped_mass
    return raw
