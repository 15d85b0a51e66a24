"""HQQ configs from an allocation: ``transformers.HqqConfig(dynamic_config=..., skip_modules=...)``
keyword arguments, and per-module ``BaseQuantizeConfig`` arguments for ``HQQLinear``.

Schema (hqq 0.2.8 ``hqq/core/quantize.py`` ``BaseQuantizeConfig(nbits, group_size, axis, ...)``, with
``Quantizer.SUPPORTED_BITS`` = 8, 6, 5, 4, 3, 2, 1.58, 1 and group sizes multiples of 8 or None; the
quantizer always stores a scale and a zero point per group, from the group's min and max;
transformers 5.x ``HqqConfig`` and ``integrations/hqq.py``): ``dynamic_config`` is keyed by **linear
tag**, the module name with ``model``, ``layers`` and the block numbers removed
(``model.layers.31.self_attn.k_proj`` -> ``self_attn.k_proj``); hqq's own ``AutoHQQHFModel`` keys
its ``quant_config`` the same way. One config per tag therefore applies to that projection in every
block: an allocation giving ``self_attn.k_proj`` different formats in different blocks cannot be
written as ``dynamic_config`` (the error names two such layers; tie them in the problem, or use
:func:`per_module` with ``hqq.core.quantize.HQQLinear(layer, quant_config=BaseQuantizeConfig(**kw))``).

Formats: ``int{b}-g{G}-asym`` and ``int{b}-asym`` (per output channel) for b in 1, 2, 3, 4, 5, 6, 8,
G a multiple of 8; F16/BF16/F32 layers are left out (not quantized). Symmetric integer formats (HQQ
always stores a zero point), activation bits and non-integer formats are refused.

>>> hqq_config({"model.layers.0.mlp.down_proj": "int4-g64-asym", "model.layers.1.mlp.down_proj": "int4-g64-asym"})
{'dynamic_config': {'mlp.down_proj': {'nbits': 4, 'group_size': 64, 'axis': 1}}, 'skip_modules': ['lm_head']}
"""

from __future__ import annotations

import json
from typing import Any

from ...errors import UnsupportedFormatError
from .allocation import Allocation, is_kept_float, pairs, refuse, weight_only
from .names import module_name

TOOL = "HQQ"
BITS = (1, 2, 3, 4, 5, 6, 8)


def linear_tag(module: str) -> str:
    """HQQ's (and transformers') ``name_to_linear_tag``: drop ``model``, ``layers`` and numbers.

    >>> linear_tag("model.layers.31.self_attn.k_proj")
    'self_attn.k_proj'
    """
    return ".".join(n for n in module.split(".") if n not in ("model", "layers") and not n.isnumeric())


def _kwargs(layer: str, option) -> dict[str, Any] | None:
    fmt = weight_only(TOOL, layer, option)
    if is_kept_float(fmt):
        return None
    if fmt.family != "int":
        raise refuse(TOOL, layer, option, "HQQ quantizes to integers with a scale and zero point per group only")
    if fmt.symmetric:
        asym = fmt.name + ("-asym" if not fmt.name.endswith("-asym") else "")
        raise refuse(TOOL, layer, option, f"HQQ always stores a zero point per group (use '{asym}')")
    if fmt.bits not in BITS:
        raise refuse(TOOL, layer, option, f"HQQ takes nbits in {', '.join(map(str, BITS))}")
    if fmt.group_size is not None and fmt.group_size % 8:
        raise refuse(TOOL, layer, option, "HQQ's group size must be a multiple of 8")
    if fmt.scale_bits != 16 or fmt.zero_bits != 16:
        raise refuse(TOOL, layer, option, "HQQ keeps scales and zero points in the 16-bit compute dtype")
    return {"nbits": fmt.bits, "group_size": fmt.group_size, "axis": 1}


def per_module(allocation: Allocation) -> dict[str, dict[str, Any] | None]:
    """``{module name: BaseQuantizeConfig kwargs}`` (``None``: leave the module in floating point)."""
    return {module_name(layer): _kwargs(layer, option) for layer, option in pairs(allocation)}


def hqq_config(allocation: Allocation) -> dict[str, Any]:
    """Keyword arguments of ``transformers.HqqConfig``: ``dynamic_config`` by linear tag, and
    ``skip_modules`` for tags kept in floating point (``lm_head`` unless the allocation quantizes it)."""
    by_tag: dict[str, tuple[str, Any]] = {}
    for layer, option in pairs(allocation):
        kwargs = _kwargs(layer, option)
        tag = linear_tag(module_name(layer))
        if tag in by_tag and by_tag[tag][1] != kwargs:
            other = by_tag[tag][0]
            raise UnsupportedFormatError(
                f"{TOOL}: dynamic_config has one config per linear tag, and layers '{other}' and '{layer}' (tag '{tag}') have "
                f"different formats; tie the layers of a tag in the problem, or use per_module() with HQQLinear")
        by_tag.setdefault(tag, (layer, kwargs))
    dynamic = {tag: kw for tag, (_, kw) in by_tag.items() if kw is not None}
    skip = sorted({tag for tag, (_, kw) in by_tag.items() if kw is None} | ({"lm_head"} - set(dynamic)))
    return {"dynamic_config": dynamic, "skip_modules": skip}


def build(allocation: Allocation) -> Any:
    """The ``transformers.HqqConfig`` (it builds hqq's ``BaseQuantizeConfig`` per tag; needs hqq)."""
    from transformers import HqqConfig

    return HqqConfig(**hqq_config(allocation))


def render(allocation: Allocation) -> str:
    """``HqqConfig`` keyword arguments as JSON text."""
    return json.dumps(hqq_config(allocation), indent=2) + "\n"
