"""Pareto frontiers of total sensitivity against one cost.

``pareto(problem, cost="size_bits")`` returns every Pareto-optimal allocation (no other allocation
is at most as costly and strictly better, or cheaper and at least as good), computed exactly by
dynamic programming over non-dominated (cost, value) states. ``points=N`` instead solves N budgets
spread evenly over the cost range, each exactly, each warm-started from its neighbour; use it when
the full frontier is too large (thousands of layers) or other budgets also apply.

Alongside, the frontier carries a lower bound on the objective at every cost, valid for the problem as
posed (:mod:`mpqopt.algorithms.frontier_bound`: the LP relaxation with every budget; with a pairwise
term, the LP of a separable underestimate; ``lp_note`` says which), and the uniform-precision points
that meet every other budget (``uniform_excluded`` lists those that do not, and why).

>>> import mpqopt
>>> p = mpqopt.Problem(["a", "b"], [2, 4, 8], [[1.0, 0.3, 0.0], [2.0, 0.5, 0.0]],
...                    costs={"bits": [[2, 4, 8], [2, 4, 8]]})
>>> f = mpqopt.pareto(p, cost="bits")
>>> [(pt.cost, round(pt.objective, 3)) for pt in f.points]
[(4.0, 3.0), (6.0, 1.5), (8.0, 0.8), (12.0, 0.3), (16.0, 0.0)]
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .algorithms.frontier_bound import lp_frontier
from .arguments import validated_arguments
from .budgets import bits_per_weight, resolve_budget_name, resolve_budgets
from .deadline import Deadline
from .errors import ArgumentError, BudgetError, MpqoptError, ProblemError
from .problem import Problem
from .reductions import canonicalize
from .solve import solve
from .verify import violations

SAMPLE_HINT = "points=N in Python, --points N on the command line"
MAX_POINTS = 10_000  # sampled budgets: each is a full solve, and a plot or table shows far fewer
FULL_FRONTIER_STATE_LIMIT = 2_000_000
ROUNDOFF_RTOL = 1e-12  # relative difference of two totals below which they are equal (as verify.BUDGET_RTOL)


@dataclass
class FrontierPoint:
    """One allocation on the frontier."""

    cost: float
    objective: float
    x: np.ndarray  # option index per layer
    gap: float | None = 0.0  # 0 for exact points, None when the solver proved nothing (heuristics)
    status: str = "optimal"
    budget: float | None = None  # the budget solved for (sampled frontiers)


@dataclass
class Frontier:
    """Exact Pareto frontier of ``objective`` against cost ``cost`` (see :func:`pareto`)."""

    problem: Problem = field(repr=False)
    cost: str
    points: list[FrontierPoint]
    complete: bool  # True: every Pareto-optimal point; False: sampled budgets
    lp_costs: np.ndarray = field(repr=False)  # vertices of the lower bound curve, by cost (empty: no bound)
    lp_values: np.ndarray = field(repr=False)
    uniform: list[tuple[str, float, float]] = field(default_factory=list)  # (option label, cost, objective), every budget met
    other_budgets: dict[str, float] = field(default_factory=dict)
    time_s: float = 0.0
    message: str = ""  # why a sampled frontier has fewer points than budgets asked ("" when it has as many)
    unreached: list[float] = field(default_factory=list)  # budgets not solved before the time limit
    lp_note: str = ""  # how the bound curve was made ("" for the plain LP), or why there is none
    uniform_excluded: list[tuple[str, float, float, list[str]]] = field(default_factory=list)  # ... and the budgets each breaks
    unit: str | None = None  # "bpw": the axis is also shown in bits per weight (records, table, CSV, plot)
    bpw_per_cost: float | None = None  # bits per weight of one unit of ``cost`` (when ``unit`` is "bpw")

    def bpw(self, cost: float | np.ndarray) -> float | np.ndarray | None:
        """A total of ``cost`` as average bits per weight (None unless the frontier has ``unit="bpw"``)."""
        return None if self.bpw_per_cost is None else cost * self.bpw_per_cost

    def lp_bound(self, cost: float | np.ndarray) -> np.ndarray:
        """A lower bound on the objective of any allocation at most ``cost`` that meets every other
        budget (inf where none exists); NaN when the frontier has no bound (see ``lp_note``)."""
        if not self.lp_costs.size:
            return np.full(np.shape(cost), np.nan)
        return np.interp(cost, self.lp_costs, self.lp_values, left=np.inf, right=self.lp_values[-1])

    def _bound_at(self, cost: float) -> float | None:
        value = float(self.lp_bound(cost))
        return None if np.isnan(value) else value

    def records(self) -> list[dict[str, Any]]:
        """One dict per point: cost, objective, gap, status, LP bound at that cost, and the assignment."""
        out = []
        for pt in self.points:
            out.append({
                "cost": pt.cost,
                "objective": pt.objective,
                "gap": pt.gap,
                "status": pt.status,
                "budget": pt.budget,
                **({"bpw": self.bpw(pt.cost)} if self.unit == "bpw" else {}),
                "lp_bound": self._bound_at(pt.cost),
                "assignment": self.problem.to_labels(pt.x),
            })
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "cost": self.cost,
            "complete": self.complete,
            "other_budgets": self.other_budgets,
            "points": self.records(),
            "lp_frontier": {"cost": self.lp_costs.tolist(), "objective": self.lp_values.tolist(), "note": self.lp_note},
            "uniform": [{"option": label, "cost": c, "objective": v} for label, c, v in self.uniform],
            "uniform_excluded": [{"option": label, "cost": c, "objective": v, "violates": broken} for label, c, v, broken in self.uniform_excluded],
            "time_s": self.time_s,
            **({"unit": self.unit} if self.unit else {}),
            "message": self.message,
            "unreached_budgets": list(self.unreached),
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def to_csv(self) -> str:
        """CSV text: cost, objective, gap, status, lp_bound, then one column per layer (option label)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        extra = ["bpw"] if self.unit == "bpw" else []
        writer.writerow(["cost", *extra, "objective", "gap", "status", "lp_bound", *self.problem.layers])
        labels = self.problem.option_labels
        for pt, rec in zip(self.points, self.records()):
            bound = "" if rec["lp_bound"] is None else repr(rec["lp_bound"])
            writer.writerow([repr(pt.cost), *([repr(rec["bpw"])] if extra else []), repr(pt.objective), pt.gap, pt.status, bound, *(labels[k] for k in pt.x)])
        return buffer.getvalue()

    def table(self, max_rows: int = 40) -> str:
        """Readable summary: per point the cost, objective, LP bound and how many layers take each option."""
        labels = self.problem.option_labels
        extra = ["bpw"] if self.unit == "bpw" else []
        head = ["cost", *extra, "objective", "lp_bound", *labels]
        rows = []
        step = max(1, int(np.ceil(len(self.points) / max_rows)))
        for pt in self.points[::step]:
            counts = np.bincount(pt.x, minlength=len(labels))
            bound = self._bound_at(pt.cost)
            rows.append([f"{pt.cost:.6g}", *([f"{self.bpw(pt.cost):.4g}"] if extra else []), f"{pt.objective:.6g}", "-" if bound is None else f"{bound:.6g}", *map(str, counts)])
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
        lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
        if self.complete:
            kind = "every Pareto-optimal allocation"
        elif all(pt.status == "optimal" for pt in self.points):
            kind = "exact solutions at sampled budgets"
        else:
            kind = "solutions at sampled budgets, not all proven optimal"
        shown = "" if step == 1 else f", every {step}th shown"
        lines.append(f"{len(self.points)} points ({kind}{shown}) of objective vs '{self.cost}' in {self.time_s * 1e3:.1f} ms")
        if self.lp_note:
            lines.append(f"lp_bound: {self.lp_note}")
        return "\n".join(lines)

    def plot(self, path: str | None = None, ax: Any = None) -> Any:
        """Plot the solved allocations as markers (joined by a thin line, labelled as such), the lower
        bound curve separately, and the uniform-precision points that meet every budget (needs matplotlib)."""
        try:
            import matplotlib

            if path is not None and ax is None:
                matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise MpqoptError("plotting needs matplotlib: pip install mpqopt[plot]") from None
        own = ax is None
        if own:
            fig, ax = plt.subplots(figsize=(7, 4.2))
        # the x axis: the cost itself, or bits per weight when asked (unit="bpw")
        x = (lambda c: c) if self.bpw_per_cost is None else (lambda c: np.asarray(c) * self.bpw_per_cost)
        costs = x([pt.cost for pt in self.points])
        values = [pt.objective for pt in self.points]
        if self.lp_costs.size:
            finite = np.isfinite(self.lp_values)
            ax.plot(x(self.lp_costs[finite]), self.lp_values[finite], "-", color="0.6", lw=1, label=self._bound_label())
        # the points are allocations, not a curve: the best objective between two of them is not the line's
        ax.plot(costs, values, "-", color="C0", lw=0.6, alpha=0.5, label="line joining the solved points")
        ax.plot(costs, values, "o", color="C0", ms=3, label="Pareto-optimal allocations" if self.complete else "solved allocations (sampled budgets)")
        for label, c, v in self.uniform:
            c = float(x(c))
            ax.plot([c], [v], "s", color="C3", ms=5)
            ax.annotate(label, (c, v), textcoords="offset points", xytext=(4, 4), fontsize=8, color="C3")
        if self.uniform:
            ax.plot([], [], "s", color="C3", ms=5, label="uniform precision")
        ax.set_xlabel(self.cost if self.bpw_per_cost is None else f"bits per weight ({self.cost})")
        ax.set_ylabel("objective (total sensitivity)")
        if not self.lp_costs.size and self.lp_note:
            ax.set_title(self.lp_note, fontsize=8)
        ax.legend(fontsize=8)
        if own:
            fig.tight_layout()
            if path is not None:
                fig.savefig(path, dpi=120)
                plt.close(fig)
        return ax

    def _bound_label(self) -> str:
        if self.problem.pairwise is not None:
            return "lower bound (LP of a separable underestimate)"
        return "LP lower bound" + ("" if self.other_budgets else " (vertices = greedy)")


def pareto(
    problem: Problem,
    cost: str = "size_bits",
    points: int | None = None,
    *,
    budgets: Mapping[str, Any] | None = None,
    solver: str = "auto",
    time_limit: float | None = None,
    unit: str | None = None,
) -> Frontier:
    """Pareto frontier of total sensitivity against cost ``cost``.

    ``points=None`` gives every Pareto-optimal allocation (exact DP; separable problems with no
    other budget). ``points=N`` (at most ``MAX_POINTS``) solves ``N`` budgets spread evenly from the
    cheapest to the dearest allocation, each exactly with ``solver`` (other budgets in ``budgets`` or
    the problem apply); identical budgets are solved once. ``time_limit`` bounds the whole call: each
    budget gets a share of what is left, and budgets not reached in time are listed in
    ``Frontier.unreached``. ``Frontier.message`` says why there are fewer points than budgets.
    ``unit="bpw"`` also gives the axis in bits per weight (a size cost; needs ``Problem.params``).
    Other ``budgets`` may be scoped (``{"size[stage0:blk.{0..15}.*]": "2GB"}``): every point meets them.
    """
    if not isinstance(problem, Problem):
        raise ArgumentError(f"pareto() needs an mpqopt.Problem, got {type(problem).__name__}")
    checked = validated_arguments(solver=solver, time_limit=time_limit)
    solver, time_limit = checked.solver, checked.time_limit
    if not isinstance(cost, str):
        raise ArgumentError(f"cost must be the name of a cost table such as 'size_bits', got {cost!r}")
    start = time.perf_counter()
    clock = Deadline(time_limit, start)
    try:
        name = resolve_budget_name(problem, cost)
    except BudgetError as exc:
        raise ProblemError(str(exc).replace(f"budget '{cost}'", f"cost '{cost}'", 1)) from None
    if unit not in (None, "bpw"):
        raise ArgumentError(f"unit must be None (the cost's own) or 'bpw' (bits per weight), got {unit!r}")
    bpw_per_cost = None if unit is None else bits_per_weight(problem, name, 1.0)
    if unit == "bpw" and bpw_per_cost is None:
        raise BudgetError(f"unit='bpw' needs '{name}' to be a size in bits or bytes and the weight count of each layer "
                          f"(Problem(..., params=[...])); " + ("params are missing" if problem.params is None else f"the unit of '{name}' is not bits or bytes"))
    others = resolve_budgets(problem, budgets, base={k: v for k, v in problem.budgets.items() if k != name})
    others.pop(name, None)
    if points is None:
        if others:
            raise ProblemError(f"the full frontier cannot respect other budgets (here: {', '.join(map(repr, sorted(others)))}): "
                               f"sample it instead at N budgets that respect them ({SAMPLE_HINT}), or drop them")
        if not problem.is_separable:
            raise ProblemError(f"the full frontier needs a separable problem (no pairwise term): sample it at N budgets instead ({SAMPLE_HINT})")
        found, message, unreached = _full_frontier(problem, name), "", []
    else:
        if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < 1:
            raise ProblemError(f"points must be a positive integer, got {points!r}")
        if points > MAX_POINTS:
            raise ProblemError(f"points={points} asks for {points} solves; at most {MAX_POINTS} budgets are sampled "
                               f"(a frontier that fine repeats allocations: use fewer points, or the full frontier without points)")
        found, message, unreached = _sampled_frontier(problem, name, int(points), others, solver, clock)
    for pt in found:  # every point meets every constraint, like any solve() result
        broken = violations(problem, pt.x, {**others, name: pt.cost})
        if broken:
            raise MpqoptError(f"internal error: frontier point fails verification: {broken}")
    lp_costs, lp_values, lp_note = lp_frontier(problem, name, others, [] if points is None else _sample_budgets(problem, name, int(points)), clock)
    uniform, excluded = _uniform(problem, name, others)
    return Frontier(problem, name, found, points is None, lp_costs, lp_values, uniform, others, time.perf_counter() - start, message, unreached,
                    lp_note, excluded, unit, bpw_per_cost)


def _sample_budgets(problem: Problem, name: str, points: int) -> np.ndarray:
    """The budgets a sampled frontier solves: ``points`` evenly from the cheapest to the dearest total."""
    lo, hi = problem.cost_range(name)
    return np.unique(np.linspace(lo, hi, points)) if points > 1 else np.array([hi])  # a narrow range repeats budgets


def _full_frontier(problem: Problem, name: str) -> list[FrontierPoint]:
    """Nemhauser-Ullmann: merge groups one at a time, keeping only non-dominated (cost, value) states."""
    _, hi = problem.cost_range(name)
    model = canonicalize(problem, {name: hi})  # dominance on value and this cost only
    weight = model.weights[0]
    fixed_cost = float(model.budgets[0] - model.rhs[0])
    # Two allocations of equal true cost can get sums that differ in the last bits (HAWQ-V3
    # ResNet-50: 13.549568 MB summed in two orders). Compared exactly, the DP kept both, the dearer
    # by round-off with the better objective: 13 dominated points. Totals this close are equal.
    rtol = max(ROUNDOFF_RTOL, 4.0 * (model.num_groups + 1) * np.finfo(float).eps)
    cost_tol = rtol * max(abs(hi), abs(fixed_cost), np.finfo(float).tiny)
    value_tol = rtol * max(problem.objective_scale, np.finfo(float).tiny)
    cost, value = np.array([fixed_cost]), np.array([model.offset])
    parents: list[np.ndarray] = []
    chosen: list[np.ndarray] = []
    for f in range(model.num_groups):
        items = np.arange(model.group_start[f], model.group_start[f + 1])
        # one run per item, each sorted by cost: the stable sort merges them
        new_cost = (weight[items][:, None] + cost[None, :]).ravel()
        new_value = (model.value[items][:, None] + value[None, :]).ravel()
        parent = np.tile(np.arange(cost.size), items.size)
        item = np.repeat(items, cost.size)
        order = np.lexsort((new_value, new_cost))
        new_cost, new_value, parent, item = new_cost[order], new_value[order], parent[order], item[order]
        front = _nondominated(new_cost, new_value, cost_tol, value_tol)
        cost, value = new_cost[front], new_value[front]
        parents.append(parent[front])
        chosen.append(item[front])
        if cost.size > FULL_FRONTIER_STATE_LIMIT:
            raise ProblemError(f"the full frontier has over {FULL_FRONTIER_STATE_LIMIT} points after {f + 1} of {model.num_groups} decisions: "
                               f"sample it at N budgets instead ({SAMPLE_HINT})")
    # walk every final state back to its items, all states at once
    items = np.empty((cost.size, model.num_groups), dtype=np.int64)
    state = np.arange(cost.size)
    for f in range(model.num_groups - 1, -1, -1):
        items[:, f] = chosen[f][state]
        state = parents[f][state]
    found = []
    for i in range(cost.size):
        x = model.expand(items[i])
        ev = problem.evaluate(x)
        found.append(FrontierPoint(ev.costs[name], ev.objective, x))
    return found


def _nondominated(cost: np.ndarray, value: np.ndarray, cost_tol: float, value_tol: float) -> np.ndarray:
    """Mask of the states (sorted by cost, then value) that no other state dominates, costs within
    ``cost_tol`` and values within ``value_tol`` counting as equal: a state is kept when it beats
    every cheaper state by more than ``value_tol`` and no state at most ``cost_tol`` dearer beats it
    by more than ``value_tol``."""
    best = np.minimum.accumulate(value)
    keep = value < np.concatenate([[np.inf], best[:-1]]) - value_tol
    last_equal = np.searchsorted(cost, cost + cost_tol, side="right") - 1
    return keep & (value <= best[last_equal] + value_tol)


def _sampled_frontier(problem: Problem, name: str, points: int, others: dict[str, float], solver: str, clock: Deadline) -> tuple[list[FrontierPoint], str, list[float]]:
    """Exact solves at ``points`` budgets from cheapest to dearest, each warm-started from the last
    (a cheaper allocation always fits a dearer budget), within ``clock``: each solve gets an equal
    share of the time left, so one hard budget cannot starve the rest.

    Returns ``(points, message, budgets not reached)``; the message says why there are fewer
    points than budgets asked ("" if there are as many)."""
    budgets = _sample_budgets(problem, name, points)
    found: list[FrontierPoint] = []
    warm = None
    infeasible = 0
    unreached: list[float] = []
    todo = budgets.tolist()
    for i, b in enumerate(todo):
        if clock.expired():
            unreached = todo[i:]
            break
        share = None if clock.at is None else clock.remaining() / (len(todo) - i)
        result = solve(problem, budgets={**others, name: b}, solver=solver, time_limit=share, warm_start=warm)
        if result.x is None:
            if result.status == "time_limit":
                unreached.append(b)  # its share ran out before any assignment
            else:
                infeasible += 1  # other budgets make this one infeasible
            continue
        warm = result.x
        found.append(FrontierPoint(result.costs[name], result.objective, result.x, result.gap, result.status, b))
    found.sort(key=lambda pt: pt.cost)
    # a sampled budget can land on a point another budget already found: keep distinct allocations
    unique: list[FrontierPoint] = []
    for pt in found:
        if not unique or not np.array_equal(unique[-1].x, pt.x):
            unique.append(pt)
    return unique, _sampling_message(points, budgets.size, infeasible, len(found), len(unique), unreached, clock), unreached


def _sampling_message(asked: int, distinct: int, infeasible: int, solved: int, unique: int, unreached: list[float], clock: Deadline) -> str:
    """Why a sampled frontier has fewer points than the budgets asked for (each reason counted)."""
    reasons = []
    if distinct < asked:
        reasons.append(f"{asked - distinct} repeat a budget (the cost range is too narrow for {asked} distinct budgets)")
    if unreached:
        reasons.append(f"{len(unreached)} not solved: {clock.message()} (budgets {min(unreached):.6g} to {max(unreached):.6g} not reached)")
    if infeasible:
        reasons.append(f"{infeasible} cannot be met together with the other budgets")
    if unique < solved:
        reasons.append(f"{solved - unique} repeat an allocation already on the frontier")
    if not reasons:
        return ""
    return f"{asked} budgets asked, {unique} distinct allocation{'s' * (unique != 1)}: " + "; ".join(reasons)


def _uniform(problem: Problem, name: str, others: Mapping[str, float]) -> tuple[list[tuple[str, float, float]], list[tuple[str, float, float, list[str]]]]:
    """Every layer at one option (fixed layers keep theirs), for options every free layer allows:
    those that meet every other budget, and those that do not with the budgets each breaks."""
    out, excluded = [], []
    for k, option in enumerate(problem.options):
        x = np.full(problem.num_layers, k)
        for layer, label in problem.fixed.items():
            x[problem.layer_index(layer)] = problem.option_index(label)
        if problem.allowed[np.arange(problem.num_layers), x].all():
            ev = problem.evaluate(x)
            broken = [b for b in others if violations(problem, x, {b: others[b]})]
            if broken:
                excluded.append((option.label, ev.costs[name], ev.objective, broken))
            else:
                out.append((option.label, ev.costs[name], ev.objective))
    return out, excluded
