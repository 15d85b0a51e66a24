"""A convex (QCR) lower bound for branch-and-bound nodes, second to the split bound of :mod:`.iqp_bound`.

At a node (some groups fixed, some items excluded; :class:`.iqp_bound.NodeView`) the objective left
is ``h x + x^T Q x + constant`` over one item per free group. For any ``d``, ``x_a^2 = x_a`` on
binary points gives the same values with ``Q + diag(d)`` and ``h - d``; on the relaxation's affine
set (``A x = 1``: one-hot rows kept as equalities) that quadratic is convex once ``N^T (Q + diag(d)) N``
is PSD, ``N`` an orthonormal basis of ``null(A)`` (per group, the vectors summing to 0). The node's
own ``d`` follows :func:`mpqopt.reductions.convexify.one_hot_shift`: ``d = t s`` with ``s`` the row
norms of the node's ``Q`` and the least ``t`` (one generalized eigenvalue). No group weights are
needed: they vanish on ``A x = 1``, where every point of the relaxation lies. A node's own ``d`` is
much smaller than the root's restricted to the node (72 x 3, noise 0.3, f = 0.55, the nodes the split
bound could not close: at depth 10 about 0.58 against the root form's 0.41, optimum 0.5948).

The relaxation (``0 <= x <= 1``, one-hot rows, budget rows) is minimized by Frank-Wolfe with exact
line search, the linear minimization being the node's multiple-choice LP
(:meth:`.iqp_bound.NodeView.master`). The bound does not rely on convergence: at every feasible point
``y`` of the relaxation, with ``g`` the gradient there, ``q(x) >= q(y) + g (x - y)`` for every ``x``
of the relaxation (convexity along ``x - y`` in ``null(A)``), whose least value is the LP at ``g``
(or a Lagrangian bound on it, with several budgets). ``N^T (Q + diag(d)) N`` is checked positive
definite by a Cholesky factorization with a margin; where it is not, its smallest eigenvalue ``e <
0`` costs ``2 G |e|`` (``|x - y|^2 <= 2 G`` over ``G`` one-hot rows). Since ``q(y)`` is the objective
of a feasible relaxed point, it bounds the relaxation's optimum from above: once it falls below the
target the node cannot be closed by this bound and the iterations stop (typically after 3-4).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from ..reductions.convexify import null_basis
from .iqp_bound import NodeView

_MARGIN = 1e-9  # relative: the shift's excess over the least t, and the PSD check's margin

_CONTROLLER: list = []  # threadpoolctl's controller, made on first use (None: not installed)
_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def one_blas_thread():
    """A context running BLAS and LAPACK on one thread, where threadpoolctl is installed (a no-op
    otherwise). On these sizes (k ~ 100-200) their threads cost far more than they save once another
    process holds a core: a 140 x 140 eigenvalue took 5-16 ms on 2 threads of a 2-core machine beside
    one busy process, 0.5-0.7 ms on one, a 200 x 200 Cholesky factorization 50-70 ms against 0.17.
    The limit is process-wide: a lock keeps two solves (an abandoned one and the next) from restoring
    each other's setting out of order."""
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
            _CONTROLLER.append(ThreadpoolController())
        except Exception:  # not installed, or no BLAS found: leave the threads as they are
            _CONTROLLER.append(None)
    controller = _CONTROLLER[0]
    if controller is None:
        yield
        return
    with _LIMIT_LOCK, controller.limit(limits=1, user_api="blas"):
        yield


def node_shift(view: NodeView) -> tuple[np.ndarray, float]:
    """The node's diagonal ``d`` (``N^T (Q + diag(d)) N`` PSD, see the module docstring) and the
    penalty its round-off costs the bound (0 when the Cholesky check passes)."""
    Q = view.Q
    k = Q.shape[0]
    N = null_basis(view.sub.group_start)
    if N.shape[1] == 0 or not Q.any():
        return np.zeros(k), 0.0
    S0 = N.T @ (Q @ N)
    S0 = (S0 + S0.T) * 0.5
    s = np.sqrt((Q * Q).sum(axis=1))
    s = np.maximum(s, 1e-3 * s.max())
    M = N.T @ (s[:, None] * N)
    try:
        t = -float(sla.eigh(S0, M, eigvals_only=True, subset_by_index=[0, 0])[0])
    except (np.linalg.LinAlgError, ValueError):
        t = -float(np.linalg.eigvalsh(S0)[0]) / float(s.min())  # a uniform bound on the scaled shift
    scale = float(np.abs(Q).sum(axis=1).max()) + max(t, 0.0) * float(s.max())  # >= the spectral norm of S
    margin = _MARGIN * scale
    d = max(t, 0.0) * (1.0 + _MARGIN) * s + 2.0 * margin
    S = S0 + N.T @ (d[:, None] * N)
    try:
        # positive definite with room to spare: S - margin I = R^T R up to round-off far below margin
        sla.cholesky(S - margin * np.eye(S.shape[0]), lower=False, check_finite=False)
        return d, 0.0
    except np.linalg.LinAlgError:
        low = float(np.linalg.eigvalsh((S + S.T) * 0.5)[0])
        return d, 2.0 * view.sub.num_groups * max(0.0, -low + margin)


@dataclass
class ConvexBound:
    """A node's convex bound and its children's: ``child[i]`` bounds the completions of the node
    that take its item ``i`` (the same linearization, the item's group fixed in the linear problem,
    priced with the LP's budget multiplier)."""

    bound: float
    child: np.ndarray  # (k,) per node item
    iterations: int


def convex_bound(view: NodeView, target: float | None, iterations: int) -> ConvexBound:
    """The node's convex bound (its constant included) and its children's after Frank-Wolfe
    iterations: until the bound reaches ``target``, the relaxation's objective at a feasible point
    falls below it (the bound cannot reach it), or ``iterations`` pass (``target`` None: all of
    them). ``inf`` when no completion fits a budget.

    >>> from mpqopt.synthetic import iqp_problem
    >>> from mpqopt.reductions import canonicalize
    >>> from mpqopt.algorithms.iqp_bound import PairBound
    >>> import mpqopt
    >>> p = iqp_problem(8, 3, seed=0, noise=0.3)
    >>> m = canonicalize(p, p.budgets)
    >>> root = PairBound(m).node(np.full(8, -1), np.ones(24, dtype=bool))
    >>> convex_bound(root, None, 50).bound + m.offset <= mpqopt.solve(p, solver="bruteforce").objective
    True
    """
    with one_blas_thread():
        return _convex_bound(view, target, iterations)


def _convex_bound(view: NodeView, target: float | None, iterations: int) -> ConvexBound:
    sub = view.sub
    k = sub.num_items
    d, penalty = node_shift(view)
    P = view.Q + np.diag(d)
    h = sub.value - d
    constant = view.constant - penalty
    limit = sub.rhs + sub.budget_slack  # what a completion's weights sum to at most
    best, child = -np.inf, np.full(k, -np.inf)
    first = view.master(h)
    if first is None:
        return ConvexBound(np.inf, np.full(k, np.inf), 0)
    y = first[1]
    Py = P @ y
    step = 0
    while step < iterations:
        step += 1
        g = h + 2.0 * Py
        out = view.master(g)
        if out is None:
            return ConvexBound(np.inf, np.full(k, np.inf), step)
        s, mu = out[1], out[2]
        # the linear problem's Lagrangian bound at the LP's multipliers: per group the cheapest
        # priced item; a child swaps its group's cheapest for its own item
        priced = g + mu @ sub.weights if sub.num_budgets else g
        low = np.minimum.reduceat(priced, sub.group_start[:-1])
        value = float(h @ y + y @ Py)  # the relaxation's objective at y (less the constant)
        base = value - float(g @ y) + constant + float(low.sum()) - (float(mu @ limit) if sub.num_budgets else 0.0)
        best = max(best, base)
        np.maximum(child, base + priced - low[sub.item_group], out=child)
        if target is not None and (best >= target or value + constant + penalty < target):
            break
        direction = s - y
        Pd = P @ s - Py
        slope = float(g @ direction)
        if slope >= 0.0:
            break  # y minimizes the relaxation
        curvature = float(direction @ Pd)
        t = 1.0 if curvature <= 0.0 else min(1.0, -slope / (2.0 * curvature))
        y = y + t * direction
        Py = Py + t * Pd
    return ConvexBound(best, child, step)
