"""The JSON problem file: text in and out, one table row per line.

Floats are written with Python's ``repr`` (shortest text that reads back to the same float64), so a
save/load round trip is exact. Big tables go through the C encoder in one call per table; only the
row breaks are added afterwards, by a string replace.

>>> from mpqopt import Problem
>>> p = Problem(["a", "b"], [4, 8], [[0.5, 0.0], [0.1, 0.0]])
>>> loads(dumps(p)).sensitivity.tolist()
[[0.5, 0.0], [0.1, 0.0]]
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import FormatError
from ..problem import MAX_META_DEPTH, Problem
from .encode import problem_to_dict
from .validate import LAYER_FACTS, problem_from_dict

_TABLE_KEYS = ("sensitivity", "sensitivity_std", "allowed", "pairwise")


def dumps(problem: Problem) -> str:
    """The problem as JSON text (UTF-8 safe; strict JSON, no NaN)."""
    doc = problem_to_dict(problem)
    text = _render(doc, ensure_ascii=False)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:  # a lone surrogate in a name: only \u escapes can carry it
        return _render(doc, ensure_ascii=True)


def loads(data: str | bytes, source: str | None = None) -> Problem:
    """A problem from JSON text; ``FormatError`` (with line and column) if it is not valid JSON."""
    return problem_from_dict(decode(data, source), source)


def decode(data: str | bytes, source: str | None = None, container: str | None = None) -> Any:
    """Parse JSON text, refusing duplicate keys; errors point at line and column.

    ``container`` names where the text came from inside a file (the NPZ ``header``) and becomes the
    error's location; otherwise the location is ``line L, column C``.
    """
    try:
        return json.loads(data, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno}, column {exc.colno}"
        if container:
            raise FormatError(f"invalid JSON: {exc.msg} ({at})", container, source) from None
        raise FormatError(f"invalid JSON: {exc.msg}", at, source) from None
    except UnicodeDecodeError as exc:
        raise FormatError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", container or "$", source) from None
    except RecursionError:
        # json's C scanner recurses once per level: 100,000 nested brackets exhaust the stack
        raise FormatError(f"JSON nested too deeply (more than Python's parser can hold; problem files need at most "
                          f"{MAX_META_DEPTH} levels inside \"meta\")", container or "$", source) from None
    except ValueError as exc:  # after the two ValueErrors above: Python refuses integers of over 4300 digits
        raise FormatError(f"a number in the JSON text is too long to read ({exc})", container or "$", source) from None
    except _DuplicateKey as exc:
        raise FormatError(f"duplicate key {exc.args[0]!r} in one JSON object", container or "$", source) from None


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # plain json keeps the last of two equal keys; in a problem file that silently drops a table
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def _render(doc: dict[str, Any], ensure_ascii: bool) -> str:
    def dump(value: Any, indent: int | None = None) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=False, indent=indent)

    def table(rows: list[list[Any]], pad: str) -> str:
        # rows of numbers/booleans only, so "], [" can only be a row boundary
        inner = dump(rows)[1:-1]
        return "[\n" + pad + "  " + inner.replace("], [", "],\n" + pad + "  [") + "\n" + pad + "]"

    def lines(items: list[Any]) -> str:
        # layer names can run to 50,000+: the C string encoder directly, not one json.dumps per name
        quote = json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
        texts = map(quote, items) if all(isinstance(i, str) for i in items) else map(dump, items)
        return "[\n    " + ",\n    ".join(texts) + "\n  ]"

    parts = []
    for key, value in doc.items():
        if key in _TABLE_KEYS:
            text = table(value, "  ")
        elif key == "costs":
            entries = [f"    {dump(name)}: {table(rows, '    ')}" for name, rows in value.items()]
            text = "{\n" + ",\n".join(entries) + "\n  }" if entries else "{}"
        elif key in LAYER_FACTS:
            text = dump(value)  # one number per layer, on one line
        elif key in ("layers", "options", "ties"):
            text = lines(value)
        elif key in ("budgets", "cost_units", "fixed") and value:
            text = "{\n    " + ",\n    ".join(f"{dump(k)}: {dump(v)}" for k, v in value.items()) + "\n  }"
        else:
            # strings escape newlines, so indenting every line break only touches layout
            text = dump(value, indent=2).replace("\n", "\n  ")
        parts.append(f"  {dump(key)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"
