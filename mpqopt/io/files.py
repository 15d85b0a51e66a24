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
import stat
from pathlib import Path
from typing import IO, Callable

from ..arguments import DEFAULT_MAX_BYTES, check_max_bytes, check_path
from ..errors import ArgumentError, FormatError
from ..problem import Problem
from .json_format import dumps, loads
from .npz_format import read_npz, write_npz

SUFFIXES = (".json", ".npz")


def load(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> Problem:
    """Read a problem file (``.json`` or ``.npz``); every fault is a ``FormatError`` naming file and place.

    Only regular files are read (a FIFO, ``/dev/zero`` or a socket behind a ``.json`` name is refused
    without blocking), and no more than ``max_bytes`` (default 2 GiB) of them: a bigger file is
    refused before it is read. ``path`` must be a file name, not an open file or bytes.

    >>> load(b"model.json")
    Traceback (most recent call last):
    ...
    mpqopt.errors.ArgumentError: path must be a file name (str or os.PathLike), got b'model.json' (bytes)
    """
    path = check_path(path, "path")
    max_bytes = check_max_bytes(max_bytes)
    source = str(path)
    suffix = _suffix(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever; fstat then tells
        # what was opened, with no window for the name to be swapped between a stat and the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise FormatError("no such file", "$", source) from None
    except IsADirectoryError:
        raise FormatError("is a directory, not a problem file", "$", source) from None
    except PermissionError:
        raise FormatError("permission denied", "$", source) from None
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror or exc}", "$", source) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise FormatError("is a directory, not a problem file", "$", source)
        if not stat.S_ISREG(info.st_mode):
            raise FormatError(f"is not a regular file (it is a {_kind(info.st_mode)}); problem files are read from disk "
                              f"whole, so copy the data to a file first", "$", source)
        if info.st_size > max_bytes:
            raise FormatError(f"is {_size(info.st_size)}, above the {_size(max_bytes)} limit on problem files; "
                              f"raise it with max_bytes= (mpqopt.load) or --max-file-size (command line)", "$", source)
        _blocking(fd)
        with os.fdopen(fd, "rb") as file:
            fd = -1  # the file object owns it now
            if suffix == ".json":
                return loads(_read_capped(file, info.st_size, max_bytes, source), source)
            return read_npz(file, source, max_bytes)
    except IsADirectoryError:
        raise FormatError("is a directory, not a problem file", "$", source) from None
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror or exc}", "$", source) from None
    finally:
        if fd >= 0:
            os.close(fd)


def save(problem: Problem, path: str | os.PathLike[str]) -> None:
    """Write a problem file (``.json`` or ``.npz``, by extension), replacing ``path`` atomically.

    A missing directory or a refused write is a ``FormatError`` naming ``path``.
    """
    if not isinstance(problem, Problem):
        raise ArgumentError(f"save() needs an mpqopt.Problem, got {type(problem).__name__}")
    path = check_path(path, "path")
    if _suffix(path) == ".json":
        text = dumps(problem).encode("utf-8")
        _atomic_write(path, lambda file: file.write(text))
    else:
        _atomic_write(path, lambda file: write_npz(problem, file))


def _read_capped(file: IO[bytes], size: int, max_bytes: int, source: str) -> bytes:
    """The whole file, refused if it grew past ``max_bytes`` since fstat. Reads what fstat said plus one
    byte first (``read(n)`` allocates n bytes up front, so ``read(max_bytes)`` would take 2 GiB at once)."""
    data = file.read(size + 1)
    if len(data) <= size:
        return data
    chunks = [data]
    total = len(data)
    while chunk := file.read(1 << 24):
        total += len(chunk)
        if total > max_bytes:
            raise FormatError(f"grew past the {_size(max_bytes)} limit on problem files while being read", "$", source)
        chunks.append(chunk)
    return b"".join(chunks)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:.4g} {unit}"
    return f"{n} bytes"


def _blocking(fd: int) -> None:
    # a regular file never blocks, but reads on a descriptor left non-blocking may return short
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise FormatError(f"unknown file type {path.suffix or '(no extension)'!r}; problem files end in .json or .npz", "$", str(path))
    return suffix


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    # a crash or a refused meta value mid-write must not leave a truncated problem file behind
    source = str(path)
    parent = path.parent
    if not parent.is_dir():
        raise FormatError(f"cannot write: directory '{parent}' does not exist", "$", source)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            with open(tmp, "wb") as file:
                write(file)
            os.replace(tmp, path)
        except OSError as exc:  # name the user's file, not the temporary one next to it
            raise FormatError(f"cannot write: {exc.strerror or exc}", "$", source) from None
    finally:
        if tmp.exists():
            tmp.unlink()
