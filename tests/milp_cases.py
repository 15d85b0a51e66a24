"""Random small MILP problems (budgets, ties, fixed layers, pairwise terms) shared by the tests of the ``scipy`` backend and of ``.lp`` / ``.mps`` export."""

from __future__ import annotations

import numpy as np

import mpqopt


def _problem(seed: int, budgets: int = 2, ties: bool = False, fixed: bool = False, pairwise: bool = False, layers: int = 5, options: int = 3) -> mpqopt.Problem:
    """Random small problem; budgets at a random point of each cost's range (some infeasible jointly)."""
    rng = np.random.default_rng(seed)
    names = [f"layer.{i}" for i in range(layers)]  # dots: names must survive LP/MPS naming
    costs = {f"c{i}": rng.integers(1, 9, (layers, options)).astype(float) for i in range(budgets)}
    omega = rng.normal(scale=0.3, size=(layers * options,) * 2) if pairwise else None
    problem = mpqopt.Problem(names, [f"W{b}" for b in (2, 4, 8, 6, 3)[:options]], rng.random((layers, options)), costs=costs, pairwise=omega,
                             ties=[(names[0], names[1])] if ties else (), fixed={names[-1]: "W4"} if fixed else None)
    limits = {name: float(lo + rng.uniform(0.2, 0.8) * (hi - lo)) for name, (lo, hi) in ((n, problem.cost_range(n)) for n in costs)}
    return problem.replace(budgets=limits)
