"""What the ``mpqopt`` commands share: exit codes, writing results (as JSON, to files), keeping ``--json`` stdout clean.

(``load_problem`` stays in ``mpqopt.cli`` itself, where tests replace the ``load`` it calls.)
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import MpqoptError
from ..result import Result
from ..stdio import c_stdout_to_stderr

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_INFEASIBLE, EXIT_NO_SOLUTION = 0, 1, 2, 3, 4


def exit_code(result: Result) -> int:
    """0 when an assignment meeting every budget came back, 3 if infeasible, 4 otherwise."""
    if result.x is not None:
        return EXIT_OK
    return EXIT_INFEASIBLE if result.status == "infeasible" else EXIT_NO_SOLUTION


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def result_json(result: Result) -> str:
    return json.dumps(result.to_dict(), indent=2, default=_json_default)


@contextlib.contextmanager
def _stdout_to_stderr(active: bool) -> Iterator[None]:
    """Send everything written to stdout meanwhile, from Python or from a C solver library (HiGHS's
    banner, its debugging printfs, a --verbose log), to stderr: ``--json`` output stays one JSON object."""
    if not active:
        yield
        return
    # Python's stdout goes to a copy of descriptor 2, not to sys.stderr itself: Pyomo's output capture
    # redirects the descriptors under sys.stdout and sys.stderr and deadlocks when they are one object
    with c_stdout_to_stderr(), os.fdopen(os.dup(2), "w", encoding="utf-8", errors="backslashreplace") as stderr_copy, \
            contextlib.redirect_stdout(stderr_copy):
        yield


def _write(path: str | None, text: str) -> None:
    if not path:
        return
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise MpqoptError(f"cannot write '{path}': {exc.strerror or exc}") from None

