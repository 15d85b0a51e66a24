"""HAWQ-V2/V3 sensitivity: the average Hessian trace of a layer times its quantization error.

``values[l, k] = Tr(H_l) / n_l * ||Q_k(W_l) - W_l||²`` where ``H_l`` is the block of the loss
Hessian for layer ``l``'s weight (``n_l`` entries) and ``Q_k`` quantizes it to option ``k``'s weight
bits (Dong et al., HAWQ-V2, NeurIPS 2020; Yao et al., HAWQ-V3, ICML 2021). As in HAWQ the factor ½
of the second-order Taylor term is left out: under HAWQ's isotropic assumption
``ΔWᵀ H_l ΔW ≈ Tr(H_l)/n_l ||ΔW||²``, half of ``values`` estimates the loss increase.

Traces come from Hutchinson's estimator ``Tr(H) = E[vᵀHv]`` with Rademacher ``v``: each sample
(probe) draws one ``v`` over *all* selected layers' weights and takes one Hessian-vector product (a
double backward pass) on one batch; ``v_lᵀ(Hv)_l`` is that sample's trace estimate for every layer
at once. A step takes ``probes_per_step`` probes on one batch, cycling through the batches: the loss
and gradient are computed once per step, and the probes' products in one batched call
(``is_grads_batched``). That costs less per probe than one loss, gradient and product each (digits
CNN, one CPU thread: 15 instead of 24 ms of CPU time, mostly from the shared loss and gradient; on a
CPU the batched call itself costs about what 8 single calls do). It is the same estimator: batching
changes the speed per probe, not the estimate. Sampling stops when the running mean of every layer's trace
changes by less than ``tol`` (relative) between two samples, checked probe by probe, after at least
``min_iter`` samples (default: every batch once, at least 10), or after ``max_iter``; the rest of
the step it stops in is kept. ``std`` is the standard error of the mean over the samples, clustered
by step (the probes of a step share a batch: :func:`step_stderr`)
(Hutchinson and batch noise together), times the same factor.

Only the weight perturbation is modelled: activation bits of an option (``W4A8``) are ignored.
For distance-to-FP32 losses (``kl`` on unlabelled data, ``mse``, ``cosine``) the gradient is zero
at the FP32 point, so the Hessian there is exactly the Gauss-Newton term ``Jᵀ H_out J``. The model
must support a second backward pass: fused kernels often do not (load transformers models with
``attn_implementation="eager"``); a clear error says so.

>>> import torch; from torch import nn
>>> _ = torch.manual_seed(0)
>>> m = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
>>> data = [(torch.randn(32, 4), torch.randint(0, 3, (32,)))]
>>> s = estimate_hessian_trace(m, data, [2, 4, 8], max_iter=50)
>>> s.values.shape, bool((s.values[:, 0] > s.values[:, 2]).all()), s.meta["hvp"], s.meta["backward_passes"] == 2 * s.meta["steps"]
((2, 3), True, 'batched', True)
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ....errors import ProblemError
from ....options import OptionLike
from ...sensitivity import check_finite
from ..data import Evaluator, call_model
from .base import Sensitivity, Setup, prepare


@contextmanager
def weights_requiring_grad(weights: Sequence[torch.Tensor]) -> Iterator[None]:
    """Let autograd differentiate ``weights`` (frozen models have ``requires_grad=False``), restoring
    the flags afterwards."""
    flags = [w.requires_grad for w in weights]
    try:
        for w in weights:
            w.requires_grad_(True)
        yield
    finally:
        for w, flag in zip(weights, flags):
            w.requires_grad_(flag)


def batch_loss_with_graph(evaluator: Evaluator, index: int) -> torch.Tensor:
    """The loss of batch ``index`` for the model as it is, keeping the autograd graph."""
    inputs, _ = evaluator.batches[index]
    with torch.enable_grad():
        try:
            out = evaluator.output_fn(call_model(evaluator.model, inputs))
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ProblemError(f"the model failed on batch {index} (wrong input shape or type?): {exc}") from None
        return evaluator.loss_of(index, out)


HVP_MODES = ("auto", "batched", "loop")
PROBES_PER_STEP = 8  # the default's most. Digits CNN, batches of 64, one thread, CPU ms a probe: 24 one a step, 15 at 4-16, 16 at 32


@dataclass
class HutchinsonRun:
    """Per-probe Hutchinson estimates ``samples[probe, layer]`` and how they were computed: ``steps``
    (one loss and gradient each, ``probes_per_step`` probes), ``hvp_calls`` (Hessian-vector product calls: one per step when
    batched, one per probe in a loop), ``mode`` ("batched" or "loop") and, when "auto" fell back to
    the loop, ``fallback`` (why)."""

    samples: np.ndarray
    converged: bool
    steps: int
    hvp_calls: int
    mode: str
    probes_per_step: int
    fallback: str | None = None


def rademacher_probes(weights: Sequence[torch.Tensor], count: int, gen: torch.Generator | None) -> list[torch.Tensor]:
    """``count`` ±1 probes over all ``weights``, stacked per weight (``[count, *w.shape]``), drawn
    probe by probe and weight by weight from ``gen`` on the weight's device: the sequence of probes a
    generator gives does not depend on how many are drawn at once.

    >>> a = rademacher_probes([torch.zeros(2, 3), torch.zeros(4)], 5, torch.Generator().manual_seed(0))
    >>> g = torch.Generator().manual_seed(0)
    >>> b = [rademacher_probes([torch.zeros(2, 3), torch.zeros(4)], 1, g) for _ in range(5)]
    >>> [tuple(v.shape) for v in a], all(torch.equal(a[i][p], b[p][i][0]) for p in range(5) for i in range(2))
    ([(5, 2, 3), (5, 4)], True)
    """
    draws = [[torch.randint(0, 2, w.shape, generator=gen, device=w.device) for w in weights] for _ in range(count)]
    return [torch.stack([d[i] for d in draws]).to(w.dtype).mul_(2).sub_(1) for i, w in enumerate(weights)]


def _hvp_error(exc: Exception) -> ProblemError:
    return ProblemError(
        f"hessian_trace: the model does not support Hessian-vector products (a second backward pass): {exc}. "
        "Fused kernels often lack it: load transformers models with attn_implementation='eager'"
    )


def probe_rows(grads: Sequence[torch.Tensor], live: Sequence[int], weights: Sequence[torch.Tensor], vs: Sequence[torch.Tensor],
               batched: bool) -> np.ndarray:
    """``[probes, layers]``: ``v_lᵀ(Hv)_l`` for each stacked probe ``v`` (``vs[i][p]``), by one
    batched Hessian-vector product (``is_grads_batched``: autograd vmaps the double backward over
    the probes) or by one product per probe on the retained graph."""
    count = len(vs[0]) if vs else 0
    rows = torch.zeros(count, len(weights), dtype=torch.float64)
    outputs = [grads[i] for i in live]
    if batched:
        hv = torch.autograd.grad(outputs, weights, grad_outputs=[vs[i] for i in live], allow_unused=True, retain_graph=True, is_grads_batched=True)
        for i, h in enumerate(hv):
            if h is not None:
                rows[:, i] = (vs[i] * h).flatten(1).sum(1).double().cpu()
        return rows.numpy()
    for p in range(count):
        try:
            hv = torch.autograd.grad(outputs, weights, grad_outputs=[vs[i][p] for i in live], allow_unused=True, retain_graph=True)
        except RuntimeError as exc:
            raise _hvp_error(exc) from None
        for i, h in enumerate(hv):
            if h is not None:
                rows[p, i] = float((vs[i][p] * h).sum())
    return rows.numpy()


def hutchinson_traces(
    setup: Setup, *, tol: float = 1e-3, max_iter: int = 100, min_iter: int | None = None, seed: int = 0,
    probes_per_step: int | None = None, hvp: str = "auto",
) -> HutchinsonRun:
    """Per-probe Hutchinson estimates of each layer's Hessian trace (see the module docstring):
    ``probes_per_step`` probes per batch share one loss and gradient, their products come from one
    batched call (``hvp="batched"``), one call per probe (``"loop"``), or ``"auto"``: batched, else
    (the model cannot be vmapped through its double backward; tried once, on the first step) the loop."""
    if not (isinstance(max_iter, int) and max_iter >= 2):
        raise ProblemError(f"hessian_trace: max_iter must be an integer >= 2, got {max_iter!r}")
    if not (tol >= 0):
        raise ProblemError(f"hessian_trace: tol must be >= 0, got {tol!r}")
    if not (probes_per_step is None or (isinstance(probes_per_step, int) and probes_per_step >= 1)):
        raise ProblemError(f"hessian_trace: probes_per_step must be None or an integer >= 1, got {probes_per_step!r}")
    if hvp not in HVP_MODES:
        raise ProblemError(f"hessian_trace: hvp must be one of {HVP_MODES}, got {hvp!r}")
    ev = setup.evaluator
    if probes_per_step is None:  # fewer than 8 when max_iter probes at 8 a step would not reach every batch
        probes_per_step = min(PROBES_PER_STEP, max(1, max_iter // ev.num_batches))
    # by default every batch once (probes_per_step probes each), at least 10 probes
    floor = min(max_iter, max(10, probes_per_step * ev.num_batches)) if min_iter is None else max(2, min(int(min_iter), max_iter))
    weights = [setup.cache.module(name).weight for name in setup.names]
    # the probes are drawn where the weights are (a CPU generator cannot fill a CUDA tensor)
    gen = torch.Generator(device=weights[0].device).manual_seed(seed) if weights else None
    mode = "loop" if hvp == "loop" else "batched"
    fallback = None
    samples: list[np.ndarray] = []
    total, prev = np.zeros(len(weights)), None  # the running sum; the running mean before the latest probe
    steps = hvp_calls = 0
    converged = False
    with weights_requiring_grad(weights):
        while len(samples) < max_iter and not converged:
            b = steps % ev.num_batches
            loss = batch_loss_with_graph(ev, b)
            check_finite(float(loss.detach()), f"hessian_trace: the model on batch {b}")
            grads = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
            # A layer the loss does not reach (an unused head) has no gradient and a zero Hessian block;
            # a gradient that is constant in the weights has no graph and a zero block too.
            live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
            count = min(probes_per_step, max_iter - len(samples))
            vs = rademacher_probes(weights, count, gen)
            rows = np.zeros((count, len(weights)))
            if live and mode == "batched":
                try:
                    rows = probe_rows(grads, live, weights, vs, batched=True)
                    hvp_calls += 1
                except Exception as exc:  # noqa: BLE001 - no batching rule for some op of the double backward (or no memory for it)
                    if hvp == "batched":
                        raise ProblemError(f"hessian_trace: the model's Hessian-vector product cannot be batched over probes "
                                           f"({type(exc).__name__}: {exc}); use hvp='loop' or 'auto'") from None
                    mode, fallback = "loop", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'no message'}"
            if live and mode == "loop":
                rows = probe_rows(grads, live, weights, vs, batched=False)
                hvp_calls += count
            steps += 1
            del loss, grads
            for row in rows:  # the tolerance is checked probe by probe, as with one probe per step; a step's later probes are kept (paid for)
                samples.append(row)
                total += row
                mean = total / len(samples)
                if prev is not None and len(samples) >= floor and not converged:
                    scale = np.maximum(np.abs(mean), 1e-12 * np.abs(mean).max() + 1e-300)
                    converged = float(np.max(np.abs(mean - prev) / scale)) < tol
                prev = mean
    return HutchinsonRun(np.array(samples), converged, steps, hvp_calls, mode, probes_per_step, fallback)


def step_stderr(samples: np.ndarray, per_step: int) -> np.ndarray:
    """Standard error of ``samples.mean(axis=0)`` when each run of ``per_step`` consecutive samples
    shares one batch (one step): clustered by step, so the batch-to-batch spread counts, not only the
    probes' (with one probe a step it is the plain ``std / sqrt(n)``).

    >>> x = np.array([[1.0], [1.0], [3.0], [3.0]])   # two steps of two probes, each step's probes agree
    >>> float(step_stderr(x, 1)[0]) < float(step_stderr(x, 2)[0]) == 1.0
    True
    """
    n = len(samples)
    starts = np.arange(0, n, max(per_step, 1))
    if len(starts) < 2:  # one step: only the probes' spread is known
        return samples.std(axis=0, ddof=1) / np.sqrt(n)
    counts = np.diff(np.append(starts, n))
    resid = np.add.reduceat(samples, starts, axis=0) - counts[:, None] * samples.mean(axis=0)
    return np.sqrt((resid**2).sum(axis=0) * len(starts) / (len(starts) - 1)) / n


def estimate_hessian_trace(
    model: nn.Module,
    data: Iterable[Any],
    options: Sequence[OptionLike],
    *,
    tol: float = 1e-3,
    max_iter: int = 100,
    min_iter: int | None = None,
    seed: int = 0,
    probes_per_step: int | None = None,
    hvp: str = "auto",
    **kw: Any,
) -> Sensitivity:
    """HAWQ-V2/V3 table ``Tr(H_l)/n_l * ||Q_k(W_l) - W_l||²`` (see the module docstring).

    ``max_iter`` and ``min_iter`` count probes (samples). Each step takes one batch's loss and
    gradient once and ``probes_per_step`` Rademacher probes on it (default: 8, the fastest per probe
    measured on the digits CNN, or fewer, down to 1, when ``max_iter`` probes at 8 a step would not
    reach every batch, so that the probes stay spread over the batches); ``hvp="auto"`` (default) computes
    their Hessian-vector products in one batched call (``torch.autograd.grad(..., is_grads_batched=True)``),
    falling back to one call per probe when the model's double backward cannot be vmapped (tried once;
    ``meta["hvp_fallback"]`` says why); ``"batched"`` makes that an error, ``"loop"`` always loops.
    Batching changes the cost per probe only: it is the same Hutchinson estimator, and with the same
    seed and ``probes_per_step`` the batched and looped runs draw the same probes and give the same
    traces (to float round-off). ``probes_per_step=1`` is one loss, gradient and product per probe.

    Other keyword arguments are the estimators' shared ones (``layers``, ``include``, ``exclude``,
    ``loss``, ``output_fn``, ``scheme``: see :mod:`mpqopt.adapters.torch.estimators`). ``meta`` records the per-layer
    ``traces``, ``iterations`` (probes), ``steps``, ``probes_per_step``, ``hvp`` ("batched" or "loop"),
    ``hvp_calls``, ``hvp_fallback`` (None, or why "auto" looped), ``converged``, ``forward_passes``
    (reference pass + one per step) and ``backward_passes`` (autograd calls: one gradient per step plus
    ``hvp_calls``). A run that stops at ``max_iter`` before meeting ``tol`` warns with the traces'
    relative standard errors.
    """
    setup = prepare(model, data, options, **kw)
    run = hutchinson_traces(setup, tol=tol, max_iter=max_iter, min_iter=min_iter, seed=seed, probes_per_step=probes_per_step, hvp=hvp)
    samples, iters, converged = run.samples, len(run.samples), run.converged
    trace = samples.mean(axis=0)
    trace_se = step_stderr(samples, run.probes_per_step)
    if not converged:
        # it used to stop here silently (213 s, relative standard errors 13-30 %): say how far it is
        rel = np.divide(trace_se, np.abs(trace), out=np.zeros_like(trace_se), where=trace != 0)  # a zero trace (unused layer) is exact
        worst = int(np.argmax(rel))
        warnings.warn(f"hessian_trace: stopped at max_iter={max_iter} samples without meeting tol={tol:g}; relative standard errors of the traces "
                      f"are up to {float(rel[worst]):.0%} (worst: layer '{setup.names[worst]}'). Raise max_iter, or read "
                      f"the table's std before trusting close entries", stacklevel=2)
    n = np.array([layer.weight_params for layer in setup.layers], dtype=np.float64)
    qerr = np.zeros((len(setup.names), len(setup.options)))
    for i, name in enumerate(setup.names):
        w = setup.cache.module(name).weight.detach()
        for k, opt in enumerate(setup.options):
            qerr[i, k] = float((setup.cache.get(name, opt) - w).double().pow(2).sum())
    values = (trace / n)[:, None] * qerr
    std = (trace_se / n)[:, None] * qerr
    return setup.result(
        values, std, "hessian_trace", traces=trace.tolist(), iterations=iters, steps=run.steps, probes_per_step=run.probes_per_step,
        hvp=run.mode, hvp_calls=run.hvp_calls, hvp_fallback=run.fallback, converged=converged, tol=tol,
        forward_passes=setup.evaluator.num_batches + run.steps, backward_passes=run.steps + run.hvp_calls,
    )
