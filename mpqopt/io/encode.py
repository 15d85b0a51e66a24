"""Turn a :class:`~mpqopt.Problem` into a problem document (a dict), the inverse of ``problem_from_dict``.

>>> from mpqopt import Problem
>>> p = Problem(["a", "b"], [4, 8], [[0.5, 0.0], [0.1, 0.0]], costs={"size_bits": [[4, 8], [4, 8]]},
...             budgets={"size_bits": 12})
>>> d = problem_to_dict(p)
>>> d["format"], d["version"], d["options"], d["budgets"]
('mpqopt.problem', 1, [{'label': 'W4', 'w': 4}, {'label': 'W8', 'w': 8}], {'size_bits': 12.0})

A problem with a format option or a layer fact is written as version 2:

>>> q = Problem(["a"], ["Q4_K", 8], [[0.5, 0.0]], params=[4096.0], row_lengths=[4096])
>>> d = problem_to_dict(q)
>>> d["version"], d["options"], d["params"], d["row_lengths"]
(2, [{'label': 'Q4_K', 'w': 4, 'format': 'Q4_K'}, {'label': 'W8', 'w': 8}], [4096.0], [4096])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import FormatError
from ..problem import Problem
from .validate import FORMAT, LAYER_FACTS, member


def version_for(problem: Problem) -> int:
    """The oldest file version that holds ``problem``: 2 when an option has a format or the problem has
    layer facts (``params``, ``row_lengths``), else 1 (so that older readers still read it)."""
    v2 = problem.params is not None or problem.row_lengths is not None or any(o.format is not None for o in problem.options)
    return 2 if v2 else 1


def problem_to_dict(problem: Problem, *, arrays: bool = False) -> dict[str, Any]:
    """The problem as a document of the oldest version that holds it (:func:`version_for`):
    JSON-ready (nested lists) by default.

    With ``arrays=True`` the tables stay numpy arrays (read-only views of the problem's own) and a
    sparse ``pairwise`` stays sparse; the NPZ writer uses this. Optional parts are left out when absent
    or trivial: ``allowed`` when every option is allowed, ``ties``/``fixed``/``meta``/``cost_units``
    when empty. ``allowed`` is the mask as given (``problem.given_allowed``): the reader takes the
    options a layer's row length rules out away again. Raises ``FormatError`` if ``meta`` holds
    something JSON cannot represent exactly.
    """
    table = (lambda a: a) if arrays else (lambda a: a.tolist())
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": version_for(problem),
        "layers": list(problem.layers),
        "options": [o.to_dict() for o in problem.options],
        "budgets": dict(problem.budgets),
    }
    if problem.cost_units:
        doc["cost_units"] = dict(problem.cost_units)
    if problem.ties:
        doc["ties"] = [list(group) for group in problem.ties]
    if problem.fixed:
        doc["fixed"] = dict(problem.fixed)
    if problem.meta:
        doc["meta"] = json_ready(problem.meta, "$.meta")
    for key in LAYER_FACTS:
        values = getattr(problem, key)
        if values is not None:
            doc[key] = table(values)
    doc["sensitivity"] = table(problem.sensitivity)
    if problem.sensitivity_std is not None:
        doc["sensitivity_std"] = table(problem.sensitivity_std)
    doc["costs"] = {name: table(values) for name, values in problem.costs.items()}
    if not problem.given_allowed.all():
        doc["allowed"] = table(problem.given_allowed)
    if problem.pairwise is not None:
        pairwise = problem.pairwise
        if not arrays and sp.issparse(pairwise):
            pairwise = pairwise.toarray()  # JSON has no sparse layout: written dense
        doc["pairwise"] = table(pairwise)
    return doc


def json_ready(value: Any, where: str) -> Any:
    """A copy of ``value`` that JSON writes and reads back unchanged, or a ``FormatError`` naming the spot.

    Numpy scalars become Python numbers and tuples become lists; non-string keys, non-finite floats
    (not valid JSON) and other objects (arrays, sets...) are refused.

    >>> json_ready({"acc": np.float32(0.5), "bits": (4, 8)}, "$.meta")
    {'acc': 0.5, 'bits': [4, 8]}
    """
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FormatError(f"{value} cannot be written: JSON has no NaN or infinity", where)
        return float(value)
    if isinstance(value, (list, tuple)):
        return [json_ready(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise FormatError(f"key {key!r} cannot be written: JSON object keys are strings", where)
            out[key] = json_ready(item, member(where, key))
        return out
    hint = " (use .tolist())" if isinstance(value, np.ndarray) else ""
    raise FormatError(f"cannot write a value of type {type(value).__name__}{hint}; meta holds JSON values only", where)
