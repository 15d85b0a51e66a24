"""Fake quantization of weight arrays in numpy, with the torch adapter's math (no torch import).

The grid and the scale rules are those of :mod:`mpqopt.adapters.torch.quantizer` (the grid, the
bit checks and the :class:`~mpqopt.adapters.scheme.WeightScheme` are shared code): symmetric
integer grid ``[-2^(b-1), 2^(b-1)-1]`` with ``scale = max|w| / (2^(b-1)-1)``; asymmetric grid
``[0, 2^b-1]`` over ``[min(w, 0), max(w, 0)]`` with an integer zero point; the scale from the
min/max range or by an MSE search over 36 clipping ratios ``linspace(0.3, 1, 36)``; one scale per
tensor (``axis=None``) or per slice along ``axis``, the output-channel axis (0 for Conv and for
Gemm with ``transB=1``, 1 for a MatMul weight stored ``[in, out]``). Arithmetic is float32 as in
torch, so both adapters give the same values to the last bit. A 1-D weight always gets one scale
(as in torch). ``bits >= 32`` returns an unchanged float32 copy.

>>> w = np.array([[0.1, -0.4], [0.25, 0.0]], dtype=np.float32)
>>> quantize_array(w, 2, axis=1).tolist()   # per column: levels {-2,-1,0,1} x (0.25, 0.4)
[[0.0, -0.4000000059604645], [0.25, 0.0]]
>>> scale, zero = grid_params(w, 2, axis=1)
>>> scale.tolist(), zero.tolist()
([0.25, 0.4000000059604645], [0, 0])
"""

from __future__ import annotations

import numpy as np

from ...errors import ProblemError
from ..scheme import FULL_PRECISION_BITS, SCALE_METHODS, check_bits, check_scale, grid_range  # noqa: F401 - SCALE_METHODS: importable from here too
# The clipping ratios the MSE search tries: the float32 values torch.linspace(0.3, 1.0, 36) gives,
# written out (no numpy formula reproduces torch's rounding of all 36; four differ in the last bit)
_MSE_RATIOS = np.array(
    "0.3 0.32000002 0.34 0.36 0.38 0.4 0.42000002 0.44 0.46 0.48000002 0.5 0.52 0.54 0.56 0.58 0.6 0.62 0.64 "
    "0.66 0.68 0.7 0.72 0.74 0.76 0.78000003 0.8 0.82 0.84000003 0.86 0.88 0.9 0.92 0.94 0.96 0.98 1.0".split(),
    dtype=np.float32,
)


def _check(bits: int, symmetric: bool, scale: str) -> None:
    # the torch quantizer's checks and messages, so both adapters reject the same inputs the same way
    check_bits(bits, "weight", symmetric)
    check_scale(scale)


def _rows(w: np.ndarray, axis: int | None) -> tuple[np.ndarray, int | None]:
    """``w`` as float32 rows, one per quantization group, and the normalized axis (None: one group)."""
    w = np.asarray(w)
    if not np.issubdtype(w.dtype, np.floating):
        raise ProblemError(f"can only quantize floating-point weights, got dtype {w.dtype}")
    if axis is None or w.ndim <= 1:
        return w.reshape(1, -1).astype(np.float32), None
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -w.ndim <= axis < w.ndim:
        raise ProblemError(f"channel axis {axis!r} is out of range for a weight of shape {tuple(w.shape)}")
    axis = int(axis) % w.ndim
    return np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1).astype(np.float32), axis


def _unrows(flat: np.ndarray, shape: tuple[int, ...], axis: int | None) -> np.ndarray:
    if axis is None:
        return flat.reshape(shape)
    moved = (shape[axis],) + tuple(s for i, s in enumerate(shape) if i != axis)
    return np.ascontiguousarray(np.moveaxis(flat.reshape(moved), 0, axis))


def _params(lo: np.ndarray, hi: np.ndarray, bits: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row (scale, zero point, nonzero) of the grid spanning ``[lo, hi]`` (column vectors).

    The scale returned is never 0: an all-zero row gets scale 1 and ``nonzero`` False (it stays 0).
    """
    _, qmax = grid_range(bits, symmetric)
    one = np.float32(1.0)
    if symmetric:
        scale = np.maximum(np.abs(lo), np.abs(hi)) / np.float32(qmax)
        zero = np.zeros_like(scale)
    else:
        lo, hi = np.minimum(lo, np.float32(0.0)), np.maximum(hi, np.float32(0.0))
        scale = (hi - lo) / np.float32(qmax)
        zero = np.round(-lo / np.where(scale > 0, scale, one))
    nonzero = scale > 0
    return np.where(nonzero, scale, one), zero, nonzero


def _codes(flat: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int, symmetric: bool) -> np.ndarray:
    """Grid codes relative to the zero point, as float32 integers."""
    qmin, qmax = grid_range(bits, symmetric)
    return np.clip(np.round(flat / scale) + zero, np.float32(qmin), np.float32(qmax)) - zero


def _fake_quant(flat: np.ndarray, scale: np.ndarray, zero: np.ndarray, nonzero: np.ndarray, bits: int, symmetric: bool) -> np.ndarray:
    return (_codes(flat, scale, zero, bits, symmetric) * scale * nonzero).astype(np.float32)


def _search(flat: np.ndarray, bits: int, symmetric: bool, scale: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The chosen grid of every row and the fake-quantized rows: ``(scale, zero, nonzero, out)``."""
    lo, hi = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    if scale == "minmax":
        params = _params(lo, hi, bits, symmetric)
        return (*params, _fake_quant(flat, *params, bits, symmetric))
    best = None
    for r in _MSE_RATIOS:
        # clipping outliers often lowers the total error; the first ratio wins ties, as in torch
        params = _params(lo * r, hi * r, bits, symmetric)
        cand = _fake_quant(flat, *params, bits, symmetric)
        err = np.square(cand - flat).sum(axis=1, keepdims=True, dtype=np.float32)
        if best is None:
            best = [*params, cand, err]
            continue
        better = err < best[4]
        best = [np.where(better, new, old) for new, old in zip((*params, cand, err), best)]
    assert best is not None
    return best[0], best[1], best[2], best[3]


def quantize_array(w: np.ndarray, bits: int, axis: int | None = None, symmetric: bool = True, scale: str = "minmax") -> np.ndarray:
    """Fake-quantized float32 copy of ``w`` (same shape); one scale per slice along ``axis``.

    >>> w = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
    >>> bool(np.abs(quantize_array(w, 8, axis=1) - w).max() < 0.02), quantize_array(w, 32).dtype
    (True, dtype('float32'))
    """
    _check(bits, symmetric, scale)
    if bits >= FULL_PRECISION_BITS:
        return np.array(w, dtype=np.float32)
    shape = np.shape(w)
    flat, axis = _rows(w, axis)
    if flat.size == 0:
        return flat.reshape(shape)
    return _unrows(_search(flat, int(bits), symmetric, scale)[3], shape, axis)


def grid_params(w: np.ndarray, bits: int, axis: int | None = None, symmetric: bool = True, scale: str = "minmax") -> tuple[np.ndarray, np.ndarray]:
    """``(scale, zero_point)`` of the grid :func:`quantize_array` uses, for QDQ export.

    Arrays of shape ``(w.shape[axis],)`` per channel, 0-d per tensor; ``scale`` is float32 and
    never 0 (an all-zero channel gets 1), ``zero_point`` int64 (0 when symmetric). Dequantizing
    ``clip(round(w / scale) + zero_point, grid) - zero_point) * scale`` gives :func:`quantize_array`.

    >>> s, z = grid_params(np.array([-1.0, 0.0, 3.0]), 2, symmetric=False)
    >>> float(s), int(z)
    (1.3333333730697632, 1)
    """
    _check(bits, symmetric, scale)
    if bits >= FULL_PRECISION_BITS:
        raise ProblemError(f"{bits} bits is full precision: there is no quantization grid")
    flat, axis = _rows(w, axis)
    if flat.size == 0:
        raise ProblemError("cannot compute a quantization grid for an empty weight")
    s, z, _, _ = _search(flat, int(bits), symmetric, scale)
    s, z = s.reshape(-1), z.reshape(-1).astype(np.int64)
    return (s, z) if axis is not None else (s.reshape(()), z.reshape(()))


def grid_codes(w: np.ndarray, bits: int, axis: int | None = None, symmetric: bool = True, scale: str = "minmax") -> np.ndarray:
    """Integer codes of :func:`quantize_array`'s result relative to the zero point, one row per
    quantization group: ``quantize_array(w) == codes * scale`` row by row (all-zero rows: 0).

    >>> grid_codes(np.array([[0.1, -0.4], [0.25, 0.0]]), 2, axis=1).tolist()   # rows = columns of w
    [[0, 1], [-1, 0]]
    """
    _check(bits, symmetric, scale)
    if bits >= FULL_PRECISION_BITS:
        raise ProblemError(f"{bits} bits is full precision: there is no quantization grid")
    flat, _ = _rows(w, axis)
    if flat.size == 0:
        return np.zeros(flat.shape, dtype=np.int64)
    s, z, nonzero, _ = _search(flat, int(bits), symmetric, scale)
    return (_codes(flat, s, z, int(bits), symmetric) * nonzero).astype(np.int64)
