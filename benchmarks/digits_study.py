"""Digits CNN study: how close each estimator's exact allocation gets to the true best.

    python benchmarks/digits_study.py [--quick] [--out benchmarks/results]

The digits CNN (``mpqopt.examples.digits``) has 5 quantizable layers, so every allocation over
{W2, W3, W4, W8} (4**5 = 1024) is measured on the held-out test split: the ground truth. Each
estimator builds its table on training batches; ``mpqopt.solve`` picks the exact optimum of that
table (pairwise: the IQP) at several size budgets; the allocation is scored by its *measured* test
loss change, against the true best at the same budget and the best uniform precision that fits.
``train_csq`` (CSQ) trains its own allocation per budget and is scored the same way.

Writes ``digits_study.json`` and ``digits_study.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness, when this file is loaded by path
from harness import RESULTS, machine, machine_line, stopwatch, write_results  # noqa: E402

BUDGETS = (0.1, 0.25, 0.5, 0.75)  # fractions of the size range between uniform W2 and uniform W8
OPTIONS = (2, 3, 4, 8)


def estimators(quick: bool) -> dict[str, Callable[..., Any]]:
    from mpqopt.adapters import torch as mt

    steps = 10 if quick else 40
    return {
        "delta_loss": lambda m, d: mt.estimate_delta_loss(m, d, OPTIONS),
        "hessian_trace": lambda m, d: mt.estimate_hessian_trace(m, d, OPTIONS, max_iter=40 if quick else 100),
        "fisher": lambda m, d: mt.estimate_fisher(m, d, OPTIONS),
        "entropy": lambda m, d: mt.estimate_entropy(m, OPTIONS),
        "pairwise": lambda m, d: mt.estimate_pairwise(m, d, OPTIONS, progress=False),
        "finetune_gain": lambda m, d: mt.estimate_finetune_gain(m, d, OPTIONS, steps=steps),
        "lsq_indicators": lambda m, d: mt.estimate_lsq_indicators(m, d, OPTIONS, steps=steps),
    }


def uniform_best(truth: Any, problem: Any, limit: float) -> tuple[str, float] | None:
    """The highest uniform precision within the size budget, and its measured loss change."""
    best = None
    for k, opt in enumerate(problem.options):
        x = np.full(problem.num_layers, k)
        if problem.evaluate(x).costs["size_bits"] <= limit * (1 + 1e-12):
            best = (opt.label, truth.lookup(x))  # options ascend, so the last that fits is the highest
    return best


def run(quick: bool = False, seed: int = 0) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    import mpqopt
    from mpqopt.adapters import torch as mt
    from mpqopt.examples.digits import load_digits_cnn

    t0 = time.perf_counter()
    bed = load_digits_cnn(seed=seed)
    calibration = bed.train[:8]  # 512 training images
    test = bed.test_batches()
    truth = mt.exhaustive_losses(bed.model, test, OPTIONS, loss="ce")
    truth_seconds = time.perf_counter() - t0
    rows: dict[str, Any] = {"ground_truth": {"allocations": int(truth.change.size), "seconds": truth_seconds, "fp_test_ce": truth.fp_loss}}
    base = mt.problem_from_model(bed.model, bed.train[0], OPTIONS, np.zeros((5, 4)), costs=("size_bits",))
    lo, hi = base.cost_range("size_bits")
    limits = {f: lo + f * (hi - lo) for f in BUDGETS}
    best = {f: truth.best(base, {"size_bits": limit}) for f, limit in limits.items()}
    uniform = {f: uniform_best(truth, base, limit) for f, limit in limits.items()}
    methods: dict[str, Any] = {}
    for name, estimate in estimators(quick).items():
        est_seconds, table = stopwatch(lambda: estimate(bed.model, calibration))
        problem = mt.problem_from_model(bed.model, bed.train[0], None, table, costs=("size_bits",))
        per_budget = {}
        for f, limit in limits.items():
            result = mpqopt.solve(problem, budgets={"size_bits": limit})
            per_budget[str(f)] = {
                "allocation": result.assignment, "status": result.status, "solve_seconds": result.solve_time_s,
                "predicted": result.objective, "measured": truth.lookup(result.x),
            }
        methods[name] = {"estimate_seconds": est_seconds, "meta": {k: v for k, v in table.meta.items() if isinstance(v, (int, float, str))}, "budgets": per_budget}
        print(f"  {name}: {est_seconds:.1f} s", file=sys.stderr, flush=True)
    csq = {}
    for f, limit in limits.items():
        start = time.perf_counter()
        res = mt.train_csq(bed.model, calibration, OPTIONS, budget=limit, steps=60 if quick else 300)
        x = base.as_indices(res.allocation)
        csq[str(f)] = {"allocation": res.allocation, "measured": truth.lookup(x), "train_seconds": time.perf_counter() - start, "feasible": res.feasible}
    methods["csq (trained)"] = {"budgets": csq}
    rows.update(
        budgets={str(f): {"size_bits": limits[f], "true_best": None if best[f] is None else {"allocation": base.to_labels(best[f][0]), "measured": best[f][1]},
                          "uniform": None if uniform[f] is None else {"option": uniform[f][0], "measured": uniform[f][1]}} for f in BUDGETS},
        methods=methods,
    )
    return rows


def markdown(report: dict[str, Any]) -> str:
    gt = report["ground_truth"]
    lines = [
        "# Digits CNN: estimator + exact solver vs the measured optimum",
        "",
        *([machine_line(report["machine"]), f"Mode: {report['mode']}; one thread (torch.set_num_threads(1)); run {report['date']}.", ""] if "machine" in report else []),
        f"Ground truth: all {gt['allocations']} allocations over {{W2,W3,W4,W8}} measured on the 540-image test split "
        f"(FP32 CE {gt['fp_test_ce']:.4f}; {gt['seconds']:.0f} s). Tables estimated on 512 training images; each solved exactly "
        "by `mpqopt.solve` at size budgets given as fractions of the W2..W8 range. Cells: measured test CE increase of the chosen allocation "
        "(lower is better), with the regret over the true best in brackets.",
        "",
        "| method | " + " | ".join(f"budget {f}" for f in report["budgets"]) + " | estimate s |",
        "|---|" + "---:|" * (len(report["budgets"]) + 1),
    ]
    best_row = "| **true best** | " + " | ".join("-" if b["true_best"] is None else f"{b['true_best']['measured']:.4f}" for b in report["budgets"].values()) + " | - |"
    uni_row = "| uniform (highest that fits) | " + " | ".join("-" if b["uniform"] is None else f"{b['uniform']['measured']:.4f} ({b['uniform']['option']})" for b in report["budgets"].values()) + " | - |"
    lines += [best_row, uni_row]
    for name, m in report["methods"].items():
        cells = []
        for f, b in report["budgets"].items():
            cell = m["budgets"][f]
            regret = cell["measured"] - b["true_best"]["measured"] if b["true_best"] else float("nan")
            cells.append(f"{cell['measured']:.4f} (+{regret:.4f})")
        secs = m.get("estimate_seconds")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'-' if secs is None else f'{secs:.1f}'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer training steps and Hutchinson iterations")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = run(quick=args.quick)
    report.update(machine=machine(), mode="quick" if args.quick else "full", date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print(write_results(args.out, "digits_study", report, markdown, indent=1, final_newline=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
