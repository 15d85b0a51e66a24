"""Problem to document (``mpqopt.io.encode``): trivial parts are left out, the others written."""

from __future__ import annotations

import numpy as np

from mpqopt import Problem
from mpqopt.io import problem_to_dict


def test_trivial_parts_are_omitted():
    p = Problem(["a", "b"], [4, 8], [[1.0, 0.0], [1.0, 0.0]], allowed=[[True, True], [True, True]], ties=[["a"]])
    doc = problem_to_dict(p)
    assert set(doc) == {"format", "version", "layers", "options", "budgets", "sensitivity", "costs"}
    q = p.replace(allowed=[[True, False], [True, True]], fixed={"b": "W4"}, ties=[["a", "b"]], meta={"k": 1},
                  cost_units={}, sensitivity_std=[[0.0, 0.0], [0.0, 0.0]], pairwise=np.zeros((4, 4)))
    doc = problem_to_dict(q)
    assert doc["allowed"] == [[True, False], [True, True]] and doc["fixed"] == {"b": "W4"}
    assert doc["ties"] == [["a", "b"]] and doc["meta"] == {"k": 1} and len(doc["pairwise"]) == 4
