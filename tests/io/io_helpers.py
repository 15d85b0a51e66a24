"""Shared by the tests of ``mpqopt.io``: random problems (hypothesis), exact-equality checks, hand-written documents and the load-error helper."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import strategies as st

from mpqopt import FormatError, Option, Problem
from mpqopt.io import load

SPECIAL = [1e-300, 5e-324, 1e300, -0.0, 0.0, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1 + 0.2]


NAMES = st.one_of(
    st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=6),
    st.sampled_from(["], [", 'a"b', "size bits", "x\\y", "line\nbreak", "conv1", "é"]),
)


COST_NAMES = NAMES.filter(lambda n: not any("\ud800" <= c <= "\udfff" for c in n))  # zip member names are UTF-8


FLOATS = st.one_of(st.sampled_from(SPECIAL), st.floats(allow_nan=False, allow_infinity=False))


NONNEG = st.one_of(st.sampled_from([v for v in SPECIAL if v >= 0]), st.floats(min_value=0.0, allow_nan=False, allow_infinity=False))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@st.composite
def problems(draw, pairwise_kinds=("none", "dense", "sparse")):
    L, K = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    layers = draw(st.lists(NAMES, min_size=L, max_size=L, unique=True))
    labels = draw(st.lists(NAMES, min_size=K, max_size=K, unique=True))
    options = [Option(draw(st.integers(1, 16)), draw(st.none() | st.integers(1, 16)), label) for label in labels]

    def table(elements, rows=L, cols=K):
        return np.array(draw(st.lists(st.lists(elements, min_size=cols, max_size=cols), min_size=rows, max_size=rows)), dtype=float)

    cost_names = draw(st.lists(COST_NAMES, max_size=3, unique=True))
    costs = {name: table(NONNEG) for name in cost_names}
    budgets = {name: draw(NONNEG) for name in cost_names if draw(st.booleans())}
    cost_units = {name: draw(st.sampled_from(["bit", "byte", "ms", "furlong"])) for name in cost_names if draw(st.booleans())}

    group_of = draw(st.lists(st.integers(0, L - 1), min_size=L, max_size=L))
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(group_of):
        groups.setdefault(g, []).append(i)
    allowed = None
    if draw(st.booleans()):
        allowed = np.array(draw(st.lists(st.lists(st.booleans(), min_size=K, max_size=K), min_size=L, max_size=L)))
        for members in groups.values():  # every tie group keeps one option in common
            allowed[members, draw(st.integers(0, K - 1))] = True
    fixed = {}
    for members in groups.values():
        if draw(st.booleans()):
            common = [k for k in range(K) if allowed is None or allowed[members, k].all()]
            k = draw(st.sampled_from(common))
            for i in draw(st.lists(st.sampled_from(members), min_size=1, unique=True)):
                fixed[layers[i]] = labels[k]
    ties = [draw(st.permutations([layers[i] for i in m])) for m in groups.values() if len(m) > 1]

    n = L * K
    kind = draw(st.sampled_from(pairwise_kinds))
    pairwise = None
    if kind == "dense":
        pairwise = table(FLOATS, n, n)
    elif kind == "sparse":
        cells = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), unique=True, max_size=6))
        data = [draw(FLOATS) for _ in cells]
        pairwise = sp.coo_array((data, ([r for r, _ in cells], [c for _, c in cells])), shape=(n, n))
    std = table(NONNEG) if draw(st.booleans()) else None
    meta = draw(st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4))
    sensitivity = table(FLOATS)
    # Problem refuses tables whose largest total overflows float64 (1.8e308 on two layers): scale
    # those by 2**-10, exactly, so extremes still appear wherever they are valid
    costs = {name: _fit(t, (t.max(axis=1),)) for name, t in costs.items()}
    if pairwise is not None and not _finite_total(np.abs(sensitivity).max(axis=1), abs(pairwise)):
        sensitivity, pairwise = sensitivity * 2.0**-10, pairwise * 2.0**-10
    sensitivity = _fit(sensitivity, (np.abs(sensitivity).max(axis=1),))
    return Problem(layers, options, sensitivity, costs, budgets, ties=ties, fixed=fixed, allowed=allowed,
                   pairwise=pairwise, sensitivity_std=std, cost_units=cost_units, meta=meta)


def _finite_total(*parts) -> bool:
    with np.errstate(over="ignore"):
        return bool(np.isfinite(sum(float(p.sum(axis=None)) for p in parts)))


def _fit(table: np.ndarray, parts) -> np.ndarray:
    return table if _finite_total(*parts) else table * 2.0**-10


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shape, dtype and bit pattern (so -0.0 != 0.0 and 5e-324 must survive)."""
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def assert_same_problem(p: Problem, q: Problem, *, sparse_kept: bool) -> None:
    assert q.layers == p.layers
    assert q.options == p.options
    assert same_bits(q.sensitivity, p.sensitivity)
    assert list(q.costs) == list(p.costs)
    for name in p.costs:
        assert same_bits(q.costs[name], p.costs[name]), name
    assert repr(q.budgets) == repr(p.budgets)  # repr tells -0.0 from 0.0 and keeps order
    assert q.ties == p.ties and q.fixed == p.fixed and q.cost_units == p.cost_units
    assert same_bits(q.allowed, p.allowed)
    assert (q.sensitivity_std is None) == (p.sensitivity_std is None)
    if p.sensitivity_std is not None:
        assert same_bits(q.sensitivity_std, p.sensitivity_std)
    assert (q.pairwise is None) == (p.pairwise is None)
    if p.pairwise is not None:
        assert sp.issparse(q.pairwise) == (sp.issparse(p.pairwise) and sparse_kept)
        dense = lambda m: m.toarray() if sp.issparse(m) else m  # noqa: E731
        assert same_bits(dense(q.pairwise), dense(p.pairwise))
    assert repr(q.meta) == repr(p.meta)  # int vs float and -0.0 vs 0.0 both show in repr


def base_doc() -> dict:
    return {
        "format": "mpqopt.problem",
        "version": 1,
        "layers": ["conv1", "conv2", "fc"],
        "options": [{"label": "W4", "w": 4}, {"label": "W8", "w": 8, "a": 8}],
        "sensitivity": [[0.5, 0.0], [0.25, 0.0], [0.125, 0.0]],
        "costs": {"size_bits": [[400, 800], [1000, 2000], [40, 80]]},
        "budgets": {"size_bits": 2000},
    }


def write_doc(tmp_path: Path, doc: dict, name: str = "p.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def error_of(path: Path) -> FormatError:
    with pytest.raises(FormatError) as info:
        load(path)
    assert str(path) in str(info.value)  # every load error names the file
    return info.value


def _set(path, value):
    def apply(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return doc
    return apply


_DELETE = object()
