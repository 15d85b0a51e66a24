"""``load`` / ``save`` on disk (``mpqopt.io.files``): round trips in both formats, the shipped example files, file-level and save errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from fuzz import examples
from hypothesis import HealthCheck, given, settings
from io_helpers import SPECIAL, assert_same_problem, error_of, problems

import mpqopt
from mpqopt import FormatError, Problem
from mpqopt.io import load, save

DATA = Path(mpqopt.__file__).parent / "data"


@settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=problems())
def test_save_load_files_round_trip(tmp_path_factory, p):
    folder = tmp_path_factory.mktemp("rt")
    for name, sparse_kept in (("p.json", False), ("P.NPZ", True)):
        save(p, folder / name)
        assert_same_problem(p, load(folder / name), sparse_kept=sparse_kept)
    assert sorted(f.name for f in folder.iterdir()) == ["P.NPZ", "p.json"]  # no temp files left behind


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_special_floats_survive_bit_for_bit(tmp_path, suffix):
    # 1e300 and the largest float share a row: in two rows their totals would overflow, which Problem refuses
    values = np.array([SPECIAL[i] for i in (0, 1, 4, 3, 2, 6, 5, 7)], dtype=float).reshape(4, 2)
    p = Problem([f"l{i}" for i in range(4)], [4, 8], values, costs={"c": np.abs(values)}, budgets={"c": 5e-324})
    save(p, tmp_path / f"p{suffix}")
    q = load(tmp_path / f"p{suffix}")
    assert_same_problem(p, q, sparse_kept=True)
    assert math.copysign(1.0, q.sensitivity[1, 1]) == -1.0  # the -0.0 itself, checked without our helper
    assert q.budgets["c"] == 5e-324


@pytest.mark.parametrize("name", ["digits_cnn.json", "minilm_l6.json"])
def test_shipped_example_files_load_and_rewrite_unchanged(tmp_path, name):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{name} is not in this checkout")
    original = json.loads(path.read_text(encoding="utf-8"))
    p = load(path)
    save(p, tmp_path / name)
    rewritten = json.loads((tmp_path / name).read_text(encoding="utf-8"))
    # the writer drops empty optional parts; every other key must carry the same values
    for key in original:
        if key in rewritten:
            assert rewritten[key] == original[key], key
        else:
            assert original[key] in ([], {}, None), key


def test_top_level_load_and_save_are_the_io_ones():
    assert mpqopt.load is load and mpqopt.save is save


def test_file_level_errors(tmp_path):
    assert "no such file" in str(error_of(tmp_path / "missing.json"))
    (tmp_path / "dir.json").mkdir()
    assert "is a directory" in str(error_of(tmp_path / "dir.json"))
    with pytest.raises(FormatError, match=r"unknown file type '\.yaml'.*\.json or \.npz"):
        load(tmp_path / "p.yaml")
    with pytest.raises(FormatError, match="no extension"):
        save(Problem(["a"], [4], [[0.0]]), tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_unwritable_meta_is_refused_and_the_old_file_survives(tmp_path):
    good = Problem(["a"], [4], [[0.0]], meta={"ok": 1})
    path = tmp_path / "p.json"
    save(good, path)
    for meta, fragments in (
        ({"arr": np.arange(3)}, ["$.meta.arr", "ndarray", ".tolist()"]),
        ({"acc": float("nan")}, ["$.meta.acc", "NaN"]),
        ({"nested": {"k": [1, {2: "x"}]}}, ["$.meta.nested.k[1]", "strings"]),
        ({"s": {1, 2}}, ["$.meta.s", "set"]),
    ):
        for target in (path, path.with_suffix(".npz")):
            with pytest.raises(FormatError) as info:
                save(good.replace(meta=meta), target)
            for fragment in fragments:
                assert fragment in str(info.value), (fragment, str(info.value))
    assert load(path).meta == {"ok": 1}
    assert sorted(f.name for f in tmp_path.iterdir()) == ["p.json"]


def test_lone_surrogates_in_meta_round_trip(tmp_path):
    p = Problem(["é"], [4], [[1.0]], meta={"\ud83d": "x"})
    for suffix in (".json", ".npz"):
        save(p, tmp_path / f"p{suffix}")
        assert load(tmp_path / f"p{suffix}").meta == p.meta


V1_FILES = sorted(DATA.glob("*.json")) + sorted((Path(__file__).parents[1] / "data").glob("*.json"))


@pytest.mark.parametrize("path", V1_FILES, ids=lambda p: p.name)
def test_version_1_files_load_unchanged_and_are_written_as_version_1(path, tmp_path):
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["version"] == 1
    p = load(path)
    # against the document itself, read with plain json
    assert list(p.layers) == doc["layers"]
    assert [o.to_dict() for o in p.options] == [{k: v for k, v in o.items() if v is not None} for o in doc["options"]]
    assert all(o.format is None and o.effective_bits == o.w for o in p.options)
    assert p.sensitivity.tolist() == doc["sensitivity"]
    assert {name: t.tolist() for name, t in p.costs.items()} == doc.get("costs", {})
    assert p.budgets == doc.get("budgets", {}) and p.params is None and p.row_lengths is None
    text = mpqopt.io.dumps(p)
    assert json.loads(text)["version"] == 1
    original = path.read_text(encoding="utf-8")
    if original.startswith('{\n  "format"'):  # written by this writer (not by hand): the same bytes again
        assert text == original
    for suffix in (".json", ".npz"):
        save(p, tmp_path / f"p{suffix}")
        assert_same_problem(p, load(tmp_path / f"p{suffix}"), sparse_kept=True)
