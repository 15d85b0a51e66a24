"""Find the layers of a PyTorch model that mpqopt can quantize.

Conv1d / Conv2d / Conv3d and Linear modules with a weight; grouped and depthwise convolutions are
recorded with their ``groups`` so costs count them correctly. Embeddings (``nn.Embedding``, kind
``embedding``) are layers too when asked for (``embeddings=True``; the LLM discovery of
:mod:`.llm` does), and a name that names one always resolves.

>>> import torch.nn as nn
>>> m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
>>> [(l.name, l.kind, l.params) for l in discover_layers(m)]
[('0', 'conv2d', 224), ('3', 'linear', 18)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from ...errors import ProblemError
from ..patterns import matches as _matches, patterns as _patterns

_KINDS: tuple[tuple[type, str], ...] = ((nn.Conv1d, "conv1d"), (nn.Conv2d, "conv2d"), (nn.Conv3d, "conv3d"), (nn.Linear, "linear"), (nn.Embedding, "embedding"))


@dataclass(frozen=True)
class LayerInfo:
    """One quantizable layer: its dotted module name, kind, weight shape, conv groups and
    parameter count (weight + bias)."""

    name: str
    kind: str
    weight_shape: tuple[int, ...]
    groups: int
    params: int
    weight_params: int

    @property
    def depthwise(self) -> bool:
        return self.kind.startswith("conv") and self.groups > 1 and self.weight_shape[1] == 1


def _kind(module: nn.Module) -> str | None:
    for cls, kind in _KINDS:
        if isinstance(module, cls) and isinstance(getattr(module, "weight", None), torch.Tensor):
            return kind
    return None


def discover_layers(model: nn.Module, include: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None, *,
                    embeddings: bool = False) -> list[LayerInfo]:
    """Quantizable layers of ``model`` in module order (``nn.Embedding`` too with ``embeddings=True``).

    ``include`` keeps only matching names; ``exclude`` drops matching names. Patterns are globs or
    ``re:<regex>``. An include pattern that matches no quantizable layer is an error (a typo would
    otherwise silently leave layers out), as is a model with no quantizable layer at all.
    """
    if not isinstance(model, nn.Module):
        raise ProblemError(f"expected a torch.nn.Module, got {type(model).__name__}")
    inc, exc = _patterns(include, "include"), _patterns(exclude, "exclude")
    found = [(name, mod, kind) for name, mod in model.named_modules() if (kind := _kind(mod)) is not None and (embeddings or kind != "embedding")]
    if not found:
        raise ProblemError(f"{type(model).__name__} has no quantizable layer (Conv1d/2d/3d or Linear with a weight)")
    for p in inc:
        if not any(_matches(name, (p,)) for name, _, _ in found):
            known = ", ".join(name for name, _, _ in found[:8]) + (", ..." if len(found) > 8 else "")
            raise ProblemError(f"include pattern {p!r} matches no quantizable layer; layers are: {known}")
    layers = []
    for name, mod, kind in found:
        if inc and not _matches(name, inc):
            continue
        if exc and _matches(name, exc):
            continue
        bias = getattr(mod, "bias", None)
        wp = int(mod.weight.numel())
        layers.append(LayerInfo(name, kind, tuple(mod.weight.shape), int(getattr(mod, "groups", 1)), wp + (int(bias.numel()) if isinstance(bias, torch.Tensor) else 0), wp))
    if not layers:
        raise ProblemError(f"include/exclude patterns left no layer of {type(model).__name__} to quantize")
    return layers


def resolve_layer_names(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """Map layer names to modules, with an error naming any name the model does not have.

    >>> list(resolve_layer_names(nn.Sequential(nn.Linear(2, 2)), ["0"]))
    ['0']
    """
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        mod = modules.get(name)
        if mod is None or _kind(mod) is None:
            raise ProblemError(f"model has no quantizable layer named {name!r}{_missing_hint(name, modules)}")
        out[name] = mod
    return out


def _missing_hint(name: str, modules: dict[str, nn.Module]) -> str:
    """Why ``name`` is not a layer of the model, when that can be told: a module that is not a
    quantizable kind, a GGUF tensor name (``blk.0.attn_q``) for an HF module, an index past the end
    of a ``ModuleList`` (block 9 of a 2-block model), or else the layers whose names contain it."""
    from ...io.targets.names import hf_module_name, is_gguf_name

    if name in modules:
        return f"; it is a {type(modules[name]).__name__}, not a Conv, Linear or Embedding layer with a weight"
    if is_gguf_name(name):
        for prefix in ("model.", ""):
            try:
                spelled = hf_module_name(name, prefix=prefix)
            except ProblemError:
                break
            if spelled.split(".")[0] in modules:
                found = f"this model calls it {spelled!r}" if spelled in modules else f"it would be {spelled!r}, which the model has not either"
                return f"; it is a GGUF tensor name: {found}{_missing_hint(spelled, modules) if spelled not in modules else ''}"
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        parent = modules.get(".".join(parts[:i]))
        if isinstance(parent, nn.ModuleList) and parts[i].isdigit() and int(parts[i]) >= len(parent):
            return f"; {'.'.join(parts[:i])!r} has {len(parent)} entries (0..{len(parent) - 1})"
    close = [n for n in modules if n and _kind(modules[n]) is not None and (name in n or n in name)][:5]
    if close:
        return f"; did you mean {', '.join(close)}?"
    parent = max((p for p in modules if p and name.startswith(p + ".")), key=len, default=None)
    inside = [n[len(parent) + 1:] for n in modules if parent and n.startswith(parent + ".") and _kind(modules[n]) is not None][:8]
    return f"; {parent!r} holds {', '.join(inside)}" if inside else ""
