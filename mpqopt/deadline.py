"""One clock per solve: a :class:`Deadline` started when :func:`mpqopt.solve` is called, handed to
every stage (canonicalization, the Lagrangian dual, core building, the backend's solver), so that
``time_limit`` bounds the whole call and not only the last step. Each stage asks ``remaining()`` and
gives a sub-solver only that.

It also holds the best assignment and bound a backend has reported so far (``offer``,
``improve_bound``): when a solver ignores its own limit (HiGHS in presolve, scipy's milp, an
external Pyomo solver), :func:`mpqopt.solve` abandons it at the deadline and returns these.

>>> d = Deadline(None)
>>> d.expired(), d.remaining()
(False, None)
>>> d = Deadline(60.0)
>>> d.expired(), 59 < d.remaining() <= 60
(False, True)
>>> d.offer([0, 1], 2.5); d.offer([1, 1], 3.0); d.best_objective
2.5
"""

from __future__ import annotations

import math
import time
from typing import Any


def grace(time_limit: float) -> float:
    """What a time limit may be overrun by: max(1 s, 10 %) (the promise ``solve`` makes)."""
    return max(1.0, 0.1 * time_limit)


def seconds_left(at: float | None) -> float | None:
    """Seconds until the ``time.perf_counter()`` instant ``at`` (at least 1 ms, so a sub-solver's
    own limit stays valid); None without one. The one helper for code handed a bare instant.

    >>> seconds_left(None) is None, seconds_left(time.perf_counter() - 5)
    (True, 0.001)
    """
    return None if at is None else max(at - time.perf_counter(), 1e-3)


def passed(at: float | None) -> bool:
    """Whether the ``time.perf_counter()`` instant ``at`` has passed (never without one)."""
    return at is not None and time.perf_counter() >= at


class Deadline:
    """A time limit counted from construction (``time.perf_counter`` seconds); ``None`` never expires."""

    def __init__(self, time_limit: float | None, start: float | None = None):
        self.limit = time_limit
        self.start = time.perf_counter() if start is None else start
        self.at: float | None = None if time_limit is None else self.start + time_limit
        self.cancelled = False  # set when solve() stops waiting: an abandoned backend should stop too
        self._best: tuple[float, Any] = (math.inf, None)  # (objective, canonical items), replaced whole
        self.bound = -math.inf  # best lower bound known (canonical units, without model.offset)

    def remaining(self) -> float | None:
        """Seconds left (at least 1 ms, so a sub-solver's own limit stays valid), None without a limit."""
        return seconds_left(self.at)

    def expired(self) -> bool:
        return self.cancelled or (self.at is not None and time.perf_counter() >= self.at)

    def cap(self, seconds: float) -> float:
        """The earlier of this deadline and ``seconds`` from now, as a perf_counter value."""
        stop = time.perf_counter() + seconds
        return stop if self.at is None else min(stop, self.at)

    def cancel(self) -> None:
        self.cancelled = True
        self.at = time.perf_counter() if self.at is None else min(self.at, time.perf_counter())

    def message(self) -> str:
        return f"time limit of {self.limit:g} s reached" if self.limit is not None else "stopped"

    # the incumbent and bound a backend found so far (what solve() returns if it has to abandon it)
    def offer(self, items: Any, objective: float) -> None:
        """Record a budget-feasible assignment (canonical items) if it beats the best so far."""
        if items is not None and objective < self._best[0]:
            self._best = (float(objective), items)

    def improve_bound(self, bound: float | None) -> None:
        if bound is not None and bound > self.bound:
            self.bound = float(bound)

    @property
    def best_items(self) -> Any:
        return self._best[1]

    @property
    def best_objective(self) -> float:
        return self._best[0]
