"""Keep what C libraries print off standard output.

Solver libraries write to file descriptor 1 from C, outside Python's ``sys.stdout``: HiGHS 1.16
prints its banner when the first ``Highs`` object of a process is made, and some of its MIP code
paths ``printf`` debugging lines even with ``output_flag`` off. A program whose stdout is data
(``mpqopt solve --json``, a user's script piped into ``jq``) would be corrupted, so mpqopt runs
those calls with descriptor 1 pointed at descriptor 2: nothing is lost, it goes to stderr.

The redirection is process-wide (file descriptors are), re-entrant, and guarded by a lock; while
it is active, anything another thread writes to descriptor 1 goes to stderr too.

>>> with c_stdout_to_stderr():
...     pass  # a C library's printf here lands on stderr
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading
from typing import Iterator

_lock = threading.RLock()
_depth: dict[int, int] = {}  # open redirections per thread (ident): active while any thread holds one
_saved_fd: int | None = None


def _c_library():
    """The C runtime whose ``fflush`` empties the stdio buffers (None where it cannot be found)."""
    name = "msvcrt" if os.name == "nt" else ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name)
    except OSError:  # pragma: no cover - exotic platforms
        return None


_libc = _c_library()


def _flush_all() -> None:
    """Flush Python's stdout and every C stdio stream: C's stdout is fully buffered when it is a
    pipe, so a line printed under the redirection could otherwise come out after it ends."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    if _libc is not None:
        with contextlib.suppress(Exception):
            _libc.fflush(None)


@contextlib.contextmanager
def c_stdout_to_stderr(active: bool = True) -> Iterator[None]:
    """Within the block, what is written to file descriptor 1 goes to descriptor 2 (stderr).

    ``active=False`` makes it a no-op (callers that show a solver log on request pass ``verbose``).
    """
    global _depth, _saved_fd
    if not active:
        yield
        return
    me = threading.get_ident()
    with _lock:
        if not _depth:
            _flush_all()
            try:
                _saved_fd = os.dup(1)
                os.dup2(2, 1)
            except OSError:  # no descriptor 1 or 2 (a daemon): nothing to protect
                _saved_fd = None
        _depth[me] = _depth.get(me, 0) + 1
    try:
        yield
    finally:
        with _lock:
            if me in _depth:  # absent: released by release_thread (a solver abandoned at a time limit)
                _depth[me] -= 1
                if not _depth[me]:
                    del _depth[me]
                _restore_if_unheld()


def release_thread(ident: int | None) -> None:
    """Drop the redirections thread ``ident`` holds, as if its blocks had ended: a solver thread
    that :func:`mpqopt.solve` stopped waiting for at a time limit must not keep descriptor 1 on
    stderr for the rest of the program (it would take ``--json`` output with it)."""
    with _lock:
        if _depth.pop(ident, None):
            _restore_if_unheld()


def _restore_if_unheld() -> None:
    global _saved_fd
    if not _depth and _saved_fd is not None:
        _flush_all()
        os.dup2(_saved_fd, 1)
        os.close(_saved_fd)
        _saved_fd = None
