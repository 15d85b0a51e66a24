"""Quantization options: a weight bit-width, optionally paired with an activation bit-width."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Union

from .errors import ProblemError

_LABEL_RE = re.compile(r"^\s*[wW](\d+)\s*(?:[aA](\d+))?\s*$")


@dataclass(frozen=True)
class Option:
    """One choice for a layer, e.g. ``Option(4, 8)`` is W4A8.

    >>> Option(4, 8).label
    'W4A8'
    >>> Option.parse("W3").w
    3
    """

    w: int
    a: int | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.label, str):
            raise ProblemError(f"option label must be a string, got {self.label!r}")
        for name, bits in (("w", self.w), ("a", self.a)):
            if bits is None and name == "a":
                continue
            if isinstance(bits, bool) or not isinstance(bits, int) or bits <= 0:
                raise ProblemError(f"option {self.label or '?'}: '{name}' must be a positive integer bit-width, got {bits!r}")
        if not self.label:
            object.__setattr__(self, "label", f"W{self.w}" + (f"A{self.a}" if self.a is not None else ""))

    @classmethod
    def parse(cls, spec: "OptionLike") -> "Option":
        """Build an option from an ``Option``, an int (weight bits), a dict or a label like ``"W4A8"``."""
        if isinstance(spec, Option):
            return spec
        if isinstance(spec, bool):
            raise ProblemError(f"cannot read an option from {spec!r}")
        if isinstance(spec, int):
            return cls(spec)
        if isinstance(spec, str):
            match = _LABEL_RE.match(spec)
            if not match:
                raise ProblemError(f"cannot read option label {spec!r}: expected e.g. 'W4' or 'W4A8'")
            return cls(int(match.group(1)), int(match.group(2)) if match.group(2) else None)
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"w", "a", "label"}
            if "w" not in spec:
                raise ProblemError(f"option {dict(spec)!r} has no 'w' (weight bit-width)")
            if unknown:
                raise ProblemError(f"option {dict(spec)!r} has unknown keys {sorted(unknown)}")
            label = spec.get("label")
            return cls(spec["w"], spec.get("a"), "" if label is None else label)
        raise ProblemError(f"cannot read an option from {spec!r}: use Option(w, a), an int, a dict or 'W4A8'")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "w": self.w}
        if self.a is not None:
            out["a"] = self.a
        return out


OptionLike = Union[Option, int, str, Mapping[str, Any]]
