"""Options and allocations as every adapter reads them (framework-free).

:func:`parse_options` reads an estimator's option list, :func:`choices_of` an allocation (a solve
:class:`~mpqopt.Result` or ``{layer: option}``), :func:`is_identity` tells an option that
quantizes nothing (estimators score it 0 without measuring it).

>>> [o.label for o in parse_options([2, "W4A8"])], is_identity(Option(32)), is_identity(Option(32, 8))
(['W2', 'W4A8'], True, False)
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence, Union

from ..errors import ProblemError
from ..formats import Format
from ..options import Option, OptionLike
from ..result import Result
from .scheme import FULL_PRECISION_BITS

Solution = Union[Result, Mapping[str, OptionLike]]


def parse_options(options: Sequence[OptionLike]) -> tuple[Option, ...]:
    """Options as :class:`Option` objects, with a clear error for an empty or bad list."""
    if isinstance(options, (str, int)) or not options:
        raise ProblemError(f"options must be a non-empty list such as [2, 4, 8] or ['W4A8', 'W8A8'], got {options!r}")
    return tuple(Option.parse(o) for o in options)


def parse_option(value: OptionLike, name: str) -> Option:
    """The option a layer is given, with an error naming the layer when it cannot be read.

    >>> parse_option("W4", "fc").w
    4
    """
    try:
        return Option.parse(value)
    except Exception as exc:  # noqa: BLE001 - re-raised with the layer named
        raise ProblemError(f"layer {name!r}: {exc}") from None


def is_identity(option: Option) -> bool:
    """True when ``option`` quantizes nothing: weights at full precision and activations either left
    alone (``a`` None) or at full precision too."""
    return option.w >= FULL_PRECISION_BITS and (option.a is None or option.a >= FULL_PRECISION_BITS)


def quantizes_input(option: Option) -> bool:
    """True when ``option`` fake-quantizes the layer's input: an activation width below full precision."""
    return option.a is not None and option.a < FULL_PRECISION_BITS


def choices_of(solution: Solution, purpose: str = "apply", formats: Callable[[Format], str | None] | None = None) -> dict[str, Option]:
    """``{layer: Option}`` from a solve :class:`~mpqopt.Result` or a ``{layer: label/Option/bits}``
    mapping; ``purpose`` ("apply", "export") words the error for a result with no assignment.

    ``formats``: the adapter's ``reason(format) -> str | None`` saying why it cannot reproduce a
    named format (None: it can); without it every named format is refused (the adapter quantizes
    plain widths only).

    >>> choices_of({"fc": "W4A8", "conv": 8})
    {'fc': Option(w=4, a=8, label='W4A8'), 'conv': Option(w=8, a=None, label='W8')}
    """
    if isinstance(solution, Result):
        if solution.x is None:
            raise ProblemError(f"the result has no assignment to {purpose} (status {solution.status}): {solution.message}")
        options = solution.problem.options
        choices = {name: options[int(k)] for name, k in zip(solution.problem.layers, solution.x.tolist())}
    elif isinstance(solution, Mapping):
        if not solution:
            raise ProblemError("the assignment is empty: give {layer name: option} for at least one layer")
        choices = {name: parse_option(value, name) for name, value in solution.items()}
    else:
        raise ProblemError(f"solution must be an mpqopt Result or a mapping layer -> option, got {type(solution).__name__}")
    for name, option in choices.items():
        if option.format is not None and formats is not None:
            reason = formats(option.format)
            if reason is not None:
                raise ProblemError(f"layer {name!r}: option '{option.label}' cannot be used ({purpose}): {reason}")
        elif option.format is not None:
            # the adapters quantize plain integer widths their own way (per channel): applying a named
            # format (group sizes, scales, GGUF blocks) that way would be silently another format
            raise ProblemError(f"layer {name!r}: option '{option.label}' is the storage format '{option.format.name}', which this "
                               f"adapter's {purpose} cannot reproduce (it quantizes plain options such as 'W4' or 'W4A8' per channel)")
    return choices
