"""Shared cases of the writer tests: every module name of a small Llama (HF spelling), and a mixed allocation."""

from __future__ import annotations

from mpqopt.io.targets.names import BLOCK

BLOCKS = 12
LINEARS = [k for k in BLOCK if k.endswith("_proj")]


def llama_modules(blocks: int = BLOCKS) -> list[str]:
    """Every module with weights in LlamaForCausalLM (linears, norms, embedding, head)."""
    names = ["model.embed_tokens", "model.norm", "lm_head"]
    return names + [f"model.layers.{b}.{kind}" for b in range(blocks) for kind in BLOCK]


def mixed_allocation(formats: list[str], blocks: int = BLOCKS) -> dict[str, str]:
    """Every linear of every block, cycling through ``formats`` so that neighbouring blocks (1 and 10..11) differ."""
    layers = [f"model.layers.{b}.{kind}" for b in range(blocks) for kind in LINEARS]
    return {layer: formats[(i * 7 + i // 5) % len(formats)] for i, layer in enumerate(layers)}
