"""The JSON Schema (``mpqopt.io.schema``, ``mpqopt/schema``): a valid draft 2020-12 schema that accepts every file we write and rejects, like the loader, every structural fault."""

from __future__ import annotations

import json

import jsonschema
import pytest
from fuzz import examples
from hypothesis import HealthCheck, given, settings
from io_helpers import _DELETE, _set, base_doc, error_of, problems, write_doc

from mpqopt.io import SUPPORTED_VERSIONS, VERSION, dumps, load, schema

VALIDATORS = {v: jsonschema.Draft202012Validator(schema(v)) for v in SUPPORTED_VERSIONS}
VALIDATOR = VALIDATORS[1]  # the hand-written documents below are version 1


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_schema_is_a_valid_draft_2020_12_schema(version):
    jsonschema.Draft202012Validator.check_schema(schema(version))
    assert schema(version)["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema(version)["properties"]["version"] == {"const": version}
    assert schema() == schema(VERSION) and VERSION == max(SUPPORTED_VERSIONS)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), problems(v2=True))
def test_schema_accepts_every_file_we_write(p, p2):
    for problem in (p, p2):
        doc = json.loads(dumps(problem))
        VALIDATORS[doc["version"]].validate(doc)


STRUCTURAL_FAULTS = {
    "missing sensitivity": (_set(["sensitivity"], _DELETE), ["$.sensitivity: missing"]),
    "missing layers": (_set(["layers"], _DELETE), ["$.layers: missing"]),
    "wrong format": (_set(["format"], "mpqopt.result"), ["$.format", "expected 'mpqopt.problem'", "'mpqopt.result'"]),
    "missing format": (_set(["format"], _DELETE), ["$.format", "missing"]),
    "future version": (_set(["version"], 3), ["$.version", "unsupported version 3", "reads version 1, 2"]),
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


def v2_doc() -> dict:
    doc = base_doc() | {"version": 2, "params": [4096, 1e6, 0], "row_lengths": [64, 256, 32]}
    doc["options"] = [{"label": "W4", "w": 4}, {"label": "Q8_0", "w": 8, "a": 8, "format": "Q8_0"},
                      {"label": "mine", "w": 3, "format": {"name": "mine", "family": "int", "bits": 3, "group_size": 32, "scale_bits": 16}}]
    doc["sensitivity"] = [[0.5, 0.0, 0.1], [0.25, 0.0, 0.2], [0.125, 0.0, 0.3]]
    doc["costs"] = {"size_bits": [[400, 800, 300], [1000, 2000, 750], [40, 80, 30]]}
    return doc


def test_a_hand_written_version_2_file_loads(tmp_path):
    doc = v2_doc()
    assert VALIDATORS[2].is_valid(doc)
    p = load(write_doc(tmp_path, doc))
    assert [o.effective_bits for o in p.options] == [4.0, 8.5, 3.5]
    assert p.params.tolist() == [4096.0, 1e6, 0.0] and p.row_lengths.tolist() == [64, 256, 32]


V2_FAULTS = {
    "format name not text": (_set(["options", 1, "format"], 8), ["$.options[1].format", "expected a format name"]),
    "format field unknown": (_set(["options", 2, "format", "groups"], 4), ["$.options[2].format", "unknown key 'groups'"]),
    "group size zero": (_set(["options", 2, "format", "group_size"], 0), ["$.options[2].format", "option 'mine'", "group_size must be a positive integer"]),
    "family unknown": (_set(["options", 2, "format", "family"], "int9"), ["$.options[2].format", "family must be one of"]),
    "params as text": (_set(["params", 1], "big"), ["$.params[1]", "expected a number (layer 'conv2')", "'big'"]),
    "params not a list": (_set(["params"], 7), ["$.params", "expected a list of 3 numbers"]),
    "fractional row length": (_set(["row_lengths", 0], 64.5), ["$.row_lengths[0]", "expected an integer (layer 'conv1')", "64.5"]),
    "boolean row length": (_set(["row_lengths", 2], True), ["$.row_lengths[2]", "expected an integer"]),
    "negative params": (_set(["params", 2], -1), ["params: layer 'fc' has -1"]),
    "zero row length": (_set(["row_lengths", 1], 0), ["row_lengths: layer 'conv2' has 0"]),
    "params in a v1 file": (_set(["version"], 1), ["$.params", "version-2 key", "version 1"]),
}


@pytest.mark.parametrize("fault", sorted(V2_FAULTS))
def test_schema_and_loader_both_reject_version_2_faults(tmp_path, fault):
    mutate, fragments = V2_FAULTS[fault]
    doc = mutate(v2_doc())
    assert not VALIDATORS[doc["version"]].is_valid(doc)
    err = error_of(write_doc(tmp_path, doc))
    for fragment in fragments:
        assert fragment in str(err), (fragment, str(err))


@pytest.mark.parametrize("mutate, fragments", [
    (_set(["options", 1, "format"], "Q4_KM"), ["$.options[1].format", "option 'Q8_0'", "unknown quantization format 'Q4_KM'; did you mean Q4_K"]),
    (_set(["options", 1, "w"], 4), ["$.options[1]", "'w' = 4 contradicts format Q8_0's 8 data bits"]),
    (_set(["row_lengths"], [64, 256, 33]), ["$: layer 'fc' has no allowed option", "Q8_0's 32-weight block", "mine's 32-weight group"]),
    (_set(["row_lengths", 2], 10**400), ["$.row_lengths[2]", "too large (layer 'fc')"]),
    (_set(["params"], [1, 2]), ["$.params", "expected 3 numbers (one per layer), got 2"]),
])
def test_loader_refuses_what_the_schema_cannot_see(tmp_path, mutate, fragments):
    doc = mutate(v2_doc())
    if fragments[0] == "$: layer 'fc' has no allowed option":
        doc["allowed"] = [[True] * 3, [True] * 3, [False, True, True]]
    err = error_of(write_doc(tmp_path, doc))
    for fragment in fragments:
        assert fragment in str(err), (fragment, str(err))


def test_a_version_1_file_cannot_carry_formats(tmp_path):
    doc = base_doc()
    doc["options"][1]["format"] = "Q8_0"
    assert not VALIDATOR.is_valid(doc)
    assert "options carry a format from version 2 on" in str(error_of(write_doc(tmp_path, doc)))
