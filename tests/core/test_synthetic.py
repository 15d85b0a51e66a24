"""The shared synthetic problem generator: deterministic, MPQ-shaped, budgets binding, structure valid.

Expected values are recomputed here from the tables with plain numpy (cost ranges, the
unconstrained optimum, the narrowest assignment), never copied from the generator's output.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import mpqopt
from mpqopt.synthetic import COST_NAMES, DEFAULT_BITS, default_bits, iqp_problem, kernel_factor, mckp_problem
from mpqopt.verify import violations

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out


def _same(p: mpqopt.Problem, q: mpqopt.Problem) -> bool:
    return (
        p.layers == q.layers and p.options == q.options and p.budgets == q.budgets and p.ties == q.ties
        and p.fixed == q.fixed and np.array_equal(p.allowed, q.allowed) and np.array_equal(p.sensitivity, q.sensitivity)
        and all(np.array_equal(p.costs[n], q.costs[n]) for n in COST_NAMES)
    )


def test_deterministic_by_seed():
    args = dict(layers=300, options=8, budgets=3, kind="cnn", ties=10, fixed=5, masked=0.2)
    assert _same(mckp_problem(seed=4, **args), mckp_problem(seed=4, **args))
    other = mckp_problem(seed=5, **args)
    assert not np.array_equal(mckp_problem(seed=4, **args).sensitivity, other.sensitivity)


@pytest.mark.parametrize("kind", ["cnn", "llm", "groups"])
@pytest.mark.parametrize("options", [2, 4, 6, 8])
def test_shapes_and_option_sets(kind, options):
    p = mckp_problem(50, options, budgets=1, seed=1, kind=kind)
    bits = DEFAULT_BITS[options]
    assert p.option_labels == tuple(f"W{b}" for b in bits)
    assert p.sensitivity.shape == (50, options) and len(set(p.layers)) == 50
    assert set(p.costs) == set(COST_NAMES) and list(p.budgets) == ["size_bits"]


def test_bit_sets_are_sorted_mpq_sets_with_native_widths():
    for k in range(1, 13):
        bits = default_bits(k)
        assert len(bits) == k and list(bits) == sorted(set(bits))
        if k >= 2:
            assert {4, 8} <= set(bits)  # the two widths every accelerator supports natively
    with pytest.raises(mpqopt.ProblemError, match="options"):
        default_bits(0)


def test_given_options_with_activation_bits():
    p = mckp_problem(40, ["W4A4", "W4A8", "W8A8"], budgets=2, seed=2)
    assert p.option_labels == ("W4A4", "W4A8", "W8A8")
    bitops = p.costs["bitops"]
    # BitOps = MACs * w * a: the three columns are one MACs vector times 16, 32, 64
    np.testing.assert_allclose(bitops / np.array([16.0, 32.0, 64.0]), np.repeat(bitops[:, :1] / 16.0, 3, axis=1), rtol=1e-12)
    # more activation bits at the same weight width never hurt
    assert (p.sensitivity[:, 1] < p.sensitivity[:, 0]).all()


@pytest.mark.parametrize("kind", ["cnn", "llm", "groups"])
def test_sensitivity_and_costs_have_the_mpq_shape(kind):
    p = mckp_problem(400, 8, budgets=0, seed=3, kind=kind)
    w = np.array([o.w for o in p.options], dtype=float)
    s = p.sensitivity
    # 4x less noise power per extra bit, up to the +-10 % noise on each entry
    ratio = s[:, :-1] / s[:, 1:]
    expected = 4.0 ** np.diff(w)
    assert (ratio >= expected * 0.9 / 1.1 - 1e-12).all() and (ratio <= expected * 1.1 / 0.9 + 1e-12).all()
    # size = params * w, BitOps = MACs * w * 8: one per-layer factor times the bit-widths
    size, bitops = p.costs["size_bits"], p.costs["bitops"]
    np.testing.assert_allclose(size / w, np.repeat(size[:, :1] / w[0], 8, axis=1), rtol=1e-12)
    np.testing.assert_allclose(bitops / (8 * w), np.repeat(bitops[:, :1] / (8 * w[0]), 8, axis=1), rtol=1e-12)
    # latency grows with bits overall, but odd widths are slower than the next native one
    lat = p.costs["latency_ms"]
    col = {b: i for i, b in enumerate(w.astype(int))}
    assert (lat[:, col[3]] > lat[:, col[4]]).all() and (lat[:, col[7]] > lat[:, col[8]]).all()
    assert (lat[:, col[1]] < lat[:, col[2]]).all() and (lat[:, col[2]] < lat[:, col[4]]).all() and (lat[:, col[4]] < lat[:, col[8]]).all()


def test_kernel_factor_penalizes_non_native_widths():
    f = dict(zip(range(1, 9), kernel_factor(np.arange(1, 9))))
    assert f[3] > f[4] and f[5] > f[8] and f[7] > f[8] and f[1] < f[2] < f[4] < f[8]


def test_kinds_have_their_layer_structure():
    llm = mckp_problem(21, 4, seed=0, kind="llm")
    assert llm.layers[:7] == ("b0.q", "b0.k", "b0.v", "b0.o", "b0.gate", "b0.up", "b0.down") and llm.layers[20] == "b2.down"
    params = llm.costs["size_bits"][:, 0] / 2  # W2 column
    np.testing.assert_array_equal(params[:7], params[7:14])  # the block's shapes repeat
    assert params[4] == params[5] == params[6] > params[0] == params[3] > params[1] == params[2]
    groups = mckp_problem(30, 4, seed=0, kind="groups")
    assert (groups.costs["size_bits"] == groups.costs["size_bits"][0]).all()  # equal-size weight groups
    cnn = mckp_problem(1000, 4, seed=0, kind="cnn")
    params = cnn.costs["size_bits"][:, 0] / 2
    assert np.median(params[800:]) > 30 * np.median(params[:200])  # channels grow with depth


@pytest.mark.parametrize("budgets", [1, 2, 3])
@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.7])
def test_budgets_bind_at_the_requested_fraction(budgets, fraction):
    p = mckp_problem(200, 8, budgets=budgets, seed=budgets, budget_fraction=fraction, kind="llm")
    assert list(p.budgets) == list(COST_NAMES[:budgets])
    rows = np.arange(p.num_layers)
    best = p.sensitivity.argmin(axis=1)  # the unconstrained optimum
    for name, limit in p.budgets.items():
        table = p.costs[name]
        lo, hi = table.min(axis=1).sum(), table.max(axis=1).sum()  # untied, unmasked: per-layer extremes
        assert limit == pytest.approx(lo + fraction * (hi - lo), rel=1e-12)
        assert lo < limit < hi
        assert table[rows, best].sum() > limit  # the budget cuts the unconstrained optimum off
    narrowest = np.zeros(p.num_layers, dtype=np.int64)  # W1 everywhere meets every budget here
    assert violations(p, narrowest, p.budgets) == []


def test_ties_fixed_and_masks_are_valid():
    p = mckp_problem(2000, 8, budgets=3, seed=11, ties=150, fixed=40, masked=0.4)
    pos = {name: i for i, name in enumerate(p.layers)}
    assert len(p.ties) == 150
    seen: set[int] = set()
    for group in p.ties:
        idx = [pos[n] for n in group]
        assert 2 <= len(idx) <= 4 and idx == list(range(idx[0], idx[0] + len(idx)))  # consecutive
        assert not seen & set(idx)
        seen |= set(idx)
        assert p.allowed[idx].all(axis=0).any()  # an option every member may take
    assert len(p.fixed) == 40
    for name, label in p.fixed.items():
        assert pos[name] not in seen and label == "W8"  # untied, at the widest option
        assert p.allowed[pos[name], p.option_index(label)]
    assert p.allowed.any(axis=1).all()
    forbidden = 1.0 - p.allowed.mean()
    assert 0.3 < forbidden < 0.4  # 0.4 asked, minus the one anchor option kept per layer
    for name in p.budgets:
        lo, hi = p.cost_range(name)
        assert lo < p.budgets[name] < hi


def test_small_structured_problem_solves_to_the_brute_force_optimum():
    p = mckp_problem(8, 4, budgets=3, seed=5, ties=1, fixed=1, masked=0.25)
    rows = np.arange(p.num_layers)
    best = None
    for combo in itertools.product(range(p.num_options), repeat=p.num_layers):
        x = np.array(combo)
        if not violations(p, x, p.budgets):
            value = p.sensitivity[rows, x].sum()
            best = value if best is None else min(best, value)
    assert best is not None
    result = mpqopt.solve(p, solver="highs")
    assert result.status == "optimal" and result.objective == pytest.approx(best, rel=1e-12)


def test_round_trips_through_a_problem_file(tmp_path):
    p = mckp_problem(60, 4, budgets=2, seed=9, kind="llm", ties=5, fixed=3, masked=0.2)
    mpqopt.save(p, tmp_path / "p.json")
    q = mpqopt.load(tmp_path / "p.json")
    assert _same(p, q) and q.meta["generator"] == "mpqopt.synthetic.mckp_problem"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="rnn"), "kind"),
        (dict(budgets=4), "budgets"),
        (dict(budget_fraction=1.5), "budget_fraction"),
        (dict(ties=3), "ties=3 is too many"),
        (dict(fixed=11), "fixed=11 is too many"),
        (dict(masked=1.0), "masked"),
        (dict(options="W4"), "options"),
        (dict(layers=0), "layers"),
    ],
)
def test_bad_arguments_raise_problem_errors(kwargs, match):
    args = dict(layers=10, options=4)
    args.update(kwargs)
    with pytest.raises(mpqopt.ProblemError, match=match):
        mckp_problem(**args)


def test_builds_a_million_weight_groups():
    # speed sanity (not a timed assertion): fully vectorized, ~2 s at 1,000,000 x 4
    p = mckp_problem(1_000_000, 4, budgets=1, seed=0, kind="groups")
    assert p.sensitivity.shape == (1_000_000, 4) and p.layers[-1] == "g999999"
    lo, hi = p.cost_range("size_bits")
    assert p.budgets["size_bits"] == pytest.approx((lo + hi) / 2, rel=1e-12)


# ------------------------------------------------------------------------- cross-layer matrices
def test_iqp_problem_is_deterministic_and_structured():
    a, b = iqp_problem(30, seed=4), iqp_problem(30, seed=4)
    np.testing.assert_array_equal(a.pairwise, b.pairwise)
    omega = a.pairwise
    K = a.num_options
    assert omega.shape == (30 * K, 30 * K)
    np.testing.assert_array_equal(omega, omega.T)
    for l in range(30):  # two options of one layer are never chosen together: zero blocks
        assert not omega[l * K:(l + 1) * K, l * K:(l + 1) * K].any()
    # mostly positive interactions at low noise, and neighbours couple more than distant layers
    clean = iqp_problem(30, seed=4, noise=0.0).pairwise
    off = clean[~np.kron(np.eye(30, dtype=bool), np.ones((K, K), dtype=bool))]
    assert (off >= 0).all() and (off > 0).mean() > 0.9
    near = np.abs(clean[0:K, K:2 * K]).sum()
    far = np.abs(clean[0:K, 29 * K:30 * K]).sum()
    assert near > far
    # noise makes it indefinite, as measured matrices are
    assert np.linalg.eigvalsh(iqp_problem(30, seed=4, noise=0.5).pairwise).min() < 0


def test_iqp_problem_round_trips_and_exact_solvers_agree(tmp_path):
    problem = iqp_problem(7, seed=2, noise=0.3)
    path = tmp_path / "iqp.npz"
    mpqopt.save(problem, path)
    again = mpqopt.load(path)
    np.testing.assert_array_equal(again.pairwise, problem.pairwise)  # dense in, dense out
    brute = mpqopt.solve(problem, solver="bruteforce")
    linearized = mpqopt.solve(problem, solver="highs")
    assert brute.status == linearized.status == "optimal"
    assert linearized.objective == pytest.approx(brute.objective, rel=1e-9, abs=1e-12)


def test_iqp_problem_rejects_bad_arguments():
    with pytest.raises(mpqopt.ProblemError, match="rank"):
        iqp_problem(5, rank=0)
    with pytest.raises(mpqopt.ProblemError, match="depth"):
        iqp_problem(5, depth=0)


def test_llm_problem_has_llama_7b_shapes_and_effective_bit_sizes():
    """224 layers; weights and rows counted independently from Llama-2-7B's published sizes
    (d 4096, MLP 11008); sizes in each GGUF type's bytes per block (gguf's own table where installed)."""
    from mpqopt.synthetic import GGUF_K_LADDER, llm_problem

    p = llm_problem()
    assert p.num_layers == 224 and p.option_labels == GGUF_K_LADDER and p.layers[6] == "blk.0.ffn_down"
    d, mlp = 4096, 11008
    assert p.params.sum() == 32 * (4 * d * d + 3 * d * mlp)
    assert p.row_lengths.tolist()[:7] == [d, d, d, d, d, d, mlp]
    assert p.allowed.all()  # 4096 and 11008 = 43 x 256: every K-quant super-block fits
    bytes_per_block = {"Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210), "Q8_0": (32, 34)}
    for k, label in enumerate(p.option_labels):
        weights, nbytes = bytes_per_block[label]
        assert np.array_equal(p.costs["size_bits"][:, k], p.params / weights * nbytes * 8)
    # deterministic by seed; more bits never more predicted loss; attn_v above attn_q in expectation
    assert np.array_equal(llm_problem(seed=3).sensitivity, llm_problem(seed=3).sensitivity)
    assert (np.diff(p.sensitivity, axis=1) < 0).all()
    v = p.sensitivity[[p.layer_index(f"blk.{b}.attn_v") for b in range(32)], 2]
    q = p.sensitivity[[p.layer_index(f"blk.{b}.attn_q") for b in range(32)], 2]
    assert np.median(v / q) > 2
    with pytest.raises(mpqopt.ProblemError, match="blocks must be a positive integer"):
        llm_problem(0)


def test_llm_problem_with_bpw_and_stage_budgets_matches_the_milp():
    """The README's worked example at 4 blocks: bpw plus two scoped stage budgets, mckp against HiGHS."""
    from mpqopt.synthetic import llm_problem

    p = llm_problem(4)
    budgets = [mpqopt.Budget("size_bits", "4.0bpw"), mpqopt.Budget("size_bits", 0.97 * 4 * p.params[:14].sum(), layers=["blk.{0..1}.*"], name="gpu0")]
    exact, milp = (mpqopt.solve(p, budgets=budgets, solver=s) for s in ("mckp", "highs"))
    assert exact.status == milp.status == "optimal"
    assert exact.objective == pytest.approx(milp.objective, rel=1e-9)
    assert exact.bpw["size_bits"]["total"] <= 4.0 + 1e-9
    assert exact.costs["size_bits[gpu0:blk.{0..1}.*]"] <= 0.97 * 4 * p.params[:14].sum() * (1 + 1e-12)
