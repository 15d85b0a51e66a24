"""The JSON Schema (``mpqopt.io.schema``, ``mpqopt/schema``): a valid draft 2020-12 schema that accepts every file we write and rejects, like the loader, every structural fault."""

from __future__ import annotations

import json

import jsonschema
import pytest
from fuzz import examples
from hypothesis import HealthCheck, given, settings
from io_helpers import _DELETE, _set, base_doc, error_of, problems, write_doc

from mpqopt.io import dumps, load, schema

VALIDATOR = jsonschema.Draft202012Validator(schema())


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_schema_accepts_every_file_we_write(p):
    VALIDATOR.validate(json.loads(dumps(p)))


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
