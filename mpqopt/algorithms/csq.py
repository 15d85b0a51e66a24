"""A CSQ-style continuous relaxation for cross-layer (IQP) models: heuristic, no optimality guarantee.

Each group's choice is relaxed to a softmax ``p = softmax(beta * theta)`` over its items, with a
temperature ``beta`` that rises geometrically until every group is (near-)one-hot, in the spirit of
CSQ's annealed gates (Xiao et al., "CSQ: Growing Mixed-Precision Quantization Scheme with
Bi-level Continuous Sparsification", DAC 2023). The loss is the relaxed objective
``(value @ p + p^T Q p) / scale`` plus ``mu * sum_r max(0, (weights_r @ p - rhs_r) / budget_r)^2``
with ``mu`` growing; Adam updates ``theta``. At the end each group takes its largest weight; a
broken budget is repaired (:func:`mpqopt.algorithms.heuristics.repair`) and 2-opt polishes.

Pure numpy, deterministic given ``seed``. At 52 groups x 3 options a restart takes 0.01-0.04 s, the
default 8 restarts 0.1-0.3 s.

>>> import mpqopt.synthetic
>>> from mpqopt.reductions import canonicalize
>>> from mpqopt.algorithms.heuristics import is_feasible
>>> p = mpqopt.synthetic.iqp_problem(12, seed=0)
>>> m = canonicalize(p, p.budgets)
>>> found = csq(m, seed=0)
>>> is_feasible(m, found.items)
True
"""

from __future__ import annotations


import numpy as np

from ..deadline import passed
from ..errors import SolverError
from ..reductions import CanonicalModel
from .heuristics import repair
from .local_search import Objective, SearchResult, two_opt

# Schedule, tuned on iqp_problem(52, 3, seed 0..2, noise 0.1 and 0.5) against the best known
# objectives (0.16-0.52): beta 1 -> 200 and the penalty 10 -> 1e5 over the steps, Adam at 0.2 on
# logits drawn with spread 0.3. One restart ended 0.0024 above them on average, the best of 8
# (logits drawn afresh) within 0.0001 on all six. A penalty starting at 100 or 1000 did worse
# (0.0013-0.05), as did spread 0.01 (the restarts then all end alike).
STEPS = 600
BETA = (1.0, 200.0)
PENALTY = (10.0, 1e5)
LEARNING_RATE = 0.2
INIT_SPREAD = 0.3
RESTARTS = 8
BINARY = 0.99  # a group counts as decided once one item holds this much weight


def _group_softmax(z: np.ndarray, model: CanonicalModel) -> np.ndarray:
    starts = model.group_start[:-1]
    e = np.exp(z - np.maximum.reduceat(z, starts)[model.item_group])
    return e / np.add.reduceat(e, starts)[model.item_group]


def _scale(obj: Objective, model: CanonicalModel) -> float:
    """Typical size of the objective's variation: the value ranges of the groups plus the pairwise
    mass per option pair (so that the loss and the penalty are both of order one)."""
    starts = model.group_start[:-1]
    spread = float((np.maximum.reduceat(obj.value, starts) - np.minimum.reduceat(obj.value, starts)).sum())
    if obj.Q is not None:
        per_pair = (model.num_items / max(model.num_groups, 1)) ** 2
        spread += float(np.abs(obj.Q).sum()) / per_pair
    return spread if spread > 0 else 1.0


def relax(model: CanonicalModel, seed: int | tuple[int, ...] = 0, *, steps: int = STEPS, warm_start: np.ndarray | None = None, deadline: float | None = None, objective: Objective | None = None) -> tuple[np.ndarray, int]:
    """Run the annealed relaxation; returns the final relaxed weights ``p`` and the steps taken.

    ``warm_start`` (one item per group) tilts the initial logits toward that assignment.
    """
    obj = objective or Objective(model)
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, INIT_SPREAD, model.num_items)
    if warm_start is not None:
        theta[np.asarray(warm_start)] += 1.0  # about three spreads: most restarts begin near it
    scale = _scale(obj, model)
    budget = np.maximum(np.abs(model.budgets), 1e-300)
    W = model.weights / budget[:, None]  # budget rows in units of their budget
    rhs = model.rhs / budget
    m1 = np.zeros_like(theta)
    m2 = np.zeros_like(theta)
    b1, b2, eps = 0.9, 0.999, 1e-8
    starts = model.group_start[:-1]
    p = _group_softmax(BETA[0] * theta, model)
    step = 0
    for step in range(1, steps + 1):
        if step % 32 == 0 and passed(deadline):
            break
        frac = step / steps
        beta = BETA[0] * (BETA[1] / BETA[0]) ** frac
        mu = PENALTY[0] * (PENALTY[1] / PENALTY[0]) ** frac
        p = _group_softmax(beta * theta, model)
        grad_p = obj.value if obj.Q is None else obj.value + 2.0 * (obj.Q @ p)
        grad_p = grad_p / scale
        if model.num_budgets:
            excess = np.maximum(W @ p - rhs, 0.0)
            grad_p = grad_p + mu * 2.0 * (excess @ W)
        # softmax Jacobian per group: d p_i / d theta = beta p_i (e_i - p)
        mean = np.add.reduceat(p * grad_p, starts)[model.item_group]
        grad = beta * p * (grad_p - mean)
        m1 = b1 * m1 + (1 - b1) * grad
        m2 = b2 * m2 + (1 - b2) * grad * grad
        theta -= LEARNING_RATE * (m1 / (1 - b1**step)) / (np.sqrt(m2 / (1 - b2**step)) + eps)
        if frac > 0.5 and step % 16 == 0 and np.maximum.reduceat(p, starts).min() >= BINARY:
            if not model.num_budgets or (W @ p <= rhs).all():
                break  # decided and within budget: more steps only sharpen
    return p, step


def csq(
    model: CanonicalModel,
    seed: int = 0,
    *,
    restarts: int = RESTARTS,
    steps: int = STEPS,
    warm_start: np.ndarray | None = None,
    fallback: np.ndarray | None = None,
    deadline: float | None = None,
    objective: Objective | None = None,
) -> SearchResult:
    """Best of ``restarts`` runs (restart ``r`` draws its logits from ``(seed, r)``): each relaxes,
    takes each group's largest weight, repairs a broken budget and is 2-opt polished.

    ``fallback`` (a feasible assignment) is used when a repair gets stuck; without one that raises
    SolverError. Later restarts are skipped once ``deadline`` passes (the first always runs).
    """
    obj = objective or Objective(model)
    best: SearchResult | None = None
    best_run = 0
    runs = []
    for r in range(max(int(restarts), 1)):
        if r and passed(deadline):
            break
        found = _one_run(model, (seed, r), steps, warm_start, fallback, deadline, obj)
        runs.append(found)
        if best is None or found.objective < best.objective:
            best, best_run = found, r
    assert best is not None
    best.stats = {**best.stats, "seed": seed, "restarts": len(runs), "steps": sum(f.iterations for f in runs),
                  "repaired_runs": sum(f.stats["repaired"] for f in runs), "best_restart": best_run}
    best.iterations = sum(f.iterations for f in runs)
    # cut short: a restart skipped, or the deadline passed during a run (its relaxation or polish stopped)
    best.timed_out = len(runs) < max(int(restarts), 1) or any(f.timed_out for f in runs)
    return best


def _one_run(model: CanonicalModel, seed: tuple[int, int], steps: int, warm_start: np.ndarray | None, fallback: np.ndarray | None, deadline: float | None, obj: Objective) -> SearchResult:
    p, taken = relax(model, seed, steps=steps, warm_start=warm_start, deadline=deadline, objective=obj)
    best_in_group = np.maximum.reduceat(p, model.group_start[:-1])
    hits = np.nonzero(p >= best_in_group[model.item_group])[0]
    items = np.full(model.num_groups, -1, dtype=np.int64)
    items[model.item_group[hits[::-1]]] = hits[::-1]  # lowest index among ties
    rounded = repair(model, items, deadline=deadline)
    if rounded is None:
        if fallback is None:
            raise SolverError("csq: the rounded relaxation could not be repaired and no fallback was given")
        rounded = np.asarray(fallback)
    stats = {"repaired": not np.array_equal(rounded, items), "rounded_objective": model.items_objective(rounded)}
    polished = two_opt(model, rounded, deadline=deadline, objective=obj)
    stats["two_opt_moves"] = polished.moves
    return SearchResult(polished.items, polished.objective, polished.moves, taken, polished.timed_out or (passed(deadline)), stats)
