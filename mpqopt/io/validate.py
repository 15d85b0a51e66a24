"""Read a decoded problem document (a dict) into a :class:`~mpqopt.Problem`, saying where anything is wrong.

This is the one validator behind both file formats: JSON hands it nested lists, NPZ hands it numpy
arrays (and a sparse pairwise matrix) merged into the header. It checks structure, types and
``[layers x options]`` shapes and reports each fault with a JSON-path-like location; the checks of
values (NaN, negative costs, unknown tie layers...) stay in ``Problem`` and come back as a
``FormatError`` at ``$`` carrying the ``ProblemError``'s message.

>>> p = problem_from_dict({"format": "mpqopt.problem", "version": 1, "layers": ["a", "b"],
...                        "options": [{"label": "W4", "w": 4}, {"label": "W8", "w": 8}],
...                        "sensitivity": [[0.5, 0.0], [0.1, 0.0]]})
>>> p.num_layers, p.option_labels
(2, ('W4', 'W8'))
"""

from __future__ import annotations

import json
import re
from importlib import resources
from itertools import chain
from typing import Any, Callable, Mapping

import numpy as np
import scipy.sparse as sp

from ..errors import BudgetError, FormatError, ProblemError
from ..formats import Format, get_format
from ..options import Option
from ..problem import Problem, check_meta

FORMAT = "mpqopt.problem"
VERSION = 2  # the newest version the writers produce (a problem with nothing new is still written as 1)
SUPPORTED_VERSIONS = (1, 2)  # what the readers accept
REQUIRED_KEYS = ("format", "version", "layers", "options", "sensitivity")
LAYER_FACTS = ("params", "row_lengths")  # version 2: one number per layer
OPTIONAL_KEYS = ("costs", "budgets", "cost_units", "ties", "fixed", "allowed", "pairwise", "sensitivity_std", "meta") + LAYER_FACTS
KNOWN_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS
EXTENSION_PREFIX = "x-"  # unknown top-level keys with this prefix are kept in problem.meta
_OPTION_KEYS = ("label", "w", "a")
_OPTION_KEYS_V2 = _OPTION_KEYS + ("format",)
_NUMBER_TYPES = {int, float}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# (table key, cost name or None) -> where that table sits in the file
TableLocator = Callable[[str, "str | None"], str]


def member(base: str, name: str) -> str:
    """JSON-path of key ``name`` under ``base``: ``$.costs.size_bits`` or ``$.costs["size bits"]``."""
    return f"{base}.{name}" if _IDENTIFIER.match(name) else f"{base}[{json.dumps(name, ensure_ascii=False)}]"


def json_table_location(key: str, name: str | None) -> str:
    return member("$.costs", name) if name is not None else f"$.{key}"


def schema(version: int = VERSION) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the JSON problem file, by default of the newest version.

    It checks structure and types; shape consistency (``L x K`` tables) is checked by the loader.

    >>> schema()["properties"]["format"]["const"], schema()["properties"]["version"], schema(1)["properties"]["version"]
    ('mpqopt.problem', {'const': 2}, {'const': 1})
    """
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"no schema for version {version!r}; versions are {SUPPORTED_VERSIONS}")
    text = resources.files("mpqopt").joinpath("schema", f"problem.v{version}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def problem_from_dict(doc: Any, source: str | None = None) -> Problem:
    """Build a ``Problem`` from a decoded JSON problem document (tables as nested lists or numpy arrays).

    Raises ``FormatError`` naming the key, row and column at fault; ``source`` (a file name) prefixes
    every message.

    >>> problem_from_dict({"format": "mpqopt.problem", "version": 1, "layers": ["a"],
    ...                    "options": [{"label": "W4", "w": 4}]}, source="p.json")
    Traceback (most recent call last):
    ...
    mpqopt.errors.FormatError: p.json: $.sensitivity: missing
    """
    return read_problem(doc, source, json_table_location)


def read_problem(doc: Any, source: str | None, locate: TableLocator) -> Problem:
    """``problem_from_dict`` with the file layout's own names for table locations (NPZ: array keys)."""
    return _Reader(source, locate).read(doc)


def _fits_float(value: int) -> bool:
    try:
        float(value)
        return True
    except OverflowError:
        return False


def describe(value: Any) -> str:
    """A short rendering of a bad value for an error message."""
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Reader:
    def __init__(self, source: str | None, locate: TableLocator):
        self.source = source
        self.locate = locate
        self.layers: list[str] = []
        self.labels: list[str] = []
        self.version = VERSION

    def fail(self, where: str, message: str) -> FormatError:
        return FormatError(message, where, self.source)

    # ------------------------------------------------------------------ document
    def read(self, doc: Any) -> Problem:
        if not isinstance(doc, Mapping):
            raise self.fail("$", f"expected a JSON object (the problem document), got {type(doc).__name__}")
        self._check_header(doc)
        extensions = self._check_keys(doc)
        self.layers = self._layers(doc["layers"])
        options = self._options(doc["options"])
        facts = {key: self._vector(doc[key], key, integer=key == "row_lengths") for key in LAYER_FACTS if key in doc}
        self.labels = [o.label for o in options]
        L, K = len(self.layers), len(options)

        sensitivity = self._table(doc["sensitivity"], self.locate("sensitivity", None), L, K)
        # optional parts are absent or valid: an explicit null is a fault, as in the schema
        std = self._table(doc["sensitivity_std"], self.locate("sensitivity_std", None), L, K) if "sensitivity_std" in doc else None
        costs = self._costs(doc.get("costs", {}))
        budgets = self._budgets(doc.get("budgets", {}))
        allowed = self._table(doc["allowed"], self.locate("allowed", None), L, K, boolean=True) if "allowed" in doc else None
        pairwise = self._pairwise(doc["pairwise"]) if "pairwise" in doc else None
        meta = check_meta(self._object(doc.get("meta", {}), "$.meta"), "$.meta", self.source)
        for key, value in extensions.items():
            if key in meta:
                raise self.fail(f"$.{key}", f"extension key {key!r} also appears in $.meta; keep one of them")
            meta[key] = value
        ties = self._ties(doc.get("ties", []))
        fixed = self._fixed(doc.get("fixed", {}))
        units = self._string_map(doc.get("cost_units", {}), "$.cost_units", "a unit string such as 'bit' or 'ms'")
        try:
            return Problem(
                self.layers, options, sensitivity, costs, budgets, ties=ties, fixed=fixed, allowed=allowed,
                pairwise=pairwise, sensitivity_std=std, cost_units=units, meta=meta, **facts,
            )
        except (ProblemError, BudgetError) as exc:
            # value-level faults are found by Problem; keep its message (it names the layer/key)
            raise self.fail("$", str(exc)) from exc

    def _check_header(self, doc: Mapping[str, Any]) -> None:
        if "format" not in doc:
            raise self.fail("$.format", f"missing; an mpqopt problem file starts with \"format\": \"{FORMAT}\"")
        if doc["format"] != FORMAT:
            raise self.fail("$.format", f"expected {FORMAT!r}, got {describe(doc['format'])}")
        supported = ", ".join(map(str, SUPPORTED_VERSIONS))
        if "version" not in doc:
            raise self.fail("$.version", f"missing; this mpqopt reads version {supported}")
        version = doc["version"]
        if isinstance(version, bool) or not isinstance(version, int):
            raise self.fail("$.version", f"expected an integer format version, got {describe(version)}")
        if version not in SUPPORTED_VERSIONS:
            hint = "; upgrade mpqopt to read it" if version > max(SUPPORTED_VERSIONS) else ""
            raise self.fail("$.version", f"unsupported version {version}: this mpqopt reads version {supported}{hint}")
        self.version = version

    def _check_keys(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Reject unknown top-level keys (typos like 'budget' would silently drop data); keep 'x-' ones."""
        extensions = {}
        for key in doc:
            if key in LAYER_FACTS and self.version < 2:
                raise self.fail(member("$", key), f"is a version-2 key, and this file says version {self.version}; write \"version\": 2")
            if key in KNOWN_KEYS:
                continue
            if isinstance(key, str) and key.startswith(EXTENSION_PREFIX):
                extensions[key] = doc[key]
                continue
            raise self.fail(
                member("$", str(key)),
                f"unknown key; known keys are {', '.join(KNOWN_KEYS)} (put tool-specific data in \"meta\" "
                f"or under a key starting with {EXTENSION_PREFIX!r})",
            )
        for key in REQUIRED_KEYS:
            if key not in doc:
                where = self.locate(key, None) if key == "sensitivity" else f"$.{key}"
                raise self.fail(where, "missing")
        return extensions

    # ------------------------------------------------------------------ small parts
    def _list(self, value: Any, where: str, what: str) -> list[Any]:
        if isinstance(value, np.ndarray) and value.ndim == 1:
            value = value.tolist()
        if not isinstance(value, (list, tuple)):
            raise self.fail(where, f"expected a list of {what}, got {describe(value)}")
        return list(value)

    def _object(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected an object, got {describe(value)}")
        return value

    def _string_map(self, value: Any, where: str, what: str) -> dict[str, str]:
        out = {}
        for key, item in self._object(value, where).items():
            if not isinstance(item, str):
                raise self.fail(member(where, str(key)), f"expected {what}, got {describe(item)}")
            out[key] = item
        return out

    def _layers(self, value: Any) -> list[str]:
        names = self._list(value, "$.layers", "layer names")
        if not names:
            raise self.fail("$.layers", "expected at least one layer name")
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise self.fail(f"$.layers[{i}]", f"expected a non-empty layer name, got {describe(name)}")
        return names

    def _options(self, value: Any) -> list[Option]:
        items = self._list(value, "$.options", 'options like {"label": "W4A8", "w": 4, "a": 8}')
        if not items:
            raise self.fail("$.options", "expected at least one option")
        options = []
        for i, item in enumerate(items):
            where = f"$.options[{i}]"
            if not isinstance(item, Mapping):
                raise self.fail(where, f'expected an object like {{"label": "W4A8", "w": 4, "a": 8}}, got {describe(item)}')
            keys = _OPTION_KEYS_V2 if self.version >= 2 else _OPTION_KEYS
            unknown = [k for k in item if k not in keys]
            if unknown == ["format"]:
                raise self.fail(f"{where}.format", f"options carry a format from version 2 on, and this file says version {self.version}; write \"version\": 2")
            if unknown:
                raise self.fail(member(where, str(unknown[0])), f"unknown option key; option keys are {', '.join(keys)}")
            for key in ("label", "w"):
                if key not in item:
                    raise self.fail(member(where, key), "missing")
            if not isinstance(item["label"], str) or not item["label"]:
                raise self.fail(f"{where}.label", f"expected a non-empty string, got {describe(item['label'])}")
            for key in ("w", "a"):
                bits = item.get(key)
                if bits is None and key == "a":
                    continue
                if isinstance(bits, bool) or not isinstance(bits, int) or bits <= 0:
                    raise self.fail(f"{where}.{key}", f"expected a positive integer bit-width, got {describe(bits)}")
            options.append(self._option(item, where))
        return options

    def _option(self, item: Mapping[str, Any], where: str) -> Option:
        fmt = item.get("format")
        if "format" in item:
            if not isinstance(fmt, (str, Mapping)):
                raise self.fail(f"{where}.format", f"expected a format name such as \"Q4_K\" or an object of format fields, got {describe(fmt)}")
            try:
                fmt = Format.from_dict(fmt) if isinstance(fmt, Mapping) else get_format(fmt)
            except ProblemError as exc:
                raise self.fail(f"{where}.format", f"option {item['label']!r}: {exc}") from None
        try:
            return Option(item["w"], item.get("a"), item["label"], fmt)
        except ProblemError as exc:
            raise self.fail(where, str(exc)) from None

    def _vector(self, value: Any, key: str, integer: bool) -> Any:
        """A layer fact: one number (``integer``: a whole number) per layer, as a list or a 1-d array."""
        where = self.locate(key, None)
        L = len(self.layers)
        what = "integers" if integer else "numbers"
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in ("iu" if integer else "fiu"):
                raise self.fail(where, f"expected an array of {what}, got dtype {value.dtype}")
            if value.shape != (L,):
                raise self.fail(where, f"expected shape ({L},), one per layer, got {value.shape}")
            return value
        if not isinstance(value, (list, tuple)):
            raise self.fail(where, f"expected a list of {L} {what} (one per layer), got {describe(value)}")
        if len(value) != L:
            raise self.fail(where, f"expected {L} {what} (one per layer), got {len(value)}")
        wanted = (int,) if integer else (int, float)
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, wanted):
                raise self.fail(f"{where}[{i}]", f"expected {'an integer' if integer else 'a number'} (layer {self.layers[i]!r}), got {describe(item)}")
            if isinstance(item, int) and not (_fits_float(item) and abs(item) < 2**63):
                raise self.fail(f"{where}[{i}]", f"integer with {len(str(abs(item)))} digits is too large (layer {self.layers[i]!r})")
        return np.array(value, dtype=np.int64 if integer else np.float64)

    def _costs(self, value: Any) -> dict[str, np.ndarray]:
        costs = self._object(value, "$.costs")
        L, K = len(self.layers), len(self.labels)
        return {name: self._table(table, self.locate("costs", str(name)), L, K) for name, table in costs.items()}

    def _budgets(self, value: Any) -> dict[str, float]:
        out = {}
        for name, limit in self._object(value, "$.budgets").items():
            if isinstance(limit, bool) or not isinstance(limit, (int, float, np.integer, np.floating)):
                raise self.fail(
                    member("$.budgets", str(name)),
                    f"expected an absolute number, got {describe(limit)}; problem files store absolute budgets "
                    f"(relative ones like '50%' or '7.9MiB' are resolved when solving: "
                    f"mpqopt.solve(problem, budgets={{{str(name)!r}: '50%'}}) or mpqopt.resolve_budgets)",
                )
            out[name] = limit
        return out

    def _ties(self, value: Any) -> list[list[str]]:
        groups = self._list(value, "$.ties", "tie groups (lists of layer names)")
        for g, group in enumerate(groups):
            names = self._list(group, f"$.ties[{g}]", "layer names")
            for i, name in enumerate(names):
                if not isinstance(name, str):
                    raise self.fail(f"$.ties[{g}][{i}]", f"expected a layer name, got {describe(name)}")
            groups[g] = names
        return groups

    def _fixed(self, value: Any) -> dict[str, str]:
        fixed = self._string_map(value, "$.fixed", "an option label")
        labels = set(self.labels)
        for layer, label in fixed.items():
            # checked here (Problem checks it too) so that the message names the layer and location
            if label not in labels:
                raise self.fail(member("$.fixed", layer), f"unknown option label {label!r}; options are {self.labels}")
        return fixed

    # ------------------------------------------------------------------ tables
    def _table(self, value: Any, where: str, rows: int, cols: int, *, boolean: bool = False,
               pairs: bool = False) -> np.ndarray:
        """An ``[rows x cols]`` float64 (or bool) array from nested lists or an array, checked on the way."""
        kind = "true or false" if boolean else "a number"
        row_unit = "layer-option pair, index l*K + o" if pairs else "layer"
        col_unit = "layer-option pair" if pairs else "option"
        if isinstance(value, np.ndarray):
            return self._array(value, where, rows, cols, boolean, row_unit, col_unit)
        if not isinstance(value, (list, tuple)):
            raise self.fail(where, f"expected a list of {rows} rows (one per {row_unit}), got {describe(value)}")
        if len(value) != rows:
            raise self.fail(where, f"expected {rows} rows (one per {row_unit}), got {len(value)}")
        for i, row in enumerate(value):
            if not isinstance(row, (list, tuple)) or len(row) != cols:
                got = f"has {len(row)} entries" if isinstance(row, (list, tuple)) else f"is {describe(row)}"
                raise self.fail(f"{where}[{i}]", f"row {i} ({self._row_name(i, pairs)}) {got}, expected {cols} (one per {col_unit})")
        # one C-speed pass over the element types; the per-element loop below only runs to locate a fault
        wanted = {bool} if boolean else _NUMBER_TYPES
        if set(map(type, chain.from_iterable(value))) <= wanted:
            try:
                return np.array(value, dtype=bool if boolean else np.float64)
            except OverflowError:
                pass  # an integer beyond float64's range: locate it below
        for i, row in enumerate(value):
            for j, item in enumerate(row):
                if type(item) not in wanted:
                    problem = f"expected {kind}, got {describe(item)}"
                elif type(item) is int and not _fits_float(item):
                    problem = f"integer with {len(str(abs(item)))} digits is beyond float64's range"
                else:
                    continue
                raise self.fail(f"{where}[{i}][{j}]", f"{problem} ({self._row_name(i, pairs)}, {self._col_name(j, pairs)})")
        raise AssertionError("unreachable: a table failed conversion without a bad entry")  # pragma: no cover

    def _array(self, arr: np.ndarray, where: str, rows: int, cols: int, boolean: bool, row_unit: str, col_unit: str) -> np.ndarray:
        if boolean and arr.dtype.kind != "b":
            raise self.fail(where, f"expected a boolean array, got dtype {arr.dtype}")
        if not boolean and arr.dtype.kind not in "fiu":
            raise self.fail(where, f"expected a real numeric array (float64), got dtype {arr.dtype}")
        if arr.ndim != 2:
            raise self.fail(where, f"expected a 2-d array of shape ({rows}, {cols}), got shape {arr.shape}")
        if arr.shape[0] != rows:
            raise self.fail(where, f"expected {rows} rows (one per {row_unit}), got {arr.shape[0]}")
        if arr.shape[1] != cols:
            raise self.fail(where, f"expected {cols} columns (one per {col_unit}), got {arr.shape[1]}")
        return arr

    def _pairwise(self, value: Any) -> Any:
        n = len(self.layers) * len(self.labels)
        where = self.locate("pairwise", None)
        if sp.issparse(value):
            if value.dtype.kind not in "fiu":
                raise self.fail(where, f"expected a real numeric matrix, got dtype {value.dtype}")
            if value.shape != (n, n):
                raise self.fail(where, f"expected shape ({n}, {n}) = (layers*options)^2, index l*K + o; got {value.shape}")
            return value
        return self._table(value, where, n, n, pairs=True)

    def _row_name(self, i: int, pairs: bool) -> str:
        if not pairs:
            return f"layer {self.layers[i]!r}"
        K = len(self.labels)
        return f"layer {self.layers[i // K]!r}, option {self.labels[i % K]!r}"

    def _col_name(self, j: int, pairs: bool) -> str:
        if not pairs:
            return f"option {self.labels[j]!r}"
        K = len(self.labels)
        return f"column {j} (layer {self.layers[j // K]!r}, option {self.labels[j % K]!r})"
