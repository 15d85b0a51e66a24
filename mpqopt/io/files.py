"""``load`` and ``save``: problem files on disk, format chosen by extension (``.json`` or ``.npz``).

>>> import tempfile, os
>>> from mpqopt import Problem
>>> p = Problem(["a", "b"], [4, 8], [[0.5, 0.0], [0.1, 0.0]], costs={"size_bits": [[4, 8], [4, 8]]})
>>> path = os.path.join(tempfile.mkdtemp(), "p.npz")
>>> save(p, path)
>>> load(path).costs["size_bits"].tolist()
[[4.0, 8.0], [4.0, 8.0]]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Callable

from ..errors import FormatError
from ..problem import Problem
from .json_format import dumps, loads
from .npz_format import read_npz, write_npz

SUFFIXES = (".json", ".npz")


def load(path: str | os.PathLike[str]) -> Problem:
    """Read a problem file (``.json`` or ``.npz``); every fault is a ``FormatError`` naming file and place."""
    path = Path(path)
    source = str(path)
    suffix = _suffix(path)
    try:
        with open(path, "rb") as file:
            if suffix == ".json":
                return loads(file.read(), source)
            return read_npz(file, source)
    except FileNotFoundError:
        raise FormatError("no such file", "$", source) from None
    except IsADirectoryError:
        raise FormatError("is a directory, not a problem file", "$", source) from None
    except PermissionError:
        raise FormatError("permission denied", "$", source) from None
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror or exc}", "$", source) from None


def save(problem: Problem, path: str | os.PathLike[str]) -> None:
    """Write a problem file (``.json`` or ``.npz``, by extension), replacing ``path`` atomically.

    OS errors (missing directory, no permission) propagate as ``OSError``.
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"save() needs an mpqopt.Problem, got {type(problem).__name__}")
    path = Path(path)
    if _suffix(path) == ".json":
        text = dumps(problem).encode("utf-8")
        _atomic_write(path, lambda file: file.write(text))
    else:
        _atomic_write(path, lambda file: write_npz(problem, file))


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise FormatError(f"unknown file type {path.suffix or '(no extension)'!r}; problem files end in .json or .npz", "$", str(path))
    return suffix


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    # a crash or a refused meta value mid-write must not leave a truncated problem file behind
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as file:
            write(file)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
