"""Causal language models (Llama-style transformers models): their quantizable tensors as decisions,
and the allocation problem over them.

:func:`discover_llm_layers` finds every ``nn.Linear`` of every decoder block (the blocks are the
``nn.ModuleList`` holding the most Linear layers, ``model.layers`` in a Llama), the output head and
the token embedding. A head tied to the embedding (one weight tensor, stored once: a GGUF file holds
just ``token_embd.weight``) is **one decision**, named after the embedding: quantizing the shared
weight changes both uses, and two decisions would count its storage twice. ``shared=`` ties the
projections that a kernel often fuses, so they take one format: ``"qkv"`` (``q_proj``, ``k_proj``,
``v_proj`` of each block) and ``"gate_up"`` (``gate_proj``, ``up_proj``), as tie groups of the problem.

:func:`llm_problem` builds the :class:`~mpqopt.Problem` from a sensitivity table: it carries each
decision's weight count (``params``) and row length (``row_lengths``: ``in_features`` of a Linear,
``embedding_dim`` of the embedding), so ``"4.5bpw"`` budgets work and formats whose blocks do not
divide a row (a K-quant on a 576-wide row) leave that layer's allowed options by themselves.

>>> m = nn.Module()
>>> m.embed = nn.Embedding(16, 8)
>>> m.layers = nn.ModuleList([nn.ModuleDict({"q_proj": nn.Linear(8, 8), "k_proj": nn.Linear(8, 8)})])
>>> m.lm_head = nn.Linear(8, 16, bias=False)
>>> m.lm_head.weight = m.embed.weight   # tied
>>> found = discover_llm_layers(m, shared="qkv")
>>> found.names, found.tied, found.ties
(('embed', 'layers.0.q_proj', 'layers.0.k_proj'), {'lm_head': 'embed'}, (('layers.0.q_proj', 'layers.0.k_proj'),))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from torch import nn

from ...errors import ProblemError
from ...options import OptionLike
from ...problem import Problem
from ..build import assemble_problem
from ..patterns import matches as _matches, patterns as _patterns
from ..sensitivity import Sensitivity
from ..tables import LayerCost
from ..ties import Ties, merge_groups
from .layers import LayerInfo

__all__ = ["LlmLayers", "SHARED", "discover_llm_layers", "llm_problem", "find_blocks"]

# projections a kernel fuses, by the module names transformers' Llama/Mistral/Qwen families use
SHARED: dict[str, tuple[str, ...]] = {"qkv": ("q_proj", "k_proj", "v_proj"), "gate_up": ("gate_proj", "up_proj")}


@dataclass(frozen=True)
class LlmLayers:
    """A causal LM's decisions: ``layers`` (module order, the embedding first), the decoder block of
    each (None for the embedding and the head), the blocks' ``nn.ModuleList`` path, ``tied``
    ``{head module: embedding decision}`` when the head shares the embedding's weight, and the
    ``ties`` that ``shared=`` asked for."""

    layers: tuple[LayerInfo, ...]
    block_of: dict[str, int | None]
    block_path: str
    num_blocks: int
    tied: dict[str, str] = field(default_factory=dict)
    ties: tuple[tuple[str, ...], ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    def row_length(self, name: str) -> int:
        """Weights per output row of decision ``name`` (the axis GGUF blocks and int groups run along)."""
        shape = next(layer.weight_shape for layer in self.layers if layer.name == name)
        return int(shape[1])


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The decoder blocks: the ``nn.ModuleList`` whose children hold the most ``nn.Linear`` layers.

    >>> find_blocks(nn.Sequential(nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])))[0]
    '0'
    """
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0:
            count = sum(isinstance(m, nn.Linear) for m in mod.modules())
            if count and (best is None or count > best[0]):
                best = (count, name, mod)
    if best is None:
        raise ProblemError(f"{type(model).__name__} has no nn.ModuleList of blocks holding nn.Linear layers: not a transformer mpqopt can split into blocks")
    return best[1], best[2]


def _embedding_and_head(model: nn.Module, in_blocks: Mapping[str, int]) -> tuple[Any, Any]:
    """transformers' ``get_input_embeddings``/``get_output_embeddings``; else the model's only
    ``nn.Embedding`` and the last Linear outside the blocks with one output per token id."""
    get_in, get_out = getattr(model, "get_input_embeddings", None), getattr(model, "get_output_embeddings", None)
    if callable(get_in) and callable(get_out):
        return get_in(), get_out()
    embeds = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    embed = embeds[0] if len(embeds) == 1 else None
    heads = [m for n, m in model.named_modules() if isinstance(m, nn.Linear) and n not in in_blocks
             and embed is not None and m.out_features == embed.num_embeddings]
    return embed, (heads[-1] if heads else None)


def _info(name: str, mod: nn.Module, kind: str) -> LayerInfo:
    n = int(mod.weight.numel())
    bias = getattr(mod, "bias", None)
    return LayerInfo(name, kind, tuple(mod.weight.shape), 1, n + (int(bias.numel()) if bias is not None else 0), n)


def _shared_groups(names: Sequence[str], shared: str | Iterable[str]) -> list[tuple[str, ...]]:
    kinds = [shared] if isinstance(shared, str) else list(shared)
    unknown = [k for k in kinds if k not in SHARED]
    if unknown:
        raise ProblemError(f"shared={unknown[0]!r} is not a known group of fused projections; use {', '.join(SHARED)}")
    groups = []
    for kind in kinds:
        parents: dict[str, list[str]] = {}
        for name in names:
            parent, _, leaf = name.rpartition(".")
            if leaf in SHARED[kind]:
                parents.setdefault(parent, []).append(name)
        found = [tuple(g) for g in parents.values() if len(g) > 1]
        if not found:
            raise ProblemError(f"shared={kind!r}: no block has two or more of {', '.join(SHARED[kind])} among the selected layers")
        groups += found
    return groups


def discover_llm_layers(
    model: nn.Module,
    *,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    embeddings: bool = True,
    lm_head: bool = True,
    shared: str | Iterable[str] = (),
) -> LlmLayers:
    """The decisions of a causal LM (module docstring). ``include``/``exclude`` patterns (globs or
    ``re:``) select among them; ``embeddings=False`` / ``lm_head=False`` leave the token embedding /
    the output head out (a tied head goes with the embedding)."""
    if not isinstance(model, nn.Module):
        raise ProblemError(f"expected a torch.nn.Module, got {type(model).__name__}")
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ProblemError(f"{type(model).__name__} has no nn.Linear layer: mpqopt's LLM discovery quantizes the Linear layers of decoder blocks")
    path, blocks = find_blocks(model)
    block_index = {}
    for i, block in enumerate(blocks):
        for sub, mod in block.named_modules():
            if isinstance(mod, nn.Linear):
                block_index[".".join(part for part in (path, str(i), sub) if part)] = i
    embed, head = _embedding_and_head(model, block_index)
    by_module = {id(m): n for n, m in model.named_modules()}
    embed_name = by_module.get(id(embed)) if isinstance(embed, nn.Embedding) else None
    head_name = by_module.get(id(head)) if isinstance(head, nn.Linear) else None
    tied = {}
    if embed_name is not None and head_name is not None and head.weight is embed.weight:
        tied[head_name] = embed_name

    found: list[LayerInfo] = []
    if embeddings and embed_name is not None:
        found.append(_info(embed_name, embed, "embedding"))
    for name, mod in linears:
        if name in tied or (name == head_name and not lm_head):
            continue
        if name in block_index or name == head_name:
            found.append(_info(name, mod, "linear"))
    inc, exc = _patterns(include, "include"), _patterns(exclude, "exclude")
    for p in inc:
        if not any(_matches(layer.name, (p,)) for layer in found):
            gguf = " (patterns match the model's module names, not GGUF tensor names such as blk.0.attn_q)" if str(p).removeprefix("re:").lstrip("^").startswith(("blk", "token_embd", "output")) else ""
            raise ProblemError(f"include pattern {p!r} matches no layer of the LLM{gguf}; layers are: {', '.join(l.name for l in found[:8])}, ...")
    found = [l for l in found if (not inc or _matches(l.name, inc)) and not (exc and _matches(l.name, exc))]
    if not found:
        raise ProblemError(f"include/exclude patterns left no layer of {type(model).__name__} to quantize")
    names = [l.name for l in found]
    ties = merge_groups(_shared_groups(names, shared), names) if shared else ()
    return LlmLayers(tuple(found), {n: block_index.get(n) for n in names}, path, len(blocks), tied, tuple(tuple(g) for g in ties))


def llm_problem(
    model: nn.Module,
    sensitivity: Sensitivity | Any,
    options: Sequence[OptionLike] | None = None,
    *,
    budgets: Mapping[str, Any] | None = None,
    costs: Iterable[str] = ("size_bits",),
    shared: str | Iterable[str] = (),
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    embeddings: bool = True,
    lm_head: bool = True,
) -> Problem:
    """The allocation problem over :func:`discover_llm_layers`' decisions (same keywords) from a
    ``sensitivity`` (a :class:`Sensitivity` over exactly those layers, or a ``[layers x options]``
    table in their order with ``options``). ``costs``: ``size_bits``, ``size_bytes`` (effective
    bits, per-row scales counted) and ``bitops`` (MACs per token × w × a: an embedding's lookup is 0).
    Budgets may be in bits per weight (``{"size_bits": "4.5bpw"}``).
    """
    found = discover_llm_layers(model, include=include, exclude=exclude, embeddings=embeddings, lm_head=lm_head, shared=shared)
    layer_costs = [
        LayerCost(l.name, l.kind, l.weight_shape, 1, l.params, l.weight_params, 0.0 if l.kind == "embedding" else float(l.weight_params), 1, i, (), ())
        for i, l in enumerate(found.layers)
    ]
    rows = {l.name: found.row_length(l.name) for l in found.layers}
    ties = Ties(found.ties, "shared" if found.ties else "none", f"shared={shared!r}" if found.ties else "")
    meta: dict[str, Any] = {"model": type(model).__name__, "blocks": found.num_blocks}
    if found.tied:
        meta["tied"] = ", ".join(f"{h} = {e}" for h, e in found.tied.items())
    return assemble_problem(layer_costs, options, sensitivity, source="torch-llm", costs=costs, budgets=budgets, ties=ties, default_act_bits=None if "bitops" not in costs else 16,
                            meta=meta, row_lengths=rows)
