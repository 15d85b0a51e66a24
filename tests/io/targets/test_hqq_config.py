"""HQQ: ``dynamic_config`` by linear tag as transformers' ``HqqConfig`` reads it (hqq's own
``BaseQuantizeConfig`` per tag), per-module kwargs that ``HQQLinear`` takes, and the refusals."""

from __future__ import annotations

import pytest
from target_cases import LINEARS, llama_modules

from mpqopt.errors import UnsupportedFormatError
from mpqopt.io.targets import hqq_config

FORMATS = {"self_attn.q_proj": "int4-g64-asym", "self_attn.k_proj": "int3-g32-asym", "self_attn.v_proj": "int8-asym",
           "self_attn.o_proj": "int4-g128-asym", "mlp.gate_proj": "int2-g16-asym", "mlp.up_proj": "int5-g64-asym", "mlp.down_proj": "BF16"}


def _allocation(blocks: int = 4) -> dict[str, str]:
    return {f"model.layers.{b}.{kind}": FORMATS[kind] for b in range(blocks) for kind in LINEARS}


def test_tags_are_hqqs_and_transformers_builds_the_config():
    pytest.importorskip("hqq")
    transformers = pytest.importorskip("transformers")
    from transformers.integrations.hqq import name_to_linear_tag

    assert {hqq_config.linear_tag(n) for n in llama_modules()} == {name_to_linear_tag(n) for n in llama_modules()}
    config = hqq_config.build(_allocation())
    assert isinstance(config, transformers.HqqConfig)
    for tag, label in FORMATS.items():
        if label == "BF16":
            assert tag not in config.quant_config and tag in config.skip_modules
            continue
        params = config.quant_config[tag]["weight_quant_params"]
        bits = int(label[3])
        group = None if "-g" not in label else int(label.split("-g")[1].split("-")[0])
        assert (params["nbits"], params["group_size"], params["axis"]) == (bits, group, 1)


def test_per_module_kwargs_quantize_a_linear():
    torch = pytest.importorskip("torch")
    pytest.importorskip("hqq")
    from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

    kwargs = hqq_config.per_module({"blk.0.attn_k": "int3-g32-asym"})["model.layers.0.self_attn.k_proj"]
    q = HQQLinear(torch.nn.Linear(64, 16), BaseQuantizeConfig(**kwargs), compute_dtype=torch.float32, device="cpu")
    assert (q.meta["nbits"], q.meta["group_size"]) == (3, 32)


def test_a_tag_with_two_formats_cannot_be_a_dynamic_config():
    allocation = _allocation()
    allocation["model.layers.2.self_attn.k_proj"] = "int8-g32-asym"
    with pytest.raises(UnsupportedFormatError, match=r"'model.layers.0.self_attn.k_proj' and 'model.layers.2.self_attn.k_proj' \(tag 'self_attn.k_proj'\)"):
        hqq_config.hqq_config(allocation)
    assert hqq_config.per_module(allocation)["model.layers.2.self_attn.k_proj"]["nbits"] == 8


@pytest.mark.parametrize("label, why", [("int4-g64", "zero point"), ("int7-g64-asym", "nbits in"), ("int4-g20-asym", "multiple of 8"),
                                        ("Q4_K", "integers"), ("int4-g64-asym-a8", "weights only")])
def test_refusals_name_layer_and_format(label, why):
    with pytest.raises(UnsupportedFormatError, match=why) as info:
        hqq_config.hqq_config({"blk.1.ffn_up": label})
    assert "blk.1.ffn_up" in str(info.value) and label in str(info.value)
