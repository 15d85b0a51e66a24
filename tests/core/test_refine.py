"""mpqopt.refine: measured allocations decide, so the answer is never worse than a measured uniform
allocation that fits; with a right table it is the exhaustive optimum. The 'model' here is a true
loss the test defines (not separable: interactions the table does not have)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import brute_force

import mpqopt
from mpqopt.verify import violations


def truth_and_table(seed: int, L: int, K: int, noise: float):
    rng = np.random.default_rng(seed)
    bits = np.arange(K) + 2
    base = rng.lognormal(0, 1, L)[:, None] * 4.0 ** -(bits[None, :] - 2.0)
    inter = rng.normal(0, 0.3, (L, L)) * base.mean()  # joint effects no per-layer table holds
    table = base * rng.lognormal(0, noise, (L, K))  # a noisy, possibly misleading estimate
    layers = [f"l{i}" for i in range(L)]
    labels = [f"W{b}" for b in bits]
    problem = mpqopt.Problem(layers, labels, table, costs={"size_bits": np.outer(rng.integers(1, 6, L), bits).astype(float)})

    def true_loss(x) -> float:
        err = 4.0 ** -(bits[np.asarray(x)] - 2.0)
        return float(base[np.arange(L), x].sum() + err @ np.triu(inter, 1) @ err)

    def measure(assignment: dict[str, str]) -> float:
        return true_loss([labels.index(assignment[n]) for n in layers])

    return problem, true_loss, measure


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), L=st.integers(2, 5), K=st.integers(2, 3), noise=st.sampled_from([0.0, 0.5, 1.5]),
       fraction=st.sampled_from([0.3, 0.5, 0.8]), max_evaluations=st.integers(2, 12))
def test_never_worse_than_a_uniform_allocation_that_fits(seed, L, K, noise, fraction, max_evaluations):
    problem, true_loss, measure = truth_and_table(seed, L, K, noise)
    lo, hi = problem.cost_range("size_bits")
    budgets = {"size_bits": lo + fraction * (hi - lo)}
    r = mpqopt.refine(problem, measure, budgets, max_evaluations=max_evaluations)
    assert violations(problem, r.x, budgets) == []
    assert r.measured == pytest.approx(true_loss(r.x))  # what it reports is what was measured
    assert r.evaluations <= max_evaluations
    for m in r.measurements:
        assert m.measured == pytest.approx(true_loss(m.x)) and violations(problem, m.x, budgets) == []
        assert m.predicted == pytest.approx(problem.evaluate(m.x).objective)  # by the original table
        assert r.measured <= m.measured
    # every uniform allocation that fits, enumerated here: the answer is at least as good (those the
    # budget of measurements allowed were measured; the first ones are always the uniform ones)
    fits = [k for k in range(K) if problem.costs["size_bits"][:, k].sum() <= budgets["size_bits"]]
    measured_uniform = fits[:max_evaluations]
    assert all(r.measured <= true_loss([k] * L) + 1e-12 for k in measured_uniform)
    for (layer, label), (old, new) in r.corrected.items():
        assert old == problem.sensitivity[problem.layer_index(layer), problem.option_index(label)]
        assert new == r.problem.sensitivity[problem.layer_index(layer), problem.option_index(label)]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), L=st.integers(2, 5), K=st.integers(2, 3), fraction=st.sampled_from([0.3, 0.6]))
def test_a_right_separable_table_converges_to_the_exhaustive_optimum_uncorrected(seed, L, K, fraction):
    problem, _, _ = truth_and_table(seed, L, K, 0.0)
    lo, hi = problem.cost_range("size_bits")
    budgets = {"size_bits": lo + fraction * (hi - lo)}
    table = problem.sensitivity

    def measure(assignment):  # the table is exactly the model
        return float(sum(table[i, problem.option_index(assignment[n])] for i, n in enumerate(problem.layers)))

    best, _ = brute_force(problem, budgets)
    r = mpqopt.refine(problem, measure, budgets)
    assert r.converged and r.corrected == {}
    assert r.measured == pytest.approx(best, rel=1e-9)


def test_a_misleading_entry_is_corrected_and_the_answer_beats_the_tables():
    """The table calls one layer's W2 nearly free; measuring the solver's pick exposes it."""
    truth = np.array([[0.9, 0.2, 0.0], [0.5, 0.1, 0.0], [0.1, 0.05, 0.0]])
    table = truth.copy()
    table[0, 0] = 0.01
    p = mpqopt.Problem(["a", "b", "c"], ["W2", "W4", "W8"], table, costs={"size_bits": [[2, 4, 8]] * 3})
    labels = ["W2", "W4", "W8"]

    def measure(assignment):
        return float(sum(truth[i, labels.index(assignment[n])] for i, n in enumerate("abc")))

    naive = mpqopt.solve(p, {"size_bits": 12})
    assert measure(naive.assignment) == pytest.approx(1.0)  # the table's optimum, measured: worse than uniform W4
    r = mpqopt.refine(p, measure, {"size_bits": 12})
    best = min(measure(dict(zip("abc", (labels[k] for k in x)))) for x in itertools.product(range(3), repeat=3)
               if sum((2, 4, 8)[k] for k in x) <= 12)
    assert r.measured == pytest.approx(best) == pytest.approx(0.35)
    assert ("a", "W2") in r.corrected and r.corrected[("a", "W2")][0] == 0.01 and r.corrected[("a", "W2")][1] > 0.01
    assert r.best_uniform.source == "uniform W4" and "corrected" in r.message


def test_a_measurement_within_its_standard_error_corrects_nothing():
    truth = np.array([[0.9, 0.2, 0.0], [0.5, 0.1, 0.0]])
    table = truth * 1.3  # off by 30 %, but the measurements are noisier than that
    p = mpqopt.Problem(["a", "b"], ["W2", "W4", "W8"], table, costs={"size_bits": [[2, 4, 8]] * 2})
    labels = ["W2", "W4", "W8"]

    def measure(assignment):
        return float(sum(truth[i, labels.index(assignment[n])] for i, n in enumerate("ab"))), 10.0

    r = mpqopt.refine(p, measure, {"size_bits": 8})
    assert r.corrected == {} and r.stderr == 10.0


def test_bad_input_is_named():
    p = mpqopt.Problem(["a"], ["W2", "W8"], [[1.0, 0.0]], costs={"size_bits": [[2, 8]]})
    with pytest.raises(mpqopt.MpqoptError, match="must return a number or"):
        mpqopt.refine(p, lambda a: "bad", {"size_bits": 8})
    with pytest.raises(mpqopt.MpqoptError, match="non-finite"):
        mpqopt.refine(p, lambda a: float("nan"), {"size_bits": 8})
    with pytest.raises(mpqopt.ArgumentError, match="measure must be a callable"):
        mpqopt.refine(p, 3, {"size_bits": 8})
    with pytest.raises(mpqopt.ArgumentError, match="max_evaluations must be a whole number >= 1"):
        mpqopt.refine(p, lambda a: 0.0, {"size_bits": 8}, max_evaluations=0)
    with pytest.raises(mpqopt.MpqoptError, match="no allocation meets the budgets"):
        mpqopt.refine(p, lambda a: 0.0, {"size_bits": 1})
