"""Reductions from a user ``Problem`` to the canonical form backends solve, and back."""

from .canonical import CanonicalModel, canonicalize, restrict

__all__ = ["CanonicalModel", "canonicalize", "restrict"]
