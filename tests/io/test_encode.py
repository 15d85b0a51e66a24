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


def test_version_is_the_oldest_that_holds_the_problem():
    p = Problem(["a", "b"], [4, "W8A8", {"w": 2, "label": "two"}], np.zeros((2, 3)))
    assert problem_to_dict(p)["version"] == 1
    for change in (dict(params=[10, 20]), dict(row_lengths=[32, 64]), dict(options=[4, "Q8_0", "W2"])):
        doc = problem_to_dict(p.replace(**change))
        assert doc["version"] == 2, change
    doc = problem_to_dict(p.replace(options=[4, "Q8_0", "W2"], row_lengths=[32, 48], allowed=[[True, True, False], [True, True, True]]))
    assert doc["row_lengths"] == [32, 48] and "params" not in doc
    # the mask as given: Q8_0 on 'b' (48 weights per row) is ruled out again on loading, not stored
    assert doc["allowed"] == [[True, True, False], [True, True, True]]
    assert doc["options"][1] == {"label": "Q8_0", "w": 8, "format": "Q8_0"}
