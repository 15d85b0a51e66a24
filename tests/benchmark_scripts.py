"""Import a script of ``benchmarks/`` (not part of the package) as a module, once."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as module ``benchmarks_<name>`` (registered before it runs: dataclasses
    look their module up while being built)."""
    key = f"benchmarks_{name}"
    if key not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:  # no half-built module left behind for the next test
            del sys.modules[key]
            raise
    return sys.modules[key]
