"""mpqopt's own exact branch-and-bound for cross-layer (IQP) problems.

Best-first search over partial assignments. Bounds come from per-layer minimum pairwise
contributions under a split of the pair terms (:mod:`..algorithms.iqp_bound`), optimized at the root
towards the one-hot RLT linearization's LP bound and again at every node from its parent's split.
A search still open halfway through its time limit raises the root bound with the budget's RLT
products, a floor for every open node. Every node re-optimizes its split together with the budget's
RLT products (multipliers inherited from its parent), which rise with depth where the split alone
stalls below the incumbent.
Every node probes all its children in one pass, drops the items whose child bound reaches the
incumbent, fixes groups left with one item, and branches on the group whose weakest child is
strongest. With one budget (or none) a second, convex bound (:mod:`..algorithms.qcr_bound`: the
node's own one-hot convexification, its relaxation by Frank-Wolfe) closes nodes and drops items
before the split ascent and again before branching, while it keeps closing some.
The incumbent starts from the separable optimum (pair terms ignored) or a warm start, improved by
iterated linearization (and annealing when the root gap is wide), then by each node's relaxed
choice, each polished by 2-opt.
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import replace

import numpy as np

from ..algorithms.heuristics import is_feasible, repair
from ..algorithms.iqp_bound import NodeView, PairBound, Split
from ..algorithms.qcr_bound import ConvexBound, convex_bound
from ..algorithms.local_search import MAX_DENSE_ITEMS, Objective, anneal, iterated_linearization, too_many_items_advice, two_opt
from ..errors import SolverError
from ..reductions import CanonicalModel
from .base import Backend, RawSolution, SolveSettings, get_backend, register
from .mckp import solve_separable

_MAX_FIX_ROUNDS = 4
_ANNEAL_GAP = 0.15  # relative root gap above which the search is expected to be long
_SPLIT_MEMORY = 1 << 30  # bytes of inherited splits kept on open nodes
_RTOL = 1e-10  # relative gap at which a node no longer matters (the reported gap is exact)
_ROOT_ITERATIONS = 200  # split ascent at the root (52 x 3, 10 budgets: median 0.6 s at 200, 0.7 s at 100, 1.3 s at 1200)
_NODE_ITERATIONS = 20  # and again at every node, from its parent's split (52 x 3, 10 budgets: median 0.85 s at 20, 0.94 s at 8, 1.2 s at 60)
# (72 x 3 noise 0.3 f = 0.55, one run each, load ~2: 3808 nodes 46.5 s at 12, 2462 nodes 38.5 s at 20, 2469 nodes 49.6 s at 30,
# 2368 nodes 47.2 s at 40: past 20 the node bounds barely rise, below it the tree grows faster than the steps shrink)
_POLISH_WINDOW = 0.05  # polish candidates within 5% of the incumbent
_PRODUCTS_ROUNDS = 8  # root ascent rounds with the budget products, at most,
_PRODUCTS_GAIN = 0.02  # while a round closes at least this share of the gap left,
_PRODUCTS_SHARE = 0.25  # and within this share of the time left,
_PRODUCTS_AFTER = 0.5  # once this share of the time limit has passed with the search still open
_CONVEX_ITERATIONS = 30  # Frank-Wolfe steps of the convex bound at most (72 x 3 noise 0.3 f = 0.55, the bound before
# branching only: 15, 30, 60 steps took 1025, 993, 982 nodes, all ~15 s: most runs stop after 3-10 steps, once the
# relaxation's value drops below the incumbent)
_CONVEX_FIRST = 8  # the convex bound runs at the first nodes (from the first: starting it after 16 or 32 runs
# kept small trees as they were, 52 x 3 f = 0.15 20 nodes instead of 39, but 72 x 3 noise 0.3 took 3204 or 3563 nodes
# over 10 budgets instead of 3118, f = 0.55 816 or 909 instead of 758),
_CONVEX_RATE = 1 / 16  # then while at least this share of its runs closes the node or drops an item,
_CONVEX_SAMPLE = 32  # else at every this many-th node (200 x 4: ~0.1 s a node, nothing closed in 10 s)
_CONVEX_MAX_ITEMS = 1000  # and only on nodes this small: its eigenvalue and products grow as k^3 (one run at
# the root: 0.13 s at 800 items, 0.18 s at 1,000, 0.7 s at 1,600)


class _ConvexGate:
    """Runs the convex node bound where it pays: at the first nodes, then while it keeps closing
    nodes or dropping items (72 x 3: a quarter of its runs close the node), else on a sample."""

    def __init__(self):
        self.runs = self.hits = self.closed = self.seen = 0
        self.seconds = 0.0

    def bound(self, view: NodeView, target: float):
        """The node's :class:`..algorithms.qcr_bound.ConvexBound`, or None where it is skipped."""
        if view.items.size > _CONVEX_MAX_ITEMS:
            return None
        self.seen += 1
        if self.runs >= _CONVEX_FIRST and self.hits < _CONVEX_RATE * self.runs and self.seen % _CONVEX_SAMPLE:
            return None
        started = time.perf_counter()
        out = convex_bound(view, target, _CONVEX_ITERATIONS)
        self.seconds += time.perf_counter() - started
        self.runs += 1
        closed = out.bound >= target
        self.closed += closed
        self.hits += closed or bool((out.child >= target).any())
        return out

    def stats(self) -> dict:
        return {"convex_runs": self.runs, "convex_closed": self.closed, "convex_ms": round(1e3 * self.seconds, 1)}


class _Incumbent:
    """The best feasible assignment seen, with its objective."""

    def __init__(self, model: CanonicalModel, settings: SolveSettings):
        self.model = model
        self.clock = settings.deadline  # told of every new best, in case solve() must stop waiting
        self.items: np.ndarray | None = None
        self.objective = np.inf
        self.evaluate = Objective(model)
        self.polished = 0

    def offer(self, items: np.ndarray | None) -> bool:
        if items is None:
            return False
        items = np.asarray(items, dtype=np.int64)
        if not is_feasible(self.model, items):
            items = repair(self.model, items, deadline=self.clock.at)
            if items is None:
                return False
        value = self.evaluate(items)
        if value < self.objective + _POLISH_WINDOW * abs(self.objective):
            # local search only on promising points: it costs O(n^2) per round
            items = two_opt(self.model, items, deadline=self.clock.at, objective=self.evaluate).items
            value = self.evaluate(items)
            self.polished += 1
        if value < self.objective:
            self.items, self.objective = items, value
            self.clock.offer(items, value)
            return True
        return False


def _starting_points(model: CanonicalModel, settings: SolveSettings) -> list[np.ndarray]:
    """The warm start and the separable optimum (pair terms ignored)."""
    starts = []
    if settings.warm_start is not None:
        starts.append(np.asarray(settings.warm_start, dtype=np.int64))
    separable = model if model.quadratic is None else replace(model, quadratic=None)
    raw = get_backend("mckp").solve(separable, SolveSettings(time_limit=settings.left(), mip_gap=1e-6))
    if raw.items is not None:
        starts.append(raw.items)
    return starts


@register
class BranchAndBound(Backend):
    name = "bnb"
    description = "mpqopt's exact IQP branch-and-bound: split pairwise bounds, child probing, best-first (also solves separable problems)"
    supports_quadratic = True

    def solve(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        if model.num_items > MAX_DENSE_ITEMS:
            raise SolverError(f"bnb holds the pairwise matrix and its split dense: {model.num_items} options to choose from "
                              f"exceed {MAX_DENSE_ITEMS}; {too_many_items_advice(model)}")
        deadline = settings.stop_at
        started = time.perf_counter()
        inc = _Incumbent(model, settings)
        for start in _starting_points(model, settings):
            inc.offer(start)
            if model.quadratic is not None and is_feasible(model, start):
                # the pair terms' tangent problem, re-solved exactly until it stops helping: often
                # the optimum within tens of ms, which shrinks the tree
                inc.offer(iterated_linearization(model, start, solve_separable=solve_separable, deadline=deadline, objective=inc.evaluate).items)
        bound_model = PairBound(model)
        # objective noise floor, as Result.gap measures it (problem.objective_scale): differences this
        # small are round-off of the sums, and nodes within them of the incumbent cannot improve it
        magnitude = float(np.maximum.reduceat(np.abs(model.value), model.group_start[:-1]).sum()) + float(np.abs(bound_model.Q).sum())
        noise = 1e-14 * magnitude

        def slack() -> float:
            """How far below the incumbent a bound must be for its node to matter."""
            if not np.isfinite(inc.objective):
                return noise
            # relative to the objective the user sees (with the fixed layers' offset), as Result.gap
            return max(noise, max(settings.mip_gap, _RTOL) * abs(inc.objective + model.offset))

        F, n = model.num_groups, model.num_items
        root_view = bound_model.node(np.full(F, -1, dtype=np.int64), np.ones(n, dtype=bool))
        first = root_view.bound()
        if not np.isfinite(first):
            return RawSolution("infeasible", message="bnb: the cheapest completion already breaks the budget", stats={})
        # without an incumbent, aim a little above the bound (Polyak steps need a target)
        target = inc.objective if np.isfinite(inc.objective) else first + max(abs(first), magnitude, 1e-300) * 0.1
        root = root_view.optimize(target, iterations=_ROOT_ITERATIONS, deadline=deadline, tol=slack(), budget_products=False)
        settings.deadline.improve_bound(root)
        bound_model.adopt(root_view)
        split_root = root
        if inc.items is not None and model.quadratic is not None and inc.objective - root > _ANNEAL_GAP * abs(inc.objective):
            # a wide root gap means a long search, where a better incumbent prunes more: anneal a little
            # (a full default run: 72 x 3 found in 1 s the incumbent the search only reached after 46 s)
            inc.offer(anneal(model, inc.items, seed=0, deadline=deadline, objective=inc.evaluate).items)
        # the convex bound's linear problem is exact with one budget (a Lagrangian bound with several)
        convex = _ConvexGate() if model.quadratic is not None and model.num_budgets <= 1 else None
        counter = itertools.count()
        heap: list[tuple[float, int, np.ndarray, np.ndarray, Split | None]] = [(root, next(counter), np.full(F, -1, dtype=np.int64), np.ones(n, dtype=bool), None)]
        nodes = 0
        timed_out = False
        stats: dict = {"root_bound": root, "root_split_bound": split_root, "split_ms": round(1e3 * (time.perf_counter() - started), 1)}
        # a search still open halfway through its time will likely stop at the limit: then the budget
        # products raise the root bound, a floor for every open node (proofs that finish sooner skip it)
        products_at = None if deadline is None or not model.num_budgets or model.quadratic is None else started + _PRODUCTS_AFTER * (deadline - started)
        while heap:
            if products_at is not None and time.perf_counter() > products_at and np.isfinite(inc.objective):
                products_at = None
                floor = self._products_floor(bound_model, inc.objective, root, slack(), settings.left())
                if floor > heap[0][0]:
                    heap = [(max(entry[0], floor),) + entry[1:] for entry in heap]
                    heapq.heapify(heap)
                    settings.deadline.improve_bound(min(floor, inc.objective))
                stats["root_bound"] = root = max(root, floor)
            bound, _, choice, allowed, split = heap[0]
            if bound >= inc.objective - slack():
                break
            if settings.deadline.expired():
                timed_out = True
                break
            heapq.heappop(heap)
            nodes += 1
            # children inherit their parent's split while the open nodes' copies stay small
            keep_split = len(heap) * n * n * 8 < _SPLIT_MEMORY
            for child_bound, child_choice, child_allowed, child_split in self._expand(bound_model, inc, choice, allowed, split, slack, deadline, convex):
                # a child's completions are its parent's: the parent's bound holds for it too
                heapq.heappush(heap, (max(child_bound, bound), next(counter), child_choice, child_allowed, child_split if keep_split else None))
        stats.update(nodes=nodes, open_nodes=len(heap), polished=inc.polished, **(convex.stats() if convex is not None else {}))
        if inc.items is None:
            if not heap and not timed_out:
                return RawSolution("infeasible", message="bnb: no assignment meets the budgets", stats=stats)
            lowest = heap[0][0] if heap else root
            return RawSolution("time_limit", bound=lowest, message="bnb: time limit before any feasible assignment", stats=stats, proof=f"mpqopt branch-and-bound: split bounds, {nodes} nodes")
        lowest_open = heap[0][0] if heap else np.inf
        final_bound = min(inc.objective, lowest_open)
        status = "time_limit" if timed_out else "optimal"
        how = "split pairwise bounds (RLT strength)" if model.quadratic is not None else "LP bounds"
        if convex is not None and convex.runs:
            how += " and convex node bounds"
        proof = f"mpqopt branch-and-bound: {how}, {nodes} nodes"
        return RawSolution(status, items=inc.items, objective=inc.objective, bound=final_bound, message=f"bnb: {'stopped at the time limit' if timed_out else 'search complete'} after {nodes} nodes", stats=stats, proof=proof)

    @staticmethod
    def _products_floor(pb: PairBound, target: float, root: float, tol: float, left: float | None) -> float:
        """The root bound with the budget's RLT products (:mod:`..algorithms.iqp_bound`), from the root's
        split, in rounds while a round closes a good part of the gap, within a share of the time left.
        Nodes run their own products (:meth:`_expand`); this floor lifts the nodes already open."""
        m = pb.model
        view = pb.node(np.full(m.num_groups, -1, dtype=np.int64), np.ones(m.num_items, dtype=bool))
        until = None if left is None else time.perf_counter() + _PRODUCTS_SHARE * left
        best = root
        for _ in range(_PRODUCTS_ROUNDS):
            before = best
            best = max(best, view.optimize(target, _ROOT_ITERATIONS, until, tol=tol))
            if best - before < _PRODUCTS_GAIN * (target - best) or (until is not None and time.perf_counter() > until):
                break
        return best

    @staticmethod
    def _convex(convex: _ConvexGate | None, view: NodeView, allowed: np.ndarray, target: float,
                known: tuple[np.ndarray, ConvexBound] | None = None) -> tuple[bool, ConvexBound | None, bool]:
        """The convex bound at a node: (closed, the bound or None where skipped, whether it dropped
        items); drops from ``allowed`` (in place) the items whose child bound reaches ``target``.
        ``known``: the node's items and bound from an earlier call, used again where the items are
        the same (the target can only have dropped since)."""
        if convex is None:
            return False, None, False
        if known is not None and np.array_equal(known[0], view.items):
            out = known[1]
        else:
            out = convex.bound(view, target)
        if out is None:
            return False, None, False
        # every completion takes an item of each group: a group whose children all reach the target closes the node
        if out.bound >= target or np.minimum.reduceat(out.child, view.sub.group_start[:-1]).max() >= target:
            return True, None, False
        drop = out.child >= target
        # no completion through these items beats the incumbent: out of every descendant
        allowed[view.items[drop]] = False
        return False, out, bool(drop.any())

    def _expand(self, pb: PairBound, inc: _Incumbent, choice: np.ndarray, allowed: np.ndarray, split: Split | None, slack, deadline: float | None,
                convex: _ConvexGate | None = None):
        """Bound, fix and branch one node; yields its children ``(bound, choice, allowed, split)``."""
        model = pb.model
        choice, allowed = choice.copy(), allowed.copy()
        if not (choice < 0).any():
            inc.offer(choice)  # a leaf: branching fixed the last group
            return
        view = pb.node(choice, allowed, split)
        # the convex bound first: where it closes the node, the split's ascent is saved (72 x 3 noise 0.3
        # f = 0.55: 2462 nodes 30.9 s without it; 993 nodes 14.9 s with it before branching only, 756
        # nodes 10.2 s with it here too)
        closed, first, dropped = self._convex(convex, view, allowed, inc.objective - slack())
        if closed:
            return
        if dropped:
            view = pb.node(choice, allowed, split)  # without the items it dropped
        known = None if first is None or dropped else (view.items, first)
        # with the budget's products: at depth they close nodes the split alone cannot (72 x 3, noise 0.3,
        # f = 0.55, nodes of depth 6-16 after 300 steps: split 0.47-0.59, products 0.51-0.5948 = the optimum
        # at 6 of 16); the search there took 2462 nodes instead of 5422, 29 s CPU instead of 42-52
        # (only where the parent's relaxation priced a budget: on slack budgets they cost without closing
        # nodes, 72 x 3 f = 0.95 took 12.8 s CPU with them, 8.1 s without)
        view.optimize(inc.objective, _NODE_ITERATIONS, deadline, tol=slack(), budget_products=model.quadratic is not None and bool(view.mu.any()))
        for _ in range(_MAX_FIX_ROUNDS):
            probe = view.probe()
            if probe.master_items is None:
                return  # no completion meets the budgets
            guess = choice.copy()
            guess[choice < 0] = view.items[probe.master_items]
            inc.offer(guess)
            drop = probe.child >= inc.objective - slack()
            if not drop.any():
                break
            allowed[view.items[drop]] = False
            left = np.bincount(model.item_group[allowed], minlength=model.num_groups)
            if (left == 0).any():
                return  # no item of some group can beat the incumbent
            single = (left == 1) & (choice < 0)
            if single.any():
                only = np.nonzero(allowed & single[model.item_group])[0]
                choice[model.item_group[only]] = only
            if not (choice < 0).any():
                inc.offer(choice)
                return
            view = pb.node(choice, allowed, view.split())
        else:
            probe = view.probe()
        if probe.node_bound >= inc.objective - slack():
            return
        # again on the node the split's fixing left, smaller: its child bounds join the split's, for the
        # branching group too (72 x 3 noise 0.3 f = 0.55 / 0.65: 758 / 675 nodes; 840 / 1063 branching on the
        # split's alone; without the items either call drops, 1318 / 1142)
        # (the first bound again where the split fixed and dropped nothing)
        closed, second, _ = self._convex(convex, view, allowed, inc.objective - slack(), known)
        if closed:
            return
        child = probe.child if second is None else np.maximum(probe.child, second.child)
        sub = view.sub
        shared = view.split()
        per_group = np.minimum.reduceat(child, sub.group_start[:-1])
        g = int(np.argmax(per_group))
        group = int(np.nonzero(choice < 0)[0][g])  # the model group of the node's g-th free group
        lo, hi = model.group_start[group], model.group_start[group + 1]
        for pos in range(sub.group_start[g], sub.group_start[g + 1]):
            if child[pos] >= inc.objective - slack():
                continue
            a = int(view.items[pos])
            child_choice = choice.copy()
            child_choice[group] = a
            child_allowed = allowed.copy()
            child_allowed[lo:hi] = False
            child_allowed[a] = True
            yield float(child[pos]), child_choice, child_allowed, shared
