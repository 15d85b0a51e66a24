"""GPTQModel ``QuantizeConfig`` with ``dynamic`` per-module overrides, from an allocation.

Schema (GPTQModel 7.7 ``gptqmodel/quantization/config.py``: ``QuantizeConfig.bits`` in 2..8,
``group_size`` (-1: per channel), ``sym``, ``desc_act``, ``lm_head``, and ``dynamic``; matching in
``_resolve_dynamic_override``; vLLM's reader ``get_dynamic_override`` in
``vllm/model_executor/layers/quantization/utils/gptq_utils.py``): ``dynamic`` maps a regex to field
overrides, ``+:`` (or no prefix) for a positive match, ``-:`` to leave a module unquantized; the
first pattern that ``re.match``-es a module name wins. The base config takes the most frequent
format; every other layer gets one override, ``+:^name$`` with the name escaped, so it matches that
module only. Formats: ``int{b}[-g{G}][-asym]`` for b in 2..8 (fp16 scales: GPTQ's layout); F16/BF16/
F32 layers get ``-:`` entries. Activation bits and non-integer formats are refused.

>>> cfg = quantize_config({"model.layers.0.mlp.up_proj": "int4-g128", "model.layers.1.mlp.up_proj": "int4-g128",
...                        "model.layers.1.mlp.down_proj": "int8-g32", "lm_head": "BF16"})
>>> cfg["bits"], cfg["group_size"], cfg["dynamic"]
(4, 128, {'+:^model\\\\.layers\\\\.1\\\\.mlp\\\\.down_proj$': {'bits': 8, 'group_size': 32, 'sym': True}, '-:^lm_head$': {}})
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from .allocation import Allocation, is_kept_float, pairs, refuse, weight_only
from .names import module_name

TOOL = "GPTQModel"


def _fields(layer: str, option) -> dict[str, Any] | None:
    fmt = weight_only(TOOL, layer, option)
    if is_kept_float(fmt):
        return None
    if fmt.family != "int":
        raise refuse(TOOL, layer, option, "GPTQ stores integer weights only")
    if not 2 <= fmt.bits <= 8:
        raise refuse(TOOL, layer, option, "GPTQModel takes 2 to 8 bits")
    if fmt.scale_bits != 16 or fmt.zero_bits not in (0, 16):
        raise refuse(TOOL, layer, option, "GPTQ keeps 16-bit scales")
    return {"bits": fmt.bits, "group_size": -1 if fmt.group_size is None else fmt.group_size, "sym": fmt.symmetric}


def module_pattern(name: str) -> str:
    """The regex that ``re.match``-es exactly the module ``name``.

    >>> module_pattern("model.layers.1.mlp.up_proj")
    '^model\\\\.layers\\\\.1\\\\.mlp\\\\.up_proj$'
    """
    return "^" + re.escape(name) + "$"


def quantize_config(allocation: Allocation, *, desc_act: bool = False) -> dict[str, Any]:
    """The ``quantize_config.json`` content: base ``bits``/``group_size``/``sym`` and ``dynamic``."""
    rows = [(module_name(layer), _fields(layer, option)) for layer, option in pairs(allocation)]
    quantized = [json.dumps(f, sort_keys=True) for _, f in rows if f is not None]
    if not quantized:
        raise refuse(TOOL, rows[0][0], next(o for _, o in pairs(allocation)), "no layer is quantized; there is nothing for GPTQ to do")
    base = json.loads(Counter(quantized).most_common(1)[0][0])
    dynamic: dict[str, dict[str, Any]] = {}
    for name, fields in rows:
        if fields is None:
            dynamic[f"-:{module_pattern(name)}"] = {}
        elif fields != base:
            dynamic[f"+:{module_pattern(name)}"] = fields
    lm_head = any(name == "lm_head" and fields is not None for name, fields in rows)
    return {**base, "desc_act": desc_act, "lm_head": lm_head, "quant_method": "gptq", "checkpoint_format": "gptq", "dynamic": dynamic}


def render(allocation: Allocation) -> str:
    """``quantize_config.json`` text."""
    return json.dumps(quantize_config(allocation), indent=2) + "\n"
