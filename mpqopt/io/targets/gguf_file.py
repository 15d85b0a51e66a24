"""Open a GGUF file (a model or a llama.cpp imatrix) with the ``gguf`` package, every failure a
:class:`~mpqopt.errors.FormatError` naming the file: missing, a directory, empty, not GGUF, or cut
short (``GGUFReader`` then fails deep inside numpy with a reshape or index error).

>>> import tempfile, os
>>> with tempfile.TemporaryDirectory() as d:
...     open(os.path.join(d, "x.gguf"), "wb").close()
...     open_gguf(os.path.join(d, "x.gguf"))
Traceback (most recent call last):
...
mpqopt.errors.FormatError: ...x.gguf: $: the file is empty, not a GGUF file
"""

from __future__ import annotations

import os
from typing import Any

from ...errors import FormatError, ProblemError

__all__ = ["open_gguf", "require_gguf"]


def require_gguf(what: str) -> Any:
    """The ``gguf`` module, or an error saying ``what`` needs it and how to install it."""
    try:
        import gguf
    except ImportError:  # pragma: no cover - the llm extra is missing
        raise ProblemError(f"{what} needs the gguf package: pip install 'mpqopt[llm]'") from None
    return gguf


def open_gguf(path: str | os.PathLike[str], what: str = "reading GGUF files") -> Any:
    """``gguf.GGUFReader(path)``, or a ``FormatError`` naming ``path`` and what is wrong with it."""
    gguf = require_gguf(what)
    source = os.fspath(path)
    if os.path.isdir(source):
        raise FormatError("is a directory, not a GGUF file", source=source)
    if not os.path.exists(source):
        raise FormatError("no such file", source=source)
    if os.path.getsize(source) == 0:
        raise FormatError("the file is empty, not a GGUF file", source=source)
    try:
        return gguf.GGUFReader(source)
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror or exc}", source=source) from None
    except Exception as exc:  # noqa: BLE001 - the reader's numpy/struct failures on a damaged file, named
        if "magic" in str(exc).lower():
            raise FormatError("not a GGUF file (no GGUF magic at its start)", source=source) from None
        raise FormatError(f"cannot read as a GGUF file: truncated or damaged ({type(exc).__name__}: {exc})", source=source) from None
