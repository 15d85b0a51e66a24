"""The ``mpqopt`` command line's options: argparse value types, and parent parsers (``parents=``) that
define each option several commands share once -- flags, type, default, metavar -- with each command's
own help text where the option means something a little different there.

A command lists its parents in the order its options appear in ``--help``; an option only it has
sits in its own small parent where it belongs between shared ones.
"""

from __future__ import annotations

import argparse
import math
import re

from ..arguments import DEFAULT_MAX_BYTES

# `mpqopt export --format TOOL` and `mpqopt import KIND`: named here, so that building the parser
# imports none of mpqopt.io.targets (the writers load with the command that uses them)
TARGET_TOOLS = ("llama.cpp", "torchao", "hqq", "compressed-tensors", "modelopt", "auto-round", "gptqmodel")
IMPORT_KINDS = ("auto-round", "imatrix")


def _number(convert, accept, expected: str, rule: str):
    """An argparse type: ``convert`` the text, then require ``accept(value)``; one clear message each."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{rule}, got {text!r}")
        return value

    return parse


_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def _byte_size(text: str) -> int:
    """``--max-file-size``: a number of bytes, optionally with a unit (``500MB``, ``4GiB``)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"expected a size such as 2147483648, 500MB or 4GiB, got {text!r}")
    value = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return value


_positive_float = _number(float, lambda v: 0 < v < float("inf"), "a number of seconds", "must be a positive number")
_positive_int = _number(int, lambda v: v >= 1, "a whole number", "must be at least 1")
_gap = _number(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)", "must lie in [0, 1)")
_finite_float = _number(float, math.isfinite, "a number", "must be a finite number")


# ---------------------------------------------------------------------------------- parent parsers
def options() -> argparse.ArgumentParser:
    """An empty parent parser: a command's own options, to list among the shared ones."""
    return argparse.ArgumentParser(add_help=False)


def common_options() -> argparse.ArgumentParser:
    """``--debug``, on every command."""
    p = options()
    # SUPPRESS so a subcommand's default does not overwrite `mpqopt --debug solve ...`
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    return p


def problem_file() -> argparse.ArgumentParser:
    """``FILE`` and ``--max-file-size``: commands that read a problem file."""
    p = options()
    p.add_argument("--max-file-size", type=_byte_size, default=DEFAULT_MAX_BYTES, metavar="SIZE",
                   help="refuse problem files (and NPZ arrays once expanded) larger than SIZE: bytes, or with a "
                        "unit (500MB, 4GiB); default 2GiB")
    p.add_argument("file", metavar="FILE", help="problem file")
    return p


def budget_option(help: str) -> argparse.ArgumentParser:
    """``-b/--budget NAME=VALUE``, repeatable (``args.budget``: the list for ``parse_budget_args``)."""
    p = options()
    p.add_argument("-b", "--budget", action="append", default=[], metavar="NAME=VALUE", help=help)
    return p


def solver_option(help: str) -> argparse.ArgumentParser:
    """``--solver NAME`` (default ``auto``)."""
    p = options()
    p.add_argument("--solver", default="auto", metavar="NAME", help=help)
    return p


def time_limit_option(help: str) -> argparse.ArgumentParser:
    """``--time-limit S``: positive seconds (default ``None``: no limit)."""
    p = options()
    p.add_argument("--time-limit", type=_positive_float, metavar="S", help=help)
    return p


def solver_tuning_options() -> argparse.ArgumentParser:
    """``--mip-gap``, ``--threads``, ``--verbose``: passed on to the solver."""
    p = options()
    p.add_argument("--mip-gap", type=_gap, default=0.0, metavar="G", help="relative gap at which to stop (default 0: prove optimality)")
    p.add_argument("--threads", type=_positive_int, metavar="N", help="solver threads")
    p.add_argument("--verbose", action="store_true", help="show the solver log (on stderr when --json)")
    return p


def target_options() -> argparse.ArgumentParser:
    """``--minimize NAME`` and ``--max-loss X``: accuracy-target mode (least cost at a loss limit)."""
    p = options()
    p.add_argument("--minimize", metavar="NAME",
                   help="accuracy-target mode: minimize the total of cost NAME (a unique prefix works: size for size_bits) "
                        "instead of the predicted loss; the budgets still apply")
    p.add_argument("--max-loss", type=_finite_float, metavar="X",
                   help="with --minimize: the total predicted loss (sensitivity plus pairwise term) may be at most X")
    return p


def json_option(help: str) -> argparse.ArgumentParser:
    """``--json``: machine-readable output on stdout."""
    p = options()
    p.add_argument("--json", action="store_true", help=help)
    return p


def output_option(what: str) -> argparse.ArgumentParser:
    """``-o/--output OUT``: also write the JSON of ``what`` (the result, the frontier) to a file."""
    p = options()
    p.add_argument("-o", "--output", metavar="OUT", help=f"also write the {what} JSON to OUT")
    return p
