"""EAGL's entropy table, the framework-free part shared by the torch and ONNX estimators.

``values[l, k] = n_l · (H_l(b_ref) − H_l(min(w_k, b_ref)))`` in bits: ``H_l(b)`` is the Shannon
entropy of the histogram of layer ``l``'s weight codes at ``b`` bits (each adapter computes the
codes with its own quantizer), ``n_l`` its weight count (dropped with ``per_weight=True``),
``b_ref`` the largest weight bit-width among the options, capped at :data:`MAX_REFERENCE_BITS`.
See :mod:`mpqopt.adapters.torch.estimators.entropy` for the method.

>>> from mpqopt import Option
>>> h = {2: 1.0, 4: 1.5}   # one layer of 10 weights: its entropy at 2 and 4 bits
>>> values, entropies, ref = entropy_table([Option(2), Option(4)], [(10, h.get)])
>>> values.tolist(), ref
([[5.0, 0.0]], 4)
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import ProblemError
from ..options import Option

MAX_REFERENCE_BITS = 16  # past this the histogram only counts distinct FP32 values


def code_entropy(codes: Any) -> float:
    """Shannon entropy (bits) of the histogram of integer codes (any array-like).

    >>> code_entropy([0, 0, 1, 2])
    1.5
    """
    _, counts = np.unique(np.asarray(codes).reshape(-1), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def entropy_table(options: Sequence[Option], layers: Iterable[tuple[int, Callable[[int], float]]], *,
                  reference_bits: int | None = None, per_weight: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """``(values, entropies, b_ref)``: the table above and ``H_l`` per layer and option (``H_l(b_ref)``
    for options at or above ``b_ref``). ``layers`` yields ``(n_l, H_l)`` per layer, ``H_l(bits)``
    a callable (a generator can load one layer's weight at a time)."""
    ref = min(max(o.w for o in options), MAX_REFERENCE_BITS) if reference_bits is None else reference_bits
    if isinstance(ref, bool) or not isinstance(ref, int) or ref < 2:
        raise ProblemError(f"entropy: reference_bits must be an integer >= 2, got {reference_bits!r}")
    entropies, values = [], []
    for count, entropy_at in layers:
        h_ref = entropy_at(ref)
        row = np.array([h_ref if opt.w >= ref else entropy_at(opt.w) for opt in options])
        entropies.append(row)
        values.append((h_ref - row) * (1 if per_weight else count))
    shape = (len(values), len(options))
    return np.array(values, dtype=np.float64).reshape(shape), np.array(entropies, dtype=np.float64).reshape(shape), ref
