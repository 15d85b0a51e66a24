"""The Lagrangian dual of the multiple-choice knapsack: ``max_{lam >= 0} L(lam)``, solved fast.

``L(lam) = sum_g min_{j in g} (value_j + lam @ weights_j) - lam @ rhs`` (see :mod:`.lagrangian`) is
concave and piecewise linear; its maximum equals the LP relaxation bound, and ``weights @ x(lam) -
rhs`` (``x(lam)`` the group-wise minimiser) is a supergradient. Every evaluated ``L(lam)`` is a valid
lower bound on the integer optimum, so the result's ``bound`` is safe even when the search stops early.

Method:

* one budget: an exact one-dimensional search. A bracket ``lo < lam* <= hi`` is kept with the
  minimiser at each end; groups whose choice is the same at both ends keep it over the whole bracket,
  so they are folded into constants and every later step only touches the groups still undecided
  (the classic linear-time idea for the continuous knapsack). Trial points are the Illinois secant
  root of the supergradient while many groups are undecided, then the intersection of the two end
  lines, which lands exactly on the breakpoint ``lam*`` once one is left: the gap closes to zero.
* several budgets: a cutting-plane (Kelley) method with a box trust region; the master problem is an
  LP in ``(lam, t)`` with one row per cut, solved warm by HiGHS. Convergence is *certified*: the
  master's duals mix the cut choices into a fractional assignment; when it meets the budgets, its
  objective is an upper bound on ``max L`` and the gap is checked against it, never against the model.
  Near the end the steps are short, and groups whose minimiser provably cannot change within reach
  of the last full evaluation are summed in advance (``_Screen``), so later steps touch few groups.

Every evaluation is a few vectorized passes over the items, laid out as ``(K, F)`` arrays (item
``k`` of every group in row ``k``); there is no Python loop over groups.

Units: internally each budget row is divided by its right-hand side and the objective is shifted so
every group's best item costs 0, then divided by the total range ``R = sum_g (max_g - min_g)``. The
tolerance is relative: stop when ``upper - bound <= tol * max(bound - L(0), R / F)`` (plus the
round-off of evaluating ``L``) — relative to the part of the bound the budgets create, floored at one
average group's range, so values of 1e-9 or 1e7 and large constant offsets behave alike.

Infeasible budgets (not even a fractional assignment meets them) make ``L`` unbounded: this is proven
by finding ``lam`` with ``L(lam)`` above the largest possible objective, and reported as
``unbounded=True`` with that ``lam`` as the certificate. A budget set exactly at its cheapest total
("0%") that re-summing overshoots in the last bits (within ``heuristics.is_feasible``'s 1e-12 slack)
is raised to that total rather than called infeasible.

>>> import numpy as np, mpqopt
>>> from mpqopt.reductions import canonicalize
>>> p = mpqopt.Problem(["a", "b"], [2, 4, 8], [[1.0, 0.3, 0.0], [2.0, 0.5, 0.0]],
...                    costs={"bits": [[2, 4, 8], [2, 4, 8]]})
>>> r = solve_dual(canonicalize(p, {"bits": 10.0}))
>>> r.converged, round(r.bound, 9), r.lam.round(9).tolist()  # LP: greedy over hull edges
(True, 0.55, [0.125])
>>> r.items.tolist()  # at lam = 0.125 layer b ties W4/W8: the lighter W4 is taken
[1, 4]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..deadline import passed
from ..errors import SolverError
from ..highs_runtime import new_highs
from ..highs_runtime import run as run_highs
from ..reductions import CanonicalModel
from ..reductions.matrix import budget_row_scales
from ..verify import BUDGET_RTOL


@dataclass
class DualResult:
    """Outcome of :func:`solve_dual`, in the model's own units.

    ``bound`` is ``L(lam)``, a valid lower bound on the integer optimum (without ``model.offset``);
    ``upper`` is a proven upper bound on ``max L`` (= the LP relaxation) or ``inf`` when none was
    certified; ``converged`` means ``upper - bound`` met the tolerance. ``items`` minimises the
    Lagrangian at ``lam`` (to within the tolerance), preferring lower relative budget use among ties,
    so at a breakpoint it is the most feasible choice. ``unbounded`` means the budgets cannot be met
    even fractionally; ``lam`` then certifies it (``bound`` exceeds every assignment's objective).
    ``iterations`` counts evaluations of ``L`` (full or screened); ``history`` is the best bound
    after each; ``time_s`` the wall time of the call.
    """

    lam: np.ndarray
    bound: float
    items: np.ndarray
    iterations: int
    converged: bool
    upper: float = np.inf
    unbounded: bool = False
    time_s: float = 0.0
    history: list[float] = field(default_factory=list)

    @property
    def gap(self) -> float:
        return self.upper - self.bound


def solve_dual(model: CanonicalModel, *, tol: float = 1e-9, max_iter: int = 200, time_limit: float | None = None) -> DualResult:
    """Maximise the Lagrangian bound of a separable canonical model over ``lam >= 0``.

    ``tol`` is relative (see the module docstring); ``max_iter`` caps evaluations of ``L``;
    ``time_limit`` (seconds) is checked between evaluations. Returns the best point found; its
    ``bound`` is valid whether or not it ``converged``. Raises ``SolverError`` for a model with a
    pairwise term (the bound would ignore it).
    """
    if model.quadratic is not None:
        raise SolverError("solve_dual needs a separable model: the Lagrangian bound ignores the pairwise term")
    start = time.perf_counter()
    deadline = None if time_limit is None else start + time_limit
    rel = _Relaxation(model)
    if model.num_groups == 0:  # every decision forced: L(lam) = -lam @ rhs, unbounded if overspent
        over = rel.rhs < 0
        mu = over.astype(np.float64)
        bound = -float(mu @ rel.rhs)
        out = _Outcome(mu, bound, np.zeros(0, dtype=np.int64), 0, not over.any(), upper=np.inf if over.any() else bound, unbounded=bool(over.any()))
    elif model.num_budgets == 0:
        arg = rel.slots.tiebroken(np.zeros(0))
        out = _Outcome(np.zeros(0), 0.0, arg, 1, True, upper=0.0)
    elif model.num_budgets == 1:
        out = _search_1d(rel, tol, max_iter, deadline)
    else:
        out = _bundle(rel, tol, max_iter, deadline)
    return rel.result(out, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------- internals


@dataclass
class _Outcome:
    """A solve in internal units (see ``_Relaxation``); ``slot`` is the chosen slot of each group."""

    mu: np.ndarray
    bound: float
    slot: np.ndarray
    iterations: int
    converged: bool
    upper: float = np.inf
    unbounded: bool = False
    history: list[float] = field(default_factory=list)


class _Slots:
    """Groups as columns of ``(K, F)`` arrays: row ``k`` holds every group's ``k``-th item.

    Transposed and padded so that each step is a handful of contiguous length-``F`` vector
    operations (``np.minimum.reduceat`` over a million short groups is ~10x slower). Pads cost
    ``+inf`` and weigh 0, so they are never chosen. All costs are >= 0 (values are shifted to a
    group minimum of 0, weights and multipliers are >= 0), which the argmin trick below relies on.
    """

    def __init__(self, value: np.ndarray, weight: np.ndarray, padded: bool):
        self.value = value  # (K, F)
        self.weight = weight  # (m, K, F)
        self.padded = padded
        K = value.shape[0]
        self._low_bits = (1 << max(K - 1, 1).bit_length()) - 1
        self._tags = np.arange(K, dtype=np.int64)[:, None]
        self._buf: np.ndarray | None = None
        self._tmp: np.ndarray | None = None

    @property
    def num_groups(self) -> int:
        return self.value.shape[1]

    def subset(self, cols: np.ndarray) -> "_Slots":
        return _Slots(np.ascontiguousarray(self.value[:, cols]), np.ascontiguousarray(self.weight[:, :, cols]), self.padded)

    def costs(self, mu: np.ndarray) -> np.ndarray:
        """``value + mu @ weight`` per slot, in a reused buffer (fresh large arrays page-fault)."""
        if self._buf is None:
            self._buf = np.empty_like(self.value)
            self._tmp = np.empty_like(self.value)
        c, tmp = self._buf, self._tmp
        c[...] = self.value
        for i in np.flatnonzero(mu):
            np.multiply(self.weight[i], mu[i], out=tmp)
            c += tmp
        return c

    def _argmin(self, c: np.ndarray) -> np.ndarray:
        """Lowest slot per group whose cost is minimal to within a few ulps; overwrites ``c``.

        Non-negative floats order like their int64 bit patterns, so writing the slot number into
        the lowest mantissa bits turns argmin into one ``minimum.reduce`` (a masked-assignment
        loop is ~3x slower at a million groups).
        """
        ci = c.view(np.int64)
        np.bitwise_and(ci, ~self._low_bits, out=ci)
        np.bitwise_or(ci, self._tags, out=ci)
        return np.minimum.reduce(ci, axis=0) & self._low_bits

    def evaluate(self, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The minimising slot per group at ``mu`` and its ``(value, weight)``, see :meth:`pick`."""
        slot = self._argmin(self.costs(mu))
        return (slot,) + self.pick(slot)

    def pick(self, slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(value, weight)`` of the given slot in each group: shapes ``(F,)`` and ``(m, F)``."""
        flat = slot * self.num_groups + np.arange(self.num_groups)
        value = self.value.reshape(-1)[flat]
        weight = np.stack([w.reshape(-1)[flat] for w in self.weight]) if self.weight.shape[0] else np.zeros((0, flat.size))
        return value, weight

    def tiebroken(self, mu: np.ndarray, rtol: float = 1e-12) -> np.ndarray:
        """Minimising slot per group, ties (within ``rtol``) going to the lowest total relative
        budget use, then the lowest value: the most feasible choice at a breakpoint."""
        c = self.costs(mu)
        near = c <= np.minimum.reduce(c, axis=0) * (1.0 + rtol)
        tied = np.flatnonzero(np.count_nonzero(near, axis=0) > 1)
        slot = self._argmin(c)
        if tied.size:
            near = near[:, tied]
            use = self.weight[:, :, tied].sum(axis=0)
            slot[tied] = _lexmin(np.where(near, use, np.inf), np.where(near, self.value[:, tied], np.inf))
        return slot

    def least_weight(self) -> np.ndarray:
        """``(m,)``: each budget's smallest possible total (every group at its lightest item)."""
        pad = np.isinf(self.value) if self.padded else False
        return np.array([np.minimum.reduce(np.where(pad, np.inf, w), axis=0).sum() for w in self.weight])

    def lightest(self) -> np.ndarray:
        """Per group, the slot of least total relative budget use, then least value (for one
        budget: the choice ``x(lam)`` settles on as ``lam -> inf``)."""
        use = self.weight.sum(axis=0)
        if self.padded:
            use[np.isinf(self.value)] = np.inf
        return _lexmin(use, self.value)


def _lexmin(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Per column, the row minimising ``primary`` then ``secondary`` (then the lowest row), exactly."""
    hit = primary == np.minimum.reduce(primary, axis=0)
    slot = np.argmax(hit, axis=0)
    tied = np.flatnonzero(np.count_nonzero(hit, axis=0) > 1)
    if tied.size:
        slot[tied] = np.argmin(np.where(hit[:, tied], secondary[:, tied], np.inf), axis=0)
    return slot


class _Relaxation:
    """The model in internal units: budget rows divided by ``row_scale`` (their rhs), values shifted
    per group to a minimum of 0 and divided by the total range ``R``; ``lam = mu * R / row_scale``."""

    def __init__(self, model: CanonicalModel):
        self.model = model
        F, m = model.num_groups, model.num_budgets
        K = int(np.diff(model.group_start).max(initial=1))
        self.row_scale = budget_row_scales(model) if m else np.ones(0)
        padded = model.num_items != F * K
        if not padded:  # every group has K items: a transpose, no scatter
            value = model.value.reshape(F, K).T.copy()  # a copy even when F or K is 1: scaled in place below
            weight = np.empty((m, K, F))
            np.divide(model.weights.reshape(m, F, K).transpose(0, 2, 1), self.row_scale[:, None, None], out=weight)
        else:
            pos = np.arange(model.num_items) - model.group_start[model.item_group]
            value = np.full((K, F), np.inf)
            value[pos, model.item_group] = model.value
            weight = np.zeros((m, K, F))
            weight[:, pos, model.item_group] = model.weights / self.row_scale[:, None]
        self.shift = np.minimum.reduce(value, axis=0) if F else np.zeros(0)
        top = np.maximum.reduce(np.where(np.isinf(value), -np.inf, value) if padded else value, axis=0) if F else np.zeros(0)
        spread = float((top - self.shift).sum())
        self.scale = spread if spread > 0 else 1.0
        value -= self.shift
        value /= self.scale
        self.slots = _Slots(value, weight, padded)
        self.rhs = model.rhs / self.row_scale if m else np.zeros(0)
        if m:
            # A budget set exactly at its cheapest total ("0%") can differ from our re-summed cheapest
            # total in the last bits; exact arithmetic would call it infeasible. Such budgets (within
            # the slack ``heuristics.is_feasible`` allows) are raised to the cheapest total: this
            # only relaxes, so every bound stays valid. (A blanket 1e-12 slack on every budget moved
            # LP bounds of budgets at "0%" by 4e-8 relative: a tiny slack buys fractional swaps.)
            least = self.slots.least_weight()
            slack = BUDGET_RTOL * np.abs(model.budgets) / self.row_scale  # round-off of the scaled sums, exact rows too: relaxing keeps bounds valid
            self.rhs = np.where((least > self.rhs) & (least <= self.rhs + slack), least, self.rhs)
        self.num_groups = F
        # L <= f(x) <= this for every fractional assignment meeting the budgets
        self.ceiling = spread / self.scale

    def threshold(self, tol: float, bound: float, mu: np.ndarray | float = 0.0) -> float:
        """Absolute stopping gap in internal units (``L(0) = 0`` here), plus the round-off of
        evaluating ``L`` at ``mu`` so that ``tol = 0`` still terminates."""
        noise = 1e-16 * (1.0 + 2.0 * float(np.sum(mu)))
        return tol * max(bound, 1.0 / max(self.num_groups, 1)) + noise

    def items(self, slot: np.ndarray) -> np.ndarray:
        """Model item index of the chosen slot of every group."""
        return self.model.group_start[:-1] + slot

    def result(self, out: _Outcome, elapsed: float) -> DualResult:
        lam = out.mu * self.scale / self.row_scale if self.model.num_budgets else np.zeros(0)
        lam = np.maximum(lam, 0.0)
        offset = float(self.shift.sum())
        upper = out.upper * self.scale + offset if np.isfinite(out.upper) else np.inf
        bound = out.bound * self.scale + offset
        return DualResult(
            lam=lam,
            bound=bound,
            items=self.items(out.slot),
            iterations=out.iterations,
            converged=out.converged,
            upper=max(upper, bound) if np.isfinite(upper) else upper,
            unbounded=out.unbounded,
            time_s=elapsed,
            history=[h * self.scale + offset for h in out.history],
        )


def _unbounded(rel: _Relaxation, i: int, excess: float, history: list[float]) -> _Outcome:
    """Budget ``i`` is overspent by ``excess`` (internal units) even at each group's lightest item:
    ``L(t e_i) >= t * excess`` (values are >= 0 internally), so ``t`` below lifts ``L`` above every
    assignment's objective, which proves that no assignment, even fractional, meets the budgets."""
    mu = np.zeros(rel.rhs.size)
    mu[i] = 2.0 * (rel.ceiling + 1.0) / excess
    slot, v, w = rel.slots.evaluate(mu)
    value = float(v.sum() + mu @ (w.sum(axis=1) - rel.rhs))
    return _Outcome(mu, value, slot, len(history) + 1, False, unbounded=True, history=history + [max(value, history[-1])])


# ------------------------------------------------------------------------------- one budget


def _search_1d(rel: _Relaxation, tol: float, max_iter: int, deadline: float | None) -> _Outcome:
    slots, rhs = rel.slots, float(rel.rhs[0])
    zero = np.zeros(1)
    low_slot = slots.tiebroken(zero)
    v_lo, w_lo = slots.pick(low_slot)
    g_lo = float(w_lo.sum()) - rhs
    bound = float(v_lo.sum())  # L(0)
    history = [bound]
    if g_lo <= 0:  # the unconstrained optimum meets the budget: lam = 0 is optimal, gap 0
        return _Outcome(zero, bound, low_slot, 1, True, upper=bound, history=history)
    high_slot = slots.lightest()
    v_hi, w_hi = slots.pick(high_slot)
    g_hi = float(w_hi.sum()) - rhs
    if g_hi > 0:  # even the lightest choice overspends: L grows linearly without limit
        return _unbounded(rel, 0, g_hi, history)

    # Bracket [lo, hi] (hi = inf: the lightest choice) with the minimiser at each end. A group whose
    # choice agrees at both ends keeps it over the whole bracket, so it is folded into the constants
    # (v_fix, w_fix); ``active`` is a superset of the undecided groups, compacted when it halves.
    ends = _Ends(slots, np.arange(rel.num_groups), low_slot, high_slot, (v_lo, w_lo[0]), (v_hi, w_hi[0]))
    lo, hi = 0.0, np.inf
    best_mu, best = 0.0, bound
    iterations, converged, upper = 2, False, np.inf
    repeated, last_side, shrink = 0, -1, [1.0, 1.0]  # Illinois: damp the end that keeps being retained
    while True:
        dv, dw = ends.differences()  # over undecided groups only: no cancellation
        mu_k = min(max(dv / dw, lo), hi) if dw > 0 else lo  # where the two end lines meet
        gap = g_lo * (mu_k - lo) if hi == np.inf else min(g_lo * (mu_k - lo), -g_hi * (hi - mu_k))
        upper = best + max(gap, 0.0)
        if gap <= rel.threshold(tol, best, hi if hi < np.inf else lo):
            converged = True
            break
        if iterations >= max_iter or passed(deadline):
            break
        # Secant (Illinois) on the supergradient while many groups are undecided: fast on the nearly
        # smooth large-scale L. Then the line intersection, which is exact once one breakpoint is left.
        trial = mu_k
        if hi < np.inf and ends.size > 64:
            a, b = g_lo * shrink[0], g_hi * shrink[1]
            secant = lo + a * (hi - lo) / (a - b)
            if lo < secant < hi:
                trial = secant
        slot, v, w = ends.sub.evaluate(np.array([trial]))
        iterations += 1
        w_total = ends.w_fix + float(w.sum())
        g = w_total - rhs
        value = ends.v_fix + float(v.sum()) + trial * g
        if value > best:
            best, best_mu = value, trial
        history.append(best)
        side = 0 if g > 0 else 1
        if side == 0:
            lo, g_lo = trial, g
        else:
            hi, g_hi = trial, g
        ends.replace(side, slot, (v, w[0]))
        repeated, last_side = (repeated + 1, side) if side == last_side else (1, side)
        shrink = [1.0, 1.0]
        shrink[1 - side] = 0.5 ** (repeated - 1)  # the end retained again and again
        if g == 0:  # zero is a supergradient: trial is optimal
            best, best_mu, upper, converged = value, trial, value, True
            break
        ends.settle()
    # Items: the high end's choice meets the budget; use it when it minimises L at best_mu to within
    # the tolerance (always so at a closed breakpoint), else the tie-broken minimiser at best_mu.
    mu = np.array([best_mu])
    final = ends.final(side=1)
    high_value = ends.line_value(1, best_mu) - best_mu * rhs
    if high_value - best > rel.threshold(tol, best, best_mu):
        final = slots.tiebroken(mu)
    return _Outcome(mu, best, final, iterations, converged, upper=upper, history=history)


class _Ends:
    """The chosen slot at both ends of a one-budget bracket, restricted to the undecided groups."""

    def __init__(self, slots: _Slots, active: np.ndarray, low: np.ndarray, high: np.ndarray, low_vw, high_vw):
        self.chosen = low.copy()  # final choice of settled groups
        self.active = active
        self.slot = [low, high]
        self.vw = [low_vw, high_vw]  # (value, weight) of each end's choice, per active group
        self.v_fix = self.w_fix = 0.0
        self.sub = slots
        self.settle()

    @property
    def size(self) -> int:
        return self.active.size

    def differences(self) -> tuple[float, float]:
        (vl, wl), (vh, wh) = self.vw
        return float((vh - vl).sum()), float((wl - wh).sum())

    def replace(self, side: int, slot: np.ndarray, vw) -> None:
        self.slot[side], self.vw[side] = slot, vw

    def settle(self) -> None:
        """Fold groups whose two ends agree into the constants; compact once at most half remain."""
        keep = self.slot[0] != self.slot[1]
        kept = int(np.count_nonzero(keep))
        if kept > self.active.size // 2:
            return
        drop = ~keep
        v, w = self.vw[0]
        self.v_fix += float(v[drop].sum())
        self.w_fix += float(w[drop].sum())
        self.chosen[self.active[drop]] = self.slot[0][drop]
        self.active = self.active[keep]
        self.slot = [x[keep] for x in self.slot]
        self.vw = [(v[keep], w[keep]) for v, w in self.vw]
        self.sub = self.sub.subset(keep)

    def line_value(self, side: int, mu: float) -> float:
        v, w = self.vw[side]
        return self.v_fix + mu * self.w_fix + float((v + mu * w).sum())

    def final(self, side: int) -> np.ndarray:
        chosen = self.chosen.copy()
        chosen[self.active] = self.slot[side]
        return chosen


# --------------------------------------------------------------------------- several budgets


class _Master:
    """``max t`` s.t. ``t <= e_k + g_k @ d`` for every cut, ``d`` in a box, with ``mu = center + d``.

    Cuts are stored relative to the trust-region center (``e_k`` = the cut's excess over ``L(center)``,
    >= 0). HiGHS's tolerances are absolute (1e-10 at best), so the LP it sees is divided by
    ``unit``, the scale of the stopping gap; it is rebuilt when that scale grows.
    """

    def __init__(self, m: int):
        import highspy

        self.hs, self.m = highspy, m
        self.g = np.zeros((0, m))
        self.e = np.zeros(0)
        self.unit = 0.0
        self._cols = np.arange(1, m + 1, dtype=np.int32)
        self._row_index = np.arange(m + 1, dtype=np.int32)

    def _build(self, unit: float) -> None:
        hs = self.hs
        h = new_highs()
        h.setOptionValue("primal_feasibility_tolerance", 1e-10)
        h.setOptionValue("dual_feasibility_tolerance", 1e-10)
        h.changeObjectiveSense(hs.ObjSense.kMaximize)
        none_i, none_v = np.zeros(0, dtype=np.int32), np.zeros(0)
        h.addCol(1.0, -hs.kHighsInf, hs.kHighsInf, 0, none_i, none_v)
        for _ in range(self.m):
            h.addCol(0.0, -1.0, 1.0, 0, none_i, none_v)
        self.h, self.unit = h, unit
        k = self.e.size
        if k:
            values = np.concatenate([np.ones((k, 1)), -self.g / unit], axis=1).ravel()
            h.addRows(k, np.full(k, -hs.kHighsInf), self.e / unit, values.size, np.arange(0, values.size, self.m + 1, dtype=np.int32), np.tile(self._row_index, k), values)

    def add(self, g: np.ndarray, e: float) -> None:
        self.g = np.vstack([self.g, g])
        self.e = np.append(self.e, e)
        if self.unit > 0:
            self.h.addRow(-self.hs.kHighsInf, e / self.unit, self.m + 1, self._row_index, np.concatenate([[1.0], -g / self.unit]))

    def recenter(self, step: np.ndarray, rise: float) -> None:
        """The center moved by ``step`` and ``L`` rose by ``rise``: re-express every cut."""
        self.e = np.maximum(self.e + self.g @ step - rise, 0.0)  # cuts over-estimate L: e >= 0
        if self.unit > 0:
            k = self.e.size
            if hasattr(self.h, "changeRowsBounds"):
                self.h.changeRowsBounds(k, np.arange(k, dtype=np.int32), np.full(k, -self.hs.kHighsInf), self.e / self.unit)
            else:  # highspy < 1.13 binds only the one-row form
                for i, upper in enumerate(self.e / self.unit):
                    self.h.changeRowBounds(i, -self.hs.kHighsInf, float(upper))

    def solve(self, lower: np.ndarray, upper: np.ndarray, unit: float) -> tuple[np.ndarray, float, np.ndarray] | None:
        """``(d, predicted rise, cut weights)`` with the LP in units of about ``unit``; None if HiGHS fails."""
        if not self.unit or unit > 4.0 * self.unit:
            self._build(unit)
        self.h.changeColsBounds(self.m, self._cols, lower, upper)
        run_highs(self.h)
        if self.h.getModelStatus() != self.hs.HighsModelStatus.kOptimal:
            return None
        sol = self.h.getSolution()
        x = np.asarray(sol.col_value)
        alpha = np.abs(np.asarray(sol.row_dual))
        return x[1:], float(x[0]) * self.unit, alpha


class _Screen:
    """Evaluates ``L`` near a screening point ``p`` while touching only the groups that may change.

    Group ``f``'s minimiser ``j`` at ``p`` stays a minimiser for every ``mu`` with
    ``|mu - p|_inf <= safe_f = min_k rc_k(p) / |w_k - w_j|_1`` (``rc`` the reduced cost at ``p``),
    because ``c_k(mu) - c_j(mu) >= rc_k(p) - |mu - p|_inf |w_k - w_j|_1``. Settled groups are summed
    as a total minus the unsettled part; only the unsettled ones are evaluated. Near convergence the
    trust region is small and almost every group is settled.
    """

    def __init__(self, slots: _Slots, rhs: np.ndarray):
        self.slots, self.rhs = slots, rhs
        self.point: np.ndarray | None = None

    def _unsettled(self, reach: float) -> int:
        return self.slots.num_groups if self.point is None else int(np.count_nonzero(self.safe < reach))

    def evaluate(self, mu: np.ndarray, step: float) -> tuple[float, np.ndarray]:
        """``(L(mu), supergradient)`` for a trial ``step`` (inf-norm) away from the current center."""
        F = self.slots.num_groups
        if self.point is not None:
            reach = float(np.abs(mu - self.point).max())
            unsettled = self.safe < reach
            count = int(np.count_nonzero(unsettled))
            # stale: the screening point lies far outside the trust region and a fresh screen there
            # would leave far fewer groups to evaluate in the coming iterations
            stale = count > F // 32 and count > 4 * self._unsettled(2.0 * step)
            if count <= F // 4 and not stale:
                cols = np.flatnonzero(unsettled)
                _, v, w = self.slots.subset(cols).evaluate(mu)
                w_total = self.w_all - self.w_chosen[:, cols].sum(axis=1) + w.sum(axis=1)
                g = w_total - self.rhs
                v_total = self.v_all - float(self.v_chosen[cols].sum()) + float(v.sum())
                return v_total + float(mu @ g), g
        if self.point is None or self._unsettled(2.0 * step) <= F // 4:
            return self._screen(mu)  # steps are short enough for screening to pay
        _, v, w = self.slots.evaluate(mu)
        g = w.sum(axis=1) - self.rhs
        return float(v.sum() + mu @ g), g

    def _screen(self, mu: np.ndarray) -> tuple[float, np.ndarray]:
        slots = self.slots
        c = slots.costs(mu)
        reduced = c - np.minimum.reduce(c, axis=0)
        slot = slots._argmin(c)
        v, w = slots.pick(slot)
        spread = np.zeros_like(reduced)
        for i in range(w.shape[0]):
            spread += np.abs(slots.weight[i] - w[i])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = reduced / spread  # 0/0 (the minimiser, identical items) is NaN: ignored by fmin
        safe = np.fmin.reduce(ratio, axis=0)
        self.safe = np.where(np.isnan(safe), np.inf, safe * (1 - 1e-9))  # a margin for round-off
        self.point, self.v_chosen, self.w_chosen = mu.copy(), v, w
        self.v_all, self.w_all = float(v.sum()), w.sum(axis=1)
        g = self.w_all - self.rhs
        return self.v_all + float(mu @ g), g


def _bundle(rel: _Relaxation, tol: float, max_iter: int, deadline: float | None) -> _Outcome:
    slots, rhs, m = rel.slots, rel.rhs, rel.rhs.size
    center = np.zeros(m)
    slot = slots.tiebroken(center)
    v, w = slots.pick(slot)
    g = w.sum(axis=1) - rhs
    best = float(v.sum())  # L(0)
    history = [best]
    if (g <= 0).all():  # the unconstrained optimum meets every budget
        return _Outcome(center, best, slot, 1, True, upper=best, history=history)
    lightest = slots.least_weight() - rhs
    if (lightest > 0).any():  # one budget alone cannot be met: L grows along that axis
        i = int(np.argmax(lightest))
        return _unbounded(rel, i, lightest[i], history)

    master = _Master(m)
    master.add(g, 0.0)
    screen = _Screen(slots, rhs)
    radius = 1.0  # in internal units mu is O(1): L spans [0, 1] and supergradients are O(1)
    iterations, converged, upper, previous, repeats = 1, False, np.inf, None, 0
    while iterations < max_iter and not passed(deadline):
        solved = master.solve(np.maximum(-radius, -center), np.full(m, radius), rel.threshold(1e-3, best))
        if solved is None:
            break
        d, rise, alpha = solved
        certified = _certificate(master, center, alpha)
        if certified is not None:
            upper = min(upper, best + certified)
        if upper - best <= rel.threshold(tol, best, center):
            converged = True
            break
        trial = np.maximum(center + d, 0.0)
        repeats = repeats + 1 if previous is not None and np.array_equal(trial, previous) else 0
        if repeats >= 2:  # the master keeps proposing the same point: round-off limits progress
            break
        previous = trial
        value, tg = screen.evaluate(trial, float(np.abs(trial - center).max()))
        iterations += 1
        excess = max(value + float(tg @ (center - trial)) - best, 0.0)  # the new cut at the center
        master.add(tg, excess)
        margin = max(rel.ceiling, 1e-9 * (rel.ceiling + float(trial @ (2 * np.abs(rhs) + tg))))
        if value > rel.ceiling + margin:  # clearly above every feasible objective: infeasible
            return _Outcome(trial, value, slots.tiebroken(trial), iterations, False, unbounded=True, history=history + [value])
        step_norm = float(np.abs(d).max(initial=0.0))
        if value > best and value - best >= 0.1 * max(rise, 0.0):  # serious step: move the center
            master.recenter(trial - center, value - best)
            if value - best >= 0.5 * rise and step_norm >= 0.99 * radius:
                radius *= 4.0
            center, best = trial, value
        elif value < best:
            radius = max(0.5 * radius if step_norm >= 0.99 * radius else radius, 1e-12)
        history.append(best)
    slot = slots.tiebroken(center)
    return _Outcome(center, best, slot, iterations, converged, upper=upper, history=history)


def _certificate(master: _Master, center: np.ndarray, alpha: np.ndarray) -> float | None:
    """A proven bound on ``max L - L(center)`` from the master's cut weights, or None.

    Weights ``alpha`` (normalised to sum 1) mix the cut choices into a fractional assignment whose
    budget excess is ``s = alpha @ g``. If it meets every budget (``s <= 0``), weak duality gives
    ``max L <= f(mix) = L(center) + alpha @ e - center @ s``.
    """
    total = alpha.sum()
    if not total > 0:
        return None
    alpha = alpha / total
    s = alpha @ master.g
    if (s > 1e-12).any():
        return None
    return float(alpha @ master.e - center @ np.minimum(s, 0.0))
