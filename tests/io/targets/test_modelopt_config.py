"""ModelOpt ``quant_cfg``: ModelOpt validates it (from the YAML written, too), each quantizer's attributes
equal those of ModelOpt's own preset for that format, and each entry's wildcard matches exactly its quantizer."""

from __future__ import annotations

import fnmatch

import pytest
from target_cases import llama_modules, mixed_allocation

from mpqopt.errors import UnsupportedFormatError
from mpqopt.io.targets import modelopt_config

PRESETS = {"int4-g128": "INT4_AWQ_CFG", "int8": "INT8_WEIGHT_ONLY_CFG", "int8-a8": "INT8_DEFAULT_CFG", "nvfp4-a4": "NVFP4_DEFAULT_CFG",
           "mxfp4-a4": "MXFP4_DEFAULT_CFG"}


def _attrs(cfg):
    from modelopt.torch.quantization.config import QuantizerAttributeConfig

    return QuantizerAttributeConfig.model_validate(cfg).model_dump(exclude={"effective_bits"})


@pytest.mark.parametrize("label", sorted(PRESETS))
def test_attributes_equal_modelopts_preset(label):
    pytest.importorskip("modelopt")
    import modelopt.torch.quantization.config as presets

    ours = {e["quantizer_name"].rsplit(".", 1)[1]: e["cfg"] for e in modelopt_config.quant_config({"x": label})["quant_cfg"][1:]}
    theirs = {e["quantizer_name"][1:]: e.get("cfg") for e in getattr(presets, PRESETS[label])["quant_cfg"]
              if e["quantizer_name"] in ("*weight_quantizer", "*input_quantizer") and e.get("enable", True)}
    assert set(ours) == set(theirs)
    for key in ours:
        assert _attrs(ours[key]) == _attrs(theirs[key]), key


def test_modelopt_validates_the_yaml_and_wildcards_hit_only_their_quantizer():
    pytest.importorskip("modelopt")
    yaml = pytest.importorskip("yaml")
    from modelopt.torch.quantization.config import QuantizeConfig

    allocation = mixed_allocation(["int4-g128", "int8-a8", "nvfp4", "BF16", "fp8-e4m3"])
    cfg = modelopt_config.quant_config(allocation)
    assert QuantizeConfig.model_validate(yaml.safe_load(modelopt_config.render(allocation))) == QuantizeConfig.model_validate(cfg)
    quantizers = [f"{m}.{q}" for m in llama_modules() for q in ("weight_quantizer", "input_quantizer")]
    for entry in cfg["quant_cfg"][1:]:
        assert [q for q in quantizers if fnmatch.fnmatch(q, entry["quantizer_name"])] == [entry["quantizer_name"]]
    enabled = {e["quantizer_name"].rsplit(".", 1)[0] for e in cfg["quant_cfg"][1:]}
    assert enabled == {layer for layer, label in allocation.items() if label != "BF16"}


@pytest.mark.parametrize("label, why", [("int4-g128-asym", "symmetric"), ("Q4_K", "GGUF"), ("fp8-e5m2", "E5M2"), ("int4-a4", "4-bit activations")])
def test_refusals_name_layer_and_format(label, why):
    with pytest.raises(UnsupportedFormatError, match=why) as info:
        modelopt_config.quant_config({"blk.5.attn_q": label})
    assert "blk.5.attn_q" in str(info.value) and label in str(info.value)
