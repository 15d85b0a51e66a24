"""Benchmark the exact engine on Pisinger's multiple-choice knapsack classes against HiGHS on the naive model.

    python benchmarks/bench_knapsack.py [--quick] [--repeat N] [--time-limit S] [--classes ...] [--R ...]

The grid (issue 19): every class of ``mpqopt.synthetic.KNAPSACK_CLASSES`` (uncorrelated, weakly,
strongly, inverse strongly correlated, subset-sum; integer data in [1, R]) at R = 1,000 and 10,000
and sizes 100 x 10, 100 x 100, 1,000 x 10, 1,000 x 100, 2,500 x 10, 4,000 x 10, 10,000 x 10
(layers x options), seed 0, one budget halfway between the cheapest and dearest totals
(``mpqopt.synthetic.knapsack_problem``). ``--quick`` runs a subset small enough for CI (every class
at 100 x 10 and all but strongly correlated at 1,000 x 10, R = 1,000). Each instance is solved by ``mckp`` and by ``highs:plain``
(HiGHS's MILP on the whole one-hot model, no reduction: the naive model), single-threaded,
``mip_gap=0``, under the same per-solve time limit (60 s, 10 s with ``--quick``).

Goals: on every instance ``mckp`` is at most 2x slower than HiGHS (ratio = mckp time / HiGHS time;
when HiGHS stops at its limit and mckp proves, the ratio is at most limit / ... and counts as met;
when mckp stops at its limit and HiGHS proves, the goal is not met); on the MPQ-shaped reference
(``mckp_problem(50,000, 8, 1, kind="llm")``, one budget) mckp stays >= 10x faster than HiGHS. Every
instance both prove optimal must agree exactly: integer data give integral objectives, compared as
integers.

Times are wall-clock seconds of ``mpqopt.solve`` (budget resolution, reductions, backend,
verification) and the process CPU time of the same calls (the machine may be shared: CPU time shows
what a run cost when the wall clock includes waiting). Runs under 2 s are repeated ``--repeat``
times after one warm-up (median reported), slower runs are timed once. Exit status 1 if two solvers
contradict each other (an objective below another's proven bound, or two proven optima that differ).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness, when this file is loaded by path
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # this checkout's mpqopt, not an installed one
from harness import RESULTS, available, compare_rows, describe, exit_status, fmt, hit_limit, machine, report_head, row_by, write_results  # noqa: E402

import mpqopt  # noqa: E402
from mpqopt.synthetic import KNAPSACK_CLASSES, knapsack_problem, mckp_problem  # noqa: E402

SOLVERS = ("mckp", "highs:plain")
SIZES = ((100, 10), (100, 100), (1000, 10), (1000, 100), (2500, 10), (4000, 10), (10000, 10))
# --quick (CI, under a minute): every class at 100 x 10, and 1,000 x 10 except strongly correlated
# (mckp 4-7 s there, HiGHS stops at its limit: the full grid has it)
QUICK = [(kind, 100, 10) for kind in KNAPSACK_CLASSES] + [(kind, 1000, 10) for kind in KNAPSACK_CLASSES if kind != "strongly"]
RS = (1000, 10000)
QUICK_RS = (1000,)
CHEAP_S = 2.0  # runs faster than this are repeated and the median reported
MAX_RATIO = 2.0  # goal: mckp at most this many times HiGHS's time on every grid instance
MPQ_SPEEDUP = 10.0  # goal: mckp at least this many times faster on the MPQ-shaped reference
MPQ_CASE = (50_000, 8)  # mckp_problem(50,000, 8, 1, kind="llm")


# ---------------------------------------------------------------------------------- one solver run
def run_solver(problem: mpqopt.Problem, solver: str, repeat: int, time_limit: float) -> dict[str, Any]:
    """``solver`` on ``problem`` (threads=1, mip_gap=0): one timed run, or a warm-up and ``repeat``
    timed runs when the first took under ``CHEAP_S``. Never raises: errors become the row's status."""
    row: dict[str, Any] = {"solver": solver, "time_limit_s": time_limit}
    missing = available(solver)
    if missing:
        return row | {"status": "not available", "note": missing}

    def once() -> tuple[float, float, mpqopt.Result]:
        wall, cpu = time.perf_counter(), time.process_time()
        result = mpqopt.solve(problem, solver=solver, threads=1, time_limit=time_limit, mip_gap=0.0)
        return time.perf_counter() - wall, time.process_time() - cpu, result

    try:
        first, first_cpu, result = once()
        walls, cpus = [first], [first_cpu]
        if first < CHEAP_S and repeat > 1 and result.status != "time_limit":
            walls, cpus = [], []
            for _ in range(repeat):
                wall, cpu, result = once()
                walls.append(wall)
                cpus.append(cpu)
    except Exception as exc:  # one failing run must not stop the grid
        return row | {"status": "error", "note": f"{type(exc).__name__}: {exc}"}
    row |= {
        "status": result.status, "objective": result.objective, "bound": result.bound, "gap": result.gap,
        "time_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "runs": len(walls), "message": result.message,
        "stats": {k: v for k, v in result.stats.items() if isinstance(v, (int, float, str, bool))},
    }
    if first > 1.1 * time_limit + 1.0:
        row["note"] = f"overshot the {time_limit:g} s limit: {first:.1f} s"
    return row


def ratio(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """mckp's time / HiGHS's: ``exact`` when both proved, ``at_most`` when only HiGHS hit its limit
    (HiGHS would have needed longer), ``at_least`` when only mckp did; None when both stopped or one is missing."""
    a, b = row_by(rows, "mckp"), row_by(rows, "highs:plain")
    if not a or not b or a.get("time_s") is None or b.get("time_s") is None:
        return None
    stopped_a, stopped_b = hit_limit(a) or a["status"] != "optimal", hit_limit(b) or b["status"] != "optimal"
    if stopped_a and stopped_b:
        return None
    kind = "at_least" if stopped_a else ("at_most" if stopped_b else "exact")
    return {"value": a["time_s"] / max(b["time_s"], 1e-9), "kind": kind, "cpu": a["cpu_s"] / max(b["cpu_s"], 1e-9)}


def agreement(rows: list[dict[str, Any]]) -> bool | None:
    """Both proved optimal: are their objectives the same integer? None unless both did."""
    a, b = row_by(rows, "mckp"), row_by(rows, "highs:plain")
    if not a or not b or a.get("status") != "optimal" or b.get("status") != "optimal":
        return None
    x, y = a["objective"], b["objective"]
    return x == round(x) and y == round(y) and int(round(x)) == int(round(y))


def instance(kind: str, layers: int, options: int, R: int, solvers: list[str], repeat: int, limit: float) -> dict[str, Any]:
    problem = knapsack_problem(layers, options, kind, R=R, seed=0)
    rows = [run_solver(problem, solver, repeat, limit) for solver in solvers]
    case = {"kind": kind, "layers": layers, "options": options, "R": R, "capacity": problem.budgets["size_bits"], "rows": rows,
            "contradictions": compare_rows(rows), "ratio": ratio(rows), "agree": agreement(rows)}
    if case["agree"] is False:
        case["contradictions"].append(f"{kind} {layers} x {options} R={R}: both proved optimal, objectives differ: "
                                      + ", ".join(f"{r['solver']} {r['objective']!r}" for r in rows))
    r = case["ratio"]
    tag = "n/a" if r is None else f"{'<=' if r['kind'] == 'at_most' else '>=' if r['kind'] == 'at_least' else ''}{r['value']:.2f}x"
    print(f"  {kind:16s} {layers:>6,} x {options:<4} R={R:<6} ratio {tag:9s} agree {case['agree']}  | "
          + " | ".join(describe(x) for x in rows), flush=True)
    return case


def mpq_case(solvers: list[str], repeat: int, limit: float) -> dict[str, Any]:
    layers, options = MPQ_CASE
    problem = mckp_problem(layers, options, 1, seed=0, kind="llm")
    rows = [run_solver(problem, solver, repeat, limit) for solver in solvers]
    case = {"title": f"mckp_problem({layers}, {options}, 1, seed=0, kind=\"llm\")", "rows": rows, "contradictions": compare_rows(rows), "ratio": ratio(rows)}
    print(f"  MPQ-shaped {case['title']}: " + " | ".join(describe(x) for x in rows), flush=True)
    return case


# ---------------------------------------------------------------------------------- goals
def worst(grid: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The instance with the largest mckp / HiGHS time ratio (an 'at_least' ratio counts as is)."""
    rated = [c for c in grid if c["ratio"] is not None]
    return max(rated, key=lambda c: c["ratio"]["value"], default=None)


def where(case: dict[str, Any]) -> str:
    return f"{case['kind']} {case['layers']:,} x {case['options']} R={case['R']:,}"


def goals(grid: list[dict[str, Any]], mpq: dict[str, Any] | None) -> list[dict[str, Any]]:
    out = []
    w = worst(grid)
    unrated = [c for c in grid if c["ratio"] is None]
    over = [c for c in grid if c["ratio"] is not None and (c["ratio"]["value"] > MAX_RATIO and c["ratio"]["kind"] != "at_most")]
    measured = "no instance rated" if w is None else (
        f"worst {w['ratio']['value']:.2f}x ({'at least' if w['ratio']['kind'] == 'at_least' else 'at most' if w['ratio']['kind'] == 'at_most' else 'both proved'}) "
        f"on {where(w)}; {len(over)} of {len(grid)} instances over {MAX_RATIO:g}x"
        + (f" ({', '.join(where(c) for c in over)})" if over else "")
        + (f"; {len(unrated)} not rated (both stopped at the limit or did not run): {', '.join(where(c) for c in unrated)}" if unrated else ""))
    out.append({"goal": f"every grid instance: mckp <= {MAX_RATIO:g}x HiGHS (highs:plain) time",
                "status": "met" if w is not None and not over and not unrated else "NOT met", "measured": measured})
    # unrated instances still compare: the answer each solver holds when both stop at the limit
    compared = [(c, row_by(c["rows"], "mckp"), row_by(c["rows"], "highs:plain")) for c in unrated]
    compared = [(c, a, b) for c, a, b in compared if a and b and a.get("objective") is not None and b.get("objective") is not None]
    worse = [c for c, a, b in compared if a["objective"] > b["objective"]]
    better = [c for c, a, b in compared if a["objective"] < b["objective"]]
    out.append({"goal": "where both stop at the limit: mckp's answer no worse than HiGHS's", "status": "met" if not worse else "NOT met",
                "measured": f"{len(compared)} instances: mckp better on {len(better)}, equal on {len(compared) - len(better) - len(worse)}, worse on {len(worse)}"
                + (f" ({', '.join(where(c) for c in worse)})" if worse else "")})
    both = [c for c in grid if c["agree"] is not None]
    wrong = [c for c in grid if c["agree"] is False]
    out.append({"goal": "exact integer agreement where both prove optimal", "status": "met" if both and not wrong else "NOT met",
                "measured": f"{len(both) - len(wrong)} of {len(both)} agree ({len(grid) - len(both)} instances not proved by both)"
                + (f"; DIFFER: {', '.join(where(c) for c in wrong)}" if wrong else "")})
    if mpq is not None:
        r = mpq["ratio"]
        a = row_by(mpq["rows"], "mckp")
        speed = None if r is None else 1.0 / max(r["value"], 1e-12)
        met = r is not None and r["kind"] != "at_least" and speed >= MPQ_SPEEDUP and a["status"] == "optimal"
        text = "n/a" if r is None else f"mckp {a['time_s']:.3f} s, {'>= ' if r['kind'] == 'at_most' else ''}{speed:.1f}x faster than highs:plain"
        out.append({"goal": f"MPQ-shaped {mpq['title']}: mckp >= {MPQ_SPEEDUP:g}x faster", "status": "met" if met else "NOT met", "measured": text})
    return out


# ---------------------------------------------------------------------------------- output
def cell(row: dict[str, Any] | None) -> str:
    if row is None or row.get("time_s") is None:
        return "—" if row is None else row["status"]
    tag = "" if row["status"] == "optimal" and not row.get("wrong_bound") else f" ({row['status']}{' WRONG' if row.get('wrong_bound') else ''})"
    return f"{row['time_s']:.3f}{tag}"


def route_of(row: dict[str, Any] | None) -> str:
    """How mckp got its answer, from its message (the part after the solver's name)."""
    text = (row or {}).get("message") or ""
    return text.split("mckp", 1)[-1].lstrip(": ")[:90].replace("|", "/")


def markdown(report: dict[str, Any]) -> str:
    lines = report_head("Pisinger's knapsack classes: mckp vs HiGHS on the naive model", report["machine"], [
        f"Mode: {report['mode']}; per-solve time limit {report['time_limit_s']:g} s (both solvers); single-threaded; mip_gap=0; "
        f"wall-clock seconds of `mpqopt.solve` (CPU seconds of the same calls beside them); runs under {CHEAP_S:g} s: median of "
        f"{report['repeat']} after one warm-up, slower runs: one run; {report['instances_done']} of {report['instances_planned']} grid instances "
        f"run, in {report['grid_s']:.0f} s wall, {report['grid_cpu_s']:.0f} s CPU.",
        "`knapsack_problem(layers, options, kind, R=R, seed=0)`: integer data in [1, R], one budget halfway between the "
        "cheapest and dearest totals. Ratio = mckp time / highs:plain time ('<=': HiGHS stopped at its limit; '>=': mckp did). "
        "Agree: both proved optimal and the objectives are the same integer.",
    ], report["goals"])
    lines += ["", "## Grid", "",
              "| class | layers x options | R | mckp (s) | mckp CPU (s) | highs:plain (s) | highs CPU (s) | ratio | objective | agree | mckp route |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for c in report["grid"]:
        a, b = row_by(c["rows"], "mckp"), row_by(c["rows"], "highs:plain")
        r = c["ratio"]
        rt = "—" if r is None else f"{'<=' if r['kind'] == 'at_most' else '>=' if r['kind'] == 'at_least' else ''}{r['value']:.2f}"
        best = min((x["objective"] for x in c["rows"] if x.get("objective") is not None), default=None)
        route = route_of(a)
        lines.append(f"| {c['kind']} | {c['layers']:,} x {c['options']} | {c['R']:,} | {cell(a)} | {fmt((a or {}).get('cpu_s'), '.2f')} | "
                     f"{cell(b)} | {fmt((b or {}).get('cpu_s'), '.2f')} | {rt} | {fmt(best, '.0f')} | {c['agree'] if c['agree'] is not None else '—'} | {route} |")
    mpq = report.get("mpq")
    if mpq:
        lines += ["", f"## MPQ-shaped reference: {mpq['title']}", "",
                  "| solver | status | objective | bound | time (s) | CPU (s) | runs |", "|---|---|---:|---:|---:|---:|---:|"]
        for r in mpq["rows"]:
            lines.append(f"| {r['solver']} | {r['status']} | {fmt(r.get('objective'), '.10g')} | {fmt(r.get('bound'), '.10g')} | "
                         f"{fmt(r.get('time_s'), '.3f')} | {fmt(r.get('cpu_s'), '.3f')} | {r.get('runs', '')} |")
    contradictions = [x for c in report["grid"] + ([mpq] if mpq else []) for x in c["contradictions"]]
    for x in contradictions:
        lines.append(f"\n**CONTRADICTION**: {x}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every class at 100 x 10, all but strongly correlated at 1,000 x 10, R = 1,000, 10 s limit (CI)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of cheap (< 2 s) solves after one warm-up (default 3)")
    parser.add_argument("--time-limit", type=float, default=None, help="per-solve time limit (default 60 s, 10 s with --quick)")
    parser.add_argument("--classes", nargs="+", default=list(KNAPSACK_CLASSES), choices=KNAPSACK_CLASSES, help="classes to run")
    parser.add_argument("--R", nargs="+", type=int, default=None, help="data ranges (default 1000 10000; 1000 with --quick)")
    parser.add_argument("--sizes", nargs="+", default=None, help="layers x options, e.g. 1000x10 (default: the grid)")
    parser.add_argument("--no-mpq", action="store_true", help="skip the MPQ-shaped reference")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for knapsack.json / knapsack.md")
    parser.add_argument("--name", default="knapsack", help="results file name (default knapsack)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    limit = args.time_limit or (10.0 if args.quick else 60.0)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes] if args.sizes else SIZES
    rs = args.R or (QUICK_RS if args.quick else RS)
    solvers = list(SOLVERS)
    for solver in solvers:  # warm the imports so the first timed run does not pay for them
        available(solver)
    wall, cpu = time.perf_counter(), time.process_time()
    if args.quick and not args.sizes:
        planned = [(kind, layers, options, R) for R in rs for kind, layers, options in QUICK if kind in args.classes]
    else:
        planned = [(kind, layers, options, R) for R in rs for layers, options in sizes for kind in args.classes]
    grid: list[dict[str, Any]] = []
    text = ""
    mpq = None if args.no_mpq else mpq_case(solvers, args.repeat, limit)  # first: quick, and a stopped run still has it
    # the results are rewritten after every instance: a run stopped part-way leaves what it measured
    for done in range(len(planned)):
        grid.append(instance(*planned[done], solvers, args.repeat, limit))
        report = {
            "benchmark": "knapsack", "mode": "quick" if args.quick else "full", "repeat": args.repeat, "threads": 1, "time_limit_s": limit,
            "solvers": solvers, "machine": machine(), "grid_s": time.perf_counter() - wall, "grid_cpu_s": time.process_time() - cpu,
            "instances_planned": len(planned), "instances_done": len(grid), "goals": goals(grid, mpq), "grid": grid, "mpq": mpq,
        }
        text = write_results(args.out, args.name, report, markdown)
    print(text)
    w = worst(grid)
    if w is not None:
        print(f"worst ratio: {w['ratio']['value']:.2f}x ({w['ratio']['kind']}) on {where(w)}")
    cases = {where(c): c for c in grid} | ({"mpq": mpq} if mpq else {})
    return exit_status(cases)


if __name__ == "__main__":
    sys.exit(main())
