"""The core DP's ``refloor`` hook when the floor is raised late in the search, with states already
found: a search that stops at the raised floor returns the optimum (a best state at the floor), or
nothing only where nothing lies at or below the target; never a state above the floor.

``test_cardinality`` raises the floor after the first block, where the best state so far is at most
base itself; here it is raised after a random share of the whole search's work, so that the best
state met so far is often one or a few units above the optimum.
"""

from __future__ import annotations

import numpy as np
import pytest

from fuzz import examples
from mpqopt.algorithms import cardinality, core_dp

from test_cardinality import whole_model_core


@pytest.fixture(autouse=True, params=["lp_bound", "tiny_path"])
def completion_bound(request, monkeypatch):
    """Every case twice: with the LP completion bound on every core (these cores are small enough
    for the tiny path, which skips it), and as the engine runs them (capacity only)."""
    if request.param == "lp_bound":
        monkeypatch.setattr(core_dp, "TINY_CORE_ITEMS", 0)


@pytest.mark.parametrize("seed", range(examples(120)))
def test_floor_raised_after_states_were_found_against_enumeration(seed, monkeypatch):
    rng = np.random.default_rng(40_000 + seed)
    if (case := whole_model_core(rng, monkeypatch, [1, 2, 4])) is None:
        return
    model, optimum, start, base, alternatives = case
    target = optimum + float(rng.choice([-1, 0, 1, 2, 50]))
    whole = core_dp.solve_core(model, base, alternatives, start.lam, target)
    floor = float(rng.choice([optimum, optimum - 1, cardinality.rank_bound(model).bound]))
    after = int(rng.integers(0, whole.work + 1))
    got = core_dp.solve_core(model, base, alternatives, start.lam, target, improve=lambda: None, improve_after=after, refloor=lambda: floor)
    where = f"seed {seed}: target {target}, floor {floor} after {after} of {whole.work} states, optimum {optimum}"
    assert got.complete, where
    if optimum > target:
        assert got.items is None, where
    else:
        assert got.items is not None and model.weights[0, got.items].sum() <= model.rhs[0], where
        assert model.items_objective(got.items) == optimum, where
