"""NVIDIA ModelOpt quantization config (``quant_cfg`` entries) from an allocation.

Schema (nvidia-modelopt 0.47: ``modelopt/torch/quantization/config.py`` ``QuantizeConfig``,
``QuantizerCfgEntry``, ``QuantizerAttributeConfig``; the presets under ``modelopt_recipes/configs``):
``quant_cfg`` is an ordered list of entries ``{"quantizer_name": WILDCARD, "cfg": {...}}`` or
``{"quantizer_name": WILDCARD, "enable": false}``, applied in order, later entries winning; wildcards
are matched (``fnmatch``) against quantizer module names such as
``model.layers.3.self_attn.q_proj.weight_quantizer``. The config written here starts with the
deny-all entry of the presets (``{"quantizer_name": "*", "enable": false}``) and then enables each
layer's ``weight_quantizer`` (and ``input_quantizer`` with activation bits) by its exact name, so no
other module is touched. Attributes follow the presets' numerics: ``int{b}`` per channel
(``num_bits: b, axis: 0``), ``int{b}-g{G}`` (``block_sizes: {-1: G, type: static}``), ``fp8-e4m3``
(``num_bits: (4, 3)``, E4M3, per channel), ``mxfp4`` (``(2, 1)``, E2M1, in dynamic blocks of 32 with
E8M0 ``(8, 0)`` scales), ``nvfp4`` (E2M1 in dynamic blocks of 16 with E4M3 scales); int8 activations
per tensor (``num_bits: 8, axis: null``), fp8 ones E4M3. ModelOpt's integer quantizers are symmetric
(amax-scaled), so asymmetric formats are refused, as are GGUF types and ``fp8-e5m2`` per channel
(ModelOpt takes E5M2 only in dynamic blocks). F16/BF16/F32 layers stay disabled.

>>> cfg = quant_config({"model.layers.0.mlp.up_proj": "int4-g128"})
>>> cfg["quant_cfg"][1]
{'quantizer_name': 'model.layers.0.mlp.up_proj.weight_quantizer', 'cfg': {'num_bits': 4, 'block_sizes': {-1: 128, 'type': 'static'}}}
"""

from __future__ import annotations

import json
from typing import Any

from ...formats import Format
from ...options import Option
from .allocation import Allocation, is_kept_float, pairs, refuse, weight_format
from .names import module_name

TOOL = "ModelOpt"
_WILDCARD = set("*?[]")
# float formats as (exponent, mantissa) bits: the form QuantizerAttributeConfig takes (its recipe
# loader reads "e4m3" strings and turns them into these; the pydantic model reads a string as a custom backend's)
E4M3, E2M1 = (4, 3), (2, 1)


def _weights(layer: str, option: Option, fmt: Format) -> dict[str, Any]:
    if fmt.family == "int":
        if not fmt.symmetric:
            raise refuse(TOOL, layer, option, "ModelOpt's integer quantizers are symmetric (no zero point)")
        if fmt.group_size is None:
            return {"num_bits": fmt.bits, "axis": 0}
        return {"num_bits": fmt.bits, "block_sizes": {-1: fmt.group_size, "type": "static"}}
    if fmt.name == "fp8-e4m3":
        return {"num_bits": E4M3, "axis": 0}
    if fmt.family == "mxfp4":
        return {"num_bits": E2M1, "block_sizes": {-1: 32, "type": "dynamic", "scale_bits": (8, 0)}}
    if fmt.family == "nvfp4":
        return {"num_bits": E2M1, "block_sizes": {-1: 16, "type": "dynamic", "scale_bits": E4M3}}
    if fmt.family == "gguf":
        raise refuse(TOOL, layer, option, "ModelOpt has no GGUF block formats")
    raise refuse(TOOL, layer, option, "ModelOpt takes E5M2 only in dynamic blocks, not per channel" if fmt.family == "fp8"
                 else "no ModelOpt quantizer attributes describe it")


def _activations(layer: str, option: Option, fmt: Format) -> dict[str, Any] | None:
    act = option.a
    if act is None or act >= 16:
        return None
    if fmt.family == "int" and act == 8:
        return {"num_bits": 8, "axis": None}
    if fmt.family == "fp8" and act == 8:
        return {"num_bits": E4M3, "axis": None}
    if fmt.family in ("mxfp4", "nvfp4") and act == 4:
        return _weights(layer, option, fmt)
    raise refuse(TOOL, layer, option, f"no ModelOpt preset pairs these weights with {act}-bit activations")


def quant_config(allocation: Allocation, *, algorithm: str | dict[str, Any] = "max") -> dict[str, Any]:
    """``{"quant_cfg": [...], "algorithm": algorithm}`` for ``modelopt.torch.quantization.quantize``."""
    entries: list[dict[str, Any]] = [{"quantizer_name": "*", "enable": False}]
    for layer, option in pairs(allocation):
        fmt = weight_format(TOOL, layer, option)
        name = module_name(layer)
        if _WILDCARD & set(name):
            raise refuse(TOOL, layer, option, "the module name holds a wildcard character ('*', '?', '[' or ']')")
        if is_kept_float(fmt):
            if option.a is not None and option.a < 16:
                raise refuse(TOOL, layer, option, "float weights with quantized activations are not written")
            continue
        entries.append({"quantizer_name": f"{name}.weight_quantizer", "cfg": _weights(layer, option, fmt)})
        act = _activations(layer, option, fmt)
        if act is not None:
            entries.append({"quantizer_name": f"{name}.input_quantizer", "cfg": act})
    return {"quant_cfg": entries, "algorithm": algorithm}


def build(allocation: Allocation) -> Any:
    """The validated ``modelopt.torch.quantization.config.QuantizeConfig`` (needs nvidia-modelopt)."""
    from modelopt.torch.quantization.config import QuantizeConfig

    return QuantizeConfig.model_validate(quant_config(allocation))


def _yaml(value: Any) -> str:
    """A flow-style YAML value: JSON for strings, numbers, booleans and null, with mapping keys that are
    integers left bare, so ``-1`` reads back as the int axis ModelOpt's ``block_sizes`` needs."""
    if isinstance(value, tuple):
        return json.dumps(list(value))
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k if isinstance(k, int) else json.dumps(k)}: {_yaml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def render(allocation: Allocation) -> str:
    """The config as a YAML recipe (ModelOpt's own recipe format): JSON would turn the block axis
    ``-1`` into the string ``"-1"``, which ModelOpt refuses."""
    cfg = quant_config(allocation)
    lines = [f"algorithm: {_yaml(cfg['algorithm'])}", "quant_cfg:"]
    return "\n".join(lines + [f"  - {_yaml(entry)}" for entry in cfg["quant_cfg"]]) + "\n"
