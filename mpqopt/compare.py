"""Run several backends on one problem and put their answers side by side.

``compare`` solves the same problem at the same budgets with each solver, keeps going when a backend
is not installed or its licence refuses the model (that row says so), and checks the answers against
each other: every proven bound must lie below every objective any solver found, and no verified
assignment may exist where a solver claimed the budgets infeasible.

>>> import mpqopt
>>> p = mpqopt.Problem(["a", "b"], [4, 8], [[0.5, 0.0], [0.1, 0.0]], costs={"size_bits": [[4, 8], [4, 8]]})
>>> c = mpqopt.compare(p, ["mckp", "greedy"], {"size_bits": 12})
>>> [(r["solver"], r["status"], r["objective"], r["consistent"]) for r in c.records]
[('mckp', 'optimal', 0.1, True), ('greedy', 'feasible', 0.1, True)]
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .arguments import check_solver, validated_arguments
from .budgets import resolve_budgets
from .errors import ArgumentError, MpqoptError, SolverError, SolverUnavailableError
from .problem import Problem
from .report import DASH, fmt_gap, fmt_num, fmt_time, format_table
from .result import Result, relative_gap
from .solve import Diagnoses, solve_with
from .solvers import backend_class

CONSISTENCY_RTOL = 1e-9  # an objective may lie this far (relative) below another solver's bound: round-off


def default_solvers(problem: Problem) -> tuple[str, ...]:
    """The project's exact engine, HiGHS and a fast heuristic for this kind of problem."""
    return ("auto", "highs", "greedy") if problem.is_separable else ("auto", "highs", "local")


def check_solver_names(solvers: Sequence[str] | str) -> list[str]:
    """The solver names in order, without repeats; a SolverError (listing the known ones) for an
    unknown name or a malformed argument such as ``gurobi:foo``. ``"a,b"`` is read as two names.
    A backend that is merely not installed passes: :func:`compare` gives it an ``unavailable`` row."""
    if isinstance(solvers, str):
        names = [s.strip() for s in solvers.split(",")]
    elif isinstance(solvers, Sequence):
        names = [check_solver(s, "solvers").strip() for s in solvers]
    else:
        raise ArgumentError(f"solvers must be a list of backend names or 'a,b,...', got {solvers!r}")
    names = list(dict.fromkeys(n for n in names if n))
    if not names:
        raise SolverError("no solver to compare; name at least one (see `mpqopt solvers`)")
    for name in names:
        if name == "auto":
            continue
        cls = backend_class(name)
        if not cls.available():
            continue  # its package is missing: an 'unavailable' row, and nothing to check the argument with
        _, _, arg = name.partition(":")
        try:
            cls(arg or None)  # rejects a malformed argument such as 'gurobi:foo'
        except SolverUnavailableError:
            pass  # e.g. 'pyomo:glpk' without glpk: an 'unavailable' row, not bad input
    return names


def contradictions(records: Sequence[Mapping[str, Any]], scale: float = 0.0, rtol: float = CONSISTENCY_RTOL) -> list[dict[str, Any]]:
    """Pairs of records that cannot both be right: an objective below another solver's proven bound
    by more than ``rtol`` (relative to the larger magnitude, or to ``scale``, the size of the terms the
    objective sums), or an assignment where another solver reported the budgets infeasible.

    Each record needs ``solver``, ``status``, ``objective`` and ``bound`` (None when absent).

    >>> contradictions([{"solver": "a", "status": "optimal", "objective": 1.0, "bound": 1.0},
    ...                 {"solver": "b", "status": "feasible", "objective": 0.5, "bound": None}])
    [{'solver': 'b', 'objective': 0.5, 'against': 'a', 'bound': 1.0, 'reason': 'objective below proven bound'}]
    """
    found = []
    for rec in records:
        obj = rec.get("objective")
        if obj is None:
            continue
        for other in records:
            if other is rec:
                continue
            if other.get("status") == "infeasible":
                found.append({"solver": rec["solver"], "objective": obj, "against": other["solver"], "bound": None,
                              "reason": "assignment found where the other reported the budgets infeasible"})
                continue
            bound = other.get("bound")
            if bound is not None and obj < bound - rtol * max(abs(obj), abs(bound), scale):
                found.append({"solver": rec["solver"], "objective": obj, "against": other["solver"], "bound": bound,
                              "reason": "objective below proven bound"})
    return found


@dataclass
class Comparison:
    """What :func:`compare` returns: one record (a dict) per solver, in the order asked for."""

    records: list[dict[str, Any]]
    budgets: dict[str, float] = field(default_factory=dict)
    best_objective: float | None = None
    best_bound: float | None = None
    contradictions: list[dict[str, Any]] = field(default_factory=list)
    repeat: int = 1

    @property
    def consistent(self) -> bool:
        return not self.contradictions

    @property
    def any_assignment(self) -> bool:
        return any(r["objective"] is not None for r in self.records)

    def to_dict(self) -> dict[str, Any]:
        return {"budgets": self.budgets, "best_objective": self.best_objective, "best_bound": self.best_bound,
                "consistent": self.consistent, "contradictions": self.contradictions, "repeat": self.repeat,
                "records": self.records}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def table(self) -> str:
        """One row per solver (status, objective, bound, gap, median time, distance to the best,
        relative slack of each budget), then the messages and any contradiction."""
        names = list(self.budgets)
        headers = ["solver", "status", "objective", "bound", "gap", "time", "vs best", "ok"] + [f"slack {n}" for n in names] + ["proof"]
        rows = []
        for r in self.records:
            time_s = DASH if r["time_s"] is None else fmt_time(r["time_s"])
            ok = DASH if r["objective"] is None and r["bound"] is None else ("yes" if r["consistent"] else "NO")
            slack = [DASH if r["slack"].get(n) is None else f"{100 * r['slack'][n]:.2f}%" for n in names]
            rows.append([r["solver"], r["status"], fmt_num(r["objective"], 10), fmt_num(r["bound"], 10), fmt_gap(r["gap"]),
                         time_s, fmt_gap(r["rel_diff"]), ok] + slack + [r["proof"] or DASH])
        lines = format_table(headers, rows, right=range(2, 7 + len(names) + 1))
        lines.append(f"best objective {fmt_num(self.best_objective, 10)}   best bound {fmt_num(self.best_bound, 10)}"
                     + (f"   (median of {self.repeat} runs)" if self.repeat > 1 else ""))
        for r in self.records:
            if r["status"] in ("unavailable", "error", "infeasible", "time_limit") and r["message"]:
                named = r["message"].startswith(f"{r['solver']}:")  # the backend's message may name itself already
                lines.append(r["message"] if named else f"{r['solver']}: {r['message']}")
        for c in self.contradictions:
            against = "" if c["bound"] is None else f" {fmt_num(c['bound'], 12)}"
            lines.append(f"CONTRADICTION: {c['solver']} objective {fmt_num(c['objective'], 12)} vs {c['against']}{against}: {c['reason']}")
        return "\n".join(lines)

    def to_pandas(self) -> Any:
        """The records as a pandas DataFrame, one row per solver (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise MpqoptError("Comparison.to_pandas() needs pandas, which is not installed: pip install pandas") from None
        return pd.DataFrame.from_records(self.records)

    @property
    def frame(self) -> Any:
        """Alias of :meth:`to_pandas`."""
        return self.to_pandas()


def compare(
    problem: Problem,
    solvers: Sequence[str] | str | None = None,
    budgets: Mapping[str, Any] | None = None,
    *,
    time_limit: float | None = None,
    mip_gap: float = 0.0,
    repeat: int = 1,
) -> Comparison:
    """Solve ``problem`` with each of ``solvers`` (default :func:`default_solvers`) at ``budgets``,
    ``repeat`` times each, and compare the answers.

    A backend that is not installed gives a row with status ``unavailable`` and the install hint; one
    that fails (licence refusal, a pairwise problem for a separable-only backend) a row with status
    ``error`` and its one-line message. An unknown solver name or a bad budget raises at once.

    Each record: ``solver``, ``label`` (the backend that ran), ``status``, ``objective``, ``bound``,
    ``gap``, ``time_s`` (median of ``times``), ``times``, ``rel_diff`` (objective's relative distance
    above the best objective, Result.gap's convention), ``consistent`` (in no contradiction, see
    :func:`contradictions`), ``slack`` (budget name -> least (limit - total) / |limit| over the runs),
    ``proof`` and ``message``. Details of the first run are reported; only times are aggregated.
    """
    if not isinstance(problem, Problem):
        raise MpqoptError(f"compare() needs an mpqopt.Problem, got {type(problem).__name__}")
    if isinstance(repeat, bool) or not (isinstance(repeat, int) and repeat >= 1):
        raise ArgumentError(f"repeat must be a whole number >= 1, got {repeat!r}")
    checked = validated_arguments(time_limit=time_limit, mip_gap=mip_gap)
    time_limit, mip_gap = checked.time_limit, checked.mip_gap
    names = check_solver_names(default_solvers(problem) if solvers is None else solvers)
    limits = resolve_budgets(problem, budgets, base=problem.budgets)  # once: a bad budget fails here, not per row
    # every solve gets the resolved numbers (resolving them again is the identity); None keeps a
    # default budget of the problem's that ``budgets`` removed from coming back
    resolved = {**dict.fromkeys(problem.budgets), **limits}
    diagnoses: Diagnoses = {}  # infeasible budgets are diagnosed once, not once per solver
    records = [_record(problem, name, resolved, time_limit, mip_gap, repeat, diagnoses) for name in names]
    found = [r["objective"] for r in records if r["objective"] is not None]
    bounds = [r["bound"] for r in records if r["bound"] is not None]
    best = min(found, default=None)
    scale = problem.objective_scale
    clash = contradictions(records, scale)
    involved = {c["solver"] for c in clash} | {c["against"] for c in clash}
    for r in records:
        r["rel_diff"] = relative_gap(r["objective"], best, scale)
        r["consistent"] = r["solver"] not in involved
    return Comparison(records, limits, best, max(bounds, default=None), clash, repeat)


def _record(problem: Problem, name: str, budgets: Mapping[str, Any] | None, time_limit: float | None, mip_gap: float, repeat: int, diagnoses: Diagnoses) -> dict[str, Any]:
    record: dict[str, Any] = {"solver": name, "label": name, "status": "", "objective": None, "bound": None, "gap": None,
                              "time_s": None, "times": [], "rel_diff": None, "consistent": True, "slack": {}, "proof": "", "message": ""}
    runs: list[Result] = []
    for _ in range(repeat):
        try:
            runs.append(solve_with(problem, budgets, solver=name, time_limit=time_limit, mip_gap=mip_gap, diagnoses=diagnoses))
        except SolverUnavailableError as exc:
            record.update(status="unavailable", message=str(exc))
            return record
        except MpqoptError as exc:  # e.g. a separable-only backend on a pairwise problem
            record.update(status="error", message=str(exc))
            return record
    first = runs[0]
    times = [r.solve_time_s for r in runs]
    record.update(label=first.solver, status=first.status, objective=first.objective, bound=first.bound, gap=first.gap,
                  times=times, time_s=statistics.median(times), proof=first.proof, message=first.message,
                  slack=_least_slack(runs))
    return record


def _least_slack(runs: Sequence[Result]) -> dict[str, float]:
    """Per budget, the least relative slack over the runs that returned an assignment."""
    out: dict[str, float] = {}
    for run in runs:
        if run.x is None:
            continue
        for name, slack in run.slack.items():
            limit = run.budgets[name]
            rel = slack / abs(limit) if limit else slack  # a zero budget has no scale: absolute slack
            out[name] = min(out.get(name, rel), rel)
    return out
