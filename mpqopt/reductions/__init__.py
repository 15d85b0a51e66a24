"""Reductions from a user ``Problem`` to the canonical form backends solve, and back."""

from .canonical import CanonicalModel, canonicalize, restrict, select_items

__all__ = ["CanonicalModel", "canonicalize", "restrict", "select_items"]
