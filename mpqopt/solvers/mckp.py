"""mpqopt's own exact multiple-choice knapsack engine (``mckp``) and MPQCO's greedy (``greedy``).

Single budget: lower convex hulls give the greedy solution, the LP bound and the multiplier at once
(sorting the hull increments is the only superlinear step); the greedy solution is filled up to an
incumbent; exact reduced-cost fixing at the LP multiplier leaves a small core, which dynamic
programming over non-dominated states solves exactly. No Python loop runs over layers.

Several budgets: the Lagrangian dual (:mod:`mpqopt.algorithms.dual`) gives multipliers and a bound,
its solution repaired and improved is the incumbent, reduced-cost fixing leaves a core, and HiGHS
proves the core (warm-started from the incumbent).
"""

from __future__ import annotations

import time

import numpy as np

from ..algorithms.core_dp import solve_core
from ..algorithms.dual import solve_dual
from ..algorithms.heuristics import fill, improve, is_feasible, repair
from ..algorithms.hull import greedy
from ..algorithms.lagrangian import fixable_items, lagrangian_bound
from ..errors import SolverError
from ..reductions import CanonicalModel
from .base import Backend, RawSolution, SolveSettings, register
from .highs import HighsBackend


# targets between the LP bound and the incumbent, as fractions of that gap, tried in order
TARGET_FRACTIONS = (1 / 1024, 1 / 256, 1 / 64, 1 / 16, 1 / 4)


def _separable_only(model: CanonicalModel, name: str) -> None:
    if model.quadratic is not None:
        raise SolverError(f"solver '{name}' solves separable problems only; this problem has a pairwise term")


def _no_budget(model: CanonicalModel) -> RawSolution:
    """Without budgets each group simply takes its best item."""
    group_min = np.minimum.reduceat(model.value, model.group_start[:-1])
    hits = np.nonzero(model.value == group_min[model.item_group])[0]
    first = np.full(model.num_groups, -1, dtype=np.int64)
    first[model.item_group[hits[::-1]]] = hits[::-1]
    objective = model.items_objective(first)
    return RawSolution("optimal", items=first, objective=objective, bound=objective, message="no budget: every layer takes its best option")


@register
class MckpBackend(Backend):
    name = "mckp"
    description = "mpqopt's exact MCKP engine: convex hulls + reduced-cost fixing + core DP (one budget); Lagrangian dual + fixing + HiGHS core (several)"

    def solve(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        _separable_only(model, self.name)
        if model.num_budgets == 0:
            return _no_budget(model)
        if model.num_budgets > 1:
            return self._several_budgets(model, settings)
        return self._single_budget(model, settings)

    def _several_budgets(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        """Lagrangian dual for multipliers and bound, repaired Lagrangian solution as incumbent,
        exact reduced-cost fixing, then HiGHS proves the small core."""
        deadline = None if settings.time_limit is None else time.perf_counter() + settings.time_limit
        dual = solve_dual(model, time_limit=settings.time_limit)
        if dual.unbounded:
            return RawSolution("infeasible", message="the Lagrangian dual proves the budgets cannot be met together, even fractionally")
        candidates = []
        repaired = repair(model, dual.items)
        if repaired is not None:
            candidates.append(improve(model, fill(model, repaired)))
        if settings.warm_start is not None and is_feasible(model, settings.warm_start):
            candidates.append(improve(model, np.asarray(settings.warm_start)))
        stats = {"dual_bound": dual.bound, "dual_iterations": dual.iterations}
        if not candidates:  # no incumbent to fix against: HiGHS on the whole model
            raw = HighsBackend()._milp(model, settings, None, deadline)
            raw.stats.update(stats)
            return raw
        incumbent = min(candidates, key=model.items_objective)
        drop, bound = fixable_items(model, dual.lam, model.items_objective(incumbent))
        # The Lagrangian choice leaves budget unused; rounding the LP optimum does far better. The
        # LP is solved on the items that survive fixing only (a fraction of the model), then the
        # better incumbent fixes more.
        better = HighsBackend.rounded_lp(model, ~drop, incumbent, settings)
        if better is not None and model.items_objective(better) < model.items_objective(incumbent):
            incumbent = better
            drop, bound = fixable_items(model, dual.lam, model.items_objective(incumbent))
        stats.update(incumbent=model.items_objective(incumbent), items_fixed=int(drop.sum()))
        raw = HighsBackend().solve_core(model, ~drop, incumbent, max(bound, dual.bound), settings, deadline, stats)
        raw.message = f"mckp: Lagrangian dual + reduced-cost fixing + HiGHS core: {raw.message}"
        return raw

    def _single_budget(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        start = greedy(model)
        if start is None:
            return RawSolution("infeasible", message="even the cheapest option of every layer breaks the budget")
        incumbent = fill(model, start.items)
        if settings.warm_start is not None and model.items_objective(settings.warm_start) < model.items_objective(incumbent):
            incumbent = np.asarray(settings.warm_start)
        inc_obj = model.items_objective(incumbent)
        lam = np.array([start.lam])
        lagrange, reduced = lagrangian_bound(model, lam)
        stats = {"lp_bound": lagrange, "greedy_objective": model.items_objective(start.items), "incumbent": inc_obj}
        # Lagrangian choice (reduced cost 0) per group: the base the core search changes
        base = np.minimum.reduceat(np.where(reduced == 0, np.arange(model.num_items), model.num_items), model.group_start[:-1])
        slack = 1e-9 * max(abs(inc_obj), 1e-300)
        candidates = np.nonzero(lagrange + reduced <= inc_obj + slack)[0]
        candidates = candidates[candidates != base[model.item_group[candidates]]]
        # Search below rising targets: a low target leaves few alternatives and a tiny core;
        # whatever the core search finds at or below the target is optimal. The last target is the
        # incumbent itself, and finding nothing below it proves the incumbent optimal.
        gap = inc_obj - lagrange
        targets = [lagrange + gap * f for f in TARGET_FRACTIONS] + [inc_obj]
        for rounds, target in enumerate(targets, 1):
            alternatives = candidates[lagrange + reduced[candidates] <= target + slack]
            core = solve_core(model, base, alternatives, start.lam, target)
            stats.update(rounds=rounds, core_groups=core.core_groups, dp_states=core.max_states, items_fixed=model.num_items - model.num_groups - int(alternatives.size))
            if not core.complete:
                break
            if core.items is not None or target >= inc_obj:
                items = incumbent if core.items is None or model.items_objective(core.items) > inc_obj else core.items
                objective = model.items_objective(items)
                return RawSolution("optimal", items=items, objective=objective, bound=objective, message="mckp: hull LP bound + reduced-cost fixing + core DP", stats=stats)
        # the core was too large for the DP: HiGHS proves it instead
        keep = np.zeros(model.num_items, dtype=bool)
        keep[base] = True
        keep[candidates] = True
        raw = HighsBackend().solve_core(model, keep, incumbent, lagrange, settings, None, stats)
        raw.message = f"mckp (core too large for DP, HiGHS core): {raw.message}"
        return raw


@register
class GreedyBackend(Backend):
    name = "greedy"
    exact = False
    description = "MPQCO's greedy on convex hulls (one budget); Lagrangian choice repaired and filled (several): fast, no optimality proof, LP bound reported"

    def solve(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        _separable_only(model, self.name)
        if model.num_budgets == 0:
            return _no_budget(model)
        if model.num_budgets == 1:
            start = greedy(model)
            if start is None:
                return RawSolution("infeasible", message="even the cheapest option of every layer breaks the budget")
            items, bound = start.items, start.lp_bound
            stats = {"increments_taken": start.taken}
        else:
            dual = solve_dual(model, time_limit=settings.time_limit)
            if dual.unbounded:
                return RawSolution("infeasible", message="the Lagrangian dual proves the budgets cannot be met together, even fractionally")
            items, bound = repair(model, dual.items), dual.bound
            if items is None:
                return RawSolution("error", message="greedy could not repair the Lagrangian choice to meet every budget; use an exact solver")
            items = fill(model, items)
            stats = {"dual_iterations": dual.iterations}
        objective = model.items_objective(items)
        return RawSolution("feasible", items=items, objective=objective, bound=bound, message="greedy (no optimality proof; bound = LP relaxation)", stats=stats)
