"""close_exactly: budgets that only an exact total meets (``u <= S`` and ``T - u`` summing to at
most ``L*T - S`` force ``sum u == S``), from assignments a few units off, where no single swap
lands (the case greedy repair gets stuck on, issue 19). Checked in integer arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

import mpqopt
from mpqopt.algorithms.exact_fix import close_exactly
from mpqopt.algorithms.heuristics import is_feasible, repair
from mpqopt.reductions import canonicalize


def _mirrored(L: int, K: int, bits: int, seed: int):
    rng = np.random.default_rng(seed)
    T = 2 ** (bits + 2)
    u = rng.integers(2**bits, 2 ** (bits + 1), (L, K))
    x0 = rng.integers(0, K, L)
    S = int(u[np.arange(L), x0].sum())
    sens = rng.integers(0, 2**bits, (L, K)).astype(float)
    p = mpqopt.Problem([f"l{i}" for i in range(L)], [f"W{k + 2}" for k in range(K)], sens, costs={"u": u.astype(float), "v": (T - u).astype(float)})
    return canonicalize(p, {"u": float(S), "v": float(L * T - S)}, prune=False), u, S


@pytest.mark.parametrize("seed", range(4))
def test_greedy_repair_reaches_the_exact_total(seed: int) -> None:
    model, u, S = _mirrored(40, 6, 20, seed)
    assert model.exact_rows.all()
    start = model.group_start[:-1] + np.random.default_rng(seed + 100).integers(0, 6, 40)  # far off
    fixed = repair(model, start)
    assert fixed is not None and is_feasible(model, fixed)
    chosen = fixed - model.group_start[:-1]
    assert int(u[np.arange(40), chosen].sum()) == S  # to the unit


@pytest.mark.parametrize("seed", range(4))
def test_a_few_units_off_is_closed_in_a_few_groups(seed: int) -> None:
    model, u, S = _mirrored(60, 8, 22, seed)
    rng = np.random.default_rng(seed)
    items = model.group_start[:-1] + rng.integers(0, 8, 60)
    total = int(u[np.arange(60), items - model.group_start[:-1]].sum())
    if total == S:
        pytest.skip("the random start meets the budgets already")
    fixed = close_exactly(model, items)
    assert fixed is not None
    assert int(u[np.arange(60), fixed - model.group_start[:-1]].sum()) == S
    assert is_feasible(model, fixed)


def test_nothing_to_find_returns_none() -> None:
    """Every option of every layer has an even weight: an odd total is out of reach."""
    c = np.array([[2.0, 4.0, 10.0]] * 6)
    p = mpqopt.Problem([f"l{i}" for i in range(6)], ["W2", "W3", "W4"], np.zeros((6, 3)), costs={"u": c, "v": 20 - c})
    model = canonicalize(p, {"u": 23.0, "v": 120.0 - 23.0}, prune=False)
    assert close_exactly(model, model.group_start[:-1] + 2) is None


def test_a_deadline_passing_during_a_half_stops_the_round(monkeypatch) -> None:
    """Found in review: the deadline was checked only between rounds, and one round (two halves of
    up to 2**21 assignments, each sorted) took 6-10 s on the loaded review machine, so
    close_exactly(deadline=now + 0.05) ran ~8 s. A clock that passes the deadline during the first
    half must stop the round before the second half is enumerated."""
    import types

    import mpqopt.algorithms.exact_fix as ef

    model, u, S = _mirrored(40, 6, 20, 0)
    items = model.group_start[:-1] + 1
    clock = [0.0]
    halves = []

    def half(*args):
        halves.append(args[2])
        clock[0] += 10.0  # enumerating a half takes "10 s"
        return real_half(*args)

    real_half = ef._half
    monkeypatch.setattr(ef, "_half", half)
    monkeypatch.setattr(ef, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))  # the module's clock only
    assert ef.close_exactly(model, items, deadline=5.0) is None
    assert len(halves) == 1
