"""Quantization options: a weight bit-width, optionally paired with an activation bit-width, and
optionally a named storage format (:mod:`mpqopt.formats`) that says what a weight really costs.

>>> Option.parse("W4A8").label, Option.parse("q4_k").label, Option.parse("Q4_K").effective_bits
('W4A8', 'Q4_K', 4.5)
>>> Option.parse({"format": "int4", "group_size": 128, "symmetric": False}).label
'int4-g128-asym'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Union

from .errors import ProblemError
from .formats import Format, get_format, int_format

_LABEL_RE = re.compile(r"^\s*[wW](\d+)\s*(?:[aA](\d+))?\s*$")
_ACT_SUFFIX_RE = re.compile(r"^(.+)-[aA](\d+)$")
_PLAIN_KEYS = ("w", "a", "label")
_FORMAT_KEYS = ("format", "group_size", "symmetric")  # the last two override an integer format's scheme


@dataclass(frozen=True, repr=False)
class Option:
    """One choice for a layer, e.g. ``Option(4, 8)`` is W4A8, ``Option(format="Q4_K")`` is GGUF's Q4_K.

    ``w`` is the data bits per weight (what BitOps multiply); ``effective_bits`` adds the format's
    scales, zero points and block metadata (what storage costs). A plain option has no format and
    ``effective_bits == w``. A format option's ``w`` defaults to the format's data bits, ``a`` to its
    activation bits, and its label to the format's name (``"Q4_K"``, or ``"Q4_K-a8"`` with other
    activation bits).

    >>> Option(4, 8).label
    'W4A8'
    >>> Option.parse("W3").w
    3
    >>> o = Option(format="int4-g128-asym", a=8)
    >>> o.label, o.w, o.a, o.effective_bits
    ('int4-g128-asym-a8', 4, 8, 4.25)
    """

    w: int = None  # type: ignore[assignment]  # None only until __post_init__ takes it from the format
    a: int | None = None
    label: str = ""
    format: Format | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.label, str):
            raise ProblemError(f"option label must be a string, got {self.label!r}")
        fmt = self.format
        if fmt is not None:
            try:
                fmt = get_format(fmt)
            except ProblemError as exc:
                raise ProblemError(f"option {self.label or '?'}: {exc}") from None
            object.__setattr__(self, "format", fmt)
            if self.w is None:
                object.__setattr__(self, "w", fmt.bits)
            elif self.w != fmt.bits or isinstance(self.w, bool):
                raise ProblemError(f"option {self.label or fmt.name}: 'w' = {self.w!r} contradicts format {fmt.name}'s {fmt.bits} data bits (leave 'w' out)")
            if self.a is None and fmt.act_bits is not None:
                object.__setattr__(self, "a", fmt.act_bits)
        for name, bits in (("w", self.w), ("a", self.a)):
            if bits is None and name == "a":
                continue
            if isinstance(bits, bool) or not isinstance(bits, int) or bits <= 0:
                raise ProblemError(f"option {self.label or '?'}: '{name}' must be a positive integer bit-width, got {bits!r}")
        if not self.label:
            if fmt is None:
                label = f"W{self.w}" + (f"A{self.a}" if self.a is not None else "")
            else:
                label = fmt.name + (f"-a{self.a}" if self.a is not None and self.a != fmt.act_bits else "")
            object.__setattr__(self, "label", label)

    @property
    def effective_bits(self) -> float:
        """Bits per weight including the format's scales and zero points (``w`` without a format)."""
        return float(self.w) if self.format is None else self.format.effective_bits

    def __repr__(self) -> str:
        fmt = "" if self.format is None else f", format={self.format.name!r}"
        return f"Option(w={self.w!r}, a={self.a!r}, label={self.label!r}{fmt})"

    @classmethod
    def parse(cls, spec: "OptionLike") -> "Option":
        """Build an option from an ``Option``, a ``Format``, an int (weight bits), a dict, a label like
        ``"W4A8"`` or a format name like ``"Q4_K"``, ``"int4-g128-asym"`` or ``"Q8_0-a8"``.

        A dict is ``{"w": 4, "a": 8}`` as ever, or ``{"format": name or Format or format fields, "a": ...,
        "label": ...}``; an integer format's group size and symmetry may be set next to its name:
        ``{"format": "int4", "group_size": 128, "symmetric": False}`` is ``int4-g128-asym``.
        """
        if isinstance(spec, Option):
            return spec
        if isinstance(spec, Format):
            return cls(format=spec)
        if isinstance(spec, bool):
            raise ProblemError(f"cannot read an option from {spec!r}")
        if isinstance(spec, int):
            return cls(spec)
        if isinstance(spec, str):
            return cls._parse_label(spec)
        if isinstance(spec, Mapping):
            return cls._parse_dict(spec)
        raise ProblemError(f"cannot read an option from {spec!r}: use Option(w, a), an int, a dict, 'W4A8' or a format name such as 'Q4_K'")

    @classmethod
    def _parse_label(cls, spec: str) -> "Option":
        match = _LABEL_RE.match(spec)
        if match:
            return cls(int(match.group(1)), int(match.group(2)) if match.group(2) else None)
        try:
            return cls(format=get_format(spec.strip()))
        except ProblemError as exc:
            unknown = exc
        act = _ACT_SUFFIX_RE.match(spec.strip())
        if act:
            try:
                return cls(format=get_format(act.group(1)), a=int(act.group(2)))
            except ProblemError:
                pass
        raise ProblemError(f"cannot read option label {spec!r}: expected e.g. 'W4', 'W4A8' or a format name such as 'Q4_K' or 'int4-g128' ({unknown})")

    @classmethod
    def _parse_dict(cls, spec: Mapping[str, Any]) -> "Option":
        unknown = set(spec) - set(_PLAIN_KEYS) - set(_FORMAT_KEYS)
        if "format" not in spec:
            if "w" not in spec:
                raise ProblemError(f"option {dict(spec)!r} has no 'w' (weight bit-width) and no 'format'")
            unknown |= set(spec) & set(_FORMAT_KEYS)
        if unknown and unknown <= set(_FORMAT_KEYS):
            raise ProblemError(f"option {dict(spec)!r}: {sorted(unknown)} describe a 'format' (e.g. {{\"format\": \"int4\", \"group_size\": 128}}), and there is none")
        if unknown:
            raise ProblemError(f"option {dict(spec)!r} has unknown keys {sorted(map(str, unknown))}")
        label = spec.get("label")
        label = "" if label is None else label
        if "format" not in spec:
            return cls(spec["w"], spec.get("a"), label)
        where = f"option {label or spec['format']!r}" if isinstance(spec["format"], str) or label else "option"
        try:
            raw = spec["format"]
            fmt = Format.from_dict(raw) if isinstance(raw, Mapping) else get_format(raw)
            fmt = _override(fmt, spec)
        except ProblemError as exc:
            raise ProblemError(f"{where}: {exc}") from None
        return cls(spec.get("w"), spec.get("a"), label, fmt)

    def to_dict(self) -> dict[str, Any]:
        """The option as a file stores it: ``label``, ``w``, ``a`` when set, and ``format`` (the name of a
        built-in format, all fields of any other) when the option has one."""
        out: dict[str, Any] = {"label": self.label, "w": self.w}
        if self.a is not None:
            out["a"] = self.a
        if self.format is not None:
            out["format"] = self.format.name if self.format.is_builtin else self.format.to_dict()
        return out


def _override(fmt: Format, spec: Mapping[str, Any]) -> Format:
    """``fmt`` with the group size / symmetry given next to it (integer formats only: the name scheme says it)."""
    changes = {key: spec[key] for key in ("group_size", "symmetric") if key in spec}
    if not changes:
        return fmt
    scheme = fmt.family == "int" and fmt.bits <= 16 and fmt == int_format(fmt.bits, fmt.group_size, fmt.symmetric)
    if not scheme:
        raise ProblemError(f"{sorted(changes)} can only be set next to an integer format of the "
                           f"'int4-g128' scheme; {fmt.name} is not one: build an mpqopt.formats.Format for other layouts")
    group = changes.get("group_size", fmt.group_size)
    if group is not None and (isinstance(group, bool) or not isinstance(group, int) or group <= 0):
        raise ProblemError(f"group_size must be a positive integer (weights per scale) or null (per channel), got {group!r}")
    symmetric = changes.get("symmetric", fmt.symmetric)
    if not isinstance(symmetric, bool):
        raise ProblemError(f"symmetric must be true or false, got {symmetric!r}")
    return int_format(fmt.bits, group, symmetric)


OptionLike = Union[Option, Format, int, str, Mapping[str, Any]]
