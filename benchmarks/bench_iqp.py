"""Benchmark mpqopt's cross-layer (IQP) solvers side by side on CLADO-shaped problems.

    python benchmarks/bench_iqp.py [--quick] [--stress] [--cases a,b,c,d] [--noise 0.1,0.3] [--budgets 10]
    python benchmarks/bench_iqp.py --smoke        # tiny check that the script works (seconds)

Instances: ``mpqopt.synthetic.iqp_problem(L, K, seed=0, noise=nu)`` (one size budget), each solved at
``--budgets`` size budgets ``lo + f (hi - lo)``, f in ``np.linspace(0.05, 0.95, n)`` of
``problem.cost_range("size_bits")`` (tight to loose), given as ``mpqopt.solve(problem, budgets=...)``.
All solvers on the same instances in the same process, ``threads=1``, one timed run per solve (after
one untimed warm-up solve per solver on a tiny problem, so imports and licence checks are not timed).

* (a) 52 x 3 (156 binaries), noise 0.1 and 0.3 (plus 0.5 with ``--stress``: reported, no goal), 10 s
  limit: "bnb" (mpqopt's exact branch-and-bound), "highs" (one-hot linearization MILP), "gurobi"
  (nonconvex MIQP, NonConvex=2) and "gurobi:onehot" (exact convexification); Gurobi only when gurobipy
  is installed. Goals per noise level: bnb proves gap <= 1e-6 at every budget within the limit with a
  median <= 1 s, and its median time is within 2x of the fastest Gurobi mode's median.
* (b) 72 x 3 (216 binaries, CLADO's ViT size), noise 0.1 and 0.3: bnb and highs with 60 s limits
  (highs 20 s with ``--quick``); the Gurobi modes are refused by the pip licence (over ~200 quadratic
  variables), recorded as "refused by licence". Goal: bnb proves gap <= 1e-6 within 60 s at every budget.
* (c) 200 x 4 (800 binaries), noise 0.1 and 0.3, 5 budgets: bnb with issue 19's 60 s (best assignment
  and its gap; the issue asks for gap <= 1 % within it) and, with 10 s limits, the heuristics "local", "anneal", "csq" (no proof; the gap shown is against the bound
  they carry, else against bnb's bound). Goal: bnb returns a feasible assignment within the limit (5 % slack for the stop check and
  verification) at every budget; its gap is reported.
* (d) CLADO's pipeline re-created on the (a) and (b) instances: the proxy matrix Omega +
  diag(sensitivity) with its negative eigenvalues clipped to 0 (``convexify.psd_projection``),
  minimised exactly ("gurobi:psd" where the licence allows, else "bnb" on a Problem carrying the
  projected matrix), its answer evaluated on the original objective and compared with mpqopt's proven
  optimum (relative excess). For context only (another machine and matrix), the solve times CLADO
  logged (ViT, 216 binaries, cvxpy + Gurobi) are summarised from ``../shared/peers``.

``--quick`` uses 4 budgets per case. Per solve: status, objective, bound, gap, time, nodes, proof,
message. Writes ``results/iqp.json`` and ``results/iqp.md``. Exit status 1 if solvers contradict each
other (an objective below another solver's proven bound by more than 1e-9 relative, or two proven
optima that differ), as in ``bench_mckp.py``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness, when this file is loaded by path
from harness import (  # noqa: E402
    AGREE_RTOL, DEFAULT_PEERS, RESULTS, available, compare_rows, describe, exit_status, fmt, hit_limit, machine, report_head, row_by, stopwatch,
    write_results,
)

import mpqopt  # noqa: E402
from mpqopt.reductions import canonicalize  # noqa: E402
from mpqopt.reductions.convexify import psd_projection  # noqa: E402
from mpqopt.synthetic import iqp_problem  # noqa: E402

COST = "size_bits"
GUROBI = ("gurobi", "gurobi:onehot")
REFUSED = "refused by licence"
LICENCE_TEXT = "licence refused"  # in the SolverError message of mpqopt's Gurobi backend (errno 10010)
PROVEN_GAP = 1e-6
LIMIT_SLACK = 1.05  # "within the limit": the stop check and the verification run a little past it
CLADO_LOGS = "clado_vit_iqp_solve_times.json"
ISSUE_B_SECONDS = 10.0  # issue 19: 72 x 3 at noise 0.3 proven at every budget within this
ISSUE_C = (0.01, 60.0)  # issue 19: 200 x 4 proven within 1 % in 60 s


def case_specs(quick: bool, smoke: bool) -> dict[str, dict[str, Any]]:
    """Per case: what it compares, size, solvers with their time limits (seconds) and the most budgets it takes."""
    specs = {
        "a": {"what": "exact solvers", "L": 52, "K": 3, "most": None,
              "solvers": {"bnb": 10.0, "highs": 10.0, "gurobi": 10.0, "gurobi:onehot": 10.0}},
        "b": {"what": "exact solvers (CLADO's ViT size)", "L": 72, "K": 3, "most": None,
              "solvers": {"bnb": 60.0, "highs": 20.0 if quick else 60.0, "gurobi": 60.0, "gurobi:onehot": 60.0}},
        "c": {"what": "bnb under a time limit vs heuristics", "L": 200, "K": 4, "most": 5,
              "solvers": {"bnb": ISSUE_C[1], "local": 10.0, "anneal": 10.0, "csq": 10.0}},
    }
    if smoke:  # tiny instances, 5 s limits: only checks that every path of the script runs
        for spec in specs.values():
            spec["L"] = 12
            spec["solvers"] = dict.fromkeys(spec["solvers"], 5.0)
    for spec in specs.values():
        spec["title"] = f"{spec['L']} x {spec['K']} ({spec['L'] * spec['K']} binaries): {spec['what']}"
    return specs


# ---------------------------------------------------------------------------------- one solve
def run_one(problem: mpqopt.Problem, budget: float, solver: str, limit: float) -> tuple[dict[str, Any], mpqopt.Result | None]:
    """Solve at ``size_bits <= budget`` (threads=1); never raises: errors become the row's status."""
    row: dict[str, Any] = {"solver": solver, "time_limit_s": limit}
    start = time.perf_counter()
    try:
        result = mpqopt.solve(problem, budgets={COST: budget}, solver=solver, threads=1, time_limit=limit)
    except Exception as exc:  # a work-in-progress backend must not stop the other rows
        return row | {"status": "error", "time_s": time.perf_counter() - start, "message": f"{type(exc).__name__}: {exc}"}, None
    elapsed = time.perf_counter() - start
    refused = result.status == "error" and LICENCE_TEXT in result.message
    row |= {"status": REFUSED if refused else result.status, "objective": result.objective, "bound": result.bound,
            "gap": result.gap, "time_s": elapsed, "nodes": result.stats.get("nodes"), "proof": result.proof, "message": result.message}
    if not refused and elapsed > 1.1 * limit + 1.0:
        row["note"] = f"overshot the {limit:g} s limit: {elapsed:.1f} s"
    return row, result


def optima_disagree(rows: list[dict[str, Any]]) -> list[str]:
    """Two rows claiming optimality whose objectives differ by more than either one's gap allows
    (``compare_rows`` catches this already when both carry a bound; this covers rows without one)."""
    proven = [r for r in rows if r.get("status") == "optimal" and r.get("objective") is not None]
    out = []
    for a, b in itertools.combinations(proven, 2):
        low, high = sorted((a, b), key=lambda r: r["objective"])
        allowed = max(high.get("gap") or 0.0, AGREE_RTOL) * max(abs(high["objective"]), 1e-12)
        if high["objective"] - low["objective"] > allowed:
            out.append(f"{high['solver']} claims optimum {high['objective']!r}, but {low['solver']} found {low['objective']!r}")
    return out


def warm_up(solvers: set[str], K: int) -> None:
    """One untimed solve per solver on a tiny problem: imports, licence checks, first-call caches."""
    tiny = iqp_problem(8, K, seed=1)
    for solver in sorted(solvers):
        if available(solver) is None:
            try:
                mpqopt.solve(tiny, solver=solver, threads=1, time_limit=5.0)
            except Exception:  # reported when the real rows run
                pass


# ---------------------------------------------------------------------------------- cases (a)-(c)
def fractions(n: int) -> list[float]:
    return [float(f) for f in np.linspace(0.05, 0.95, n)]


def solver_case(key: str, spec: Mapping[str, Any], noises: list[float], n_budgets: int) -> dict[str, Any]:
    """Every solver of ``spec`` at every budget of every noise level; per point the rows and contradictions."""
    print(f"({key}) {spec['title']}", flush=True)
    missing = {s: available(s) for s in spec["solvers"]}
    instances = []
    for noise in noises:
        build_s, problem = stopwatch(lambda: iqp_problem(spec["L"], spec["K"], seed=0, noise=noise))
        lo, hi = problem.cost_range(COST)
        refused: dict[str, str] = {}  # the licence refuses every budget alike: ask once per instance
        points = []
        for f in fractions(n_budgets):
            budget = lo + f * (hi - lo)
            rows = []
            for solver, limit in spec["solvers"].items():
                if missing[solver]:
                    rows.append({"solver": solver, "status": "not available", "note": missing[solver]})
                    continue
                if solver in refused:
                    rows.append({"solver": solver, "status": REFUSED, "message": refused[solver], "note": "not retried (refused at the first budget)"})
                    continue
                row, _ = run_one(problem, budget, solver, limit)
                if row["status"] == REFUSED:
                    refused[solver] = row["message"]
                rows.append(row)
                print(f"    nu={noise:g} f={f:.2f} {describe(row)}", flush=True)
            points.append({"fraction": f, "budget": budget, "rows": rows, "contradictions": compare_rows(rows) + optima_disagree(rows)})
        instances.append({"noise": noise, "call": f"iqp_problem({spec['L']}, {spec['K']}, seed=0, noise={noise:g})",
                          "cost_range": [lo, hi], "build_s": build_s, "points": points})
    return {"key": key, "title": spec["title"], "layers": spec["L"], "options": spec["K"], "time_limits_s": dict(spec["solvers"]),
            "instances": instances, "contradictions": [c for i in instances for p in i["points"] for c in p["contradictions"]]}


def instance(case: Mapping[str, Any], noise: float) -> dict[str, Any] | None:
    return next((i for i in case["instances"] if i["noise"] == noise), None)


def summary(inst: Mapping[str, Any], solver: str) -> dict[str, Any]:
    """Medians and maxima of one solver over an instance's budgets."""
    rows = [row_by(p["rows"], solver) for p in inst["points"]]
    timed = [r for r in rows if r and r.get("time_s") is not None and r["status"] != REFUSED]
    gaps = [r.get("gap") if r.get("gap") is not None else r.get("vs_best_bound") for r in timed]
    gaps = [g for g in gaps if g is not None]
    times = [r["time_s"] for r in timed]
    out = {"solver": solver, "runs": len(timed), "budgets": len(rows),
           "proven": sum(1 for r in timed if r.get("gap") is not None and r["gap"] <= PROVEN_GAP and r["time_s"] <= LIMIT_SLACK * r["time_limit_s"]),
           "feasible": sum(1 for r in timed if r.get("objective") is not None),
           "at_limit": sum(1 for r in timed if hit_limit(r)),
           "median_s": statistics.median(times) if times else None, "max_s": max(times, default=None),
           "median_gap": statistics.median(gaps) if gaps else None, "max_gap": max(gaps, default=None)}
    if not timed:
        out["status"] = next((r["status"] for r in rows if r), "not run")
    return out


# ---------------------------------------------------------------------------------- case (d): CLADO's pipeline
def clado_projected(problem: mpqopt.Problem) -> mpqopt.Problem:
    """The same problem with CLADO's PSD-projected objective ``x^T P x``: P is the proxy matrix
    ``Omega + diag(sensitivity)`` with its negative eigenvalues clipped to 0.

    ``convexify.psd_projection`` does the projection on the canonical model, whose
    ``quadratic + diag(value)`` is exactly that matrix here (no ties, fixed layers or masks; Omega
    symmetric with zero same-layer blocks, as ``iqp_problem`` makes it); P goes back to (layer, option)
    indices as the new pairwise matrix, the sensitivity becomes 0 (its part is P's diagonal).
    """
    L, K = problem.num_layers, problem.num_options
    model = canonicalize(problem, problem.budgets)
    if model.num_groups != L or model.num_items != L * K or model.offset != 0.0:
        raise ValueError("clado_projected needs every layer and option free (no ties, fixed layers or masks)")
    conv = psd_projection(model)
    flat = model.free_groups[model.item_group] * K + model.item_option
    P = np.zeros((L * K, L * K))
    P[np.ix_(flat, flat)] = conv.quadratic
    projected = problem.replace(sensitivity=np.zeros((L, K)), pairwise=P, meta={**problem.meta, "clado_psd_projection": conv.note})
    items = model.group_start[:-1]  # guard: the Problem's objective is the projected one
    if abs(projected.evaluate(model.expand(items)).objective - conv.objective(items)) > 1e-9 * max(problem.objective_scale, 1.0):
        raise RuntimeError("clado_projected: the projected Problem does not reproduce psd_projection's objective")
    return projected


def clado_case(specs: Mapping[str, Mapping[str, Any]], cases: Mapping[str, Any], noises: list[float], n_budgets: int) -> dict[str, Any]:
    """(d): CLADO's projected IQP solved exactly, scored on the original objective against mpqopt's optimum."""
    key, title = "d", "CLADO's pipeline (PSD projection, solved exactly) scored on the original objective"
    print(f"({key}) {title}", flush=True)
    gurobi_missing = available("gurobi:psd")
    rows, contradictions = [], []
    for source in ("a", "b"):
        spec = specs[source]
        limit = spec["solvers"]["bnb"]
        for noise in noises:
            problem = iqp_problem(spec["L"], spec["K"], seed=0, noise=noise)
            projection_s, projected = stopwatch(lambda: clado_projected(problem))
            lo, hi = problem.cost_range(COST)
            pipeline = "bnb on the projected problem" if gurobi_missing else "gurobi:psd"
            note = "gurobipy not installed" if gurobi_missing else ""
            done = instance(cases[source], noise) if source in cases else None
            for i, f in enumerate(fractions(n_budgets)):
                budget = lo + f * (hi - lo)
                if pipeline == "gurobi:psd":
                    row, result = run_one(problem, budget, "gurobi:psd", limit)
                    if row["status"] == REFUSED:
                        pipeline, note = "bnb on the projected problem", "gurobi:psd refused by the licence"
                if pipeline != "gurobi:psd":
                    row, result = run_one(projected, budget, "bnb", limit)
                    row["time_s"] += projection_s  # CLADO projects, then solves
                # the reference: this budget's rows of case (a)/(b), else a bnb solve now
                ref_rows = done["points"][i]["rows"] if done else [run_one(problem, budget, "bnb", limit)[0]]
                out = clado_row(problem, source, spec, noise, f, pipeline, note, row, result, ref_rows)
                out["projection_s"] = projection_s
                rows.append(out)
                contradictions += out.pop("contradictions")
                print(f"    ({source}) {spec['L']}x{spec['K']} nu={noise:g} f={f:.2f} {pipeline}: {out['pipeline_status']}, "
                      f"excess {fmt(out['excess'], '.2e')}, {out['time_s']:.2f} s", flush=True)
    return {"key": key, "title": title, "rows": rows, "contradictions": contradictions}


def clado_row(problem, source, spec, noise, f, pipeline, note, row, result, ref_rows) -> dict[str, Any]:
    solved = [r for r in ref_rows if r.get("objective") is not None]
    best = min(solved, key=lambda r: r["objective"], default=None)
    bound = max((r["bound"] for r in ref_rows if r.get("bound") is not None), default=None)
    bnb = row_by(ref_rows, "bnb")
    out = {"case": source, "size": f"({source}) {spec['L']} x {spec['K']}", "noise": noise, "fraction": f, "pipeline": pipeline, "note": note,
           "pipeline_status": row["status"], "projected_status": None, "time_s": row["time_s"], "objective": None,
           "optimum": None if best is None else best["objective"], "optimum_proven": any(r["status"] == "optimal" for r in ref_rows),
           "optimum_by": None if best is None else best["solver"], "bound": bound,
           "mpqopt_time_s": None if bnb is None else bnb.get("time_s"), "excess": None, "contradictions": []}
    if result is None or result.x is None:
        out["message"] = row.get("message", "")
        return out
    # projected status: Gurobi's own (on the projected objective) or bnb's on the projected Problem
    out["projected_status"] = result.stats.get("gurobi_status", result.status) if pipeline == "gurobi:psd" else result.status
    out["objective"] = original = problem.evaluate(result.x).objective
    if best is not None:
        out["excess"] = (original - best["objective"]) / max(abs(best["objective"]), 1e-12)
    if bound is not None and original < bound - AGREE_RTOL * max(abs(bound), 1e-12):
        out["contradictions"].append(f"(d) {out['size']} nu={noise:g} f={f:.2f}: CLADO's assignment has objective {original!r} "
                                     f"below the proven bound {bound!r}: that proof is wrong")
    return out


def clado_logs(peers: Path) -> dict[str, Any]:
    """How long CLADO's own Gurobi solves took (context only: another machine, a real ViT matrix)."""
    path = peers / CLADO_LOGS
    if not path.is_file():
        return {"note": f"skipped: peer data not found at {path} (../shared/peers beside the repository)"}
    raw = json.loads(path.read_text())
    logs = []
    for name, runs in raw["runs"].items():
        times = [r["solve_time_s"] for r in runs if r.get("solve_time_s") is not None]
        logs.append({"log": name, "runs": len(runs), "hit_time_limit": sum(r["status"] == "user_limit" for r in runs),
                     "median_s": statistics.median(times), "max_s": max(times)})
    return {"source": raw["source"]["repo"], "setup": raw["solver_setup_in_source"], "logs": logs}


# ---------------------------------------------------------------------------------- goals
def goal(text: str, met: bool | None, measured: str) -> dict[str, Any]:
    return {"goal": text, "status": {True: "met", False: "NOT met", None: "not measured"}[met], "measured": measured}


def proof_goal(case: Mapping[str, Any] | None, key: str, noise: float, limit: float, median_max: float | None, source: str = "") -> dict[str, Any]:
    """Every budget proven within ``limit`` seconds (the slowest counts, not the solver's own
    limit), with the median at most ``median_max`` where given."""
    text = f"({key}) nu={noise:g}: bnb proves gap <= {PROVEN_GAP:g} at every budget within {limit:g} s"
    text += (f", median <= {median_max:g} s" if median_max is not None else "") + source
    inst = instance(case, noise) if case else None
    if inst is None:
        return goal(text, None, "case not run")
    s = summary(inst, "bnb")
    if not s["runs"]:
        return goal(text, None, s.get("status", ""))
    met = s["proven"] == s["budgets"] and s["max_s"] <= limit and (median_max is None or s["median_s"] <= median_max)
    return goal(text, met, f"{s['proven']}/{s['budgets']} proven, median {s['median_s']:.3f} s, max {s['max_s']:.3f} s, max gap {fmt(s['max_gap'], '.1e')}")


def gurobi_goal(case: Mapping[str, Any] | None, noise: float) -> dict[str, Any]:
    text = f"(a) nu={noise:g}: bnb median time within 2x of the fastest Gurobi mode's median"
    inst = instance(case, noise) if case else None
    if inst is None:
        return goal(text, None, "case not run")
    ours = summary(inst, "bnb")
    modes = [s for s in (summary(inst, g) for g in GUROBI) if s["runs"] == s["budgets"] and s["median_s"] is not None]
    if ours["median_s"] is None or not modes:
        return goal(text, None, "not measured (gurobipy not installed or refused)")
    fastest = min(modes, key=lambda s: s["median_s"])
    ratio = ours["median_s"] / fastest["median_s"]
    capped = f", {fastest['at_limit']}/{fastest['runs']} of its runs at the limit" if fastest["at_limit"] else ""
    return goal(text, ratio <= 2.0, f"bnb {ours['median_s']:.3f} s / {fastest['solver']} {fastest['median_s']:.3f} s = {ratio:.2f}x{capped}")


def feasible_goal(case: Mapping[str, Any] | None, noise: float, limit: float) -> dict[str, Any]:
    text = f"(c) nu={noise:g}: bnb returns a feasible assignment within {limit:g} s at every budget (gap reported)"
    inst = instance(case, noise) if case else None
    if inst is None:
        return goal(text, None, "case not run")
    s = summary(inst, "bnb")
    rows = [row_by(p["rows"], "bnb") for p in inst["points"]]
    ok = sum(1 for r in rows if r and r.get("objective") is not None and r["time_s"] <= LIMIT_SLACK * r["time_limit_s"])
    return goal(text, ok == len(rows), f"{ok}/{len(rows)} feasible in time, max {fmt(s['max_s'], '.2f')} s; "
                f"gap median {fmt(s['median_gap'], '.2e')}, max {fmt(s['max_gap'], '.2e')} ({s['proven']} proven optimal)")




def issue_goals(cases: Mapping[str, Any], noises: list[float]) -> list[dict[str, Any]]:
    """Issue 19's IQP goals, stricter than the rows above: (b) at noise 0.3 within 10 s, and (c)
    within 1 % in 60 s (shorter runs, as with --smoke, can only show it as not reached yet)."""
    out = [proof_goal(cases.get("b"), "b", 0.3, ISSUE_B_SECONDS, None, " (issue 19)")] if 0.3 in noises else []
    gap, seconds = ISSUE_C
    for noise in noises:
        text = f"(c) nu={noise:g}: bnb proves gap <= {gap:g} at every budget within {seconds:g} s (issue 19)"
        inst = instance(cases["c"], noise) if cases.get("c") else None
        if inst is None:
            out.append(goal(text, None, "case not run"))
            continue
        s = summary(inst, "bnb")
        limits = {r["time_limit_s"] for r in (row_by(p["rows"], "bnb") for p in inst["points"]) if r}
        within = s["max_gap"] is not None and s["max_gap"] <= gap and s["max_s"] <= seconds
        # runs shorter than the goal's time that stay above its gap say nothing about 60 s
        met = True if within else (False if limits and min(limits) >= seconds else None)
        out.append(goal(text, met, f"runs of {', '.join(f'{x:g}' for x in sorted(limits))} s here: gap median "
                                   f"{fmt(s['median_gap'], '.2e')}, max {fmt(s['max_gap'], '.2e')}"))
    return out


# ---------------------------------------------------------------------------------- output
def cell(r: Mapping[str, Any] | None) -> str:
    """'time / gap' ('(gap)': against another solver's bound, for rows without their own), or the status."""
    if r is None:
        return ""
    if r["status"] in ("not available", REFUSED) or r.get("time_s") is None:
        return "n/a" if r["status"] == "not available" else r["status"]
    gap = r.get("gap")
    if gap is not None:
        text = "0" if gap == 0 else f"{gap:.1e}"
    elif r.get("vs_best_bound") is not None:
        text = f"({max(r['vs_best_bound'], 0.0):.1e})"
    else:
        text = "—"
    tag = "" if r["status"] == "optimal" else f" {r['status']}"
    tag += " **WRONG**" if r.get("wrong_bound") else ""
    return f"{r['time_s']:.2f} / {text}{tag}"


def case_markdown(case: Mapping[str, Any]) -> list[str]:
    solvers = list(case["time_limits_s"])
    limits = ", ".join(f"{s} {t:g} s" for s, t in case["time_limits_s"].items())
    lines = ["", f"## ({case['key']}) {case['title']}", "", f"Time limits: {limits}. Cells: time (s) / gap (status when not optimal).", ""]
    for inst in case["instances"]:
        lo, hi = inst["cost_range"]
        lines += [f"`{inst['call']}`: size range {lo:.6g} .. {hi:.6g} bits, built in {inst['build_s']:.2f} s.", "",
                  "| budget f | budget (bits) | " + " | ".join(solvers) + " | best objective |", "|---:|---:|" + "---|" * len(solvers) + "---:|"]
        for p in inst["points"]:
            best = min((r["objective"] for r in p["rows"] if r.get("objective") is not None), default=None)
            lines.append(f"| {p['fraction']:.2f} | {p['budget']:.6g} | " + " | ".join(cell(row_by(p["rows"], s)) for s in solvers) + f" | {fmt(best, '.10g')} |")
        lines.append("")
    lines += ["| solver | noise | runs | proven (gap <= 1e-6) | feasible | at limit | median s | max s | median gap | max gap |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for inst in case["instances"]:
        for s in (summary(inst, solver) for solver in solvers):
            if not s["runs"]:
                lines.append(f"| {s['solver']} | {inst['noise']:g} | 0 | {s.get('status', '')} | | | | | | |")
                continue
            lines.append(f"| {s['solver']} | {inst['noise']:g} | {s['runs']} | {s['proven']} | {s['feasible']} | {s['at_limit']} | "
                         f"{s['median_s']:.3f} | {s['max_s']:.3f} | {fmt(s['median_gap'], '.1e')} | {fmt(s['max_gap'], '.1e')} |")
    notes = {r["solver"]: r.get("message") or r.get("note") for i in case["instances"] for p in i["points"] for r in p["rows"]
             if r["status"] in ("not available", REFUSED, "error")}
    lines += [""] + [f"{s}: {n}" for s, n in notes.items()]
    lines += [f"\n**CONTRADICTION**: {c}" for c in case["contradictions"]]
    return lines


def clado_markdown(case: Mapping[str, Any], logs: Mapping[str, Any] | None) -> list[str]:
    lines = ["", f"## (d) {case['title']}", "",
             "Objective of CLADO's answer on the original objective vs the best objective any exact solver found on the "
             "same instance (proven optimal unless marked); excess = (CLADO - optimum) / |optimum|. CLADO time includes the "
             "projection; 'mpqopt' is bnb's time on the original problem.", "",
             "| size | noise | budget f | pipeline | solve status (projected objective) | CLADO time s | CLADO objective | optimum | excess | mpqopt s |",
             "|---|---:|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in case["rows"]:
        opt = fmt(r["optimum"], ".10g") + ("" if r["optimum_proven"] else " (not proven)")
        lines.append(f"| {r['size']} | {r['noise']:g} | {r['fraction']:.2f} | {r['pipeline']} | {r['projected_status'] or r['pipeline_status']} | "
                     f"{r['time_s']:.2f} | {fmt(r['objective'], '.10g')} | {opt} | {fmt(r['excess'], '.2e')} | {fmt(r['mpqopt_time_s'], '.2f')} |")
    lines += ["", "| size | noise | budgets | CLADO answer optimal | median excess | max excess |", "|---|---:|---:|---:|---:|---:|"]
    for (size, noise), group in itertools.groupby(case["rows"], key=lambda r: (r["size"], r["noise"])):
        ex = [r["excess"] for r in group if r["excess"] is not None]
        if ex:
            lines.append(f"| {size} | {noise:g} | {len(ex)} | {sum(e <= PROVEN_GAP for e in ex)} | {statistics.median(ex):.2e} | {max(ex):.2e} |")
    lines += sorted({f"\nNote ({r['size']}): {r['note']}" for r in case["rows"] if r["note"]})
    lines += [f"\n**CONTRADICTION**: {c}" for c in case["contradictions"]]
    if logs is not None:
        lines += ["", "### CLADO's own solve times (context only: another machine and a measured ViT matrix)", ""]
        if "note" in logs:
            lines.append(logs["note"])
        else:
            lines += [f"From {logs['source']} logs ({CLADO_LOGS}), 72 x 3 = 216 binaries, cvxpy + Gurobi on the PSD-projected matrix.", "",
                      "| log | solves | hit the time limit | median s | max s |", "|---|---:|---:|---:|---:|"]
            lines += [f"| {g['log']} | {g['runs']} | {g['hit_time_limit']} | {g['median_s']:.2f} | {g['max_s']:.2f} |" for g in logs["logs"]]
    return lines


def markdown(report: Mapping[str, Any]) -> str:
    lines = report_head("IQP benchmark: mpqopt's cross-layer solvers side by side", report["machine"], [
             f"Mode: {report['mode']}; noise {', '.join(f'{n:g}' for n in report['noise'])}"
             + (f" (+ {report['stress_noise']:g} in (a), no goal)" if report["stress_noise"] else "")
             + f"; budget fractions {', '.join(f'{f:.2f}' for f in fractions(report['budgets']))} of each size range; "
             "single-threaded; wall-clock seconds of `mpqopt.solve`, one timed run per solve."], report["goals"])
    for key in ("a", "b", "c"):
        if key in report["cases"]:
            lines += case_markdown(report["cases"][key])
    if "d" in report["cases"]:
        lines += clado_markdown(report["cases"]["d"], report.get("clado_logs"))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- main
def gurobi_version() -> str | None:
    try:
        import gurobipy

        return ".".join(map(str, gurobipy.gurobi.version()))
    except ImportError:
        return None


def number_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative numbers, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 budgets per case, highs limited to 20 s in (b)")
    parser.add_argument("--stress", action="store_true", help="add noise 0.5 to case (a) (reported, no goal)")
    parser.add_argument("--smoke", action="store_true", help="tiny check that the script runs: 12-layer instances, 2 budgets, 5 s limits")
    parser.add_argument("--cases", default="a,b,c,d", help="cases to run, e.g. 'a,d' (default a,b,c,d)")
    parser.add_argument("--noise", type=number_list, default=[0.1, 0.3], help="noise levels (default 0.1,0.3)")
    parser.add_argument("--budgets", type=int, default=None, help="budgets per instance (default 10; 4 with --quick, 2 with --smoke; (c) at most 5)")
    parser.add_argument("--peers", type=Path, default=DEFAULT_PEERS, help="folder with the peer JSON files (default ../shared/peers)")
    parser.add_argument("--out", type=Path, default=None, help="folder for iqp.json / iqp.md (default benchmarks/results; --smoke: a temp folder)")
    args = parser.parse_args(argv)
    cases_wanted = {c.strip() for c in args.cases.split(",") if c.strip()}
    if not cases_wanted <= set("abcd"):
        parser.error(f"--cases takes a comma-separated subset of a,b,c,d, got {args.cases!r}")
    n = args.budgets or (2 if args.smoke else 4 if args.quick else 10)
    if n < 1:
        parser.error("--budgets must be at least 1")
    out_dir = args.out or (Path(tempfile.gettempdir()) / "mpqopt_bench_iqp_smoke" if args.smoke else RESULTS)
    specs = case_specs(args.quick, args.smoke)
    stress = 0.5 if args.stress and 0.5 not in args.noise else None
    warm_up({s for key in cases_wanted - {"d"} for s in specs[key]["solvers"]} | ({"bnb", "gurobi:psd"} if "d" in cases_wanted else set()), 3)

    cases: dict[str, Any] = {}
    for key in ("a", "b", "c"):
        if key in cases_wanted:
            noises = args.noise + ([stress] if key == "a" and stress is not None else [])
            most = specs[key]["most"]
            cases[key] = solver_case(key, specs[key], noises, min(n, most) if most else n)
    logs = None
    if "d" in cases_wanted:
        cases["d"] = clado_case(specs, cases, args.noise, n)
        logs = clado_logs(args.peers)

    limit = {key: spec["solvers"]["bnb"] for key, spec in specs.items()}
    goals = []
    for noise in args.noise:
        goals += [proof_goal(cases.get("a"), "a", noise, limit["a"], 1.0), gurobi_goal(cases.get("a"), noise)]
    goals += [proof_goal(cases.get("b"), "b", noise, limit["b"], None) for noise in args.noise]
    goals += [feasible_goal(cases.get("c"), noise, limit["c"]) for noise in args.noise]
    goals += issue_goals(cases, args.noise)
    host = machine()
    host["versions"]["gurobipy"] = gurobi_version()
    report = {"benchmark": "iqp", "mode": "smoke" if args.smoke else "quick" if args.quick else "full", "threads": 1,
              "budgets": n, "noise": args.noise, "stress_noise": stress, "machine": host, "goals": goals,
              "cases": cases, "clado_logs": logs}
    print(write_results(out_dir, "iqp", report, markdown))
    print(f"wrote {out_dir / 'iqp.json'} and {out_dir / 'iqp.md'}", file=sys.stderr)
    return exit_status(cases)


if __name__ == "__main__":
    sys.exit(main())
