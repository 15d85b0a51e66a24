"""How weights are quantized, shared by the torch quantizer and the ONNX (numpy) one (framework-free).

A :class:`WeightScheme` says symmetric or not, one scale per tensor or per output channel, and how
the scale is chosen; :func:`parse_scheme` reads the forms users give (a scheme, a dict, None).
The integer grid and the bit-width checks live here too, so both quantizers round to the same
grid and reject the same inputs with the same words.

>>> parse_scheme({"per_channel": False})
WeightScheme(symmetric=True, per_channel=False, scale='minmax')
>>> grid_range(4, symmetric=True), grid_range(4, symmetric=False)
((-8.0, 7.0), (0.0, 15.0))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import ProblemError

SCALE_METHODS = ("minmax", "mse")
FULL_PRECISION_BITS = 32  # a bit-width at or above this leaves the tensor untouched
_FIELDS = ("symmetric", "per_channel", "scale")


@dataclass(frozen=True)
class WeightScheme:
    """How weights are quantized.

    >>> WeightScheme(symmetric=False, per_channel=False, scale="mse").scale
    'mse'
    """

    symmetric: bool = True
    per_channel: bool = True
    scale: str = "minmax"

    def __post_init__(self) -> None:
        check_scale(self.scale)


def parse_scheme(scheme: Any) -> WeightScheme:
    """The weight scheme from a :class:`WeightScheme` (returned as is), any object with
    ``symmetric``, ``per_channel``, ``scale`` attributes, a dict of those keys, or None (symmetric,
    per channel, min/max).

    >>> parse_scheme(None) == WeightScheme()
    True
    """
    if isinstance(scheme, WeightScheme):
        return scheme
    if scheme is None:
        return WeightScheme()
    if isinstance(scheme, Mapping):
        unknown = set(scheme) - set(_FIELDS)
        if unknown:
            raise ProblemError(f"weight scheme has unknown keys {sorted(unknown)}; use symmetric, per_channel, scale")
        get = scheme.get
    else:
        get = lambda key, default: getattr(scheme, key, default)  # noqa: E731 - a duck-typed scheme object
    return WeightScheme(bool(get("symmetric", True)), bool(get("per_channel", True)), get("scale", "minmax"))


def check_scale(scale: Any) -> None:
    """Reject an unknown scale method (one of :data:`SCALE_METHODS`)."""
    if scale not in SCALE_METHODS:
        raise ProblemError(f"weight scale method must be one of {SCALE_METHODS}, got {scale!r}")


def check_bits(bits: Any, what: str, symmetric: bool) -> None:
    """Reject a bit-width that is not a positive integer, or 1 bit on a symmetric grid, naming ``what``.

    >>> check_bits(1, "weight", symmetric=True)
    Traceback (most recent call last):
    ...
    mpqopt.errors.ProblemError: weight: symmetric quantization needs at least 2 bits (1 bit has no zero level); use an asymmetric scheme
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
        raise ProblemError(f"{what} bit-width must be a positive integer, got {bits!r}")
    if symmetric and bits < 2:
        raise ProblemError(f"{what}: symmetric quantization needs at least 2 bits (1 bit has no zero level); use an asymmetric scheme")


def grid_range(bits: int, symmetric: bool) -> tuple[float, float]:
    """Integer range ``(qmin, qmax)`` of the quantization grid: ``[-2^(b-1), 2^(b-1)-1]`` when
    symmetric, ``[0, 2^b-1]`` otherwise."""
    if symmetric:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1
