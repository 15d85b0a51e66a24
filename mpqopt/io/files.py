"""Dispatch load/save on the file extension (.json or .npz)."""

from __future__ import annotations

import json
from pathlib import Path

from ..problem import Problem


def load(path: str | Path) -> Problem:
    return Problem(**{k: v for k, v in json.loads(Path(path).read_text()).items() if k not in ("format", "version")})


def save(problem: Problem, path: str | Path) -> None:
    raise NotImplementedError
