"""Lagrangian bounds on integer objectives hold to the unit (``mpqopt.algorithms.lagrangian``).

:func:`gap_closed` calls an integer objective optimal when the bound lies within half a unit of it,
so the bound must not exceed the exact L(lam) at all, even at magnitudes near 2**52 where float64
sums round by half a unit and more. Checked against L(lam) in exact rational arithmetic (the float
multipliers taken as the exact numbers they are), and against exhaustive search: no assignment
worse than the optimum is called optimal.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest

from fuzz import examples
from mpqopt import Problem
from mpqopt.algorithms.hull import greedy
from mpqopt.algorithms.lagrangian import gap_closed, lagrangian_bound
from mpqopt.reductions import canonicalize


def _huge_integer_model(seed: int):
    """Strongly correlated integer knapsacks whose values sum to almost 2**53 (integral objective)."""
    rng = np.random.default_rng(seed)
    L = int(rng.integers(4, 10))
    w = rng.integers(1, 30, (L, 2))
    v = -(w * (2**53 // L // 30 - 2**41) + rng.integers(0, 2 ** int(rng.integers(1, 40)), (L, 2)))
    budget = float(rng.integers(int(w.min(1).sum()), int(w.max(1).sum()) + 1))
    problem = Problem([f"l{i}" for i in range(L)], ["W2", "W4"], v.astype(float), costs={"size_bits": w.astype(float)})
    model = canonicalize(problem, {"size_bits": budget}, prune=False)
    assert model.integral_objective
    return model


def _exact_bound(model, lam: float) -> Fraction:
    q = Fraction(lam)
    adjusted = [Fraction(v) + q * Fraction(w) for v, w in zip(model.value.tolist(), model.weights[0].tolist())]
    starts = model.group_start.tolist()
    return sum(min(adjusted[a:b]) for a, b in zip(starts[:-1], starts[1:])) - q * Fraction(float(model.rhs[0]))


@pytest.mark.parametrize("seed", [638] + list(range(examples(60))))
def test_integer_bounds_never_exceed_the_exact_lagrangian(seed):
    """Seed 638: the float bound was 0.5 above the exact L(lam), and ``gap_closed`` proved an
    assignment one unit above the optimum 'optimal'."""
    model = _huge_integer_model(seed)
    start = greedy(model)
    rng = np.random.default_rng(seed)
    for lam in (start.lam, start.lam * (1 + 1e-9 * rng.normal()), float(rng.random()) * 2 * start.lam):
        got = lagrangian_bound(model, np.array([lam]))[0]
        assert Fraction(got) <= _exact_bound(model, lam), f"seed {seed}, lam {lam!r}"
    groups = [range(a, b) for a, b in zip(model.group_start[:-1], model.group_start[1:])]
    feasible = [np.array(c) for c in itertools.product(*groups) if model.weights[0, list(c)].sum() <= model.rhs[0]]
    best = min(int(model.value[c].sum()) for c in feasible)
    bound = lagrangian_bound(model, np.array([start.lam]))[0]
    for items in feasible:
        if int(model.value[items].sum()) > best:
            assert not gap_closed(model, items, bound), f"seed {seed}: {int(model.value[items].sum())} called optimal, the optimum is {best}"
