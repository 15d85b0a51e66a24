"""Problem files (JSON and NPZ): exact round trips, the JSON Schema, and errors that say what and where."""

from __future__ import annotations

import inspect
import io
import json
import math
import pathlib
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from fuzz import examples

import mpqopt
from mpqopt import FormatError, Option, Problem, ProblemError
from mpqopt.io import dumps, load, loads, problem_from_dict, problem_to_dict, save, schema

DATA = Path(mpqopt.__file__).parent / "data"
SPECIAL = [1e-300, 5e-324, 1e300, -0.0, 0.0, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1 + 0.2]


# ---------------------------------------------------------------------------------------- strategies
NAMES = st.one_of(
    st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=6),
    st.sampled_from(["], [", 'a"b', "size bits", "x\\y", "line\nbreak", "conv1", "é"]),
)
COST_NAMES = NAMES.filter(lambda n: not any("\ud800" <= c <= "\udfff" for c in n))  # zip member names are UTF-8
FLOATS = st.one_of(st.sampled_from(SPECIAL), st.floats(allow_nan=False, allow_infinity=False))
NONNEG = st.one_of(st.sampled_from([v for v in SPECIAL if v >= 0]), st.floats(min_value=0.0, allow_nan=False, allow_infinity=False))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@st.composite
def problems(draw, pairwise_kinds=("none", "dense", "sparse")):
    L, K = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    layers = draw(st.lists(NAMES, min_size=L, max_size=L, unique=True))
    labels = draw(st.lists(NAMES, min_size=K, max_size=K, unique=True))
    options = [Option(draw(st.integers(1, 16)), draw(st.none() | st.integers(1, 16)), label) for label in labels]

    def table(elements, rows=L, cols=K):
        return np.array(draw(st.lists(st.lists(elements, min_size=cols, max_size=cols), min_size=rows, max_size=rows)), dtype=float)

    cost_names = draw(st.lists(COST_NAMES, max_size=3, unique=True))
    costs = {name: table(NONNEG) for name in cost_names}
    budgets = {name: draw(NONNEG) for name in cost_names if draw(st.booleans())}
    cost_units = {name: draw(st.sampled_from(["bit", "byte", "ms", "furlong"])) for name in cost_names if draw(st.booleans())}

    group_of = draw(st.lists(st.integers(0, L - 1), min_size=L, max_size=L))
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(group_of):
        groups.setdefault(g, []).append(i)
    allowed = None
    if draw(st.booleans()):
        allowed = np.array(draw(st.lists(st.lists(st.booleans(), min_size=K, max_size=K), min_size=L, max_size=L)))
        for members in groups.values():  # every tie group keeps one option in common
            allowed[members, draw(st.integers(0, K - 1))] = True
    fixed = {}
    for members in groups.values():
        if draw(st.booleans()):
            common = [k for k in range(K) if allowed is None or allowed[members, k].all()]
            k = draw(st.sampled_from(common))
            for i in draw(st.lists(st.sampled_from(members), min_size=1, unique=True)):
                fixed[layers[i]] = labels[k]
    ties = [draw(st.permutations([layers[i] for i in m])) for m in groups.values() if len(m) > 1]

    n = L * K
    kind = draw(st.sampled_from(pairwise_kinds))
    pairwise = None
    if kind == "dense":
        pairwise = table(FLOATS, n, n)
    elif kind == "sparse":
        cells = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), unique=True, max_size=6))
        data = [draw(FLOATS) for _ in cells]
        pairwise = sp.coo_array((data, ([r for r, _ in cells], [c for _, c in cells])), shape=(n, n))
    std = table(NONNEG) if draw(st.booleans()) else None
    meta = draw(st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4))
    sensitivity = table(FLOATS)
    # Problem refuses tables whose largest total overflows float64 (1.8e308 on two layers): scale
    # those by 2**-10, exactly, so extremes still appear wherever they are valid
    costs = {name: _fit(t, (t.max(axis=1),)) for name, t in costs.items()}
    if pairwise is not None and not _finite_total(np.abs(sensitivity).max(axis=1), abs(pairwise)):
        sensitivity, pairwise = sensitivity * 2.0**-10, pairwise * 2.0**-10
    sensitivity = _fit(sensitivity, (np.abs(sensitivity).max(axis=1),))
    return Problem(layers, options, sensitivity, costs, budgets, ties=ties, fixed=fixed, allowed=allowed,
                   pairwise=pairwise, sensitivity_std=std, cost_units=cost_units, meta=meta)


def _finite_total(*parts) -> bool:
    with np.errstate(over="ignore"):
        return bool(np.isfinite(sum(float(p.sum(axis=None)) for p in parts)))


def _fit(table: np.ndarray, parts) -> np.ndarray:
    return table if _finite_total(*parts) else table * 2.0**-10


# ---------------------------------------------------------------------------------------- helpers
def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shape, dtype and bit pattern (so -0.0 != 0.0 and 5e-324 must survive)."""
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def assert_same_problem(p: Problem, q: Problem, *, sparse_kept: bool) -> None:
    assert q.layers == p.layers
    assert q.options == p.options
    assert same_bits(q.sensitivity, p.sensitivity)
    assert list(q.costs) == list(p.costs)
    for name in p.costs:
        assert same_bits(q.costs[name], p.costs[name]), name
    assert repr(q.budgets) == repr(p.budgets)  # repr tells -0.0 from 0.0 and keeps order
    assert q.ties == p.ties and q.fixed == p.fixed and q.cost_units == p.cost_units
    assert same_bits(q.allowed, p.allowed)
    assert (q.sensitivity_std is None) == (p.sensitivity_std is None)
    if p.sensitivity_std is not None:
        assert same_bits(q.sensitivity_std, p.sensitivity_std)
    assert (q.pairwise is None) == (p.pairwise is None)
    if p.pairwise is not None:
        assert sp.issparse(q.pairwise) == (sp.issparse(p.pairwise) and sparse_kept)
        dense = lambda m: m.toarray() if sp.issparse(m) else m  # noqa: E731
        assert same_bits(dense(q.pairwise), dense(p.pairwise))
    assert repr(q.meta) == repr(p.meta)  # int vs float and -0.0 vs 0.0 both show in repr


def base_doc() -> dict:
    return {
        "format": "mpqopt.problem",
        "version": 1,
        "layers": ["conv1", "conv2", "fc"],
        "options": [{"label": "W4", "w": 4}, {"label": "W8", "w": 8, "a": 8}],
        "sensitivity": [[0.5, 0.0], [0.25, 0.0], [0.125, 0.0]],
        "costs": {"size_bits": [[400, 800], [1000, 2000], [40, 80]]},
        "budgets": {"size_bits": 2000},
    }


def write_doc(tmp_path: Path, doc: dict, name: str = "p.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def error_of(path: Path) -> FormatError:
    with pytest.raises(FormatError) as info:
        load(path)
    assert str(path) in str(info.value)  # every load error names the file
    return info.value


# ---------------------------------------------------------------------------------------- round trips
@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_json_text_round_trip_is_exact(p):
    assert_same_problem(p, loads(dumps(p)), sparse_kept=False)


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_npz_round_trip_is_exact_and_keeps_sparse_pairwise(p):
    buf = io.BytesIO()
    mpqopt.io.npz_format.write_npz(p, buf)
    buf.seek(0)
    assert_same_problem(p, mpqopt.io.npz_format.read_npz(buf), sparse_kept=True)


@settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=problems())
def test_save_load_files_round_trip(tmp_path_factory, p):
    folder = tmp_path_factory.mktemp("rt")
    for name, sparse_kept in (("p.json", False), ("P.NPZ", True)):
        save(p, folder / name)
        assert_same_problem(p, load(folder / name), sparse_kept=sparse_kept)
    assert sorted(f.name for f in folder.iterdir()) == ["P.NPZ", "p.json"]  # no temp files left behind


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_special_floats_survive_bit_for_bit(tmp_path, suffix):
    # 1e300 and the largest float share a row: in two rows their totals would overflow, which Problem refuses
    values = np.array([SPECIAL[i] for i in (0, 1, 4, 3, 2, 6, 5, 7)], dtype=float).reshape(4, 2)
    p = Problem([f"l{i}" for i in range(4)], [4, 8], values, costs={"c": np.abs(values)}, budgets={"c": 5e-324})
    save(p, tmp_path / f"p{suffix}")
    q = load(tmp_path / f"p{suffix}")
    assert_same_problem(p, q, sparse_kept=True)
    assert math.copysign(1.0, q.sensitivity[1, 1]) == -1.0  # the -0.0 itself, checked without our helper
    assert q.budgets["c"] == 5e-324


def test_json_text_is_strict_readable_and_uses_shortest_float_repr():
    p = Problem(["a", "b"], [4, 8], [[5e-324, -0.0], [0.1, 1e300]], costs={"size_bits": [[4, 8], [4, 8]]})
    text = dumps(p)
    assert "5e-324" in text and "-0.0" in text and "1e+300" in text and "0.1," in text
    assert '    [5e-324, -0.0],\n    [0.1, 1e+300]\n' in text  # one table row per line
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_trivial_parts_are_omitted():
    p = Problem(["a", "b"], [4, 8], [[1.0, 0.0], [1.0, 0.0]], allowed=[[True, True], [True, True]], ties=[["a"]])
    doc = problem_to_dict(p)
    assert set(doc) == {"format", "version", "layers", "options", "budgets", "sensitivity", "costs"}
    q = p.replace(allowed=[[True, False], [True, True]], fixed={"b": "W4"}, ties=[["a", "b"]], meta={"k": 1},
                  cost_units={}, sensitivity_std=[[0.0, 0.0], [0.0, 0.0]], pairwise=np.zeros((4, 4)))
    doc = problem_to_dict(q)
    assert doc["allowed"] == [[True, False], [True, True]] and doc["fixed"] == {"b": "W4"}
    assert doc["ties"] == [["a", "b"]] and doc["meta"] == {"k": 1} and len(doc["pairwise"]) == 4


def test_sparse_pairwise_is_written_dense_in_json_and_as_coo_in_npz(tmp_path):
    pw = sp.coo_array(([2.5, -1.0], ([0, 3], [3, 1])), shape=(4, 4))
    p = Problem(["a", "b"], [4, 8], [[1.0, 0.0], [1.0, 0.0]], pairwise=pw)
    expected = np.zeros((4, 4))
    expected[0, 3], expected[3, 1] = 2.5, -1.0
    assert problem_to_dict(p)["pairwise"] == expected.tolist()
    save(p, tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz", allow_pickle=False) as z:
        assert "pairwise" not in z.files
        rebuilt = np.zeros((4, 4))
        rebuilt[z["pairwise_row"], z["pairwise_col"]] = z["pairwise_data"]
        assert z["pairwise_shape"].tolist() == [4, 4] and z["pairwise_row"].dtype == np.int64
    assert np.array_equal(rebuilt, expected)


def test_npz_layout_is_readable_with_plain_numpy(tmp_path):
    p = Problem(["a", "b"], [4, {"w": 8, "a": 8}], [[1.0, 0.0], [0.5, 0.0]],
                costs={"size_bits": [[4, 8], [4, 8]], "lat ms": [[1, 2], [1, 2]]}, budgets={"size_bits": 12},
                allowed=[[True, True], [False, True]], cost_units={"lat ms": "ms"})
    save(p, tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["allowed", "cost/lat ms", "cost/size_bits", "header", "sensitivity"]
        header = json.loads(z["header"][()])
        assert z["header"].shape == () and z["header"].dtype.kind == "U"
        assert header["costs"] == ["size_bits", "lat ms"] and header["budgets"] == {"size_bits": 12.0}
        assert header["options"] == [{"label": "W4", "w": 4}, {"label": "W8A8", "w": 8, "a": 8}]
        assert header["cost_units"] == {"lat ms": "ms"}
        assert z["cost/size_bits"].dtype == np.float64 and z["allowed"].dtype == bool
        assert z["sensitivity"].tolist() == [[1.0, 0.0], [0.5, 0.0]]


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


@pytest.mark.parametrize("name", ["digits_cnn.json", "minilm_l6.json"])
def test_shipped_example_files_load_and_rewrite_unchanged(tmp_path, name):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{name} is not in this checkout")
    original = json.loads(path.read_text(encoding="utf-8"))
    p = load(path)
    save(p, tmp_path / name)
    rewritten = json.loads((tmp_path / name).read_text(encoding="utf-8"))
    # the writer drops empty optional parts; every other key must carry the same values
    for key in original:
        if key in rewritten:
            assert rewritten[key] == original[key], key
        else:
            assert original[key] in ([], {}, None), key


def test_top_level_load_and_save_are_the_io_ones():
    assert mpqopt.load is load and mpqopt.save is save


# ---------------------------------------------------------------------------------------- schema
VALIDATOR = jsonschema.Draft202012Validator(schema())


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_schema_accepts_every_file_we_write(p):
    VALIDATOR.validate(json.loads(dumps(p)))


def _set(path, value):
    def apply(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return doc
    return apply


_DELETE = object()
STRUCTURAL_FAULTS = {
    "missing sensitivity": (_set(["sensitivity"], _DELETE), ["$.sensitivity: missing"]),
    "missing layers": (_set(["layers"], _DELETE), ["$.layers: missing"]),
    "wrong format": (_set(["format"], "mpqopt.result"), ["$.format", "expected 'mpqopt.problem'", "'mpqopt.result'"]),
    "missing format": (_set(["format"], _DELETE), ["$.format", "missing"]),
    "future version": (_set(["version"], 2), ["$.version", "unsupported version 2", "reads version 1"]),
    "version as text": (_set(["version"], "1"), ["$.version", "integer"]),
    "string in table": (_set(["sensitivity", 2, 1], "abc"), ["$.sensitivity[2][1]", "layer 'fc'", "option 'W8'", "'abc'"]),
    "bool in table": (_set(["sensitivity", 0, 0], True), ["$.sensitivity[0][0]", "layer 'conv1'", "True"]),
    "null in table": (_set(["costs", "size_bits", 1, 0], None), ["$.costs.size_bits[1][0]", "layer 'conv2'", "option 'W4'"]),
    "table not a list": (_set(["sensitivity"], "foo"), ["$.sensitivity", "expected a list of 3 rows"]),
    "non-boolean allowed": (_set(["allowed"], [[1, True], [True, True], [True, True]]), ["$.allowed[0][0]", "true or false", "layer 'conv1'"]),
    "option as string": (_set(["options", 1], "W8"), ["$.options[1]", "expected an object"]),
    "option without w": (_set(["options", 0, "w"], _DELETE), ["$.options[0].w: missing"]),
    "option without label": (_set(["options", 0, "label"], _DELETE), ["$.options[0].label: missing"]),
    "fractional bits": (_set(["options", 0, "w"], 4.5), ["$.options[0].w", "positive integer", "4.5"]),
    "unknown option key": (_set(["options", 1, "bits"], 8), ["$.options[1].bits", "unknown option key"]),
    "relative budget": (_set(["budgets", "size_bits"], "50%"), ["$.budgets.size_bits", "absolute", "'50%'"]),
    "unknown key": (_set(["budget"], {"size_bits": 1}), ["$.budget", "unknown key", "budgets"]),
    "tie of non-names": (_set(["ties"], [["conv1", 3]]), ["$.ties[0][1]", "layer name", "3"]),
    "fixed to a number": (_set(["fixed"], {"conv2": 1}), ["$.fixed.conv2", "option label"]),
    "negative cost": (_set(["costs", "size_bits", 2, 0], -1), ["negative", "layer 'fc'", "option 'W4'"]),
    "layers not a list": (_set(["layers"], "conv1"), ["$.layers", "expected a list"]),
    "null table": (_set(["sensitivity_std"], None), ["$.sensitivity_std", "expected a list of 3 rows", "None"]),
}


@pytest.mark.parametrize("fault", sorted(STRUCTURAL_FAULTS))
def test_schema_and_loader_both_reject_structural_faults(tmp_path, fault):
    mutate, fragments = STRUCTURAL_FAULTS[fault]
    doc = mutate(base_doc() | {"allowed": [[True, True]] * 3})
    assert not VALIDATOR.is_valid(doc)
    err = error_of(write_doc(tmp_path, doc))
    for fragment in fragments:
        assert fragment in str(err), (fragment, str(err))


def test_schema_and_loader_accept_extension_keys(tmp_path):
    doc = base_doc() | {"x-tool": [1, 2]}
    assert VALIDATOR.is_valid(doc)
    assert load(write_doc(tmp_path, doc)).meta == {"x-tool": [1, 2]}


# ---------------------------------------------------------------------------------------- load errors (JSON)
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


def test_file_level_errors(tmp_path):
    assert "no such file" in str(error_of(tmp_path / "missing.json"))
    (tmp_path / "dir.json").mkdir()
    assert "is a directory" in str(error_of(tmp_path / "dir.json"))
    with pytest.raises(FormatError, match=r"unknown file type '\.yaml'.*\.json or \.npz"):
        load(tmp_path / "p.yaml")
    with pytest.raises(FormatError, match="no extension"):
        save(Problem(["a"], [4], [[0.0]]), tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_problem_from_dict_in_memory_accepts_arrays_and_reports_without_source():
    doc = base_doc() | {"sensitivity": np.array([[0.5, 0.0], [0.25, 0.0], [0.125, 0.0]], dtype=np.float32)}
    assert problem_from_dict(doc).sensitivity[2, 0] == 0.125
    with pytest.raises(FormatError) as info:
        problem_from_dict(base_doc() | {"sensitivity": np.zeros((3, 3))})
    assert str(info.value) == "$.sensitivity: expected 2 columns (one per option), got 3"


# ---------------------------------------------------------------------------------------- save errors
def test_unwritable_meta_is_refused_and_the_old_file_survives(tmp_path):
    good = Problem(["a"], [4], [[0.0]], meta={"ok": 1})
    path = tmp_path / "p.json"
    save(good, path)
    for meta, fragments in (
        ({"arr": np.arange(3)}, ["$.meta.arr", "ndarray", ".tolist()"]),
        ({"acc": float("nan")}, ["$.meta.acc", "NaN"]),
        ({"nested": {"k": [1, {2: "x"}]}}, ["$.meta.nested.k[1]", "strings"]),
        ({"s": {1, 2}}, ["$.meta.s", "set"]),
    ):
        for target in (path, path.with_suffix(".npz")):
            with pytest.raises(FormatError) as info:
                save(good.replace(meta=meta), target)
            for fragment in fragments:
                assert fragment in str(info.value), (fragment, str(info.value))
    assert load(path).meta == {"ok": 1}
    assert sorted(f.name for f in tmp_path.iterdir()) == ["p.json"]


def test_numpy_scalars_in_meta_are_written_as_plain_numbers(tmp_path):
    p = Problem(["a"], [4], [[0.0]], meta={"acc": np.float64(0.25), "n": np.int64(3), "pair": (1, 2)})
    save(p, tmp_path / "p.npz")
    assert load(tmp_path / "p.npz").meta == {"acc": 0.25, "n": 3, "pair": [1, 2]}


@pytest.mark.parametrize("name", ["a\x00b"])
def test_cost_names_that_cannot_be_zip_members_are_json_only(tmp_path, name):
    p = Problem(["a"], [4], [[0.0]], costs={name: [[1.0]]})
    save(p, tmp_path / "p.json")
    assert list(load(tmp_path / "p.json").costs) == [name]
    with pytest.raises(FormatError, match="cannot be an NPZ member name"):
        save(p, tmp_path / "p.npz")
    assert not (tmp_path / "p.npz").exists()


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


def test_lone_surrogates_in_meta_round_trip(tmp_path):
    p = Problem(["é"], [4], [[1.0]], meta={"\ud83d": "x"})
    for suffix in (".json", ".npz"):
        save(p, tmp_path / f"p{suffix}")
        assert load(tmp_path / f"p{suffix}").meta == p.meta


# ---------------------------------------------------------------------------------------- NPZ errors
class _Trap:
    """Unpickling this touches a marker file: proof that something was unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _npz_members(p: Problem) -> dict:
    buf = io.BytesIO()
    mpqopt.io.npz_format.write_npz(p, buf)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _small() -> Problem:
    return problem_from_dict(base_doc())


def _write_npz(path: Path, members: dict, *, pickles: bool = False) -> Path:
    if "allow_pickle" in inspect.signature(np.savez).parameters:
        np.savez(path, allow_pickle=pickles, **members)
    else:  # older numpy (1.24): savez always pickles object arrays (and would store allow_pickle as an array)
        assert pickles or all(np.asarray(v).dtype != object for v in members.values())
        np.savez(path, **members)
    return path


@pytest.mark.parametrize("member", ["sensitivity", "header", "cost/size_bits"])
def test_npz_object_arrays_are_refused_without_unpickling(tmp_path, member):
    marker = tmp_path / "unpickled"
    members = _npz_members(_small())
    members[member] = np.array([_Trap(marker)], dtype=object)
    path = _write_npz(tmp_path / "trap.npz", members, pickles=True)
    # control: the trap does fire when pickles are allowed, so its absence below means something
    with np.load(path, allow_pickle=True) as z:
        z[member]
    assert marker.exists()
    marker.unlink()
    err = error_of(path)
    assert member in str(err) and "pickle" in str(err)
    assert not marker.exists()


def test_truncated_and_corrupt_npz_give_clean_errors(tmp_path):
    path = tmp_path / "p.npz"
    save(_small(), path)
    data = path.read_bytes()
    (tmp_path / "half.npz").write_bytes(data[: len(data) // 2])
    assert "corrupt or truncated" in str(error_of(tmp_path / "half.npz"))
    # flip one byte inside the sensitivity array's data (found by its float64 bytes): CRC must catch it
    needle = np.array([0.25, 0.0]).tobytes()
    at = data.index(needle)
    (tmp_path / "flip.npz").write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
    err = error_of(tmp_path / "flip.npz")
    assert "sensitivity" in str(err) and "corrupt" in str(err)
    (tmp_path / "text.npz").write_text("hello")
    assert "not an NPZ archive" in str(error_of(tmp_path / "text.npz"))
    np.save(tmp_path / "plain.npy", np.zeros(3))
    (tmp_path / "plain.npy").rename(tmp_path / "plain.npz")
    assert "not an NPZ archive" in str(error_of(tmp_path / "plain.npz"))
    (tmp_path / "empty.npz").write_bytes(b"")
    assert "not an NPZ archive" in str(error_of(tmp_path / "empty.npz"))


def _header_with(**changes) -> np.ndarray:
    header = json.loads(_npz_members(_small())["header"][()])
    for key, value in changes.items():
        if value is _DELETE:
            header.pop(key)
        else:
            header[key] = value
    return np.array(json.dumps(header))


NPZ_FAULTS = {
    "no header": (lambda m: m.pop("header"), ["header: missing"]),
    "header bytes": (lambda m: m.update(header=np.array(b"{}")), ["header", "0-d unicode"]),
    "header not json": (lambda m: m.update(header=np.array("{oops")), ["header: invalid JSON", "line 1, column 2"]),
    "header version": (lambda m: m.update(header=_header_with(version=3)), ["$.version", "unsupported version 3"]),
    "header budget text": (lambda m: m.update(header=_header_with(budgets={"size_bits": "50%"})), ["$.budgets.size_bits", "absolute"]),
    "header costs dict": (lambda m: m.update(header=_header_with(costs={"size_bits": 1})), ["$.costs", "list of cost names"]),
    "table in header": (lambda m: m.update(header=_header_with(sensitivity=[[0]])), ["$.sensitivity", "is the array 'sensitivity'"]),
    "no sensitivity": (lambda m: m.pop("sensitivity"), ["sensitivity: missing"]),
    "short sensitivity": (lambda m: m.update(sensitivity=np.zeros((2, 2))), ["sensitivity: expected 3 rows (one per layer), got 2"]),
    "1-d sensitivity": (lambda m: m.update(sensitivity=np.zeros(6)), ["sensitivity: expected a 2-d array of shape (3, 2)"]),
    "complex sensitivity": (lambda m: m.update(sensitivity=np.zeros((3, 2), complex)), ["sensitivity", "complex128"]),
    "text sensitivity": (lambda m: m.update(sensitivity=np.full((3, 2), "1.0")), ["sensitivity", "<U3"]),
    "missing cost": (lambda m: m.pop("cost/size_bits"), ["cost/size_bits: missing"]),
    "unlisted cost": (lambda m: m.update({"cost/extra": np.zeros((3, 2))}), ["cost/extra", "not listed"]),
    "unknown array": (lambda m: m.update(junk=np.zeros(1)), ["junk: unknown array"]),
    "wide cost": (lambda m: m.update({"cost/size_bits": np.zeros((3, 5))}), ["cost/size_bits: expected 2 columns (one per option), got 5"]),
    "int allowed": (lambda m: m.update(allowed=np.ones((3, 2), dtype=np.int64)), ["allowed: expected a boolean array", "int64"]),
    "NaN sensitivity": (lambda m: m.update(sensitivity=np.array([[0.5, 0.0], [0.25, np.nan], [0.1, 0.0]])), ["layer 'conv2'", "option 'W8'", "nan"]),
    "dense and sparse": (lambda m: m.update(pairwise=np.zeros((6, 6)), pairwise_row=np.zeros(1, np.int64)), ["pairwise_row", "not both"]),
    "sparse incomplete": (lambda m: m.update(pairwise_row=np.zeros(1, np.int64)), ["pairwise_col: missing"]),
    "sparse out of range": (lambda m: m.update(pairwise_row=np.array([0, 1]), pairwise_col=np.array([5, 6]), pairwise_data=np.ones(2),
                                               pairwise_shape=np.array([6, 6])), ["pairwise_col[1]", "index 6 is outside 0..5"]),
    "sparse wrong shape": (lambda m: m.update(pairwise_row=np.array([0]), pairwise_col=np.array([0]), pairwise_data=np.ones(1),
                                              pairwise_shape=np.array([5, 5])), ["pairwise", "expected shape (6, 6)"]),
    "sparse float index": (lambda m: m.update(pairwise_row=np.array([0.0]), pairwise_col=np.array([0]), pairwise_data=np.ones(1),
                                              pairwise_shape=np.array([6, 6])), ["pairwise_row", "integer"]),
}


@pytest.mark.parametrize("fault", sorted(NPZ_FAULTS))
def test_npz_faults_name_the_array(tmp_path, fault):
    mutate, fragments = NPZ_FAULTS[fault]
    members = _npz_members(_small())
    mutate(members)
    err = error_of(_write_npz(tmp_path / "p.npz", members))
    for fragment in fragments:
        assert fragment in str(err), (fragment, str(err))


def test_npz_extension_arrays_are_ignored(tmp_path):
    members = _npz_members(_small()) | {"x-embedding": np.ones(4)}
    assert_same_problem(_small(), load(_write_npz(tmp_path / "p.npz", members)), sparse_kept=True)


def test_npz_written_by_another_tool_in_float32_and_compressed(tmp_path):
    members = _npz_members(_small())
    members["sensitivity"] = members["sensitivity"].astype(np.float32)
    path = tmp_path / "p.npz"
    np.savez_compressed(path, **members)
    p = load(path)
    assert p.sensitivity.dtype == np.float64 and p.sensitivity.tolist() == [[0.5, 0.0], [0.25, 0.0], [0.125, 0.0]]


# ---------------------------------------------------------------------------------------- size
def test_large_npz_loads_quickly(tmp_path):
    rng = np.random.default_rng(0)
    L, K = 50_000, 8
    p = Problem([f"layer{i}" for i in range(L)], [1, 2, 3, 4, 5, 6, 7, 8], rng.random((L, K)),
                costs={"size_bits": rng.random((L, K)) * 1e6, "bitops": rng.random((L, K)) * 1e9}, budgets={"size_bits": 1e9})
    save(p, tmp_path / "big.npz")
    start = time.perf_counter()
    q = load(tmp_path / "big.npz")
    elapsed = time.perf_counter() - start
    assert same_bits(q.costs["bitops"], p.costs["bitops"])
    assert elapsed < 2.0, f"loading a 50,000 x 8 NPZ took {elapsed:.2f} s"  # ~0.1 s measured; generous for CI
