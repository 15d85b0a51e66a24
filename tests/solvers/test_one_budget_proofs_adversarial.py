"""Adversarial one-budget proofs of ``mckp`` and ``highs`` against an exact integer oracle.

Random integer instances (strongly correlated ones among them, where the LP bound is nearly tight
and many assignments tie; values far above the weights, where a unit of objective is a tiny
fraction of it) are solved with the paths merged today forced: the DP's neighbourhood pause at once
(``PROBE_WORK``), block steps in chunks of a few states, and the DP's work limit so small that HiGHS
gets the core with the known bound (``known_bound``, ``_meets``). Whatever the path: the objective
is feasible and not below the optimum, the bound not above it, and ``optimal`` means equal to it.
"""

from __future__ import annotations

import numpy as np
import pytest

import mpqopt
from fuzz import examples
from mpqopt import Problem
from mpqopt.algorithms import core_dp
from mpqopt.solvers import mckp

from test_mckp_knapsack_classes import optimum


def _problem(seed: int) -> Problem:
    rng = np.random.default_rng(seed)
    L, K = int(rng.integers(3, 60)), int(rng.integers(2, 9))
    cost = rng.integers(1, 200, (L, K))
    kind = rng.integers(0, 4)
    if kind == 0:  # strongly correlated: value falls by weight + a constant
        sens = -(cost + 7)
    elif kind == 1:  # values far above the weights: one unit is ~1e-12 of the objective
        sens = -(cost * 2**33 + rng.integers(0, 50, (L, K)) * 2**20 + rng.integers(0, 3, (L, K)))
    elif kind == 2:  # weakly correlated
        sens = -(cost + rng.integers(-20, 21, (L, K)))
    else:
        sens = rng.integers(-1000, 1000, (L, K))
    lo, hi = int(cost.min(axis=1).sum()), int(cost.max(axis=1).sum())
    budget = int(rng.integers(lo, hi + 1))
    return Problem([f"l{i}" for i in range(L)], [f"W{k + 1}" for k in range(K)], sens.astype(float),
                   costs={"size_bits": cost.astype(float)}, budgets={"size_bits": float(budget)})


def _check(problem: Problem, solver: str, where: str) -> None:
    expected = optimum(problem)
    got = mpqopt.solve(problem, solver=solver, threads=1, time_limit=30)
    assert got.x is not None, where
    assert got.objective >= expected, where
    assert got.bound is None or got.bound <= expected, f"{where}: bound {got.bound} above the optimum {expected}: {got.message}"
    if got.status == "optimal":
        assert got.objective == expected, f"{where}: 'optimal' {got.objective} vs {expected}: {got.message}"


@pytest.mark.parametrize("path", ["default", "probe", "chunked", "highs_core", "tiny_dp"])
def test_mckp_one_budget_paths_against_the_integer_oracle(path, monkeypatch):
    if path == "probe":
        monkeypatch.setattr(mckp, "PROBE_WORK", 0)
    elif path == "chunked":
        monkeypatch.setattr(core_dp, "CHUNK_STATES", 2)
        monkeypatch.setattr(mckp, "PROBE_WORK", 30)
    elif path in ("highs_core", "tiny_dp"):
        monkeypatch.setattr(mckp, "DP_WORK_BASE", 0 if path == "highs_core" else 40)
        monkeypatch.setattr(mckp, "DP_WORK_PER_ITEM", 0)
        monkeypatch.setattr(mckp, "PROBE_WORK", 10)
    for seed in range(examples(25)):
        _check(_problem(seed), "mckp", f"seed {seed} ({path})")


def test_highs_one_budget_against_the_integer_oracle():
    for seed in range(examples(25)):
        _check(_problem(seed), "highs", f"seed {seed} (highs)")
