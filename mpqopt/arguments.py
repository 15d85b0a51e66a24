"""Checks of the arguments every entry point shares (``solve``, ``pareto``, ``compare``, ``load``, the CLI).

One piece of code serves every caller, so ``solve(p, threads=0)`` and ``mpqopt solve --threads 0`` are
refused with the same words. Each check returns the normalised value or raises
:class:`~mpqopt.errors.ArgumentError` naming the argument and what it got.

>>> check_time_limit("5")
Traceback (most recent call last):
...
mpqopt.errors.ArgumentError: time_limit must be a positive number of seconds (or None for no limit), got '5' (str)
>>> validated_arguments(solver="mckp", time_limit=2, threads=1)
SolveArguments(solver='mckp', time_limit=2.0, mip_gap=0.0, threads=1, verbose=False)
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ArgumentError

# 2 GiB: the largest problem files we know of (a 1M-layer NPZ, a dense 4,000-item pairwise JSON) are a
# few hundred MB, and reading 2 GiB takes seconds; /dev/zero or a runaway file stops there instead of
# exhausting memory. Raise it with max_bytes= / --max-file-size.
DEFAULT_MAX_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class SolveArguments:
    """The solver settings after checking (what ``solve``, ``pareto`` and ``compare`` pass on)."""

    solver: str
    time_limit: float | None
    mip_gap: float
    threads: int | None
    verbose: bool


def _got(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _is_real(value: Any) -> bool:
    # bool is an int to Python, but True seconds or threads is a mistake, not a number
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_solver(solver: Any, argument: str = "solver") -> str:
    """A backend name: ``'auto'``, ``'mckp'``, ``'highs:plain'``... (unknown names fail when looked up)."""
    if not isinstance(solver, str) or not solver.strip():
        raise ArgumentError(f"{argument} must be a backend name such as 'auto', 'mckp' or 'highs' "
                            f"(see `mpqopt solvers`), got {_got(solver)}")
    return solver


def check_time_limit(time_limit: Any, argument: str = "time_limit") -> float | None:
    """None (no limit) or a positive, finite number of seconds."""
    if time_limit is None:
        return None
    if not _is_real(time_limit) or not (0 < float(time_limit) < math.inf):
        raise ArgumentError(f"{argument} must be a positive number of seconds (or None for no limit), got {_got(time_limit)}")
    return float(time_limit)


def check_mip_gap(mip_gap: Any, argument: str = "mip_gap") -> float:
    """A relative gap in ``[0, 1)``."""
    if not _is_real(mip_gap) or not (0.0 <= float(mip_gap) < 1.0):
        raise ArgumentError(f"{argument} must lie in [0, 1), got {_got(mip_gap)}")
    return float(mip_gap)


def check_threads(threads: Any, argument: str = "threads") -> int | None:
    """None (the solver's default) or a whole number of threads, at least 1."""
    if threads is None:
        return None
    if not isinstance(threads, numbers.Integral) or isinstance(threads, bool) or threads < 1:
        raise ArgumentError(f"{argument} must be a whole number >= 1 (or None for the solver's default), got {_got(threads)}")
    return int(threads)


def check_verbose(verbose: Any, argument: str = "verbose") -> bool:
    """True or False (a string like 'no' would otherwise read as True)."""
    if not isinstance(verbose, (bool, numbers.Integral)) or verbose not in (0, 1):
        raise ArgumentError(f"{argument} must be True or False, got {_got(verbose)}")
    return bool(verbose)


def check_path(path: Any, argument: str = "path") -> Path:
    """A file name: ``str`` or ``os.PathLike`` (not bytes, not an open file, not None)."""
    if isinstance(path, str) or (isinstance(path, os.PathLike) and not isinstance(path, bytes)):
        fspath = os.fspath(path)
        if isinstance(fspath, str) and fspath:
            return Path(fspath)
    hint = "; pass the file's name, e.g. mpqopt.load('model.json')" if hasattr(path, "read") or hasattr(path, "write") else ""
    raise ArgumentError(f"{argument} must be a file name (str or os.PathLike), got {_got(path)}{hint}")


def check_max_bytes(max_bytes: Any, argument: str = "max_bytes") -> int:
    """A positive whole number of bytes."""
    if not isinstance(max_bytes, numbers.Integral) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise ArgumentError(f"{argument} must be a whole number of bytes >= 1, got {_got(max_bytes)}")
    return int(max_bytes)


def validated_arguments(*, solver: Any = "auto", time_limit: Any = None, mip_gap: Any = 0.0, threads: Any = None,
                        verbose: Any = False) -> SolveArguments:
    """Every solver setting checked at once, before any work starts."""
    return SolveArguments(check_solver(solver), check_time_limit(time_limit), check_mip_gap(mip_gap),
                          check_threads(threads), check_verbose(verbose))
