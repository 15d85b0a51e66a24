"""compressed-tensors ``config_groups``: the library validates the config, each format's arguments equal
the library's own preset for that format, and each target matches exactly its modules under the
library's ``match_name``."""

from __future__ import annotations

import pytest
from target_cases import llama_modules, mixed_allocation

from mpqopt.errors import UnsupportedFormatError
from mpqopt.io.targets import compressed_tensors_config as ct

# our format -> the compressed-tensors preset that states it (quant_scheme.py)
PRESETS = {"int4-g128": "W4A16", "int4-g128-asym": "W4A16_ASYM", "int8-a8": "INT8_W8A8", "fp8-e4m3-a8": "FP8_DYNAMIC",
           "nvfp4": "NVFP4A16", "nvfp4-a4": "NVFP4", "mxfp4": "MXFP4A16", "mxfp4-a4": "MXFP4", "int3-g128-a8": "W3A8"}


@pytest.mark.parametrize("label", sorted(PRESETS))
def test_arguments_equal_the_librarys_preset(label):
    pytest.importorskip("compressed_tensors")
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization import quant_scheme as presets

    args = ct.scheme_args("x", ct.pairs({"x": label})[0][1])
    preset = getattr(presets, PRESETS[label])
    assert set(args) == set(preset)
    for key, value in args.items():
        assert QuantizationArgs(**value) == preset[key], key


def test_the_library_validates_it_and_targets_match_exactly():
    pytest.importorskip("compressed_tensors")
    from compressed_tensors.quantization import QuantizationConfig
    from compressed_tensors.utils.match import match_name

    allocation = mixed_allocation(["int4-g128", "int8-a8", "nvfp4", "BF16", "int4-g32-asym"]) | {"lm_head": "BF16"}
    cfg = ct.build(allocation)
    assert isinstance(cfg, QuantizationConfig)
    modules = llama_modules()
    seen = {}
    for scheme in cfg.config_groups.values():
        for target in scheme.targets:
            assert [m for m in modules if match_name(m, target)] == [target]
            seen[target] = scheme
    assert set(seen) | set(cfg.ignore) == set(allocation) and not set(seen) & set(cfg.ignore)
    for layer, label in allocation.items():
        if label != "BF16":
            assert seen[layer].weights.num_bits == (8 if label.startswith("int8") else 4)


@pytest.mark.parametrize("label, why", [("Q4_K", "GGUF"), ("fp8-e5m2", "E4M3 only"), ("int4-g128-a6", "6-bit activations"), ("W8", "no storage format")])
def test_refusals_name_layer_and_format(label, why):
    with pytest.raises(UnsupportedFormatError, match=why) as info:
        ct.quantization_config({"blk.0.ffn_down": label})
    assert "blk.0.ffn_down" in str(info.value) and label in str(info.value)
