"""Solver backends. Importing this package registers every backend; none imports its solver package
until it is used, so optional solvers never slow down or break ``import mpqopt``."""

from . import bnb, bruteforce, gurobi, heuristic_iqp, highs, mckp, pyomo, scipy_milp  # noqa: F401  (registration side effect)
from .base import Backend, RawSolution, SolveSettings, backend_class, backend_names, get_backend, register

__all__ = ["Backend", "RawSolution", "SolveSettings", "backend_class", "backend_names", "get_backend", "register"]
