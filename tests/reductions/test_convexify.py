"""Convex forms of the cross-layer objective (mpqopt.reductions.convexify): PSD, exact on every one-hot
point (except CLADO's projection), the one-hot shift never larger than the uniform one, and
relaxation bounds below the exhaustive oracle's optimum."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from fuzz import examples

import mpqopt
from mpqopt.reductions import canonicalize
from mpqopt.reductions.convexify import convexify, min_eigenvalue_shift, one_hot_shift, psd_projection, relaxation_bound
from mpqopt.synthetic import iqp_problem

from oracle import brute_force
from strategies import problems

EXACT = ("mineig", "onehot")
QP_SECONDS = 5.0  # HiGHS's QP solver occasionally runs for minutes on a random-sign case; the bound stays valid when stopped


def _dense(matrix) -> np.ndarray:
    return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)


def _assert_psd(matrix) -> None:
    eig = np.linalg.eigvalsh(_dense(matrix))
    assert eig[0] >= -1e-9 * max(np.abs(eig).max(), 1e-300), eig[0]


def _random_points(model, rng, count=20) -> list[np.ndarray]:
    """One-hot points (one item per group), budgets ignored: the identities hold on all of them."""
    sizes = np.diff(model.group_start)
    return [model.group_start[:-1] + rng.integers(0, sizes) for _ in range(count)]


def _canonical_scale(model) -> float:
    q = 0.0 if model.quadratic is None else float(abs(model.quadratic).sum())
    return float(np.abs(model.value).sum()) + q


def _iqp_models():
    for layers, noise, seed in ((5, 0.1, 0), (6, 0.5, 1), (7, 1.0, 2)):
        problem = iqp_problem(layers, 3, seed=seed, noise=noise)
        yield problem, problem.budgets


@pytest.mark.parametrize("case", list(_iqp_models()), ids=["iqp5", "iqp6-noisy", "iqp7-very-noisy"])
def test_exact_forms_on_clado_shaped_problems(case):
    problem, budgets = case
    model = canonicalize(problem, budgets)
    assert np.linalg.eigvalsh(model.quadratic.toarray())[0] < 0  # indefinite: convexifying is needed
    forms = {method: convexify(model, method) for method in EXACT}
    rng = np.random.default_rng(0)
    for method, conv in forms.items():
        assert conv.exact and conv.method == method
        _assert_psd(conv.quadratic)
        assert conv.min_eigenvalue_after == pytest.approx(np.linalg.eigvalsh(_dense(conv.quadratic))[0], abs=1e-9 * _canonical_scale(model))
        for items in _random_points(model, rng):
            assert conv.objective(items) == pytest.approx(model.items_objective(items), rel=1e-9, abs=1e-9 * _canonical_scale(model))
    assert forms["onehot"].shift_total <= forms["mineig"].shift_total
    best, _ = brute_force(problem, budgets)
    optimum = best - model.offset
    bounds = {method: relaxation_bound(model, conv, time_limit=QP_SECONDS) for method, conv in forms.items()}
    uniform = relaxation_bound(model, one_hot_shift(model, refine=False), time_limit=QP_SECONDS)
    tol = 1e-7 * _canonical_scale(model)
    # a smaller shift on every item gives a pointwise larger relaxed objective on the one-hot plane
    assert bounds["mineig"] <= uniform + tol
    for bound in (*bounds.values(), uniform):
        assert bound <= optimum + tol


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=problems(pairwise=True), seed=st.integers(0, 2**32 - 1))
def test_exact_forms_on_random_sign_problems(case, seed):
    """Random-sign (indefinite, asymmetric) matrices of any magnitude, with ties, masks and fixed layers."""
    problem, budgets = case
    model = canonicalize(problem, budgets)
    if model.num_groups == 0:
        return
    scale = _canonical_scale(model)
    uniform = min_eigenvalue_shift(model)
    onehot = one_hot_shift(model)
    flat = one_hot_shift(model, refine=False)
    rng = np.random.default_rng(seed)
    for conv in (uniform, onehot, flat):
        _assert_psd(conv.quadratic)
        for items in _random_points(model, rng, 10):
            assert conv.objective(items) == pytest.approx(model.items_objective(items), rel=1e-9, abs=1e-9 * scale)
    assert onehot.shift_total <= uniform.shift_total * (1 + 1e-12)
    assert flat.shift_total <= uniform.shift_total * (1 + 1e-12)
    assert np.all(flat.diagonal <= uniform.diagonal * (1 + 1e-12))
    best, _ = brute_force(problem, budgets)
    if best is not None:
        for conv in (uniform, onehot):
            bound = relaxation_bound(model, conv, time_limit=QP_SECONDS)
            assert bound is not None
            assert bound <= best - model.offset + 1e-7 * scale


def test_psd_projection_is_psd_inexact_and_gives_no_bound():
    problem = iqp_problem(6, 3, seed=3, noise=0.5)
    model = canonicalize(problem, problem.budgets)
    conv = psd_projection(model)
    assert not conv.exact and conv.method == "psd"
    _assert_psd(conv.quadratic)
    original = model.quadratic.toarray() + np.diag(model.value)
    w = np.linalg.eigvalsh(original)
    assert w[0] < 0 and conv.min_eigenvalue_before == pytest.approx(w[0])
    # the projection is the nearest PSD matrix: it moves exactly the negative part of the spectrum
    assert np.linalg.norm(_dense(conv.quadratic) - original) == pytest.approx(np.linalg.norm(w[w < 0]), rel=1e-9)
    assert not conv.linear.any() and conv.constant == 0.0
    assert relaxation_bound(model, conv) is None


def test_separable_model_convexifies_to_its_lp_bound():
    problem = mpqopt.Problem(["a", "b", "c"], [2, 4, 8], [[0.9, 0.2, 0.0], [0.5, 0.1, 0.0], [0.1, 0.05, 0.0]],
                             costs={"size_bits": [[2, 4, 8]] * 3}, budgets={"size_bits": 14})
    model = canonicalize(problem, problem.budgets)
    best, _ = brute_force(problem, problem.budgets)
    for method in EXACT:
        conv = convexify(model, method)
        assert conv.shift_total == 0.0 and not _dense(conv.quadratic).any()
        assert 0.0 <= relaxation_bound(model, conv) <= best - model.offset + 1e-9  # the MCKP's LP bound


def test_unknown_method_is_rejected():
    problem = iqp_problem(3, seed=0)
    with pytest.raises(mpqopt.SolverError, match="mineig, onehot, psd"):
        convexify(canonicalize(problem, problem.budgets), "sdp")


def test_time_limited_relaxation_still_gives_a_valid_bound():
    # HiGHS stopped early returns a poor point; the bound comes from convexity there, so it stays valid
    problem = iqp_problem(7, 3, seed=6, noise=0.5)
    model = canonicalize(problem, problem.budgets)
    best, _ = brute_force(problem, problem.budgets)
    conv = one_hot_shift(model)
    full = relaxation_bound(model, conv)
    hurried = relaxation_bound(model, conv, time_limit=1e-4)
    assert full <= best - model.offset + 1e-9
    assert hurried is None or hurried <= full + 1e-9
