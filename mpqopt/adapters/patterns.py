"""Layer-name patterns shared by the adapters (framework-free): globs, or ``re:<regex>``.

A pattern is a shell glob matched against the whole name (``layer1.*``, ``/encoder/*/MatMul``,
``blk.{0..15}.*`` for a numeric range) or, prefixed with ``re:``, a regular expression searched
anywhere in the name (see :mod:`mpqopt.layer_patterns`, which scoped budgets share).

>>> matches("layer1.0.conv1", ("layer1.*",)), matches("/q/MatMul", ("re:/(q|k|v)/",))
(True, True)
>>> patterns(None, "include"), patterns("fc", "include")
((), ('fc',))
"""

from __future__ import annotations

from typing import Iterable, Sequence

from ..errors import ProblemError
from ..layer_patterns import PatternError, matches, pattern_regex

__all__ = ["matches", "patterns", "select"]


def patterns(value: str | Iterable[str] | None, what: str) -> tuple[str, ...]:
    """Normalise a user's pattern argument to a tuple, with errors naming ``what`` (e.g. ``include``)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    try:
        out = tuple(value)
    except TypeError:
        raise ProblemError(f"{what} must be a name pattern or a list of them, got {value!r}") from None
    for p in out:
        if not isinstance(p, str) or not p:
            raise ProblemError(f"{what} patterns must be non-empty strings, got {p!r}")
        try:
            pattern_regex(p)
        except PatternError as exc:
            raise ProblemError(f"{what} {exc}") from None
    return out


def select(names: Sequence[str], include: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None) -> list[str]:
    """The ``names`` kept by ``include`` (all when None) minus those matching ``exclude``, in order.

    An include pattern that matches none of ``names`` is an error (a typo would otherwise silently
    leave layers out), as is a selection that keeps nothing.

    >>> select(["a.conv", "a.fc", "b.fc"], include="*.fc", exclude="b.*")
    ['a.fc']
    """
    inc, exc = patterns(include, "include"), patterns(exclude, "exclude")
    for p in inc:
        if not any(matches(n, (p,)) for n in names):
            known = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise ProblemError(f"include pattern {p!r} matches no quantizable layer; layers are: {known}")
    kept = [n for n in names if (not inc or matches(n, inc)) and not (exc and matches(n, exc))]
    if not kept:
        raise ProblemError("include/exclude patterns left no layer to quantize")
    return kept
