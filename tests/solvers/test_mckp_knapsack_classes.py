"""``mckp`` on Pisinger's five knapsack classes (issue 19), against an exact integer oracle.

Every class (uncorrelated, weakly, strongly, inverse strongly correlated, subset-sum) at small sizes
and data ranges, by its own generator ``mpqopt.synthetic.knapsack_problem``: the engine's ``optimal``
answer must be the exact optimum, compared as integers, with its bound equal to it. Each instance is
solved five ways: as the engine chooses (greedy meets the rounded LP bound, core DP, or HiGHS on the
core), with the DP's work limit at zero (every core goes to HiGHS from the incumbent), with a
tiny one (the DP stops part-way, after some rounds, and hands over, with any better assignment it
met as the incumbent, after the neighbourhood search), with the DP's block steps cut into chunks
of a few states, and with the DP's first attempt stopped at once (the neighbourhoods improve the
incumbent, and the DP starts over below it), with no DP work allowed but a time limit given (the
deadline bounds the DP instead, and it proves every core), with the rank (cardinality) bound
consulted at the DP's first block, and under a time limit with every rung below the incumbent out of
time at once (the last round alone proves). The oracle is a dynamic program
over integer capacities that shares no code with mpqopt.
"""

from __future__ import annotations

import numpy as np
import pytest

import mpqopt
from mpqopt.algorithms import core_dp
from mpqopt.solvers import mckp
from mpqopt.synthetic import KNAPSACK_CLASSES, knapsack_problem

SIZES = [(3, 4, 30), (8, 5, 60), (25, 8, 40)]  # layers, options, R (the DP oracle runs over every capacity up to the budget)
SEEDS = range(2)


def optimum(problem: mpqopt.Problem) -> int:
    """Least total sensitivity with ``size_bits <= budget``: DP over every integer capacity, in int64."""
    weight = problem.costs["size_bits"].astype(np.int64)
    value = problem.sensitivity.astype(np.int64)
    capacity = int(np.floor(problem.budgets["size_bits"]))
    inf = np.iinfo(np.int64).max // 4
    best = np.zeros(capacity + 1, dtype=np.int64)  # best[c]: least value of the groups so far within c
    for w_row, v_row in zip(weight, value):
        nxt = np.full(capacity + 1, inf, dtype=np.int64)
        for w, v in zip(w_row, v_row):
            if w <= capacity:
                nxt[w:] = np.minimum(nxt[w:], best[: capacity + 1 - w] + v)
        best = nxt
    return int(best[capacity])


@pytest.mark.parametrize("work", ["default", "none", "tiny", "chunked", "probe", "timed", "rank", "rungs"])
@pytest.mark.parametrize("kind", KNAPSACK_CLASSES)
def test_mckp_proves_the_exact_optimum_on_every_class(kind, work, monkeypatch):
    if work == "chunked":  # every DP block step cut into chunks of a few states
        monkeypatch.setattr(core_dp, "CHUNK_STATES", 3)
    elif work == "probe":  # the DP's first attempt stops at once: neighbourhoods, then the DP again
        monkeypatch.setattr(mckp, "PROBE_WORK", 20)
    elif work == "rungs":  # under a time limit every rung below the incumbent runs out of its share at once
        monkeypatch.setattr(mckp, "RUNG_SHARE", 0.0)
    elif work == "rank":  # the rank (cardinality) bound raises the DP's floor at its first block
        monkeypatch.setattr(mckp, "PROBE_WORK", 0)
        monkeypatch.setattr(mckp, "SMALL_CORE", 0)
    elif work != "default":  # "timed": no work at all without a time limit, but one is given
        monkeypatch.setattr(mckp, "DP_WORK_BASE", 0 if work in ("none", "timed") else 200)
        monkeypatch.setattr(mckp, "DP_WORK_PER_ITEM", 0)
    for layers, options, R in SIZES:
        for seed in SEEDS:
            problem = knapsack_problem(layers, options, kind, R=R, seed=seed)
            expected = optimum(problem)
            result = mpqopt.solve(problem, solver="mckp", threads=1, time_limit=600.0 if work in ("timed", "rungs") else None)
            if work == "timed":  # under a time limit the DP's work is the deadline's: no HiGHS core
                assert "HiGHS core" not in result.message, result.message
            where = f"{kind} {layers} x {options} R={R} seed={seed} ({work}): {result.message}"
            assert result.status == "optimal", where
            assert result.objective == expected and result.bound == expected, where
            assert problem.costs["size_bits"][np.arange(layers), result.x].sum() <= problem.budgets["size_bits"], where


def test_the_oracle_agrees_with_enumeration():
    """The DP oracle itself, against every assignment of a few tiny instances."""
    import itertools

    for kind in KNAPSACK_CLASSES:
        problem = knapsack_problem(4, 3, kind, R=20, seed=5)
        weight, value = problem.costs["size_bits"], problem.sensitivity
        totals = [(weight[range(4), x].sum(), value[range(4), x].sum()) for x in itertools.product(range(3), repeat=4)]
        assert optimum(problem) == min(v for w, v in totals if w <= problem.budgets["size_bits"])


@pytest.mark.parametrize("kind", ["weakly", "inverse_strongly"])
def test_a_short_time_limit_is_kept(kind):
    """weakly 4,000 x 10, R=10,000 ran 63 s under a 60 s limit and was abandoned by solve()'s
    watchdog: one DP block step over 500,000 states took seconds without a look at the clock. The
    engine must stop by itself (not abandoned), with an assignment and a valid bound; the time
    bound is generous (2x the limit + 1 s), the point is that it returns."""
    problem = knapsack_problem(4000, 10, kind, R=10_000, seed=0)
    limit = 3.0
    result = mpqopt.solve(problem, solver="mckp", threads=1, time_limit=limit)
    assert result.status in ("optimal", "time_limit"), result.message
    assert not result.stats.get("abandoned"), result.message
    assert result.x is not None and result.bound <= result.objective
    assert result.solve_time_s <= 2 * limit + 1.0, result.message
