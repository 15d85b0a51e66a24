"""Exceptions raised by mpqopt.

Every error a user can cause is a subclass of :class:`MpqoptError`, so a caller can catch one
type, and each message names the layer, key or budget at fault.
"""

from __future__ import annotations


class MpqoptError(Exception):
    """Base class of every error mpqopt raises on purpose."""


class ProblemError(MpqoptError, ValueError):
    """A problem definition is inconsistent (shapes, values, names, ties, masks)."""


class FormatError(MpqoptError, ValueError):
    """A problem file cannot be read: wrong format, version, missing key or wrong shape.

    ``where`` is a JSON-path-like location such as ``$.costs.size_bits[3]``.
    """

    def __init__(self, message: str, where: str = "$", source: str | None = None):
        self.message = message
        self.where = where
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{where}: {message}")


class BudgetError(MpqoptError, ValueError):
    """A budget specification is malformed or names an unknown cost."""


class ArgumentError(MpqoptError, ValueError):
    """A function or command-line argument has the wrong type or value; the message names the argument."""


class UnsupportedFormatError(MpqoptError, ValueError):
    """A target tool (llama.cpp, HQQ, torchao, ...) cannot express a layer's format; the message names
    the tool, the layer and the format."""


class SolverError(MpqoptError, RuntimeError):
    """A backend failed, or cannot take this problem (size limits, missing features)."""


class SolverUnavailableError(SolverError):
    """A backend's package is not installed; the message says which extra installs it."""
