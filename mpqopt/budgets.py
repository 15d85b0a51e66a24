"""Budget specifications: absolute numbers, numbers with units, relative percentages, bits per
weight, and scoped budgets over a subset of the layers.

``resolve_budgets(problem, {"size": "7.9MiB", "bitops": "50%"})`` returns absolute limits keyed by
budget key. A percentage is the fraction of the way from the cheapest to the dearest assignment
that ties, masks and fixed layers allow (HAWQ-V3's convention: 0% = all lowest, 100% = all highest).
``4.5bpw`` is 4.5 bits per weight on average: 4.5 x the weight count (``Problem.params``) in bits.

A budget key is a cost name (``size_bits``: the total over every layer) or a scoped key
``COST[NAME:PATTERNS]`` (``size_bits[stage0:blk.{0..15}.*]``): the total over the layers the
comma-separated patterns match (globs with ``{N..M}`` numeric ranges, or ``re:<regex>``; see
:mod:`mpqopt.layer_patterns`); ``NAME:`` is an optional label. The key names its scope wherever the
budget appears (results, slacks, infeasibility messages, JSON). ``Budget(cost, limit, layers=...,
name=...)`` builds the same key from Python.

>>> from mpqopt import Problem
>>> p = Problem(["a", "b", "c"], [4, 8], [[1, 0]] * 3, costs={"size_bits": [[4, 8]] * 3})
>>> resolve_budgets(p, [Budget("size", "50%", layers=["a", "b"], name="front"), Budget("size", 20)])
{'size_bits[front:a,b]': 12.0, 'size_bits': 20.0}
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import BudgetError
from .layer_patterns import PatternError, match_mask, pattern_regex

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
_SCOPE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")  # 're' is refused: 're:...' starts a regex
_OPENERS, _CLOSERS = "[{(", "]})"
# 'inf' used to drop a budget while 1e400 (also inf) was refused: now both are refused with this advice
_DROP_ADVICE = "to drop a budget give None in Python or 'none' on the command line (-b NAME=none)"


@dataclass(frozen=True)
class Scope:
    """The layers a scoped budget sums: ``patterns`` (globs or ``re:`` regexes), with an optional ``name``."""

    name: str | None
    patterns: tuple[str, ...]

    def text(self) -> str:
        """The scope as written inside a budget key's brackets: ``stage0:blk.{0..15}.*,lm_head``."""
        return (f"{self.name}:" if self.name else "") + ",".join(self.patterns)


@dataclass(frozen=True)
class Budget:
    """One budget: ``cost`` (a cost table name or unique prefix) at most ``limit``, summed over every
    layer or, with ``layers``, over the layers those patterns match (a glob such as
    ``"model.layers.{0..15}.*"``, an exact name, or ``"re:<regex>"``). ``name`` labels the scope in
    results and messages. ``limit`` takes every form a plain budget does (``2e9``, ``"2GB"``, ``"50%"``
    of the scope's own range, ``"4.5bpw"`` over the scope's weights, ``None`` to drop it).

    >>> Budget("size", "2GB", layers=["blk.{0..15}.*"], name="stage0").key()
    'size[stage0:blk.{0..15}.*]'
    """

    cost: str
    limit: Any
    layers: str | Sequence[str] | None = None
    name: str | None = None

    def key(self) -> str:
        """The budget key this budget resolves from (``cost`` or ``cost[name:patterns]``)."""
        if not isinstance(self.cost, str) or not self.cost:
            raise BudgetError(f"Budget.cost must name a cost table such as 'size_bits', got {self.cost!r}")
        if self.layers is None:
            if self.name is not None:
                raise BudgetError(f"budget '{self.cost}': name={self.name!r} labels a scope of layers; give layers=[...] too (layers='*' for every layer)")
            return self.cost
        pats = [self.layers] if isinstance(self.layers, str) else self.layers
        try:
            pats = list(pats)
        except TypeError:
            raise BudgetError(f"budget '{self.cost}': layers must be a pattern or a list of patterns, got {self.layers!r}") from None
        scope = Scope(self.name, tuple(pats))
        key = f"{self.cost}[{_checked_scope(self.cost, scope).text()}]"
        parsed = split_key(key)[1]
        if parsed != scope:  # a pattern the key syntax cannot carry as given
            raise BudgetError(f"budget '{self.cost}': the layers {list(scope.patterns)} cannot be written as one scope "
                              f"(a pattern holds a comma outside brackets, or starts with 'WORD:' without a name: give name=...)")
        return key


def split_key(key: str) -> tuple[str, Scope | None]:
    """``'size[stage0:blk.*,head]'`` -> ``('size', Scope('stage0', ('blk.*', 'head')))``; a key
    without brackets -> ``(key, None)``. Patterns are separated by commas outside brackets.

    >>> split_key("size_bits[stage0:re:^blk[.](0|1)[.],lm_head]")
    ('size_bits', Scope(name='stage0', patterns=('re:^blk[.](0|1)[.]', 'lm_head')))
    """
    if not key.endswith("]") or "[" not in key:
        return key, None
    cost, _, inner = key[:-1].partition("[")
    name = None
    head, colon, rest = inner.partition(":")
    if colon and head != "re" and _SCOPE_NAME_RE.match(head.strip()):
        name, inner = head.strip(), rest
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    return cost.strip(), Scope(name, tuple(p.strip() for p in parts))


def _checked_scope(cost: str, scope: Scope) -> Scope:
    where = f"budget '{cost}[{scope.text()}]'"
    if scope.name is not None and (not isinstance(scope.name, str) or scope.name == "re" or not _SCOPE_NAME_RE.match(scope.name)):
        raise BudgetError(f"{where}: a scope name must be a word of letters, digits, '_' and '-' (not 're'), got {scope.name!r}")
    if not scope.patterns:
        raise BudgetError(f"{where}: the scope names no layer pattern")
    for p in scope.patterns:
        if not isinstance(p, str) or not p.strip():
            raise BudgetError(f"{where}: layer patterns must be non-empty strings, got {p!r}")
        try:
            pattern_regex(p)
        except PatternError as exc:
            raise BudgetError(f"{where}: {exc}") from None
    return scope


def scope_mask(problem: "Problem", key: str) -> np.ndarray | None:
    """``[L]`` boolean mask of the layers budget ``key`` sums (None: every layer, an unscoped budget).

    Every pattern must match a layer: a typo would otherwise silently budget nothing.
    """
    if key in problem.costs:
        return None
    cost, scope = split_key(key)
    if scope is None:
        return None
    scope = _checked_scope(cost, scope)
    cache = problem._scope_masks
    if scope.patterns not in cache:
        mask = np.zeros(problem.num_layers, dtype=bool)
        for p in scope.patterns:
            hit = np.array(match_mask(problem.layers, p), dtype=bool)
            if not hit.any():
                known = ", ".join(problem.layers[:8]) + (", ..." if problem.num_layers > 8 else "")
                raise BudgetError(f"budget '{key}': scope {scope.name or scope.text()!r}: pattern {p!r} matches no layer; layers are: {known}")
            mask |= hit
        mask.setflags(write=False)
        cache[scope.patterns] = mask
    return cache[scope.patterns]


def budget_cost(problem: "Problem", key: str) -> str:
    """The cost table a budget key sums (``size_bits`` for ``size_bits[stage0:...]``)."""
    if key in problem.costs:
        return key
    cost, scope = split_key(key)
    return key if scope is None else resolve_budget_name(problem, cost)


def budget_table(problem: "Problem", key: str) -> np.ndarray:
    """The ``[L, K]`` table budget ``key`` sums: its cost table, zero outside its scope."""
    mask = scope_mask(problem, key)
    table = problem.costs[budget_cost(problem, key)]
    return table if mask is None else np.where(mask[:, None], table, 0.0)


def resolve_budget_key(problem: "Problem", raw: str) -> str:
    """A budget key as every result names it: the cost resolved (``size`` -> ``size_bits``), the
    scope checked against the layers (``size[s:blk.*]`` -> ``size_bits[s:blk.*]``)."""
    if raw in problem.costs:
        return raw
    cost, scope = split_key(raw)
    if scope is None:
        return resolve_budget_name(problem, raw)
    key = f"{resolve_budget_name(problem, cost)}[{_checked_scope(cost, scope).text()}]"
    scope_mask(problem, key)
    return key


def scope_weights(problem: "Problem", key: str) -> float:
    """Weights (``Problem.params``) of the layers budget ``key`` sums: what ``bpw`` multiplies."""
    params = problem.params
    if params is None:
        raise BudgetError(f"budget '{key}': bits per weight need each layer's weight count: give Problem(..., params=[...]) "
                          f"(the number of weights of each layer, in layer order)")
    mask = scope_mask(problem, key)
    return float(params.sum() if mask is None else params[mask].sum())


def bits_per_weight(problem: "Problem", key: str, total: float | None) -> float | None:
    """``total`` of budget ``key`` (a size in bits or bytes) as average bits per weight over its
    layers' weights; None when that has no meaning (no ``Problem.params``, not a size, no weights).

    >>> from mpqopt import Problem
    >>> p = Problem(["a", "b"], [4, 8], [[1, 0]] * 2, costs={"size_bits": [[400, 800], [40, 80]]}, params=[100, 10])
    >>> bits_per_weight(p, "size_bits", 480.0), bits_per_weight(p, "size_bits[b]", 80.0)
    (4.363636363636363, 8.0)
    """
    own = cost_unit(problem, key)
    if total is None or problem.params is None or own is None or _UNITS.get(own, ("", 0.0))[0] != "data":
        return None
    weights = scope_weights(problem, key)
    return None if weights <= 0 else float(total) * _UNITS[own][1] / weights


def cost_unit(problem: "Problem", name: str) -> str | None:
    """The unit of cost table ``name`` (``'bit'``, ``'byte'``, ``'ms'``...) or None if unknown; a
    scoped budget key has its cost table's unit."""
    if name not in problem.costs and split_key(name)[1] is not None:
        name = split_key(name)[0]
        if name not in problem.costs:
            try:
                name = resolve_budget_name(problem, name)
            except BudgetError:
                pass
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


BudgetsLike = Mapping[str, Any] | Iterable[Budget]


def budget_items(budgets: "BudgetsLike") -> list[tuple[str, Any]]:
    """``(key, limit)`` pairs from a mapping ``{key: limit}`` or a list of :class:`Budget` (or a mix of
    ``Budget`` and ``(key, limit)`` pairs)."""
    if isinstance(budgets, Mapping):
        return list(budgets.items())
    if isinstance(budgets, Budget):
        budgets = [budgets]
    if isinstance(budgets, (str, bytes)) or not isinstance(budgets, Iterable):
        raise BudgetError("budgets must be a mapping of cost name -> limit, or a list of mpqopt.Budget")
    out = []
    for item in budgets:
        if isinstance(item, Budget):
            out.append((item.key(), item.limit))
        elif isinstance(item, tuple) and len(item) == 2:
            out.append(item)
        else:
            raise BudgetError(f"budgets must be a mapping of cost name -> limit, or a list of mpqopt.Budget; got an item {item!r}")
    return out


def resolve_budgets(problem: "Problem", budgets: "BudgetsLike | None", base: Mapping[str, float] | None = None) -> dict[str, float]:
    """Absolute budgets keyed by budget key, from any mix of numbers, unit strings, percentages and
    bits per weight, for every layer or a scope of layers (see the module docstring).

    ``budgets`` are applied on top of ``base`` (e.g. the problem's own defaults); a value of None or
    ``'none'`` removes that budget.

    >>> from mpqopt import Problem
    >>> p = Problem(["a", "b"], [4, 8], [[1, 0], [1, 0]], costs={"size_bits": [[4, 8], [4, 8]]})
    >>> resolve_budgets(p, {"size": "50%", "size[b]": "100%"})
    {'size_bits': 12.0, 'size_bits[b]': 8.0}
    """
    out = dict(base or {})
    if budgets is None:
        return out
    given: dict[str, str] = {}  # budget key -> the name that set it here
    for raw_name, spec in budget_items(budgets):
        if not isinstance(raw_name, str):
            raise BudgetError(f"budget names must be strings (cost names such as 'size_bits'), got {raw_name!r}")
        name = resolve_budget_key(problem, raw_name)
        if name in given:
            # {'size': 1, 'size_bits': 2} would silently keep the last one
            what = f"cost '{name}'" if name in problem.costs else f"'{name}'"
            raise BudgetError(f"budgets '{given[name]}' and '{raw_name}' both set the budget on {what}; give it once")
        given[name] = raw_name
        value = parse_budget(problem, name, spec)
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    _check_labels(out)
    return out


def _check_labels(keys: Iterable[str]) -> None:
    """One label, one scope: ``size[gpu0:blk.{0..15}.*]`` beside ``latency[gpu0:blk.{0..15}.*]`` is
    one device's two budgets, but ``gpu0`` naming two different sets of patterns is a mistake."""
    seen: dict[str, tuple[str, Scope]] = {}
    for key in keys:
        scope = split_key(key)[1]
        if scope is None or scope.name is None:
            continue
        first = seen.setdefault(scope.name, (key, scope))
        if first[1].patterns != scope.patterns:
            raise BudgetError(f"budgets '{first[0]}' and '{key}' give the label '{scope.name}' to different layer patterns; "
                              f"use one label per scope")


def parse_budget_args(items: list[str]) -> dict[str, str]:
    """``['size=50%', 'bitops=1.2G']`` (command-line form) -> ``{'size': '50%', 'bitops': '1.2G'}``."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = _split_assignment(item)
        if not sep or not name.strip() or not value.strip():
            raise BudgetError(f"cannot read budget {item!r}: expected NAME=VALUE, e.g. size_bits=8.4e6 or size=50%")
        if name.strip() in out:
            raise BudgetError(f"budget '{name.strip()}' is given twice ({name.strip()}={out[name.strip()]} and {item.strip()}); give it once")
        out[name.strip()] = value.strip()
    return out


def _split_assignment(item: str) -> tuple[str, str, str]:
    """``NAME=VALUE``, where a scoped NAME (``size[s:a=b]``) may hold '=' inside its brackets."""
    bracket, eq = item.find("["), item.find("=")
    if bracket != -1 and (eq == -1 or bracket < eq):
        close = item.rfind("]")
        if close > bracket:
            name, sep, value = item[close + 1:].partition("=")
            return item[:close + 1] + name, sep, value
    return item.partition("=")


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
    if unit == "bpw":
        return number * scope_weights(problem, name) / _bits_per_unit(problem, name, text)
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


def _bits_per_unit(problem: "Problem", name: str, text: str) -> float:
    """Bits in one unit of budget ``name``'s cost table (1 for bits, 8 for bytes)."""
    own = cost_unit(problem, name)
    if own is None or _UNITS.get(own, ("", 0.0))[0] != "data":
        raise BudgetError(f"budget '{name}': {text!r} is in bits per weight, so the cost table must be a size in bits or bytes, "
                          f"but its unit is {'unknown' if own is None else repr(own)}; name it e.g. 'size_bits' or set Problem(cost_units=...)")
    return _UNITS[own][1]
