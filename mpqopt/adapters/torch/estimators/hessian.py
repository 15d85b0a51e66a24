"""HAWQ-V2/V3 sensitivity: the average Hessian trace of a layer times its quantization error.

``values[l, k] = Tr(H_l) / n_l * ||Q_k(W_l) - W_l||²`` where ``H_l`` is the block of the loss
Hessian for layer ``l``'s weight (``n_l`` entries) and ``Q_k`` quantizes it to option ``k``'s weight
bits (Dong et al., HAWQ-V2, NeurIPS 2020; Yao et al., HAWQ-V3, ICML 2021). As in HAWQ the factor ½
of the second-order Taylor term is left out: under HAWQ's isotropic assumption
``ΔWᵀ H_l ΔW ≈ Tr(H_l)/n_l ||ΔW||²``, half of ``values`` estimates the loss increase.

Traces come from Hutchinson's estimator ``Tr(H) = E[vᵀHv]`` with Rademacher ``v``: each sample
draws one ``v`` over *all* selected layers' weights and takes one Hessian-vector product (a double
backward pass) on one batch, cycling through the batches; ``v_lᵀ(Hv)_l`` is that sample's trace
estimate for every layer at once. Sampling stops when the running mean of every layer's trace
changes by less than ``tol`` (relative) between two samples, after at least ``min_iter`` samples
(default: every batch once, at least 10), or after ``max_iter``. ``std`` is the standard error of
the mean over the samples (Hutchinson and batch noise together), times the same factor.

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
>>> s.values.shape, bool((s.values[:, 0] > s.values[:, 2]).all()), s.meta["backward_passes"] == 2 * s.meta["iterations"]
((2, 3), True, True)
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
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


def hutchinson_traces(
    setup: Setup, *, tol: float = 1e-3, max_iter: int = 100, min_iter: int | None = None, seed: int = 0
) -> tuple[np.ndarray, int, bool]:
    """Per-sample Hutchinson estimates ``[samples, layers]`` of each layer's Hessian trace, the
    number of samples taken, and whether the ``tol`` criterion was met before ``max_iter``."""
    if not (isinstance(max_iter, int) and max_iter >= 2):
        raise ProblemError(f"hessian_trace: max_iter must be an integer >= 2, got {max_iter!r}")
    if not (tol >= 0):
        raise ProblemError(f"hessian_trace: tol must be >= 0, got {tol!r}")
    ev = setup.evaluator
    floor = min(max_iter, max(10, ev.num_batches)) if min_iter is None else max(2, min(int(min_iter), max_iter))
    weights = [setup.cache.module(name).weight for name in setup.names]
    # the probes are drawn where the weights are (a CPU generator cannot fill a CUDA tensor)
    gen = torch.Generator(device=weights[0].device).manual_seed(seed) if weights else None
    samples: list[np.ndarray] = []
    mean_prev = None
    converged = False
    with weights_requiring_grad(weights):
        for j in range(max_iter):
            b = j % ev.num_batches
            loss = batch_loss_with_graph(ev, b)
            check_finite(float(loss.detach()), f"hessian_trace: the model on batch {b}")
            grads = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
            # A layer the loss does not reach (an unused head) has no gradient and a zero Hessian block;
            # a gradient that is constant in the weights has no graph and a zero block too.
            live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
            vs = [torch.randint(0, 2, w.shape, generator=gen, device=w.device).to(w.dtype).mul_(2).sub_(1) for w in weights]
            row = np.zeros(len(weights))
            if live:
                try:
                    hv = torch.autograd.grad([grads[i] for i in live], weights, grad_outputs=[vs[i] for i in live], allow_unused=True)
                except RuntimeError as exc:
                    raise ProblemError(
                        f"hessian_trace: the model does not support Hessian-vector products (a second backward pass): {exc}. "
                        "Fused kernels often lack it: load transformers models with attn_implementation='eager'"
                    ) from None
                for i, h in enumerate(hv):
                    if h is not None:
                        row[i] = float((vs[i] * h).sum())
            samples.append(row)
            mean = np.mean(samples, axis=0)
            if mean_prev is not None and j + 1 >= floor:
                scale = np.maximum(np.abs(mean), 1e-12 * np.abs(mean).max() + 1e-300)
                if float(np.max(np.abs(mean - mean_prev) / scale)) < tol:
                    converged = True
                    break
            mean_prev = mean
    return np.array(samples), len(samples), converged


def estimate_hessian_trace(
    model: nn.Module,
    data: Iterable[Any],
    options: Sequence[OptionLike],
    *,
    tol: float = 1e-3,
    max_iter: int = 100,
    min_iter: int | None = None,
    seed: int = 0,
    **kw: Any,
) -> Sensitivity:
    """HAWQ-V2/V3 table ``Tr(H_l)/n_l * ||Q_k(W_l) - W_l||²`` (see the module docstring).

    Other keyword arguments are the estimators' shared ones (``layers``, ``include``, ``exclude``,
    ``loss``, ``output_fn``, ``scheme``: see :mod:`mpqopt.adapters.torch.estimators`). ``meta`` records the per-layer
    ``traces``, ``iterations``, ``converged``, ``forward_passes`` (reference pass + one per sample)
    and ``backward_passes`` (two per sample: gradient, then Hessian-vector product). A run that
    stops at ``max_iter`` before meeting ``tol`` warns with the traces' relative standard errors.
    """
    setup = prepare(model, data, options, **kw)
    samples, iters, converged = hutchinson_traces(setup, tol=tol, max_iter=max_iter, min_iter=min_iter, seed=seed)
    trace = samples.mean(axis=0)
    trace_se = samples.std(axis=0, ddof=1) / np.sqrt(iters)
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
        values, std, "hessian_trace", traces=trace.tolist(), iterations=iters, converged=converged, tol=tol,
        forward_passes=setup.evaluator.num_batches + iters, backward_passes=2 * iters,
    )
