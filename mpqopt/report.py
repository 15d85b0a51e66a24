"""Human-readable text for results and problems (the CLI's tables; ``Result.table()``).

Numbers are printed the way people read them: ``201.0k`` rather than ``201040.0``, and a cost whose
unit is bits or bytes also shows its size in KiB/MiB.

>>> print(eng(201040), fmt_cost(201040, "bit"))
201.0k 201.0k bits (24.54 KiB)
"""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .budgets import cost_unit

if TYPE_CHECKING:
    from .problem import Problem
    from .result import Result

_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
_BINARY = ((2.0**40, "TiB"), (2.0**30, "GiB"), (2.0**20, "MiB"), (2.0**10, "KiB"))
_TIME_UNITS = {"s", "ms", "us", "µs", "ns"}
DASH = "-"


# ---------------------------------------------------------------------------------- numbers
def eng(value: float | None, digits: int = 4) -> str:
    """Engineering notation with an SI suffix: ``eng(8.4e6) == '8.400M'``, ``eng(0.0123) == '0.0123'``."""
    if value is None:
        return DASH
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    for factor, suffix in _SI:
        if abs(value) >= factor:
            # '#' keeps trailing zeros so 201040 reads 201.0k, not a rounder-looking 201k
            return f"{value / factor:#.{digits}g}".rstrip(".") + suffix
    return f"{value:.{digits}g}"


def binary_size(nbytes: float, digits: int = 4, sep: str = " ") -> str:
    """Bytes with a binary prefix: ``binary_size(3 * 2**20) == '3 MiB'``."""
    for factor, suffix in _BINARY:
        if abs(nbytes) >= factor:
            return f"{nbytes / factor:.{digits}g}{sep}{suffix}"
    return f"{nbytes:.{digits}g}{sep}B"


def fmt_cost(value: float | None, unit: str | None) -> str:
    """A cost total for reading: bits also in KiB/MiB, times with their unit, counts in SI form.

    >>> fmt_cost(8 * 2**20, "bit"), fmt_cost(1.5, "ms"), fmt_cost(3.2e9, None)
    ('8.389M bits (1 MiB)', '1.5 ms', '3.200G')
    """
    if value is None:
        return DASH
    if unit in ("bit", "bits"):
        return f"{eng(value)} bits ({binary_size(value / 8)})"
    if unit in ("byte", "bytes", "B"):
        return binary_size(value)
    if unit in _TIME_UNITS:
        return f"{value:.4g} {unit}"
    return eng(value) if unit is None else f"{eng(value)} {unit}"


def fmt_compact(value: float | None, unit: str | None) -> str:
    """A short form for narrow columns: bits and bytes as ``24.5KiB``, anything else as ``eng``."""
    if value is None:
        return DASH
    if unit in ("bit", "bits"):
        return binary_size(value / 8, digits=3, sep="")
    if unit in ("byte", "bytes", "B"):
        return binary_size(value, digits=3, sep="")
    return eng(value, digits=3)


def fmt_num(value: float | None, digits: int = 4) -> str:
    """A plain number (objective, sensitivity) with ``digits`` significant figures, '-' for None."""
    return DASH if value is None else f"{float(value):.{digits}g}"


def fmt_gap(gap: float | None) -> str:
    if gap is None:
        return DASH
    return "0" if gap == 0 else f"{gap:.2e}"


def fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 10 else f"{seconds:.2f} s"


def percent_of_range(value: float, lo: float, hi: float) -> float | None:
    """Where ``value`` lies between the cheapest (0%) and dearest (100%) total; None if the range is empty."""
    return None if hi <= lo else 100.0 * (value - lo) / (hi - lo)


# ---------------------------------------------------------------------------------- tables
def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = (), indent: str = "") -> list[str]:
    """Align ``rows`` under ``headers`` (columns in ``right`` right-aligned), two spaces apart."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)]
        return (indent + "  ".join(parts)).rstrip()

    return [line(headers)] + [line(row) for row in rows]


def _layer_notes(problem: "Problem") -> list[str]:
    """Per layer: 'tie N' for tied layers, 'fixed' for fixed ones (empty when neither applies)."""
    notes = [[] for _ in problem.layers]
    for t, group in enumerate(problem.ties, start=1):
        for name in group:
            notes[problem.layer_index(name)].append(f"tie {t}")
    for name in problem.fixed:
        notes[problem.layer_index(name)].append("fixed")
    return [", ".join(n) for n in notes]


# ---------------------------------------------------------------------------------- results
def result_table(result: "Result") -> str:
    """Per-layer table (layer, option, sensitivity, every cost), cost totals vs budgets, and the solve summary.

    >>> from mpqopt import Problem, solve
    >>> p = Problem(["a", "b"], [4, 8], [[0.5, 0.0], [0.1, 0.0]], costs={"size_bits": [[4, 8], [4, 8]]})
    >>> print(solve(p, budgets={"size_bits": 12}).table())  # doctest: +ELLIPSIS
    layer  option  sensitivity  size_bits
    a      W8                0          8
    ...
    """
    problem = result.problem
    names = list(problem.costs)
    scoped = [k for k in result.budgets if k not in problem.costs]  # scoped budgets: rows after the costs
    units = {n: cost_unit(problem, n) for n in names + scoped}
    lines: list[str] = []
    if result.x is not None:
        x = np.asarray(result.x)
        rows_idx = np.arange(problem.num_layers)
        sens = problem.sensitivity[rows_idx, x]
        notes = _layer_notes(problem)
        show_notes = any(notes)
        headers = ["layer", "option", "sensitivity"] + names + (["note"] if show_notes else [])
        rows = []
        labels = problem.option_labels
        for l, layer in enumerate(problem.layers):
            row = [layer, labels[x[l]], fmt_num(sens[l])] + [eng(problem.costs[n][l, x[l]]) for n in names]
            rows.append(row + ([notes[l]] if show_notes else []))
        rows.append(["total", "", fmt_num(sens.sum())] + [eng(result.costs.get(n)) for n in names] + ([""] if show_notes else []))
        lines += format_table(headers, rows, right=range(2, 3 + len(names)))
        if problem.pairwise is not None and result.loss is not None:
            what = "objective" if result.minimize is None else "loss"
            lines.append(f"({what} adds a pairwise term of {fmt_num(result.loss - float(sens.sum()))})")
        lines.append("")

    if result.x is not None and names:
        rows = []
        bpw = result.bpw  # sizes as bits per weight when the weight counts are known
        for n in names + scoped:
            budget = result.budgets.get(n)
            slack = result.slack.get(n)
            rows.append([n, fmt_cost(result.costs.get(n), units[n]), fmt_cost(budget, units[n]), fmt_cost(slack, units[n])])
            if bpw:
                rows[-1] += [_fmt_bpw(bpw.get(n, {}).get("total")), _fmt_bpw(bpw.get(n, {}).get("budget"))]
        lines += format_table(["cost", "total", "budget", "slack"] + (["bpw", "bpw budget"] if bpw else []), rows) + [""]
    elif result.infeasibility is not None:
        inf = result.infeasibility
        rows = []
        for n, limit in inf.budgets.items():
            cheapest = inf.cheapest.get(n)
            verdict = "below cheapest" if n in inf.unmet else ""
            rows.append([n, fmt_cost(limit, units.get(n)), fmt_cost(cheapest, units.get(n)), verdict])
        lines += format_table(["budget", "limit", "cheapest achievable", ""], rows) + [""]
    elif result.budgets:
        rows = [[n, fmt_cost(v, units.get(n))] for n, v in result.budgets.items()]
        lines += format_table(["budget", "limit"], rows) + [""]

    lines.append(f"status     {result.status}" + (f" ({result.message})" if result.message else ""))
    if result.minimize is None:
        lines.append(f"objective  {fmt_num(result.objective, 10)}   bound {fmt_num(result.bound, 10)}   gap {fmt_gap(result.gap)}")
    else:  # accuracy-target mode: the objective is a cost, the loss a constraint
        lines.append(f"objective  {result.minimize} = {fmt_num(result.objective, 10)} (minimized)   bound {fmt_num(result.bound, 10)}   gap {fmt_gap(result.gap)}")
        limit = "" if result.max_loss is None else f" (max_loss {fmt_num(result.max_loss, 10)})"
        lines.append(f"loss       {fmt_num(result.loss, 10)}{limit}")
    lines.append(f"solver     {result.solver}, {fmt_time(result.solve_time_s)} in solve")
    if result.bound is not None and result.proof:
        lines.append(f"bound by   {result.proof}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- problems
def problem_info(problem: "Problem") -> dict[str, Any]:
    """A JSON-ready description of a problem (``mpqopt info --json``): sizes, options, cost ranges,
    budgets (absolute and as % of the cost range), ties, fixed layers, masked entries, pairwise, meta."""
    costs: dict[str, Any] = {}
    allowed = problem.allowed
    for name, table in problem.costs.items():
        lo, hi = problem.cost_range(name)
        per_layer = {
            layer: [float(np.min(table[l][allowed[l]])), float(np.max(table[l][allowed[l]]))]
            for l, layer in enumerate(problem.layers)
        }
        costs[name] = {"unit": cost_unit(problem, name), "min": lo, "max": hi, "per_layer": per_layer}
    budgets = {}
    for name, value in problem.budgets.items():
        lo, hi = problem.cost_range(name)
        budgets[name] = {"value": value, "percent_of_range": percent_of_range(value, lo, hi)}
    masked = [[problem.layers[l], problem.options[k].label] for l, k in np.argwhere(~allowed).tolist()]
    return {
        "num_layers": problem.num_layers,
        "num_options": problem.num_options,
        "num_decisions": problem.num_groups,
        "layers": list(problem.layers),
        "options": [o.to_dict() for o in problem.options],
        "costs": costs,
        "budgets": budgets,
        "ties": [list(t) for t in problem.ties],
        "fixed": dict(problem.fixed),
        "masked": masked,
        "pairwise": problem.pairwise is not None,
        "sensitivity_std": problem.sensitivity_std is not None,
        "description": problem.meta.get("description"),
        "meta": problem.meta,
    }


def problem_summary(problem: "Problem") -> str:
    """Readable description of a problem (``mpqopt info``); the same facts as :func:`problem_info`.

    >>> from mpqopt import Problem
    >>> p = Problem(["a", "b"], [4, 8], [[0.5, 0.0], [0.1, 0.0]], costs={"size_bits": [[4, 8], [4, 8]]})
    >>> print(problem_summary(p).splitlines()[0])
    2 layers x 2 options (2 decisions)
    """
    info = problem_info(problem)
    lines = [f"{info['num_layers']} layers x {info['num_options']} options ({info['num_decisions']} decisions)"]
    if info["description"]:
        lines += textwrap.wrap(f"description: {info['description']}", width=100, subsequent_indent="  ")
    meta_keys = sorted(k for k in problem.meta if k != "description")
    if meta_keys:
        lines.append("meta: " + ", ".join(meta_keys))
    opts = ", ".join(f"{o.label} (w={o.w}" + (f", a={o.a})" if o.a is not None else ")") for o in problem.options)
    lines.append(f"options: {opts}")
    lines.append("")

    units = {n: cost_unit(problem, n) for n in problem.costs}
    if info["costs"]:
        rows = [[n, units[n] or DASH, fmt_cost(c["min"], units[n]), fmt_cost(c["max"], units[n])] for n, c in info["costs"].items()]
        lines += format_table(["cost", "unit", "min total", "max total"], rows) + [""]
    else:
        lines += ["costs: none", ""]

    s_lo = [float(np.min(problem.sensitivity[l][problem.allowed[l]])) for l in range(problem.num_layers)]
    s_hi = [float(np.max(problem.sensitivity[l][problem.allowed[l]])) for l in range(problem.num_layers)]
    notes = _layer_notes(problem)
    show_notes = any(notes)
    headers = ["layer", "sensitivity"] + list(problem.costs) + (["note"] if show_notes else [])
    rows = []
    for l, layer in enumerate(problem.layers):
        row = [layer, f"{fmt_num(s_lo[l], 3)}..{fmt_num(s_hi[l], 3)}"]
        for c in info["costs"].values():
            lo, hi = c["per_layer"][layer]
            row.append(f"{eng(lo, 3)}..{eng(hi, 3)}")
        rows.append(row + ([notes[l]] if show_notes else []))
    lines.append("per-layer ranges (min..max over allowed options):")
    lines += format_table(headers, rows, indent="  ") + [""]

    if info["budgets"]:
        rows = []
        for n, b in info["budgets"].items():
            pct = b["percent_of_range"]
            unit = cost_unit(problem, n)  # a scoped budget has its cost table's unit
            rows.append([n, fmt_cost(b["value"], unit), DASH if pct is None else f"{pct:.1f}%"])
        lines += format_table(["budget", "limit", "% of range"], rows)
    else:
        lines.append("budgets: none")
    lines.append(f"ties: {len(problem.ties)}" + "".join(f"\n  tie {t}: {', '.join(g)}" for t, g in enumerate(problem.ties, 1)))
    lines.append(f"fixed: {len(problem.fixed)}" + "".join(f"\n  {k} = {v}" for k, v in problem.fixed.items()))
    shown = ", ".join(f"{l}:{o}" for l, o in info["masked"][:10])
    more = f" (+{len(info['masked']) - 10} more)" if len(info["masked"]) > 10 else ""
    lines.append(f"masked entries: {len(info['masked'])} of {problem.num_layers * problem.num_options}" + (f": {shown}{more}" if shown else ""))
    lines.append(f"pairwise term: {'present' if info['pairwise'] else 'absent'}")
    lines.append(f"sensitivity_std: {'present' if info['sensitivity_std'] else 'absent'}")
    return "\n".join(lines)


def _fmt_bpw(value: float | None) -> str:
    return DASH if value is None else f"{value:.4g}"


# ---------------------------------------------------------------------------------- allocation matrix
def allocation_matrix(problem: "Problem", columns: Sequence[str], results: Sequence["Result"], cost: str | None = None) -> str:
    """Layers as rows, one column per result (a budget), each cell the chosen option label; then rows
    for the budget, the cost used, objective, gap, solve time and status.
    """
    notes = _layer_notes(problem)
    show_notes = any(notes)
    headers = ["layer"] + list(columns) + (["note"] if show_notes else [])
    rows = []
    labels = problem.option_labels
    for l, layer in enumerate(problem.layers):
        cells = [DASH if r.x is None else labels[int(r.x[l])] for r in results]
        rows.append([layer] + cells + ([notes[l]] if show_notes else []))
    pad = [""] if show_notes else []
    rows.append(["-" * 5] + ["-" * max(4, len(c)) for c in columns] + pad)
    if cost is not None:
        unit = cost_unit(problem, cost)
        rows.append([f"budget {cost}"] + [fmt_compact(r.budgets.get(cost), unit) for r in results] + pad)
        rows.append([f"used {cost}"] + [fmt_compact(r.costs.get(cost), unit) for r in results] + pad)
    rows.append(["objective"] + [fmt_num(r.objective) for r in results] + pad)
    rows.append(["gap"] + [fmt_gap(r.gap) for r in results] + pad)
    rows.append(["time"] + [fmt_time(r.solve_time_s) for r in results] + pad)
    rows.append(["status"] + [r.status for r in results] + pad)
    return "\n".join(format_table(headers, rows, right=range(1, 1 + len(columns))))
