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
  (``concat_batches``) and the options of a layer stacked along the batch where that pays, beside the ONNX adapter's ``estimate_delta_output`` on the same network exported
  to ONNX (BN folded by the exporter: equal to float round-off, reported). On the digits CNN (5 layers)
  with batches of 4 and 60, and on a deeper random conv chain (24 conv layers, 32x32 inputs, batches
  of 4; it stands in for the 50-layer ImageNet CNN of issue 18, which is not installed here).

Fast runs (< 2 s): median of ``--repeat`` after a warm-up; slower ones: one run.
Results: ``benchmarks/results/estimators.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
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
    onnx_s, ort = timed(lambda: estimate_delta_output(path, inputs, OPTIONS, labels=labels, threads=1, progress=False), repeat)
    return {"estimator": "estimate_delta_loss", "model": name, "batches": f"{len(data)} x {batch}", "layers": len(new.layers),
            "before_s": old_s, "after_s": new_s, "speedup": old_s / new_s, "onnx_delta_output_s": onnx_s, "after_vs_onnx": new_s / onnx_s,
            "mode": new.meta["mode"], "step_fraction": new.meta["step_fraction"], "batch_perturbations": new.meta["batch_perturbations"],
            "concat_batches": new.meta["concat_batches"],
            **compare(new.values, old.values), "max_abs_diff_onnx": float(np.max(np.abs(new.values - ort.values)))}


def render(report: dict[str, Any]) -> str:
    lines = ["# Estimators before vs after (cached activations)", "", machine_line(report["machine"]), "",
             "One thread (torch and ONNX Runtime). before = the old path (`_exhaustive_reference`, `_delta_loss_reference`: a full forward",
             "per evaluation); after = the new one; `equal`: the tables are bit-identical, else the largest absolute difference.", "",
             "| estimator | model | batches | before (s) | after (s) | speedup | ONNX delta_output (s) | after / ONNX | equal | mode, steps run, joining |",
             "|---|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in report["rows"]:
        onnx = f"{r['onnx_delta_output_s']:.3f}" if "onnx_delta_output_s" in r else "-"
        ratio = f"{r['after_vs_onnx']:.2f}" if "after_vs_onnx" in r else "-"
        equal = "bit-identical" if r["identical"] else f"max diff {r['max_abs_diff']:.1e}"
        if "max_abs_diff_onnx" in r:
            equal += f"; ONNX max diff {r['max_abs_diff_onnx']:.1e}"
        joined = f", {r['concat_batches']} batches per forward" if r.get("concat_batches", 1) > 1 else ""
        lines.append(f"| {r['estimator']} | {r['model']} | {r['batches']} | {r['before_s']:.3f} | {r['after_s']:.3f} | {r['speedup']:.1f}x | {onnx} | {ratio} | {equal} | {r['mode']}, {r['step_fraction']:.0%}{joined} |")
    bare = [r for r in report["rows"] if "bare_enumeration_s" in r]
    for r in bare:
        lines += ["", f"exhaustive_losses vs a bare depth-first enumeration of the same nn.Sequential (no checks, progress or checkpoints): "
                  f"{r['after_s']:.3f} s vs {r['bare_enumeration_s']:.3f} s = {r['after_vs_bare']:.2f}x (goal <= 2x); values agree to {r['bare_max_abs_diff']:.1e}."]
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
    report = {"machine": machine(("numpy", "torch", "onnxruntime", "mpqopt")), "rows": rows}
    for r in rows:
        print(r)
    out = args.out if args.out is not None or args.quick else RESULTS
    print(render(report) if out is None else write_results(out, "estimators", report, render))
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
