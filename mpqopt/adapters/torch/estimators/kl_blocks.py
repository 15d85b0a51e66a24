"""KL of next-token distributions with one tensor perturbed, re-running only the blocks it affects.

``values[l, k] = mean_b KL(p_FP32 ‖ p_l,k)`` per token, where ``p_l,k`` is the model's next-token
distribution with decision ``l`` alone quantized to option ``k`` (the unquantized model's entries
are exactly 0: ``values`` is a loss change); ``std`` is the standard error across batches.

One reference pass records what every decoder block returns on every batch. To measure a tensor
in block ``i``, blocks ``0..i-1`` are swapped for replays of their recorded outputs, so only the
embedding lookup, blocks ``≥ i`` and the head run: on average about half the blocks per
perturbation. A perturbed (untied) head re-runs no block; the embedding, and a head tied to it,
re-run all of them. Memory: one hidden state per block per batch (SmolLM2-135M, 4 × 128 tokens:
30 × 512 × 576 floats = 35 MB) plus the reference logits.

The entries equal ``estimate_delta_loss(..., loss="kl")`` (full forwards) to float32 rounding;
``meta["block_fraction"]`` is the share of block evaluations that ran. ``progress``, ``checkpoint``
and ``executor`` work as in :mod:`.runs` (the executor's workers get a copy of the model and data).

>>> import torch; from torch import nn
>>> class Block(nn.Module):
...     def __init__(self): super().__init__(); self.fc = nn.Linear(32, 32)
...     def forward(self, h): return h + torch.tanh(self.fc(h))
>>> class LM(nn.Module):
...     def __init__(self):
...         super().__init__(); self.embed = nn.Embedding(16, 32); self.layers = nn.ModuleList([Block(), Block()]); self.head = nn.Linear(32, 16)
...     def forward(self, input_ids):
...         h = self.embed(input_ids)
...         for block in self.layers: h = block(h)
...         return self.head(h)
>>> _ = torch.manual_seed(0)
>>> s = estimate_kl_blocks(LM(), [torch.randint(0, 16, (2, 6))], ["int4-g32", "int8-g32"], progress=False)
>>> s.layers, s.meta["block_fraction"]   # embed: 2 blocks, layers.0.fc: 2, layers.1.fc: 1, head: 0 (of 2 each)
(('embed', 'layers.0.fc', 'layers.1.fc', 'head'), 0.625)
"""

from __future__ import annotations

import copy
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ....options import OptionLike
from ...choices import is_identity
from ...sensitivity import Sensitivity, check_finite, mean_and_stderr
from ..llm import LlmLayers, discover_llm_layers
from ..perturb import quantized
from ..quantizer import WeightScheme
from ..text import input_ids, next_token_nll, vocab_size
from .base import Setup, prepare
from .runs import drop_runners, run_rows, worker_runner

__all__ = ["estimate_kl_blocks"]


class _Replay(nn.Module):
    """Stands in for a decoder block: returns what the block returned on the current batch."""

    def __init__(self, outputs: list[Any], state: dict[str, int]):
        super().__init__()
        self.outputs, self.state = outputs, state

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.outputs[self.state["batch"]]


def _detach(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, tuple):
        return tuple(_detach(v) for v in value)
    return value


class _Runner:
    """Block outputs of the unperturbed model on every batch, and rows of KL measured from them."""

    def __init__(self, setup: Setup, found: LlmLayers):
        self.setup, self.ev, self.model = setup, setup.evaluator, setup.model
        self.blocks: nn.ModuleList = self.model.get_submodule(found.block_path)
        n = len(self.blocks)
        self.start = [self._start(found.block_of[layer.name], layer.kind, n) for layer in setup.layers]
        self.state = {"batch": 0}
        self.outputs: list[list[Any]] = [[] for _ in range(n)]
        hooks = [block.register_forward_hook(lambda m, a, out, j=j: self.outputs[j].append(_detach(out))) for j, block in enumerate(self.blocks)]
        try:
            for b in range(self.ev.num_batches):
                self.ev.output(b)
        finally:
            for h in hooks:
                h.remove()
        self.base = self.ev.reference_losses()
        self.blocks_run = 0

    @staticmethod
    def _start(block: int | None, kind: str, n: int) -> int:
        """The first block a perturbation changes: its own; all for the embedding (and a head tied
        to it); none for an untied head."""
        if block is not None:
            return block
        return 0 if kind == "embedding" else n

    @contextmanager
    def from_block(self, start: int) -> Iterator[None]:
        """Blocks before ``start`` replay their recorded outputs within the context."""
        saved = [self.blocks[j] for j in range(start)]
        try:
            for j in range(start):
                self.blocks[j] = _Replay(self.outputs[j], self.state)
            yield
        finally:
            for j, block in enumerate(saved):
                self.blocks[j] = block

    def rows(self, rows: list[int]) -> dict[int, np.ndarray]:
        out = {}
        names, opts, ev = self.setup.names, self.setup.options, self.ev
        for i in rows:
            losses = np.zeros((len(opts), ev.num_batches))
            with self.from_block(self.start[i]):
                for k, opt in enumerate(opts):
                    if is_identity(opt):
                        continue
                    with quantized(self.model, {names[i]: opt}, cache=self.setup.cache):
                        for b in range(ev.num_batches):
                            self.state["batch"] = b
                            value = float(ev.loss_of(b, ev.output(b))) - self.base[b]
                            losses[k, b] = check_finite(value, f"layer {names[i]!r} at {opt.label} (batch {b})")
                    self.blocks_run += (len(self.blocks) - self.start[i]) * ev.num_batches
            out[i] = losses
        return out


def _kl_rows(job: dict[str, Any], rows: list[int]) -> dict[int, np.ndarray]:
    """A worker's task (module level, so process pools and Dask can send it); one runner per job,
    process and thread (perturbations swap weights in place: threads must not share a model)."""
    return worker_runner(job["token"], job["pid"], lambda: _build_runner(job)).rows(rows)


def _build_runner(job: dict[str, Any]) -> _Runner:
    model = copy.deepcopy(job["model"])
    found = discover_llm_layers(model, **job["discover"])
    setup = prepare(model, job["batches"], job["options"], layers=list(job["names"]), loss="kl", scheme=job["scheme"])
    return _Runner(setup, found)


def estimate_kl_blocks(
    model: nn.Module,
    data: Iterable[Any],
    options: Sequence[OptionLike],
    *,
    scheme: WeightScheme = WeightScheme(),
    progress: bool = True,
    checkpoint: Any = None,
    executor: Any = None,
    chunks: int | None = None,
    checkpoint_every: float = 30.0,
    **discover: Any,
) -> Sensitivity:
    """Next-token KL to the unquantized model per (decision, option) (module docstring).
    ``discover``: :func:`~mpqopt.adapters.torch.llm.discover_llm_layers`' ``include``, ``exclude``,
    ``embeddings``, ``lm_head``. ``data``: batches of token ids (a ``[batch, tokens]`` tensor or a
    dict with ``input_ids``; labels are not used)."""
    started = time.perf_counter()
    found = discover_llm_layers(model, **discover)
    batches = list(data)
    vocab = vocab_size(model)
    for b, batch in enumerate(batches):
        input_ids(batch, b, vocab)  # token ids the model has, before the reference pass
    setup = prepare(model, batches, options, layers=list(found.names), loss="kl", scheme=scheme)
    runner = _Runner(setup, found)
    opts, nb = setup.options, setup.evaluator.num_batches
    job = {"token": uuid.uuid4().hex, "pid": os.getpid(), "model": model, "batches": batches, "options": opts, "names": found.names,
           "discover": discover, "scheme": setup.cache.scheme} if executor is not None else None
    table, info = run_rows(
        len(found.names), (len(opts), nb), runner.rows, desc="KL per tensor", progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
        fingerprint={"method": "kl_blocks", "layers": list(found.names), "options": [o.label for o in opts], "batches": nb, "scheme": asdict(setup.cache.scheme)},
        # the KL of the reference to itself is 0 for any model: the reference's next-token NLL tells weights and data apart
        reference={"nll": np.array([float(next_token_nll(ref, input_ids(batch, b))) for b, (ref, batch) in enumerate(zip(setup.evaluator.references, batches))])}, executor=executor, remote=_kl_rows, job=job, chunks=chunks,
    )
    if job is not None:
        drop_runners(job["token"])
    values, std = mean_and_stderr(table)
    live = sum(not is_identity(o) for o in opts)
    fraction = sum(len(runner.blocks) - s for s in runner.start) / max(len(runner.blocks) * len(runner.start), 1)
    return setup.result(values, std if nb > 1 else None, "kl_blocks", seconds=time.perf_counter() - started,
                        forward_passes=2 * nb + (len(found.names) - info["resumed_rows"]) * live * nb,
                        backward_passes=0, block_fraction=round(fraction, 4), **info)
