"""Reading and writing problem files (JSON and NPZ, format ``mpqopt.problem`` version 1)."""

from .files import load, save

__all__ = ["load", "save"]
