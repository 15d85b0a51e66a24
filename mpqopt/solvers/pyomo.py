"""Pyomo backend (optional: ``pip install mpqopt[pyomo]``) and :func:`to_pyomo` for Pyomo users.

``pyomo:NAME`` builds the canonical model as a Pyomo ``ConcreteModel`` and hands it to
``SolverFactory(NAME)``: ``pyomo:appsi_highs`` (the default, uses highspy), ``pyomo:highs``,
``pyomo:glpk``, ``pyomo:cbc``, ``pyomo:scip``, ``pyomo:gurobi_direct``, ``pyomo:cplex_direct``...
A pairwise term becomes the exact one-hot linearization of :mod:`..reductions.linearize` (continuous
pair columns and their equality rows), as in the HiGHS backend.

The model (both here and from :func:`to_pyomo`): ``m.x[i]`` binary per item, ``m.y[p]`` in [0, 1]
per linearized pair, ``m.one_hot[f]`` per free layer group, ``m.budget[name]`` per budget (each row
divided by its remaining limit, so its body reads as the share of the budget used: bits budgets of
1e7 upset absolute tolerances), ``m.link[r]`` linearization rows, ``m.objective``.

Settings map to each solver's own option names (Pyomo has no common ones for the legacy solvers):

==============================  ==================  ==================  =============
solver                          time_limit          mip_gap             threads
==============================  ==================  ==================  =============
appsi_highs, highs              ``timelimit=``      ``mip_rel_gap``     ``threads``
gurobi, gurobi_direct, ...      ``TimeLimit``       ``MIPGap``          ``Threads``
cbc                             ``seconds``         ``ratioGap``        ``threads``
glpk                            ``tmlim`` (int s)   ``mipgap``          --
scip                            ``limits/time``     ``limits/gap``      --
cplex, cplex_direct             ``timelimit``       ``mipgap``          ``threads``
==============================  ==================  ==================  =============

Other solver names get no time limit, gap or thread option (stated in the result's message).
Warm starts are passed where ``warm_start_capable()`` says the interface takes them.

>>> import pytest; _ = pytest.importorskip("pyomo")
>>> from mpqopt import solve
>>> from mpqopt.synthetic import mckp_problem
>>> p = mckp_problem(20, 4, seed=0)
>>> r = solve(p, solver="pyomo")
>>> r.status, r.solver, abs(r.objective - solve(p, solver="mckp").objective) <= 1e-9 * abs(r.objective)
('optimal', 'pyomo:appsi_highs', True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..algorithms.heuristics import is_feasible
from ..algorithms.incumbent import separable_incumbent
from ..budgets import resolve_budgets
from ..errors import SolverError, SolverUnavailableError
from ..highs_runtime import use_threads
from ..problem import Problem
from ..reductions import CanonicalModel, canonicalize
from ..reductions.linearize import Linearization, linearize
from ..reductions.matrix import budget_row_scales, normalized_columns
from ..stdio import c_stdout_to_stderr
from .base import RawSolution, SolveSettings, items_from_values, register
from .milp import MilpBackend, MilpRun

DEFAULT_SOLVER = "appsi_highs"
# names checked when listing what this machine can run (an unknown name costs nothing to check)
COMMON_SOLVERS = ("appsi_highs", "highs", "glpk", "cbc", "scip", "gurobi_direct", "gurobi_persistent", "cplex_direct", "xpress_direct")
_INSTALL_HINTS = {
    "highs": "pip install highspy", "glpk": "apt-get install glpk-utils, or conda install -c conda-forge glpk",
    "cbc": "apt-get install coinor-cbc, or conda install -c conda-forge coin-or-cbc", "scip": "conda install -c conda-forge scip",
    "gurobi": "pip install gurobipy (mpqopt[gurobi]) and a licence", "cplex": "pip install cplex", "xpress": "pip install xpress",
}


def _family(name: str) -> str:
    """The solver family whose option names ``name`` takes (``appsi_highs`` -> ``highs``)."""
    base = name.lower().removeprefix("appsi_")
    for family in ("highs", "gurobi", "cbc", "glpk", "scip", "cplex", "xpress"):
        if base.startswith(family):
            return family
    return ""


def _solver_options(family: str, settings: SolveSettings, time_limit: float | None, abs_gap: float) -> dict[str, Any]:
    """The settings in ``family``'s own option names (see the module docstring's table)."""
    gap = float(settings.mip_gap)
    threads = int(settings.threads) if settings.threads else None
    if family == "highs":  # time limit goes through the interface's timelimit= (HiGHS tolerances as in the highs backend)
        opts = {"mip_rel_gap": gap, "mip_abs_gap": abs_gap, "primal_feasibility_tolerance": 1e-9, "mip_feasibility_tolerance": 1e-7, "threads": threads}
    elif family == "gurobi":
        opts = {"TimeLimit": time_limit, "MIPGap": gap, "MIPGapAbs": abs_gap, "Threads": threads, "FeasibilityTol": 1e-9, "IntFeasTol": 1e-9}
    elif family == "cbc":
        opts = {"seconds": time_limit, "ratioGap": gap, "allowableGap": abs_gap, "threads": threads}
    elif family == "glpk":
        opts = {"tmlim": None if time_limit is None else max(int(np.ceil(time_limit)), 1), "mipgap": gap}
    elif family == "scip":
        opts = {"limits/time": time_limit, "limits/gap": gap, "limits/absgap": abs_gap}
    elif family == "cplex":
        opts = {"timelimit": time_limit, "mipgap": gap, "mip_tolerances_absmipgap": abs_gap, "threads": threads}
    elif family == "xpress":
        opts = {"maxtime": None if time_limit is None else -max(int(np.ceil(time_limit)), 1), "miprelstop": gap, "threads": threads}
    else:
        opts = {}
    return {key: value for key, value in opts.items() if value is not None}


def _objective(model: CanonicalModel, linear: Linearization | None) -> tuple[np.ndarray, float, float]:
    """Normalized costs of the x (then y) columns, with ``original = cost @ (x, y) * scale + constant``:
    each group's best item costs 0 and the largest coefficient is 1 (absolute solver tolerances)."""
    return normalized_columns(model, None if linear is None else linear.pair_cost)


def build_model(model: CanonicalModel, linear: Linearization | None, cost: np.ndarray, constant: float = 0.0):
    """A Pyomo ``ConcreteModel`` of ``model`` (layout in the module docstring) minimising
    ``cost @ (x, y) + constant``."""
    import pyomo.environ as pe
    from pyomo.core.expr.numeric_expr import LinearExpression

    n, p = model.num_items, 0 if linear is None else linear.pair_first.size
    m = pe.ConcreteModel(name="mpqopt")
    m.x = pe.Var(range(n), domain=pe.Binary)
    m.y = pe.Var(range(p), bounds=(0.0, 1.0))  # continuous: the link rows make them 0/1 at integral x
    xs = [m.x[i] for i in range(n)]
    columns = xs + [m.y[j] for j in range(p)]
    starts = model.group_start.tolist()
    m.one_hot = pe.Constraint(range(model.num_groups), rule=lambda _, f: LinearExpression(constant=0.0, linear_coefs=[1.0] * (starts[f + 1] - starts[f]), linear_vars=xs[starts[f]:starts[f + 1]]) == 1.0)
    scales = budget_row_scales(model)

    def budget_row(_, b: int):
        row = model.weights[b] / scales[b]
        nz = np.nonzero(row)[0]
        return LinearExpression(constant=0.0, linear_coefs=row[nz].tolist(), linear_vars=[xs[i] for i in nz.tolist()]) <= float(model.rhs[b] / scales[b])

    m.budget = pe.Constraint(range(model.num_budgets), rule=budget_row)
    m.budget_names = list(model.budget_names)  # m.budget[b] limits cost m.budget_names[b]
    if linear is not None:
        rows = linear.rows.tocsr()

        def link_row(_, r: int):
            lo, hi = rows.indptr[r], rows.indptr[r + 1]
            return LinearExpression(constant=0.0, linear_coefs=rows.data[lo:hi].tolist(), linear_vars=[columns[c] for c in rows.indices[lo:hi].tolist()]) == 0.0

        m.link = pe.Constraint(range(rows.shape[0]), rule=link_row)
    nz = np.nonzero(cost)[0]
    m.objective = pe.Objective(expr=LinearExpression(constant=float(constant), linear_coefs=cost[nz].tolist(), linear_vars=[columns[i] for i in nz.tolist()]), sense=pe.minimize)
    return m


def _set_start(m, model: CanonicalModel, linear: Linearization | None, items: np.ndarray) -> None:
    x0 = np.zeros(model.num_items)
    x0[np.asarray(items, dtype=np.int64)] = 1.0
    for i, v in enumerate(x0.tolist()):
        m.x[i].set_value(v)
    if linear is not None:
        for j, v in enumerate((x0[linear.pair_first] * x0[linear.pair_second]).tolist()):
            m.y[j].set_value(v)


def available_solvers() -> list[str]:
    """The names in :data:`COMMON_SOLVERS` that Pyomo can run on this machine."""
    return [name for name in COMMON_SOLVERS if _probe(name)[1]]


def _probe(name: str):
    """``(solver object or None, available)`` without Pyomo's warnings for unknown names."""
    import logging

    import pyomo.environ as pe
    from pyomo.opt.base.solvers import UnknownSolver

    quiet = [logging.getLogger(n) for n in ("pyomo.opt", "pyomo.solvers", "pyomo.contrib")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.CRITICAL)
    try:
        opt = pe.SolverFactory(name)
        if opt is None or isinstance(opt, UnknownSolver):
            return None, False
        return opt, bool(opt.available(exception_flag=False))
    except Exception:  # a broken plugin is as good as none here
        return None, False
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)


@register
class PyomoBackend(MilpBackend):
    name = "pyomo"
    description = "any MILP solver through Pyomo: 'pyomo:appsi_highs' (default), 'pyomo:glpk', 'pyomo:cbc', 'pyomo:gurobi_direct', ...; pairwise terms by exact one-hot linearization"
    requires = ("pyomo",)
    extra = "pyomo"

    def __init__(self, arg: str | None = None):
        self.solver = arg or DEFAULT_SOLVER
        self.opt, ok = _probe(self.solver)
        if self.opt is None:
            raise SolverError(f"pyomo:{self.solver}: Pyomo knows no solver '{self.solver}'; available here: {', '.join(available_solvers()) or 'none'}")
        if not ok:
            hint = _INSTALL_HINTS.get(_family(self.solver))
            raise SolverUnavailableError(f"pyomo:{self.solver}: Pyomo cannot run '{self.solver}' on this machine"
                                         f"{f' (install: {hint})' if hint else ''}; available here: {', '.join(available_solvers()) or 'none'}")
        self.family = _family(self.solver)

    @property
    def label(self) -> str:
        return f"{self.name}:{self.solver}"

    STATUS_MAP = {"optimal": "optimal", "globallyOptimal": "optimal", "infeasible": "infeasible",
                  "infeasibleOrUnbounded": "infeasible",  # binary columns: never unbounded
                  **dict.fromkeys(("maxTimeLimit", "maxIterations", "maxEvaluations", "userInterrupt", "resourceInterrupt",
                                   "minFunctionValue", "minStepLength"), "time_limit"),
                  **dict.fromkeys(("feasible", "locallyOptimal", "other", "intermediateNonInteger"), "feasible")}

    def solve(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        linear, warm = None, settings.warm_start
        if model.quadratic is not None:
            warm = warm if warm is not None else separable_incumbent(model)
            linear = linearize(model)  # exact: nothing dropped, unlike the highs backend's tolerance
        if warm is not None and is_feasible(model, np.asarray(warm)):  # what solve() returns if the solver overruns
            settings.deadline.offer(np.asarray(warm), model.items_objective(np.asarray(warm)))
        raw = self.solve_milp(model, settings, warm, linear)
        if linear is not None:
            raw.stats.update(pair_blocks_kept=linear.blocks_kept, pair_columns=int(linear.pair_first.size))
        if not self.family:
            raw.message += " (no time limit, gap or thread option known for this solver)"
        return raw

    def run_milp(self, model: CanonicalModel, settings: SolveSettings, warm: np.ndarray | None, linear: Linearization | None) -> MilpRun:
        import pyomo.environ as pe

        start = time.perf_counter()
        cost, constant, scale = _objective(model, linear)
        m = build_model(model, linear, cost)
        stats = {"build_seconds": time.perf_counter() - start}
        remaining = settings.left()
        # the user's relative gap, measured at the warm start, as an absolute gap in normalized units
        # (0 without one: the solver's default absolute gap would stop short on small objectives)
        reference = abs(model.items_objective(np.asarray(warm)) + model.offset) if warm is not None else 0.0
        options = _solver_options(self.family, settings, remaining, float(settings.mip_gap) * reference / scale)
        kwargs: dict[str, Any] = {"tee": bool(settings.verbose), "load_solutions": False}
        if options:
            kwargs["options"] = options
        if self.family == "highs" and remaining is not None:
            kwargs["timelimit"] = remaining
        if self.family == "highs":
            use_threads(settings.threads)  # HiGHS's process-wide thread pool must be reset for a new count
        # one solver object per run: persistent interfaces would keep a start a second run must not see
        opt, self.opt = (self.opt if self.opt is not None else _probe(self.solver)[0]), None
        if warm is not None and _warm_start_capable(opt):
            _set_start(m, model, linear, warm)
            kwargs["warmstart"] = True
        try:
            with c_stdout_to_stderr(not settings.verbose):  # C-level solver prints stay off stdout
                results = opt.solve(m, **kwargs)
        except Exception as exc:  # solver plugins raise anything: one line, naming the solver
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise SolverError(f"pyomo:{self.solver}: {detail}") from None
        stats["solve_seconds"] = time.perf_counter() - start - stats["build_seconds"]
        tc = str(results.solver.termination_condition)
        stats["termination"] = tc
        run = MilpRun(tc, self.limit_text(settings, tc) if tc in ("maxTimeLimit", "userInterrupt") else tc,
                      bound=_number(getattr(results.problem, "lower_bound", None)), scale=scale, constant=constant, stats=stats)
        if len(results.solution) > 0:
            import logging

            from pyomo.common.log import LoggingIntercept

            with LoggingIntercept(level=logging.WARNING, module="pyomo"):  # "loading an 'aborted' result": expected after a time limit
                m.solutions.load_from(results)
            values = np.array([m.x[i].value if m.x[i].value is not None else np.nan for i in range(model.num_items)])
            if not np.isnan(values).any():
                run.values, run.assignment_value = values, float(pe.value(m.objective))
                run.objective = _number(getattr(results.problem, "upper_bound", None))
        return run

def _warm_start_capable(opt) -> bool:
    try:
        return bool(opt.warm_start_capable())
    except Exception:
        return False


def _number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and abs(value) < 1e99 else None


@dataclass
class PyomoMapping:
    """Turns a solved :func:`to_pyomo` model back into an assignment (``mapping(m)``)."""

    model: CanonicalModel

    def indices(self, m) -> np.ndarray:
        """Option index per layer from the values of ``m.x``."""
        values = np.array([m.x[i].value if m.x[i].value is not None else 0.0 for i in range(self.model.num_items)])
        return self.model.expand(items_from_values(self.model, values))

    def __call__(self, m) -> dict[str, str]:
        """``{layer: option label}`` from the values of ``m.x``."""
        return self.model.problem.to_labels(self.indices(m))

    def variable(self, layer: str, label: str):
        """The binary ``m.x`` index meaning ``layer`` takes option ``label`` (None if the reductions
        fixed that layer: tied to a fixed layer, masked to one option, or fixed)."""
        problem = self.model.problem
        group = int(problem.layer_group[problem.layer_index(layer)])
        option = problem.option_index(label)
        hit = np.nonzero((self.model.free_groups[self.model.item_group] == group) & (self.model.item_option == option))[0]
        return int(hit[0]) if hit.size else None


def to_pyomo(problem: Problem, budgets: Mapping[str, Any] | None = None):
    """``(pyomo model, mapping)`` of ``problem`` under ``budgets`` (the problem's own by default).

    The model's objective is the user's objective (offset of fixed layers included); no option is
    pruned, so constraints you add stay meaningful. ``mapping(m)`` reads ``m.x`` after a solve.

    >>> import pytest; _ = pytest.importorskip("pyomo")
    >>> import pyomo.environ as pe
    >>> from mpqopt import to_pyomo
    >>> from mpqopt.synthetic import mckp_problem
    >>> m, mapping = to_pyomo(mckp_problem(6, 3, seed=0))
    >>> _ = pe.SolverFactory("appsi_highs").solve(m)
    >>> sorted(mapping(m)) == sorted(mckp_problem(6, 3, seed=0).layers)
    True
    """
    limits = resolve_budgets(problem, budgets, base=problem.budgets)
    model = canonicalize(problem, limits, prune=False)
    linear = linearize(model) if model.quadratic is not None else None
    cost = model.value if linear is None else np.concatenate([model.value, linear.pair_cost])
    return build_model(model, linear, np.asarray(cost, dtype=np.float64), model.offset), PyomoMapping(model)
