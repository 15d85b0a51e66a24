"""Fake quantizers shared by every estimator and by ``apply``.

Weights: uniform, symmetric or asymmetric, one scale per tensor or per output channel (axis 0),
scale from the min/max range or by MSE search over clipping ratios, as a
:class:`~mpqopt.adapters.scheme.WeightScheme` says (framework-free, shared with the ONNX adapter's
numpy quantizer; still importable from here). Activations: per-tensor, asymmetric, range
calibrated on data.

>>> import torch
>>> w = torch.tensor([[0.1, -0.4, 0.25, 0.0]])
>>> quantize_weight(w, 2).tolist()   # symmetric 2-bit: levels {-2,-1,0,1} x 0.4
[[0.0, -0.4000000059604645, 0.4000000059604645, 0.0]]
"""

from __future__ import annotations

import torch

from ..scheme import FULL_PRECISION_BITS, SCALE_METHODS, WeightScheme, check_bits, grid_range

__all__ = ["FULL_PRECISION_BITS", "SCALE_METHODS", "WeightScheme", "quantize_weight", "quantization_error", "quantize_activation"]

# MSE scale search: clipping ratios of the min/max range tried per channel
_MSE_RATIOS = torch.linspace(0.3, 1.0, 36)


def _fake_quant(flat: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    """Quantize rows of ``flat`` to the grid spanning ``[lo, hi]`` per row (column vectors)."""
    qmin, qmax = grid_range(bits, symmetric)
    if symmetric:
        scale = torch.maximum(lo.abs(), hi.abs()) / qmax if qmax > 0 else torch.maximum(lo.abs(), hi.abs())
        zero = torch.zeros_like(scale)
    else:
        lo, hi = torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi))
        scale = (hi - lo) / qmax
        zero = torch.round(-lo / torch.where(scale > 0, scale, torch.ones_like(scale)))
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row stays zero
    q = torch.clamp(torch.round(flat / safe) + zero, qmin, qmax)
    return (q - zero) * safe * (scale > 0)


def quantize_weight(weight: torch.Tensor, bits: int, scheme: WeightScheme = WeightScheme()) -> torch.Tensor:
    """Fake-quantized copy of ``weight`` (same shape and dtype); per-channel means per row of axis 0.

    >>> w = torch.randn(4, 3, 3, 3)
    >>> bool((quantize_weight(w, 8) - w).abs().max() < 0.05)
    True
    """
    if bits >= FULL_PRECISION_BITS:
        return weight.detach().clone()
    check_bits(bits, "weight", scheme.symmetric)
    w = weight.detach()
    flat = w.reshape(w.shape[0], -1) if (scheme.per_channel and w.dim() > 1) else w.reshape(1, -1)
    flat = flat.to(torch.float32)
    lo, hi = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    if scheme.scale == "minmax":
        out = _fake_quant(flat, lo, hi, bits, scheme.symmetric)
    else:
        # Search the clipping ratio per row: clipping outliers often lowers the total error
        best, best_err = None, None
        for r in _MSE_RATIOS.tolist():
            cand = _fake_quant(flat, lo * r, hi * r, bits, scheme.symmetric)
            err = (cand - flat).pow(2).sum(dim=1, keepdim=True)
            if best is None:
                best, best_err = cand, err
            else:
                better = err < best_err
                best = torch.where(better, cand, best)
                best_err = torch.where(better, err, best_err)
        out = best
    return out.reshape(w.shape).to(w.dtype)


def quantization_error(weight: torch.Tensor, bits: int, scheme: WeightScheme = WeightScheme()) -> float:
    """``||Q_b(W) - W||²``, the factor HAWQ multiplies the Hessian trace by.

    >>> quantization_error(torch.ones(2, 2), 8)
    0.0
    """
    w = weight.detach().to(torch.float32)
    return float((quantize_weight(w, bits, scheme) - w).pow(2).sum())


def quantize_activation(x: torch.Tensor, bits: int, lo: float, hi: float) -> torch.Tensor:
    """Per-tensor asymmetric fake quantization of an activation to the calibrated range ``[lo, hi]``.

    >>> quantize_activation(torch.tensor([0.0, 0.26, 1.0]), 2, 0.0, 1.0).tolist()
    [0.0, 0.3333333432674408, 1.0]
    """
    if bits >= FULL_PRECISION_BITS:
        return x
    check_bits(bits, "activation", symmetric=False)
    lo_t = torch.tensor([[float(lo)]], dtype=torch.float32)
    hi_t = torch.tensor([[float(hi)]], dtype=torch.float32)
    out = _fake_quant(x.detach().reshape(1, -1).to(torch.float32), lo_t, hi_t, bits, symmetric=False)
    # straight-through: the value is quantized, the gradient passes as identity (training estimators)
    return x + (out.reshape(x.shape).to(x.dtype) - x).detach()
