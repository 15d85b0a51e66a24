"""torchao ``FqnToConfig``: the serialized form is torchao's own (``config_from_dict`` reads it), and
``torchao.quantize_`` with it quantizes each module of a real model to exactly its format."""

from __future__ import annotations

import pytest

from mpqopt.errors import UnsupportedFormatError
from mpqopt.formats import get_format
from mpqopt.io.targets import torchao_config

ALLOCATION = {"0": "int4-g32-asym", "1": "BF16", "2": "fp8-e4m3", "3": "int3-a8", "4": "int8", "5": "int2-g16"}


def test_serialized_form_follows_torchaos_schema():
    cfg = torchao_config.fqn_to_config(ALLOCATION)
    assert cfg["_type"] == "FqnToConfig"
    table = cfg["_data"]["fqn_to_config"]
    assert list(table) == list(ALLOCATION) and table["1"] is None
    for fqn, label in ALLOCATION.items():
        if table[fqn] is None:
            continue
        fmt = get_format(label.removesuffix("-a8"))
        data = table[fqn]["_data"]
        if fmt.family == "int":
            dtype = data.get("weight_dtype")
            assert dtype == {"_type": "torch.dtype", "_data": f"int{fmt.bits}"}
            gran = data.get("granularity") or data.get("weight_granularity")
            assert gran["_data"] == ({"axis": 0} if fmt.group_size is None else {"group_size": fmt.group_size})
            assert (table[fqn]["_type"] == "Int8DynamicActivationIntxWeightConfig") == label.endswith("-a8")


def test_torchao_builds_and_applies_it():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchao")
    from torchao.quantization import FqnToConfig, quantize_

    config = torchao_config.build(ALLOCATION)
    assert isinstance(config, FqnToConfig)
    model = torch.nn.Sequential(*(torch.nn.Linear(64, 64) for _ in ALLOCATION))
    quantize_(model, config, filter_fn=None)
    for fqn, label in ALLOCATION.items():
        weight = model.get_submodule(fqn).weight
        fmt = get_format(label.removesuffix("-a8"))
        if fmt.family == "float":
            assert type(weight) is torch.nn.Parameter
        elif fmt.family == "int":
            assert weight.target_dtype == getattr(torch, f"int{fmt.bits}")
            assert tuple(weight.block_size) == (1, fmt.group_size or 64)
        else:
            assert type(weight).__name__ == "Float8Tensor"


@pytest.mark.parametrize("label, why", [("Q4_K", "GGUF"), ("mxfp4", "MX activations"), ("int4-a4", "int8 activations only"),
                                        ("W4", "names no storage format"), ("int12", "1 to 8 bits")])
def test_refusals_name_layer_and_format(label, why):
    with pytest.raises(UnsupportedFormatError, match=why) as info:
        torchao_config.fqn_to_config({"blk.3.attn_v": label})
    assert "blk.3.attn_v" in str(info.value) and label in str(info.value)
