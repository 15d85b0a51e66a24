"""Budget specifications: absolute numbers, numbers with units, and relative percentages.

``resolve_budgets(problem, {"size": "7.9MiB", "bitops": "50%"})`` returns absolute limits keyed by
cost-table name. A percentage is the fraction of the way from the cheapest to the dearest assignment
that ties, masks and fixed layers allow (HAWQ-V3's convention: 0% = all lowest, 100% = all highest).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Mapping

from .errors import BudgetError

if TYPE_CHECKING:
    from .problem import Problem

# unit -> (dimension, factor to the dimension's base unit: bit, second, or a plain count)
_UNITS: dict[str, tuple[str, float]] = {
    "bit": ("data", 1.0), "bits": ("data", 1.0),
    "kbit": ("data", 1e3), "Kbit": ("data", 1e3), "Mbit": ("data", 1e6), "Gbit": ("data", 1e9),
    "Kibit": ("data", 2.0**10), "Mibit": ("data", 2.0**20), "Gibit": ("data", 2.0**30),
    "B": ("data", 8.0), "byte": ("data", 8.0), "bytes": ("data", 8.0),
    "kB": ("data", 8e3), "KB": ("data", 8e3), "MB": ("data", 8e6), "GB": ("data", 8e9), "TB": ("data", 8e12),
    "KiB": ("data", 8 * 2.0**10), "MiB": ("data", 8 * 2.0**20), "GiB": ("data", 8 * 2.0**30), "TiB": ("data", 8 * 2.0**40),
    "s": ("time", 1.0), "ms": ("time", 1e-3), "us": ("time", 1e-6), "µs": ("time", 1e-6), "ns": ("time", 1e-9),
    "k": ("count", 1e3), "K": ("count", 1e3), "M": ("count", 1e6), "G": ("count", 1e9), "T": ("count", 1e12),
}
# a cost table's own unit, inferred from its name's suffix when not given in Problem.cost_units
_NAME_SUFFIX_UNITS = {"_bits": "bit", "_bytes": "byte", "_ms": "ms", "_us": "us", "_ns": "ns", "_s": "s"}
_SPEC_RE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-zµ%]*)\s*$")
_COUNT_UNITS = {"op", "ops", "count", "bitops", "bops", "macs", "flops"}  # plain counts: 'k', 'M', 'G' apply
_REMOVE = {"none", "off", "unlimited"}
# 'inf' used to drop a budget while 1e400 (also inf) was refused: now both are refused with this advice
_DROP_ADVICE = "to drop a budget give None in Python or 'none' on the command line (-b NAME=none)"


def cost_unit(problem: "Problem", name: str) -> str | None:
    """The unit of cost table ``name`` (``'bit'``, ``'byte'``, ``'ms'``...) or None if unknown."""
    if name in problem.cost_units:
        return problem.cost_units[name]
    for suffix, unit in _NAME_SUFFIX_UNITS.items():
        if name.endswith(suffix) or name == suffix[1:]:
            return unit
    return None


def resolve_budget_name(problem: "Problem", name: str) -> str:
    """Map a budget name to a cost table: exact name, or a unique prefix like ``size`` -> ``size_bits``."""
    if name in problem.costs:
        return name
    candidates = sorted(c for c in problem.costs if c.startswith(name + "_"))
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise BudgetError(f"budget '{name}' is ambiguous: it could mean any of {candidates}")
    raise BudgetError(f"budget '{name}' names no cost table; costs are {sorted(problem.costs) or 'none'}")


def parse_budget(problem: "Problem", name: str, spec: Any) -> float | None:
    """Absolute limit for one budget on cost ``name`` (already resolved); None removes the budget."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in _REMOVE):
        return None
    if isinstance(spec, bool):
        raise BudgetError(f"budget '{name}': {spec!r} is not a number")
    if isinstance(spec, (int, float)):
        value = float(spec)
    elif isinstance(spec, str):
        value = _parse_text(problem, name, spec)
    else:
        try:
            value = float(spec)  # numpy scalars
        except (TypeError, ValueError):
            raise BudgetError(f"budget '{name}': cannot read {spec!r}; use a number, '50%' or a value with a unit like '7.9MiB'") from None
    if math.isinf(value) and value > 0:
        raise BudgetError(f"budget '{name}' is infinite ({spec!r}); {_DROP_ADVICE}")
    if not math.isfinite(value) or value < 0:
        raise BudgetError(f"budget '{name}' must be a finite non-negative number, got {value}")
    return value


def resolve_budgets(problem: "Problem", budgets: Mapping[str, Any] | None, base: Mapping[str, float] | None = None) -> dict[str, float]:
    """Absolute budgets keyed by cost name, from any mix of numbers, unit strings and percentages.

    ``budgets`` are applied on top of ``base`` (e.g. the problem's own defaults); a value of None or
    ``'none'`` removes that budget.

    >>> from mpqopt import Problem
    >>> p = Problem(["a", "b"], [4, 8], [[1, 0], [1, 0]], costs={"size_bits": [[4, 8], [4, 8]]})
    >>> resolve_budgets(p, {"size": "50%"})
    {'size_bits': 12.0}
    """
    out = dict(base or {})
    if budgets is None:
        return out
    if not isinstance(budgets, Mapping):
        raise BudgetError("budgets must be a mapping of cost name -> limit")
    given: dict[str, str] = {}  # cost name -> the budget name that set it here
    for raw_name, spec in budgets.items():
        if not isinstance(raw_name, str):
            raise BudgetError(f"budget names must be strings (cost names such as 'size_bits'), got {raw_name!r}")
        name = resolve_budget_name(problem, raw_name)
        if name in given:
            # {'size': 1, 'size_bits': 2} would silently keep the last one
            raise BudgetError(f"budgets '{given[name]}' and '{raw_name}' both set the budget on cost '{name}'; give it once")
        given[name] = raw_name
        value = parse_budget(problem, name, spec)
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def parse_budget_args(items: list[str]) -> dict[str, str]:
    """``['size=50%', 'bitops=1.2G']`` (command-line form) -> ``{'size': '50%', 'bitops': '1.2G'}``."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise BudgetError(f"cannot read budget {item!r}: expected NAME=VALUE, e.g. size_bits=8.4e6 or size=50%")
        if name.strip() in out:
            raise BudgetError(f"budget '{name.strip()}' is given twice ({name.strip()}={out[name.strip()]} and {item.strip()}); give it once")
        out[name.strip()] = value.strip()
    return out


def _parse_text(problem: "Problem", name: str, text: str) -> float:
    if text.strip().lower().lstrip("+") in ("inf", "infinity"):
        return math.inf  # refused by parse_budget, with the advice to use 'none'
    match = _SPEC_RE.match(text)
    if not match:
        raise BudgetError(f"budget '{name}': cannot read {text!r}; use a number, '50%' or a value with a unit like '7.9MiB'")
    number, unit = float(match.group(1)), match.group(2)
    if unit == "%":
        if not 0.0 <= number <= 100.0:
            raise BudgetError(f"budget '{name}': a relative budget must lie between 0% and 100%, got {text!r}")
        lo, hi = problem.cost_range(name)
        return lo + number / 100.0 * (hi - lo)
    if not unit:
        return number
    if unit not in _UNITS:
        raise BudgetError(f"budget '{name}': unknown unit {unit!r} in {text!r}; known: {', '.join(_UNITS)}")
    dimension, factor = _UNITS[unit]
    own = cost_unit(problem, name)
    if dimension == "count":
        if own is not None and own.lower() not in _COUNT_UNITS:
            raise BudgetError(f"budget '{name}': the cost table is in {own!r}, so the plain multiplier in {text!r} is ambiguous; give the number in {own}")
        return number * factor
    if own is None or own not in _UNITS:
        raise BudgetError(
            f"budget '{name}': the unit {unit!r} cannot be converted because the cost table's unit is unknown; "
            f"name the table e.g. '{name}_bits' or set Problem(cost_units={{'{name}': 'bit'}})"
        )
    own_dimension, own_factor = _UNITS[own]
    if own_dimension != dimension:
        raise BudgetError(f"budget '{name}': {text!r} is a {dimension} value but the cost table is in {own}")
    return number * factor / own_factor
