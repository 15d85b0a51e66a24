"""Reading a problem document (``mpqopt.io.validate``): hand-written files read as written, and shape, type and value faults name the place."""

from __future__ import annotations

import json

import numpy as np
import pytest
from io_helpers import _set, base_doc, error_of, write_doc

import mpqopt
from mpqopt import FormatError, ProblemError
from mpqopt.io import load, problem_from_dict


def test_hand_written_file_reads_as_written(tmp_path):
    doc = base_doc() | {"ties": [["fc", "conv1"]], "fixed": {"conv2": "W8"}, "allowed": [[True, True], [False, True], [True, True]],
                        "sensitivity_std": [[0.1, 0], [0.1, 0], [0.1, 0]], "cost_units": {"size_bits": "bit"},
                        "meta": {"model": "toy"}, "x-tool": {"run": 7}}
    p = load(write_doc(tmp_path, doc))
    assert p.layers == ("conv1", "conv2", "fc") and p.option_labels == ("W4", "W8")
    assert p.options[1].a == 8 and p.options[0].a is None
    assert p.costs["size_bits"][1, 1] == 2000.0 and p.sensitivity[2, 0] == 0.125
    assert p.budgets == {"size_bits": 2000.0} and p.fixed == {"conv2": "W8"}
    assert set(p.ties[0]) == {"conv1", "fc"} and not p.allowed[1, 0]
    assert p.meta == {"model": "toy", "x-tool": {"run": 7}}  # the x- extension lands in meta


SHAPE_FAULTS = {
    "too few rows": (_set(["costs", "size_bits"], [[400, 800], [1000, 2000]]),
                     ["$.costs.size_bits: expected 3 rows (one per layer), got 2"]),
    "short row": (_set(["sensitivity", 1], [0.25]), ["$.sensitivity[1]", "row 1 (layer 'conv2')", "1 entries", "expected 2 (one per option)"]),
    "row not a list": (_set(["sensitivity", 2], 0.5), ["$.sensitivity[2]", "row 2 (layer 'fc') is 0.5, expected 2"]),
    "quoted cost name": (_set(["costs"], {"size bits": [[1, 2]]}), ['$.costs["size bits"]: expected 3 rows']),
    "pairwise rows": (_set(["pairwise"], [[0.0] * 6] * 5), ["$.pairwise: expected 6 rows (one per layer-option pair"]),
    "pairwise entry": (_set(["pairwise"], [[0.0] * 6] * 3 + [["x"] + [0.0] * 5] + [[0.0] * 6] * 2),
                       ["$.pairwise[3][0]", "layer 'conv2', option 'W8'", "column 0 (layer 'conv1', option 'W4')"]),
    "huge integer": (_set(["sensitivity", 0, 1], 10**400), ["$.sensitivity[0][1]", "401 digits", "layer 'conv1'", "option 'W8'"]),
    "unknown fixed label": (_set(["fixed"], {"conv2": "W16"}), ["$.fixed.conv2", "'W16'", "['W4', 'W8']"]),
    "meta not an object": (_set(["meta"], [1]), ["$.meta", "expected an object"]),
    "unit not text": (_set(["cost_units"], {"size_bits": 8}), ["$.cost_units.size_bits", "unit string"]),
    "extension clash": (lambda d: d | {"meta": {"x-a": 1}, "x-a": 2}, ["$.x-a", "also appears in $.meta"]),
    "no layers": (_set(["layers"], []), ["$.layers", "at least one layer"]),
    "no options": (_set(["options"], []), ["$.options", "at least one option"]),
}


@pytest.mark.parametrize("fault", sorted(SHAPE_FAULTS))
def test_shape_and_type_faults_name_the_place(tmp_path, fault):
    mutate, fragments = SHAPE_FAULTS[fault]
    err = error_of(write_doc(tmp_path, mutate(base_doc())))
    for fragment in fragments:
        assert fragment in str(err), (fragment, str(err))


VALUE_FAULTS = {  # found by Problem itself; the loader passes them on as FormatError at '$'
    "NaN sensitivity": ('"sensitivity": [[0.5, 0.0], [NaN, 0.0], [0.125, 0.0]]', ["layer 'conv2'", "option 'W4'", "nan"]),
    "unknown tie layer": ('"ties": [["conv1", "conv9"]]', ["tie group 0", "'conv9'"]),
    "duplicate layer": ('"layers": ["conv1", "conv1", "fc"]', ["duplicate layer name 'conv1'"]),
    "negative budget": ('"budgets": {"size_bits": -5}', ["budget 'size_bits'", "-5"]),
    "fixed but forbidden": ('"fixed": {"conv1": "W4"}, "allowed": [[false, true], [true, true], [true, true]]', ["'conv1'", "'W4'", "forbids"]),
    "unknown budget": ('"budgets": {"latency": 3}', ["budget 'latency'", "size_bits"]),
}


@pytest.mark.parametrize("fault", sorted(VALUE_FAULTS))
def test_problem_errors_come_back_as_format_errors_with_the_file_name(tmp_path, fault):
    replacement, fragments = VALUE_FAULTS[fault]
    key = replacement.split('"')[1]
    doc = base_doc()
    doc.pop(key, None)
    text = json.dumps(doc)[:-1] + ", " + replacement + "}"
    path = tmp_path / "p.json"
    path.write_text(text)
    err = error_of(path)
    assert err.where == "$" and err.source == str(path)
    assert isinstance(err.__cause__, (ProblemError, mpqopt.BudgetError))
    for fragment in fragments:
        assert fragment in str(err), (fragment, str(err))


def test_problem_from_dict_in_memory_accepts_arrays_and_reports_without_source():
    doc = base_doc() | {"sensitivity": np.array([[0.5, 0.0], [0.25, 0.0], [0.125, 0.0]], dtype=np.float32)}
    assert problem_from_dict(doc).sensitivity[2, 0] == 0.125
    with pytest.raises(FormatError) as info:
        problem_from_dict(base_doc() | {"sensitivity": np.zeros((3, 3))})
    assert str(info.value) == "$.sensitivity: expected 2 columns (one per option), got 3"
