"""Data-light sensitivity from activation statistics: llama.cpp's importance-matrix idea.

One forward pass per batch records, for every Linear decision, the mean square of each input
channel over the calibration tokens, ``c_j = E[x_j²]`` (what llama.cpp's ``imatrix`` tool stores as
``in_sum2 / counts``), and for the token embedding the frequency ``r_i`` of each token id. Then

``values[l, k] = Σ_ij c_j (Q_k(W)_ij − W_ij)²``  (a Linear: ``E‖ΔW x‖²`` when the input channels
are uncorrelated, the output error per token), and ``Σ_ij r_i (Q_k(W)_ij − W_ij)²`` for the
embedding (the expected squared error of the looked-up row). A head tied to the embedding adds its
own term (its input's ``c_j``) to the embedding decision, since both use the one weight.

These are output errors of each layer, not loss changes: they rank layers and formats but are not
calibrated across layers the way a measured loss is (use ``estimate_kl_blocks`` for that). Cost:
the data's forward passes plus one quantization per (layer, option), which dominates on a real
model and is what ``progress``, ``checkpoint`` and ``executor`` are for (:mod:`.runs`); the workers
receive the weights and statistics only, not the model.

:func:`imatrix_sensitivity` takes the statistics from anywhere: :func:`activation_stats` here, or a
llama.cpp imatrix file's ``in_sum2 / counts`` per tensor mapped to module names.

>>> import torch; from torch import nn
>>> _ = torch.manual_seed(0)
>>> m = nn.Module()
>>> m.embed = nn.Embedding(16, 32); m.layers = nn.ModuleList([nn.Linear(32, 32)]); m.head = nn.Linear(32, 16)
>>> m.forward = lambda input_ids: m.head(m.layers[0](m.embed(input_ids)))
>>> s = estimate_imatrix(m, [torch.randint(0, 16, (2, 8))], ["int4-g32", "int8-g32"], progress=False)
>>> s.layers, bool((s.values[:, 0] > s.values[:, 1]).all())
(('embed', 'layers.0', 'head'), True)
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ....errors import ProblemError
from ....options import Option, OptionLike
from ...choices import is_identity, parse_options
from ...scheme import parse_scheme
from ...sensitivity import Sensitivity
from ..data import call_model, model_device, to_device
from ..llm import LlmLayers, discover_llm_layers
from ..perturb import quantize_option
from ..quantizer import WeightScheme
from ..text import input_ids, vocab_size
from .runs import run_rows

__all__ = ["ActivationStats", "activation_stats", "imatrix_sensitivity", "estimate_imatrix"]


class ActivationStats(dict):
    """``{decision: {"columns": E[x_j²] per input channel, "rows": token frequency per row}}`` (either
    may be absent), and the number of ``tokens`` they were measured on."""

    tokens: int = 0


def _decisions(model: nn.Module, layers: LlmLayers | None, kw: Mapping[str, Any]) -> LlmLayers:
    return layers if layers is not None else discover_llm_layers(model, **kw)


def activation_stats(model: nn.Module, data: Iterable[Any], *, layers: LlmLayers | None = None, **discover: Any) -> ActivationStats:
    """Per-input-channel mean squares of each Linear decision's input and token frequencies of the
    embedding, over ``data`` (batches of token ids; one forward each, on the model's device).
    ``layers`` (from :func:`~mpqopt.adapters.torch.llm.discover_llm_layers`) or its keywords."""
    found = _decisions(model, layers, discover)
    modules = dict(model.named_modules())
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    heads = {head: emb for head, emb in found.tied.items() if emb in found.names}

    def observe(key: str) -> Any:
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            x = x.reshape(-1, x.shape[-1]).double()
            sums[key] = sums.get(key, 0) + x.pow(2).sum(dim=0)
            counts[key] = counts.get(key, 0) + x.shape[0]

        return hook

    hooks = []
    for layer in found.layers:
        if layer.kind != "embedding":
            hooks.append(modules[layer.name].register_forward_pre_hook(observe(layer.name)))
    for head in heads:
        hooks.append(modules[head].register_forward_pre_hook(observe(head)))
    embed = next((l for l in found.layers if l.kind == "embedding"), None)
    freq = torch.zeros(embed.weight_shape[0], dtype=torch.float64) if embed is not None else None
    device, tokens, was_training, vocab = model_device(model), 0, model.training, vocab_size(model)
    model.eval()
    try:
        with torch.no_grad():
            for i, batch in enumerate(data):
                ids = to_device(input_ids(batch, i, vocab), device)
                call_model(model, {"input_ids": ids})
                tokens += ids.numel()
                if freq is not None:
                    freq += torch.bincount(ids.reshape(-1).cpu(), minlength=freq.numel())[: freq.numel()].double()
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    if tokens == 0:
        raise ProblemError("activation statistics need data: give at least one batch of token ids")
    out = ActivationStats()
    out.tokens = tokens
    for layer in found.layers:
        entry: dict[str, np.ndarray] = {}
        if layer.kind == "embedding":
            assert freq is not None
            entry["rows"] = (freq / tokens).numpy()
            head = next((h for h, e in heads.items() if e == layer.name), None)
            if head is not None and head in sums:
                entry["columns"] = (sums[head] / counts[head]).cpu().numpy()
        elif layer.name in sums:
            entry["columns"] = (sums[layer.name] / counts[layer.name]).cpu().numpy()
        else:
            raise ProblemError(f"layer {layer.name!r} never ran on the data, so its input statistics are unknown; exclude= it if it is unused")
        out[layer.name] = entry
    return out


def _weighted_error(weight: torch.Tensor, option: Option, stat: Mapping[str, np.ndarray], scheme: WeightScheme, name: str) -> float:
    w = weight.detach().float()
    d2 = (quantize_option(w, option, scheme, name) - w).double().pow(2)
    total = 0.0
    if "columns" in stat:
        total += float((d2 * torch.as_tensor(stat["columns"], dtype=torch.float64, device=d2.device)[None, :]).sum())
    if "rows" in stat:
        total += float((d2 * torch.as_tensor(stat["rows"], dtype=torch.float64, device=d2.device)[:, None]).sum())
    return total


def _imatrix_rows(job: dict[str, Any], rows: list[int]) -> dict[int, np.ndarray]:
    """A worker's task (module level, so process pools and Dask can send it): weights and statistics in, rows out."""
    out = {}
    for i in rows:
        name = job["names"][i]
        out[i] = np.array([0.0 if is_identity(o) else _weighted_error(job["weights"][name], o, job["stats"][name], job["scheme"], name) for o in job["options"]])
    return out


def imatrix_sensitivity(
    model: nn.Module,
    stats: Mapping[str, Any],
    options: Sequence[OptionLike],
    *,
    layers: LlmLayers | None = None,
    scheme: WeightScheme = WeightScheme(),
    progress: bool = True,
    checkpoint: Any = None,
    executor: Any = None,
    chunks: int | None = None,
    **discover: Any,
) -> Sensitivity:
    """The importance-weighted quantization error table (module docstring) from ``stats``:
    :func:`activation_stats`' result, or ``{decision: E[x_j²] vector}`` (e.g. a llama.cpp imatrix's
    ``in_sum2 / counts``, by module name). Every decision needs statistics of the right length."""
    started = time.perf_counter()
    found = _decisions(model, layers, discover)
    opts = parse_options(options)
    modules = dict(model.named_modules())
    norm: dict[str, dict[str, np.ndarray]] = {}
    for layer in found.layers:
        stat = stats.get(layer.name)
        if stat is None:
            raise ProblemError(f"the activation statistics have nothing for layer {layer.name!r} (they cover {len(stats)} tensors, e.g. {list(stats)[:3]}): statistics of another model?")
        stat = dict(stat) if isinstance(stat, Mapping) else {"columns": np.asarray(stat, dtype=np.float64)}
        rows_n, cols_n = layer.weight_shape[0], layer.weight_shape[1]
        for key, want in (("columns", cols_n), ("rows", rows_n)):
            if key in stat and np.shape(stat[key]) != (want,):
                raise ProblemError(f"layer {layer.name!r}: statistics of {np.shape(stat[key])} {key} for a weight of shape {tuple(layer.weight_shape)}: statistics of another model?")
            if key in stat and not (np.isfinite(stat[key]).all() and (np.asarray(stat[key]) >= 0).all()):
                raise ProblemError(f"layer {layer.name!r}: activation statistics must be finite and non-negative mean squares")
        if not stat:
            raise ProblemError(f"layer {layer.name!r}: empty activation statistics")
        norm[layer.name] = {k: np.asarray(v, dtype=np.float64) for k, v in stat.items() if k in ("columns", "rows")}
    names = found.names
    scheme = parse_scheme(scheme)
    job = {"names": names, "options": opts, "scheme": scheme, "stats": norm, "weights": {n: modules[n].weight.detach().cpu() for n in names} if executor is not None else None}
    if executor is None:
        job["weights"] = {n: modules[n].weight for n in names}  # in place, on the model's device
    totals = np.array([sum(float(np.sum(v)) for v in norm[n].values()) for n in names])
    table, info = run_rows(
        len(names), (len(opts),), lambda rows: _imatrix_rows(job, rows), desc="imatrix", progress=progress, checkpoint=checkpoint,
        fingerprint={"method": "imatrix", "layers": list(names), "options": [o.label for o in opts], "scheme": asdict(scheme)},
        reference={"statistics": totals}, executor=executor, remote=_imatrix_rows, job=job, chunks=chunks,
    )
    meta = {"seconds": time.perf_counter() - started, "forward_passes": 0, "backward_passes": 0, "tokens": int(getattr(stats, "tokens", 0)), **info}
    return Sensitivity.checked(names, opts, table, None, "imatrix", None, meta)


def estimate_imatrix(model: nn.Module, data: Iterable[Any], options: Sequence[OptionLike], *, layers: LlmLayers | None = None, **kw: Any) -> Sensitivity:
    """:func:`activation_stats` on ``data`` then :func:`imatrix_sensitivity` (keywords: ``scheme``,
    ``progress``, ``checkpoint``, ``executor``, ``chunks``, and :func:`discover_llm_layers`' ``include``,
    ``exclude``, ``embeddings``, ``lm_head``)."""
    discover = {k: kw.pop(k) for k in ("include", "exclude", "embeddings", "lm_head") if k in kw}
    found = _decisions(model, layers, discover)
    data = list(data)
    started = time.perf_counter()
    stats = activation_stats(model, data, layers=found)
    s = imatrix_sensitivity(model, stats, options, layers=found, **kw)
    s.meta.update(forward_passes=len(data), seconds=time.perf_counter() - started)
    return s
