"""The JSON problem file (``mpqopt.io.json_format``): exact text round trips, strict shortest-repr floats, and parse errors that say where."""

from __future__ import annotations

import json

import pytest
from fuzz import examples
from hypothesis import HealthCheck, given, settings
from io_helpers import assert_same_problem, error_of, problems, write_doc

from mpqopt import FormatError, Option, Problem, ProblemError
from mpqopt.io import dumps, load, loads


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_json_text_round_trip_is_exact(p):
    assert_same_problem(p, loads(dumps(p)), sparse_kept=False)


def test_json_text_is_strict_readable_and_uses_shortest_float_repr():
    p = Problem(["a", "b"], [4, 8], [[5e-324, -0.0], [0.1, 1e300]], costs={"size_bits": [[4, 8], [4, 8]]})
    text = dumps(p)
    assert "5e-324" in text and "-0.0" in text and "1e+300" in text and "0.1," in text
    assert '    [5e-324, -0.0],\n    [0.1, 1e+300]\n' in text  # one table row per line
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_invalid_json_reports_line_and_column(tmp_path):
    text = '{\n  "format": "mpqopt.problem",\n  "version": 1,,\n}'
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(json.JSONDecodeError) as ref:  # Python's own parser says where the fault is
        json.loads(text)
    err = error_of(path)
    assert f"line {ref.value.lineno}, column {ref.value.colno}" in str(err) and ref.value.lineno == 3
    assert "invalid JSON" in str(err)


def test_non_object_json_and_bad_bytes(tmp_path):
    assert "expected a JSON object" in str(error_of(write_doc(tmp_path, [1, 2])))
    path = tmp_path / "latin.json"
    path.write_bytes(b'{"format": "\xff"}')
    assert "not UTF-8" in str(error_of(path))


def test_duplicate_keys_are_refused(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text('{"format": "mpqopt.problem", "version": 1, "costs": {"a": [[1]], "a": [[2]]}}')
    assert "duplicate key 'a'" in str(error_of(path))


def test_lone_surrogates_in_names_are_refused(tmp_path):
    # they used to round-trip, then crashed the CLI's printing (UnicodeEncodeError): names must be text
    with pytest.raises(ProblemError, match="layer 0: .*lone surrogate"):
        Problem(["\ud800", "é"], [4], [[1.0], [2.0]])
    with pytest.raises(ProblemError, match="option 0: .*lone surrogate"):
        Problem(["a"], [Option(4, label="\udfff")], [[1.0]])
    with pytest.raises(ProblemError, match="cost name .*lone surrogate"):
        Problem(["a"], [4], [[1.0]], costs={"\ud800": [[1.0]]})
    text = '{"format": "mpqopt.problem", "version": 1, "layers": ["a", "\\ud800"], "options": [{"label": "W4", "w": 4}], "sensitivity": [[1], [2]]}'
    (tmp_path / "p.json").write_text(text)
    with pytest.raises(FormatError, match="layer 1: .*lone surrogate"):
        load(tmp_path / "p.json")


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(v2=True))
def test_json_version_2_round_trip_is_exact(p):
    text = dumps(p)
    assert json.loads(text)["version"] == (2 if p.params is not None or p.row_lengths is not None or any(o.format for o in p.options) else 1)
    assert_same_problem(p, loads(text), sparse_kept=False)
    assert dumps(loads(text)) == text
