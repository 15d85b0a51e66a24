"""Convex forms of the cross-layer objective, for solvers that need (or prefer) a convex quadratic.

The canonical objective is ``f(x) = value @ x + x^T Q x`` (``Q = model.quadratic``: symmetric, zero
inside every group) over binary ``x`` that pick one item per group (``A x = 1``, ``A`` the groups x
items incidence matrix) and meet the budget rows. ``Q`` is indefinite in general. Two identities
hold at every feasible point, so adding their terms changes nothing there:

* ``x_a^2 = x_a`` (binary): add ``diag(d)`` to ``Q`` and subtract ``d`` from the linear term;
* ``A x = 1``: add ``lam_g (sum_{a in g} x_a - 1)^2`` per group: ``A^T diag(lam) A`` to the quadratic,
  ``-2 A^T lam`` to the linear term and ``sum(lam)`` to the constant.

So ``P = Q + diag(d) + A^T diag(lam) A``, ``c = value - d - 2 A^T lam``, ``constant = sum(lam)`` give
``f`` exactly on every feasible point, and a convex objective once ``P`` is PSD:

* ``mineig`` (:func:`min_eigenvalue_shift`): ``d = -lambda_min(Q)`` on every item, ``lam = 0``.
* ``onehot`` (:func:`one_hot_shift`): with ``N`` an orthonormal basis of ``null(A)`` (per group, the
  vectors summing to 0) only ``S = N^T (Q + diag(d)) N`` must be PSD, because ``lam`` takes care of the
  rest: in the orthonormal basis ``[N, U]`` (``U`` the normalized group indicators)
  ``P = [[S, B], [B^T, C + diag(lam_g k_g)]]`` with ``B = N^T M U``, ``C = U^T M U``, ``M = Q + diag(d)``,
  ``k_g`` the group sizes; for ``S`` positive definite ``P`` is PSD iff the Schur complement
  ``C + diag(lam_g k_g) - B^T S^-1 B`` is, which ``lam_g = mu / k_g``, ``mu = lambda_max(B^T S^-1 B - C)``
  achieves. By Cauchy interlacing ``lambda_min(N^T Q N) >= lambda_min(Q)``: never a larger uniform
  shift than ``mineig``. Per item, ``d = t s`` with ``s`` the row norms of ``Q`` and the least ``t``
  (the pencil ``(N^T Q N, N^T diag(s) N)``) replaces the uniform shift when its total is smaller:
  coarse options err more, so their rows are larger (on 52 x 3 CLADO-shaped problems the total drops
  2.8-5.4x and the relaxation bound rises from -5.97 to 0.448 against an optimum of 0.518; row sums,
  row maxima and other powers of the norm did worse). A greedy pass lowering each ``d_a`` by half
  of its rank-one limit ``1 / (n_a^T S^-1 n_a)`` cut the total by another 3-4 % but left the bound
  unchanged and doubled ``lam``, so it is not used. ``S`` keeps a margin, since ``mu`` grows like
  ``|B|^2 / margin``: 1e-3 of ``|Q|`` trades a 0.1 % larger shift for quadratic coefficients within
  ~1e3 of ``|Q|`` (never more than interlacing leaves, so never a larger shift than ``mineig``).
* ``psd`` (:func:`psd_projection`): CLADO's approximation, *not exact*: ``M = Q + diag(value)`` (its
  proxy matrix holds the single-layer terms on the diagonal) with negative eigenvalues clipped to 0.

The ``lam`` terms vanish on the one-hot plane, so the continuous relaxation (:func:`relaxation_bound`)
only loses ``sum_a d_a (x_a - x_a^2)`` to the shift: the smaller ``d``, the tighter the bound.

>>> from mpqopt.synthetic import iqp_problem
>>> from mpqopt.reductions import canonicalize
>>> model = canonicalize(iqp_problem(6, seed=0), iqp_problem(6, seed=0).budgets)
>>> uniform, onehot = min_eigenvalue_shift(model), one_hot_shift(model)
>>> onehot.exact, onehot.shift_total <= uniform.shift_total, onehot.min_eigenvalue_after >= 0
(True, True, True)
>>> items = model.group_start[:-1]  # the first item of every group
>>> abs(onehot.objective(items) - model.items_objective(items)) < 1e-9
True
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..errors import SolverError
from ..highs_runtime import solve_relaxation
from .canonical import CanonicalModel
from .matrix import csc_arrays

METHODS = ("mineig", "onehot", "psd")
# relative to |Q|: uniform shifts stay clear of eigvalsh's round-off (~n eps |Q|), and the one-hot
# form's margin never drops below it (its group weights grow like 1 / margin)
SAFETY = 1e-6
ONEHOT_MARGIN = 1e-3  # relative to |Q|: how definite S stays in the one-hot form (see the docstring)
PSD_RTOL = 1e-10  # an eigenvalue above -PSD_RTOL * |P| counts as PSD (eigvalsh's own error is ~1e-13)


def _diags_array(values) -> sp.dia_array:
    """``scipy.sparse.diags_array(values)`` (scipy >= 1.11), built from ``diags`` on older scipy."""
    if hasattr(sp, "diags_array"):
        return sp.diags_array(values)
    return sp.dia_array(sp.diags(np.asarray(values, dtype=float)))


@dataclass
class Convexified:
    """A (convex) objective ``linear @ x + x^T quadratic x + constant`` replacing the canonical one.

    ``exact`` means it equals the canonical objective (without ``model.offset``) on every one-hot
    binary point; ``diagonal`` (``d``) and ``group_weight`` (``lam``) are the terms added (see the
    module docstring). ``shift_total`` is ``sum(d)`` for the exact forms and the total magnitude of
    the clipped eigenvalues for ``psd``.
    """

    quadratic: np.ndarray | sp.csr_array  # P (n x n), PSD
    linear: np.ndarray  # c (n,)
    constant: float
    method: str
    exact: bool
    min_eigenvalue_before: float  # of Q (exact forms) or of Q + diag(value) (psd)
    min_eigenvalue_after: float  # of P
    shift_total: float
    diagonal: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    group_weight: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    note: str = ""

    def objective(self, items: np.ndarray) -> float:
        """``c @ x + x^T P x + constant`` at the one-hot point choosing ``items`` (one per group)."""
        items = np.asarray(items, dtype=np.int64)
        block = self.quadratic[np.ix_(items, items)] if isinstance(self.quadratic, np.ndarray) else self.quadratic[items][:, items]
        return float(self.linear[items].sum() + block.sum() + self.constant)


# ------------------------------------------------------------------------------------ helpers
def _dense_quadratic(model: CanonicalModel) -> np.ndarray:
    n = model.num_items
    if model.quadratic is None:
        return np.zeros((n, n))
    q = model.quadratic
    dense = q.toarray() if sp.issparse(q) else np.array(q, dtype=np.float64)
    return (dense + dense.T) * 0.5  # symmetric by construction; this only removes round-off


def _sparse_quadratic(model: CanonicalModel) -> sp.csr_array:
    n = model.num_items
    return sp.csr_array((n, n)) if model.quadratic is None else sp.csr_array(model.quadratic)


def _group_sizes(model: CanonicalModel) -> np.ndarray:
    return np.diff(model.group_start)


def _incidence(model: CanonicalModel) -> sp.csr_array:
    """``A`` (groups x items): row g has a 1 on every item of group g."""
    n = model.num_items
    return sp.csr_array((np.ones(n), (model.item_group, np.arange(n))), shape=(model.num_groups, n))


_GROUP_BASES: dict[int, np.ndarray] = {}


def _group_null_basis(size: int) -> np.ndarray:
    """(size, size - 1): an orthonormal basis of the vectors of length ``size`` summing to 0 (cached)."""
    if size not in _GROUP_BASES:
        q, _ = np.linalg.qr(np.column_stack([np.ones(size), np.eye(size)[:, : size - 1]]))
        _GROUP_BASES[size] = np.ascontiguousarray(q[:, 1:])  # orthogonal to the all-ones column
    return _GROUP_BASES[size]


def null_basis(group_start: np.ndarray) -> np.ndarray:
    """Dense orthonormal basis ``N`` (k, k - G) of ``null(A)``, block diagonal over the groups: per
    group of size s, s - 1 vectors summing to 0 (all groups of one size placed at once)."""
    sizes = np.diff(group_start)
    k = int(group_start[-1])
    N = np.zeros((k, k - sizes.size))
    first_col = np.cumsum(sizes - 1) - (sizes - 1)  # each group's first column
    for size in np.unique(sizes).tolist():
        if size > 1:
            groups = np.nonzero(sizes == size)[0]
            rows = group_start[groups][:, None, None] + np.arange(size)[None, :, None]
            cols = first_col[groups][:, None, None] + np.arange(size - 1)[None, None, :]
            N[rows, cols] = _group_null_basis(size)[None]
    return N


def _null_basis(model: CanonicalModel) -> sp.csr_array:
    """:func:`null_basis` of the model's groups, sparse."""
    return sp.csr_array(null_basis(model.group_start))


def _group_blocks(model: CanonicalModel, lam: np.ndarray) -> sp.csr_array:
    """``A^T diag(lam) A``: ``lam_g`` on every pair of items of group g."""
    A = _incidence(model)
    return sp.csr_array(A.T @ _diags_array(lam) @ A)


def _weighted_gram(N: sp.csr_array, w: np.ndarray) -> np.ndarray:
    """``N^T diag(w) N`` as a dense matrix."""
    return np.asarray((N.T @ _diags_array(w) @ N).toarray())


def _spectral_scale(eigenvalues: np.ndarray) -> float:
    return float(np.abs(eigenvalues).max(initial=0.0))


def _check_psd(P: np.ndarray | sp.csr_array, what: str) -> float:
    """Smallest eigenvalue of ``P``; SolverError if it is clearly negative."""
    dense = P.toarray() if sp.issparse(P) else P
    eig = np.linalg.eigvalsh(dense) if dense.size else np.zeros(1)
    if eig[0] < -PSD_RTOL * max(_spectral_scale(eig), 1e-300):
        raise SolverError(f"{what}: the convexified matrix is not PSD (smallest eigenvalue {eig[0]:.3g})")
    return float(eig[0])


# ------------------------------------------------------------------------------------ methods
def min_eigenvalue_shift(model: CanonicalModel) -> Convexified:
    """Uniform diagonal shift ``d = max(0, -lambda_min(Q))`` (plus a tiny margin): exact and convex.

    >>> from mpqopt.synthetic import iqp_problem
    >>> from mpqopt.reductions import canonicalize
    >>> p = iqp_problem(5, seed=1); conv = min_eigenvalue_shift(canonicalize(p, p.budgets))
    >>> conv.method, conv.exact, conv.min_eigenvalue_before < 0 <= conv.min_eigenvalue_after
    ('mineig', True, True)
    """
    Q = _dense_quadratic(model)
    eig = np.linalg.eigvalsh(Q) if Q.size else np.zeros(1)
    scale = _spectral_scale(eig)
    shift = max(0.0, SAFETY * scale - float(eig[0])) if scale > 0 else 0.0
    d = np.full(model.num_items, shift)
    P = sp.csr_array(_sparse_quadratic(model) + _diags_array(d))
    after = _check_psd(P, "mineig")
    return Convexified(P, model.value - d, 0.0, "mineig", True, float(eig[0]), after, float(d.sum()), d, np.zeros(model.num_groups),
                       note=f"uniform diagonal shift {shift:.6g} on {model.num_items} items")


def one_hot_shift(model: CanonicalModel, *, refine: bool = True) -> Convexified:
    """Diagonal shift that only convexifies the one-hot plane, plus ``lam_g (sum_g x - 1)^2`` terms
    that make ``P`` PSD on the whole space (see the module docstring): exact, and a smaller shift
    than :func:`min_eigenvalue_shift`. ``refine`` allows the per-item (row-norm scaled) shift;
    without it the shift is uniform.

    >>> from mpqopt.synthetic import iqp_problem
    >>> from mpqopt.reductions import canonicalize
    >>> p = iqp_problem(5, seed=1); m = canonicalize(p, p.budgets)
    >>> one_hot_shift(m).shift_total < min_eigenvalue_shift(m).shift_total
    True
    """
    n, F = model.num_items, model.num_groups
    Q = _dense_quadratic(model)
    eig_q = np.linalg.eigvalsh(Q) if Q.size else np.zeros(1)
    scale = _spectral_scale(eig_q)
    if scale == 0.0:
        return Convexified(sp.csr_array((n, n)), model.value.copy(), 0.0, "onehot", True, 0.0, 0.0, 0.0, np.zeros(n), np.zeros(F), note="no quadratic term")
    N = _null_basis(model)
    QN = np.asarray((N.T @ Q).T)  # Q N (Q symmetric), (n, r)
    S0 = np.asarray(N.T @ QN)
    S0 = (S0 + S0.T) * 0.5
    low = float(np.linalg.eigvalsh(S0)[0])
    # never above mineig's shift: the margin is at most what interlacing leaves between the two
    margin = min(ONEHOT_MARGIN * scale, low - float(eig_q[0]) + SAFETY * scale)
    d = np.full(n, max(0.0, margin - low))
    how = "uniform"
    scaled = _scaled_shift(Q, N, S0, margin) if refine else None
    if scaled is not None and scaled.sum() < d.sum():
        d, how = scaled, "row-norm scaled"
    S = S0 + _weighted_gram(N, d)
    mu = _schur_weight(Q, d, N, S, model, margin)
    sizes = _group_sizes(model).astype(np.float64)
    for _ in range(30):
        lam = mu / sizes
        P = sp.csr_array(_sparse_quadratic(model) + _diags_array(d) + _group_blocks(model, lam))
        dense = P.toarray()
        eig_p = np.linalg.eigvalsh(dense)
        if eig_p[0] >= -PSD_RTOL * _spectral_scale(eig_p):
            break
        mu = 2.0 * mu + margin  # round-off in the Schur complement: the eigenvalue check decides
    else:
        raise SolverError("onehot: could not make the convexified matrix PSD")
    c = model.value - d - 2.0 * lam[model.item_group]
    note = f"{how} shift on the one-hot plane (total {d.sum():.6g}), group weights up to {lam.max(initial=0.0):.6g}"
    return Convexified(P, c, float(lam.sum()), "onehot", True, float(eig_q[0]), float(eig_p[0]), float(d.sum()), d, lam, note=note)


def psd_projection(model: CanonicalModel) -> Convexified:
    """CLADO's approximation: ``M = Q + diag(value)`` with its negative eigenvalues clipped to 0,
    no linear term. *Not exact*: the objective changes, so no bound on the original one follows.

    >>> from mpqopt.synthetic import iqp_problem
    >>> from mpqopt.reductions import canonicalize
    >>> p = iqp_problem(5, seed=1, noise=0.5); conv = psd_projection(canonicalize(p, p.budgets))
    >>> conv.exact, conv.min_eigenvalue_after > -1e-12
    (False, True)
    """
    M = _dense_quadratic(model) + np.diag(model.value)
    w, V = np.linalg.eigh(M)
    clipped = np.maximum(w, 0.0)
    P = (V * clipped) @ V.T
    P = (P + P.T) * 0.5
    removed = float(-w[w < 0].sum())
    after = float(np.linalg.eigvalsh(P)[0])
    note = f"PSD projection (CLADO): {int((w < 0).sum())} negative eigenvalues clipped (total {removed:.6g}); the objective is approximate"
    return Convexified(P, np.zeros(model.num_items), 0.0, "psd", False, float(w[0]), after, removed, np.zeros(model.num_items), np.zeros(model.num_groups), note=note)


def convexify(model: CanonicalModel, method: str = "onehot") -> Convexified:
    """The convex form ``method`` (``"mineig"``, ``"onehot"`` or ``"psd"``) of the model's objective.

    >>> from mpqopt.synthetic import iqp_problem
    >>> from mpqopt.reductions import canonicalize
    >>> p = iqp_problem(4, seed=0); convexify(canonicalize(p, p.budgets), "mineig").method
    'mineig'
    """
    if method == "mineig":
        return min_eigenvalue_shift(model)
    if method == "onehot":
        return one_hot_shift(model)
    if method == "psd":
        return psd_projection(model)
    raise SolverError(f"unknown convexification {method!r}; use one of {', '.join(METHODS)}")


def _scaled_shift(Q: np.ndarray, N: sp.csr_array, S0: np.ndarray, margin: float) -> np.ndarray | None:
    """``d = t s`` with ``s`` the row norms of ``Q`` (floored) and the least ``t`` keeping
    ``N^T (Q + diag d) N >= margin I``: coarse options err more, so their rows and shifts are larger."""
    s = np.sqrt((Q * Q).sum(axis=1))
    if not s.any():
        return None
    s = np.maximum(s, 1e-3 * s.max())
    metric = _weighted_gram(N, s)
    try:
        t = -float(sla.eigh(S0 - margin * np.eye(S0.shape[0]), metric, eigvals_only=True, subset_by_index=[0, 0])[0])
    except (np.linalg.LinAlgError, ValueError):
        return None
    return max(t, 0.0) * (1.0 + 1e-9) * s


def _schur_weight(Q: np.ndarray, d: np.ndarray, N: sp.csr_array, S: np.ndarray, model: CanonicalModel, margin: float) -> float:
    """``mu`` with ``C + mu I - B^T S^-1 B >= margin I`` (see the module docstring)."""
    sizes = _group_sizes(model).astype(np.float64)
    A = _incidence(model)
    U = sp.csr_array(A.T @ _diags_array(1.0 / np.sqrt(sizes)))  # (n, F) orthonormal
    MU = np.asarray((U.T @ Q).T) + d[:, None] * U.toarray()  # (Q + diag d) U
    B = np.asarray(N.T @ MU)
    C = np.asarray(U.T @ MU)
    X = sla.cho_solve(sla.cho_factor((S + S.T) * 0.5), B)
    T = B.T @ X - C
    top = float(np.linalg.eigvalsh((T + T.T) * 0.5)[-1]) if T.size else 0.0
    return max(top, 0.0) * (1.0 + 1e-6) + margin


# ------------------------------------------------------------------------------------ bound
_DEFAULT_QP_SECONDS = 60.0


def relaxation_bound(model: CanonicalModel, conv: Convexified, time_limit: float | None = None) -> float | None:
    """Lower bound on the canonical objective (without ``model.offset``) from the convex continuous
    relaxation ``min c x + x^T P x + constant`` over ``0 <= x <= 1``, the one-hot rows and the budget
    rows, solved by HiGHS as a convex QP. None for an inexact form (``psd``) or when HiGHS fails.

    The QP's reported optimum is not itself a bound (solver tolerances, time limits), so the bound is
    taken from convexity at HiGHS's point ``y``: ``f(x) >= f(y) + g^T (x - y)``, ``g = c + 2 P y``, for
    every ``x`` in the relaxation, whose least value is one LP (exact for any ``y``). ``P`` is checked
    PSD first (HiGHS does not check reliably); a tiny negative eigenvalue ``e`` is paid for with
    ``2 F |e|`` (``|x - y|^2 <= 2 F`` on the one-hot rows).

    >>> from mpqopt.synthetic import iqp_problem
    >>> from mpqopt.reductions import canonicalize
    >>> p = iqp_problem(6, seed=0); m = canonicalize(p, p.budgets)
    >>> from mpqopt.solvers import SolveSettings, get_backend
    >>> best = get_backend("bruteforce").solve(m, SolveSettings()).objective
    >>> relaxation_bound(m, min_eigenvalue_shift(m)) <= relaxation_bound(m, one_hot_shift(m)) <= best
    True
    """
    if not conv.exact:
        return None
    # the bound is valid at any point HiGHS stops at, so a default limit costs nothing but guards
    # against a QP run that does not end (one hung for 10 minutes under load here, not reproduced)
    deadline = time.perf_counter() + (_DEFAULT_QP_SECONDS if time_limit is None else time_limit)
    P = conv.quadratic.toarray() if sp.issparse(conv.quadratic) else np.asarray(conv.quadratic)
    low = _check_psd(P, f"relaxation_bound ({conv.method})")
    c = np.asarray(conv.linear, dtype=np.float64)
    scale = max(float(np.abs(c).max(initial=0.0)), float(np.abs(P).max(initial=0.0)), 1e-300)
    y = _solve_relaxation(model, c / scale, P / scale, deadline, quadratic=True)
    if y is None:
        return None
    g = c + 2.0 * (P @ y)
    lp = _solve_relaxation(model, g / scale, None, deadline, quadratic=False, want_objective=True)
    if lp is None:
        return None
    f_y = float(c @ y + y @ P @ y)
    bound = f_y + float(lp) * scale - float(g @ y) + conv.constant
    if low < 0.0:
        bound -= 2.0 * model.num_groups * (-low)
    return bound


def _solve_relaxation(model: CanonicalModel, cost: np.ndarray, P: np.ndarray | None, deadline: float | None, *, quadratic: bool, want_objective: bool = False):
    """HiGHS on ``min cost x (+ x^T P x)`` over the relaxation: the point (QP) or the optimal value (LP)."""
    return solve_relaxation(csc_arrays(model), cost, P, deadline, quadratic=quadratic, want_objective=want_objective)
