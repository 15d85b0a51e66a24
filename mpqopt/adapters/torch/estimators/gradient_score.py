"""A gradient score per (layer, format) in the spirit of NVIDIA ModelOpt's AutoQuantize: one
backward pass per batch serves every format.

For a Linear decision with input ``X`` (tokens × in), output ``Y = X Wᵀ`` and the next-token loss
``L`` (mean cross-entropy over the ``N`` predicted tokens of the batch), quantizing ``W`` to format
``k`` changes the output by ``ΔY_k = X (Q_k(W) − W)ᵀ``; with the empirical Fisher of the output as its
Hessian (``N · g²`` per entry, ``g = ∂L/∂Y``: the per-token losses' gradients are ``N g``),

``values[l, k] = mean_b ½ N_b Σ_(t,o) g_to² ΔY_k,to²``

estimates the loss increase. ``ΔY`` of the embedding is the looked-up rows of ``Q_k(W) − W``; a head
tied to the embedding adds its own term to the embedding decision. ``std`` is the standard error
across batches. The gradients come from ``torch.autograd.grad`` on the layers' outputs (no weight
gradient is accumulated); frozen weights are made differentiable for the pass and restored.
``progress``, ``checkpoint`` and ``executor`` work as in :mod:`.runs`, a row being one batch.

>>> import torch; from torch import nn
>>> class LM(nn.Module):
...     def __init__(self):
...         super().__init__(); self.embed = nn.Embedding(16, 32); self.layers = nn.ModuleList([nn.Linear(32, 32)]); self.head = nn.Linear(32, 16)
...     def forward(self, input_ids): return self.head(torch.tanh(self.layers[0](self.embed(input_ids))))
>>> _ = torch.manual_seed(0)
>>> s = estimate_gradient_score(LM(), [torch.randint(0, 16, (2, 8))], ["int4-g32", "int8-g32"], progress=False)
>>> s.layers, bool((s.values[:, 0] > s.values[:, 1]).all()), s.meta["backward_passes"]
(('embed', 'layers.0', 'head'), True, 1)
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ....options import Option, OptionLike
from ...choices import is_identity, parse_options
from ...scheme import parse_scheme
from ...sensitivity import Sensitivity, mean_and_stderr
from ..data import call_model, model_device, to_device
from ..llm import LlmLayers, discover_llm_layers
from ..perturb import WeightCache
from ..quantizer import WeightScheme
from ..text import input_ids, next_token_nll, vocab_size
from .hessian import weights_requiring_grad
from .runs import run_rows

__all__ = ["estimate_gradient_score"]


class _Scorer:
    def __init__(self, model: nn.Module, found: LlmLayers, options: Sequence[Option], scheme: WeightScheme, batches: list[Any]):
        self.model, self.found, self.options, self.batches = model, found, tuple(options), batches
        self.cache = WeightCache(model, scheme)
        self.modules = dict(model.named_modules())
        # (module that runs, decision whose weight it uses): a tied head scores for the embedding
        self.users = [(l.name, l.name) for l in found.layers] + [(h, e) for h, e in found.tied.items() if e in found.names]
        self.device = model_device(model)

    def rows(self, rows: list[int]) -> dict[int, np.ndarray]:
        return {b: self.batch(b) for b in rows}

    def batch(self, b: int) -> np.ndarray:
        ids = to_device(input_ids(self.batches[b], b), self.device)
        seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        def keep(name: str) -> Any:
            def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
                seen[name] = (args[0].detach(), out)

            return hook

        hooks = [self.modules[user].register_forward_hook(keep(user)) for user, _ in self.users]
        weights = [self.modules[l.name].weight for l in self.found.layers]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.enable_grad(), weights_requiring_grad(weights):
                logits = call_model(self.model, {"input_ids": ids})
                logits = logits if isinstance(logits, torch.Tensor) else logits.logits
                loss = next_token_nll(logits, ids)
                users = [u for u, _ in self.users if u in seen]
                grads = torch.autograd.grad(loss, [seen[u][1] for u in users], allow_unused=True)
        finally:
            self.model.train(was_training)
            for h in hooks:
                h.remove()
        g_of = dict(zip(users, grads))
        n = ids.shape[0] * (ids.shape[1] - 1)
        names = self.found.names
        out = np.zeros((len(names), len(self.options)))
        with torch.no_grad():
            for user, decision in self.users:
                g = g_of.get(user)
                if g is None:
                    continue  # the loss does not reach this layer: score 0
                i = names.index(decision)
                x = seen[user][0]
                w = self.modules[decision].weight.detach()
                g2 = g.detach().double().pow(2)
                for k, opt in enumerate(self.options):
                    if is_identity(opt):
                        continue
                    dw = (self.cache.get(decision, opt) - w).double()
                    dy = dw[x] if isinstance(self.modules[user], nn.Embedding) else x.double() @ dw.T
                    out[i, k] += 0.5 * n * float((g2 * dy.pow(2)).sum())
        return out


def _score_rows(job: dict[str, Any], rows: list[int]) -> dict[int, np.ndarray]:
    """A worker's task (module level, so process pools and Dask can send it)."""
    if os.getpid() != job["pid"]:
        torch.set_num_threads(1)
    model = copy.deepcopy(job["model"])
    found = discover_llm_layers(model, **job["discover"])
    return _Scorer(model, found, job["options"], job["scheme"], job["batches"]).rows(rows)


def estimate_gradient_score(
    model: nn.Module,
    data: Iterable[Any],
    options: Sequence[OptionLike],
    *,
    scheme: WeightScheme = WeightScheme(),
    progress: bool = True,
    checkpoint: Any = None,
    executor: Any = None,
    chunks: int | None = None,
    **discover: Any,
) -> Sensitivity:
    """The gradient score table (module docstring) on ``data`` (batches of token ids).
    ``discover``: :func:`~mpqopt.adapters.torch.llm.discover_llm_layers`' ``include``, ``exclude``,
    ``embeddings``, ``lm_head``."""
    started = time.perf_counter()
    found = discover_llm_layers(model, **discover)
    batches = list(data)
    opts = parse_options(options)
    scheme = parse_scheme(scheme)
    scorer = _Scorer(model, found, opts, scheme, batches)
    job = {"pid": os.getpid(), "model": model, "batches": batches, "options": opts, "scheme": scheme, "discover": discover} if executor is not None else None
    tokens = np.array([float(input_ids(b, i, vocab_size(model)).sum()) for i, b in enumerate(batches)])  # also checks every batch's ids
    table, info = run_rows(
        len(batches), (len(found.names), len(opts)), scorer.rows, desc="gradient score", progress=progress, checkpoint=checkpoint,
        fingerprint={"method": "gradient_score", "layers": list(found.names), "options": [o.label for o in opts], "scheme": asdict(scheme)},
        reference={"tokens": tokens, "weights": np.array([float(scorer.modules[n].weight.detach().double().abs().sum()) for n in found.names])}, executor=executor, remote=_score_rows, job=job, chunks=chunks,
    )
    values, std = mean_and_stderr(np.moveaxis(table, 0, -1))
    measured = len(batches) - info["resumed_rows"]
    meta = {"seconds": time.perf_counter() - started, "forward_passes": measured, "backward_passes": measured, "batches": len(batches), "loss": "next-token ce", **info}
    return Sensitivity.checked(found.names, opts, values, std if len(batches) > 1 else None, "gradient_score", None, meta)
