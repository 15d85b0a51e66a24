"""Synthetic, MPQ-shaped allocation problems of any size: the one generator tests and benchmarks share.

Every number follows the shape measured problems have (``/work/shared/solver-notes.md``):

* sensitivity ``s_l * 4**-(w - 2)`` (quantization noise power falls ~4x per extra bit) with a
  lognormal per-layer scale ``s_l`` and +-10 % multiplicative noise per entry; options that carry an
  activation width add ``s'_l * 4**-(a - 2)`` with a second lognormal scale (the noise is drawn per
  layer and width, so more activation bits at the same weight width never look worse);
* ``size_bits = params * w``, ``bitops = MACs * w * a`` (``a = 8`` for weight-only options);
* ``latency_ms`` from a per-layer kernel table that grows with bits but is not monotone, as on real
  hardware: odd widths are unpacked from the next native container (1, 2, 4, 8, 16 bits), so W3 is
  slower than W4 and W5..W7 are slower than W8.

Three kinds of network (``kind``):

* ``"cnn"``: five stages at 112^2..7^2 output positions; parameters lognormal, growing 4x per stage,
  so every layer costs ~1e8 MACs (ResNet-like);
* ``"llm"``: transformer blocks of seven matrices (q, k, v, o, gate, up, down) with Llama-3-8B shapes
  (d = 4096, grouped-query k/v of 1024, MLP 14336), repeated; per-projection and per-depth
  sensitivity trends; MACs per token = params;
* ``"groups"``: per-weight-group allocation (LLM scale): every layer is a group of 8192 weights of
  equal cost, sensitivity lognormal with a heavy tail (outlier groups).

>>> from mpqopt.synthetic import mckp_problem
>>> p = mckp_problem(6, options=4, budgets=2, seed=1)
>>> p.option_labels, sorted(p.costs), sorted(p.budgets)
(('W2', 'W3', 'W4', 'W8'), ['bitops', 'latency_ms', 'size_bits'], ['bitops', 'size_bits'])
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .costs import size_bits
from .errors import ProblemError
from .options import Option, OptionLike
from .problem import Problem, freeze

# Bit sets per option count: the widths MPQ papers search over, always keeping the native 4 and 8.
# 8 options is HAQ's W1..W8 space (its latency tables cover exactly these).
DEFAULT_BITS: dict[int, tuple[int, ...]] = {
    1: (8,),
    2: (4, 8),
    3: (4, 6, 8),
    4: (2, 3, 4, 8),
    5: (2, 3, 4, 6, 8),
    6: (2, 3, 4, 5, 6, 8),
    7: (2, 3, 4, 5, 6, 7, 8),
    8: (1, 2, 3, 4, 5, 6, 7, 8),
}
COST_NAMES = ("size_bits", "bitops", "latency_ms")  # budgets=n puts budgets on the first n
KINDS = ("cnn", "llm", "groups")
DEFAULT_ACT_BITS = 8

_NATIVE = np.array([1, 2, 4, 8, 16, 32])  # widths kernels read without unpacking
_UNPACK_PENALTY = 1.3  # odd widths: unpack into the next native container first
_KERNEL_FLOOR = 0.1  # memory / launch share of a kernel that does not shrink with bits
_MACS_PER_MS = 1e9  # 1 TMAC/s at INT8
_LAUNCH_MS = 0.002  # per-kernel overhead (cnn / llm layers are kernels; weight groups are not)

# Llama-3-8B block: (name, params, relative sensitivity): v and down are the touchy ones
_LLM_BLOCK = (
    ("q", 4096 * 4096, 0.6), ("k", 4096 * 1024, 0.6), ("v", 4096 * 1024, 1.5), ("o", 4096 * 4096, 1.0),
    ("gate", 4096 * 14336, 0.8), ("up", 4096 * 14336, 0.8), ("down", 14336 * 4096, 2.0),
)
_GROUP_WEIGHTS = 8192


def default_bits(options: int) -> tuple[int, ...]:
    """The weight bit-widths ``mckp_problem`` uses for ``options`` options (see ``DEFAULT_BITS``);
    more than 8 options use ``1..options``.

    >>> default_bits(4), default_bits(6)
    ((2, 3, 4, 8), (2, 3, 4, 5, 6, 8))
    """
    if isinstance(options, bool) or not isinstance(options, (int, np.integer)) or options < 1:
        raise ProblemError(f"options must be a positive number of options or a list of options, got {options!r}")
    return DEFAULT_BITS.get(int(options), tuple(range(1, int(options) + 1)))


def kernel_factor(bits: np.ndarray) -> np.ndarray:
    """Relative kernel time of ``bits``-wide operands (1.1 at 8 bits): non-native widths pay for
    unpacking from the next native container, so ``kernel_factor(3) > kernel_factor(4)``.

    >>> [round(float(f), 3) for f in kernel_factor(np.array([2, 3, 4, 8]))]
    [0.35, 0.75, 0.6, 1.1]
    """
    bits = np.asarray(bits)
    container = _NATIVE[np.searchsorted(_NATIVE, bits)]
    penalty = np.where(container == bits, 1.0, _UNPACK_PENALTY)
    return _KERNEL_FLOOR + container / 8.0 * penalty


def mckp_problem(
    layers: int,
    options: int | Sequence[OptionLike] = 8,
    budgets: int = 1,
    seed: int = 0,
    *,
    budget_fraction: float = 0.5,
    kind: str = "cnn",
    ties: int = 0,
    fixed: int = 0,
    masked: float = 0.0,
) -> Problem:
    """A random, realistic multiple-choice knapsack problem with ``layers`` layers, deterministic by ``seed``.

    ``options`` is a count (bit sets in ``DEFAULT_BITS``: 4 -> W2, W3, W4, W8; 8 -> W1..W8) or a list
    of options (ints, labels like ``"W4A8"``, ``Option``). All three cost tables ``size_bits``,
    ``bitops`` and ``latency_ms`` are always present; ``budgets`` (0..3) puts a budget on the first ones
    of that list, each at ``budget_fraction`` of the way from the cheapest to the dearest allowed total
    (a relative ``"%"`` budget, so it binds: the unconstrained optimum takes the most bits).

    Structure: ``ties`` groups of 2..4 consecutive layers that must share an option; ``fixed``
    untied layers fixed to the widest option (as first/last layers often are); ``masked`` the
    fraction of (layer, option) entries forbidden, always leaving each tie group an option in common
    and each fixed layer its option. Layer names are ``l{i}`` (cnn), ``b{block}.{proj}`` (llm) or
    ``g{i}`` (groups). With several budgets and ``budget_fraction`` near 0 a problem may be infeasible;
    at the default 0.5 the all-narrowest assignment meets every budget. Size and BitOps budgets cut
    the unconstrained optimum (all widest) off at any fraction below 1; a latency budget only below
    about 0.7 when the widest option is not the slowest (W8 runs faster than W5..W7).

    Vectorized: 1,000,000 x 4 builds in about two seconds, most of it ``Problem``'s own validation.

    >>> p = mckp_problem(1000, 8, budgets=3, seed=0, kind="llm", ties=20, fixed=5, masked=0.2)
    >>> p.num_layers, p.num_options, len(p.ties), len(p.fixed), sorted(p.budgets)
    (1000, 8, 20, 5, ['bitops', 'latency_ms', 'size_bits'])
    >>> lo, hi = p.cost_range("size_bits"); bool(lo < p.budgets["size_bits"] < hi)
    True
    """
    opts = _parse_options(options)
    L, K = _check_args(layers, opts, budgets, budget_fraction, kind, ties, fixed, masked)
    rng = np.random.default_rng(seed)
    w = np.array([o.w for o in opts], dtype=np.float64)
    a = np.array([o.a if o.a is not None else DEFAULT_ACT_BITS for o in opts], dtype=np.float64)
    has_act = np.array([o.a is not None for o in opts])

    names, params, macs, scale, overhead = _layer_facts(kind, L, rng)
    # noise per (layer, width), not per entry, so W4A8 is never worse than W4A4 by noise alone
    w_unique, w_of = np.unique(w, return_inverse=True)
    # in place where a product would make another [L, K] temporary (the same numbers: the same
    # operations in the same order)
    sens = scale[:, None] * 4.0 ** (-(w[None, :] - 2.0))
    sens *= _columns(rng.uniform(0.9, 1.1, (L, w_unique.size)), w_of)
    if has_act.any():
        act_scale = rng.lognormal(mean=-1.0, sigma=1.0, size=L)  # activations: a second, smaller source
        a_unique, a_of = np.unique(a, return_inverse=True)
        act = act_scale[:, None] * 4.0 ** (-(a[None, :] - 2.0)) * rng.uniform(0.9, 1.1, (L, a_unique.size))[:, a_of]
        sens = sens + np.where(has_act[None, :], act, 0.0)

    kernel = kernel_factor(w.astype(np.int64)) * np.sqrt(_NATIVE[np.searchsorted(_NATIVE, a.astype(np.int64))] / 8.0)
    latency = (macs / _MACS_PER_MS)[:, None] * kernel[None, :]
    latency *= rng.uniform(0.97, 1.03, (L, K))
    latency += overhead
    # storage in effective bits (a named format's scales count; = w for plain options), BitOps in data bits
    costs = {"size_bits": size_bits(params, opts), "bitops": macs[:, None] * (w * a)[None, :], "latency_ms": latency}
    for table in (sens, *costs.values()):  # ours alone and final: Problem keeps read-only tables without a copy
        freeze(table)

    tie_groups, tie_first = _tie_groups(L, ties, rng)
    top = int(np.argmax(w))
    fixed_idx = _fixed_layers(L, fixed, tie_first, rng)
    allowed = _mask(L, K, masked, tie_first, fixed_idx, top, rng)
    spec = f"{100.0 * budget_fraction:.15g}%"
    return Problem(
        names,
        opts,
        sens,
        costs=costs,
        budgets={name: spec for name in COST_NAMES[:budgets]},
        ties=[[names[i] for i in group] for group in tie_groups],
        fixed={names[i]: opts[top].label for i in fixed_idx.tolist()},
        allowed=allowed,
        cost_units={"bitops": "bitops"},
        meta={
            "generator": "mpqopt.synthetic.mckp_problem",
            "seed": int(seed), "kind": kind, "budget_fraction": float(budget_fraction),
            "ties": int(ties), "fixed": int(fixed), "masked": float(masked),
        },
    )


# Llama-2-7B's linear layers (d = 4096, MLP 11008, 32 blocks): (GGUF tensor name, out features, in features)
LLAMA_7B_BLOCK = (("attn_q", 4096, 4096), ("attn_k", 4096, 4096), ("attn_v", 4096, 4096), ("attn_output", 4096, 4096),
                  ("ffn_gate", 11008, 4096), ("ffn_up", 11008, 4096), ("ffn_down", 4096, 11008))
GGUF_K_LADDER = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_0")
# llama.cpp's quantization recipes give these more bits: their errors reach the output most directly
_PROJECTION_WEIGHT = {"attn_v": 3.0, "ffn_down": 3.0, "attn_output": 1.5, "attn_q": 0.5, "attn_k": 0.5}


def llm_problem(blocks: int = 32, options: Sequence[OptionLike] = GGUF_K_LADDER, seed: int = 0,
                block: Sequence[tuple[str, int, int]] = LLAMA_7B_BLOCK) -> Problem:
    """A Llama-shaped allocation over named storage formats: ``blocks`` transformer blocks of the
    linear layers in ``block`` (Llama-2-7B's seven by default: 32 blocks make its 224 layers and
    6.48e9 weights), named as in GGUF files (``blk.3.attn_v``), with real shapes.

    ``params`` and ``row_lengths`` (input features) are set, so bits-per-weight budgets work and a
    format whose block does not divide a row leaves that layer's mask. ``size_bits`` counts each
    format's effective bits (scales and block metadata included). Sensitivity: quantization noise
    power ``4**-bits`` of the format's effective bits, times the layer's weight count, a
    per-projection weight (``attn_v`` and ``ffn_down`` 3x, as llama.cpp's recipes assume), 3x for
    the first and last two blocks, a lognormal per-layer factor and +-5 % per entry; deterministic
    by ``seed``. No budgets: give them to :func:`mpqopt.solve` (``"4.0bpw"``, scoped per stage...).

    >>> p = llm_problem()
    >>> p.num_layers, p.option_labels[:2], f"{p.params.sum():.4g}", p.layers[2]
    (224, ('Q2_K', 'Q3_K'), '6.476e+09', 'blk.0.attn_v')
    >>> float(p.costs["size_bits"][0, 2] / p.params[0])  # Q4_K: 256 weights in 144 bytes
    4.5
    """
    if isinstance(blocks, bool) or not isinstance(blocks, (int, np.integer)) or blocks < 1:
        raise ProblemError(f"blocks must be a positive integer, got {blocks!r}")
    opts = _parse_options(options)
    rng = np.random.default_rng(seed)
    names = [f"blk.{b}.{proj}" for b in range(blocks) for proj, _, _ in block]
    params = np.array([out * inp for _ in range(blocks) for _, out, inp in block], dtype=np.float64)
    row_lengths = np.array([inp for _ in range(blocks) for _, _, inp in block], dtype=np.int64)
    projection = np.array([_PROJECTION_WEIGHT.get(proj, 1.0) for _ in range(blocks) for proj, _, _ in block])
    depth = np.repeat(np.where((np.arange(blocks) < 2) | (np.arange(blocks) >= blocks - 2), 3.0, 1.0), len(block))
    scale = params / params.mean() * projection * depth * rng.lognormal(0.0, 0.5, len(names))
    bits = np.array([o.effective_bits for o in opts], dtype=np.float64)
    sens = 1e-3 * scale[:, None] * 4.0 ** (-(bits[None, :] - 2.0)) * rng.uniform(0.95, 1.05, (len(names), len(opts)))
    return Problem(names, opts, sens, costs={"size_bits": size_bits(params, opts, row_lengths)}, params=params, row_lengths=row_lengths,
                   meta={"generator": "mpqopt.synthetic.llm_problem", "seed": int(seed), "blocks": int(blocks)})


def iqp_problem(
    layers: int,
    options: int | Sequence[OptionLike] = 3,
    seed: int = 0,
    *,
    noise: float = 0.1,
    rank: int = 4,
    depth: float = 8.0,
    budget_fraction: float = 0.5,
) -> Problem:
    """A cross-layer (pairwise) problem shaped like measured CLADO matrices, deterministic by ``seed``.

    The separable part is :func:`mckp_problem`'s (cnn-shaped, one size budget). The pairwise matrix
    couples the quantization errors of two layers: ``Omega[(l,o),(m,p)] = e[l,o] e[m,p] (A A^T)[l,m]
    decay(|l-m|)`` with ``e = sqrt(sensitivity)`` (coarser options err more), ``A`` a non-negative
    rank-``rank`` factor (mostly positive interactions), ``decay = exp(-|l-m| / depth)`` (nearby layers
    interact most: block structure by depth), plus symmetric Gaussian noise of relative size ``noise``
    (measured matrices are noisy, which makes them indefinite). Same-layer blocks are zero.

    >>> p = iqp_problem(20, seed=1)
    >>> p.pairwise.shape, bool((p.pairwise == p.pairwise.T).all())
    ((60, 60), True)
    """
    if not isinstance(rank, int) or rank < 1:
        raise ProblemError(f"rank must be a positive integer, got {rank!r}")
    if not (noise >= 0 and depth > 0):
        raise ProblemError(f"noise must be >= 0 and depth > 0, got noise={noise!r}, depth={depth!r}")
    base = mckp_problem(layers, options, 1, seed, budget_fraction=budget_fraction, kind="cnn")
    L, K = base.num_layers, base.num_options
    rng = np.random.default_rng([seed, 1])
    error = np.sqrt(np.maximum(base.sensitivity, 0.0)).ravel()  # (L*K,)
    factor = np.abs(rng.normal(size=(L, rank))) / np.sqrt(rank)
    layer = np.arange(L)
    coupling = (factor @ factor.T) * np.exp(-np.abs(layer[:, None] - layer[None, :]) / depth)
    omega = np.kron(coupling, np.ones((K, K))) * np.outer(error, error)
    jitter = rng.normal(size=omega.shape)
    omega += noise * float(np.abs(omega).mean()) * (jitter + jitter.T) / np.sqrt(2.0)
    same_layer = np.kron(np.eye(L, dtype=bool), np.ones((K, K), dtype=bool))
    omega[same_layer] = 0.0
    meta = {**base.meta, "generator": "mpqopt.synthetic.iqp_problem", "noise": float(noise), "rank": rank, "depth": float(depth)}
    return base.replace(pairwise=omega, meta=meta)


KNAPSACK_CLASSES = ("uncorrelated", "weakly", "strongly", "inverse_strongly", "subset_sum")


def knapsack_problem(layers: int, options: int = 10, kind: str = "uncorrelated", R: int = 1000, seed: int = 0) -> Problem:
    """A classic multiple-choice knapsack instance from the OR literature, as an allocation problem.

    Pisinger's classes ("A minimal algorithm for the multiple-choice knapsack problem", EJOR 83, 1995),
    integer data in ``[1, R]``: ``uncorrelated`` (weight and profit independent), ``weakly``
    (profit = weight + U[-10, 10], at least 1), ``strongly`` (cumulative sums over a class of
    weight U[1, R] and profit weight + 10, sorted: every item is on its class's hull),
    ``inverse_strongly`` (the same with profit drawn first and weight = profit + 10) and ``subset_sum``
    (profit = weight). The capacity is halfway between the cheapest and dearest totals (rounded down).
    Profits become sensitivities ``max profit of the layer - profit`` (integers >= 0), weights the
    ``size_bits`` cost: maximizing profit is minimizing sensitivity. Unlike :func:`mckp_problem`,
    nothing here looks like a network; these classes are hard in different ways (many items of equal
    efficiency) and keep an exact engine honest.

    >>> p = knapsack_problem(50, 10, "strongly", R=1000, seed=1)
    >>> p.num_layers, p.num_options, bool((p.sensitivity == p.sensitivity.round()).all())
    (50, 10, True)
    """
    if kind not in KNAPSACK_CLASSES:
        raise ProblemError(f"kind must be one of {KNAPSACK_CLASSES}, got {kind!r}")
    for name, value in (("layers", layers), ("options", options), ("R", R)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ProblemError(f"{name} must be a positive integer, got {value!r}")
    L, K = int(layers), int(options)
    rng = np.random.default_rng(seed)
    if kind in ("strongly", "inverse_strongly"):
        first = np.sort(rng.integers(1, R + 1, (L, K)), axis=1)
        second = first + 10
        weight, profit = (first, second) if kind == "strongly" else (second, first)
        weight, profit = np.cumsum(weight, axis=1), np.cumsum(profit, axis=1)
    else:
        weight = rng.integers(1, R + 1, (L, K))
        if kind == "uncorrelated":
            profit = rng.integers(1, R + 1, (L, K))
        elif kind == "weakly":
            profit = np.maximum(weight + rng.integers(-10, 11, (L, K)), 1)
        else:
            profit = weight.copy()
    capacity = (int(weight.min(axis=1).sum()) + int(weight.max(axis=1).sum())) // 2
    sensitivity = (profit.max(axis=1, keepdims=True) - profit).astype(np.float64)
    return Problem(
        [f"l{i}" for i in range(L)],
        [Option(k + 1) for k in range(K)],
        sensitivity,
        costs={"size_bits": weight.astype(np.float64)},
        budgets={"size_bits": float(capacity)},
        meta={"generator": "mpqopt.synthetic.knapsack_problem", "kind": kind, "R": int(R), "seed": int(seed)},
    )


# ------------------------------------------------------------------------------------- helpers
def _columns(table: np.ndarray, of: np.ndarray) -> np.ndarray:
    """``table[:, of]``; the table itself when ``of`` takes every column in order (no copy)."""
    return table if np.array_equal(of, np.arange(table.shape[1])) else table[:, of]


def _parse_options(options: int | Sequence[OptionLike]) -> list[Option]:
    if isinstance(options, (int, np.integer)) and not isinstance(options, bool):
        return [Option(b) for b in default_bits(int(options))]
    if isinstance(options, (str, bytes)) or not isinstance(options, Sequence) or not options:
        raise ProblemError(f"options must be a positive number of options or a list of options, got {options!r}")
    return [Option.parse(o) for o in options]


def _check_args(layers, opts, budgets, budget_fraction, kind, ties, fixed, masked) -> tuple[int, int]:
    for name, value in (("layers", layers), ("budgets", budgets), ("ties", ties), ("fixed", fixed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ProblemError(f"{name} must be a non-negative integer, got {value!r}")
    L, K = int(layers), len(opts)
    if L < 1:
        raise ProblemError("layers must be at least 1")
    if budgets > len(COST_NAMES):
        raise ProblemError(f"budgets must be 0..{len(COST_NAMES)} (on {', '.join(COST_NAMES)}), got {budgets}")
    if not 0.0 <= float(budget_fraction) <= 1.0:
        raise ProblemError(f"budget_fraction must lie in [0, 1], got {budget_fraction!r}")
    if kind not in KINDS:
        raise ProblemError(f"kind must be one of {KINDS}, got {kind!r}")
    if ties > L // 4:
        raise ProblemError(f"ties={ties} is too many for {L} layers: at most layers // 4 = {L // 4} tie groups")
    if fixed > L - 4 * ties:
        raise ProblemError(f"fixed={fixed} is too many: at most {L - 4 * ties} layers are guaranteed untied")
    if not 0.0 <= float(masked) < 1.0:
        raise ProblemError(f"masked must be a fraction in [0, 1), got {masked!r}")
    return L, K


def _layer_facts(kind: str, L: int, rng: np.random.Generator):
    """Names, parameter counts, MACs, sensitivity scale and per-option latency overhead of each layer."""
    if kind == "cnn":
        stage = (5 * np.arange(L)) // L  # 0..4
        params = np.maximum(np.rint(1e4 * 4.0**stage * rng.lognormal(0.0, 0.8, L)), 16.0)
        macs = params * (112.0 / 2.0**stage) ** 2
        scale = rng.lognormal(0.0, 1.0, L)
        return list(map("l{}".format, range(L))), params, macs, scale, _LAUNCH_MS
    if kind == "llm":
        proj = np.arange(L) % len(_LLM_BLOCK)
        block = np.arange(L) // len(_LLM_BLOCK)
        blocks = int(block[-1]) + 1
        params = np.array([p for _, p, _ in _LLM_BLOCK], dtype=np.float64)[proj]
        # first and last blocks are the most sensitive (a U-shape over depth), on top of per-layer noise
        depth = 1.0 + 2.0 * np.abs(2.0 * (block + 0.5) / blocks - 1.0) ** 4
        scale = np.array([s for _, _, s in _LLM_BLOCK])[proj] * depth * rng.lognormal(0.0, 0.75, L)
        names = [f"b{b}.{_LLM_BLOCK[p][0]}" for b, p in zip(block.tolist(), proj.tolist())]
        return names, params, params.copy(), scale, _LAUNCH_MS
    params = np.full(L, float(_GROUP_WEIGHTS))
    scale = rng.lognormal(0.0, 1.5, L)
    return list(map("g{}".format, range(L))), params, params.copy(), scale, 0.0


def _tie_groups(L: int, ties: int, rng: np.random.Generator) -> tuple[list[range], np.ndarray]:
    """``ties`` disjoint runs of 2..4 consecutive layers, each inside its own 4-layer slot; also the
    first layer of each layer's tie group (itself when untied)."""
    first = np.arange(L)
    if ties == 0:
        return [], first
    slots = np.sort(rng.choice(L // 4, size=ties, replace=False))
    sizes = rng.integers(2, 5, size=ties)
    groups = [range(4 * s, 4 * s + n) for s, n in zip(slots.tolist(), sizes.tolist())]
    for group in groups:
        first[group.start:group.stop] = group.start
    return groups, first


def _fixed_layers(L: int, fixed: int, tie_first: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if fixed == 0:
        return np.zeros(0, dtype=np.int64)
    tied = np.zeros(L, dtype=bool)
    tied[tie_first != np.arange(L)] = True
    tied[tie_first[tied]] = True  # the first member of each group too
    return np.sort(rng.choice(np.nonzero(~tied)[0], size=fixed, replace=False))


def _mask(L: int, K: int, masked: float, tie_first: np.ndarray, fixed_idx: np.ndarray, top: int, rng: np.random.Generator) -> np.ndarray | None:
    """Forbid a ``masked`` fraction of entries, but keep one 'anchor' option per layer allowed: shared by
    a tie group (so the group keeps an option in common) and equal to the fixed option of fixed layers."""
    if masked == 0.0:
        return None
    allowed = rng.random((L, K)) >= masked
    anchor = rng.integers(0, K, size=L)[tie_first]
    anchor[fixed_idx] = top
    allowed[np.arange(L), anchor] = True
    return allowed
