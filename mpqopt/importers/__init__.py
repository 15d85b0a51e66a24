"""Importers that turn the inputs of published mixed-precision systems into mpqopt problems.

Each importer reads the JSON export of one system's allocation inputs (a path or an already parsed
dict) and returns a :class:`mpqopt.Problem` whose exact optimum is the allocation that system's own
formulation defines, so a published configuration can be re-derived, checked and then varied.

>>> import mpqopt
>>> from mpqopt.importers import hawq_v3_problem, limpq_problem
>>> p = hawq_v3_problem("../shared/peers/hawq_v3_resnet18.json", "bops", 0.5)  # doctest: +SKIP
>>> mpqopt.solve(p).status                                                      # doctest: +SKIP
'optimal'

* :func:`hawq_v3_problem` - HAWQ-V3 (INT4 / INT8 per layer, size / BOPs / latency budgets).
* :func:`limpq_problem` - LIMPQ (25 (weight, activation) bit pairs per layer, BitOps and
  compression-ratio budgets, learned importance indicators).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import FormatError


def read_source(source: str | Path | Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """``(data, name)`` from a JSON file path or an already parsed mapping (``name`` is for messages)."""
    if isinstance(source, Mapping):
        return source, "<dict>"
    if not isinstance(source, (str, Path)):
        raise FormatError(f"expected a JSON file path or a dict, got {type(source).__name__}")
    path = Path(source)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FormatError("file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"cannot read JSON: {exc}", source=str(path)) from None
    if not isinstance(data, Mapping):
        raise FormatError("expected a JSON object at the top level", source=str(path))
    return data, str(path)


def get_key(data: Mapping[str, Any], key: str, where: str, name: str) -> Any:
    """``data[key]`` or a FormatError naming the missing key."""
    if not isinstance(data, Mapping):
        raise FormatError("expected an object", where, name)
    if key not in data:
        raise FormatError(f"missing key '{key}' (keys present: {sorted(data)[:12]})", where, name)
    return data[key]


def number_list(value: Any, where: str, name: str, length: int | None = None) -> np.ndarray:
    """A 1-D float64 array of finite numbers, optionally of a given length."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise FormatError("expected a list of numbers", where, name)
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise FormatError("expected a list of numbers", where, name) from None
    if arr.ndim != 1:
        raise FormatError(f"expected a flat list of numbers, got shape {arr.shape}", where, name)
    if length is not None and arr.size != length:
        raise FormatError(f"expected {length} numbers (one per layer), got {arr.size}", where, name)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise FormatError(f"entry {int(np.argmax(bad))} is not a finite number", where, name)
    return arr


def name_list(value: Any, where: str, name: str) -> list[str]:
    """A non-empty list of non-empty strings (layer names)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise FormatError("expected a non-empty list of layer names", where, name)
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise FormatError(f"entry {i} is not a layer name: {item!r}", where, name)
    return list(value)


def is_integral(values: np.ndarray, rtol: float = 1e-9) -> bool:
    """True when every value is (within rounding) a whole number: used to recognise scaled counts."""
    return bool(np.all(np.abs(values - np.round(values)) <= rtol * np.maximum(1.0, np.abs(values))))


from .hawq import hawq_v3_problem, hawq_v3_released  # noqa: E402  (helpers above are used by the importers)
from .limpq import limpq_problem, limpq_published_policy, wired_points  # noqa: E402

__all__ = ["hawq_v3_problem", "hawq_v3_released", "limpq_problem", "limpq_published_policy", "wired_points"]
