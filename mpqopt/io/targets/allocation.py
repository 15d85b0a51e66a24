"""What every writer starts from: an allocation as ``(layer, Option)`` pairs, and the checks they share.

An allocation is a solve :class:`~mpqopt.Result` (its assignment, with the problem's own options) or a
mapping ``{layer: option}`` (an ``Option``, a ``Format`` or anything ``Option.parse`` reads: ``"Q4_K"``,
``"int4-g128-asym"``, ``{"format": "int4", "group_size": 64}``).

>>> pairs({"blk.0.attn_q": "Q4_K", "blk.0.attn_v": "Q6_K"})
[('blk.0.attn_q', Option(w=4, a=None, label='Q4_K', format='Q4_K')), ('blk.0.attn_v', Option(w=6, a=None, label='Q6_K', format='Q6_K'))]
"""

from __future__ import annotations

from typing import Any, Mapping

from ...errors import ArgumentError, MpqoptError, UnsupportedFormatError
from ...formats import Format
from ...options import Option
from ...result import Result

Allocation = Any  # a Result or a Mapping[str, OptionLike]; Any keeps the signatures readable


def pairs(allocation: Allocation) -> list[tuple[str, Option]]:
    """``[(layer, Option), ...]`` in the allocation's order; a result without an assignment, an empty
    mapping or an unreadable option is an error naming the layer."""
    if isinstance(allocation, Result):
        if allocation.x is None:
            raise ArgumentError(f"the solve found no assignment to export (status {allocation.status}: {allocation.message})")
        options = allocation.problem.options
        return [(layer, options[k]) for layer, k in zip(allocation.problem.layers, allocation.x.tolist())]
    if not isinstance(allocation, Mapping):
        raise ArgumentError(f"an allocation is a solve Result or a {{layer: option}} mapping, got {type(allocation).__name__}")
    if not allocation:
        raise ArgumentError("the allocation is empty: there is no layer to export")
    out = []
    for layer, spec in allocation.items():
        if not isinstance(layer, str) or not layer:
            raise ArgumentError(f"layer names must be non-empty strings, got {layer!r}")
        try:
            out.append((layer, Option.parse(spec)))
        except MpqoptError as exc:
            raise ArgumentError(f"layer '{layer}': {exc}") from None
    return out


def weight_format(tool: str, layer: str, option: Option) -> Format:
    """The option's storage format, or an error: a plain ``W4`` option says how many bits, not how
    they are stored (per channel? groups of 128? symmetric?), and a tool config needs all of that."""
    if option.format is None:
        raise UnsupportedFormatError(
            f"{tool}: layer '{layer}' has option '{option.label}', which names no storage format; give the problem "
            f"named formats such as 'int{option.w}-g128' or 'Q4_K' (mpqopt.formats) to export it")
    return option.format


def refuse(tool: str, layer: str, option: Option, why: str) -> UnsupportedFormatError:
    """The error a writer raises for a format ``tool`` cannot express."""
    return UnsupportedFormatError(f"{tool} cannot express layer '{layer}' in format '{option.label}': {why}")


def weight_only(tool: str, layer: str, option: Option) -> Format:
    """:func:`weight_format`, refusing activation bits (``W4A8``, ``int8-a8``): the tool quantizes weights only."""
    fmt = weight_format(tool, layer, option)
    if option.a is not None and option.a < 16:
        raise refuse(tool, layer, option, f"it quantizes weights only, and this option quantizes activations to {option.a} bits")
    return fmt


def is_kept_float(fmt: Format) -> bool:
    """True for weights kept in 16/32-bit floating point (F16, BF16, F32): nothing to quantize."""
    return fmt.family == "float"
