"""HiGHS backend (``highspy``, the embedded default).

``highs`` solves the canonical model in three exact steps: the LP relaxation gives budget
multipliers and a rounded incumbent (repaired and improved by 1-opt); reduced-cost fixing drops every
item that cannot appear in a better solution; HiGHS's MILP then proves optimality on the small core,
warm-started from the incumbent. ``highs:plain`` hands the whole model to the MILP (the baseline).
A pairwise term is solved through the exact one-hot linearization (:mod:`..reductions.linearize`).

HiGHS 1.15's tolerances need guarding: answers over a budget in exact arithmetic are repaired, the
core MILP never loses the incumbent it was given, and deadlines are also enforced by interrupts.

No modelling layer on the hot path: the column-wise matrix is assembled in numpy and passed with
``passModel`` (5,000 x 8 takes ~20 ms this way, seconds through the expression API).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..deadline import seconds_left
from ..algorithms.heuristics import improve, is_feasible, round_lp
from ..algorithms.incumbent import separable_incumbent
from ..algorithms.lagrangian import fixable_items, gap_closed
from ..errors import SolverError
from ..highs_runtime import highs_lp, new_highs
from ..highs_runtime import run as run_highs
from ..reductions import CanonicalModel, restrict
from ..reductions.linearize import Linearization
from ..reductions.matrix import BLOCK_RTOL, MilpArrays, csc_arrays, linearization_for, milp_arrays
from .base import RawSolution, SolveSettings, register
from .milp import MilpBackend, MilpRun, solve_linearized

# the matrix forms lived here before they moved to the reductions layer; kept importable from here
__all__ = ["HighsBackend", "MilpArrays", "csc_arrays", "highs_lp", "linearization_for", "milp_arrays", "solve_linearized"]


class _HighsModel:
    """One canonical model loaded into HiGHS, in normalized objective units."""

    def __init__(self, model: CanonicalModel, settings: SolveSettings, integer: bool, linear: Linearization | None = None, arrays: MilpArrays | None = None):
        import highspy

        self.hs = highspy
        self.model = model
        self.arrays = milp_arrays(model, linear) if arrays is None else arrays
        self.cost, self.scale, self.constant = self.arrays.cost, self.arrays.scale, self.arrays.constant
        self.row_scale = self.arrays.row_scale
        self.settings = settings
        h = new_highs(settings.threads, settings.verbose)
        # Tight tolerances keep answers close to the exact budgets, but a MIP feasibility tolerance
        # of 1e-8 or 1e-9 made HiGHS 1.15 claim wrong optima (3,000 x 8 llm-shaped, HAWQ-V3 with a
        # budget 5e-10 below an achievable size); 1e-7 gave right answers on both. Answers that
        # exceed a budget within it are repaired in solve_milp.
        h.setOptionValue("primal_feasibility_tolerance", 1e-9)
        h.setOptionValue("mip_feasibility_tolerance", 1e-7)
        h.passModel(highs_lp(highspy, self.arrays, integer))
        self.h = h

    def stop_at(self, deadline: float | None) -> None:
        """Set HiGHS's time limit and interrupt it from its callbacks at ``deadline`` too: its own
        limit has overshot 10 s by 85 s on a 30,000-layer model here."""
        clock = self.settings.deadline
        if deadline is None and clock.at is None:
            return
        deadline = clock.at if deadline is None else deadline
        self.h.setOptionValue("time_limit", seconds_left(deadline))

        def interrupt(event) -> None:
            # cancelled: solve() stopped waiting for this run (see mpqopt.solve._run_until)
            if time.perf_counter() > deadline or clock.cancelled:
                event.interrupt()

        self.h.cbMipInterrupt.subscribe(interrupt)
        self.h.cbSimplexInterrupt.subscribe(interrupt)
        self.h.cbIpmInterrupt.subscribe(interrupt)

    def run(self) -> None:
        run_highs(self.h, self.settings.threads, self.settings.verbose)

    def status_text(self) -> str:
        return self.h.modelStatusToString(self.h.getModelStatus())

    def original(self, normalized: float) -> float:
        return normalized * self.scale + self.constant


@register
class HighsBackend(MilpBackend):
    name = "highs"
    description = "HiGHS MILP (embedded default, open source) after LP-based reduced-cost fixing; 'highs:plain' skips the fixing; pairwise terms by exact one-hot linearization"
    requires = ("highspy",)
    block_rtol = BLOCK_RTOL  # see mpqopt.reductions.matrix.linearization_for

    def __init__(self, arg: str | None = None):
        if arg not in (None, "plain"):
            raise SolverError(f"solver 'highs' takes no ':{arg}' argument (only 'highs:plain')")
        self.plain = arg == "plain"

    @property
    def label(self) -> str:
        return "highs:plain" if self.plain else "highs"

    def solve(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        deadline = settings.stop_at
        if model.quadratic is not None:
            # HiGHS has no MIQP: the exact one-hot linearization makes the problem a MILP, started
            # from the separable part's greedy allocation unless the caller gave one
            warm = settings.warm_start if settings.warm_start is not None else separable_incumbent(model, settings.left())
            if warm is not None and is_feasible(model, np.asarray(warm)):
                settings.deadline.offer(np.asarray(warm), model.items_objective(np.asarray(warm)))
            return solve_linearized(model, lambda linear: self.solve_milp(model, settings, warm, linear, deadline=deadline))
        if self.plain:
            return self.solve_milp(model, settings, settings.warm_start, deadline=deadline)
        return self._solve_with_fixing(model, settings, deadline)

    def _solve_with_fixing(self, model: CanonicalModel, settings: SolveSettings, deadline: float | None) -> RawSolution:
        relaxed = _HighsModel(model, settings, integer=False)
        relaxed.stop_at(deadline)
        relaxed.run()
        if relaxed.h.getModelStatus() != relaxed.hs.HighsModelStatus.kOptimal:
            # includes 'infeasible': HiGHS's LP has been seen to say so wrongly within 1e-9 of a
            # budget, so the MILP on the whole model decides, started from a greedy allocation
            if settings.deadline.expired():  # the LP used the time up: no MILP can run
                return _start_only(model, settings.warm_start, None, f"HiGHS: {settings.deadline.message()} in the LP relaxation")
            warm = settings.warm_start if settings.warm_start is not None else separable_incumbent(model, settings.left())
            return self.solve_milp(model, settings, warm, deadline=deadline)
        solution = relaxed.h.getSolution()
        # budget multipliers in original units: dual of the scaled, normalized row, mapped back
        duals = -np.asarray(solution.row_dual)[model.num_groups:]
        lam = np.maximum(duals, 0.0) * relaxed.scale / relaxed.row_scale
        incumbent = self._incumbent(model, np.asarray(solution.col_value), settings.warm_start, deadline)
        if incumbent is None:
            return self.solve_milp(model, settings, settings.warm_start, deadline=deadline)
        inc_obj = model.items_objective(incumbent)
        drop, lp_bound = fixable_items(model, lam, inc_obj)
        drop[incumbent] = False
        stats = {"lp_bound": lp_bound, "incumbent": inc_obj, "items_fixed": int(drop.sum())}
        settings.deadline.offer(incumbent, inc_obj)
        settings.deadline.improve_bound(min(lp_bound, inc_obj))
        if settings.deadline.expired():
            return _start_only(model, incumbent, min(lp_bound, inc_obj), f"HiGHS: {settings.deadline.message()} after the LP relaxation", stats)
        if drop.all() or (~drop).sum() == model.num_groups:  # the core is the incumbent itself
            return RawSolution("optimal", items=incumbent, objective=inc_obj, bound=min(max(lp_bound, inc_obj), inc_obj), message="HiGHS LP bound + reduced-cost fixing: incumbent proven optimal", stats=stats)
        if gap_closed(model, incumbent, lp_bound, settings.mip_gap):
            # the rounded LP solution meets the LP bound: nothing left to prove. Budgets met only at
            # equality (integer costs near 2**24) fix nothing here (every item has reduced cost 0),
            # and HiGHS's MILP, which accepts rows ~1e-7 of their scale over, never closed the proof
            return RawSolution("optimal", items=incumbent, objective=inc_obj, bound=min(lp_bound, inc_obj), message="HiGHS LP bound: the rounded LP solution meets it, proven optimal",
                               stats=stats, proof="HiGHS LP relaxation (Lagrangian bound at its duals)")
        return self.solve_core(model, ~drop, incumbent, lp_bound, settings, deadline, stats)

    def solve_core(self, model: CanonicalModel, keep: np.ndarray, incumbent: np.ndarray, bound: float, settings: SolveSettings, deadline: float | None, stats: dict) -> RawSolution:
        """MILP on the items in ``keep`` (the incumbent's among them), given a valid ``bound``.

        Items outside ``keep`` only appear in solutions worse than the incumbent, so the core's
        answer is the model's; the incumbent guards against HiGHS answers that tolerance issues
        make worse or wrongly 'infeasible'.
        """
        inc_obj = model.items_objective(incumbent)
        keep = keep.copy()
        keep[incumbent] = True
        core, kept = restrict(model, keep)
        raw = self.solve_milp(core, settings, np.searchsorted(kept, incumbent), deadline=deadline, core=True, known_bound=bound)
        raw.stats.update(stats, core_items=core.num_items)
        if raw.items is not None:
            raw.items = kept[raw.items]
        if raw.status in ("optimal", "time_limit", "feasible") and raw.items is not None:
            # the bound given holds whatever HiGHS proved (it may have proved nothing in the time)
            raw.bound = bound if raw.bound is None else max(raw.bound, min(bound, model.items_objective(raw.items)))
        if raw.bound is not None:
            raw.bound = min(raw.bound, inc_obj)  # solutions using dropped items are worse than the incumbent
        if raw.items is None or model.items_objective(raw.items) > inc_obj:
            # HiGHS lost the incumbent it was given (tolerances): keep ours, claim nothing new
            status = "time_limit" if raw.status == "time_limit" else "feasible"
            raw_bound = raw.bound if raw.status in ("optimal", "time_limit") and raw.bound is not None else bound
            kept_bound = max(bound, raw_bound)
            if gap_closed(model, incumbent, kept_bound, settings.mip_gap):
                status = "optimal"  # the incumbent meets the bound
            return RawSolution(status, items=incumbent, objective=inc_obj, bound=min(kept_bound, inc_obj), message=f"HiGHS on the core: {raw.message}; kept the incumbent", stats=raw.stats)
        return raw

    @classmethod
    def rounded_lp(cls, model: CanonicalModel, keep: np.ndarray, incumbent: np.ndarray, settings: SolveSettings, deadline: float | None = None) -> np.ndarray | None:
        """An incumbent from the LP relaxation over the items in ``keep`` (plus ``incumbent``'s):
        rounded, repaired and improved; None if the LP does not solve (by ``deadline`` too)."""
        keep = keep.copy()
        keep[incumbent] = True
        sub, kept = restrict(model, keep)
        relaxed = _HighsModel(sub, settings, integer=False)
        relaxed.stop_at(deadline)
        relaxed.run()
        if relaxed.h.getModelStatus() != relaxed.hs.HighsModelStatus.kOptimal:
            return None
        found = cls._incumbent(sub, np.asarray(relaxed.h.getSolution().col_value), np.searchsorted(kept, incumbent), deadline)
        return None if found is None else kept[found]

    @staticmethod
    def _incumbent(model: CanonicalModel, lp_values: np.ndarray, warm_start: np.ndarray | None, deadline: float | None = None) -> np.ndarray | None:
        """The rounded LP solution, or the warm start (1-opt improved) if it is better."""
        candidates = [c for c in (round_lp(model, lp_values, deadline=deadline),) if c is not None]
        if warm_start is not None and is_feasible(model, warm_start):
            candidates.append(improve(model, warm_start))
        return min(candidates, key=model.items_objective) if candidates else None

    def solve_milp(self, model: CanonicalModel, settings: SolveSettings, warm: np.ndarray | None, linear: Linearization | None = None,
                   known_bound: float | None = None, **options) -> RawSolution:
        """:meth:`MilpBackend.solve_milp`, then on an integer objective whose bound stops more than
        half a unit short (HiGHS's tolerances, ~1e-7 of its normalized objective unit, exceed a unit
        where the objective spans more than ~1e6: ``size_bits`` in accuracy-target mode) once more
        in integer units from its answer: HiGHS then sees integer costs, detects the integral
        objective and prunes at the incumbent less one, so its bound is good to a unit.

        ``known_bound``: a valid lower bound from elsewhere (the LP relaxation's): an answer that
        meets it is optimal whatever HiGHS proved, and is not solved again. Budget rows HiGHS may
        exceed by ~1e-7 of their scale (hundreds of units at integer costs near 2**24) let its own
        bound stop that far short of an optimum that only equality meets, re-solve or not."""
        raw = _meets(model, super().solve_milp(model, settings, warm, linear, **options), known_bound, settings)
        if not _integer_gap_left(model, raw, settings) or settings.deadline.expired():  # (an answer that meets known_bound leaves none)
            return raw
        arrays = options.get("arrays")
        arrays = milp_arrays(model, linear) if arrays is None else arrays
        units = dataclasses.replace(arrays, cost=arrays.cost * arrays.scale, scale=1.0)
        again = super().solve_milp(model, settings, raw.items, linear, **{**options, "arrays": units})
        raw.stats["integer_units_resolve"] = again.status
        if again.items is None or again.bound is None or again.status not in ("optimal", "feasible", "time_limit"):
            return raw
        bound = max(again.bound, raw.bound)  # both hold: the first run's bound and the re-solve's
        if model.items_objective(again.items) > raw.objective:
            again.items, again.objective = raw.items, raw.objective
        again.bound = min(bound, again.objective)
        again.message += "; solved again in integer objective units from the first answer (integral objective, gap left above half a unit)"
        again.stats = {**raw.stats, **again.stats}
        return _meets(model, again, known_bound, settings)

    STATUS_MAP = {"kOptimal": "optimal", "kInfeasible": "infeasible", "kTimeLimit": "time_limit", "kInterrupt": "time_limit",
                  "kSolutionLimit": "time_limit", "kIterationLimit": "time_limit"}

    @property
    def display(self) -> str:
        return "HiGHS"

    def run_milp(self, model: CanonicalModel, settings: SolveSettings, warm: np.ndarray | None, linear: Linearization | None = None,
                 deadline: float | None = None, core: bool = False, arrays: MilpArrays | None = None, proof: bool = False) -> MilpRun:
        """HiGHS's MILP on the whole ``model``, stopped at ``deadline`` (default: the settings'); ``core``:
        a small core with a good start (MIP heuristics off for up to two budgets, or for any number with
        ``proof``: a near-optimal start only needs proving); ``arrays``: the
        MILP itself when it has more than the model's rows (the accuracy target's loss row). Through
        :meth:`solve_milp`, which the other backends that hand HiGHS a (core) model call (``mckp``)."""
        hm = _HighsModel(model, settings, integer=True, linear=linear, arrays=arrays)
        h, hs = hm.h, hm.hs
        if core and (model.num_budgets <= 2 or proof):
            # The core is small and starts from a good incumbent: HiGHS's feasibility jump and
            # sub-MIP heuristics (RINS/RENS) only add time there (LIMPQ ResNet-50: 130 ms -> 60 ms).
            # With three budgets they found the near-optimal solutions that close a 1e-6 gap; an exact
            # proof from a near-optimal start does without them (mckp_problem(2000, 8, 3, seed=1)'s
            # 163-group core: 6,790 nodes in 20 s without them, 1,216 with, 13 of 19 s in sub-MIPs).
            for option in ("mip_heuristic_run_feasibility_jump", "mip_heuristic_run_rins", "mip_heuristic_run_rens"):
                h.setOptionValue(option, False)
        hm.stop_at(deadline)
        h.setOptionValue("mip_rel_gap", float(settings.mip_gap))
        # HiGHS sees a shifted, scaled objective: the user's relative gap, measured at the warm
        # start, becomes an absolute gap in those units (the 1e-6 default would stop short)
        reference = abs(model.items_objective(np.asarray(warm))) if warm is not None else 0.0
        h.setOptionValue("mip_abs_gap", float(settings.mip_gap) * reference / hm.scale)
        if warm is not None:
            solution = hs.HighsSolution()
            solution.col_value = hm.arrays.start_values(warm, linear)
            h.setSolution(solution)
        hm.run()
        status, info, text = h.getModelStatus(), h.getInfo(), hm.status_text()
        if status in (hs.HighsModelStatus.kTimeLimit, hs.HighsModelStatus.kInterrupt):
            # our deadline interrupts it from a callback: HiGHS calls that 'Interrupted by user'
            text = self.limit_text(settings, "time limit reached")
        run = MilpRun(status.name, text, bound=float(info.mip_dual_bound), scale=hm.scale, constant=hm.constant,
                      stats={"nodes": int(info.mip_node_count), "highs_status": hm.status_text()})
        if info.primal_solution_status == 2:  # kSolutionStatusFeasible
            run.values = np.asarray(h.getSolution().col_value)
            run.objective, run.assignment_value = float(info.objective_function_value), float(hm.cost @ run.values)
        return run


def _meets(model: CanonicalModel, raw: RawSolution, known_bound: float | None, settings: SolveSettings) -> RawSolution:
    """``raw`` with ``known_bound`` (a valid lower bound from elsewhere) taken into its bound, and
    status ``optimal`` if its assignment meets it (:func:`~mpqopt.algorithms.lagrangian.gap_closed`)."""
    if known_bound is None or raw.items is None or raw.objective is None or raw.status not in ("optimal", "feasible", "time_limit"):
        return raw
    bound = known_bound if raw.bound is None else max(raw.bound, known_bound)
    raw.bound = min(bound, raw.objective)
    if raw.status != "optimal" and gap_closed(model, raw.items, bound, settings.mip_gap):
        raw.status = "optimal"
        raw.message += "; its assignment meets the LP bound: proven optimal"
    return raw


def _integer_gap_left(model: CanonicalModel, raw: RawSolution, settings: SolveSettings) -> bool:
    """Whether ``raw`` (a MILP answer on an integer objective) leaves a gap that only HiGHS's
    tolerance explains: more than half a unit and more than the gap the user allows."""
    if not model.integral_objective or raw.items is None or raw.bound is None or raw.objective is None:
        return False
    if raw.status not in ("optimal", "feasible"):
        return False
    gap = raw.objective - raw.bound
    return gap > 0.5 and gap > settings.mip_gap * abs(raw.objective + model.offset)


def _start_only(model: CanonicalModel, items: np.ndarray | None, bound: float | None, text: str, stats: dict | None = None) -> RawSolution:
    """Status ``time_limit`` with the assignment HiGHS was to start from (if it meets the budgets)."""
    if items is None or not is_feasible(model, np.asarray(items)):
        return RawSolution("time_limit", bound=bound, message=f"{text}, no assignment found", stats=stats or {}, proof="HiGHS LP relaxation" if bound is not None else "")
    objective = model.items_objective(np.asarray(items))
    return RawSolution("time_limit", items=np.asarray(items), objective=objective, bound=None if bound is None else min(bound, objective),
                       message=f"{text}; returning the starting assignment", stats=stats or {}, proof="HiGHS LP relaxation + reduced-cost fixing" if bound is not None else "")
