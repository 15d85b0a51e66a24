"""Local search for cross-layer (IQP) models: 1-opt, 2-opt, iterated linearization, simulated annealing.

Heuristics with no optimality guarantee. The objective is ``f(x) = value @ x + x^T Q x`` over one item
per group (``Q = model.quadratic``, or none for a separable model); every move keeps every budget row
``weights @ x <= rhs`` within the relative slack of :func:`mpqopt.algorithms.heuristics.is_feasible`.

Deltas are incremental through the gradient ``g = value + 2 Q x``: switching a group from item ``i``
to ``j`` changes ``f`` by ``g[j] - g[i]`` (``Q`` has no same-group entries once its diagonal is folded
into ``value``, which :class:`Objective` does), and switching two groups ``i -> j``, ``k -> l`` at once
adds the exact interaction ``2 (Q[j,l] - Q[j,k] - Q[i,l] + Q[i,k])``.

``Q`` is held dense: fine up to a few thousand items (``MAX_DENSE_ITEMS``; 4,000 items are 128 MB).
A 2-opt move costs ``O(n^2)`` (every pair of candidate items, scored in row blocks), so the limit
applies to separable models too.

>>> import mpqopt.synthetic
>>> from mpqopt.reductions import canonicalize
>>> from mpqopt.algorithms.heuristics import is_feasible
>>> from mpqopt.algorithms.incumbent import separable_incumbent
>>> p = mpqopt.synthetic.iqp_problem(12, seed=0)
>>> m = canonicalize(p, p.budgets)
>>> found = two_opt(m, separable_incumbent(m))
>>> is_feasible(m, found.items), found.objective <= m.items_objective(separable_incumbent(m))
(True, True)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..deadline import passed, seconds_left
from ..errors import SolverError
from ..reductions import CanonicalModel
from ..verify import BUDGET_RTOL
from .heuristics import is_feasible, totals

MAX_DENSE_ITEMS = 4000  # dense Q: n**2 float64 (128 MB at 4,000 items)
PAIR_BLOCK = 256  # rows of the pair-move matrix scored at once (bounds memory at n'**1 * PAIR_BLOCK)
REFRESH_MOVES = 64  # recompute the gradient from scratch this often (incremental updates drift)

# an exact solver of the separable problem: (model without a quadratic term, time limit in seconds or
# None) -> an answer with ``items`` (None if it found none), e.g. mpqopt.solvers.mckp.solve_separable
SeparableSolver = Callable[[CanonicalModel, "float | None"], Any]


@dataclass(eq=False)
class SearchResult:
    """An assignment (one item per group) with its exact objective and what the search did."""

    items: np.ndarray
    objective: float
    moves: int = 0  # accepted moves
    iterations: int = 0  # rounds (1-opt/2-opt), MCKP solves (linearization) or proposals (annealing)
    timed_out: bool = False
    stats: dict[str, Any] = field(default_factory=dict)


def too_many_items_advice(model: CanonicalModel) -> str:
    """What to use instead when a dense-Q method refuses a model: advice that works on it."""
    if model.quadratic is None:
        return "use solver 'mckp' (exact at millions of layers; the default for separable problems)"
    # measured: 5,000 layers x 4 options with pair terms between neighbours, optimal in 13 s on HiGHS
    return ("use solver 'highs' (exact, on the one-hot linearization of the pairwise term; sparse pairwise "
            "matrices keep it small), with a time limit if needed: solve(..., solver='highs', time_limit=60) "
            "or --solver highs --time-limit 60")


class Objective:
    """``value`` and a dense, symmetric, cross-group-only ``Q`` with the same objective on one-hot
    assignments as ``model`` (the diagonal is folded into ``value`` since ``x_i^2 = x_i``; two items of
    one group are never chosen together, so same-group entries are dropped)."""

    def __init__(self, model: CanonicalModel):
        self.model = model
        if model.num_items > MAX_DENSE_ITEMS:
            # separable models too: a 2-opt round scores every pair of items (mckp solves those exactly)
            raise SolverError(f"the IQP heuristics hold the pairwise matrix dense and score every pair of items: "
                              f"{model.num_items} options to choose from exceed {MAX_DENSE_ITEMS}; {too_many_items_advice(model)}")
        value = np.array(model.value, dtype=np.float64)
        self.Q: np.ndarray | None = None
        if model.quadratic is not None:
            Q = np.asarray(model.quadratic.toarray(), dtype=np.float64)
            Q = 0.5 * (Q + Q.T)
            value += np.diag(Q)
            Q[model.item_group[:, None] == model.item_group[None, :]] = 0.0
            self.Q = Q
        self.value = value
        self.limit = model.rhs + model.budget_slack
        magnitude = float(np.abs(value).sum()) + (0.0 if self.Q is None else float(np.abs(self.Q).sum()))
        self.tol = BUDGET_RTOL * magnitude  # deltas smaller than this are summation noise

    def __call__(self, items: np.ndarray) -> float:
        total = float(self.value[items].sum())
        if self.Q is not None:
            total += float(self.Q[np.ix_(items, items)].sum())
        return total

    def gradient(self, items: np.ndarray) -> np.ndarray:
        if self.Q is None:
            return self.value.copy()
        return self.value + 2.0 * self.Q[:, items].sum(axis=1)

    def cross(self, new: np.ndarray, old: np.ndarray, new2: np.ndarray, old2: np.ndarray) -> np.ndarray:
        """Interaction term of changing ``old -> new`` (rows) together with ``old2 -> new2`` (columns)."""
        if self.Q is None:
            return np.zeros((new.size, new2.size))
        A = self.Q[new] - self.Q[old]  # (rows, n)
        return 2.0 * (A[:, new2] - A[:, old2])


def single_move_deltas(model: CanonicalModel, items: np.ndarray, objective: Objective | None = None) -> np.ndarray:
    """Objective change of switching the group of each item to that item (0 for the chosen ones)."""
    obj = objective or Objective(model)
    g = obj.gradient(np.asarray(items))
    return g - g[np.asarray(items)[model.item_group]]


def pair_move_deltas(model: CanonicalModel, items: np.ndarray, objective: Objective | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(J, D)``: the unchosen items ``J`` and the objective change ``D[a, b]`` of switching the groups
    of ``J[a]`` and ``J[b]`` to them at once (``nan`` where both are in one group). Dense: for tests
    and small models; the searches score pairs in blocks."""
    obj = objective or Objective(model)
    items = np.asarray(items)
    d1 = single_move_deltas(model, items, obj)
    current = items[model.item_group]
    J = np.nonzero(current != np.arange(model.num_items))[0]
    C = current[J]
    D = d1[J][:, None] + d1[J][None, :] + obj.cross(J, C, J, C)
    D[model.item_group[J][:, None] == model.item_group[J][None, :]] = np.nan
    return J, D


class _State:
    """Current assignment with its gradient and budget load, kept exact enough by periodic refresh."""

    def __init__(self, obj: Objective, items: np.ndarray):
        model = obj.model
        self.obj, self.model = obj, model
        self.items = np.array(items, dtype=np.int64)
        if self.items.shape != (model.num_groups,) or not is_feasible(model, self.items):
            raise SolverError("local search needs a starting assignment that meets every budget")
        self.refresh()

    def refresh(self) -> None:
        self.grad = self.obj.gradient(self.items)
        self.load = totals(self.model, self.items)
        self.value = self.obj(self.items)
        self.since_refresh = 0

    def apply(self, new_items: list[int], delta: float) -> bool:
        """Switch the groups of ``new_items`` to them; False (and nothing changed) if the exact
        totals break a budget (the incremental check can be off by round-off)."""
        groups = self.model.item_group[new_items]
        old = self.items[groups].copy()
        self.items[groups] = new_items
        load = totals(self.model, self.items)
        if (load > self.obj.limit).any():
            self.items[groups] = old
            return False
        self.load = load
        if self.obj.Q is not None:
            self.grad += 2.0 * (self.obj.Q[:, new_items].sum(axis=1) - self.obj.Q[:, old].sum(axis=1))
        self.value += delta
        self.since_refresh += 1
        if self.since_refresh >= REFRESH_MOVES:
            self.refresh()
        return True

    def best_single(self) -> tuple[float, list[int]]:
        """Most negative feasible 1-move delta and its item."""
        model = self.model
        current = self.items[model.item_group]
        delta = self.grad - self.grad[current]
        if model.num_budgets:
            ok = (self.load[:, None] + model.weights - model.weights[:, current] <= self.obj.limit[:, None]).all(axis=0)
            delta = np.where(ok, delta, np.inf)
        delta[current] = np.inf
        j = int(np.argmin(delta))
        return float(delta[j]), [j]

    def best_pair(self) -> tuple[float, list[int]]:
        """Most negative feasible 2-move delta (two different groups) and its two items."""
        model = self.model
        current = self.items[model.item_group]
        J = np.nonzero(current != np.arange(model.num_items))[0]
        best, move = np.inf, []
        if J.size < 2:
            return best, move
        C = current[J]
        d1 = (self.grad - self.grad[current])[J]
        group = model.item_group[J]
        dw = model.weights[:, J] - model.weights[:, C]  # (m, n')
        slack = self.obj.limit - self.load
        for lo in range(0, J.size, PAIR_BLOCK):
            hi = min(lo + PAIR_BLOCK, J.size)
            D = d1[lo:hi, None] + d1[None, :] + self.obj.cross(J[lo:hi], C[lo:hi], J, C)
            bad = group[lo:hi, None] == group[None, :]
            if model.num_budgets:
                bad |= (dw[:, lo:hi, None] + dw[:, None, :] > slack[:, None, None]).any(axis=0)
            D[bad] = np.inf
            a, b = np.unravel_index(int(np.argmin(D)), D.shape)
            if D[a, b] < best:
                best, move = float(D[a, b]), [int(J[lo + a]), int(J[b])]
        return best, move


def _descend(model: CanonicalModel, items: np.ndarray, pairs: bool, max_moves: int, deadline: float | None, obj: Objective | None) -> SearchResult:
    obj = obj or Objective(model)
    state = _State(obj, items)
    moves = rounds = 0
    timed_out = False
    while moves < max_moves:
        if passed(deadline):
            timed_out = True
            break
        rounds += 1
        delta, move = state.best_single()
        if pairs:
            delta2, move2 = state.best_pair()
            if delta2 < delta:
                delta, move = delta2, move2
        if not delta < -obj.tol:
            break
        if state.apply(move, delta):
            moves += 1
        else:
            break  # the best move only fits by round-off: stop rather than search around it
    return SearchResult(state.items, model.items_objective(state.items), moves, rounds, timed_out)


def one_opt(model: CanonicalModel, items: np.ndarray, *, max_moves: int = 10_000, deadline: float | None = None, objective: Objective | None = None) -> SearchResult:
    """Best-improvement single-group switches (pairwise term included) until none improves.

    ``items`` must meet every budget; so does every assignment visited. ``deadline`` is a
    ``time.perf_counter()`` value.
    """
    return _descend(model, items, False, max_moves, deadline, objective)


def two_opt(model: CanonicalModel, items: np.ndarray, *, max_moves: int = 10_000, deadline: float | None = None, objective: Objective | None = None) -> SearchResult:
    """Best-improvement moves of one or two groups at once until none improves: with a binding budget
    one layer gives back what another takes. Each round scores every pair of unchosen items."""
    return _descend(model, items, True, max_moves, deadline, objective)


def iterated_linearization(
    model: CanonicalModel,
    items: np.ndarray,
    *,
    solve_separable: SeparableSolver,
    max_iterations: int = 50,
    deadline: float | None = None,
    objective: Objective | None = None,
) -> SearchResult:
    """Solve the separable MCKP with linear cost ``g = value + 2 Q x_t`` exactly (``solve_separable``,
    which the solvers give: the ``mckp`` engine); take its answer when it lowers the true objective,
    repeat; then 2-opt, and linearize again from the 2-opt point if that moved (until neither helps).

    The linearization is the first-order model of ``f`` at ``x_t``: its minimizer is the best point
    of the budget polytope for that tangent, a large move 2-opt cannot make.
    """
    obj = objective or Objective(model)
    items = np.array(items, dtype=np.int64)
    current = obj(items)
    solves = taken = polish_moves = 0
    timed_out = False
    while True:
        while solves < max_iterations and not passed(deadline):
            remaining = seconds_left(deadline)
            tangent = dataclasses.replace(model, value=obj.gradient(items), quadratic=None)
            raw = solve_separable(tangent, remaining)
            solves += 1
            if raw.items is None or not is_feasible(model, raw.items):
                break
            value = obj(raw.items)
            if not value < current - obj.tol:
                break
            items, current = np.asarray(raw.items, dtype=np.int64), value
            taken += 1
        if passed(deadline):
            timed_out = True
            break
        polished = two_opt(model, items, deadline=deadline, objective=obj)
        polish_moves += polished.moves
        timed_out = polished.timed_out
        if polished.moves == 0 or solves >= max_iterations or timed_out:
            items = polished.items
            break
        items, current = polished.items, obj(polished.items)
    stats = {"mckp_solves": solves, "linearizations_taken": taken, "two_opt_moves": polish_moves}
    return SearchResult(items, model.items_objective(items), taken + polish_moves, solves, timed_out, stats)


# Tuned on iqp_problem(52, 3, seed 0..2, noise 0.1 and 0.5), 5 seeds each, against the best known
# objectives: one chain of 66,000 proposals reached them 10 times in 30 (mean excess 0.0048); 8 chains
# from the start, hot = the 25th-percentile uphill move accepted half the time, cold = the smallest
# sampled one accepted once in 10,000: 21 of 30 with 64,400 proposals in all (mean excess 0.0012),
# 27 of 30 with 161,000 (0.0003, about 0.6 s), the default. A colder start (10th percentile) did worse.
CHAINS = 8
HOT = (0.25, 0.5)  # (quantile of the sampled uphill deltas, acceptance probability) at the start
COLD = (0.001, 1e-4)  # ... and at the end


def default_anneal_iterations(model: CanonicalModel) -> int:
    """Proposals for :func:`anneal` by default, over all chains: 5,000 plus 3,000 per group (161,000
    at 52 groups, about 0.6 s)."""
    return 5_000 + 3_000 * model.num_groups


def anneal(
    model: CanonicalModel,
    items: np.ndarray,
    seed: int = 0,
    *,
    iterations: int | None = None,
    chains: int = CHAINS,
    deadline: float | None = None,
    pair_fraction: float = 0.5,
    objective: Objective | None = None,
) -> SearchResult:
    """Simulated annealing over 1- and 2-group moves: ``chains`` independent chains from ``items``
    share the ``iterations`` proposals; the best assignment each one saw is polished by 2-opt and
    the best of those returned.

    Moves that break a budget are rejected outright. The temperature falls geometrically from a
    value at which a typical uphill move (sampled from the start, ``HOT``) is accepted half the time
    to one at which the smallest is accepted once in 10,000 (``COLD``). Chain ``r`` draws from
    ``(seed, r)``: deterministic given ``seed`` unless ``deadline`` cuts the schedule short (then
    ``timed_out`` is set; later chains are skipped, the first always runs).
    """
    obj = objective or Objective(model)
    iterations = default_anneal_iterations(model) if iterations is None else int(iterations)
    chains = max(int(chains), 1)
    best: SearchResult | None = None
    totals_ = {"proposals": 0, "accepted": 0, "rejected_budget": 0, "two_opt_moves": 0}
    run = 0
    for r in range(chains):
        if r and passed(deadline):
            break
        found = _chain(model, items, np.random.default_rng((seed, r)), iterations // chains, deadline, pair_fraction, obj)
        run += 1
        for key in totals_:
            totals_[key] += found.stats.get(key, 0)
        if best is None or found.objective < best.objective:
            best = found
    assert best is not None
    timed_out = best.timed_out or run < chains or passed(deadline)
    stats = {"seed": seed, "chains": run, **totals_, "t_hot": best.stats.get("t_hot"), "t_cold": best.stats.get("t_cold")}
    return SearchResult(best.items, best.objective, totals_["accepted"] + totals_["two_opt_moves"], totals_["proposals"], timed_out, stats)


def _chain(model: CanonicalModel, items: np.ndarray, rng: np.random.Generator, iterations: int, deadline: float | None, pair_fraction: float, obj: Objective) -> SearchResult:
    """One annealing chain from ``items``; its best assignment polished by 2-opt."""
    state = _State(obj, items)
    movable = np.nonzero(np.diff(model.group_start) > 1)[0]
    best_items, best_value = state.items.copy(), state.value
    if movable.size == 0 or iterations <= 0:
        return SearchResult(best_items, model.items_objective(best_items), 0, 0, False, {})
    proposer = _Proposer(model, state, rng, movable, pair_fraction if movable.size > 1 else 0.0)
    t_hot, t_cold = _temperatures(proposer, obj, iterations)
    ratio = t_cold / t_hot
    accepted = rejected_budget = proposals = 0
    timed_out = False
    for it in range(iterations):
        if it % 1024 == 0 and passed(deadline):
            timed_out = True
            break
        proposals += 1
        move, delta, fits = proposer.propose()
        if not fits:
            rejected_budget += 1
            continue
        temperature = t_hot * ratio ** (it / iterations)
        if delta > 0.0 and proposer.uniform() >= math.exp(-delta / temperature):
            continue
        if state.apply(move, delta):
            proposer.sync()
            accepted += 1
            if state.value < best_value - obj.tol:
                best_items, best_value = state.items.copy(), state.value
    polished = two_opt(model, best_items, deadline=deadline, objective=obj)
    stats = {"proposals": proposals, "accepted": accepted, "rejected_budget": rejected_budget,
             "t_hot": t_hot, "t_cold": t_cold, "two_opt_moves": polished.moves}
    return SearchResult(polished.items, polished.objective, accepted + polished.moves, proposals, timed_out or polished.timed_out, stats)


class _Proposer:
    """Random 1- and 2-group moves from the current state. Scalars live in Python lists and random
    numbers are drawn in batches: per-proposal numpy calls on tiny arrays would dominate the loop."""

    BATCH = 4096

    def __init__(self, model: CanonicalModel, state: _State, rng: np.random.Generator, movable: np.ndarray, pair_fraction: float):
        self.state, self.rng = state, rng
        self.movable, self.pair_fraction = movable.tolist(), pair_fraction
        self.position = {g: p for p, g in enumerate(self.movable)}
        self.start = model.group_start.tolist()
        self.size = np.diff(model.group_start).tolist()
        self.Q = state.obj.Q
        self.rows = range(model.num_budgets)
        self.weights = [row.tolist() for row in model.weights]
        self.limit = state.obj.limit.tolist()
        self.sync()
        self._refill()

    def sync(self) -> None:
        """Take the state's budget load after it accepted a move."""
        self.load = self.state.load.tolist()

    def _refill(self) -> None:
        self.buffer = self.rng.random((self.BATCH, 5)).tolist()
        self.pos = 0

    def _draw(self) -> list[float]:
        if self.pos == self.BATCH:
            self._refill()
        row = self.buffer[self.pos]
        self.pos += 1
        return row

    def uniform(self) -> float:
        return self._draw()[0]

    def _new_item(self, group: int, u: float) -> tuple[int, int]:
        """A random other item of ``group`` and the group's current item."""
        old = int(self.state.items[group])
        size, start = self.size[group], self.start[group]
        return start + (old - start + 1 + int(u * (size - 1))) % size, old

    def propose(self) -> tuple[list[int], float, bool]:
        u = self._draw()
        grad, movable = self.state.grad, self.movable
        a = movable[int(u[1] * len(movable))]
        j, i = self._new_item(a, u[2])
        delta = float(grad[j] - grad[i])
        if u[0] < self.pair_fraction:
            b = movable[(self.position[a] + 1 + int(u[3] * (len(movable) - 1))) % len(movable)]  # any other group
            l, k = self._new_item(b, u[4])
            delta += float(grad[l] - grad[k])
            if self.Q is not None:
                Q = self.Q
                delta += 2.0 * float(Q[j, l] - Q[j, k] - Q[i, l] + Q[i, k])
            moved = (j, i, l, k)
            move = [j, l]
        else:
            moved = (j, i)
            move = [j]
        for r in self.rows:
            w = self.weights[r]
            change = w[j] - w[i] if len(moved) == 2 else (w[j] - w[i]) + (w[l] - w[k])
            if self.load[r] + change > self.limit[r]:
                return move, delta, False
        return move, delta, True


def _temperatures(proposer: _Proposer, obj: Objective, iterations: int) -> tuple[float, float]:
    """Start and end temperature from the uphill deltas of feasible moves sampled at the start
    (``HOT`` and ``COLD``: a quantile of them and the probability of accepting it)."""
    samples = []
    for _ in range(min(500, max(50, iterations // 20))):
        _, delta, fits = proposer.propose()
        if fits and delta > obj.tol:
            samples.append(delta)
    if not samples:  # nothing uphill in reach: any small positive temperature behaves alike
        scale = max(obj.tol, 1e-300)
        return scale, scale * 1e-3
    up = np.array(samples)
    t_hot = float(np.quantile(up, HOT[0])) / -math.log(HOT[1])
    t_cold = min(float(np.quantile(up, COLD[0])) / -math.log(COLD[1]), t_hot)
    return t_hot, max(t_cold, 1e-300)
