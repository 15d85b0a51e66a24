"""mpqopt's own exact multiple-choice knapsack engine (``mckp``) and MPQCO's greedy (``greedy``).

Single budget: lower convex hulls give the greedy solution, the LP bound and the multiplier at once
(sorting the hull increments is the only superlinear step); the greedy solution is filled up to an
incumbent; exact reduced-cost fixing at the LP multiplier leaves a small core, which dynamic
programming over non-dominated states solves exactly. No Python loop runs over layers. Where the
core is hard (Pisinger's strongly correlated classes), the DP pauses once to improve the incumbent
by re-solving the groups nearest the break (:mod:`mpqopt.algorithms.neighbourhood`) and goes on
below it, and on integer objectives raises its floor by the rank (cardinality) bound
(:mod:`mpqopt.algorithms.cardinality`: the LP bound of Pisinger's strongly correlated class stops
5-9 units short of the optimum, which that bound meets, so the incumbent is proved as soon as it is
found); without a time limit, a core still too large for it goes to HiGHS from the best incumbent
found (under a time limit the DP goes on until the deadline: see ``DP_WORK_TIMED``).

Several budgets: the Lagrangian dual (:mod:`mpqopt.algorithms.dual`) gives multipliers and a bound,
its solution repaired and improved is the incumbent, reduced-cost fixing leaves a core, and dynamic
programming over non-dominated states proves it (:mod:`mpqopt.algorithms.multi_core`). Otherwise
the LP optimum is rounded for a better incumbent and HiGHS works on cores cut at targets (see
``_targeted_cores``): first a few tens of undecided groups just above the LP bound (wider ones at
``mip_gap=0`` while those find nothing near-optimal), for a near-optimal incumbent, then the core
below that incumbent (less the allowed gap), which proves it.

At ``mip_gap=0`` that last proof can be out of reach of the LP bound: on ``mckp_problem(2000..5000,
8, 3)`` its core is only ~120-130 groups of 2-3 items, yet HiGHS needs 20,000-75,000 nodes (40-60 s)
on it, and the dominance DP 100,000+ states: the budgets can be filled in very many nearly equal
ways (the near-optimal assignments lie within ~1e-5 relative of each other), and neither the LP
bound nor dominance separates them. What does separate them is that a better assignment must fill
every budget with a positive multiplier almost exactly: meeting in the middle on the reduced costs
(:mod:`mpqopt.algorithms.meet_core`) lists each half of the core's assignments below the gap and
pairs only those whose budgets meet in that narrow window (5,000 x 8 x 3: the 134-group core in
~1 s). Where the gap leaves too many assignments for that (50,000 x 8 x 3: ~1,100-1,900 groups
below the incumbent), HiGHS takes the core over. Without a time limit the proof gets
``PROOF_SECONDS``; if it does not close, the result is ``feasible`` with the bound proved so far
(the certified gap). A ``time_limit`` gives the proof all the time that is left instead.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from ..deadline import passed
from ..algorithms.cardinality import rank_bound
from ..algorithms.core_dp import solve_core
from ..algorithms.dual import solve_dual
from ..algorithms.heuristics import fill, improve, is_feasible, repair
from ..algorithms.hull import greedy
from ..algorithms.kopt import MAX_TRIPLE_CANDIDATES, exchange
from ..algorithms.lagrangian import fixable_items, gap_closed, lagrangian_bound
from ..algorithms.meet_core import solve_meet_core
from ..algorithms.neighbourhood import neighbourhood_search
from ..algorithms.multi_core import solve_multi_core
from ..errors import SolverError
from ..reductions import CanonicalModel
from ..reductions.canonical import select_items
from .base import Backend, RawSolution, SolveSettings, register
from .highs import HighsBackend


# targets between the LP bound and the incumbent, as fractions of that gap, tried in order. The DP's
# work grows like the 4th power of the target's gap on Pisinger's inverse strongly correlated class,
# so rungs at 1/2 and 3/4 pay where the optimum lies well below the incumbent: inverse_strongly
# 100 x 100, R=10,000 (optimum at 0.73 of the gap) proved in 43 s, 1.17e9 states (1.65e9 and 53 s
# without them); where the incumbent is optimal they add ~0.5**4 + 0.75**4 of the last round
TARGET_FRACTIONS = (1 / 1024, 1 / 256, 1 / 64, 1 / 16, 1 / 4, 1 / 2, 3 / 4)
# The single-budget core DP's work, all rounds together, before HiGHS takes the core over (see
# _dp_work_limit). The DP is what solves Pisinger's correlated classes (knapsack_problem(100, 10,
# "inverse_strongly"): 0.2 s; with 2.2M states of work the HiGHS core it handed over to stopped at
# 10 s, as HiGHS on the whole model does), so it keeps about a minute of numpy on 2 cores. That is
# without a time limit; with one, the deadline stops the DP instead (see _dp_work_limit)
DP_WORK_BASE = 300_000_000
DP_WORK_PER_ITEM = 0
# Under a time limit the DP's work is bounded by the deadline (and its state limit) alone. On the
# grid's hard classes HiGHS on the handed-over core never improved the DP's incumbent nor proved one
# (10 instances, 50 s each), while the DP, left to run, proves inverse_strongly 100 x 100, R=10,000
# in 53 s (1.65e9 states; 300M took ~9 s, after which HiGHS stopped at 60 s 10 units above the optimum)
DP_WORK_TIMED = 10**15
# Under a time limit a rung below the incumbent gets at most this share of the time left when it
# starts; past it the last round (at the incumbent, which meets better assignments on its way) runs.
# Without it, inverse_strongly 4,000 x 10, R=10,000 ended in the 3/4 rung at 60 s with the filled
# incumbent, 2 units above what the last round had found (and HiGHS on the whole model); with 0.75
# it ends at 98003374 (HiGHS's answer). The cost: inverse_strongly 2,500 x 10, R=10,000, proved in
# 38-50 s without the share and at 0.85, is left unproved at 0.75 (61239028, the optimum, bound
# 61239026); at 0.85 the 4,000 x 10 instance ends at 98003376 again. Both sit at the 60 s edge
RUNG_SHARE = 0.75
# After this many states of the single-budget DP, the groups nearest the break are re-solved for a
# better incumbent with up to NEIGHBOURHOOD_WORK states; the DP goes on below it
PROBE_WORK = 10_000_000
NEIGHBOURHOOD_WORK = 20_000_000
SMALL_CORE = 64  # alternatives below which the core DP runs once at the incumbent (HAWQ-V3 ResNet-18 at 50 %: 2.5 -> 1.0 ms)


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


# first targets above the LP bound, as fractions of the absolute gap the user allows: the cores
# below them are tiny (30-50 groups on 5,000 x 8 x 3) and hold near-optimal assignments. Measured
# there: (0.2, 0.3, 0.45) with 0.25 s each gave 0.35-3.3 s (time caps hit during HiGHS's root);
# (0.2, 0.35) with 0.4 s each gave 0.5-0.95 s on seeds 0-4, twice over.
FIRST_TARGETS_OF_GAP = (0.2, 0.35)
FIRST_CORE_GAP = 0.1  # of the allowed gap: the first core's search aims at its best assignment
FIRST_CORE_SECONDS = 0.4  # HiGHS can wander on the first core; it only has to find an incumbent
# At mip_gap=0 the first targets are set by the number of groups their cores hold (see
# _group_targets): a fixed fraction of the objective left 2,189 groups at 50,000 x 8 x 3, where HiGHS
# overshot its 0.4 s by ~30 s; past the first two, a rung is tried only while the incumbent lies
# above it (mckp_problem(2000, 8, 3, seed=1) needed the ~100-group core for a near-optimal incumbent)
FIRST_CORE_GROUPS = (32, 48, 192, 768)
# At mip_gap=0 the first cores are searched (and the exchanges polish) as if this relative gap were
# allowed: they only serve to find a near-optimal incumbent (the proof below it is exact)
INCUMBENT_GAP = 1e-6
# Without a time limit, the exact proof at mip_gap=0 on the last core stops after this many seconds
# and reports the gap it proved (see the module docstring): the default returns within seconds.
# Wall-clock, so a busy machine proves less in it: llm_problem(32) with 4.0 bpw and two stage
# budgets needed 6.9 s on 2 cores at load 6 (2,786 nodes); 5 s left it 'feasible' at 2.7e-4.
PROOF_SECONDS = 10.0
# At mip_gap=0 the meet in the middle searches below these fractions of the gap between the
# Lagrangian bound and the incumbent, in turn: its listings grow steeply with the gap
# (mckp_problem(5000, 8, 3, seed=1): 0.08, 0.32 and 9.3 million partial assignments at 0.5, 0.63 and
# 1), so when the optimum lies well below the incumbent (there at 0.63) a lower target finds and
# proves it at a fraction of the cost, and the steps below cost little beside the last
MEET_FRACTIONS = (0.25, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# Each step lists 2-3 times as many partial assignments as the one before: a step that would list
# more than this (both halves, by that rate from the last two steps) is not started, and HiGHS takes
# over. mckp_problem(5000, 8, 3) seeds 0-4 need at most ~0.7 million at their last step; on
# mckp_problem(400, 8, 3, seed=2, budget_fraction=0.5) a 3.5 million step took 2.3 s and proved
# nothing (HiGHS proves that core in 2.2 s)
MEET_STEP_STATES = 2_000_000
# At mip_gap=0, HiGHS's first look at the core below the incumbent, before the meet in the middle
QUICK_PROOF_SECONDS = 0.15
ROUNDED_LP_SECONDS = 1.0  # at mip_gap=0, the cap on the rounded LP (see _several_budgets)


def _compact_core(model: CanonicalModel, keep: np.ndarray, incumbent: np.ndarray, abs_gap: float, settings: SolveSettings, deadline: float | None, proof: bool = False) -> tuple[np.ndarray | None, float | None, dict]:
    """HiGHS on the items in ``keep`` (plus the incumbent's), with groups left a single item fixed
    and taken out, and each budget row shifted by its groups' lightest item: the MILP HiGHS sees
    has only the undecided groups and budget rows of the size of what they can still spend (a
    5,000-group core with 40 undecided groups is that 40-group model).

    ``proof``: the incumbent is near-optimal, HiGHS's MIP heuristics are left off.
    Returns ``(items, bound, stats)``: HiGHS's assignment for the whole model (None if none or it
    breaks a budget) and a valid lower bound over assignments using only ``keep``'s items.
    """
    keep = keep.copy()
    keep[incumbent] = True
    kept = np.nonzero(keep)[0]
    active = np.bincount(model.item_group[kept], minlength=model.num_groups) > 1
    if not active.any():  # the core holds the incumbent only
        return None, model.items_objective(incumbent), {"core_groups": 0}
    fixed = incumbent[~active]
    items = kept[active[model.item_group[kept]]]
    sub = select_items(model, items, (np.cumsum(active) - 1)[model.item_group[items]], int(active.sum()), model.free_groups[active])
    lightest = np.minimum.reduceat(sub.weights, sub.group_start[:-1], axis=1)
    rhs = model.rhs - model.weights[:, fixed].sum(axis=1) - lightest.sum(axis=1)
    sub = dataclasses.replace(sub, weights=sub.weights - lightest[:, sub.item_group], rhs=rhs)
    warm = np.searchsorted(items, incumbent[active])
    # solve_milp's gap is relative to the core's objective: this one gives the absolute gap wanted
    rel = min(abs_gap / max(abs(sub.items_objective(warm)), 1e-300), 0.5)
    raw = HighsBackend().solve_milp(sub, dataclasses.replace(settings, mip_gap=rel, warm_start=None), warm, deadline=deadline, core=True, proof=proof)
    stats = {"core_groups": sub.num_groups, "core_items": sub.num_items, "nodes": raw.stats.get("nodes")}
    fixed_value = float(model.value[fixed].sum())
    bound = raw.bound + fixed_value if raw.bound is not None and raw.status in ("optimal", "time_limit", "feasible") else None
    if raw.items is None:
        return None, bound, stats
    found = incumbent.copy()
    found[active] = items[raw.items]
    return (found if is_feasible(model, found) else None), bound, stats


def _polished(model: CanonicalModel, lam: np.ndarray, incumbent: np.ndarray, allowed: float) -> np.ndarray:
    """Three-group exchanges among the items of least reduced cost (those a better assignment can
    use once the gap is closed to ``allowed``), at most MAX_TRIPLE_CANDIDATES of them."""
    lagrange, reduced = lagrangian_bound(model, lam)
    reach = model.items_objective(incumbent) - lagrange - allowed
    near = np.nonzero((reduced > 0) & (reduced <= max(reach, 0.0)))[0]
    near = near[np.argsort(reduced[near], kind="stable")[:MAX_TRIPLE_CANDIDATES]]
    # the chosen items stay candidates so that a group can move back to its Lagrangian choice
    zero = np.nonzero(reduced == 0)[0]
    return exchange(model, incumbent, np.union1d(near, np.union1d(zero[np.isin(model.item_group[zero], model.item_group[near])], incumbent)))


def _targeted_cores(model: CanonicalModel, lam: np.ndarray, lp_bound: float, incumbent: np.ndarray, settings: SolveSettings, deadline: float | None, stats: dict) -> RawSolution:
    """Close the ``mip_gap`` (positive or 0) by HiGHS on cores below targets.

    Items whose reduced cost lifts the Lagrangian bound above a target ``T`` only appear in
    assignments worse than ``T``, so ``min(T, core bound)`` bounds the model. Targets just above
    the LP bound leave cores of a few dozen groups where HiGHS (time-capped) and three-group
    exchanges find a near-optimal incumbent; the last target is that incumbent less the allowed
    gap (the core is again small), which is all the bound has to reach. At ``mip_gap=0`` the first
    targets are set by core size (``FIRST_CORE_GROUPS``), and the core below the incumbent goes to
    the DP, then briefly to HiGHS (``QUICK_PROOF_SECONDS``), then to meeting in the middle below
    rising targets (each exact when it completes), then to HiGHS; without a time limit the last
    three get ``PROOF_SECONDS`` together.
    """
    inc_obj = model.items_objective(incumbent)
    bound = lp_bound

    def run(target: float, core_gap: float, stop: float | None, name: str, proof: bool = False) -> None:
        nonlocal bound, incumbent, inc_obj
        drop, _ = fixable_items(model, lam, target)
        found, core_bound, core_stats = _compact_core(model, ~drop, incumbent, core_gap, settings, stop, proof)
        stats.update({f"{name}_{k}": v for k, v in core_stats.items()})
        if core_bound is not None:
            bound = max(bound, min(core_bound, target))
        if found is not None and model.items_objective(found) < inc_obj:
            incumbent, inc_obj = found, model.items_objective(found)

    def allowed() -> float:  # absolute gaps agree; the relative one is of the user's objective
        return settings.mip_gap * abs(inc_obj + model.offset)

    def closed() -> bool:
        return gap_closed(model, incumbent, bound, settings.mip_gap)

    exact = settings.mip_gap == 0
    scale = INCUMBENT_GAP * abs(inc_obj + model.offset) if exact else allowed()
    targets = _group_targets(model, lam, FIRST_CORE_GROUPS) if exact else [lp_bound + f * allowed() for f in FIRST_TARGETS_OF_GAP]
    for k, target in enumerate(targets):
        if closed() or passed(deadline) or (k >= 2 and inc_obj <= target):
            break
        stop = time.perf_counter() + FIRST_CORE_SECONDS
        # the best assignment of these cores is wanted (it makes the last core small), not a proof
        run(target, FIRST_CORE_GAP * scale, stop if deadline is None else min(stop, deadline), f"first{k}")
        incumbent = _polished(model, lam, incumbent, scale)
        inc_obj = model.items_objective(incumbent)
    how = "mckp: Lagrangian dual + reduced-cost fixing + HiGHS cores below targets" if exact else "mckp: Lagrangian dual + HiGHS on reduced-cost cores below targets"
    if exact and not closed() and not passed(deadline):
        # the core below the near-optimal incumbent is often small enough for the DP's exact proof
        core = solve_multi_core(model, ~fixable_items(model, lam, inc_obj)[0], incumbent, lam, deadline=deadline)
        stats.update(last_dp_core_groups=core.core_groups, last_dp_states=core.states, last_dp_complete=core.complete)
        if core.complete:
            incumbent = core.items
            inc_obj = bound = model.items_objective(incumbent)
            how = "mckp: Lagrangian dual + HiGHS on cores below targets (incumbent) + reduced-cost fixing + core DP (proof)"
    # the default (no time limit) bounds the exact proof's time; a user's time limit replaces that
    capped = exact and settings.time_limit is None
    proof_stop = time.perf_counter() + PROOF_SECONDS if capped else deadline
    if exact and QUICK_PROOF_SECONDS > 0 and not closed() and not passed(proof_stop):
        # HiGHS first, briefly: it proves some of these cores in a node or two (mckp_problem(400, 8,
        # 3, kind="llm"): 0.09 s in all, where the meet in the middle below would spend 1.6 s)
        quick = time.perf_counter() + QUICK_PROOF_SECONDS
        run(inc_obj - 0.999 * allowed(), 0.999 * allowed(), quick if proof_stop is None else min(proof_stop, quick), "quick", proof=True)
    if exact and not closed() and not passed(proof_stop):
        # where the dominance DP drowns in nearly equal assignments, meeting in the middle on the
        # reduced costs proves the same core (mckp_problem(5000, 8, 3): 134 groups in ~0.4 s, where
        # HiGHS took 74,000 nodes and 41 s), below rising targets (see MEET_FRACTIONS)
        keep = ~fixable_items(model, lam, inc_obj)[0]
        lagrange = lagrangian_bound(model, lam)[0]
        sizes: list[float] = []  # partial assignments listed at each completed step
        for fraction in MEET_FRACTIONS:
            target = lagrange + fraction * (inc_obj - lagrange) if fraction < 1.0 else inc_obj
            if target <= bound:
                continue
            if len(sizes) > 1 and sizes[-1] ** 2 / sizes[-2] > MEET_STEP_STATES:
                break  # its listings would outgrow the limit at this step: HiGHS takes over now
            meet = solve_meet_core(model, keep, incumbent, lam, target=target, deadline=proof_stop)
            stats.update(last_meet_core_groups=meet.core_groups, last_meet_fraction=fraction, last_meet_complete=meet.complete,
                         last_meet_states=stats.get("last_meet_states", 0) + meet.states, last_meet_pairs=stats.get("last_meet_pairs", 0) + meet.pairs)
            if not meet.complete:
                break
            sizes.append(max(float(meet.states), 1.0))
            if model.items_objective(meet.items) < inc_obj:  # the best assignment below the target: optimal
                incumbent = meet.items
                inc_obj = bound = model.items_objective(incumbent)
            else:  # no assignment lies below the target
                bound = max(bound, target)
            if closed():
                break
        if closed():
            how = "mckp: Lagrangian dual + HiGHS on cores below targets (incumbent) + reduced-cost fixing + meet in the middle (proof)"
    for k in range(3):
        if closed() or passed(proof_stop):
            break
        how = "mckp: Lagrangian dual + reduced-cost fixing + HiGHS core below the incumbent" if exact else how
        run(inc_obj - 0.999 * allowed(), 0.999 * allowed(), proof_stop, f"last{k}", proof=exact)
    done = closed()
    # within the round-off of summing the objective, the bound is the objective
    bound = inc_obj if done and exact else min(bound, inc_obj)
    status = "optimal" if done else ("time_limit" if passed(deadline) else "feasible")
    if not done and capped and not passed(deadline):
        how += f"; the exact proof stopped after {PROOF_SECONDS:g} s, the default without a time limit (give one to let it run longer)"
    return RawSolution(status, items=incumbent, objective=inc_obj, bound=bound, message=how, stats=stats)


def _group_targets(model: CanonicalModel, lam: np.ndarray, counts: tuple[int, ...]) -> list[float]:
    """Targets whose cores (:func:`fixable_items` at them) hold about ``counts`` groups with an
    alternative to their Lagrangian choice: each group's cheapest alternative, by reduced cost,
    sorted; the target for ``n`` groups is the Lagrangian bound plus the ``n``-th of them."""
    lagrange, reduced = lagrangian_bound(model, lam)
    cheapest = np.minimum.reduceat(np.where(reduced > 0, reduced, np.inf), model.group_start[:-1])
    cheapest = np.sort(cheapest[np.isfinite(cheapest)])
    if cheapest.size == 0:
        return []
    return [lagrange + float(cheapest[min(n, cheapest.size) - 1]) for n in counts]


def _targets(model: CanonicalModel, lagrange: float, lower: float, better: float, inc_obj: float, slack: float, core_items: int) -> list[float]:
    """The single-budget DP's rising targets: ``TARGET_FRACTIONS`` of the way from the LP bound to
    the incumbent, then ``better`` (on integer data whole units from ``lower`` up; a core of at
    most ``SMALL_CORE`` items is solved at ``better`` at once: each round rebuilds its hulls)."""
    if core_items <= SMALL_CORE:
        return [better]
    targets = [lagrange + (inc_obj - lagrange) * f for f in TARGET_FRACTIONS]
    if model.integral_objective:  # whole units: targets between two integers are the lower one
        targets = [float(t) for t in np.unique(np.clip(np.floor(np.asarray(targets) + slack), lower, better))]
    return [t for t in targets if t < better] + [better]


class _Share:
    """A deadline at ``share`` of the time ``deadline`` has left now (and never past it)."""

    def __init__(self, deadline, share: float):
        self.deadline, self.at = deadline, time.perf_counter() + share * deadline.remaining()

    def expired(self) -> bool:
        return self.deadline.expired() or time.perf_counter() >= self.at


def _dp_work_limit(model: CanonicalModel, timed: bool = False) -> int:
    """States the single-budget core DP may generate, all rounds together, before HiGHS takes the
    core over: ``DP_WORK_BASE`` plus ``DP_WORK_PER_ITEM`` per item of the model; ``timed`` (the user
    gave a time limit): ``DP_WORK_TIMED``, the deadline stops it."""
    return DP_WORK_TIMED if timed else DP_WORK_BASE + DP_WORK_PER_ITEM * model.num_items


def _integer_floor(model: CanonicalModel, lagrange: float, lam: float) -> float:
    """The LP bound of an integer objective rounded up to the next integer, less its round-off
    (the sums it is made of, ``lam * capacity`` the largest, in float64)."""
    roundoff = 1e-9 * (abs(lagrange) + abs(lam) * float(np.abs(model.rhs).max(initial=0.0)) + 1.0)
    return float(math.ceil(lagrange - roundoff))


_BLOCK = 1 << 18  # items per block of a mask over every item: no n-sized temporaries


def _blockwise_nonzero(values: np.ndarray, test) -> np.ndarray:
    """``np.nonzero(test(values))[0]``, computed block by block."""
    return np.concatenate([np.nonzero(test(values[lo:lo + _BLOCK]))[0] + lo for lo in range(0, values.size, _BLOCK)] or [np.zeros(0, dtype=np.int64)])


def _first_zero(model: CanonicalModel, reduced: np.ndarray) -> np.ndarray:
    """Each group's first item of reduced cost 0 (its Lagrangian choice; every group has one)."""
    F = model.num_groups
    if F and model.num_items % F == 0 and model.num_items // F > 0 and np.array_equal(model.group_start, np.arange(F + 1) * (model.num_items // F)):
        K = model.num_items // F
        return np.argmax(reduced.reshape(F, K) == 0, axis=1) + model.group_start[:-1]
    return np.minimum.reduceat(np.where(reduced == 0, np.arange(model.num_items), model.num_items), model.group_start[:-1])


def _stopped(model: CanonicalModel, incumbent: np.ndarray, bound: float, how: str, stats: dict) -> RawSolution:
    """The time limit hit between stages: the incumbent so far and the valid bound so far."""
    objective = model.items_objective(incumbent)
    return RawSolution("time_limit", items=incumbent, objective=objective, bound=min(bound, objective), message=f"mckp stopped after: {how}", stats=stats, proof=f"mckp: {how.split(' + ')[0]}")


@register
class MckpBackend(Backend):
    name = "mckp"
    description = "mpqopt's exact MCKP engine: convex hulls + reduced-cost fixing + core DP (one budget); Lagrangian dual + fixing + core DP or HiGHS core (several)"

    def solve(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        _separable_only(model, self.name)
        if model.num_budgets == 0:
            return _no_budget(model)
        if model.num_budgets > 1:
            return self._several_budgets(model, settings)
        return self._single_budget(model, settings)

    def _several_budgets(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        """Lagrangian dual for multipliers and bound, repaired Lagrangian solution as incumbent,
        exact reduced-cost fixing, then the core DP (or HiGHS) proves the small core."""
        clock = settings.deadline
        deadline = clock.at
        dual = solve_dual(model, time_limit=clock.remaining())
        if dual.unbounded:
            return RawSolution("infeasible", message="the Lagrangian dual proves the budgets cannot be met together, even fractionally")
        clock.improve_bound(dual.bound)
        candidates = []
        repaired = repair(model, dual.items, deadline=deadline)
        if repaired is not None:
            candidates.append(improve(model, fill(model, repaired)))
        if settings.warm_start is not None and is_feasible(model, settings.warm_start):
            candidates.append(improve(model, np.asarray(settings.warm_start)))
        stats = {"dual_bound": dual.bound, "dual_iterations": dual.iterations}
        if not candidates:  # no incumbent to fix against: HiGHS on the whole model
            if clock.expired():
                return RawSolution("time_limit", bound=dual.bound, message="Lagrangian dual only, no assignment found", stats=stats, proof="Lagrangian dual")
            raw = HighsBackend().solve_milp(model, settings, None, deadline=deadline)
            raw.stats.update(stats)
            if raw.status in ("optimal", "feasible", "time_limit"):
                raw.bound = dual.bound if raw.bound is None else max(raw.bound, dual.bound)
            return raw
        incumbent = min(candidates, key=model.items_objective)
        clock.offer(incumbent, model.items_objective(incumbent))
        drop, bound = fixable_items(model, dual.lam, model.items_objective(incumbent))
        clock.improve_bound(min(bound, model.items_objective(incumbent)))
        if clock.expired():
            return _stopped(model, incumbent, max(bound, dual.bound), "Lagrangian dual + repaired incumbent", stats)
        if settings.mip_gap == 0:
            # Our DP over non-dominated states proves cores of a few dozen groups (LIMPQ ResNet-50:
            # 49 groups in ~5 ms where HiGHS took ~53 ms); it runs before the rounded LP below, which
            # it does not need. Larger cores, or ones whose state sets grow past its limits, go on
            # to HiGHS, from the best assignment the DP found.
            core = solve_multi_core(model, ~drop, incumbent, dual.lam, deadline=deadline)
            stats.update(core_groups=core.core_groups, dp_states=core.states, dp_peak_states=core.peak_states, dp_complete=core.complete)
            if core.complete:
                objective = model.items_objective(core.items)
                stats.update(incumbent=model.items_objective(incumbent), items_fixed=int(drop.sum()))
                return RawSolution("optimal", items=core.items, objective=objective, bound=objective, message="mckp: Lagrangian dual + reduced-cost fixing + core DP", stats=stats, proof=f"core DP over non-dominated states ({core.core_groups} groups) after reduced-cost fixing")
            if model.items_objective(core.items) < model.items_objective(incumbent):
                incumbent = core.items
                clock.offer(incumbent, model.items_objective(incumbent))
                drop, bound = fixable_items(model, dual.lam, model.items_objective(incumbent))
            if clock.expired():
                return _stopped(model, incumbent, max(bound, dual.bound), "Lagrangian dual + core DP (stopped)", stats)
        # The Lagrangian choice leaves budget unused; rounding the LP optimum does far better. The
        # LP is solved on the items that survive fixing only (a fraction of the model), then the
        # better incumbent fixes more.
        # at mip_gap=0 this LP is capped: 9.5 s at 50,000 x 8 x 3 (30,000-group core), where the
        # first cores below find the better incumbent anyway (under a 5 s limit it used it all)
        lp_stop = deadline
        if settings.mip_gap == 0:
            lp_stop = time.perf_counter() + ROUNDED_LP_SECONDS if deadline is None else min(deadline, time.perf_counter() + ROUNDED_LP_SECONDS)
        better = HighsBackend.rounded_lp(model, ~drop, incumbent, settings, lp_stop)
        if better is not None and model.items_objective(better) < model.items_objective(incumbent):
            incumbent = better
            clock.offer(incumbent, model.items_objective(incumbent))
            drop, bound = fixable_items(model, dual.lam, model.items_objective(incumbent))
        stats.update(incumbent=model.items_objective(incumbent), items_fixed=int(drop.sum()))
        if clock.expired():
            return _stopped(model, incumbent, max(bound, dual.bound), "Lagrangian dual + rounded LP", stats)
        return _targeted_cores(model, dual.lam, max(bound, dual.bound), incumbent, settings, deadline, stats)

    def _single_budget(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        start = greedy(model)
        if start is None:
            return RawSolution("infeasible", message="even the cheapest option of every layer breaks the budget")
        incumbent = fill(model, start.items)
        if settings.warm_start is not None and is_feasible(model, settings.warm_start) and model.items_objective(settings.warm_start) < model.items_objective(incumbent):
            incumbent = np.asarray(settings.warm_start)
        inc_obj = model.items_objective(incumbent)
        lam = np.array([start.lam])
        lagrange, reduced = lagrangian_bound(model, lam)
        # on integer objectives no assignment lies below the LP bound rounded up, and a better one
        # than the incumbent is a whole unit better: both prune far more than the float bounds
        lower, better = (_integer_floor(model, lagrange, start.lam), inc_obj - 1.0) if model.integral_objective else (lagrange, inc_obj)
        settings.deadline.offer(incumbent, inc_obj)
        settings.deadline.improve_bound(min(lower, inc_obj))
        stats = {"lp_bound": lagrange, "greedy_objective": model.items_objective(start.items), "incumbent": inc_obj}
        if inc_obj - lower <= settings.mip_gap * abs(inc_obj):  # the filled greedy meets the LP bound: nothing to search
            return RawSolution("optimal", items=incumbent, objective=inc_obj, bound=min(lower, inc_obj), message="mckp: filled greedy meets the hull LP bound", stats=stats)
        # Lagrangian choice (reduced cost 0) per group: the base the core search changes
        base = _first_zero(model, reduced)
        slack = 1e-9 * max(abs(inc_obj), 1e-300)
        candidates = _blockwise_nonzero(reduced, lambda r: lagrange + r <= better + slack)
        candidates = candidates[candidates != base[model.item_group[candidates]]]
        # Search below rising targets: a low target leaves few alternatives and a tiny core;
        # whatever the core search finds at or below the target is optimal. The last target is
        # ``better`` (the incumbent, less a unit on integer data), and finding nothing at or below
        # it proves the incumbent optimal. Once the DP has generated PROBE_WORK states, the
        # incumbent is improved by re-solving the groups nearest the break (it was the filled
        # greedy, ~7,000 above the optimum on strongly 1,000 x 100, R=10,000, where the
        # neighbourhoods come within 12 of the LP bound), and the DP goes on below it.
        targets = _targets(model, lagrange, lower, better, inc_obj, slack, candidates.size)
        work_limit = _dp_work_limit(model, settings.time_limit is not None)
        work_left = work_limit
        searched = False

        def improve() -> float | None:
            """The neighbourhood search, once: the DP's new target if it found a better incumbent."""
            nonlocal incumbent, inc_obj, better, searched
            searched = True
            found, nbh = neighbourhood_search(model, incumbent, start.lam, NEIGHBOURHOOD_WORK, settings.deadline)
            stats.update(nbh)
            if model.items_objective(found) >= inc_obj:
                return None
            incumbent, inc_obj = found, model.items_objective(found)
            better = inc_obj - 1.0 if model.integral_objective else inc_obj
            settings.deadline.offer(incumbent, inc_obj)
            return better

        def refloor() -> float | None:
            """Once the DP has proved hard: the rank (cardinality) bound, the new floor if higher."""
            nonlocal lower
            # after the deadline (the neighbourhood search may have run to it) not even its first
            # LP: a hull greedy, ~0.5 s on 1M items
            if not model.integral_objective or settings.deadline.expired():
                return None
            card = rank_bound(model, goal=inc_obj, deadline=settings.deadline)
            stats.update(rank_bound=card.bound, rank_mu=card.mu, rank_evaluations=card.evaluations)
            if card.bound <= lower:
                return None
            lower = card.bound
            settings.deadline.improve_bound(min(lower, inc_obj))
            return lower

        def proved() -> RawSolution | None:
            """The incumbent, optimal, once the floor reaches it (integer objectives)."""
            if not (model.integral_objective and lower >= inc_obj):
                return None
            return RawSolution("optimal", items=incumbent, objective=inc_obj, bound=inc_obj, message="mckp: hull LP bound + rank (cardinality) bound + reduced-cost fixing + core DP", stats=stats)

        rounds = 0
        while targets:
            target = min(targets.pop(0), better)
            rounds += 1
            if settings.deadline.expired():
                return _stopped(model, incumbent, lower, "hull LP bound + filled greedy", stats)
            alternatives = candidates[lagrange + reduced[candidates] <= target + slack]
            used = work_limit - work_left
            # under a time limit a rung below the incumbent (it can prove, never improve) leaves the
            # last round, which finds better incumbents on its way, a share of the time
            rung = _Share(settings.deadline, RUNG_SHARE) if target < better and settings.time_limit is not None and settings.deadline.at is not None else None
            core = solve_core(model, base, alternatives, start.lam, target, work_limit=work_left, deadline=rung or settings.deadline,
                              floor=lower if model.integral_objective else None, improve=None if searched else improve, improve_after=PROBE_WORK - used,
                              refloor=None if searched else refloor)
            work_left -= core.work
            target = min(target, better)  # the search went on below a better incumbent than it started from
            stats.update(rounds=rounds, core_groups=core.core_groups, dp_states=core.max_states, dp_work=stats.get("dp_work", 0) + core.work, items_fixed=model.num_items - model.num_groups - int(alternatives.size))
            if not core.complete and core.items is not None and model.items_objective(core.items) < inc_obj:
                # the DP gave up, but met a better assignment on the way: the new incumbent
                incumbent, inc_obj = core.items, model.items_objective(core.items)
                better = inc_obj - 1.0 if model.integral_objective else inc_obj
                settings.deadline.offer(incumbent, inc_obj)
            stats.update(incumbent=inc_obj)
            if (done := proved()) is not None:
                return done
            if settings.deadline.expired():
                return _stopped(model, incumbent, lower, "hull LP bound + filled greedy + core DP (stopped)", stats)
            if not core.complete and rung is not None and rung.expired():
                # the rung ran out of its share: on to the last round (below any better assignment
                # it met), nothing proven
                targets = [better]
                continue
            if not core.complete:
                break
            if core.items is not None or target >= better:
                items = incumbent if core.items is None or model.items_objective(core.items) > inc_obj else core.items
                objective = model.items_objective(items)
                return RawSolution("optimal", items=items, objective=objective, bound=objective, message="mckp: hull LP bound + reduced-cost fixing + core DP", stats=stats)
            # nothing at or below the target (the DP's last check is exact: value <= target): on
            # integer objectives the floor is the next integer. Not target + slack: slack is 1e-9 of
            # the incumbent, over a unit past 1e9, and the floor then passed the optimum
            lower = max(lower, math.floor(target) + 1.0) if model.integral_objective else lower
            if (done := proved()) is not None:
                return done
            targets = [t for t in targets if t < better] + [better]  # the last one falls with the incumbent
        candidates = candidates[lagrange + reduced[candidates] <= better + slack]  # a better incumbent shrinks HiGHS's core
        # the core was too large for the DP: HiGHS proves it instead, from the incumbent
        keep = np.zeros(model.num_items, dtype=bool)
        keep[base] = True
        keep[candidates] = True
        raw = HighsBackend().solve_core(model, keep, incumbent, min(lower, inc_obj), settings, settings.stop_at, stats)
        raw.message = f"mckp (core too large for DP, HiGHS core): {raw.message}"
        return raw


def solve_separable(model: CanonicalModel, time_limit: float | None = None) -> RawSolution:
    """The ``mckp`` engine on a separable ``model`` within ``time_limit`` seconds: the exact solver
    the local search (:func:`mpqopt.algorithms.local_search.iterated_linearization`) is given."""
    return MckpBackend().solve(model, SolveSettings(time_limit=time_limit))


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
            dual = solve_dual(model, time_limit=settings.left())
            if dual.unbounded:
                return RawSolution("infeasible", message="the Lagrangian dual proves the budgets cannot be met together, even fractionally")
            items, bound = repair(model, dual.items, deadline=settings.deadline.at), dual.bound
            if items is None:
                return RawSolution("error", message="greedy could not repair the Lagrangian choice to meet every budget; use an exact solver")
            items = fill(model, items)
            stats = {"dual_iterations": dual.iterations}
        objective = model.items_objective(items)
        return RawSolution("feasible", items=items, objective=objective, bound=bound, message="greedy (no optimality proof; bound = LP relaxation)", stats=stats)
