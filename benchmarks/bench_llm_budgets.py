"""Benchmark the budgets LLM users state on Llama-shaped problems: bits per weight, and memory per pipeline stage.

    python benchmarks/bench_llm_budgets.py [--repeat N] [--time-limit S] [--sizes 32,240,2400]

Problems: ``mpqopt.synthetic.llm_problem(blocks)``, Llama-2-7B's seven linear layers per block with real
shapes, GGUF formats Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_0 (sizes in effective bits). 32, 240 and 2,400
blocks give 1,344, 10,080 and 100,800 decisions (layer x format). At each size, on the default solver
(``auto``, the exact MCKP engine), single-threaded, in one process:

* ``bits``: one global budget as an absolute number of bits (the single-budget path before bpw existed);
* ``bpw``: the same budget stated as ``"4.0bpw"`` (the same limit: same answer required); goal: time
  no more than 1.5x ``bits``;
* ``bpw + stages``: ``"4.0bpw"`` plus a memory budget per pipeline stage (blocks split in two halves,
  the first GPU at 97 % of its half's 4.0-bpw share, the second at 105 %), i.e. three budgets, two scoped.

Runs under 2 s: median of ``--repeat`` after one warm-up; slower ones: one run at ``--time-limit``.
Results go to ``benchmarks/results/llm_budgets.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness, when this file is loaded by path
from harness import RESULTS, machine, machine_line, stopwatch, summary, time_runs, write_results  # noqa: E402

BPW = 4.0
GOAL_RATIO = 1.5
SLOW_S = 2.0


def budget_sets(problem: Any, blocks: int) -> dict[str, Any]:
    from mpqopt import Budget

    per_block = problem.num_layers // blocks
    half = blocks // 2
    first = float(problem.params[: half * per_block].sum())
    second = float(problem.params[half * per_block:].sum())
    stages = [Budget("size_bits", 0.97 * BPW * first, layers=[f"blk.{{0..{half - 1}}}.*"], name="gpu0"),
              Budget("size_bits", 1.05 * BPW * second, layers=[f"blk.{{{half}..{blocks - 1}}}.*"], name="gpu1")]
    return {
        "bits": {"size_bits": BPW * float(problem.params.sum())},
        "bpw": {"size_bits": f"{BPW:g}bpw"},
        "bpw + stages": [Budget("size_bits", f"{BPW:g}bpw"), *stages],
    }


def run_case(problem: Any, budgets: Any, repeat: int, time_limit: float) -> dict[str, Any]:
    import mpqopt

    def once():
        return mpqopt.solve(problem, budgets=budgets, threads=1, time_limit=time_limit)

    first_s, result = stopwatch(once)
    if first_s < SLOW_S:
        walls, _, result = time_runs(once, repeat)
        timing = summary(walls) | {"runs": repeat}
    else:
        timing = {"median_ms": first_s * 1e3, "min_ms": first_s * 1e3, "runs": 1}
    stage_bytes = {key: total / 8 for key, total in result.costs.items() if "[" in key} if result.x is not None else {}
    return {
        "status": result.status, "objective": result.objective, "bound": result.bound, "gap": result.gap,
        "solver": result.solver, "budgets": result.budgets,
        "bpw": None if result.x is None else result.bpw.get("size_bits", {}).get("total"),
        "stage_bytes": stage_bytes, "message": result.message,
    } | timing


def size_row(blocks: int, repeat: int, time_limit: float) -> dict[str, Any]:
    from mpqopt.synthetic import llm_problem

    build_s, problem = stopwatch(lambda: llm_problem(blocks))
    row: dict[str, Any] = {"blocks": blocks, "layers": problem.num_layers, "decisions": problem.num_layers * problem.num_options,
                           "weights": float(problem.params.sum()), "build_s": build_s, "cases": {}}
    for name, budgets in budget_sets(problem, blocks).items():
        row["cases"][name] = case = run_case(problem, budgets, repeat, time_limit)
        print(f"  {row['decisions']:>7,} decisions, {name}: {case['status']}, objective {case['objective']}, gap {case['gap']}, "
              f"{case['median_ms'] / 1e3:.3f} s", flush=True)
    bits, bpw = row["cases"]["bits"], row["cases"]["bpw"]
    row["same_answer"] = bits["status"] == bpw["status"] == "optimal" and bits["objective"] == bpw["objective"]
    row["bpw_ratio"] = bpw["median_ms"] / bits["median_ms"]
    row["goal_met"] = row["same_answer"] and row["bpw_ratio"] <= GOAL_RATIO
    return row


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# LLM budgets: bits per weight and per-stage memory on Llama-shaped problems",
        "",
        machine_line(report["machine"]),
        f"Problems: `mpqopt.synthetic.llm_problem(blocks)` (Llama-2-7B linear layers, GGUF Q2_K..Q8_0); solver `auto` (mckp), "
        f"single-threaded; runs under {SLOW_S:g} s: median of {report['repeat']} after a warm-up, slower: one run at a "
        f"{report['time_limit_s']:g} s limit. Budget {BPW:g} bpw; stages: two halves of the blocks at 97 % / 105 % of their {BPW:g}-bpw share.",
        "",
        "| decisions | layers | bits: time | bpw: time | bpw / bits | same answer | bpw + stages: status | time | gap | bpw | stage GB |",
        "|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---|",
    ]
    for row in report["sizes"]:
        c = row["cases"]
        staged = c["bpw + stages"]
        gb = ", ".join(f"{v / 1e9:.3f}" for v in staged["stage_bytes"].values()) or "—"
        gap = "—" if staged["gap"] is None else f"{staged['gap']:.1e}"
        bpw = "—" if staged["bpw"] is None else f"{staged['bpw']:.3f}"
        lines.append(f"| {row['decisions']:,} | {row['layers']:,} | {c['bits']['median_ms'] / 1e3:.3f} s | {c['bpw']['median_ms'] / 1e3:.3f} s | "
                     f"{row['bpw_ratio']:.2f} | {'yes' if row['same_answer'] else 'NO'} | {staged['status']} | {staged['median_ms'] / 1e3:.2f} s | {gap} | {bpw} | {gb} |")
    met = all(r["goal_met"] for r in report["sizes"])
    lines += ["", f"Goal: a bpw budget gives the same answer as the same limit in bits, in at most {GOAL_RATIO:g}x its time: **{'met' if met else 'NOT met'}**.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of solves under 2 s, after one warm-up (default 5)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="time limit per solve in seconds (default 60)")
    parser.add_argument("--sizes", default="32,240,2400", help="numbers of transformer blocks (default 32,240,2400)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for llm_budgets.json / .md")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.repeat < 1 or any(s < 2 for s in sizes):
        parser.error("--repeat must be >= 1 and every size >= 2 blocks")
    rows = [size_row(blocks, args.repeat, args.time_limit) for blocks in sizes]
    report = {"benchmark": "llm_budgets", "repeat": args.repeat, "time_limit_s": args.time_limit, "threads": 1,
              "machine": machine(), "sizes": rows}
    print(write_results(args.out, "llm_budgets", report, markdown))
    return 0 if all(r["same_answer"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
