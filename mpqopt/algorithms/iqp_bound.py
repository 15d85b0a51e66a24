"""Lower bounds for the cross-layer (IQP) objective from per-layer minimum pairwise contributions.

The canonical objective is ``value @ x + x^T Q x`` with ``Q`` symmetric and zero inside a group. Split
every pair term between its two ends: any ``D`` with ``D + D^T = 2 Q`` (``D = Q + U``, ``U``
antisymmetric) gives ``x^T Q x = sum_a x_a sum_b D[a, b] x_b``. With one item per group, item ``a``'s
share is at least ``sum_h min_{b in h} D[a, b]`` over the other groups ``h``, so::

    f(x) >= sum_a x_a (value_a + sum_{h != g(a)} min_{b in h} D[a, b])

a separable multiple-choice problem (the Gilmore-Lawler bound when ``U = 0``) whose LP relaxation is
solved exactly (one budget: convex hulls; several: Lagrangian multipliers ``mu``). Maximizing over the
split by subgradient ascent reaches the LP bound of the one-hot RLT linearization (the split is that
LP's dual), at numpy speed.

Budget products (the RLT products of a budget row with ``x_a`` and ``1 - x_a``) strengthen it: for
multipliers ``lam[a]`` (any sign; ``kappa = max(-lam, 0)``), on every feasible one-hot ``x``::

    f(x) >= f(x) + sum_a lam[a]^+ x_a (w x - limit) + sum_a kappa[a] (1 - x_a)(w x - limit)

which is the same separable form with item a's partner costs ``D[a, b] + lam[a] w[b]``, a constant
``-lam[a] (limit - w[a])`` per item and ``kappa_tot (w x - limit)`` overall (``optimize(...,
budget_products=True)``, the default). The RLT LP of 72 x 3 (noise 0.3, middle budget) rises from
0.229 to 0.290 with both product families; the ascent's root bound from 0.219 to 0.283.

A branch-and-bound node (some groups fixed, some items excluded) is a smaller problem of the same
form: :meth:`PairBound.node` folds fixed groups into linear costs and a constant. Its split can be
re-optimized locally, and :meth:`NodeView.probe` gives, in one ``O(n^2)`` pass, the bound of every
child "group g takes item a": it drives branching and fixing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from ..reductions import CanonicalModel


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Frobenius inner product without a temporary and without BLAS (whose threads cost more than
    they save on these sizes when the machine is busy: np.vdot made the ascent 2x slower here)."""
    return float(np.einsum("ij,ij->", a, b))


def _min_last_axis(a: np.ndarray, op=np.minimum) -> np.ndarray:
    """``a.min(axis=-1)`` for a short last axis (a few options): numpy reduces a length-3 inner axis
    several times slower than it takes the elementwise minimum of three slices (``op=np.maximum``:
    the maximum)."""
    out = a[..., 0].copy()
    for j in range(1, a.shape[-1]):
        op(out, a[..., j], out=out)
    return out


def _argmin_last_axis(a: np.ndarray) -> np.ndarray:
    """``a.argmin(axis=-1)`` for a short last axis (first minimum on ties, as numpy)."""
    best = a[..., 0].copy()
    index = np.zeros(best.shape, dtype=np.int64)
    for j in range(1, a.shape[-1]):
        better = a[..., j] < best
        index[better] = j
        np.minimum(best, a[..., j], out=best)
    return index


def _submatrix(a: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``a[np.ix_(rows, cols)]``, the same C-ordered array, in a quarter of the time (149 vs 38 us at
    k = 186). Not ``a[rows][:, cols]``: as fast, but Fortran-ordered, which changes the order (and
    round-off) of later sums."""
    return a[rows].take(cols, axis=1)


@dataclass(frozen=True)
class Split:
    """A node's optimized split over its items (children start from it)."""

    items: np.ndarray
    D: np.ndarray
    mu: np.ndarray
    lam: np.ndarray  # (k, m) per-item budget multipliers (the budget's RLT products), >= 0


@dataclass
class Probe:
    """Child bounds of a node: ``child[i]`` if the node's item ``i`` is chosen for its group."""

    child: np.ndarray  # (k,) per node item; inf when the child cannot fit a budget
    node_bound: float  # max over groups of the weakest child: every completion is in some child
    master_items: np.ndarray | None  # (G,) the relaxation's choice per node group (node item indices); None if no completion fits


class NodeView:
    """The problem left at a node: free groups over their allowed items, pair terms with fixed groups
    folded into ``sub.value``, fixed costs in ``constant`` and off ``sub.rhs``."""

    def __init__(self, sub: CanonicalModel, items: np.ndarray, Q: np.ndarray, D: np.ndarray, constant: float, lam: np.ndarray | None = None):
        self.sub, self.items, self.Q, self.D, self.constant = sub, items, Q, D, constant
        k, G = sub.num_items, sub.num_groups
        self.lam = np.zeros((k, sub.num_budgets)) if lam is None else lam
        self._limit = sub.rhs + sub.budget_slack  # (m,) what a feasible completion's weights sum to at most
        self._headroom = self._limit[None, :] - sub.weights.T  # (k, m) what is left of it beside each item
        self.own = np.zeros((k, G), dtype=bool)
        self.own[np.arange(k), sub.item_group] = True
        sizes = np.diff(sub.group_start)
        slot = np.arange(int(sizes.max(initial=1)))[None, :]
        self.pad = np.where(slot < sizes[:, None], sub.group_start[:-1, None] + slot, k)  # (G, K)
        self.mu = np.zeros(sub.num_budgets)
        self._W: np.ndarray | None = None  # padded budget weights, built on first use
        self._pairs: tuple | None = None  # their pairwise comparisons
        self._group_rows = np.arange(G)
        self._weights_pad: np.ndarray | None = None  # (m, k + 1) budget weights and a zero column, built on first use
        self._holes: np.ndarray | None = None  # (G, K) padding slots of unequal groups, built on first use

    def _blocks(self, D: np.ndarray) -> np.ndarray:
        """(k, G, K): D's columns by group, padded with inf (a free reshape when groups are equal)."""
        k, G = self.sub.num_items, self.sub.num_groups
        if self.pad.size == k:
            return D.reshape(k, G, k // G)
        if self._holes is None:
            self._holes = self.pad == k
            self._slots = np.where(self._holes, 0, self.pad).ravel()
        # one gather, then inf in the holes (concatenating an inf column first copied D once more;
        # D.take(..., axis=1) took twice as long as this indexing at k = 166)
        blocks = D[:, self._slots].reshape(k, G, -1)
        blocks[:, self._holes] = np.inf
        return blocks

    def _effective(self, D: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """``D[a, b] + sum_j lam[a, j] w_j[b]``: item a's partner costs priced by its budget multipliers."""
        if not lam.any():
            return D
        # outer products, not ``lam @ weights``: the same values (one budget: single products) without
        # BLAS's call and threads on a (k, m) x (m, k) product
        out = np.multiply.outer(lam[:, 0], self.sub.weights[0])
        out += D
        for j in range(1, lam.shape[1]):
            out += np.multiply.outer(lam[:, j], self.sub.weights[j])
        return out

    def _own(self, lam: np.ndarray) -> tuple[np.ndarray, float]:
        """The multipliers' linear terms per item and constant: ``-sum_j lam[a, j] (limit_j - w_j[a])``,
        and for the negative ones (``kappa = -lam``, the products ``(1 - x_a)(limit - w x) >= 0``)
        ``kappa_tot (w x - limit)``."""
        k = self.sub.num_items
        if not lam.any():
            return np.zeros(k), 0.0
        own = -(lam * self._headroom).sum(axis=1)
        kappa = np.maximum(-lam, 0.0).sum(axis=0)  # (m,)
        return own + kappa @ self.sub.weights, -float(kappa @ self._limit)

    def _shares(self, blocks: np.ndarray) -> np.ndarray:
        """(k, G): each item's cheapest partner cost in every group; 0 in its own."""
        shares = _min_last_axis(blocks)
        shares[self.own] = 0.0
        return shares

    def _argmin_per_group(self, costs: np.ndarray) -> np.ndarray:
        order = np.lexsort((costs, self.sub.item_group))
        return order[self.sub.group_start[:-1]]

    def master(self, h: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
        """A lower bound on min ``h @ x`` over one item per group and the budgets, with the relaxed
        solution and multipliers: (bound, x, mu); None when a single budget cannot be met. With one
        budget it is the LP optimum; with several, the Lagrangian bound at ``self.mu``."""
        sub = self.sub
        if sub.num_budgets == 1:
            return self._master_one_budget(h)
        costs = h + (self.mu @ sub.weights if sub.num_budgets else 0.0)
        x = np.zeros(sub.num_items)
        x[self._argmin_per_group(costs)] = 1.0
        bound = float(np.minimum.reduceat(costs, sub.group_start[:-1]).sum() - (self.mu @ sub.rhs if sub.num_budgets else 0.0))
        return bound + self.constant, x, self.mu.copy()

    def _master_one_budget(self, h: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
        """The LP of a single-budget multiple-choice problem through its dual: ``phi(mu) = sum_g min
        (h + mu w) - mu rhs`` is concave and piecewise linear with breakpoints among the groups'
        pairwise slopes (:meth:`_dual_multiplier` finds its maximizer ``mu*``), and mixing the lightest and heaviest
        minimizers at ``mu*`` so that the budget is used exactly gives the LP's x."""
        sub = self.sub
        if self._W is None:
            real = self.pad < sub.num_items
            self._W = np.where(real, np.append(sub.weights[0], 0.0)[self.pad], 0.0)  # (G, K)
            self._rhs = float(sub.rhs[0] + sub.budget_slack[0])
            self._feasible = float(np.where(real, self._W, np.inf).min(axis=1).sum()) <= self._rhs
        if not self._feasible:
            return None
        W, rhs = self._W, self._rhs
        V = h.reshape(W.shape) if self.pad.size == sub.num_items else np.append(h, np.inf)[self.pad]
        mu = self._dual_multiplier(V, W, rhs)
        rows = self._group_rows
        cost = V + mu * W
        low = _min_last_axis(cost)
        light, heavy = self._minimizer(cost, low, heavy=False), self._minimizer(cost, low, heavy=True)
        w_light, w_heavy = W[rows, light].sum(), W[rows, heavy].sum()
        theta = 0.0 if mu == 0.0 or w_heavy <= w_light else min(max((rhs - w_light) / (w_heavy - w_light), 0.0), 1.0)
        x = np.zeros(sub.num_items)
        x[self.pad[rows, light]] += 1.0 - theta  # one item per group: no index repeats within a call
        x[self.pad[rows, heavy]] += theta
        bound = float(low.sum() - mu * rhs)
        return bound + self.constant, x, np.array([mu])

    def _dual_multiplier(self, V: np.ndarray, W: np.ndarray, rhs: float) -> float:
        """The maximizer of ``phi``: the multiplier at which the total weight of the minimizers of
        ``V + mu W`` falls to ``rhs``. Each item minimizes its group on an interval ``[lo, hi]`` of
        ``mu`` (from its slopes to heavier and lighter items); walking those intervals in order, the
        group's weight drops at each ``hi``, and the budget's break is the first drop that fits."""
        if self._pairs is None:  # the weights' part, fixed for this node
            real = self.pad < self.sub.num_items
            K = W.shape[1]
            same_w = (W[:, None, :] == W[:, :, None]) & ~np.eye(K, dtype=bool) & real[:, None, :] & real[:, :, None]
            self._pairs = (real, W[:, :, None] - W[:, None, :], W[:, None, :] < W[:, :, None], W[:, None, :] > W[:, :, None],
                           same_w if same_w.any() else None, np.arange(K)[None, :] < np.arange(K)[:, None])
        real, denom, lighter, heavier, same_w, earlier = self._pairs
        with np.errstate(divide="ignore", invalid="ignore"):
            # s[g, j, i]: the mu at which items j and i of group g cost the same
            s = (V[:, None, :] - V[:, :, None]) / denom
        hi = _min_last_axis(np.where(lighter, s, np.inf))  # i lighter than j
        lo = np.maximum(_min_last_axis(np.where(heavier, s, -np.inf), np.maximum), 0.0)
        active = real & (lo < hi) & np.isfinite(V)
        if same_w is not None:  # of equally heavy items only the cheapest (first on ties) can be chosen
            beaten = same_w & ((V[:, None, :] < V[:, :, None]) | ((V[:, None, :] == V[:, :, None]) & earlier))
            active &= ~beaten.any(axis=2)
        key = np.where(active, lo, np.inf)
        order = np.argsort(key, axis=1, kind="stable")
        rows = self._group_rows[:, None]
        starts, weights = key[rows, order], W[rows, order]
        total = float(weights[:, 0].sum())  # the minimizers just above mu = 0
        if total <= rhs:
            return 0.0
        step = np.isfinite(starts[:, 1:])  # each later interval starts with a weight drop
        at, drop = starts[:, 1:][step], (weights[:, :-1] - weights[:, 1:])[step]
        by_mu = np.argsort(at, kind="stable")
        fits = np.nonzero(total - np.cumsum(drop[by_mu]) <= rhs)[0]
        return float(at[by_mu][fits[0]]) if fits.size else float(at.max(initial=0.0))

    def _minimizer(self, cost: np.ndarray, low: np.ndarray, heavy: bool) -> np.ndarray:
        """Per group, the slot minimizing ``cost = V + mu W`` (``low``: its minimum per group);
        near-ties go to the heaviest or lightest."""
        low = low[:, None]
        tie = cost <= low + 1e-12 * (np.abs(low) + 1.0)
        return np.where(tie, self._W if heavy else -self._W, -np.inf).argmax(axis=1)

    def split(self) -> Split:
        return Split(self.items, self.D, self.mu.copy(), self.lam.copy())

    def bound(self) -> float:
        return self._value(self.D, self.lam)

    def _value(self, D: np.ndarray, lam: np.ndarray) -> float:
        out = self._evaluate(D, lam)
        return np.inf if out is None else out[0]

    def _evaluate(self, D: np.ndarray, lam: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray] | None:
        """The bound at split ``D`` and multipliers ``lam`` with the relaxed choice, its LP
        multipliers and the partner-cost blocks it came from (for the subgradient); None when no
        completion fits a budget."""
        blocks = self._blocks(self._effective(D, lam))
        own, shift = self._own(lam)
        out = self.master(self.sub.value + own + self._shares(blocks).sum(axis=1))
        if out is None:
            return None
        bound, x, mu = out
        return bound + shift, x, mu, blocks

    def optimize(self, target: float, iterations: int, deadline: float | None = None, tol: float = 0.0, budget_products: bool = True) -> float:
        """Subgradient ascent on this node's split, the items' budget multipliers ``lam`` (unless
        ``budget_products`` is False) and ``mu`` with several budgets, Polyak steps towards
        ``target``; keeps the best in ``self.D``, ``self.lam``, ``self.mu`` and returns its bound."""
        sub = self.sub
        D, lam = self.D, self.lam.copy()  # D is replaced, never written in place: no copy needed
        use_lam = budget_products and sub.num_budgets > 0
        if use_lam:
            # per budget, the scale of a row's weight deviation: the multipliers' steps in these units
            # (0.2: the best root bounds of 0.01 ... 10 at 72 x 3 and 200 x 4)
            ranges = np.maximum.reduceat(sub.weights, sub.group_start[:-1], axis=1) - np.minimum.reduceat(sub.weights, sub.group_start[:-1], axis=1)
            lam_scale = np.maximum(0.2 * np.sqrt((ranges ** 2).sum(axis=1)), 1e-300)
        first = None  # the first step's evaluation, when this check has made it already
        if lam.any():
            without, inherited = self._evaluate(D, np.zeros_like(lam)), self._evaluate(D, lam)
            if (np.inf if without is None else without[0]) >= (np.inf if inherited is None else inherited[0]):
                # inherited multipliers fitted a parent whose budget was used up: where this node's is
                # not, they cost (their terms are < 0 on slack budgets); restart them from 0
                lam[:] = 0.0
                first = without
            else:
                first = inherited
        best, best_D, best_mu, best_lam = -np.inf, D, self.mu.copy(), lam.copy()
        # full Polyak steps first (bnb, 72 x 3 noise 0.3 f = 0.75: 775 nodes 12.6 s at 1.0; from 0.5, 669 nodes but
        # 15.3 s, the nodes' ascents closing later; from 0.3, 837 nodes; from 2.0, over 3,700)
        theta, stall = 1.0, 0
        previous, previous_nu, previous_norm = None, None, 0.0
        for step_number in range(iterations):
            out = first if step_number == 0 and first is not None else self._evaluate(D, lam)
            if out is None:
                best = np.inf  # no completion fits a budget
                break
            bound, x, mu, blocks = out
            if bound > best:  # D is never changed in place (each step makes a new one): no copy
                best, best_D, best_mu, best_lam, stall = bound, D, mu, lam.copy(), 0
            else:
                stall += 1
                if stall >= 10:
                    theta, stall = theta / 2, 0
            if target - best <= tol or theta < 1e-6 or not np.isfinite(target - bound) or (deadline is not None and time.perf_counter() > deadline):
                break
            Gsub, rows, partner, keep = self._subgradient(x, blocks)
            # lam[a, j]: x_a (w_j[a] + the partners' w_j - limit_j), in units of lam_scale
            gnu = self._products_subgradient(x, rows, partner, keep, lam) / lam_scale if use_lam else None
            gg = float(_dot(Gsub, Gsub))
            nn = float(_dot(gnu, gnu)) if use_lam else 0.0
            if previous is not None:
                # Camerini-Fratta-Maffioli deflection: damp the zig-zag between two subgradients
                inner = float(_dot(Gsub, previous)) + (float(_dot(gnu, previous_nu)) if use_lam else 0.0)
                if inner < 0.0:
                    beta = 1.5 * inner / previous_norm
                    previous *= -beta  # in place (it is not used again): Gsub - beta * previous, one temporary less
                    Gsub += previous
                    if use_lam:
                        gnu -= beta * previous_nu
                        gg, nn = float(_dot(Gsub, Gsub)), float(_dot(gnu, gnu))
                    else:
                        gg += beta * beta * previous_norm - 2.0 * beta * inner
            previous, previous_nu, previous_norm = Gsub, gnu, gg + nn
            gmu = sub.weights @ x - sub.rhs if sub.num_budgets > 1 else np.zeros(0)
            norm = 0.5 * gg + nn + float(gmu @ gmu)
            if norm <= 0.0:
                break  # the relaxation's choice is consistent: its bound is that choice's objective
            step = theta * (target - bound) / norm
            D = D + step * Gsub
            if use_lam:
                moved = lam + step * gnu / lam_scale
                lam = np.where(lam * moved < 0.0, 0.0, moved)  # stop at 0 when crossing: the two sides differ
            if sub.num_budgets > 1:
                self.mu = np.maximum(self.mu + step * gmu, 0.0)
        self.D = best_D
        self.mu = best_mu
        self.lam = best_lam
        return best

    def _subgradient(self, x: np.ndarray, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The split's subgradient ``y[a, b] - y[b, a]``, ``y[a, b] = x_a`` where b is a's cheapest
        partner in b's group, with the rows of the chosen items, their partners (r, G) and the mask of
        the partners outside a's own group. Only those rows of y are non-zero (r (G - 1) entries of
        k^2): scattered straight into the result, instead of building y dense and subtracting its
        transpose (two passes over k^2 less)."""
        k, G = self.sub.num_items, self.sub.num_groups
        rows = np.nonzero(x)[0]
        partner = self.pad[np.arange(G)[None, :], _argmin_last_axis(blocks[rows])]  # (r, G)
        keep = ~self.own[rows]
        # in a's own group take a itself as the "partner": y[a, a] - y[a, a] = 0, with no mask to apply
        a = np.repeat(rows, G)
        b = np.where(keep, partner, rows[:, None]).reshape(-1)
        y = np.repeat(x[rows], G)
        out = np.zeros((k, k))
        flat = out.reshape(-1)
        flat[a * k + b] = y  # each (a, b) once: a's partner per group is unique
        flat[b * k + a] -= y  # so each (b, a) once too; where y[b, a] is also set this gives y[b, a] - y[a, b]
        return out, rows, partner, keep

    def _products_subgradient(self, x: np.ndarray, rows: np.ndarray, partner: np.ndarray, keep: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """(k, m): the budget multipliers' subgradient, ``x_a (w_j[a] + the partners' w_j - limit_j)``
        where ``lam[a, j] > 0``, less the budget's excess ``w_j x - limit_j`` where it is < 0 (the
        products with ``1 - x_a``), the better side where it is 0 (see :meth:`_subgradient`)."""
        sub = self.sub
        if self._weights_pad is None:  # a zero column: the own group's "partner" weighs nothing
            self._weights_pad = np.append(sub.weights, np.zeros((sub.num_budgets, 1)), axis=1)
        partner_w = self._weights_pad[:, np.where(keep, partner, sub.num_items)].sum(axis=2)  # (m, r)
        up = np.zeros_like(lam)  # the derivative where lam > 0 (the products x_a (limit - w x) >= 0)
        up[rows] = x[rows, None] * (sub.weights[:, rows] + partner_w - self._limit[:, None]).T
        down = up - (sub.weights @ x - self._limit)[None, :]  # where lam < 0: kappa_tot's share too
        return np.where(lam > 0.0, up, np.where(lam < 0.0, down, np.where(up > 0.0, up, np.minimum(down, 0.0))))

    def probe(self, extra_mus: np.ndarray | None = None) -> Probe:
        """Bounds of every child "group of item c takes c", each the best over the node's LP
        multiplier and ``extra_mus`` (rows)."""
        sub = self.sub
        k = sub.num_items
        lamW = self.lam @ sub.weights if self.lam.any() else None  # (k, k): item a's multiplier prices of b
        blocks = self._blocks(self.D if lamW is None else self.D + lamW)
        r = self._shares(blocks)  # (k, G)
        own, shift = self._own(self.lam)
        own_row = -(self.lam * self._headroom).sum(axis=1) if lamW is not None else 0.0  # own minus the shared part
        base = sub.value + own + r.sum(axis=1)
        out = self.master(base)
        if out is None:
            return Probe(np.full(k, np.inf), np.inf, None)
        mus = [out[2]] + ([] if extra_mus is None else list(np.atleast_2d(extra_mus)))
        group = sub.item_group
        best = np.full(k, -np.inf)
        master_items = None
        for mu in mus:
            lag = mu @ sub.weights if sub.num_budgets else np.zeros(k)
            H = base + lag
            if master_items is None:
                master_items = self._argmin_per_group(H)
            # X[c, a] = H[a] - r[a, g(c)] + 2 Q[a, c] (+ a's multiplier price of c): item a's cost once
            # c's group is fixed to c
            X = H[None, :] - r[:, group].T + 2.0 * self.Q
            if lamW is not None:
                X += lamW.T
            mins = _min_last_axis(self._blocks(X))  # (k, G); minimum.reduceat along rows took 5x longer
            # c itself: its pairs now sit with the others (its multipliers are dropped, as they may be:
            # they only add terms <= 0 on feasible completions; the negative ones' shared part stays)
            mins[np.arange(k), group] = sub.value + lag + (own - own_row if lamW is not None else 0.0)
            bound = mins.sum(axis=1) - (mu @ sub.rhs if sub.num_budgets else 0.0) + self.constant + shift
            best = np.maximum(best, bound)
        if sub.num_budgets:
            # children whose lightest completion still breaks a budget
            min_w = np.minimum.reduceat(sub.weights, sub.group_start[:-1], axis=1)  # (m, G)
            light = min_w.sum(axis=1)[:, None] - min_w[:, group] + sub.weights
            best[(light > (sub.rhs + sub.budget_slack)[:, None]).any(axis=0)] = np.inf
        node_bound = float(np.minimum.reduceat(best, sub.group_start[:-1]).max())
        return Probe(best, node_bound, master_items)


class PairBound:
    """The split bound of a canonical model (see the module docstring); holds the root split.

    >>> from mpqopt.synthetic import iqp_problem
    >>> from mpqopt.reductions import canonicalize
    >>> p = iqp_problem(8, 3, seed=0)
    >>> pb = PairBound(canonicalize(p, p.budgets))
    >>> root = pb.node(np.full(8, -1), np.ones(24, dtype=bool))
    >>> before = root.bound()
    >>> root.optimize(target=before + 1.0, iterations=50) >= before
    True
    """

    def __init__(self, model: CanonicalModel):
        self.model = model
        n = model.num_items
        self.Q = model.quadratic.toarray() if model.quadratic is not None else np.zeros((n, n))
        self.D = self.Q.copy()  # the split in use: D + D^T = 2 Q
        self.mu = np.zeros(model.num_budgets)
        self.lam = np.zeros((n, model.num_budgets))

    def node(self, choice: np.ndarray, allowed: np.ndarray, inherit: Split | None = None) -> NodeView:
        """The subproblem with groups ``choice >= 0`` fixed to those items and only ``allowed`` items;
        its split starts from ``inherit`` (a parent's, over a superset of its items) or the root's."""
        m = self.model
        fixed_items = choice[choice >= 0]
        keep = allowed & (choice[m.item_group] < 0)
        items = np.nonzero(keep)[0]
        free = np.nonzero(choice < 0)[0]
        renumber = np.full(m.num_groups, -1, dtype=np.int64)
        renumber[free] = np.arange(free.size)
        group = renumber[m.item_group[items]]
        counts = np.bincount(group, minlength=free.size)
        group_start = np.zeros(free.size + 1, dtype=np.int64)
        np.cumsum(counts, out=group_start[1:])
        value = m.value[items] + 2.0 * _submatrix(self.Q, items, fixed_items).sum(axis=1)
        constant = float(m.value[fixed_items].sum() + _submatrix(self.Q, fixed_items, fixed_items).sum())
        sub = replace(
            m,
            free_groups=m.free_groups[free],
            group_start=group_start,
            item_group=group,
            item_option=m.item_option[items],
            value=value,
            weights=m.weights[:, items],
            rhs=m.rhs - m.weights[:, fixed_items].sum(axis=1),
            quadratic=None,
        )
        source = inherit if inherit is not None else Split(np.arange(m.num_items), self.D, self.mu, self.lam)
        at = np.searchsorted(source.items, items)
        view = NodeView(sub, items, _submatrix(self.Q, items, items), _submatrix(source.D, at, at), constant, source.lam[at].copy())
        view.mu = source.mu.copy()
        return view

    def adopt(self, view: NodeView) -> None:
        """Keep a root view's optimized split (and multipliers) for every later node."""
        if view.items.size != self.model.num_items:
            raise ValueError("adopt() takes the root view")
        self.D, self.mu, self.lam = view.D.copy(), view.mu.copy(), view.lam.copy()


def lower_bound(model: CanonicalModel, target: float, iterations: int = 200, deadline: float | None = None) -> float:
    """A valid lower bound on the canonical objective: the split bound after ``iterations`` ascent
    steps towards ``target`` (a known objective, e.g. a heuristic's). For heuristics' gaps.

    >>> from mpqopt.synthetic import iqp_problem
    >>> from mpqopt.reductions import canonicalize
    >>> p = iqp_problem(8, 3, seed=0)
    >>> m = canonicalize(p, p.budgets)
    >>> import mpqopt
    >>> lower_bound(m, target=1.0) + m.offset <= mpqopt.solve(p, solver="bruteforce").objective
    True
    """
    root = PairBound(model).node(np.full(model.num_groups, -1, dtype=np.int64), np.ones(model.num_items, dtype=bool))
    return root.optimize(target, iterations, deadline)
