"""mpqopt: exact, fast mixed-precision quantization bit allocation.

>>> import mpqopt
>>> p = mpqopt.Problem(["a", "b"], [4, 8], [[0.5, 0.0], [0.1, 0.0]], costs={"size_bits": [[4, 8], [4, 8]]})
>>> mpqopt.solve(p, budgets={"size_bits": 12}).assignment
{'a': 'W8', 'b': 'W4'}
"""

from .budgets import Budget, resolve_budgets
from .compare import Comparison, compare
from .costs import bitops, latency_from_lut, size_bits, size_bytes
from .diagnose import Infeasibility
from .errors import ArgumentError, BudgetError, FormatError, MpqoptError, ProblemError, SolverError, SolverUnavailableError
from .io import load, save
from .io.export import export
from .options import Option
from .pareto import Frontier, FrontierPoint, pareto
from .problem import Evaluation, Problem
from .refine import RefineResult, refine
from .result import Result
from .solve import solve
from .solvers.pyomo import to_pyomo  # imports pyomo only when called

__version__ = "0.1.0"  # the one source: pyproject.toml reads it (dynamic version)

__all__ = [
    "ArgumentError", "Budget", "BudgetError", "Comparison", "Evaluation", "FormatError", "Frontier", "FrontierPoint", "Infeasibility", "MpqoptError", "Option", "Problem",
    "ProblemError", "RefineResult", "Result", "SolverError", "SolverUnavailableError", "bitops", "compare", "export", "latency_from_lut",
    "load", "pareto", "refine", "resolve_budgets", "save", "size_bits", "size_bytes", "solve", "to_pyomo",
]
