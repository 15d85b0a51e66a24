"""A small progress bar with an ETA on stderr, for long measurements (no dependency, no framework).

It draws only when enabled and the stream is a terminal, so logs and CI output stay clean; the
text of the line is available from :meth:`Progress.line` either way.

>>> import io
>>> with Progress(10, "demo", stream=io.StringIO()) as bar:   # not a terminal: stays quiet
...     bar.update(4)
>>> bar.done, bar.line(elapsed=2.0)
(4, 'demo  4/10  40% [########............] 0:02 elapsed, ETA 0:03, 2/s')
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

_WIDTH = 20


def format_seconds(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss``.

    >>> format_seconds(75), format_seconds(3725)
    ('1:15', '1:02:05')
    """
    s = int(round(max(seconds, 0.0)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Count ``total`` units of work; ``initial`` units were done before (e.g. resumed from a
    checkpoint) and do not count towards the rate the ETA is computed from."""

    def __init__(self, total: int, desc: str = "", *, enabled: bool = True, stream: IO[str] | None = None, initial: int = 0, min_interval: float = 0.2):
        self.total = max(int(total), 0)
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(enabled) and callable(isatty) and bool(isatty())
        self.initial = self.done = int(initial)
        self.min_interval = min_interval
        self.started = time.perf_counter()
        self._last_draw = 0.0
        self._drawn = False

    def line(self, elapsed: float | None = None) -> str:
        """The bar's text: count, percentage, bar, elapsed time, ETA and rate."""
        elapsed = time.perf_counter() - self.started if elapsed is None else elapsed
        frac = self.done / self.total if self.total else 1.0
        filled = int(_WIDTH * min(frac, 1.0))
        width = len(str(self.total))
        text = f"{self.desc} {self.done:>{width}}/{self.total} {100 * frac:3.0f}% [{'#' * filled}{'.' * (_WIDTH - filled)}] {format_seconds(elapsed)} elapsed"
        new = self.done - self.initial
        if new > 0 and elapsed > 0:
            rate = new / elapsed
            text += f", ETA {format_seconds((self.total - self.done) / rate)}, {rate:.3g}/s"
        return text.strip()

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        now = time.perf_counter()
        if self.enabled and (now - self._last_draw >= self.min_interval or self.done >= self.total):
            self._last_draw = now
            self.stream.write("\r" + self.line() + "\x1b[K")  # \x1b[K clears what a longer line left
            self.stream.flush()
            self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r" + self.line() + "\x1b[K\n")
            self.stream.flush()
            self._drawn = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
