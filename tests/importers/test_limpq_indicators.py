"""LIMPQ indicator files: read safely (no code runs), turned into LIMPQ's objective table."""

import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

import mpqopt
from mpqopt.errors import FormatError, ProblemError
from mpqopt.importers import limpq_problem, limpq_published_policy
from mpqopt.importers.limpq_indicators import indicator_table, load_limpq_indicators, restricted_loads

FIXTURE = "limpq_resnet50_indicators_fixture.json"


class _Payload:
    """Pickles to "call os.system('touch <marker>')" when loaded: a harmless stand-in for an attack."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _limpq_pickle(indicators: dict) -> bytes:
    """What LIMPQ's importance_extractor.py writes: pickle.dump of three plain entries."""
    return pickle.dumps({"weight": indicators["weight"], "act": indicators["act"], "layer_name": indicators["layer_name"]})


def _small() -> dict:
    return {
        "layer_name": ["a", "b"],
        "weight": {"a": {"4": 0.1, "2": 0.3}, "b": {"4": 0.2, "2": 0.25}},
        "act": {"a": {"4": 0.5, "2": 0.9}, "b": {"4": 0.4, "2": 0.6}},
    }


# ------------------------------------------------------------------------------ the peer's own data
def test_reads_the_peer_fixture_and_its_pickle_form(peers_dir, tmp_path):
    raw = json.loads((peers_dir / FIXTURE).read_text())
    loaded = load_limpq_indicators(peers_dir / FIXTURE)
    assert loaded["layer_name"] == raw["layer_name"] and len(loaded["layer_name"]) == 52
    assert loaded["weight"] == raw["weight"] and loaded["act"] == raw["act"]  # exact floats, string keys
    assert [int(b) for b in loaded["weight"][raw["layer_name"][0]]] == raw["search_args"]["bits"]

    path = tmp_path / "importance_indicators_resnet50.pkl"
    path.write_bytes(_limpq_pickle(raw))
    assert load_limpq_indicators(path) == loaded


def test_table_from_the_pickle_reproduces_limpqs_published_policy(peers_dir, tmp_path):
    raw = json.loads((peers_dir / FIXTURE).read_text())
    path = tmp_path / "indicators.pkl"
    path.write_bytes(_limpq_pickle(raw))
    table = indicator_table(path, alpha=raw["search_args"]["alpha"])
    reference = limpq_problem(peers_dir / FIXTURE, macs="hook")  # the JSON importer, costs included
    assert tuple(o.label for o in table.options) == reference.option_labels
    np.testing.assert_array_equal(table.values, reference.sensitivity)
    np.testing.assert_array_equal(table.allowed, reference.allowed)
    result = mpqopt.solve(reference.replace(sensitivity=table.values, allowed=table.allowed))
    assert result.status == "optimal"
    assert result.assignment == limpq_published_policy(peers_dir / FIXTURE)  # 52/52 layers, weights and acts
    assert result.objective == pytest.approx(raw["expected_objective"], rel=1e-9)


def test_peer_indicators_mostly_fall_with_bit_width(peers_dir):
    """The relation LIMPQ relies on (lower bits, larger step size) holds for almost every entry of its
    released ResNet-50 indicators; the rest are its "wired points"."""
    table = indicator_table(peers_dir / FIXTURE)
    wired = len(table.wired["weight"]) + len(table.wired["act"])
    assert 0 < wired <= 0.01 * 52 * 4 * 2  # of 52 layers x 4 comparisons x (weight, act): 2 of 416


# ------------------------------------------------------------------------------ formats
def test_reads_torch_save_files_zip_and_legacy(tmp_path):
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")
    data = _small()
    zipped, legacy = tmp_path / "ind.pt", tmp_path / "ind_legacy.pt"
    torch.save(data, zipped)
    torch.save(data, legacy, _use_new_zipfile_serialization=False)
    assert load_limpq_indicators(zipped) == data
    assert load_limpq_indicators(legacy) == data


def test_reads_a_limpq_checkpoint_with_the_candidate_bits(tmp_path):
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")
    state = {
        "module.conv1.weight": torch.randn(8, 3, 3, 3),
        "module.layer1.0.conv1.quan_w_fn.s": torch.tensor([0.01, 0.02, 0.05]),
        "module.layer1.0.conv1.quan_a_fn.s": torch.tensor([0.1, 0.2, 0.4]),
        "module.layer1.0.conv2.quan_w_fn.s": torch.tensor([0.03, 0.04, 0.06]),
        "module.layer1.0.conv2.quan_a_fn.s": torch.tensor([0.2, 0.3, 0.5]),
    }
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"state_dict": state, "epoch": 4}, path)
    with pytest.raises(FormatError, match="bits="):
        load_limpq_indicators(path)
    got = load_limpq_indicators(path, bits=[4, 3, 2])
    assert got["layer_name"] == ["module.layer1.0.conv1", "module.layer1.0.conv2"]
    expected_w = {"4": 0.01, "3": 0.02, "2": 0.05}
    assert got["weight"]["module.layer1.0.conv1"] == pytest.approx(expected_w)
    assert list(got["act"]["module.layer1.0.conv2"]) == ["4", "3", "2"]
    with pytest.raises(FormatError, match="3 step sizes"):
        load_limpq_indicators(path, bits=[4, 2])


# ------------------------------------------------------------------------------ refusing code
def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "indicators.pkl"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(FormatError, match="refusing to unpickle .*system"):
        load_limpq_indicators(path)
    assert not marker.exists()
    # the same payload is live: an ordinary pickle.load would have run it
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(_Payload(live)))
    assert live.exists()


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_every_global_is_refused_whatever_the_protocol(protocol):
    assert restricted_loads(pickle.dumps(_small(), protocol=protocol)) == _small()
    from collections import OrderedDict

    with pytest.raises(FormatError, match="collections.OrderedDict"):
        restricted_loads(pickle.dumps(OrderedDict(a=1), protocol=protocol))
    with pytest.raises(FormatError, match="refusing"):
        restricted_loads(pickle.dumps({"x": np.float64(1.5)}, protocol=protocol))  # numpy scalars are classes too


def test_malicious_torch_file_is_refused_without_running(tmp_path):
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weight": _Payload(marker)}, path)
    with pytest.raises(FormatError, match="weights_only"):
        load_limpq_indicators(path)
    assert not marker.exists()


def test_garbage_and_bad_contents_name_the_fault(tmp_path):
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(FormatError, match="not a readable pickle"):
        load_limpq_indicators(junk)
    with pytest.raises(FormatError, match="file not found"):
        load_limpq_indicators(tmp_path / "missing.pkl")
    bad = _small()
    del bad["layer_name"]
    with pytest.raises(FormatError, match="layer_name"):
        load_limpq_indicators(bad)
    bad = _small()
    bad["weight"]["b"] = {"4": 0.2, "3": 0.25}
    with pytest.raises(FormatError, match=r"\$\.weight\.b"):
        load_limpq_indicators(bad)
    bad = _small()
    bad["act"]["a"]["2"] = float("nan")
    with pytest.raises(FormatError, match=r"\$\.act\.a\.2"):
        load_limpq_indicators(bad)
    listed = tmp_path / "list.pkl"
    listed.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(FormatError, match="dict at the top level"):
        load_limpq_indicators(listed)


# ------------------------------------------------------------------------------ the table
def test_table_for_any_options_is_alpha_weight_plus_act():
    data = _small()
    table = indicator_table(data, ["W4A4", "W2", "W32A2", "W2A4"], alpha=3.0)
    w, a = data["weight"], data["act"]
    for l, layer in enumerate(data["layer_name"]):
        expected = [3 * w[layer]["4"] + a[layer]["4"], 3 * w[layer]["2"], a[layer]["2"], 3 * w[layer]["2"] + a[layer]["4"]]
        np.testing.assert_allclose(table.values[l], expected)
    # every indicator falls as the bit-width rises: nothing is wired
    assert table.allowed.all() and table.wired == {"weight": [], "act": []}
    with pytest.raises(ProblemError, match="W3.*no 3-bit"):
        indicator_table(data, ["W3A4"])
    weight_only = {k: v for k, v in data.items() if k != "act"}
    with pytest.raises(ProblemError, match="no 'act' table"):
        indicator_table(weight_only, ["W4A4"])
    assert [o.label for o in indicator_table(weight_only).options] == ["W4", "W2"]


def test_table_problem_disallows_wired_points_and_relaxes_hopeless_layers():
    data = _small()
    data["weight"]["b"]["2"] = 0.05  # below its 4-bit value: a wired point
    table = indicator_table(data, ["W4", "W2"])
    assert table.allowed.tolist() == [[True, True], [True, False]]
    p = table.problem(costs={"size_bits": [[4, 2], [4, 2]]}, budgets={"size_bits": 6})
    assert mpqopt.solve(p).assignment == {"a": "W2", "b": "W4"}
    only_low = indicator_table(data, ["W2"])  # b's only option is wired: keep it rather than leave none
    assert only_low.allowed.all() and only_low.wired["relaxed_layers"] == ["b"]


def test_module_imports_no_torch():
    """The importer is framework-free: torch is imported only to read a torch.save file."""
    code = "import sys, mpqopt.importers.limpq_indicators as m; m.load_limpq_indicators({'layer_name': ['a'], 'weight': {'a': {'2': 1.0}}}); print('torch' in sys.modules)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
