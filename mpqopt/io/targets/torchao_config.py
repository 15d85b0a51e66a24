"""torchao's ``FqnToConfig`` (alias ``ModuleFqnToConfig``) from an allocation, in torchao's own JSON form.

Schema (torchao 0.18: ``torchao/quantization/quant_api.py`` ``FqnToConfig``, ``IntxWeightOnlyConfig``,
``Int8DynamicActivationIntxWeightConfig``, ``Float8WeightOnlyConfig``,
``Float8DynamicActivationFloat8WeightConfig``; ``torchao/prototype/mx_formats/inference_workflow.py``
``NVFP4WeightOnlyConfig``; serialization ``torchao/core/config.py`` ``config_to_dict`` /
``config_from_dict``): ``fqn_to_config`` maps a module's fully qualified name to a config, or to
``None`` to leave it unquantized. Each config is written as ``{"_type": class, "_version": n,
"_data": {field: value}}`` with dtypes as ``{"_type": "torch.dtype", "_data": "int4"}`` and enums as
``{"_type": "MappingType", "_data": "SYMMETRIC"}``: what ``transformers.TorchAoConfig`` stores in a
model's ``config.json`` and what :func:`build` (torchao's ``config_from_dict``) turns into objects.

Formats: ``int{1..8}[-g{G}][-asym]`` (fp16 scales) weight-only or with int8 activations, ``fp8-e4m3`` /
``fp8-e5m2`` per row weight-only or with fp8 activations, ``nvfp4`` weight-only, and F16/BF16/F32
(left unquantized, ``None``). GGUF types, ``mxfp4`` weight-only (torchao 0.18 has MX weights only with
MX activations) and other activation widths are refused. Fields not written take torchao's defaults.

>>> cfg = fqn_to_config({"blk.0.attn_q": "int4-g32-asym", "lm_head": "BF16"})
>>> q = cfg["_data"]["fqn_to_config"]["model.layers.0.self_attn.q_proj"]
>>> q["_type"], q["_data"]["granularity"], cfg["_data"]["fqn_to_config"]["lm_head"]
('IntxWeightOnlyConfig', {'_type': 'PerGroup', '_version': 1, '_data': {'group_size': 32}}, None)
"""

from __future__ import annotations

import json
from typing import Any

from ...formats import Format
from ...options import Option
from .allocation import Allocation, is_kept_float, pairs, refuse, weight_format
from .names import module_name

TOOL = "torchao"
_FP8_DTYPE = {"fp8-e4m3": "float8_e4m3fn", "fp8-e5m2": "float8_e5m2"}


def _dtype(name: str) -> dict[str, str]:
    return {"_type": "torch.dtype", "_data": name}


def _enum(cls: str, member: str) -> dict[str, str]:
    return {"_type": cls, "_data": member}


def _obj(cls: str, version: int, **data: Any) -> dict[str, Any]:
    return {"_type": cls, "_version": version, "_data": data}


def layer_config(layer: str, option: Option) -> dict[str, Any] | None:
    """The serialized torchao config of one layer (``None``: keep it unquantized)."""
    fmt: Format = weight_format(TOOL, layer, option)
    act = None if option.a is None or option.a >= 16 else option.a
    if is_kept_float(fmt):
        if act is not None:
            raise refuse(TOOL, layer, option, "a float weight with quantized activations has no torchao config")
        return None
    if fmt.family == "int":
        if fmt.bits > 8:
            raise refuse(TOOL, layer, option, "torchao's integer weight configs take 1 to 8 bits")
        if fmt.scale_bits != 16 or fmt.zero_bits not in (0, 16):
            raise refuse(TOOL, layer, option, "only fp16 scales and zero points are written (scale_dtype float16)")
        granularity = _obj("PerAxis", 1, axis=0) if fmt.group_size is None else _obj("PerGroup", 1, group_size=fmt.group_size)
        mapping = _enum("MappingType", "SYMMETRIC" if fmt.symmetric else "ASYMMETRIC")
        if act is None:
            return _obj("IntxWeightOnlyConfig", 2, weight_dtype=_dtype(f"int{fmt.bits}"), granularity=granularity,
                        mapping_type=mapping, scale_dtype=_dtype("float16"))
        if act != 8:
            raise refuse(TOOL, layer, option, f"integer weights go with int8 activations only, not {act}-bit ones")
        return _obj("Int8DynamicActivationIntxWeightConfig", 2, weight_dtype=_dtype(f"int{fmt.bits}"), weight_granularity=granularity,
                    weight_mapping_type=mapping, weight_scale_dtype=_dtype("float16"))
    if fmt.family == "fp8" and fmt.name in _FP8_DTYPE:
        row = _obj("PerRow", 1, dim=-1)
        if act is None:
            return _obj("Float8WeightOnlyConfig", 2, weight_dtype=_dtype(_FP8_DTYPE[fmt.name]), granularity=row)
        if act != 8:
            raise refuse(TOOL, layer, option, f"fp8 weights go with fp8 activations only, not {act}-bit ones")
        return _obj("Float8DynamicActivationFloat8WeightConfig", 2, activation_dtype=_dtype("float8_e4m3fn"),
                    weight_dtype=_dtype(_FP8_DTYPE[fmt.name]), granularity=[row, row])
    if fmt.family == "nvfp4" and act is None:
        return _obj("NVFP4WeightOnlyConfig", 1)
    if fmt.family == "mxfp4" and act is None:
        raise refuse(TOOL, layer, option, "torchao 0.18 has MX weights only together with MX activations (MXDynamicActivationMXWeightConfig)")
    if fmt.family == "gguf":
        raise refuse(TOOL, layer, option, "torchao has no GGUF block formats (write a GGUF file or llama.cpp --tensor-type lines)")
    raise refuse(TOOL, layer, option, "no torchao config stores it")


def fqn_to_config(allocation: Allocation) -> dict[str, Any]:
    """The serialized ``FqnToConfig``: one entry per layer, keyed by HF module name."""
    table: dict[str, Any] = {}
    for layer, option in pairs(allocation):
        table[module_name(layer)] = layer_config(layer, option)
    return _obj("FqnToConfig", 1, fqn_to_config=table)


def build(allocation: Allocation) -> Any:
    """The ``torchao.quantization.FqnToConfig`` object (torchao's own ``config_from_dict``; needs torchao),
    for ``torchao.quantize_(model, config, filter_fn=None)`` or ``transformers.TorchAoConfig(config)``."""
    from torchao.core.config import config_from_dict

    return config_from_dict(fqn_to_config(allocation))


def render(allocation: Allocation) -> str:
    """The serialized ``FqnToConfig`` as JSON text."""
    return json.dumps(fqn_to_config(allocation), indent=2) + "\n"
