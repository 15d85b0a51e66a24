"""Layer-name patterns: shell globs (with numeric ranges ``{0..15}``), or ``re:<regex>``.

A glob is matched against the whole name (``layer1.*``, ``/encoder/*/MatMul``); ``{N..M}`` in a
glob matches the decimal integers N to M (``blk.{0..15}.*`` is blocks 0-15, not the characters of
``[0-15]``, which a glob reads as the set {0, 1, 5}). A pattern prefixed with ``re:`` is a regular
expression searched anywhere in the name. Shared by the adapters (which layers to quantize or tie)
and by scoped budgets (which layers a budget sums).

>>> matches("blk.12.attn_q", ("blk.{0..15}.*",)), matches("blk.16.attn_q", ("blk.{0..15}.*",))
(True, False)
>>> matches("/q/MatMul", ("re:/(q|k|v)/",))
True
"""

from __future__ import annotations

import fnmatch
import functools
import re
from typing import Sequence

MAX_RANGE = 100_000  # integers one {N..M} may stand for: the range becomes an alternation
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")


class PatternError(ValueError):
    """A pattern that cannot be compiled; callers re-raise it as their own error naming the argument."""


@functools.lru_cache(maxsize=4096)
def pattern_regex(pattern: str) -> re.Pattern[str]:
    """The compiled form of one pattern; ``fullmatch`` for globs, ``search`` for ``re:`` patterns.

    >>> bool(pattern_regex("a.{2..11}").fullmatch("a.10")), bool(pattern_regex("a.{2..11}").fullmatch("a.1"))
    (True, False)
    """
    if pattern.startswith("re:"):
        try:
            return re.compile(pattern[3:])
        except re.error as exc:
            raise PatternError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None
    parts, last = [], 0
    for match in _RANGE.finditer(pattern):
        lo, hi = int(match.group(1)), int(match.group(2))
        if lo > hi or hi - lo >= MAX_RANGE:
            raise PatternError(f"pattern {pattern!r}: the range {match.group(0)} must run upwards over at most {MAX_RANGE} integers")
        parts.append(_glob(pattern[last:match.start()]))
        # longest first, so that a longer number is tried before its prefix
        numbers = sorted((str(i) for i in range(lo, hi + 1)), key=len, reverse=True)
        parts.append("(?:" + "|".join(numbers) + ")")
        last = match.end()
    parts.append(_glob(pattern[last:]))
    return re.compile("(?s:" + "".join(parts) + r")\Z")


def _glob(text: str) -> str:
    """The regular expression of a glob fragment, without fnmatch's anchors."""
    if not text:
        return ""
    body = fnmatch.translate(text)
    # fnmatch writes '(?s:BODY)\Z' (Python 3.8 onwards)
    if not (body.startswith("(?s:") and body.endswith(r")\Z")):  # pragma: no cover - a future fnmatch
        raise PatternError(f"cannot translate glob {text!r}")
    return body[4:-3]


def matches(name: str, patterns: Sequence[str]) -> bool:
    """True when ``name`` matches any of ``patterns`` (globs, or ``re:<regex>`` searched)."""
    for p in patterns:
        rx = pattern_regex(p)
        if (rx.search(name) if p.startswith("re:") else rx.fullmatch(name)) is not None:
            return True
    return False


def match_mask(names: Sequence[str], pattern: str) -> list[bool]:
    """Per name, whether ``pattern`` matches it."""
    rx = pattern_regex(pattern)
    test = rx.search if pattern.startswith("re:") else rx.fullmatch
    return [test(n) is not None for n in names]
