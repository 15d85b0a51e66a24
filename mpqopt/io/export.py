"""Export a problem, at given budgets, as a standard MILP file (``.lp`` or ``.mps``) for any solver.

The file holds the model the ``highs`` backend solves (written by HiGHS's ``writeModel``): the
canonical reduction of :func:`mpqopt.reductions.canonicalize` (tied layers merged into one decision,
fixed and masked-to-one layers removed, dominated options of separable problems dropped), with

* one binary column ``x_<layer>_<option>`` per remaining (decision, option); a tied group is named by
  its first layer;
* one row ``one_<layer>`` per decision: exactly one option;
* one row per budget, named by its cost (``size_bits``...): the row is divided by the budget left
  after forced layers, as the backend does for numerical scale, so it reads ``... <= 1``;
* with a pairwise term, the exact one-hot linearization of :mod:`mpqopt.reductions.linearize`:
  continuous columns ``y_<a>__<b>`` standing for ``x_a * x_b`` and equality rows ``rlt_<a>__<layer>``
  (``sum_j y[a, j] = x_a`` over the other layer's options) that make them exactly the products at
  any 0/1 point. Interaction blocks below 1e-12 of the largest entry are left out (counted in the
  header), as in the backend.

The objective is in the problem's own units, and the sensitivity (and pairwise terms) of forced layers
is the file's objective constant (HiGHS writes it as the LP objective's constant and as the MPS
objective row's RHS, negated, which readers add back), so a solver's optimum on the file equals
``mpqopt.solve(...).objective``. A comment header states all of this in the file.

>>> import tempfile, pathlib, mpqopt
>>> p = mpqopt.Problem(["a", "b"], [4, 8], [[0.5, 0.0], [0.1, 0.0]], costs={"size_bits": [[4, 8], [4, 8]]})
>>> out = export(p, pathlib.Path(tempfile.mkdtemp()) / "model.lp", budgets={"size_bits": 12})
>>> objective = next(line for line in out.read_text().splitlines() if line.startswith(" obj:")).split()[1:]
>>> {name: float(coef) for coef, name in zip(objective[::2], objective[1::2])}  # each writer's float digits
{'x_a_W4': 0.5, 'x_b_W4': 0.1}
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..arguments import check_path
from ..budgets import resolve_budgets
from ..errors import MpqoptError, SolverUnavailableError
from ..highs_runtime import highs_lp, new_highs
from ..problem import Problem
from ..reductions import CanonicalModel, canonicalize
from ..reductions.linearize import Linearization
from ..reductions.matrix import linearization_for, milp_arrays

FORMATS = ("lp", "mps")
MAX_NAME = 200  # LP readers cap names at 255 characters
# names an LP/MPS reader could take for a keyword or its objective row
_RESERVED = {"obj", "st", "s.t.", "subject", "to", "bounds", "bound", "bin", "binary", "binaries", "gen", "general",
             "generals", "semi", "end", "min", "max", "minimize", "maximize", "free", "inf", "infinity", "rhs_v"}
_BAD = re.compile(r"[^A-Za-z0-9_.]")


def export(problem: Problem, path: str | os.PathLike, budgets: Mapping[str, Any] | None = None, *, fmt: str | None = None) -> Path:
    """Write ``problem`` at ``budgets`` (default: its own) as an ``.lp`` or ``.mps`` file; return the path.

    The format follows the suffix unless ``fmt`` (``"lp"`` or ``"mps"``) is given. See the module
    docstring for the columns, rows and the exact linearization used for pairwise terms.
    """
    if not isinstance(problem, Problem):
        raise MpqoptError(f"export() needs an mpqopt.Problem, got {type(problem).__name__}")
    path = check_path(path, "path")
    kind = _format(path, fmt)
    try:
        import highspy
    except ImportError:
        raise SolverUnavailableError("export needs highspy, which is not installed: pip install highspy") from None

    limits = resolve_budgets(problem, budgets, base=problem.budgets)
    model = canonicalize(problem, limits)
    linear = linearization_for(model) if model.quadratic is not None and model.quadratic.nnz else None
    arrays = milp_arrays(model, linear)
    lp = highs_lp(highspy, arrays, integer=True)
    # the user's units (not the backend's normalized ones): the file's optimum is mpqopt's objective
    lp.col_cost_ = model.value if linear is None else np.concatenate([model.value, linear.pair_cost])
    lp.offset_ = float(model.offset)
    cols, rows = _names(model, linear)
    lp.col_names_, lp.row_names_ = cols, rows
    lp.model_name_ = "mpqopt"
    h = new_highs()
    h.passModel(lp)
    _write(h, path, kind, _header(model, limits, arrays.row_scale, linear, kind))
    return path


def _format(path: Path, fmt: str | None) -> str:
    kind = (fmt or path.suffix.lstrip(".")).lower()
    if kind not in FORMATS:
        given = f"fmt={fmt!r}" if fmt else f"the suffix of '{path.name}'"
        raise MpqoptError(f"cannot export to {given}: use a .lp or .mps file name, or fmt='lp' / fmt='mps'")
    return kind


def _write(h, path: Path, kind: str, header: list[str]) -> None:
    """HiGHS picks the format by suffix: write to a temporary file with the right one, add the
    comment header, then move it into place."""
    mark = "\\" if kind == "lp" else "*"
    try:
        folder = path.resolve().parent
        fd, tmp = tempfile.mkstemp(suffix=f".{kind}", dir=folder)
        os.close(fd)
    except OSError as exc:
        raise MpqoptError(f"cannot write '{path}': {exc.strerror or exc}") from None
    try:
        status = h.writeModel(tmp)
        if status == type(status).kError:
            raise MpqoptError(f"HiGHS could not write '{path}'")
        text = Path(tmp).read_text()
        Path(tmp).write_text("".join(f"{mark} {line}\n" for line in header) + text)
        os.replace(tmp, path)
    except OSError as exc:
        raise MpqoptError(f"cannot write '{path}': {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _header(model: CanonicalModel, limits: Mapping[str, float], row_scale: np.ndarray, linear: Linearization | None, kind: str) -> list[str]:
    p = model.problem
    lines = [
        f"mpqopt {p.num_layers} layers x {p.num_options} options: minimise total sensitivity, one option per layer, within budgets",
        f"{model.num_groups} decisions left after ties, fixed layers and masks; {model.options_pruned} dominated options dropped",
        "x_<layer>_<option> = 1: the layer (a tied group: its first layer) takes the option; one_<layer>: exactly one option",
    ]
    for name, scale in zip(model.budget_names, row_scale.tolist()):
        lines.append(f"budget row {name}: total {name} <= {limits[name]:.17g}; forced layers use {limits[name] - model.rhs[model.budget_names.index(name)]:.17g}; row divided by {scale:.17g}")
    where = "the objective's constant" if kind == "lp" else "minus the RHS of the objective row"
    lines.append(f"objective constant {model.offset:.17g} = sensitivity of forced layers ({where})")
    if linear is not None:
        lines.append(f"pairwise term: exact one-hot linearization, y_<a>__<b> = x_a * x_b (continuous, forced 0/1 by the rlt_ rows); "
                     f"{linear.blocks_kept} layer pairs kept, {linear.blocks_dropped} dropped (every |entry| <= {linear.tolerance:.3g})")
    return lines


def _names(model: CanonicalModel, linear: Linearization | None) -> tuple[list[str], list[str]]:
    """Column and row names, valid in LP and MPS files and unique."""
    p = model.problem
    group_layer = [p.layers[i] for i in p.group_first_layer[model.free_groups].tolist()]
    labels = p.option_labels
    item = [f"{_clean(group_layer[g])}_{_clean(labels[o])}" for g, o in zip(model.item_group.tolist(), model.item_option.tolist())]
    cols = [f"x_{a}" for a in item]
    rows = [f"one_{_clean(layer)}" for layer in group_layer]
    rows += [_budget_row(name) for name in model.budget_names]
    if linear is not None:
        cols += [f"y_{item[i]}__{item[j]}" for i, j in zip(linear.pair_first.tolist(), linear.pair_second.tolist())]
        rows += [f"rlt_{item[i]}__{_clean(group_layer[g])}" for i, g in _rlt_rows(model, linear)]
    return _unique(cols, "c"), _unique(rows, "r")


def _rlt_rows(model: CanonicalModel, linear: Linearization) -> list[tuple[int, int]]:
    """(item, other group) of each linearization row: its -1 entry is the item's column, and any of
    its pair columns names the other group."""
    n = model.num_items
    coo = linear.rows.tocoo()
    item = np.empty(linear.rows.shape[0], dtype=np.int64)
    other = np.empty_like(item)
    is_x = coo.col < n
    item[coo.row[is_x]] = coo.col[is_x]
    pair = coo.col[~is_x] - n
    first, second = linear.pair_first[pair], linear.pair_second[pair]
    partner = np.where(first == item[coo.row[~is_x]], second, first)
    other[coo.row[~is_x]] = model.item_group[partner]
    return list(zip(item.tolist(), other.tolist()))


def _budget_row(name: str) -> str:
    """A budget row is named by its cost, unless that could read as a keyword or a number."""
    clean = _clean(name)
    if clean.lower() in _RESERVED or not (clean[0].isalpha() or clean[0] == "_"):
        return f"budget_{clean}"
    return clean


def _clean(name: str) -> str:
    return _BAD.sub("_", str(name)) or "_"


def _unique(names: list[str], prefix: str) -> list[str]:
    """Names truncated to MAX_NAME and made unique (a clash after cleaning gets its index appended)."""
    seen: set[str] = set()
    out = []
    for k, name in enumerate(names):
        if len(name) > MAX_NAME:
            name = f"{name[: MAX_NAME - 12]}_{prefix}{k}"
        if name in seen:
            name = f"{name}_{prefix}{k}"
        seen.add(name)
        out.append(name)
    return out
