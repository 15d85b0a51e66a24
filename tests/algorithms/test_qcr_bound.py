"""The node convex (QCR) bound: below the exact optimum of every node (enumerated, no code shared with
the bound), whatever the iterations run or the target, on CLADO-shaped and random-sign instances
with 0-2 budgets; its shift convexifies the one-hot plane; its Frank-Wolfe bound approaches the
relaxation's optimum computed by HiGHS."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from mpqopt.algorithms.iqp_bound import PairBound
from mpqopt.algorithms.qcr_bound import convex_bound, node_shift
from mpqopt.reductions import canonicalize
from mpqopt.reductions.convexify import null_basis, one_hot_shift, relaxation_bound
from mpqopt.synthetic import iqp_problem
from test_iqp_bound import _best_with, _random_sign  # the same small problems and enumeration


def _node_optimum(model, choice, allowed) -> float:
    return float(_best_with(model, choice, allowed).min())


def _random_node(model, rng, depth: int):
    F, n = model.num_groups, model.num_items
    choice = np.full(F, -1, dtype=np.int64)
    for g in rng.choice(F, depth, replace=False):
        choice[g] = rng.integers(model.group_start[g], model.group_start[g + 1])
    allowed = (rng.random(n) < 0.75) | (np.arange(n) == model.group_start[model.item_group])  # one item per group always kept
    return choice, allowed


def _models():
    for seed in range(4):
        problem = iqp_problem(7, 3, seed=seed, noise=[0.05, 0.3, 0.5, 0.8][seed], budget_fraction=[0.2, 0.5, 0.8, 0.35][seed])
        yield canonicalize(problem, problem.budgets)
    for seed in range(3):
        problem = _random_sign(6, 3, seed, budgets=seed)
        yield canonicalize(problem, problem.budgets)


@pytest.mark.parametrize("case", range(7))
def test_node_convex_bound_never_exceeds_the_node_optimum(case):
    model = list(_models())[case]
    rng = np.random.default_rng(case)
    pb = PairBound(model)
    for trial in range(10):
        choice, allowed = _random_node(model, rng, depth=trial % 4)
        view = pb.node(choice, allowed)
        best_with = _best_with(model, choice, allowed)
        optimum = best_with.min()
        child_best = best_with[view.items]
        finite = np.isfinite(child_best)
        tol = 1e-9 * max(1.0, np.abs(best_with[np.isfinite(best_with)]).max(initial=1.0))
        targets = [optimum, optimum - 0.1 * abs(optimum) - 1e-3] if np.isfinite(optimum) else [None]
        for iterations, target in [(1, None), (5, None), (200, None)] + [(200, t) for t in targets]:
            out = convex_bound(view, target, iterations)
            assert 1 <= out.iterations <= iterations or not np.isfinite(out.bound)
            assert out.bound <= optimum + tol, (trial, iterations, target)
            assert (out.child[finite] <= child_best[finite] + tol).all(), (trial, iterations, target)
            # every completion is in some child: each group's weakest child bounds the node
            assert np.minimum.reduceat(out.child, view.sub.group_start[:-1]).max() <= optimum + tol


@pytest.mark.parametrize("case", range(7))
def test_node_shift_makes_the_one_hot_plane_convex(case):
    model = list(_models())[case]
    rng = np.random.default_rng(10 + case)
    pb = PairBound(model)
    for trial in range(6):
        choice, allowed = _random_node(model, rng, depth=trial % 3)
        view = pb.node(choice, allowed)
        d, penalty = node_shift(view)
        N = null_basis(view.sub.group_start)
        # orthonormal columns, each summing to 0 within its group and 0 outside it
        assert np.allclose(N.T @ N, np.eye(N.shape[1])) and np.allclose(np.add.reduceat(N, view.sub.group_start[:-1], axis=0), 0.0)
        S = N.T @ (view.Q + np.diag(d)) @ N
        low = np.linalg.eigvalsh((S + S.T) / 2)[0] if S.size else 0.0
        assert low >= -1e-12 * max(1.0, np.abs(view.Q).sum()) or penalty > 0.0
        assert (d >= 0).all() and penalty >= 0.0


@pytest.mark.parametrize("seed", range(3))
def test_frank_wolfe_bound_reaches_the_one_hot_relaxation_of_the_node(seed):
    """The node's convex form as :func:`one_hot_shift` makes it for the node's model (a larger margin:
    a shift at least as large), its relaxation solved by HiGHS: Frank-Wolfe's bound, from a shift no
    larger, ends within round-off of it or above."""
    problem = iqp_problem(8, 3, seed=seed, noise=0.3, budget_fraction=0.5)
    model = canonicalize(problem, problem.budgets)
    rng = np.random.default_rng(seed)
    choice, allowed = _random_node(model, rng, depth=2)
    view = PairBound(model).node(choice, allowed)
    d, penalty = node_shift(view)
    sub = replace(view.sub, quadratic=sp.csr_array(view.Q))
    reference = one_hot_shift(sub)
    assert penalty == 0.0 and (d <= reference.diagonal + 1e-12).all()
    highs = relaxation_bound(sub, reference) + view.constant
    fw = convex_bound(view, None, 3000).bound
    assert fw >= highs - 1e-3 * max(1.0, abs(highs))
    assert fw <= _node_optimum(model, choice, allowed) + 1e-9


@pytest.mark.parametrize("fail", ["cholesky", "eigh"])
def test_fallbacks_of_the_shift_keep_the_bound_valid(monkeypatch, fail):
    """Where the Cholesky check fails the smallest eigenvalue decides (and is paid for if < 0); where the generalized
    eigenvalue fails a uniform bound on the scaled shift replaces it: bounds stay below every node optimum."""
    from mpqopt.algorithms import qcr_bound

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("forced")

    monkeypatch.setattr(qcr_bound.sla, fail, broken)
    model = list(_models())[1]
    rng = np.random.default_rng(7)
    pb = PairBound(model)
    for trial in range(6):
        choice, allowed = _random_node(model, rng, depth=trial % 3)
        view = pb.node(choice, allowed)
        d, penalty = node_shift(view)
        assert penalty >= 0.0 and (d >= 0.0).all()
        best_with = _best_with(model, choice, allowed)
        out = convex_bound(view, None, 100)
        assert out.bound <= best_with.min() + 1e-9
        finite = np.isfinite(best_with[view.items])
        assert (out.child[finite] <= best_with[view.items][finite] + 1e-9).all()
