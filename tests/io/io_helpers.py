"""Shared by the tests of ``mpqopt.io``: random problems (hypothesis), exact-equality checks, hand-written documents and the load-error helper."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import strategies as st

from mpqopt import FormatError, Option, Problem
from mpqopt.formats import Format
from mpqopt.io import load

SPECIAL = [1e-300, 5e-324, 1e300, -0.0, 0.0, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1 + 0.2]


NAMES = st.one_of(
    st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=6),
    st.sampled_from(["], [", 'a"b', "size bits", "x\\y", "line\nbreak", "conv1", "é"]),
)


COST_NAMES = NAMES.filter(lambda n: not any("\ud800" <= c <= "\udfff" for c in n))  # zip member names are UTF-8
TEXT_NAMES = COST_NAMES  # Problem refuses layer and option names with lone surrogates too

# version-2 options: catalogue formats of every family, and one of the user's own (written field by field)
FORMATS = st.sampled_from(["Q4_K", "q8_0", "IQ4_XS", "TQ1_0", "int4-g128-asym", "int3-g64", "INT8", "nvfp4", "mxfp4", "fp8", "BF16",
                           "int5-g96", Format("my3", "int", 3, group_size=48, scale_bits=8, zero_bits=4, symmetric=False, act_bits=6)])
ROW_LENGTHS = st.one_of(st.sampled_from([1, 16, 32, 48, 96, 128, 256, 576, 4096, 11008, 14336]), st.integers(1, 2**40))


FLOATS = st.one_of(st.sampled_from(SPECIAL), st.floats(allow_nan=False, allow_infinity=False))


NONNEG = st.one_of(st.sampled_from([v for v in SPECIAL if v >= 0]), st.floats(min_value=0.0, allow_nan=False, allow_infinity=False))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@st.composite
def problems(draw, pairwise_kinds=("none", "dense", "sparse"), v2=False):
    """Random valid problems; ``v2`` adds format options (option 0 stays plain) and layer facts."""
    L, K = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    layers = draw(st.lists(TEXT_NAMES, min_size=L, max_size=L, unique=True))
    labels = draw(st.lists(TEXT_NAMES, min_size=K, max_size=K, unique=True))
    options = [Option(draw(st.integers(1, 16)), draw(st.none() | st.integers(1, 16)), label) for label in labels]
    params = row_lengths = None
    fits = np.ones((L, K), dtype=bool)  # which options the row lengths leave each layer
    if v2:
        for k in range(1, K):
            if draw(st.booleans()):
                options[k] = Option(a=draw(st.none() | st.integers(1, 16)), label=labels[k] if draw(st.booleans()) else "", format=draw(FORMATS))
        if len({o.label for o in options}) < K:  # a format's own label may repeat a drawn one
            options = [Option(o.w, o.a, labels[k], o.format) for k, o in enumerate(options)]
        if draw(st.booleans()):
            params = draw(st.lists(NONNEG, min_size=L, max_size=L))
        if draw(st.booleans()):
            row_lengths = draw(st.lists(ROW_LENGTHS, min_size=L, max_size=L))
            fits = np.array([[o.format is None or o.format.fits(n) is None for o in options] for n in row_lengths])

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
        for members in groups.values():  # every tie group keeps one option in common (that its row lengths fit)
            allowed[members, draw(st.sampled_from([k for k in range(K) if fits[members, k].all()]))] = True
    fixed = {}
    for members in groups.values():
        if draw(st.booleans()):
            common = [k for k in range(K) if (allowed is None or allowed[members, k].all()) and fits[members, k].all()]
            k = draw(st.sampled_from(common))
            for i in draw(st.lists(st.sampled_from(members), min_size=1, unique=True)):
                fixed[layers[i]] = options[k].label
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
                   pairwise=pairwise, sensitivity_std=std, cost_units=cost_units, meta=meta, params=params, row_lengths=row_lengths)


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
    assert same_bits(q.allowed, p.allowed) and same_bits(q.given_allowed, p.given_allowed)
    for key in ("params", "row_lengths"):
        assert (getattr(q, key) is None) == (getattr(p, key) is None), key
        if getattr(p, key) is not None:
            assert same_bits(getattr(q, key), getattr(p, key)), key
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
