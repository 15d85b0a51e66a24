"""The one protocol every backend follows: a canonical model in, a raw solution out.

A backend is a small class registered under a name. ``get_backend("pyomo:glpk")`` builds the
``pyomo`` backend with argument ``"glpk"``. Backends never see a ``Problem`` directly except through
``model.problem``; results are mapped back and verified by :func:`mpqopt.solve`.
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..deadline import Deadline
from ..errors import SolverError, SolverUnavailableError
from ..reductions import CanonicalModel
from ..result import Status


@dataclass
class SolveSettings:
    """Options common to every backend.

    ``deadline`` is the clock of the whole solve (started by :func:`mpqopt.solve` before any
    preprocessing); without one, a deadline of ``time_limit`` seconds starts when the settings are
    made. Backends stop at ``deadline.at`` and give sub-solvers ``deadline.remaining()``.
    """

    time_limit: float | None = None  # seconds (the user's limit; the time left is deadline.remaining())
    mip_gap: float = 0.0  # relative gap at which a backend may stop and call the result optimal
    threads: int | None = None
    verbose: bool = False
    warm_start: np.ndarray | None = None  # one item index per free group
    deadline: Deadline | None = None

    def __post_init__(self) -> None:
        if self.deadline is None:
            self.deadline = Deadline(self.time_limit)

    @property
    def stop_at(self) -> float | None:
        """The deadline as a ``time.perf_counter()`` value (None: no limit)."""
        return self.deadline.at

    def left(self) -> float | None:
        """Seconds left for a sub-solver (None: no limit)."""
        return self.deadline.remaining()


@dataclass
class RawSolution:
    """What a backend returns, in canonical terms (objective and bound exclude ``model.offset``)."""

    status: Status  # optimal | feasible | infeasible | time_limit | error
    items: np.ndarray | None = None  # chosen item per free group
    objective: float | None = None
    bound: float | None = None
    message: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    proof: str = ""  # what established ``bound`` (e.g. "HiGHS MILP", "split bound + 120 B&B nodes")


class Backend(ABC):
    """Base class of a solver backend."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    exact: ClassVar[bool] = True  # proves optimality (reports a bound)
    supports_quadratic: ClassVar[bool] = False
    requires: ClassVar[tuple[str, ...]] = ()  # importable modules it needs
    extra: ClassVar[str | None] = None  # pip extra that installs them

    def __init__(self, arg: str | None = None):
        if arg is not None:
            raise SolverError(f"solver '{self.name}' takes no ':{arg}' argument")

    @classmethod
    def available(cls) -> bool:
        return all(importlib.util.find_spec(mod) is not None for mod in cls.requires)

    @classmethod
    def unavailable_message(cls) -> str:
        hint = f"pip install mpqopt[{cls.extra}]" if cls.extra else f"pip install {' '.join(cls.requires)}"
        return f"solver '{cls.name}' needs {', '.join(cls.requires)}, which is not installed: {hint}"

    @abstractmethod
    def solve(self, model: CanonicalModel, settings: SolveSettings) -> RawSolution:
        """Solve the canonical model."""

    @property
    def label(self) -> str:
        return self.name


_REGISTRY: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make a backend available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def backend_class(name: str) -> type[Backend]:
    base = name.split(":", 1)[0]
    if base not in _REGISTRY:
        raise SolverError(f"unknown solver '{name}'; known solvers: {', '.join(['auto'] + backend_names())}")
    return _REGISTRY[base]


def get_backend(name: str) -> Backend:
    """Instantiate the backend called ``name`` (``"highs"``, ``"pyomo:glpk"``...)."""
    cls = backend_class(name)
    if not cls.available():
        raise SolverUnavailableError(cls.unavailable_message())
    for module in cls.requires:  # import now, so the first solve's timer does not include it
        importlib.import_module(module)
    _, _, arg = name.partition(":")
    return cls(arg or None)


INCONSISTENT_START = ("the solver's answer from the starting assignment claimed an objective its assignment does not have "
                      "(seen with HiGHS 1.16 when presolve reduces the model): solved again without the start")


def claim_matches(claimed: float, actual: float) -> bool:
    """Whether a MILP solver's reported objective is that of the solution it returned, both in
    normalized units (largest cost 1; continuous pair columns may be off by the feasibility
    tolerance). A solver whose claim fails this has proven nothing about its answer."""
    return abs(claimed - actual) <= 1e-5 * max(1.0, abs(actual))


def items_from_values(model: CanonicalModel, values: np.ndarray) -> np.ndarray:
    """One item per group from a (near-)binary solution vector; SolverError if that is not one-hot."""
    chosen = np.nonzero(np.asarray(values) > 0.5)[0]
    counts = np.bincount(model.item_group[chosen], minlength=model.num_groups)
    if chosen.size != model.num_groups or (counts != 1).any():
        raise SolverError("the backend returned a solution that does not pick exactly one option per layer")
    return chosen
