"""Deprecated spellings of the adapters' public functions, kept for one release.

>>> import warnings
>>> def new(x, *, y=1): return x + y
>>> old = deprecated_alias(new, "old", "mod.new")
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     value = old(1, y=2)
>>> value, caught[0].category.__name__, str(caught[0].message)
(3, 'DeprecationWarning', 'old is deprecated: use mod.new (same arguments); old will be removed in the next release')
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable


def warn_deprecated(old: str, new: str, stacklevel: int = 3) -> None:
    """A :class:`DeprecationWarning` saying that ``old`` is spelled ``new`` now."""
    warnings.warn(f"{old} is deprecated: use {new}; {old.split('(')[0]} will be removed in the next release", DeprecationWarning, stacklevel=stacklevel)


def deprecated_alias(func: Callable[..., Any], old: str, new: str) -> Callable[..., Any]:
    """``func`` under its old name ``old``: same arguments, same result, and a DeprecationWarning
    naming ``new`` (the spelling to use) at every call."""

    @functools.wraps(func)
    def alias(*args: Any, **kwargs: Any) -> Any:
        warn_deprecated(old, f"{new} (same arguments)")
        return func(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old
    # its own docstring: the new function's (with its doctests) would be collected twice
    alias.__doc__ = f"Deprecated alias of :func:`{new}` (same arguments); warns, and will be removed in the next release."
    return alias
