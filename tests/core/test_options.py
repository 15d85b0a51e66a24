"""Options (``mpqopt.Option``): plain W/A options exactly as before, and options that name a storage format."""

from __future__ import annotations

import dataclasses
import re

import pytest

from mpqopt import Option, ProblemError
from mpqopt.formats import Format, catalogue, get_format, register_format, unregister_format

# what version-1 files and every caller have always seen
PLAIN = [
    (4, "W4", {"label": "W4", "w": 4}),
    ("W4", "W4", {"label": "W4", "w": 4}),
    ("w4a8", "W4A8", {"label": "W4A8", "w": 4, "a": 8}),
    ({"w": 4}, "W4", {"label": "W4", "w": 4}),
    ({"w": 4, "a": 8, "label": "mine"}, "mine", {"label": "mine", "w": 4, "a": 8}),
    (Option(4, 8), "W4A8", {"label": "W4A8", "w": 4, "a": 8}),
]


@pytest.mark.parametrize("spec, label, doc", PLAIN)
def test_plain_options_unchanged(spec, label, doc):
    o = Option.parse(spec)
    assert o.label == label and o.to_dict() == doc and o.format is None
    assert o.effective_bits == o.w and isinstance(o.effective_bits, float)
    assert o == Option(doc["w"], doc.get("a"), label) and hash(o) == hash(Option(doc["w"], doc.get("a"), label))
    assert repr(o) == f"Option(w={o.w}, a={o.a}, label={label!r})"


@pytest.mark.parametrize("fmt", catalogue(), ids=lambda f: f.name)
def test_every_catalogue_format_is_an_option(fmt):
    o = Option.parse(fmt.name.lower())
    assert o == Option(format=fmt) == Option(format=fmt.name) == Option.parse({"format": fmt.name}) == Option.parse(fmt)
    assert o.label == fmt.name and o.w == fmt.bits and o.a is None and o.effective_bits == fmt.effective_bits
    assert o.to_dict() == {"label": fmt.name, "w": fmt.bits, "format": fmt.name}
    assert Option.parse(o.to_dict()) == o
    with_act = Option(format=fmt, a=8)
    assert with_act.label == f"{fmt.name}-a8" and Option.parse(with_act.label) == with_act
    assert Option.parse(with_act.to_dict()) == with_act
    assert len({o, with_act, Option(format=fmt)}) == 2  # frozen and hashable


def test_integer_format_fields_next_to_the_name():
    o = Option.parse({"format": "int4", "group_size": 128, "symmetric": False, "a": 8})
    assert o.format == get_format("int4-g128-asym") and o.label == "int4-g128-asym-a8" and o.effective_bits == 4.25
    assert Option.parse({"format": "int4-g128", "group_size": None}).format == get_format("int4")
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.w = 3  # type: ignore[misc]


def test_custom_format_option_round_trips_with_all_fields():
    fmt = Format("myq3", "int", 3, group_size=64, scale_bits=8, symmetric=False, zero_bits=8, act_bits=8)
    o = Option(format=fmt)
    assert o.a == 8 and o.label == "myq3" and o.effective_bits == 3.25
    doc = o.to_dict()
    assert doc["format"] == {"name": "myq3", "family": "int", "bits": 3, "group_size": 64, "symmetric": False,
                             "scale_bits": 8, "zero_bits": 8, "act_bits": 8}
    assert Option.parse(doc) == o  # no registry needed: the document carries the format
    register_format(fmt)
    try:
        assert Option.parse("MYQ3") == o and Option.parse("myq3").to_dict() == doc
    finally:
        unregister_format("myq3")


@pytest.mark.parametrize("spec, fragment", [
    ("Q4_KM", "cannot read option label 'Q4_KM'"),
    ("W4X", "cannot read option label 'W4X'"),
    ({"format": "nope"}, "option 'nope': unknown quantization format 'nope'"),
    ({"format": "int4", "group_size": 0}, "option 'int4': group_size must be a positive integer"),
    ({"format": "int4", "group_size": "128"}, "group_size must be a positive integer"),
    ({"format": "Q4_K", "group_size": 128}, "option 'Q4_K': ['group_size'] can only be set next to an integer format"),
    ({"format": "Q4_K", "w": 3}, "'w' = 3 contradicts format Q4_K's 4 data bits"),
    ({"format": "int4", "symmetric": "no"}, "symmetric must be true or false"),
    ({"format": {"name": "x", "family": "int", "bits": 4, "group_size": -1}}, "format 'x': group_size"),
    ({"format": "Q4_K", "label": "q", "bits": 4}, "unknown keys ['bits']"),
    ({"w": 4, "group_size": 128}, "describe a 'format'"),
    ({"label": "x"}, "no 'w'"),
    ({"format": 4}, "format name must be a string"),
])
def test_bad_format_options_are_clear_errors(spec, fragment):
    with pytest.raises(ProblemError, match=re.escape(fragment)):
        Option.parse(spec)


def test_a_format_option_with_a_label():
    o = Option.parse({"format": "Q4_K", "label": "attn-q4"})
    assert o.label == "attn-q4" and o.to_dict() == {"label": "attn-q4", "w": 4, "format": "Q4_K"}
    with pytest.raises(ProblemError, match="option attn-q4: 'w' = 8"):
        Option(8, label="attn-q4", format="Q4_K")
