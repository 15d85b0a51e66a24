"""Benchmark the torch estimators made faster by cached activations: before vs after, in one run.

    python benchmarks/bench_estimators.py [--repeat N] [--quick]

Both paths run in one process, one thread (torch and ONNX Runtime), and their tables are checked
equal (bit-identical, or the largest difference is reported):

* ``exhaustive_losses`` on the digits CNN (W2/W3/W4/W8, all 1,024 allocations, the 540 test images
  in one batch): ``_exhaustive_reference`` (one full forward per allocation) vs the depth-first
  enumeration over cached prefix activations.
  Beside them a bare depth-first enumeration of the ``nn.Sequential`` (no bookkeeping: the cheapest
  prefix-cached enumeration, the yardstick of the goal "within 2x").
* ``estimate_delta_loss`` (W2/W3/W4/W8): ``_delta_loss_reference`` (one full forward per layer,
  option and batch) vs cached activations before each layer, small batches joined into one forward
  (``concat_batches``) and the options of a layer stacked along the batch where that pays, beside the
  ONNX adapter's ``estimate_delta_output`` on the same network exported
  to ONNX (BN folded by the exporter: equal to float round-off, reported), itself timed both ways: whole-graph
  runs (``mode="full"``) and cached FP32 tensors with only each layer's suffix rerun (checked equal to 1e-6
  relative). On the digits CNN (5 layers)
  with batches of 4 and 60, and on a deeper random conv chain (24 conv layers, 32x32 inputs, batches
  of 4; it stands in for the 50-layer ImageNet CNN of issue 18, which is not installed here).

* ``estimate_hessian_trace`` on the digits CNN (W2/W3/W4/W8, the 20 training batches of 64, to the
  same ``tol``): one probe per step, one Hessian-vector product call each (``probes_per_step=1,
  hvp="loop"``: the estimator before batching) vs the default, 8 probes a step sharing the loss and
  gradient, their products in one batched call. The stopping point is random (the tolerance is met
  by chance), so the two runs take different numbers of probes: wall time, probes and HVP calls to
  ``tol`` are reported with the cost per probe; the tables are checked equal within their standard
  errors (traces pooled over 3 seeds; largest ``|a - b| / sqrt(se_a² + se_b²)`` over the layers, below 3).

Fast runs (< 2 s): median of ``--repeat`` after a warm-up; slower ones: one run.
Results: ``benchmarks/results/estimators.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness, when this file is loaded by path
from harness import RESULTS, machine, machine_line, stopwatch, summary, time_runs, write_results  # noqa: E402

SLOW_S = 2.0
OPTIONS = [2, 3, 4, 8]


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Seconds (median of ``repeat`` after a warm-up when one run is fast) and the output."""
    first, out = stopwatch(fn)
    if first >= SLOW_S or repeat <= 1:
        return first, out
    walls, _, out = time_runs(fn, repeat)
    return summary(walls)["median_ms"] / 1000, out


def export_onnx(model: Any, example: Any, path: Path) -> str:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, opset_version=17, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    return str(path)


def deep_chain(layers: int = 24, width: int = 16, classes: int = 10) -> Any:
    """A random conv chain with batch norm (He init), then a linear head: ``layers`` quantizable layers."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    mods: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
    for k in range(layers - 2):
        mods += [nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        if k in (6, 14):
            mods.append(nn.MaxPool2d(2))
    mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes)]
    model = nn.Sequential(*mods).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def compare(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    return {"identical": bool(np.array_equal(a, b)), "max_abs_diff": float(np.max(np.abs(a - b))) if a.size else 0.0}


def bare_enumeration(model: Any, x: Any, y: Any, options: list[int]) -> np.ndarray:
    """The cheapest prefix-cached enumeration of an ``nn.Sequential``: depth first over its children,
    quantized weights swapped in, no bookkeeping (the yardstick of issue 18's "within 2x"). Mean CE
    of every allocation, in ``itertools.product`` order."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from mpqopt.adapters.torch.perturb import WeightCache

    children = list(model)
    layers = [i for i, c in enumerate(children) if isinstance(c, (nn.Conv2d, nn.Linear))]
    cache, K, L = WeightCache(model), len(options), len(layers)
    out = np.empty(K**L)

    def descend(h: Any, pos: int, depth: int, index: int) -> None:
        stop = layers[depth] if depth < L else len(children)
        for child in children[pos:stop]:
            h = child(h)
        if depth == L:
            out[index] = float(F.cross_entropy(h, y))
            return
        module = children[stop]
        saved = module.weight.data
        weights = [cache.get(str(stop), bits) for bits in options]  # quantized from the FP32 weight, before any swap
        for k, w in enumerate(weights):
            module.weight.data = w
            descend(h, stop, depth + 1, index * K + k)
        module.weight.data = saved

    with torch.no_grad():
        descend(x, 0, 0, 0)
    return out


def bench_exhaustive(bed: Any, repeat: int) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from mpqopt.adapters.torch.estimators.exhaustive import _exhaustive_reference, exhaustive_losses

    data = [(bed.test_x, bed.test_y)]
    old_s, old = timed(lambda: _exhaustive_reference(bed.model, data, OPTIONS), 1)
    new_s, new = timed(lambda: exhaustive_losses(bed.model, data, OPTIONS, progress=False), repeat)
    bare_s, bare = timed(lambda: bare_enumeration(bed.model.eval(), bed.test_x, bed.test_y, OPTIONS), repeat)
    with torch.no_grad():
        fp = float(F.cross_entropy(bed.model(bed.test_x), bed.test_y))
    return {"estimator": "exhaustive_losses", "model": "digits CNN", "batches": f"1 x {len(bed.test_x)}", "allocations": len(new.change),
            "before_s": old_s, "after_s": new_s, "speedup": old_s / new_s, "bare_enumeration_s": bare_s, "after_vs_bare": new_s / bare_s,
            "bare_max_abs_diff": float(np.max(np.abs((bare - fp) - new.change))),
            "mode": new.meta["mode"], "step_fraction": new.meta["step_fraction"], **compare(new.change, old.change)}


def bench_delta(name: str, model: Any, x: Any, y: Any, batch: int, repeat: int, tmp: Path) -> dict[str, Any]:
    from mpqopt.adapters.onnx.sensitivity import estimate_delta_output
    from mpqopt.adapters.torch.estimators.delta_loss import _delta_loss_reference, estimate_delta_loss

    cuts = range(0, len(x), batch)
    data = [(x[i : i + batch], y[i : i + batch]) for i in cuts]
    old_s, old = timed(lambda: _delta_loss_reference(model, data, OPTIONS), repeat)
    new_s, new = timed(lambda: estimate_delta_loss(model, data, OPTIONS), repeat)
    path = export_onnx(model, x[:batch], tmp / f"{name.replace(' ', '_')}.onnx")
    inputs = [{"x": x[i : i + batch].numpy()} for i in cuts]
    labels = [y[i : i + batch].numpy() for i in cuts]
    onnx_full_s, ort_full = timed(lambda: estimate_delta_output(path, inputs, OPTIONS, labels=labels, threads=1, mode="full", progress=False), repeat)
    onnx_s, ort = timed(lambda: estimate_delta_output(path, inputs, OPTIONS, labels=labels, threads=1, progress=False), repeat)
    return {"estimator": "estimate_delta_loss", "model": name, "batches": f"{len(data)} x {batch}", "layers": len(new.layers),
            "before_s": old_s, "after_s": new_s, "speedup": old_s / new_s, "onnx_delta_output_s": onnx_s, "after_vs_onnx": new_s / onnx_s,
            "mode": new.meta["mode"], "step_fraction": new.meta["step_fraction"], "batch_perturbations": new.meta["batch_perturbations"],
            "concat_batches": new.meta["concat_batches"],
            **compare(new.values, old.values), "max_abs_diff_onnx": float(np.max(np.abs(new.values - ort.values))),
            "onnx_full_s": onnx_full_s, "onnx_speedup": onnx_full_s / onnx_s, "onnx_mode": ort.meta["mode"], "onnx_step_fraction": ort.meta["step_fraction"],
            "onnx_cached_vs_full": compare(ort.values, ort_full.values),
            "onnx_cached_vs_full_max_rel": float(np.max(np.abs(ort.values - ort_full.values) / np.maximum(np.abs(ort_full.values), np.finfo(float).tiny)))}


HESSIAN_Z = 3.0  # the before and after traces agree when no layer differs by more than this many joint standard errors


def bench_hessian(bed: Any, tol: float, max_iter: int, seeds: int) -> dict[str, Any]:
    """Both paths to ``tol`` once per seed (a seed draws the same probes in both); the traces pooled
    over the seeds are compared."""
    from mpqopt.adapters.torch.estimators.hessian import estimate_hessian_trace

    def run(seed: int, **kw: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a run that misses tol says so in its row (converged)
            return estimate_hessian_trace(bed.model, bed.train, OPTIONS, tol=tol, max_iter=max_iter, seed=seed, **kw)

    paths = {"before": {"probes_per_step": 1, "hvp": "loop"}, "after": {}}
    runs: dict[str, list[dict[str, Any]]] = {path: [] for path in paths}
    traces: dict[str, list[np.ndarray]] = {path: [] for path in paths}
    ses: dict[str, list[np.ndarray]] = {path: [] for path in paths}
    for seed in range(seeds):
        for path, kw in paths.items():  # interleaved: a change in the machine's load hits both paths alike
            cpu = time.process_time()
            wall, s = stopwatch(lambda: run(seed, **kw))
            cpu = time.process_time() - cpu  # one thread: the work done, less sensitive than wall time to other jobs on the machine
            traces[path].append(np.array(s.meta["traces"]))
            ses[path].append(s.std[:, 0] / s.values[:, 0] * traces[path][-1])  # every option's column is the trace times one factor per layer
            runs[path].append({"seed": seed, "s": wall, "cpu_s": cpu,
                               **{k: s.meta[k] for k in ("iterations", "steps", "probes_per_step", "hvp_calls", "converged", "hvp")}})
    pooled = {path: (np.mean(traces[path], axis=0), np.sqrt(np.sum(np.square(ses[path]), axis=0)) / seeds) for path in paths}
    (tb, eb), (ta, ea) = pooled["before"], pooled["after"]
    z = np.abs(tb - ta) / np.sqrt(eb**2 + ea**2)
    total = {f"{path}_{key}": sum(r[key] for r in runs[path]) for path in runs for key in ("s", "cpu_s", "iterations", "hvp_calls")}
    return {"estimator": "estimate_hessian_trace", "model": "digits CNN", "batches": f"{len(bed.train)} x {len(bed.train[0][1])}",
            "tol": tol, "max_iter": max_iter, "seeds": seeds, "probes_per_step": runs["after"][0]["probes_per_step"], "runs": runs, **total,
            "speedup": total["before_s"] / total["after_s"], "cpu_speedup": total["before_cpu_s"] / total["after_cpu_s"], "hvp_call_ratio": total["before_hvp_calls"] / total["after_hvp_calls"],
            "before_ms_per_probe": 1000 * total["before_s"] / total["before_iterations"], "after_ms_per_probe": 1000 * total["after_s"] / total["after_iterations"],
            "before_traces": tb.tolist(), "before_trace_se": eb.tolist(), "after_traces": ta.tolist(), "after_trace_se": ea.tolist(),
            "max_z": float(z.max()), "within_se": bool(z.max() < HESSIAN_Z)}


def render(report: dict[str, Any]) -> str:
    lines = ["# Estimators before vs after (cached activations)", "", machine_line(report["machine"]), "",
             "One thread (torch and ONNX Runtime). before = the old path (`_exhaustive_reference`, `_delta_loss_reference`: a full forward",
             "per evaluation); after = the new one; `equal`: the tables are bit-identical, else the largest absolute difference.", "",
             "ONNX delta_output: full = whole-graph runs (`mode=\"full\"`, the old path), cached = FP32 tensors cached per batch and only",
             "each layer's suffix rerun (`mode=\"auto\"`); its steps run = graph nodes run / nodes of as many whole-graph runs.", "",
             "| estimator | model | batches | before (s) | after (s) | speedup | ONNX full (s) | ONNX cached (s) | ONNX speedup | after / ONNX cached | equal | mode, steps run, joining | ONNX mode, steps run |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in report["rows"]:
        onnx = f"{r['onnx_full_s']:.3f} | {r['onnx_delta_output_s']:.3f} | {r['onnx_speedup']:.1f}x" if "onnx_delta_output_s" in r else "- | - | -"
        onnx_mode = f"{r['onnx_mode']}, {r['onnx_step_fraction']:.0%}" if "onnx_mode" in r else "-"
        ratio = f"{r['after_vs_onnx']:.2f}" if "after_vs_onnx" in r else "-"
        equal = "bit-identical" if r["identical"] else f"max diff {r['max_abs_diff']:.1e}"
        if "max_abs_diff_onnx" in r:
            equal += f"; ONNX max diff {r['max_abs_diff_onnx']:.1e}"
        if "onnx_cached_vs_full" in r:
            same = r["onnx_cached_vs_full"]
            equal += "; ONNX cached = full" if same["identical"] else f"; ONNX cached vs full max rel diff {r['onnx_cached_vs_full_max_rel']:.1e}"
        joined = f", {r['concat_batches']} batches per forward" if r.get("concat_batches", 1) > 1 else ""
        lines.append(f"| {r['estimator']} | {r['model']} | {r['batches']} | {r['before_s']:.3f} | {r['after_s']:.3f} | {r['speedup']:.1f}x | {onnx} | {ratio} | {equal} | "
                     f"{r['mode']}, {r['step_fraction']:.0%}{joined} | {onnx_mode} |")
    bare = [r for r in report["rows"] if "bare_enumeration_s" in r]
    for r in bare:
        lines += ["", f"exhaustive_losses vs a bare depth-first enumeration of the same nn.Sequential (no checks, progress or checkpoints): "
                  f"{r['after_s']:.3f} s vs {r['bare_enumeration_s']:.3f} s = {r['after_vs_bare']:.2f}x (goal <= 2x); values agree to {r['bare_max_abs_diff']:.1e}."]
    for r in report.get("hessian", []):
        lines += ["", f"## estimate_hessian_trace: batched probes (to tol={r['tol']:g}, {r['seeds']} seeds)", "",
                  f"before = one probe per step and one Hessian-vector product call per probe (`probes_per_step=1, hvp='loop'`, the estimator "
                  f"before batching); after = {r['probes_per_step']} probes a step sharing one loss and gradient, their products in one batched call. "
                  "Where the tolerance is met is random, so the probe counts differ; `equal` compares the per-layer traces pooled over the seeds: "
                  f"largest difference in joint standard errors (< {HESSIAN_Z:g} required).", "",
                  "| model | batches | seed | path | wall (s) | CPU (s) | probes | steps | HVP calls | ms / probe (wall) | converged |",
                  "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
        for path in ("before", "after"):
            for x in r["runs"][path]:
                lines.append(f"| {r['model']} | {r['batches']} | {x['seed']} | {path} ({x['hvp']}) | {x['s']:.2f} | {x['cpu_s']:.2f} | {x['iterations']} | {x['steps']} | "
                             f"{x['hvp_calls']} | {1000 * x['s'] / x['iterations']:.1f} | {x['converged']} |")
        lines += ["", f"All seeds: before {r['before_s']:.1f} s, {r['before_iterations']} probes, {r['before_hvp_calls']} HVP calls; after "
                  f"{r['after_s']:.1f} s, {r['after_iterations']} probes, {r['after_hvp_calls']} HVP calls: {r['speedup']:.1f}x in wall time to tol "
                  f"({r['cpu_speedup']:.1f}x in CPU time), "
                  f"{r['hvp_call_ratio']:.1f}x fewer HVP calls, {r['before_ms_per_probe'] / r['after_ms_per_probe']:.1f}x per probe "
                  f"({r['before_ms_per_probe']:.1f} vs {r['after_ms_per_probe']:.1f} ms). Pooled traces before "
                  + ", ".join(f"{a:.3f} ± {e:.3f}" for a, e in zip(r["before_traces"], r["before_trace_se"])) + "; after "
                  + ", ".join(f"{a:.3f} ± {e:.3f}" for a, e in zip(r["after_traces"], r["after_trace_se"]))
                  + f"; equal within the standard errors: {'yes' if r['within_se'] else 'NO'} (largest {r['max_z']:.1f})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small data (a smoke test): results written only with --out")
    parser.add_argument("--out", type=Path, default=None, help=f"results folder (default {RESULTS})")
    args = parser.parse_args(argv)

    import torch

    from mpqopt.examples.digits import load_digits_cnn

    torch.set_num_threads(1)
    bed = load_digits_cnn(epochs=2 if args.quick else 15)
    if args.quick:
        bed.test_x, bed.test_y = bed.test_x[:40], bed.test_y[:40]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(bench_exhaustive(bed, args.repeat))
        for batch in (4, 60):
            rows.append(bench_delta("digits CNN", bed.model, bed.test_x, bed.test_y, batch, args.repeat, Path(tmp)))
        gen = torch.Generator().manual_seed(1)
        n = 8 if args.quick else 32
        x, y = torch.randn(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,), generator=gen)
        rows.append(bench_delta("random conv chain, 24 layers", deep_chain(8 if args.quick else 24), x, y, 4, args.repeat, Path(tmp)))
    hessian = [bench_hessian(bed, tol=1e-2 if args.quick else 1e-3, max_iter=400 if args.quick else 4000, seeds=1 if args.quick else 3)]
    report = {"machine": machine(("numpy", "torch", "onnxruntime", "mpqopt")), "rows": rows, "hessian": hessian}
    for r in rows + hessian:
        print(r)
    out = args.out if args.out is not None or args.quick else RESULTS
    print(render(report) if out is None else write_results(out, "estimators", report, render))
    onnx_ok = all(r["onnx_cached_vs_full_max_rel"] <= 1e-6 for r in rows if "onnx_cached_vs_full_max_rel" in r)
    return 0 if all(r["identical"] for r in rows) and onnx_ok and all(r["within_se"] for r in hessian) else 1


if __name__ == "__main__":
    raise SystemExit(main())
