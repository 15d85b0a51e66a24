"""The package's layer order, checked on the source: every ``import`` of an mpqopt module (at the top
of a file, inside a function or under ``if TYPE_CHECKING:``) goes to the same layer or a lower one,
and the modules import each other without a cycle.

Imports are read with ``ast`` from the files, not from ``sys.modules``, so an in-function import that
only hides a cycle or an upward dependency is found too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mpqopt

PACKAGE = Path(mpqopt.__file__).resolve().parent

# Lowest layer first. A module may import its own layer and the layers before it, never a later one.
# An entry names a module or a whole package (``"reductions"`` covers ``mpqopt.reductions.*``); the
# longest matching entry decides. ``""`` is the package itself (``mpqopt/__init__.py``).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # leaves any layer may use: errors, argument checks, clocks, stdout handling, and the one place
    # HiGHS objects are made and run (it reads the reductions' arrays by attribute, imports none)
    ("base", ("errors", "arguments", "deadline", "progress", "stdio", "highs_runtime", "layer_patterns")),
    # the problem model: what a problem, its costs and budgets are, and what an answer is (results,
    # their verification, the readable report, the infeasibility explanation); synthetic problems
    ("model", ("formats", "options", "costs", "budgets", "problem", "verify", "result", "report", "diagnose", "target", "synthetic")),
    # canonical form, linearization, convexification, the solver-neutral matrix forms
    ("reductions", ("reductions",)),
    # reading, writing and building problems (files, LP/MPS export, published allocators' data,
    # framework adapters, example models and their deprecated testbeds alias): they use the model and the reductions, never an algorithm
    # or a solver, so any layer above may load a problem
    ("io", ("io", "importers", "adapters", "examples", "testbeds")),
    # solver-independent algorithms on the canonical model (hulls, dual, DPs, heuristics, bounds)
    ("algorithms", ("algorithms",)),
    # the backends: each turns a canonical model into a RawSolution with the algorithms' help
    ("solvers", ("solvers",)),
    # what users call: solve, frontiers, comparisons, the command line and the package's namespace
    ("api", ("solve", "pareto", "compare", "refine", "cli", "__main__", "")),
]


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["mpqopt", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _owner(name: str) -> str:
    """The module a dotted import name lives in (``mpqopt.solvers.highs.csc_arrays`` -> ``mpqopt.solvers.highs``)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """``(imported module, line, type-checking only)`` for each mpqopt module ``module`` imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            typing_only.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # ``from . import core_dp`` imports a module; ``from . import get_key`` a name of the package
            names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source for alias in node.names]
        for name in names:
            if name == "mpqopt" or name.startswith("mpqopt."):
                target = _owner(name)
                if target != module:
                    found.append((target, node.lineno, id(node) in typing_only))
    return found


IMPORTS = {module: _imports(module, path) for module, path in MODULES.items()}


def _layer(module: str) -> int:
    """Index in LAYERS of the longest entry matching ``module``."""
    rest = module.removeprefix("mpqopt").removeprefix(".")
    best, best_len = None, -1
    for rank, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            if (entry == "" and rest == "") or (entry and (rest == entry or rest.startswith(entry + "."))):
                if len(entry) > best_len:
                    best, best_len = rank, len(entry)
    if best is None:
        raise AssertionError(f"{module} has no layer: add it to LAYERS in {Path(__file__).name}")
    return best


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


def test_no_module_imports_a_higher_layer():
    upward = []
    for module, imports in IMPORTS.items():
        for target, line, _ in imports:
            if _layer(target) > _layer(module):
                upward.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})")
    assert not upward, "imports of a higher layer:\n" + "\n".join(sorted(set(upward)))


def _cycle() -> list[str] | None:
    """One import cycle among the modules, if any. Imports under ``TYPE_CHECKING`` (annotations only)
    and a package's imports of its own submodules (re-exports assembling its namespace) are left
    out: neither makes a module need another to be loaded first."""
    graph = {module: sorted({t for t, _, typing in imports if not typing and not t.startswith(module + ".")}) for module, imports in IMPORTS.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for module in graph:
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_no_import_cycle():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", ["mpqopt.reductions.convexify", "mpqopt.io.export", "mpqopt.algorithms.local_search"])
def test_lower_layers_name_no_solver_backend(module):
    """The moves this test came with: matrix code and the relaxation solve no longer live in a backend."""
    assert not [t for t, _, _ in IMPORTS[module] if t.startswith("mpqopt.solvers")]
