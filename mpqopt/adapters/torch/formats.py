"""Fake quantization to the named storage formats of :mod:`mpqopt.formats` (what ``apply`` and the
estimators use for an option with a ``format``).

- ``int`` formats (``int{b}``, ``int{b}-asym``, ``int{b}-g{G}``, ``int{b}-g{G}-asym``): round to
  nearest in groups of ``G`` weights along each row (the whole row without a group size), scales
  (and zero points) rounded to fp16 as the format stores them. Symmetric: levels
  ``-2^(b-1)..2^(b-1)-1`` times ``max|w| / (2^(b-1)-1)``; asymmetric: levels ``0..2^b-1`` over the
  group's ``[min, max]``, the zero point an fp16 number (not rounded to an integer: the format
  stores it in fp16).
- GGUF types the ``gguf`` package can quantize in numpy: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
  Q8_0, TQ1_0, TQ2_0 and MXFP4 (``mxfp4`` is GGUF's MXFP4): ``dequantize(quantize(w))`` exactly as
  a GGUF file written with that type holds it (computed on the CPU, returned on the weight's device).
- ``fp8-e4m3`` / ``fp8-e5m2``: one fp32 scale per row (``max|w|`` to the largest finite value),
  values rounded by torch's float8 casts.

Not applicable (a :class:`~mpqopt.errors.ProblemError` says so): the K-quants (Q2_K..Q6_K), the
IQ types and NVFP4. gguf 0.19 can only *dequantize* them (its quantizers raise
NotImplementedError), so mpqopt can neither apply them nor measure their error; a problem may still
offer them with a sensitivity table measured elsewhere. A format whose block or group does not
divide a layer's row length is refused, naming the layer and the format.

>>> import torch
>>> from mpqopt.formats import get_format
>>> w = torch.tensor([[0.75, -1.0, 0.25, 0.0]])
>>> quantize_to_format(w, get_format("int2-g2")).tolist()   # groups [0.75, -1], [0.25, 0]: scales 1 and 0.25
[[1.0, -1.0, 0.25, 0.0]]
>>> apply_reason(get_format("Q4_K"))[:40]
'Q4_K: the gguf package can dequantize th'
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import ProblemError
from ...formats import Format
from ..scheme import check_bits, grid_range

__all__ = ["GGUF_QUANTIZABLE", "apply_reason", "nearest_quantizable", "quantize_to_format", "gguf_roundtrip", "row_length"]

# the GGUF types gguf 0.19's numpy code quantizes (testbeds §7); the others it only dequantizes
GGUF_QUANTIZABLE = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "TQ1_0", "TQ2_0", "MXFP4")
_FP8 = {"fp8-e4m3": torch.float8_e4m3fn, "fp8-e5m2": torch.float8_e5m2}


def apply_reason(fmt: Format) -> str | None:
    """Why this adapter cannot quantize weights to ``fmt``, or None when it can.

    >>> from mpqopt.formats import get_format
    >>> apply_reason(get_format("Q4_0")) is None, apply_reason(get_format("int4-g128-asym")) is None
    (True, True)
    """
    if fmt.family == "int":
        return None
    if fmt.gguf_type is not None and fmt.gguf_type in GGUF_QUANTIZABLE:
        return None
    if fmt.family == "fp8" and fmt.name in _FP8:
        return None
    if fmt.family == "gguf":
        return (f"{fmt.name}: the gguf package can dequantize this GGUF type but not quantize it, so mpqopt can neither apply it nor "
                f"measure its error (a table measured elsewhere can still be solved); nearest in size that it can: {', '.join(nearest_quantizable(fmt))} "
                f"or int{fmt.bits}-g32-asym (all: {', '.join(GGUF_QUANTIZABLE)} and the int formats)")
    return f"{fmt.name}: the PyTorch adapter has no quantizer for the {fmt.family} family (it applies int formats, fp8-e4m3/e5m2 and the GGUF types {', '.join(GGUF_QUANTIZABLE)})"


def nearest_quantizable(fmt: Format, count: int = 2) -> list[str]:
    """The ``count`` block types the gguf package quantizes closest to ``fmt`` in bits per weight (the
    integer block types and MXFP4: the ternary TQ types suit only ternary-trained models), what to
    offer instead of a K-quant or IQ type.

    >>> from mpqopt.formats import get_format
    >>> nearest_quantizable(get_format("Q4_K")), nearest_quantizable(get_format("Q6_K"))
    (['Q4_0', 'MXFP4'], ['Q5_1', 'Q5_0'])
    """
    from ...formats import get_format

    blocks = [t for t in GGUF_QUANTIZABLE if t.startswith(("Q", "MX"))]
    return sorted(blocks, key=lambda t: (abs(get_format(t).effective_bits - fmt.effective_bits), t))[:count]


def row_length(weight: torch.Tensor) -> int:
    """Weights in one output row: ``in_features`` of a Linear, ``embedding_dim`` of an Embedding,
    ``in/groups * kernel`` of a convolution."""
    return int(weight[0].numel()) if weight.dim() > 1 else int(weight.numel())


def quantize_to_format(weight: torch.Tensor, fmt: Format, *, name: str = "weight") -> torch.Tensor:
    """Fake-quantized copy of ``weight`` in ``fmt`` (same shape, dtype and device); ``name`` (the
    layer) is named in errors."""
    reason = apply_reason(fmt)
    if reason is not None:
        raise ProblemError(f"layer {name!r}: {reason}")
    rows = row_length(weight)
    bad = fmt.fits(rows)
    if bad is not None:
        raise ProblemError(f"layer {name!r} cannot take format {fmt.name}: {bad}")
    w = weight.detach()
    flat = w.reshape(-1, rows).to(torch.float32)
    if fmt.family == "int":
        out = _int_rtn(flat, fmt)
    elif fmt.family == "fp8":
        out = _fp8(flat, _FP8[fmt.name])
    else:
        out = torch.from_numpy(gguf_roundtrip(flat.cpu().numpy(), str(fmt.gguf_type))).to(w.device)
    return out.reshape(w.shape).to(w.dtype)


def gguf_roundtrip(rows: np.ndarray, type_name: str) -> np.ndarray:
    """``dequantize(quantize(rows))`` with the gguf package (float32 ``[rows, row length]``).

    >>> [round(float(v), 3) for v in gguf_roundtrip(np.linspace(-1, 1, 32, dtype=np.float32)[None], "Q4_0")[0, :3]]
    [-1.0, -0.875, -0.875]
    """
    try:
        from gguf import GGMLQuantizationType, quants
    except ImportError:  # pragma: no cover - the llm extra is missing
        raise ProblemError(f"format {type_name} needs the gguf package: pip install 'mpqopt[llm]'") from None
    qtype = GGMLQuantizationType[type_name]
    data = np.ascontiguousarray(rows, dtype=np.float32)
    return np.asarray(quants.dequantize(quants.quantize(data, qtype), qtype), dtype=np.float32).reshape(data.shape)


def _fp16(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest fp16 value (how the format stores scales and zero points)."""
    return x.to(torch.float16).to(torch.float32)


def _int_rtn(flat: torch.Tensor, fmt: Format) -> torch.Tensor:
    check_bits(fmt.bits, f"format {fmt.name}", fmt.symmetric)
    group = fmt.group_size or flat.shape[1]
    g = flat.reshape(-1, group)
    qmin, qmax = grid_range(fmt.bits, fmt.symmetric)
    if fmt.symmetric:
        scale = _fp16(g.abs().amax(dim=1, keepdim=True) / qmax)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        out = torch.clamp(torch.round(g / safe), qmin, qmax) * scale
    else:
        lo, hi = g.amin(dim=1, keepdim=True), g.amax(dim=1, keepdim=True)
        scale = _fp16((hi - lo) / qmax)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = _fp16(-lo / safe)
        q = torch.clamp(torch.round(g / safe + zero), qmin, qmax)
        # a constant group (scale 0) is stored as its value: scale 0, zero point -value
        out = torch.where(scale > 0, (q - zero) * scale, _fp16(lo).expand_as(g))
    return out.reshape(flat.shape)


def _fp8(flat: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    top = float(torch.finfo(dtype).max)
    scale = flat.abs().amax(dim=1, keepdim=True) / top
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (flat / safe).to(dtype).to(torch.float32) * scale
