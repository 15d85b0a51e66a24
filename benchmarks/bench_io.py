"""Benchmark problem files: ``mpqopt.save`` / ``mpqopt.load`` of NPZ and JSON at 50,000 layers x 8 options, two cost tables.

    python benchmarks/bench_io.py [--repeat N] [--layers L] [--tmp DIR] [--out DIR]
    python benchmarks/bench_io.py --smoke        # 200 layers, one run: checks that the script works (seconds)

Two problems, both ``L`` layers x 8 options (W1..W8) with two cost tables, ``size_bits`` and ``bitops``:

* ``random``: the problem the README's speed line was first measured on (commit 35e1d0e, kept as
  ``tests/io/test_npz_format.py::test_large_npz_loads_quickly``): uniform random sensitivity and costs
  (seed 0), layers ``layer0``, ``layer1``, ..., one budget. Every float needs ~17 digits in JSON, the
  worst case for JSON size and speed;
* ``synthetic``: ``mpqopt.synthetic.mckp_problem(L, 8, budgets=2, seed=0)`` (cnn) with its third table,
  ``latency_ms``, left out: integral ``size_bits`` and ``bitops``, MPQ-shaped sensitivity, two budgets,
  cost units and meta.

Per problem and format, in one process: one warm-up save and load, then ``--repeat`` runs of
``mpqopt.save(problem, path)`` followed by ``mpqopt.load(path)`` of that file in a temporary folder
(``--tmp``; the load reads a file just written, so from the page cache, not the disk). Wall and CPU
(``time.process_time``) seconds of each call, median and min; file size in bytes and MB (1e6 bytes).
Every loaded problem is checked equal to the saved one: layer names, options, every table bit for bit
and cost names in order, budgets, ties, fixed layers, masks, units, meta. Exit status 1 if one is not.
Results go to ``benchmarks/results/io.json`` and ``.md`` (``--smoke``: a temporary folder unless ``--out``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness, when this file is loaded by path
from harness import RESULTS, machine, machine_line, stopwatch, summary, write_results  # noqa: E402

LAYERS = 50_000
SMOKE_LAYERS = 200
OPTIONS = 8
FORMATS = ("npz", "json")
COSTS = ("size_bits", "bitops")


# ---------------------------------------------------------------------------------- problems
def random_problem(layers: int) -> Any:
    """Uniform random tables, as commit 35e1d0e measured (``test_large_npz_loads_quickly``)."""
    from mpqopt import Problem

    rng = np.random.default_rng(0)
    shape = (layers, OPTIONS)
    return Problem([f"layer{i}" for i in range(layers)], list(range(1, OPTIONS + 1)), rng.random(shape),
                   costs={"size_bits": rng.random(shape) * 1e6, "bitops": rng.random(shape) * 1e9}, budgets={"size_bits": 1e9})


def synthetic_problem(layers: int) -> Any:
    """``mckp_problem(layers, 8, budgets=2)`` with only its ``size_bits`` and ``bitops`` tables."""
    from mpqopt.synthetic import mckp_problem

    p = mckp_problem(layers, OPTIONS, budgets=2, seed=0)
    return p.replace(costs={name: p.costs[name] for name in COSTS})


PROBLEMS: dict[str, tuple[Callable[[int], Any], str]] = {
    "random": (random_problem, "uniform random tables (seed 0), names `layer{i}`, one budget (the problem of commit 35e1d0e)"),
    "synthetic": (synthetic_problem, "`mckp_problem(L, 8, budgets=2, seed=0)` without `latency_ms`: integral costs, two budgets, meta"),
}


# ---------------------------------------------------------------------------------- equality
def _same_array(a: Any, b: Any) -> bool:
    """Both None, or equal shape, dtype and bits (sparse matrices compared dense)."""
    if a is None or b is None:
        return a is None and b is None
    a, b = (m.toarray() if hasattr(m, "toarray") else np.asarray(m) for m in (a, b))
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def differences(saved: Any, loaded: Any) -> list[str]:
    """What differs between two problems (empty: the same problem, every table bit for bit)."""
    out = []
    for key in ("layers", "options", "ties", "fixed", "cost_units"):
        if getattr(loaded, key) != getattr(saved, key):
            out.append(key)
    for key in ("budgets", "meta"):  # repr tells -0.0 from 0.0 and 1 from 1.0, and keeps order
        if repr(getattr(loaded, key)) != repr(getattr(saved, key)):
            out.append(key)
    if list(loaded.costs) != list(saved.costs):
        out.append(f"cost names {list(loaded.costs)} != {list(saved.costs)}")
    else:
        out += [f"costs[{name!r}]" for name in saved.costs if not _same_array(loaded.costs[name], saved.costs[name])]
    for key in ("sensitivity", "allowed", "given_allowed", "sensitivity_std", "pairwise", "params", "row_lengths"):
        if not _same_array(getattr(loaded, key), getattr(saved, key)):
            out.append(key)
    return out


# ---------------------------------------------------------------------------------- timing
def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """``(wall seconds, CPU seconds of this process, output)`` of one call of ``fn``."""
    cpu = time.process_time()
    wall, out = stopwatch(fn)
    return wall, time.process_time() - cpu, out


def stats(walls: list[float], cpus: list[float]) -> dict[str, Any]:
    return {"wall": summary(walls), "cpu": summary(cpus), "wall_s": walls, "cpu_s": cpus}


def measure(problem: Any, fmt: str, folder: Path, repeat: int) -> dict[str, Any]:
    """One warm-up, then ``repeat`` (save, load) pairs of ``problem`` as ``fmt`` in ``folder``; every load checked."""
    import mpqopt

    path = folder / f"problem.{fmt}"
    mpqopt.save(problem, path)
    mpqopt.load(path)
    save_w, save_c, load_w, load_c, found = [], [], [], [], []
    for _ in range(repeat):
        wall, cpu, _ = timed(lambda: mpqopt.save(problem, path))
        save_w.append(wall)
        save_c.append(cpu)
        size = path.stat().st_size
        wall, cpu, loaded = timed(lambda: mpqopt.load(path))
        load_w.append(wall)
        load_c.append(cpu)
        found += [d for d in differences(problem, loaded) if d not in found]
        del loaded
    path.unlink()
    return {"format": fmt, "bytes": size, "mb": size / 1e6, "save": stats(save_w, save_c), "load": stats(load_w, load_c),
            "equal": not found, "differences": found}


# ---------------------------------------------------------------------------------- report
def _s(part: dict[str, Any], kind: str, key: str = "median_ms") -> str:
    return f"{part[kind][key] / 1e3:.3f}"


def markdown(report: dict[str, Any]) -> str:
    load = ", ".join(f"{v:.2f}" for v in report["loadavg_before"])
    after = ", ".join(f"{v:.2f}" for v in report["loadavg_after"])
    lines = [
        "# Problem files: save and load, NPZ and JSON",
        "",
        machine_line(report["machine"]),
        f"Mode {report['mode']}: {report['layers']:,} layers x {report['options']} options (W1..W{report['options']}), two cost tables "
        f"(`size_bits`, `bitops`); `mpqopt.save(problem, path)` then `mpqopt.load(path)` of that file in `{report['tmp']}` "
        f"(the load reads it from the page cache), one warm-up, then median (min) of {report['repeat']} run{'s' if report['repeat'] != 1 else ''}, wall and CPU "
        f"(`time.process_time`) seconds. MB = 1e6 bytes. Load average (1, 5, 15 min) before: {load}; after: {after}.",
        "",
        "Problems:",
        "",
        *(f"* `{name}`: {desc}" for name, desc in report["problems"].items()),
        "",
        "| problem | format | file size | save: wall median (min) | save: CPU | load: wall median (min) | load: CPU | loaded = saved |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for case in report["cases"]:
        s, ld = case["save"], case["load"]
        lines.append(f"| {case['problem']} | {case['format'].upper()} | {case['mb']:.2f} MB ({case['bytes']:,} B) | "
                     f"{_s(s, 'wall')} s ({_s(s, 'wall', 'min_ms')}) | {_s(s, 'cpu')} s | {_s(ld, 'wall')} s ({_s(ld, 'wall', 'min_ms')}) | "
                     f"{_s(ld, 'cpu')} s | {'yes' if case['equal'] else 'NO: ' + ', '.join(case['differences'])} |")
    ok = all(c["equal"] for c in report["cases"])
    lines += ["", f"Round trip: every loaded problem equals the saved one: **{'yes' if ok else 'NO'}**.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=None, help="timed (save, load) runs after one warm-up (default 5; 1 with --smoke)")
    parser.add_argument("--layers", type=int, default=None, help=f"layers (default {LAYERS:,}; {SMOKE_LAYERS} with --smoke)")
    parser.add_argument("--smoke", action="store_true", help=f"tiny check that the script runs: {SMOKE_LAYERS} layers, one run")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the temporary problem files (default: the system's temp folder)")
    parser.add_argument("--out", type=Path, default=None, help="folder for io.json / io.md (default benchmarks/results; --smoke: a temp folder)")
    args = parser.parse_args(argv)
    repeat = args.repeat or (1 if args.smoke else 5)
    layers = args.layers or (SMOKE_LAYERS if args.smoke else LAYERS)
    if repeat < 1 or layers < 1:
        parser.error("--repeat and --layers must be >= 1")
    out_dir = args.out or (Path(tempfile.gettempdir()) / "mpqopt_bench_io_smoke" if args.smoke else RESULTS)
    loadavg_before = list(os.getloadavg())
    cases = []
    with tempfile.TemporaryDirectory(prefix="mpqopt_bench_io_", dir=args.tmp) as folder:
        for name, (build, _) in PROBLEMS.items():
            build_s, problem = stopwatch(lambda build=build: build(layers))
            for fmt in FORMATS:
                case = {"problem": name, "build_s": build_s} | measure(problem, fmt, Path(folder), repeat)
                cases.append(case)
                print(f"  {name} {fmt}: {case['mb']:.2f} MB, save {_s(case['save'], 'wall')} s (CPU {_s(case['save'], 'cpu')}), "
                      f"load {_s(case['load'], 'wall')} s (CPU {_s(case['load'], 'cpu')}), equal {case['equal']}", flush=True)
            del problem
    report = {"benchmark": "io", "mode": "smoke" if args.smoke else "full", "layers": layers, "options": OPTIONS, "costs": list(COSTS),
              "repeat": repeat, "tmp": str(Path(args.tmp or tempfile.gettempdir()).resolve()), "mb": "1e6 bytes",
              "loadavg_before": loadavg_before, "loadavg_after": list(os.getloadavg()), "machine": machine(),
              "problems": {name: desc for name, (_, desc) in PROBLEMS.items()}, "cases": cases}
    print(write_results(out_dir, "io", report, markdown))
    return 0 if all(c["equal"] for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
