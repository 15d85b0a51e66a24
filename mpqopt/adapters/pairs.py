"""CLADO's pairwise sensitivity, the framework-free part: which layer pairs to measure, and the
tables made from the measured losses (shared by the torch and ONNX estimators).

CLADO's matrix ``Ω`` has ``Ω_ii = 2ΔL_i`` and ``Ω_ij = L(q_i, q_j) − L(q_i) − L(q_j) + L(0)``.
In mpqopt's form ``sᵀx + xᵀPx`` that is ``values = ΔL`` and ``pairwise = P`` with
``P_ij = P_ji = Ω_ij / 2`` and a zero diagonal (:func:`pairwise_terms`); :func:`clado_matrix`
gives ``Ω`` back.

>>> pair_mask(["a", "b", "c"], window=1, pairs=None).astype(int).tolist()   # neighbours only
[[0, 1, 0], [0, 0, 1], [0, 0, 0]]
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from ..errors import ProblemError
from ..options import Option
from .choices import is_identity
from .sensitivity import Sensitivity, mean_and_stderr

PairFilter = Callable[[str, str], bool] | Iterable[tuple[str, str]]


def pair_mask(names: Sequence[str], window: int | None, pairs: PairFilter | None) -> np.ndarray:
    """``mask[a, b]`` (a < b in layer order): is the pair measured?

    ``window``: only pairs at most this many layers apart; ``pairs``: a callable
    ``(layer_a, layer_b) -> bool`` or a list of layer-name pairs (either order).

    >>> pair_mask(["a", "b", "c"], None, [("c", "a")]).astype(int).tolist()
    [[0, 0, 1], [0, 0, 0], [0, 0, 0]]
    """
    L = len(names)
    idx = np.arange(L)
    mask = idx[:, None] < idx[None, :]
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 0:
            raise ProblemError(f"window must be a non-negative number of layers, got {window!r}")
        mask &= (idx[None, :] - idx[:, None]) <= window
    if pairs is None:
        return mask
    keep = np.zeros_like(mask)
    if callable(pairs):
        for a, b in zip(*np.nonzero(mask)):
            keep[a, b] = bool(pairs(names[a], names[b]))
        return mask & keep
    pos = {n: k for k, n in enumerate(names)}
    try:
        listed = list(pairs)
    except TypeError:
        raise ProblemError(f"pairs must be a callable (layer_a, layer_b) -> bool or a list of (layer_a, layer_b), got {type(pairs).__name__}") from None
    for item in listed:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ProblemError(f"pairs entries must be (layer_a, layer_b), got {item!r}")
        for n in item:
            if n not in pos:
                raise ProblemError(f"pairs names unknown layer {n!r}")
        a, b = sorted((pos[item[0]], pos[item[1]]))
        keep[a, b] = True
    return mask & keep


def pairwise_terms(base: np.ndarray, single: np.ndarray, pair: np.ndarray, options: Sequence[Option]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values, std, pairwise)`` from measured losses.

    ``base[b]``: the FP32 loss of batch b; ``single[l, k, b]``: layer l alone at option k (identity
    options are set to ``base`` here: they change nothing); ``pair[l·K+k, m·K+p]``: the mean loss
    over the batches with both applied, NaN where not measured (each pair on one side only).
    ``values`` = ΔL (mean over batches), ``std`` its standard error, ``pairwise`` = ``Ω/2`` off the
    diagonal, mirrored, 0 for unmeasured pairs.

    >>> base = np.array([1.0])
    >>> single = np.array([[[1.5]], [[1.25]]])             # 2 layers, 1 option, 1 batch
    >>> pair = np.array([[np.nan, 2.0], [np.nan, np.nan]])  # both together: 2.0
    >>> values, std, p = pairwise_terms(base, single, pair, [Option(2)])
    >>> values.ravel().tolist(), p.tolist()                 # Ω_01 = 2.0 - 1.5 - 1.25 + 1.0
    ([0.5, 0.25], [[0.0, 0.125], [0.125, 0.0]])
    """
    single = np.array(single, dtype=np.float64)
    for k, opt in enumerate(options):
        if is_identity(opt):
            single[:, k, :] = base
    values, std = mean_and_stderr(single - base[None, None, :], axis=2)
    base_mean = float(base.mean())
    mean_single = (values + base_mean).ravel()
    cross = pair - mean_single[:, None] - mean_single[None, :] + base_mean
    cross[np.isnan(cross)] = 0.0  # unmeasured pairs (and identity options): no interaction
    pairwise = 0.5 * (cross + cross.T)  # each pair was measured on one side: mirror it, halved
    np.fill_diagonal(pairwise, 0.0)
    return values, std, pairwise


def clado_matrix(sensitivity: Sensitivity) -> np.ndarray:
    """CLADO's own ``Ω`` (``Ω_ii = 2ΔL_i``, off-diagonal the measured interactions) from a
    pairwise :class:`~mpqopt.adapters.sensitivity.Sensitivity`: ``2·pairwise + diag(2·values)``."""
    if sensitivity.pairwise is None:
        raise ProblemError(f"this sensitivity ({sensitivity.method}) has no pairwise matrix")
    return 2.0 * np.asarray(sensitivity.pairwise) + np.diag(2.0 * sensitivity.values.ravel())
