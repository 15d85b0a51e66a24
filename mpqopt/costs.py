"""Cost models: build ``[layers x options]`` cost tables from layer facts.

>>> from mpqopt import Option
>>> opts = [Option(4, 8), Option(8, 8)]
>>> size_bits([1000, 10], opts).tolist()
[[4000.0, 8000.0], [40.0, 80.0]]
>>> bitops([5, 1], opts).tolist()
[[160.0, 320.0], [32.0, 64.0]]

Options with a storage format (:mod:`mpqopt.formats`) are sized by their effective bits, scales and
zero points included; BitOps still use the data bits:

>>> size_bits([4096], ["int4-g128-asym", "Q4_K", "W4"]).tolist()
[[17408.0, 18432.0, 16384.0]]
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .errors import ProblemError
from .options import Option, OptionLike


def _options(options: Sequence[OptionLike]) -> list[Option]:
    return [Option.parse(o) for o in options]


def _per_layer(name: str, values: Any) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ProblemError(f"{name} must be a list of numbers, one per layer") from None
    if arr.ndim != 1:
        raise ProblemError(f"{name} must be one number per layer, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        raise ProblemError(f"{name}[{int(np.argmax(bad))}] = {arr[bad][0]} must be finite and non-negative")
    return arr


def size_bits(params: Sequence[float], options: Sequence[OptionLike], row_lengths: Sequence[int] | None = None) -> np.ndarray:
    """Weight storage in bits: ``params[l] * effective_bits_o`` (``w_o`` for a plain option).

    With ``row_lengths`` (weights per output row, one per layer) a per-channel format's row scales
    and zero points are counted too: ``params[l] / row_lengths[l] * row_bits_o`` more.

    >>> size_bits([8192], ["fp8-e4m3"], row_lengths=[4096]).tolist()  # 2 rows, one fp32 scale each
    [[65600.0]]
    """
    opts = _options(options)
    per_layer = _per_layer("params", params)
    table = per_layer[:, None] * np.array([o.effective_bits for o in opts], dtype=np.float64)[None, :]
    row_bits = np.array([0 if o.format is None else o.format.row_bits for o in opts], dtype=np.float64)
    if row_lengths is not None:
        rows = _per_layer("row_lengths", row_lengths)
        if rows.shape != per_layer.shape:
            raise ProblemError(f"row_lengths has {rows.size} entries, params {per_layer.size}: give one of each per layer")
        if (rows <= 0).any():
            raise ProblemError(f"row_lengths[{int(np.argmax(rows <= 0))}] must be positive (weights per output row)")
        if row_bits.any():
            table = table + (per_layer / rows)[:, None] * row_bits[None, :]
    return table


def size_bytes(params: Sequence[float], options: Sequence[OptionLike], row_lengths: Sequence[int] | None = None) -> np.ndarray:
    """Weight storage in bytes: :func:`size_bits` / 8."""
    return size_bits(params, options, row_lengths) / 8.0


def bitops(macs: Sequence[float], options: Sequence[OptionLike], default_act_bits: int | None = None) -> np.ndarray:
    """BitOps = ``MACs[l] * w_o * a_o``; options without an activation width use ``default_act_bits``."""
    opts = _options(options)
    a_bits = []
    for o in opts:
        a = o.a if o.a is not None else default_act_bits
        if a is None:
            raise ProblemError(f"option '{o.label}' has no activation bit-width: give default_act_bits for BitOps")
        a_bits.append(a)
    wa = np.array([o.w for o in opts], dtype=np.float64) * np.array(a_bits, dtype=np.float64)
    return _per_layer("macs", macs)[:, None] * wa[None, :]


def latency_from_lut(
    lut: Any,
    options: Sequence[OptionLike],
    w_bits: Sequence[int] | None = None,
    a_bits: Sequence[int] | None = None,
    default_act_bits: int | None = None,
) -> np.ndarray:
    """Look latency up in a table ``lut[layer, w_index, a_index]``.

    ``w_bits``/``a_bits`` name the bit-width of each index along the second and third axis (default
    ``1..N``, HAQ's layout). Every option's (w, a) must be in the table.
    """
    table = np.asarray(lut, dtype=np.float64)
    if table.ndim != 3:
        raise ProblemError(f"latency table must have shape [layers, w_bits, a_bits], got {table.shape}")
    w_axis = list(w_bits) if w_bits is not None else list(range(1, table.shape[1] + 1))
    a_axis = list(a_bits) if a_bits is not None else list(range(1, table.shape[2] + 1))
    if len(w_axis) != table.shape[1] or len(a_axis) != table.shape[2]:
        raise ProblemError(f"latency table axes {table.shape[1:]} do not match w_bits {w_axis} / a_bits {a_axis}")
    if not np.isfinite(table).all() or (table < 0).any():
        raise ProblemError("latency table has negative or non-finite entries")
    cols = []
    for o in _options(options):
        a = o.a if o.a is not None else default_act_bits
        if o.w not in w_axis:
            raise ProblemError(f"option '{o.label}': weight bit-width {o.w} is not in the latency table ({w_axis})")
        if a is None or a not in a_axis:
            raise ProblemError(f"option '{o.label}': activation bit-width {a} is not in the latency table ({a_axis})")
        cols.append(table[:, w_axis.index(o.w), a_axis.index(a)])
    return np.stack(cols, axis=1)
