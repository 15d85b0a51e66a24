"""Layer names of Llama-architecture models in both spellings: Hugging Face module names
(``model.layers.3.self_attn.q_proj``) and GGUF tensor names (``blk.3.attn_q.weight``).

The table is llama.cpp's tensor map for the ``llama`` architecture (``gguf-py/gguf/tensor_mapping.py``,
``MODEL_TENSOR`` entries ``TOKEN_EMBD``, ``OUTPUT``, ``OUTPUT_NORM``, ``ATTN_*``, ``FFN_*``), which
``convert_hf_to_gguf.py`` applies to every Llama checkpoint. Either spelling goes in, with or without
the parameter suffix ``.weight``; a name that looks like neither is a ``ProblemError`` naming it.

>>> gguf_tensor_name("model.layers.3.self_attn.q_proj")
'blk.3.attn_q.weight'
>>> hf_module_name("blk.10.ffn_down.weight"), hf_module_name("output")
('model.layers.10.mlp.down_proj', 'lm_head')
>>> gguf_tensor_name("model.layers.3.self_attn.rotary")
Traceback (most recent call last):
...
mpqopt.errors.ProblemError: tensor 'model.layers.3.self_attn.rotary' maps to no GGUF tensor of a Llama model: known per-block modules are self_attn.q_proj, self_attn.k_proj, self_attn.v_proj, self_attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj, input_layernorm, post_attention_layernorm (model.layers.N.<module>), and model.embed_tokens, lm_head, model.norm
"""

from __future__ import annotations

import re

from ...errors import ProblemError

# per-block modules: HF suffix after "model.layers.N." -> GGUF kind after "blk.N."
BLOCK = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}
# whole-model modules: HF module name (without the "model." of a causal LM) -> GGUF tensor base name
GLOBAL = {"embed_tokens": "token_embd", "lm_head": "output", "norm": "output_norm"}
_BLOCK_BACK = {v: k for k, v in BLOCK.items()}
_GLOBAL_BACK = {v: k for k, v in GLOBAL.items()}
_HF_BLOCK = re.compile(r"^(?:model\.)?layers\.(\d+)\.(.+)$")
_GGUF_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")


def _strip_weight(name: str) -> str:
    return name[: -len(".weight")] if name.endswith(".weight") else name


def _unknown(name: str) -> ProblemError:
    hf = ", ".join(BLOCK)
    return ProblemError(f"tensor {name!r} maps to no GGUF tensor of a Llama model: known per-block modules are {hf} "
                        f"(model.layers.N.<module>), and model.embed_tokens, lm_head, model.norm")


def is_gguf_name(name: str) -> bool:
    """True when ``name`` is spelled the GGUF way (``blk.N.*`` or a whole-model GGUF tensor).

    >>> is_gguf_name("blk.0.attn_v"), is_gguf_name("token_embd.weight"), is_gguf_name("model.norm")
    (True, True, False)
    """
    base = _strip_weight(name)
    return bool(_GGUF_BLOCK.match(base)) or base in _GLOBAL_BACK


def gguf_tensor_name(name: str, *, suffix: bool = True) -> str:
    """The GGUF tensor name of a layer given either way (``suffix=False``: without ``.weight``)."""
    if not isinstance(name, str):
        raise ProblemError(f"a tensor name must be a string, got {name!r}")
    base = _strip_weight(name)
    end = ".weight" if suffix else ""
    match = _GGUF_BLOCK.match(base)
    if match:
        if match.group(2) not in _BLOCK_BACK:
            raise ProblemError(f"GGUF tensor {name!r} is of no kind a Llama block has ({', '.join(_BLOCK_BACK)})")
        return base + end
    if base in _GLOBAL_BACK:
        return base + end
    match = _HF_BLOCK.match(base)
    if match:
        kind = BLOCK.get(match.group(2))
        if kind is None:
            raise _unknown(name)
        return f"blk.{match.group(1)}.{kind}{end}"
    short = base.removeprefix("model.")
    if short in GLOBAL and (short == "lm_head") == (base == "lm_head"):  # lm_head sits outside "model."
        return GLOBAL[short] + end
    raise _unknown(name)


def hf_module_name(name: str, *, prefix: str = "model.") -> str:
    """The Hugging Face module name of a layer given either way. A GGUF name becomes the module of
    ``LlamaForCausalLM`` (``prefix`` "model."; pass "" for a bare ``LlamaModel``); an HF name is kept
    as given, less ``.weight``."""
    if not isinstance(name, str):
        raise ProblemError(f"a tensor name must be a string, got {name!r}")
    base = _strip_weight(name)
    if not is_gguf_name(base):
        gguf_tensor_name(base)  # an unknown HF name is an error here too
        return base
    match = _GGUF_BLOCK.match(base)
    if match:
        if match.group(2) not in _BLOCK_BACK:
            raise ProblemError(f"GGUF tensor {name!r} is of no kind a Llama block has ({', '.join(_BLOCK_BACK)})")
        return f"{prefix}layers.{match.group(1)}.{_BLOCK_BACK[match.group(2)]}"
    module = _GLOBAL_BACK[base]
    return module if module == "lm_head" else prefix + module


def module_name(name: str) -> str:
    """What an HF-side tool (torchao, HQQ, compressed-tensors, ...) calls a layer: GGUF names are
    translated (:func:`hf_module_name`), any other name is taken to be the model's own module name
    and kept, so these writers serve non-Llama models too.

    >>> module_name("blk.2.attn_output"), module_name("encoder.layer.0.attention.self.query")
    ('model.layers.2.self_attn.o_proj', 'encoder.layer.0.attention.self.query')
    """
    return hf_module_name(name) if is_gguf_name(name) else _strip_weight(name)


def llama_tensor_names(blocks: int, *, tied: bool = False) -> list[str]:
    """Every tensor name of a ``blocks``-block Llama GGUF file (``tied``: no ``output.weight``, as in
    models whose output layer shares the token embedding, SmolLM2's for one).

    >>> names = llama_tensor_names(30)
    >>> len(names), names[:2], names[-2:]
    (273, ['token_embd.weight', 'blk.0.attn_norm.weight'], ['output_norm.weight', 'output.weight'])
    """
    names = ["token_embd.weight"]
    for b in range(blocks):
        names += [f"blk.{b}.{kind}.weight" for kind in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                                          "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")]
    return names + ["output_norm.weight"] + ([] if tied else ["output.weight"])
