"""Bad LLM input through the command line (issue 17): ``mpqopt import imatrix|auto-round`` and
``mpqopt export --format TOOL`` answer exit 2 and one ``mpqopt: error: ...`` line naming the file,
tensor and format, never ``internal error`` (exit 1) or a traceback."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import mpqopt
from mpqopt import cli
from mpqopt.options import Option
from mpqopt.synthetic import llm_problem

gguf = pytest.importorskip("gguf")


def run(capfd, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    _, err = capfd.readouterr()
    return code, err


def _write(path, arch, tensors, kind=None):
    w = gguf.GGUFWriter(str(path), arch)
    if kind:
        w.add_type(kind)
    for name, value in tensors.items():
        w.add_tensor(name, np.asarray(value, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    model = _write(tmp_path / "model.gguf", "llama", {"blk.0.attn_q.weight": rng.standard_normal((16, 64))})
    good = {"blk.0.attn_q.weight.in_sum2": rng.random((1, 64)), "blk.0.attn_q.weight.counts": [[10.0]]}
    return {
        "model": model,
        "imatrix": _write(tmp_path / "im.gguf", "imatrix", good, "imatrix"),
        "negative": _write(tmp_path / "neg.gguf", "imatrix", dict(good, **{"blk.0.attn_q.weight.counts": [[-1.0]]}), "imatrix"),
        "other": _write(tmp_path / "other.gguf", "imatrix", {"blk.0.attn_q.weight.in_sum2": rng.random((1, 96)),
                                                             "blk.0.attn_q.weight.counts": [[10.0]]}, "imatrix"),
        "cut": str(tmp_path / "cut.gguf"), "empty": str(tmp_path / "empty.gguf"), "dir": str(tmp_path),
        "out": str(tmp_path / "p.json"),
    }


@pytest.mark.parametrize("imatrix, model, named", [
    ("imatrix", "cut", "truncated or damaged"), ("imatrix", "empty", "empty"), ("imatrix", "dir", "is a directory"),
    ("cut", "model", "truncated or damaged"), ("negative", "model", r"blk\.0\.attn_q\.weight\.counts"),
    ("other", "model", r"blk\.0\.attn_q\.weight has shape \(16, 64\).*another model"),
])
def test_import_imatrix_bad_files_are_bad_input(capfd, files, imatrix, model, named):
    with open(files["model"], "rb") as f:
        data = f.read()
    with open(files["cut"], "wb") as f:
        f.write(data[: len(data) // 2])
    open(files["empty"], "wb").close()
    code, err = run(capfd, "import", "imatrix", files[imatrix], "--model", files[model], "--options", "Q4_0,Q8_0", "-o", files["out"])
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("mpqopt: error: "), err
    assert re.search(named, err), err


@pytest.mark.parametrize("text, named", [
    ('{"version": 1, "score_granularity": "per_op", "scheme": {"bits": 8}, "layer_scores": {"l1": [20, NaN]}}', r'\$\.layer_scores\["l1"\]'),
    ('{"version": 1, "score_granularity": "per_op", "layer_scores": {"l1": [20, 0.1]}}', r"\$\.scheme: missing"),
    ('{"version": 1, "score_granularity": "per_op", "scheme": "W8A16", "layer_scores": {"l1": [20, 0.1]}}', "'W8A16', not an object"),
    ('{"version": 1, "score_gran', "cannot read the JSON"),
])
def test_import_auto_round_bad_caches_are_bad_input(capfd, tmp_path, text, named):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"version": 1, "score_granularity": "per_op", "scheme": {"bits": 4, "group_size": 128, "data_type": "int"},
                                "layer_scores": {"l1": [10, 0.3]}}))
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    code, err = run(capfd, "import", "auto-round", str(good), str(bad), "-o", str(tmp_path / "p.json"))
    assert code == 2 and len(err.splitlines()) == 1 and str(bad) in err, err
    assert re.search(named, err), err


@pytest.mark.parametrize("tool, name", [("llama.cpp", "llama.cpp"), ("hqq", "HQQ"), ("gptqmodel", "GPTQModel")])
def test_export_activation_bits_to_a_weight_only_tool_is_bad_input(capfd, tmp_path, tool, name):
    options = [Option(format="int4-g32-asym", a=8), Option(format="int8-g32-asym", a=8)]
    path = tmp_path / "w4a8.json"
    mpqopt.save(llm_problem(blocks=1, options=options), path)
    code, err = run(capfd, "export", str(path), "-b", "size=7bpw", "--format", tool)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"mpqopt: error: {name} cannot express layer 'blk.0.") and "-a8'" in err and "weights only" in err
