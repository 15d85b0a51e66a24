"""compressed-tensors ``QuantizationConfig`` (llm-compressor's ``config_groups`` + ``ignore``) from an allocation.

Schema (compressed-tensors 0.20: ``quantization/quant_config.py`` ``QuantizationConfig``,
``quant_scheme.py`` ``QuantizationScheme`` and its presets, ``quant_args.py`` ``QuantizationArgs``;
target matching ``utils/match.py`` ``match_name``): ``config_groups`` maps a group name to a scheme
with ``targets`` (module names, compared with ``==``, or ``re:`` regexes) and ``weights`` /
``input_activations`` arguments; ``ignore`` lists modules left unquantized. Each distinct format
becomes one group whose targets are the exact module names that take it, so no target can catch a
module it was not meant for. The arguments are those of the library's presets: ``int{b}-g{G}[-asym]``
as ``W{b}A16`` (strategy group), ``int{b}[-asym]`` per channel (strategy channel), ``int8-a8`` as
``INT8_W8A8`` (int activations per token, dynamic; also ``-a4``), ``fp8-e4m3`` (strategy channel;
``-a8``: ``FP8_DYNAMIC``), ``nvfp4`` as ``NVFP4A16`` (``-a4``: ``NVFP4``), ``mxfp4`` as ``MXFP4A16``
(``-a4``: ``MXFP4``). F16/BF16/F32 layers go to ``ignore``; GGUF types and ``fp8-e5m2`` are refused.

>>> cfg = quantization_config({"model.layers.0.mlp.up_proj": "int4-g128", "lm_head": "BF16"})
>>> cfg["config_groups"]["group_0"], cfg["ignore"]
({'targets': ['model.layers.0.mlp.up_proj'], 'weights': {'num_bits': 4, 'type': 'int', 'symmetric': True, 'strategy': 'group', 'group_size': 128}}, ['lm_head'])
"""

from __future__ import annotations

import json
from typing import Any

from ...formats import Format
from ...options import Option
from .allocation import Allocation, is_kept_float, pairs, refuse, weight_format
from .names import module_name

TOOL = "compressed-tensors"


def _weights(layer: str, option: Option, fmt: Format) -> dict[str, Any]:
    if fmt.family == "int":
        if fmt.scale_bits != 16 or fmt.zero_bits not in (0, 16):
            raise refuse(TOOL, layer, option, "only 16-bit scales and zero points are written")
        args: dict[str, Any] = {"num_bits": fmt.bits, "type": "int", "symmetric": fmt.symmetric}
        return {**args, "strategy": "channel"} if fmt.group_size is None else {**args, "strategy": "group", "group_size": fmt.group_size}
    if fmt.name == "fp8-e4m3":
        return {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel"}
    if fmt.family == "nvfp4":
        return {"num_bits": 4, "type": "float", "symmetric": True, "strategy": "tensor_group", "group_size": 16, "scale_dtype": "torch.float8_e4m3fn"}
    if fmt.family == "mxfp4":
        return {"num_bits": 4, "type": "float", "symmetric": True, "strategy": "group", "group_size": 32, "scale_dtype": "torch.uint8", "zp_dtype": "torch.uint8"}
    if fmt.family == "gguf":
        raise refuse(TOOL, layer, option, "compressed-tensors has no GGUF block formats")
    raise refuse(TOOL, layer, option, "compressed-tensors' float8 is E4M3 only" if fmt.family == "fp8" else "no QuantizationArgs describe it")


def _activations(layer: str, option: Option, fmt: Format) -> dict[str, Any] | None:
    act = option.a
    if act is None or act >= 16:
        return None
    if fmt.family == "int" and act in (4, 8):
        return {"num_bits": act, "type": "int", "symmetric": True, "strategy": "token", "dynamic": True}
    if fmt.family == "fp8" and act == 8:
        return {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "token", "dynamic": True}
    if fmt.family == "nvfp4" and act == 4:
        return {"num_bits": 4, "type": "float", "symmetric": True, "strategy": "tensor_group", "group_size": 16, "dynamic": "local",
                "observer": "static_minmax", "scale_dtype": "torch.float8_e4m3fn"}
    if fmt.family == "mxfp4" and act == 4:
        return {"num_bits": 4, "type": "float", "symmetric": True, "strategy": "group", "group_size": 32, "dynamic": True, "scale_dtype": "torch.uint8",
                "zp_dtype": "torch.uint8"}
    raise refuse(TOOL, layer, option, f"no compressed-tensors preset pairs these weights with {act}-bit activations")


def scheme_args(layer: str, option: Option) -> dict[str, Any] | None:
    """``{"weights": ..., "input_activations": ...}`` of one layer (``None``: ignore it)."""
    fmt = weight_format(TOOL, layer, option)
    if is_kept_float(fmt):
        if option.a is not None and option.a < 16:
            raise refuse(TOOL, layer, option, "float weights with quantized activations are not written")
        return None
    out = {"weights": _weights(layer, option, fmt)}
    act = _activations(layer, option, fmt)
    return out if act is None else {**out, "input_activations": act}


def quantization_config(allocation: Allocation) -> dict[str, Any]:
    """``{"config_groups": {...}, "ignore": [...], "quant_method": "compressed-tensors"}``: one group per
    distinct scheme, in order of first use, targets as exact module names."""
    groups: list[tuple[dict[str, Any], list[str]]] = []
    ignore: list[str] = []
    for layer, option in pairs(allocation):
        args, name = scheme_args(layer, option), module_name(layer)
        if args is None:
            ignore.append(name)
            continue
        for known, targets in groups:
            if known == args:
                targets.append(name)
                break
        else:
            groups.append((args, [name]))
    config_groups = {f"group_{i}": {"targets": targets, **args} for i, (args, targets) in enumerate(groups)}
    return {"config_groups": config_groups, "ignore": ignore, "quant_method": "compressed-tensors"}


def build(allocation: Allocation) -> Any:
    """The ``compressed_tensors.QuantizationConfig`` (validated by the library; needs compressed-tensors)."""
    from compressed_tensors.quantization import QuantizationConfig

    return QuantizationConfig.model_validate(quantization_config(allocation))


def render(allocation: Allocation) -> str:
    """The quantization config as JSON text (a model's ``quantization_config``)."""
    return json.dumps(quantization_config(allocation), indent=2) + "\n"
