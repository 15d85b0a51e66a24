"""Named quantization formats and what they cost in storage: bits per weight including scales,
zero points and block metadata.

A :class:`Format` describes how one layer's weights are stored: the family (``int``, ``fp8``,
``mxfp4``, ``nvfp4``, ``gguf`` or ``float`` for weights kept in 16/32-bit), the data bits per weight,
the group (block) size, symmetric or asymmetric, the bits of each group's scale and zero point, and,
for GGUF types, the byte layout of one block. ``effective_bits`` is what one weight costs on disk and
in memory with all of that counted.

Names (looked up case-insensitively by :func:`get_format`):

- GGUF types by their GGML names: ``Q4_0``, ``Q8_0``, ``Q4_K``, ``IQ4_XS``, ``TQ1_0``, ... and the
  float types ``F32``, ``F16``, ``BF16`` (aliases ``fp32``/``float32``, ``fp16``/``float16``);
- integers: ``int{b}`` (per output channel, symmetric: one fp16 scale per row), ``int{b}-asym``
  (plus an fp16 zero point per row), ``int{b}-g{G}`` (groups of ``G`` weights along a row, one fp16
  scale each), ``int{b}-g{G}-asym`` (fp16 scale and fp16 zero per group). Any ``b`` in 1..16 and any
  group size is read from its name, listed in the catalogue or not;
- ``fp8-e4m3`` (alias ``fp8``) and ``fp8-e5m2``: FP8 per output channel with an fp32 scale per row;
- ``mxfp4`` (OCP microscaling: 32 E2M1 values share an E8M0 scale) and ``nvfp4`` (16 E2M1 values
  share an FP8 E4M3 scale; the one fp32 scale per tensor is not counted).

A per-channel format's row scale costs ``scale_bits / row_length`` bits per weight (0.004 for fp16
over 4096): ``effective_bits`` leaves it out, :meth:`Format.storage_bits` counts it when the row
length is known. A grouped or blocked format needs the row length divisible by its group size
(GGUF's blocks run along rows; group-wise integer kernels tile rows by the group): :meth:`Format.fits`
says why a row length is refused.

Your own formats: build a ``Format`` (give ``block`` for a byte layout, or ``scale_bits``/``zero_bits``
per group) and use it directly (``Option(format=f)``) or :func:`register_format` it to use its name.

>>> get_format("q4_k").effective_bits, get_format("int4-g128-asym").effective_bits
(4.5, 4.25)
>>> print(get_format("Q4_K").describe())
Q4_K: 256 weights in 144 bytes (fp16 super-block scale d 2 + fp16 super-block min dmin 2 + 6-bit scales and mins of 8 sub-blocks 12 + 4-bit quants 128) = 4.5 bits per weight
>>> get_format("Q4_K").fits(576)
"row length 576 is not divisible by Q4_K's 256-weight super-block"
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from .errors import ProblemError

FAMILIES = ("int", "fp8", "mxfp4", "nvfp4", "gguf", "float")
MAX_BITS = 64
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_INT_RE = re.compile(r"^int(\d+)(?:-g(\d+))?(-asym|-sym)?$", re.IGNORECASE)
_FP16 = 16


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class Format:
    """How one layer's weights are stored. ``effective_bits`` = bits per weight, metadata included.

    Without a ``block`` layout a group of ``group_size`` weights stores ``bits`` per weight plus one
    scale (``scale_bits``) and one zero point (``zero_bits``, 0 when symmetric); with no group size the
    scale and zero are per output row. With a ``block`` (GGUF), one block of ``group_size`` weights is
    the listed parts, ``(what, bits)`` each, and ``scale_bits``/``zero_bits`` are not used.

    >>> f = Format("my3-g64", "int", 3, group_size=64, scale_bits=16)
    >>> f.effective_bits
    3.25
    >>> f.storage_bits(64 * 100)
    20800.0
    """

    name: str
    family: str
    bits: int
    group_size: int | None = None
    symmetric: bool = True
    scale_bits: int = 0
    zero_bits: int = 0
    act_bits: int | None = None
    block: tuple[tuple[str, int], ...] = ()
    gguf_type: str | None = None
    note: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ProblemError(f"format name must be letters, digits and '_.+-' (starting with a letter or digit), got {name!r}")
        where = f"format '{name}'"
        if self.family not in FAMILIES:
            raise ProblemError(f"{where}: family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        if not _positive_int(self.bits) or self.bits > MAX_BITS:
            raise ProblemError(f"{where}: 'bits' (data bits per weight) must be an integer in 1..{MAX_BITS}, got {self.bits!r}")
        if self.group_size is not None and not _positive_int(self.group_size):
            raise ProblemError(f"{where}: group_size must be a positive integer (weights per scale) or None (per channel), got {self.group_size!r}")
        if not isinstance(self.symmetric, bool):
            raise ProblemError(f"{where}: symmetric must be true or false, got {self.symmetric!r}")
        for key in ("scale_bits", "zero_bits"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BITS:
                raise ProblemError(f"{where}: {key} must be an integer in 0..{MAX_BITS}, got {value!r}")
        if self.act_bits is not None and (not _positive_int(self.act_bits) or self.act_bits > MAX_BITS):
            raise ProblemError(f"{where}: act_bits must be an integer in 1..{MAX_BITS} or None, got {self.act_bits!r}")
        if self.gguf_type is not None and (not isinstance(self.gguf_type, str) or not _NAME_RE.match(self.gguf_type)):
            raise ProblemError(f"{where}: gguf_type must be a GGML type name such as 'Q4_K', got {self.gguf_type!r}")
        if not isinstance(self.note, str):
            raise ProblemError(f"{where}: note must be a string, got {self.note!r}")
        object.__setattr__(self, "block", self._check_block(where))

    def _check_block(self, where: str) -> tuple[tuple[str, int], ...]:
        if isinstance(self.block, (str, bytes)) or not isinstance(self.block, (tuple, list)):
            raise ProblemError(f"{where}: block must be a list of (part, bits) pairs, got {self.block!r}")
        parts = []
        for i, part in enumerate(self.block):
            if not isinstance(part, (tuple, list)) or len(part) != 2 or not isinstance(part[0], str) or not _positive_int(part[1]):
                raise ProblemError(f"{where}: block part {i} must be a (description, positive number of bits) pair, got {part!r}")
            parts.append((part[0], part[1]))
        if parts:
            if self.group_size is None:
                raise ProblemError(f"{where}: a block layout needs group_size, the number of weights one block holds")
            if sum(bits for _, bits in parts) < self.group_size:
                raise ProblemError(f"{where}: block of {self.group_size} weights holds only {sum(b for _, b in parts)} bits, under 1 bit per weight")
        return tuple(parts)

    # ------------------------------------------------------------------ storage
    @property
    def effective_bits(self) -> float:
        """Bits per weight with per-group scales, zero points and block metadata; a per-channel
        format's row scale is left out (see :meth:`storage_bits`)."""
        if self.block:
            return sum(bits for _, bits in self.block) / self.group_size  # type: ignore[operator]
        if self.group_size is None:
            return float(self.bits)
        return self.bits + (self.scale_bits + self.zero_bits) / self.group_size

    @property
    def row_bits(self) -> int:
        """Bits stored once per output row (a per-channel scale and zero point); 0 for grouped formats."""
        return 0 if self.group_size is not None else self.scale_bits + self.zero_bits

    def storage_bits(self, params: float, row_length: int | None = None) -> float:
        """Bits to store ``params`` weights; with ``row_length`` the per-row scales are counted too."""
        total = params * self.effective_bits
        if row_length is not None and self.row_bits:
            total += params / row_length * self.row_bits
        return float(total)

    def fits(self, row_length: int) -> str | None:
        """Why a layer with rows of ``row_length`` weights cannot take this format, or None if it can."""
        if self.group_size is None or self.group_size == 1 or row_length % self.group_size == 0:
            return None
        return f"row length {row_length} is not divisible by {self.name}'s {self.group_size}-weight {self._group_word()}"

    def _group_word(self) -> str:
        if self.family == "gguf":
            return "super-block" if self.group_size == 256 else "block"
        return "block" if self.block or self.family in ("mxfp4", "nvfp4") else "group"

    def describe(self) -> str:
        """Where ``effective_bits`` comes from, in words."""
        if self.block:
            total = sum(bits for _, bits in self.block)
            unit, scale = ("bytes", 8) if all(b % 8 == 0 for _, b in self.block) else ("bits", 1)
            parts = " + ".join(f"{what} {bits // scale}" for what, bits in self.block)
            weights = "1 weight" if self.group_size == 1 else f"{self.group_size} weights"
            return f"{self.name}: {weights} in {total // scale} {unit} ({parts}) = {self.effective_bits:g} bits per weight"
        extra = [f"{self.scale_bits}-bit scale"] if self.scale_bits else []
        if self.zero_bits:
            extra.append(f"{self.zero_bits}-bit zero point")
        per = f"per group of {self.group_size} weights" if self.group_size else "per output row"
        meta = f" + {' + '.join(extra)} {per}" if extra else ""
        return f"{self.name}: {self.bits}-bit {self.family} weights{meta} = {self.effective_bits:g} bits per weight" + (
            " (+ the row's scale over the row length)" if self.row_bits else "")

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """The fields that differ from the defaults, JSON-ready (``block`` as ``[[what, bits], ...]``).

        >>> get_format("int4-g128-asym").to_dict()
        {'name': 'int4-g128-asym', 'family': 'int', 'bits': 4, 'group_size': 128, 'symmetric': False, 'scale_bits': 16, 'zero_bits': 16}
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "family", "bits") or value != f.default:
                out[f.name] = [list(part) for part in value] if f.name == "block" else value
        return out

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> "Format":
        """The inverse of :meth:`to_dict`; unknown keys are refused."""
        if not isinstance(spec, Mapping):
            raise ProblemError(f"a format must be a name or an object of format fields, got {spec!r}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(spec) - set(known), key=str)
        if unknown:
            raise ProblemError(f"format {spec.get('name', '?')!r}: unknown key {unknown[0]!r}; format keys are {', '.join(known)}")
        missing = [key for key in ("name", "family", "bits") if key not in spec]
        if missing:
            raise ProblemError(f"format {spec.get('name', '?')!r}: missing {missing[0]!r}")
        args = dict(spec)
        if "block" in args and isinstance(args["block"], list):
            args["block"] = tuple(tuple(p) if isinstance(p, list) else p for p in args["block"])
        return cls(**args)

    @property
    def is_builtin(self) -> bool:
        """True when this is exactly the catalogue's entry of that name (files then store just the name)."""
        try:
            return _builtin(self.name) == self
        except ProblemError:  # a name like 'int4-g0' that the integer scheme refuses
            return False


# ---------------------------------------------------------------------- the catalogue
def _b(what: str, nbytes: int) -> tuple[str, int]:
    return (what, 8 * nbytes)


def _gguf(name: str, bits: int, size: int, parts: list[tuple[str, int]], symmetric: bool = True, family: str = "gguf") -> Format:
    return Format(name, family, bits, group_size=size, symmetric=symmetric, block=tuple(_b(w, n) for w, n in parts), gguf_type=name.upper(),
                  note="ggml-common.h block layout")


def int_format(bits: int, group_size: int | None = None, symmetric: bool = True) -> Format:
    """The integer format named by the scheme ``int{bits}[-g{group_size}][-asym]`` (fp16 scales and zeros).

    >>> int_format(4, 128, symmetric=False).name, int_format(8).effective_bits
    ('int4-g128-asym', 8.0)
    """
    if not _positive_int(bits) or bits > 16:
        raise ProblemError(f"integer format 'int{bits}': bits must be an integer in 1..16, got {bits!r}")
    name = f"int{bits}" + (f"-g{group_size}" if group_size is not None else "") + ("" if symmetric else "-asym")
    return Format(name, "int", bits, group_size=group_size, symmetric=symmetric, scale_bits=_FP16, zero_bits=0 if symmetric else _FP16)


_K = 256  # GGUF k-quant super-block
_CATALOGUE: tuple[Format, ...] = (
    # GGUF legacy types: blocks of 32 weights (ggml-common.h block_q*_0/1)
    _gguf("Q4_0", 4, 32, [("fp16 scale d", 2), ("4-bit quants", 16)]),
    _gguf("Q4_1", 4, 32, [("fp16 scale d", 2), ("fp16 min m", 2), ("4-bit quants", 16)], symmetric=False),
    _gguf("Q5_0", 5, 32, [("fp16 scale d", 2), ("5th bits qh", 4), ("low 4 bits", 16)]),
    _gguf("Q5_1", 5, 32, [("fp16 scale d", 2), ("fp16 min m", 2), ("5th bits qh", 4), ("low 4 bits", 16)], symmetric=False),
    _gguf("Q8_0", 8, 32, [("fp16 scale d", 2), ("8-bit quants", 32)]),
    # GGUF k-quants: super-blocks of 256 weights in 16 or 8 sub-blocks with quantized sub-scales
    _gguf("Q2_K", 2, _K, [("4-bit scales and mins of 16 sub-blocks", 16), ("2-bit quants", 64), ("fp16 super-block scale d", 2),
                          ("fp16 super-block min dmin", 2)], symmetric=False),
    _gguf("Q3_K", 3, _K, [("high bits hmask", 32), ("low 2 bits", 64), ("6-bit scales of 16 sub-blocks", 12), ("fp16 super-block scale d", 2)]),
    _gguf("Q4_K", 4, _K, [("fp16 super-block scale d", 2), ("fp16 super-block min dmin", 2), ("6-bit scales and mins of 8 sub-blocks", 12),
                          ("4-bit quants", 128)], symmetric=False),
    _gguf("Q5_K", 5, _K, [("fp16 super-block scale d", 2), ("fp16 super-block min dmin", 2), ("6-bit scales and mins of 8 sub-blocks", 12),
                          ("5th bits qh", 32), ("low 4 bits", 128)], symmetric=False),
    _gguf("Q6_K", 6, _K, [("low 4 bits ql", 128), ("high 2 bits qh", 64), ("8-bit scales of 16 sub-blocks", 16), ("fp16 super-block scale d", 2)]),
    # GGUF i-quants (lattice codebooks) and ternary types
    _gguf("IQ1_S", 1, _K, [("fp16 scale d", 2), ("grid indices qs", 32), ("high index bits, scales and shift qh", 16)]),
    _gguf("IQ1_M", 1, _K, [("grid indices qs", 32), ("high index bits qh", 16), ("3-bit scales with the fp16 scale packed in", 8)]),
    _gguf("IQ2_XXS", 2, _K, [("fp16 scale d", 2), ("grid indices, signs and scales qs", 64)]),
    _gguf("IQ2_XS", 2, _K, [("fp16 scale d", 2), ("grid indices and signs qs", 64), ("4-bit scales", 8)]),
    _gguf("IQ2_S", 2, _K, [("fp16 scale d", 2), ("grid indices and signs qs", 64), ("high index bits qh", 8), ("4-bit scales", 8)]),
    _gguf("IQ3_XXS", 3, _K, [("fp16 scale d", 2), ("grid indices, signs and scales qs", 96)]),
    _gguf("IQ3_S", 3, _K, [("fp16 scale d", 2), ("grid indices qs", 64), ("high index bits qh", 8), ("signs", 32), ("4-bit scales", 4)]),
    _gguf("IQ4_NL", 4, 32, [("fp16 scale d", 2), ("4-bit non-linear quants", 16)]),
    _gguf("IQ4_XS", 4, _K, [("fp16 scale d", 2), ("high scale bits", 2), ("low scale bits", 4), ("4-bit non-linear quants", 128)]),
    _gguf("TQ1_0", 2, _K, [("240 trits, 5 per byte", 48), ("16 trits, 4 per byte", 4), ("fp16 scale d", 2)]),
    _gguf("TQ2_0", 2, _K, [("2-bit trits", 64), ("fp16 scale d", 2)]),
    # kept in floating point: one element per block
    _gguf("F32", 32, 1, [("fp32 value", 4)], family="float"),
    _gguf("F16", 16, 1, [("fp16 value", 2)], family="float"),
    _gguf("BF16", 16, 1, [("bf16 value", 2)], family="float"),
    # 4-bit floats with shared block scales
    Format("mxfp4", "mxfp4", 4, group_size=32, scale_bits=8, gguf_type="MXFP4", note="OCP MX v1.0: 32 E2M1 values + one E8M0 scale"),
    Format("nvfp4", "nvfp4", 4, group_size=16, scale_bits=8,
           note="NVIDIA NVFP4: 16 E2M1 values + one FP8 E4M3 scale; the fp32 scale per tensor is not counted"),
    # FP8 per output channel, fp32 scale per row (vLLM / llm-compressor 'channel' strategy)
    Format("fp8-e4m3", "fp8", 8, scale_bits=32, note="E4M3 values, fp32 scale per output row"),
    Format("fp8-e5m2", "fp8", 8, scale_bits=32, note="E5M2 values, fp32 scale per output row"),
    # integers, per channel and in groups of 32/64/128 (GPTQ/AWQ-style: fp16 scale, fp16 zero when asymmetric)
    *(int_format(b, None, sym) for b in range(2, 9) for sym in (True, False)),
    *(int_format(b, g, sym) for b in range(2, 9) for g in (32, 64, 128) for sym in (True, False)),
)
_ALIASES = {"fp8": "fp8-e4m3", "fp16": "F16", "float16": "F16", "fp32": "F32", "float32": "F32"}
_BUILTIN: dict[str, Format] = {f.name.lower(): f for f in _CATALOGUE}
_REGISTERED: dict[str, Format] = {}


def _builtin(name: str) -> Format | None:
    key = _ALIASES.get(name.lower(), name).lower()
    if key in _BUILTIN:
        return _BUILTIN[key]
    match = _INT_RE.match(key)
    if match:
        bits, group, kind = match.groups()
        if group is not None and int(group) == 0:
            raise ProblemError(f"format {name!r}: group size must be a positive integer (as in 'int4-g128'), got 0")
        return int_format(int(bits), None if group is None else int(group), symmetric=kind != "-asym")
    return None


def get_format(name: "str | Format") -> Format:
    """The format of this name (any case; see the module docstring for the scheme), or a ``ProblemError``.

    >>> get_format("Q4_K") is get_format("q4_k")
    True
    >>> get_format("Q4_KM")
    Traceback (most recent call last):
    ...
    mpqopt.errors.ProblemError: unknown quantization format 'Q4_KM'; did you mean Q4_K, Q6_K, Q5_K? (mpqopt.formats.format_names() lists them)
    """
    if isinstance(name, Format):
        return name
    if not isinstance(name, str):
        raise ProblemError(f"a format name must be a string such as 'Q4_K' or 'int4-g128', got {name!r}")
    key = name.strip().lower()
    if key in _REGISTERED:
        return _REGISTERED[key]
    found = _builtin(name.strip()) if key else None
    if found is not None:
        return found
    close = difflib.get_close_matches(key, [n.lower() for n in format_names()], n=3, cutoff=0.6)
    names = {n.lower(): n for n in format_names()}
    hint = f"; did you mean {', '.join(names[c] for c in close)}?" if close else ""
    raise ProblemError(f"unknown quantization format {name!r}{hint} (mpqopt.formats.format_names() lists them)")


def register_format(fmt: Format, *, replace: bool = False) -> Format:
    """Make ``fmt`` available by name (``Option.parse(name)``, files). A built-in name cannot be
    taken; re-registering a name needs ``replace=True`` unless the format is the same.

    >>> f = register_format(Format("myq3", "int", 3, group_size=64, scale_bits=16))
    >>> get_format("MYQ3").effective_bits
    3.25
    >>> unregister_format("myq3")
    """
    if not isinstance(fmt, Format):
        raise ProblemError(f"register_format() takes a Format, got {type(fmt).__name__}")
    key = fmt.name.lower()
    if key in _ALIASES or _builtin(fmt.name) is not None:
        raise ProblemError(f"format name {fmt.name!r} is built in; give your format another name")
    old = _REGISTERED.get(key)
    if old is not None and old != fmt and not replace:
        raise ProblemError(f"format {fmt.name!r} is already registered with other fields; pass replace=True to change it")
    _REGISTERED[key] = fmt
    return fmt


def unregister_format(name: str) -> None:
    """Forget a format added with :func:`register_format` (built-in formats stay)."""
    if _REGISTERED.pop(str(name).lower(), None) is None:
        raise ProblemError(f"format {name!r} is not a registered format")


def format_names() -> tuple[str, ...]:
    """Names of the catalogue's formats and the registered ones (the integer scheme reads more)."""
    return tuple(f.name for f in _CATALOGUE) + tuple(f.name for f in _REGISTERED.values())


def catalogue() -> tuple[Format, ...]:
    """Every built-in format, in catalogue order."""
    return _CATALOGUE
