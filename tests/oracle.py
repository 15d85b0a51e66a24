"""An independent exhaustive oracle: enumerates every raw assignment of a Problem and checks each
constraint directly, sharing no code with mpqopt's reductions or backends."""

from __future__ import annotations

import itertools

import numpy as np


def brute_force(problem, budgets: dict[str, float], rtol: float = 1e-12, scopes: dict | None = None):
    """(best objective, list of optimal assignments as index tuples) or (None, []) if infeasible.

    ``scopes`` maps a budget key that is not a cost name to ``(cost name, layer names it sums)``,
    worked out by the test itself (scoped budgets), so the oracle shares no scope matching with mpqopt.
    """
    L, K = problem.num_layers, problem.num_options
    scopes = scopes or {}
    rows = {}  # budget key -> (cost table, layer indices summed)
    for name in budgets:
        cost, members = scopes.get(name, (name, problem.layers))
        rows[name] = (problem.costs[cost], [problem.layers.index(n) for n in members])
    index = {name: i for i, name in enumerate(problem.layers)}
    label_index = {o.label: k for k, o in enumerate(problem.options)}
    best, argbest = None, []
    # ties within round-off of the sums (relative to the problem's own magnitude, not to 1)
    tie = 1e-12 * problem.objective_scale
    for x in itertools.product(range(K), repeat=L):
        if not all(problem.allowed[l, x[l]] for l in range(L)):
            continue
        if any(x[index[n]] != label_index[lab] for n, lab in problem.fixed.items()):
            continue
        if any(len({x[index[n]] for n in group}) > 1 for group in problem.ties):
            continue
        if any(sum(rows[name][0][l, x[l]] for l in rows[name][1]) > limit + rtol * abs(limit) for name, limit in budgets.items()):
            continue
        value = sum(problem.sensitivity[l, x[l]] for l in range(L))
        if problem.pairwise is not None:
            flat = [l * K + x[l] for l in range(L)]
            omega = np.asarray(problem.pairwise.todense() if hasattr(problem.pairwise, "todense") else problem.pairwise)
            value += sum(omega[i, j] for i in flat for j in flat)
        if best is None or value < best - tie:
            best, argbest = value, [x]
        elif abs(value - best) <= tie:
            argbest.append(x)
    return best, argbest
