"""``mpqopt demo``: the bundled example problems (mpqopt/data/NAME.json) solved at several size budgets."""

from __future__ import annotations

import argparse
import importlib.resources
import sys
from typing import Any

import numpy as np

from ..budgets import cost_unit
from ..errors import MpqoptError
from ..problem import Problem
from ..report import allocation_matrix, fmt_cost, fmt_num, percent_of_range
from ..result import Result
from ..solve import solve
from ..verify import violations
from .common import EXIT_OK

DEMO_PERCENTS = (25, 50, 75)
WIDTH = 100


def example_paths() -> dict[str, Any]:
    """Bundled example name -> resource (``None`` for an expected example whose file is missing)."""
    from . import EXAMPLES  # mpqopt.cli.EXAMPLES, read at each call: the one place that names them (tests patch it)

    data = importlib.resources.files("mpqopt") / "data"
    found = {}
    if data.is_dir():
        found = {entry.name[:-5]: entry for entry in data.iterdir() if entry.name.endswith(".json")}
    out: dict[str, Any] = {name: found.get(name) for name in EXAMPLES}
    out.update({name: found[name] for name in sorted(found) if name not in out})
    return out


def _load_example(name: str, resource: Any) -> Problem:
    from . import load_problem  # mpqopt.cli's, at call time (the package imports this module first)

    with importlib.resources.as_file(resource) as path:
        return load_problem(path)


def _missing(name: str) -> str:
    return f"bundled example '{name}' is missing: mpqopt/data/{name}.json not found (regenerate it with scripts/make_examples.py)"


def cmd_demo(args: argparse.Namespace) -> int:
    paths = example_paths()
    if args.list:
        for name, resource in paths.items():
            if resource is None:
                print(f"{name:12s}  (missing: mpqopt/data/{name}.json)")
                continue
            problem = _load_example(name, resource)
            desc = _short(problem.meta.get("description") or "", WIDTH - 40)
            print(f"{name:12s}  {problem.num_layers:3d} layers x {problem.num_options} options  {desc}")
        return EXIT_OK
    if args.name is not None:
        if args.name not in paths:
            raise MpqoptError(f"unknown example '{args.name}'; bundled examples: {', '.join(paths)}")
        if paths[args.name] is None:
            raise MpqoptError(_missing(args.name))
        selected = {args.name: paths[args.name]}
    else:
        selected = paths
    ran = 0
    for name, resource in selected.items():
        if resource is None:
            print(f"mpqopt: warning: {_missing(name)}", file=sys.stderr)
            continue
        if ran:
            print()
        demo_example(name, _load_example(name, resource))
        ran += 1
    if not ran:
        raise MpqoptError("no bundled example found in mpqopt/data")
    return EXIT_OK


def size_cost(problem: Problem) -> str | None:
    """The cost the demo sweeps: ``size_bits`` if present, else a cost measured in bits/bytes, else the first."""
    if "size_bits" in problem.costs:
        return "size_bits"
    for name in problem.costs:
        if cost_unit(problem, name) in ("bit", "bits", "byte", "bytes"):
            return name
    return next(iter(problem.costs), None)


def _uniform_option(problem: Problem) -> int | None:
    """Index of the W4 option (label 'W4', else the first with 4 weight bits), if any."""
    labels = problem.option_labels
    if "W4" in labels:
        return labels.index("W4")
    return next((k for k, o in enumerate(problem.options) if o.w == 4), None)


def demo_budgets(problem: Problem, cost: str) -> list[tuple[str, float]]:
    """(column header, absolute budget) pairs, ascending: 25/50/75% of the range and uniform W4's size."""
    lo, hi = problem.cost_range(cost)
    columns = [(f"{p}%", lo + p / 100.0 * (hi - lo)) for p in DEMO_PERCENTS]
    k = _uniform_option(problem)
    if k is not None:
        uniform = float(problem.costs[cost][:, k].sum())
        if lo <= uniform <= hi and all(abs(uniform - v) > 1e-9 * max(abs(v), 1.0) for _, v in columns):
            columns.append((f"={problem.option_labels[k]}", uniform))
    return sorted(columns, key=lambda c: c[1])


def demo_example(name: str, problem: Problem) -> list[Result]:
    """Print one example solved at the demo budgets; return the results (in column order)."""
    ties = f", {len(problem.ties)} tie groups" if problem.ties else ""
    print(f"== {name}: {problem.num_layers} layers x {problem.num_options} options ({' '.join(problem.option_labels)}){ties}")
    desc = problem.meta.get("description")
    if desc:
        print(_short(str(desc), WIDTH))
    cost = size_cost(problem)
    base = problem.replace(budgets={})  # the sweep sets the size budget alone
    if cost is None:
        print("no cost table: solving without budgets")
        results = [solve(base)]
        print("\n" + allocation_matrix(problem, ["free"], results))
        return results
    unit = cost_unit(problem, cost)
    lo, hi = problem.cost_range(cost)
    budgets = demo_budgets(problem, cost)
    columns = [c for c, _ in budgets]
    results = [solve(base, budgets={cost: value}) for _, value in budgets]
    solvers = ", ".join(dict.fromkeys(r.solver.split(" ", 1)[0] for r in results))  # "mckp (auto)" -> "mckp"
    print(f"budget on {cost} alone, range {fmt_cost(lo, unit)} .. {fmt_cost(hi, unit)}; solver {solvers}")
    print("\n" + allocation_matrix(problem, columns, results, cost))
    k = _uniform_option(problem)
    column = None if k is None else f"={problem.option_labels[k]}"
    if column in columns:
        label, i = problem.option_labels[k], columns.index(column)
        pct = percent_of_range(budgets[i][1], lo, hi)
        line = f"{column}: size of uniform {label} ({pct:.1f}% of range)"
        x = np.full(problem.num_layers, k, dtype=np.int64)
        if not violations(base, x, {}) and results[i].objective is not None:
            line += f"; objective: uniform {label} {fmt_num(problem.evaluate(x).objective)}, mixed {fmt_num(results[i].objective)}"
        print(line)
    return results


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."
