"""GPTQModel ``dynamic``: resolved the way GPTQModel and vLLM resolve it (first ``re.match``-ing pattern;
``-:`` leaves the module unquantized), every module of a Llama gets exactly its own format.
GPTQModel itself is not installed here (its install pulls another torch and CUDA wheels): the
resolution below follows ``get_dynamic_override`` of vLLM's ``gptq_utils.py`` and GPTQModel 7.7's
``_resolve_dynamic_override``."""

from __future__ import annotations

import re

import pytest
from target_cases import llama_modules, mixed_allocation

from mpqopt.errors import UnsupportedFormatError
from mpqopt.formats import get_format
from mpqopt.io.targets import gptqmodel_config


def _resolve(cfg, module):
    for pattern, overrides in cfg["dynamic"].items():
        if pattern.startswith("-:"):
            if re.match(pattern[2:], module):
                return None
        elif re.match(pattern.removeprefix("+:"), module):
            return {**{k: cfg[k] for k in ("bits", "group_size", "sym")}, **overrides}
    return {k: cfg[k] for k in ("bits", "group_size", "sym")}


def test_every_module_resolves_to_its_own_format():
    formats = ["int4-g128", "int8-g32", "int3-g64-asym", "BF16", "int4", "int2-g16"]
    allocation = mixed_allocation(formats) | {"lm_head": "int8-g128"}
    cfg = gptqmodel_config.quantize_config(allocation)
    assert cfg["lm_head"] is True and len(cfg["dynamic"]) < len(allocation)
    for module in llama_modules():
        if module not in allocation:
            continue
        got, fmt = _resolve(cfg, module), get_format(allocation[module])
        if fmt.family == "float":
            assert got is None, module
        else:
            assert got == {"bits": fmt.bits, "group_size": fmt.group_size or -1, "sym": fmt.symmetric}, module


@pytest.mark.parametrize("label, why", [("Q4_K", "integer weights only"), ("int4-g128-a8", "weights only"), ("int1-g128", "2 to 8 bits"), ("nvfp4", "integer")])
def test_refusals_name_layer_and_format(label, why):
    with pytest.raises(UnsupportedFormatError, match=why) as info:
        gptqmodel_config.quantize_config({"blk.2.ffn_gate": label})
    assert "blk.2.ffn_gate" in str(info.value) and label in str(info.value)
