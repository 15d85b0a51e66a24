"""Problem construction: every bad input is refused with a message that names what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

import mpqopt
from mpqopt import Option, Problem, ProblemError
from mpqopt.verify import exact_integer


def make(**overrides):
    kwargs = dict(
        layers=["conv1", "conv2", "fc"],
        options=["W2", "W4", "W8"],
        sensitivity=[[0.9, 0.2, 0.0], [0.5, 0.1, 0.0], [0.3, 0.05, 0.0]],
        costs={"size_bits": [[200.0, 400.0, 800.0], [20.0, 40.0, 80.0], [2.0, 4.0, 8.0]]},
    )
    kwargs.update(overrides)
    return Problem(**kwargs)


def test_valid_problem_exposes_tables_read_only():
    p = make(budgets={"size_bits": 500})
    assert p.num_layers == 3 and p.num_options == 3
    assert p.option_labels == ("W2", "W4", "W8")
    assert p.budgets == {"size_bits": 500.0}
    with pytest.raises(ValueError):
        p.sensitivity[0, 0] = 1.0


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (dict(layers=["a", "a", "b"]), "duplicate layer name 'a'"),
        (dict(layers=["a", "", "b"]), "layer 1"),
        (dict(layers=[]), "at least one layer"),
        (dict(options=["W2", "W2", "W8"]), "duplicate option labels ['W2']"),
        (dict(options=["W2", "X4", "W8"]), "'X4'"),
        (dict(options=[2, {"w": 0}, 8]), "positive integer"),
        (dict(sensitivity=[[0.9, 0.2], [0.5, 0.1], [0.3, 0.05]]), "sensitivity has shape (3, 2), expected (3, 3)"),
        (dict(sensitivity=[[0.9, np.nan, 0.0], [0.5, 0.1, 0.0], [0.3, 0.05, 0.0]]), "layer 'conv1', option 'W4' is nan"),
        (dict(sensitivity=[[0.9, 0.2, 0.0], [0.5, 0.1, 0.0], [0.3, np.inf, 0.0]]), "layer 'fc', option 'W4' is inf"),
        (dict(sensitivity="abc"), "sensitivity must be a numeric table"),
        (dict(costs={"size_bits": [[1, 2, 3], [1, -2, 3], [1, 2, 3]]}), "costs['size_bits']: entry for layer 'conv2', option 'W4' is negative"),
        (dict(costs={"bitops": [[1, 2, 3]]}), "costs['bitops'] has shape (1, 3)"),
        (dict(ties=[["conv1", "nope"]]), "tie group 0 names unknown layer 'nope'"),
        (dict(ties=["conv1"]), "tie group 0 must be a list"),
        (dict(fixed={"nope": "W4"}), "fixed names unknown layer 'nope'"),
        (dict(fixed={"fc": "W5"}), "layer 'fc' is fixed to an unknown option 'W5'"),
        (dict(options=[{"w": 2, "label": 0}, 4, 8]), "option label must be a string"),
        (dict(allowed=[[True, True, True], [False, False, False], [True, True, True]]), "layer 'conv2' has no allowed option"),
        (dict(allowed=[[True, True]]), "allowed has shape (1, 2)"),
        (dict(allowed=[[True, False, False], [False, True, True], [True, True, True]], ties=[["conv1", "conv2"]]), "tied layers ['conv1', 'conv2'] have no allowed option in common"),
        (dict(allowed=[[True, False, True], [True, True, True], [True, True, True]], fixed={"conv1": "W4"}), "layer 'conv1' is fixed to option 'W4', which its allowed mask forbids"),
        (dict(ties=[["conv1", "conv2"]], fixed={"conv1": "W4", "conv2": "W8"}), "fixed to different options"),
        (dict(pairwise=np.zeros((8, 8))), "pairwise has shape (8, 8), expected (9, 9)"),
        (dict(pairwise=np.full((9, 9), np.nan)), "pairwise has non-finite entries"),
        (dict(sensitivity_std=-np.ones((3, 3))), "sensitivity_std: entry for layer 'conv1', option 'W2' is negative"),
        (dict(budgets={"latency": 3}), "budget 'latency' names no cost table"),
        (dict(cost_units={"latency_ms": "ms"}), "cost_units names unknown cost 'latency_ms'"),
    ],
)
def test_bad_input_is_named(overrides, fragment):
    with pytest.raises(mpqopt.MpqoptError) as info:
        make(**overrides)
    assert fragment in str(info.value)


def test_overlapping_tie_groups_merge_transitively():
    p = make(ties=[["conv1", "conv2"], ["conv2", "fc"]])
    assert p.ties == (("conv1", "conv2", "fc"),)
    assert len(p.group_members) == 1
    # merged tables are the member sums
    np.testing.assert_allclose(p.group_table(p.sensitivity)[0], p.sensitivity.sum(axis=0))


def test_fixed_layer_in_tie_fixes_the_group():
    p = make(ties=[["conv1", "fc"]], fixed={"fc": "W8"})
    r = mpqopt.solve(p, budgets={"size_bits": 1e9})
    assert r.assignment["conv1"] == "W8" and r.assignment["fc"] == "W8"


def test_options_accept_several_spellings():
    p = make(options=[Option(2, 8), {"w": 4, "a": 8}, "W8A8"])
    assert p.option_labels == ("W2A8", "W4A8", "W8A8")
    assert p.options[1] == Option(4, 8)
    assert Option(3, label="int3").label == "int3"


def test_evaluate_and_as_indices():
    p = make()
    ev = p.evaluate({"conv1": "W8", "conv2": "W4", "fc": "W2"})
    assert ev.objective == pytest.approx(0.0 + 0.1 + 0.3)
    assert ev.costs["size_bits"] == pytest.approx(800 + 40 + 2)
    with pytest.raises(ProblemError, match="missing \\['fc'\\]"):
        p.evaluate({"conv1": "W8", "conv2": "W4"})
    with pytest.raises(ProblemError, match="unknown option 'W3'"):
        p.evaluate({"conv1": "W3", "conv2": "W4", "fc": "W2"})


def test_evaluate_includes_pairwise_term_and_accepts_sparse():
    omega = np.zeros((9, 9))
    omega[0 * 3 + 2, 1 * 3 + 1] = 0.25  # conv1=W8 with conv2=W4
    dense = make(pairwise=omega)
    sparse = make(pairwise=sp.csr_array(omega))
    x = {"conv1": "W8", "conv2": "W4", "fc": "W8"}
    assert dense.evaluate(x).objective == pytest.approx(0.1 + 0.25)
    assert sparse.evaluate(x).objective == pytest.approx(0.1 + 0.25)
    assert not dense.is_separable


def test_cost_range_respects_masks_ties_and_fixed():
    p = make(allowed=[[False, True, True], [True, True, True], [True, True, True]], fixed={"fc": "W8"})
    lo, hi = p.cost_range("size_bits")
    assert lo == 400 + 20 + 8 and hi == 800 + 80 + 8


def test_replace_revalidates():
    p = make()
    with pytest.raises(ProblemError, match="duplicate layer"):
        p.replace(layers=["a", "a", "b"])
    assert p.replace(budgets={"size_bits": "50%"}).budgets["size_bits"] == pytest.approx((222 + 888) / 2)


# ------------------------------------------------------------------ layer facts and format rules
# GGUF block sizes and group sizes as their specifications state them (not read from mpqopt.formats)
BLOCK = {"Q4_K": 256, "Q6_K": 256, "Q8_0": 32, "int4-g128": 128, "nvfp4": 16, "W4": 1, "int8": 1, "BF16": 1}
FACT_OPTIONS = list(BLOCK)


def facts(row_lengths, options=FACT_OPTIONS, **kwargs):
    L, K = len(row_lengths), len(options)
    return Problem([f"l{i}" for i in range(L)], options, np.zeros((L, K)), params=[1000.0 * (i + 1) for i in range(L)],
                   row_lengths=row_lengths, **kwargs)


@given(st.lists(st.sampled_from([1, 16, 32, 48, 128, 192, 256, 576, 4096, 11008, 14336, 50]), min_size=1, max_size=8))
def test_row_lengths_take_misfit_formats_out_of_the_mask(rows):
    p = facts(rows)
    expected = np.array([[n % BLOCK[o] == 0 for o in FACT_OPTIONS] for n in rows])
    np.testing.assert_array_equal(p.allowed, expected)
    assert p.given_allowed.all()
    reasons = p.disallowed_reasons()
    assert set(reasons) == {(f"l{l}", FACT_OPTIONS[k]) for l, k in zip(*np.nonzero(~expected))}
    for (layer, label), why in reasons.items():
        n = rows[int(layer[1:])]
        assert why.startswith(f"row length {n} is not divisible by {label}'s {BLOCK[label]}-weight ")
    assert p.replace(row_lengths=None).allowed.all()  # the rule follows the row lengths
    np.testing.assert_array_equal(p.replace(budgets={}).allowed, expected)


def test_layer_facts_are_kept_read_only_and_by_replace():
    p = facts([4096, 576], allowed=[[True] * 8, [True, False] + [True] * 6])
    assert p.params.tolist() == [1000.0, 2000.0] and p.params.dtype == np.float64
    assert p.row_lengths.tolist() == [4096, 576] and p.row_lengths.dtype == np.int64
    with pytest.raises(ValueError):
        p.params[0] = 1.0
    q = p.replace(params=[5, 6])
    assert q.params.tolist() == [5.0, 6.0] and q.row_lengths.tolist() == [4096, 576]
    assert q.allowed[1].tolist() == [False, False, True, False, True, True, True, True]  # given mask and the rule together
    assert p.replace(row_lengths=None).allowed[1].tolist() == [True, False] + [True] * 6
    assert make().params is None and make().row_lengths is None and "params" not in repr(make())


@pytest.mark.parametrize("key, value, fragment", [
    ("params", [1, -1, 2], "params: layer 'conv2' has -1"),
    ("params", [1, float("nan"), 2], "params: layer 'conv2' has nan"),
    ("params", [1, 2, float("inf")], "params: layer 'fc' has inf"),
    ("params", [1, 2], "params has shape (2,), expected (3,)"),
    ("params", ["1", "2", "3"], "params must be a finite number >= 0 per layer (weight count), got text"),
    ("params", [True, False, True], "dtype bool"),
    ("params", [[1, 2], [3]], "params must be"),
    ("params", [1 + 2j, 1, 1], "dtype complex128"),
    ("row_lengths", [64, 0, 64], "row_lengths: layer 'conv2' has 0"),
    ("row_lengths", [64, 64, 2.5], "row_lengths: layer 'fc' has 2.5; row_lengths must be a positive integer per layer"),
    ("row_lengths", [64, 64], "row_lengths has shape (2,)"),
    ("row_lengths", [64, 1e300, 64], "row_lengths: layer 'conv2'"),
])
def test_bad_layer_facts_name_the_layer(key, value, fragment):
    with pytest.raises(ProblemError) as err:
        make(**{key: value})
    assert fragment in str(err.value), str(err.value)


def test_a_layer_left_without_options_is_named_with_the_reasons():
    with pytest.raises(ProblemError) as err:
        facts([4096, 576], options=["Q4_K", "Q6_K"])
    assert str(err.value) == ("layer 'l1' has no allowed option: its row length rules out the rest (Q4_K: row length 576 is not "
                              "divisible by Q4_K's 256-weight super-block; Q6_K: row length 576 is not divisible by Q6_K's 256-weight super-block)")
    with pytest.raises(ProblemError, match="layer 'l1' is fixed to option 'Q4_K', which its row length rules out: row length 576"):
        facts([4096, 576], fixed={"l1": "Q4_K"})
    with pytest.raises(ProblemError, match=r"tied layers \['l0', 'l1'\] have no allowed option in common"):
        facts([4096, 576], options=["Q4_K", "Q8_0", "int4-g128"], ties=[["l0", "l1"]], allowed=[[True, False, True], [True, True, False]])


def test_solutions_respect_the_format_rules():
    rng = np.random.default_rng(3)
    rows = [4096, 576, 11008, 48, 14336]
    options = ["Q4_K", "Q8_0", "int4-g128", "BF16"]
    params = [r * 8.0 for r in rows]
    sens = rng.random((5, 4)) * [[3, 0.2, 1, 0]]
    p = Problem([f"l{i}" for i in range(5)], options, sens, costs={"size_bits": mpqopt.size_bits(params, options)},
                params=params, row_lengths=rows, budgets={"size_bits": sum(params) * 6})
    for solver in ("mckp", "bruteforce"):
        result = mpqopt.solve(p, solver=solver)
        assert all(p.allowed[l, k] for l, k in enumerate(result.x))
    assert mpqopt.solve(p, solver="mckp").objective == pytest.approx(mpqopt.solve(p, solver="bruteforce").objective, abs=1e-12)


def _frozen(rows):
    table = np.array(rows, dtype=np.float64)
    table.setflags(write=False)
    return table


def test_a_users_read_only_table_is_copied():
    """Found in review: a caller's read-only array was kept without a copy, but the caller can make
    it writeable again (setflags), change it, and freeze it once more: the problem's table changed
    under it, its cached objective_scale went stale, and exact_integer's cached answer too."""
    mine = _frozen([[3.0, 1.0, 0.0], [2.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    p = make(sensitivity=mine)
    assert exact_integer(p.sensitivity) and exact_integer(mine)
    mine.setflags(write=True)
    mine[0, 0] = 3.5
    mine.setflags(write=False)
    assert p.sensitivity[0, 0] == 3.0 and p.objective_scale == 6.0
    assert not exact_integer(mine)  # not remembered from before the change
    assert make(sensitivity=mine).sensitivity is not mine


def test_a_problems_table_is_kept_and_a_writeable_one_copied():
    """A table a Problem froze itself is kept as it is by another Problem (1,000,000 x 8: no 64 MB
    copy); a writeable one, or a read-only view of writeable data, is copied, so a later write by
    the caller cannot reach the problem."""
    mine = make(sensitivity=_frozen([[0.9, 0.2, 0.0], [0.5, 0.1, 0.0], [0.3, 0.05, 0.0]])).sensitivity
    assert make(sensitivity=mine).sensitivity is mine
    writeable = np.array([[0.9, 0.2, 0.0], [0.5, 0.1, 0.0], [0.3, 0.05, 0.0]])
    view = writeable[:]
    view.setflags(write=False)
    for table in (writeable, view):
        p = make(sensitivity=table)
        assert p.sensitivity is not table and not p.sensitivity.flags.writeable
        writeable[0, 0] = 7.0
        assert p.sensitivity[0, 0] != 7.0
        writeable[0, 0] = 0.9
    assert writeable.flags.writeable  # the caller's array is left as it was
    p = make(sensitivity=mine)
    assert p.replace(budgets={}).sensitivity is p.sensitivity  # replace() copies no table


@pytest.mark.parametrize("key, rows, fragment", [
    ("sensitivity", [[0.9, np.nan, 0.0], [0.5, 0.1, 0.0], [0.3, 0.05, 0.0]], "layer 'conv1', option 'W4' is nan"),
    ("size_bits", [[1, 2, 3], [1, -2, 3], [1, 2, 3]], "costs['size_bits']: entry for layer 'conv2', option 'W4' is negative"),
])
def test_a_read_only_table_is_still_checked(key, rows, fragment):
    table = _frozen(rows)
    with pytest.raises(ProblemError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        make(**({"sensitivity": table} if key == "sensitivity" else {"costs": {key: table}}))


def test_cost_range_and_objective_scale_are_the_tables_extremes():
    """Both are computed once per problem; the numbers are the tables' own (masks respected)."""
    rng = np.random.default_rng(2)
    sens, cost = rng.normal(size=(30, 4)), rng.random((30, 4))
    allowed = rng.random((30, 4)) > 0.3
    allowed[:, 0] = True
    for mask in (None, allowed):
        p = Problem([f"l{i}" for i in range(30)], [2, 3, 4, 8], sens, costs={"size_bits": cost}, allowed=mask)
        ok = np.ones_like(cost, dtype=bool) if mask is None else mask
        want = (sum(min(c for c, a in zip(row, okrow) if a) for row, okrow in zip(cost.tolist(), ok.tolist())),
                sum(max(c for c, a in zip(row, okrow) if a) for row, okrow in zip(cost.tolist(), ok.tolist())))
        assert p.cost_range("size_bits") == pytest.approx(want, rel=1e-12)
        assert p.cost_range("size_bits") == p.cost_range("size_bits")
        assert p.objective_scale == pytest.approx(sum(max(abs(v) for v in row) for row in sens.tolist()), rel=1e-12)


@pytest.mark.parametrize("layers, fragment", [
    (["a", 3, "b"], "layer 1: name must be a non-empty string, got 3"),
    (["a", "b", ""], "layer 2: name must be a non-empty string"),
    (["a", "b", "a"], "duplicate layer name 'a'"),
])
def test_bad_layer_names_are_named(layers, fragment):
    with pytest.raises(ProblemError, match=fragment):
        make(layers=layers)


def test_layer_names_of_a_str_subclass_are_accepted():
    class Name(str):
        pass

    p = make(layers=[Name("conv1"), Name("conv2"), "fc"])
    assert p.layer_index("conv2") == 1


def test_a_sparse_pairwise_matrix_is_copied():
    """Found in review: a float64 csr pairwise matrix was kept sharing the caller's data arrays, so
    a later write by the caller changed the problem (and left its cached objective_scale stale)."""
    Q = sp.csr_array(np.eye(6) * 0.5)
    p = Problem(["a", "b"], [4, 8, 16], np.zeros((2, 3)), pairwise=Q)
    assert p.objective_scale == 3.0
    Q.data[:] = 100.0
    assert p.pairwise.data.max() == 0.5 and p.objective_scale == 3.0
