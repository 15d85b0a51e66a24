"""The NPZ problem file (``mpqopt.io.npz_format``): exact round trips keeping sparse pairwise, a layout plain numpy reads, nothing unpickled, and errors that name the array."""

from __future__ import annotations

import inspect
import io
import json
import pathlib
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from fuzz import examples
from hypothesis import HealthCheck, given, settings
from io_helpers import _DELETE, assert_same_problem, base_doc, error_of, problems, same_bits

import mpqopt
from mpqopt import FormatError, Problem
from mpqopt.io import load, problem_from_dict, problem_to_dict, save


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_npz_round_trip_is_exact_and_keeps_sparse_pairwise(p):
    buf = io.BytesIO()
    mpqopt.io.npz_format.write_npz(p, buf)
    buf.seek(0)
    assert_same_problem(p, mpqopt.io.npz_format.read_npz(buf), sparse_kept=True)


def test_sparse_pairwise_is_written_dense_in_json_and_as_coo_in_npz(tmp_path):
    pw = sp.coo_array(([2.5, -1.0], ([0, 3], [3, 1])), shape=(4, 4))
    p = Problem(["a", "b"], [4, 8], [[1.0, 0.0], [1.0, 0.0]], pairwise=pw)
    expected = np.zeros((4, 4))
    expected[0, 3], expected[3, 1] = 2.5, -1.0
    assert problem_to_dict(p)["pairwise"] == expected.tolist()
    save(p, tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz", allow_pickle=False) as z:
        assert "pairwise" not in z.files
        rebuilt = np.zeros((4, 4))
        rebuilt[z["pairwise_row"], z["pairwise_col"]] = z["pairwise_data"]
        assert z["pairwise_shape"].tolist() == [4, 4] and z["pairwise_row"].dtype == np.int64
    assert np.array_equal(rebuilt, expected)


def test_npz_layout_is_readable_with_plain_numpy(tmp_path):
    p = Problem(["a", "b"], [4, {"w": 8, "a": 8}], [[1.0, 0.0], [0.5, 0.0]],
                costs={"size_bits": [[4, 8], [4, 8]], "lat ms": [[1, 2], [1, 2]]}, budgets={"size_bits": 12},
                allowed=[[True, True], [False, True]], cost_units={"lat ms": "ms"})
    save(p, tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["allowed", "cost/lat ms", "cost/size_bits", "header", "sensitivity"]
        header = json.loads(z["header"][()])
        assert z["header"].shape == () and z["header"].dtype.kind == "U"
        assert header["costs"] == ["size_bits", "lat ms"] and header["budgets"] == {"size_bits": 12.0}
        assert header["options"] == [{"label": "W4", "w": 4}, {"label": "W8A8", "w": 8, "a": 8}]
        assert header["cost_units"] == {"lat ms": "ms"}
        assert z["cost/size_bits"].dtype == np.float64 and z["allowed"].dtype == bool
        assert z["sensitivity"].tolist() == [[1.0, 0.0], [0.5, 0.0]]


def test_numpy_scalars_in_meta_are_written_as_plain_numbers(tmp_path):
    p = Problem(["a"], [4], [[0.0]], meta={"acc": np.float64(0.25), "n": np.int64(3), "pair": (1, 2)})
    save(p, tmp_path / "p.npz")
    assert load(tmp_path / "p.npz").meta == {"acc": 0.25, "n": 3, "pair": [1, 2]}


@pytest.mark.parametrize("name", ["a\x00b"])
def test_cost_names_that_cannot_be_zip_members_are_json_only(tmp_path, name):
    p = Problem(["a"], [4], [[0.0]], costs={name: [[1.0]]})
    save(p, tmp_path / "p.json")
    assert list(load(tmp_path / "p.json").costs) == [name]
    with pytest.raises(FormatError, match="cannot be an NPZ member name"):
        save(p, tmp_path / "p.npz")
    assert not (tmp_path / "p.npz").exists()


class _Trap:
    """Unpickling this touches a marker file: proof that something was unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _npz_members(p: Problem) -> dict:
    buf = io.BytesIO()
    mpqopt.io.npz_format.write_npz(p, buf)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _small() -> Problem:
    return problem_from_dict(base_doc())


def _write_npz(path: Path, members: dict, *, pickles: bool = False) -> Path:
    if "allow_pickle" in inspect.signature(np.savez).parameters:
        np.savez(path, allow_pickle=pickles, **members)
    else:  # older numpy (1.24): savez always pickles object arrays (and would store allow_pickle as an array)
        assert pickles or all(np.asarray(v).dtype != object for v in members.values())
        np.savez(path, **members)
    return path


@pytest.mark.parametrize("member", ["sensitivity", "header", "cost/size_bits"])
def test_npz_object_arrays_are_refused_without_unpickling(tmp_path, member):
    marker = tmp_path / "unpickled"
    members = _npz_members(_small())
    members[member] = np.array([_Trap(marker)], dtype=object)
    path = _write_npz(tmp_path / "trap.npz", members, pickles=True)
    # control: the trap does fire when pickles are allowed, so its absence below means something
    with np.load(path, allow_pickle=True) as z:
        z[member]
    assert marker.exists()
    marker.unlink()
    err = error_of(path)
    assert member in str(err) and "pickle" in str(err)
    assert not marker.exists()


def test_truncated_and_corrupt_npz_give_clean_errors(tmp_path):
    path = tmp_path / "p.npz"
    save(_small(), path)
    data = path.read_bytes()
    (tmp_path / "half.npz").write_bytes(data[: len(data) // 2])
    assert "corrupt or truncated" in str(error_of(tmp_path / "half.npz"))
    # flip one byte inside the sensitivity array's data (found by its float64 bytes): CRC must catch it
    needle = np.array([0.25, 0.0]).tobytes()
    at = data.index(needle)
    (tmp_path / "flip.npz").write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
    err = error_of(tmp_path / "flip.npz")
    assert "sensitivity" in str(err) and "corrupt" in str(err)
    (tmp_path / "text.npz").write_text("hello")
    assert "not an NPZ archive" in str(error_of(tmp_path / "text.npz"))
    np.save(tmp_path / "plain.npy", np.zeros(3))
    (tmp_path / "plain.npy").rename(tmp_path / "plain.npz")
    assert "not an NPZ archive" in str(error_of(tmp_path / "plain.npz"))
    (tmp_path / "empty.npz").write_bytes(b"")
    assert "not an NPZ archive" in str(error_of(tmp_path / "empty.npz"))


def _header_with(**changes) -> np.ndarray:
    header = json.loads(_npz_members(_small())["header"][()])
    for key, value in changes.items():
        if value is _DELETE:
            header.pop(key)
        else:
            header[key] = value
    return np.array(json.dumps(header))


NPZ_FAULTS = {
    "no header": (lambda m: m.pop("header"), ["header: missing"]),
    "header bytes": (lambda m: m.update(header=np.array(b"{}")), ["header", "0-d unicode"]),
    "header not json": (lambda m: m.update(header=np.array("{oops")), ["header: invalid JSON", "line 1, column 2"]),
    "header version": (lambda m: m.update(header=_header_with(version=3)), ["$.version", "unsupported version 3"]),
    "header budget text": (lambda m: m.update(header=_header_with(budgets={"size_bits": "50%"})), ["$.budgets.size_bits", "absolute"]),
    "header costs dict": (lambda m: m.update(header=_header_with(costs={"size_bits": 1})), ["$.costs", "list of cost names"]),
    "table in header": (lambda m: m.update(header=_header_with(sensitivity=[[0]])), ["$.sensitivity", "is the array 'sensitivity'"]),
    "no sensitivity": (lambda m: m.pop("sensitivity"), ["sensitivity: missing"]),
    "short sensitivity": (lambda m: m.update(sensitivity=np.zeros((2, 2))), ["sensitivity: expected 3 rows (one per layer), got 2"]),
    "1-d sensitivity": (lambda m: m.update(sensitivity=np.zeros(6)), ["sensitivity: expected a 2-d array of shape (3, 2)"]),
    "complex sensitivity": (lambda m: m.update(sensitivity=np.zeros((3, 2), complex)), ["sensitivity", "complex128"]),
    "text sensitivity": (lambda m: m.update(sensitivity=np.full((3, 2), "1.0")), ["sensitivity", "<U3"]),
    "missing cost": (lambda m: m.pop("cost/size_bits"), ["cost/size_bits: missing"]),
    "unlisted cost": (lambda m: m.update({"cost/extra": np.zeros((3, 2))}), ["cost/extra", "not listed"]),
    "unknown array": (lambda m: m.update(junk=np.zeros(1)), ["junk: unknown array"]),
    "wide cost": (lambda m: m.update({"cost/size_bits": np.zeros((3, 5))}), ["cost/size_bits: expected 2 columns (one per option), got 5"]),
    "int allowed": (lambda m: m.update(allowed=np.ones((3, 2), dtype=np.int64)), ["allowed: expected a boolean array", "int64"]),
    "NaN sensitivity": (lambda m: m.update(sensitivity=np.array([[0.5, 0.0], [0.25, np.nan], [0.1, 0.0]])), ["layer 'conv2'", "option 'W8'", "nan"]),
    "dense and sparse": (lambda m: m.update(pairwise=np.zeros((6, 6)), pairwise_row=np.zeros(1, np.int64)), ["pairwise_row", "not both"]),
    "sparse incomplete": (lambda m: m.update(pairwise_row=np.zeros(1, np.int64)), ["pairwise_col: missing"]),
    "sparse out of range": (lambda m: m.update(pairwise_row=np.array([0, 1]), pairwise_col=np.array([5, 6]), pairwise_data=np.ones(2),
                                               pairwise_shape=np.array([6, 6])), ["pairwise_col[1]", "index 6 is outside 0..5"]),
    "sparse wrong shape": (lambda m: m.update(pairwise_row=np.array([0]), pairwise_col=np.array([0]), pairwise_data=np.ones(1),
                                              pairwise_shape=np.array([5, 5])), ["pairwise", "expected shape (6, 6)"]),
    "sparse float index": (lambda m: m.update(pairwise_row=np.array([0.0]), pairwise_col=np.array([0]), pairwise_data=np.ones(1),
                                              pairwise_shape=np.array([6, 6])), ["pairwise_row", "integer"]),
}


@pytest.mark.parametrize("fault", sorted(NPZ_FAULTS))
def test_npz_faults_name_the_array(tmp_path, fault):
    mutate, fragments = NPZ_FAULTS[fault]
    members = _npz_members(_small())
    mutate(members)
    err = error_of(_write_npz(tmp_path / "p.npz", members))
    for fragment in fragments:
        assert fragment in str(err), (fragment, str(err))


def test_npz_extension_arrays_are_ignored(tmp_path):
    members = _npz_members(_small()) | {"x-embedding": np.ones(4)}
    assert_same_problem(_small(), load(_write_npz(tmp_path / "p.npz", members)), sparse_kept=True)


def test_npz_written_by_another_tool_in_float32_and_compressed(tmp_path):
    members = _npz_members(_small())
    members["sensitivity"] = members["sensitivity"].astype(np.float32)
    path = tmp_path / "p.npz"
    np.savez_compressed(path, **members)
    p = load(path)
    assert p.sensitivity.dtype == np.float64 and p.sensitivity.tolist() == [[0.5, 0.0], [0.25, 0.0], [0.125, 0.0]]


def test_large_npz_round_trip_is_exact(tmp_path):
    """50,000 x 8 with two cost tables comes back bit for bit (how long it takes is benchmarks/bench_io.py's job)."""
    rng = np.random.default_rng(0)
    L, K = 50_000, 8
    p = Problem([f"layer{i}" for i in range(L)], [1, 2, 3, 4, 5, 6, 7, 8], rng.random((L, K)),
                costs={"size_bits": rng.random((L, K)) * 1e6, "bitops": rng.random((L, K)) * 1e9}, budgets={"size_bits": 1e9})
    save(p, tmp_path / "big.npz")
    q = load(tmp_path / "big.npz")
    assert list(q.layers) == list(p.layers)
    assert same_bits(q.sensitivity, p.sensitivity)
    assert all(same_bits(q.costs[name], p.costs[name]) for name in p.costs)


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(v2=True))
def test_npz_version_2_round_trip_is_exact(p):
    buf = io.BytesIO()
    mpqopt.io.npz_format.write_npz(p, buf)
    buf.seek(0)
    assert_same_problem(p, mpqopt.io.npz_format.read_npz(buf), sparse_kept=True)


def _small_v2() -> Problem:
    return _small().replace(options=["W4", "Q8_0"], params=[1.0, 2.0, 3.0], row_lengths=[32, 64, 96])


def test_npz_layer_facts_are_plain_arrays():
    members = _npz_members(_small_v2())
    assert members["params"].dtype == np.float64 and members["params"].tolist() == [1.0, 2.0, 3.0]
    assert members["row_lengths"].dtype == np.int64 and members["row_lengths"].tolist() == [32, 64, 96]
    header = json.loads(members["header"][()])
    assert header["version"] == 2 and header["options"][1] == {"label": "Q8_0", "w": 8, "format": "Q8_0"}


NPZ_V2_FAULTS = {
    "float row lengths": (lambda m: m.update(row_lengths=np.array([32.0, 64, 96])), ["row_lengths: expected an integer array", "float64"]),
    "text params": (lambda m: m.update(params=np.array(["1", "2", "3"])), ["params: expected a real numeric array"]),
    "2-d params": (lambda m: m.update(params=np.ones((3, 1))), ["params: expected shape (3,), one per layer, got (3, 1)"]),
    "short row lengths": (lambda m: m.update(row_lengths=np.array([32, 64])), ["row_lengths: expected shape (3,)"]),
    "facts in the header": (lambda m: m.update(header=_header_v2(params=[1, 2, 3])), ["$.params", "is the array 'params'"]),
    "facts in a v1 file": (lambda m: m.update(header=_header_v2(version=1)), ["$.params", "version-2 key"]),
    "zero row length": (lambda m: m.update(row_lengths=np.array([32, 0, 96])), ["row_lengths: layer 'conv2' has 0"]),
    "unknown format": (lambda m: m.update(header=_header_v2(options=[{"label": "W4", "w": 4}, {"label": "x", "w": 4, "format": "Q4_KM"}])),
                       ["$.options[1].format", "unknown quantization format 'Q4_KM'"]),
}


def _header_v2(**changes) -> np.ndarray:
    header = json.loads(_npz_members(_small_v2())["header"][()])
    header.update(changes)
    return np.array(json.dumps(header))


@pytest.mark.parametrize("fault", sorted(NPZ_V2_FAULTS))
def test_npz_version_2_faults_name_the_array(tmp_path, fault):
    mutate, fragments = NPZ_V2_FAULTS[fault]
    members = _npz_members(_small_v2())
    mutate(members)
    err = error_of(_write_npz(tmp_path / "p.npz", members))
    for fragment in fragments:
        assert fragment in str(err), (fragment, str(err))
