"""Data-free sensitivity from the entropy of each layer's quantized weights (after EAGL).

EAGL (Bablani, McKinstry, Esser, Appuswamy, Modha, "Efficient and Effective Methods for Mixed
Precision Neural Network Quantization for Faster, Energy-efficient Inference", arXiv:2301.13330,
2023) chooses which layers to reduce in precision from the entropy of their quantized weight
distribution: a layer whose weights spread over many quantization levels carries more information
at that precision and is kept at higher precision; low-entropy layers are reduced first. No data
and no gradient is needed. (The paper's exact scoring formula could not be checked offline; the
table below is this module's own definition, in the same spirit.)

The table turns this into a loss-like quantity that adds over layers, the information given up by
going from a reference precision down to option ``k``::

    values[l, k] = n_l * (H_l(b_ref) - H_l(min(w_k, b_ref)))        [bits]

where ``n_l`` is the layer's weight count and ``H_l(b) = -Σ_c p_c log2 p_c`` the Shannon entropy of
the histogram of the layer's weights quantized to ``b`` bits (by the estimator's weight scheme),
counted in units of the quantization step: ``c`` runs over the integer grid codes, pooled over the
layer's channels. ``b_ref`` (``reference_bits``) defaults to the largest weight bit-width among the
options, capped at 16 (past that the histogram only counts distinct FP32 values); options at or
above it score 0. With ``per_weight=True`` the factor ``n_l`` is dropped (bits per weight).

``std`` is None: the table is deterministic. Activation bits of an option are ignored. This proxy
sees only the weights, not where the layer sits in the network, nor whether it is used at all (an
unused head scores like any other layer). Measured against ``delta_loss`` at W2: Spearman +0.57
over MiniLM-L6's 36 used layers, but -0.5 on the digits CNN, whose most sensitive layer (the
first conv, 144 weights spread evenly over the grid) loses the least entropy.

>>> import torch; from torch import nn
>>> _ = torch.manual_seed(0)
>>> m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
>>> s = estimate_entropy(m, [2, 4, 8])
>>> s.values.shape, s.std, bool((s.values[:, 0] > s.values[:, 1]).all()), float(s.values[0, 2])
((2, 3), None, True, 0.0)
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from ....errors import ProblemError
from ....options import OptionLike
from ...choices import parse_options
from ...entropy import MAX_REFERENCE_BITS, entropy_table  # noqa: F401 - MAX_REFERENCE_BITS: importable from here too
from ...entropy import code_entropy as shared_code_entropy
from ..layers import discover_layers, resolve_layer_names
from ..perturb import WeightCache
from ..quantizer import WeightScheme
from .base import Sensitivity
_GRID_TOL = 1e-3  # a value is on a step's grid when value/step is this close to an integer


def _fits(q: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Whether every value of each row is an integer multiple of ``step`` (broadcast over rows)."""
    ratio = q / step
    # float32 values: the ratio's rounding error grows with the code, hence the relative term
    return ((ratio - ratio.round()).abs() < _GRID_TOL + 1e-6 * ratio.abs()).all(dim=-1)


def grid_codes(q: torch.Tensor, max_divisor: int = 2**16) -> torch.Tensor:
    """Integer grid codes of a fake-quantized tensor, one row per quantization group.

    Each row's values lie on ``code * step`` (zero is on every grid: symmetric schemes have no
    offset, asymmetric ones an integer zero point). The step is recovered as the largest one on
    which every value of the row lies: ``min |value| / r`` for the smallest integer ``r`` that fits
    (1 when some weight sits on the first level; only sparse rows at high bit-widths need more).

    >>> grid_codes(torch.tensor([[0.3, -0.6, 0.0], [-0.5, 0.5, 1.5]])).tolist()
    [[1, -2, 0], [-1, 1, 3]]
    """
    q = q.detach().to(torch.float64)
    absq = q.abs()
    smallest = torch.where(absq > 0, absq, torch.full_like(absq, float("inf"))).amin(dim=1, keepdim=True)
    step = torch.where(torch.isfinite(smallest), smallest, torch.ones_like(smallest))  # an all-zero row: codes 0
    todo = torch.nonzero(torch.isfinite(smallest).reshape(-1)).reshape(-1)
    r, width = 1, 1
    while todo.numel():
        if r > max_divisor:
            raise ProblemError("entropy: the quantized weights do not lie on a uniform grid (is the weight scheme uniform?)")
        # try `width` divisors at once on the rows still open (few rows once the first tries are done)
        rs = torch.arange(r, r + width, dtype=torch.float64)
        cands = smallest[todo] / rs  # [rows, width]
        fits = _fits(q[todo][:, None, :], cands[..., None])  # [rows, width]
        hit = fits.any(dim=1)
        first = fits.to(torch.int8).argmax(dim=1)
        step[todo[hit], 0] = cands[hit, first[hit]]
        todo = todo[~hit]
        # widen while few rows stay open, keeping the [rows, width, columns] test under ~128 MB
        r, width = r + width, max(1, min(256, width * 4, 2**24 // max(1, todo.numel() * q.shape[1])))
    return torch.round(q / step).to(torch.int64)


def code_entropy(codes: torch.Tensor) -> float:
    """Shannon entropy (bits) of the histogram of integer codes
    (:func:`mpqopt.adapters.entropy.code_entropy`, shared with the ONNX adapter).

    >>> code_entropy(torch.tensor([0, 0, 1, 2]))
    1.5
    """
    return shared_code_entropy(codes.detach().cpu().numpy())


def layer_entropy(cache: WeightCache, name: str, bits: int) -> float:
    """Entropy of layer ``name``'s weights quantized to ``bits`` (codes pooled over its channels)."""
    q = cache.get(name, bits)
    per_channel = cache.scheme.per_channel and q.dim() > 1
    return code_entropy(grid_codes(q.reshape(q.shape[0], -1) if per_channel else q.reshape(1, -1)))


def estimate_entropy(
    model: nn.Module,
    options: Sequence[OptionLike],
    *,
    layers: Sequence[str] | None = None,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    scheme: WeightScheme = WeightScheme(),
    reference_bits: int | None = None,
    per_weight: bool = False,
    **kw: Any,
) -> Sensitivity:
    """EAGL-style table ``n_l * (H_l(b_ref) - H_l(w_k))`` (see the module docstring); data-free.

    ``layers``/``include``/``exclude``/``scheme`` are the estimators' shared keywords (:mod:`mpqopt.adapters.torch.estimators`).
    ``meta`` records ``entropies`` (bits per weight, per layer and option), ``reference_bits`` and
    zero ``forward_passes``/``backward_passes``.
    """
    started = time.perf_counter()
    if kw:
        raise ProblemError(f"entropy is data-free; unexpected arguments {sorted(kw)}")
    opts = parse_options(options)
    found = discover_layers(model, include, exclude)
    if layers is not None:
        resolve_layer_names(model, layers)  # names every unknown layer
        by_name = {layer.name: layer for layer in discover_layers(model)}
        found = [by_name[name] for name in layers]
    cache = WeightCache(model, scheme)
    names = tuple(layer.name for layer in found)
    rows = ((layer.weight_params, lambda bits, name=layer.name: layer_entropy(cache, name, bits)) for layer in found)
    values, entropies, ref = entropy_table(opts, rows, reference_bits=reference_bits, per_weight=per_weight)
    meta = {"seconds": time.perf_counter() - started, "forward_passes": 0, "backward_passes": 0, "reference_bits": ref,
            "per_weight": per_weight, "entropies": entropies.tolist()}
    return Sensitivity(names, opts, values, None, "entropy", None, meta)
