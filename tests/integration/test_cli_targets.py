"""``mpqopt export FILE --format TOOL`` (solve, then write TOOL's per-layer config) and ``mpqopt import
KIND FILE`` (another tool's measurements into a problem file): outputs, exit codes and error lines as the
rest of the CLI (0 ok, 2 bad input, 3 infeasible; one ``mpqopt: error: ...`` line)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mpqopt
from mpqopt import cli
from mpqopt.cli.parsers import IMPORT_KINDS, TARGET_TOOLS
from mpqopt.io.targets import WRITERS, llama_cpp
from mpqopt.synthetic import llm_problem


def run(capfd, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capfd.readouterr()
    return code, out, err


@pytest.fixture
def gguf_problem(tmp_path) -> str:
    path = tmp_path / "llm.json"
    mpqopt.save(llm_problem(blocks=2, options=["Q4_0", "Q5_0", "Q8_0"]), path)
    return str(path)


def test_the_cli_names_every_writer():
    assert set(TARGET_TOOLS) == set(WRITERS) and set(IMPORT_KINDS) == {"auto-round", "imatrix"}


def test_export_llama_cpp_writes_the_solved_allocation(capfd, gguf_problem, tmp_path):
    out_file = tmp_path / "types.txt"
    code, out, err = run(capfd, "export", gguf_problem, "-b", "size=5bpw", "--format", "llama.cpp", "-o", str(out_file))
    assert code == 0 and out == "" and "wrote" in err
    expected = mpqopt.solve(mpqopt.load(gguf_problem), budgets={"size_bits": "5bpw"})
    assert out_file.read_text() == llama_cpp.tensor_type_file(expected)
    code, out, _ = run(capfd, "export", gguf_problem, "-b", "size=5bpw", "--format", "llama.cpp")
    assert code == 0 and out == out_file.read_text()


def test_export_a_format_the_tool_cannot_take_is_bad_input(capfd, gguf_problem):
    code, out, err = run(capfd, "export", gguf_problem, "-b", "size=5bpw", "--format", "hqq")
    assert code == 2 and out == ""
    assert err.startswith("mpqopt: error: HQQ cannot express layer 'blk.") and "'Q" in err and len(err.splitlines()) == 1


def test_export_infeasible_budget_writes_nothing(capfd, gguf_problem, tmp_path):
    out_file = tmp_path / "types.txt"
    code, _, err = run(capfd, "export", gguf_problem, "-b", "size=1bpw", "--format", "llama.cpp", "-o", str(out_file))
    assert code == 3 and not out_file.exists() and "nothing written" in err


def test_export_lp_keeps_working_and_output_needs_format(capfd, gguf_problem, tmp_path):
    code, _, _ = run(capfd, "export", gguf_problem, "-b", "size=5bpw", "--lp", str(tmp_path / "m.lp"))
    assert code == 0 and (tmp_path / "m.lp").exists()
    code, _, err = run(capfd, "export", gguf_problem, "--lp", str(tmp_path / "m.lp"), "-o", "x")
    assert code == 2 and "goes with --format" in err
    code, _, _ = run(capfd, "export", gguf_problem, "--format", "bogus")
    assert code == 2


def _score_file(path, scheme, scores):
    path.write_text(json.dumps({"version": 1, "score_granularity": "per_op", "scheme": scheme, "layer_scores": scores,
                                "cache_config": {}, "total_loss_for_scheme": 0.0, "total_params": 1}))
    return str(path)


def test_import_auto_round_then_solve(capfd, tmp_path):
    w4 = {"bits": 4, "group_size": 128, "sym": True, "data_type": "int", "act_bits": 16}
    a = _score_file(tmp_path / "s0.json", w4, {"l1": [400.0, 0.3], "l2": [800.0, 0.1]})
    b = _score_file(tmp_path / "s1.json", w4 | {"bits": 8}, {"l1": [800.0, 0.0], "l2": [1600.0, 0.0]})
    code, _, err = run(capfd, "import", "auto-round", a, b, "-o", str(tmp_path / "p.json"))
    assert code == 0 and "2 layers x 2 options" in err
    p = mpqopt.load(tmp_path / "p.json")
    assert p.option_labels == ("int4-g128", "int8-g128") and p.costs["size_bits"].tolist() == [[400, 800], [800, 1600]]
    code, out, _ = run(capfd, "solve", str(tmp_path / "p.json"), "-b", "size=1600", "--json")
    assert code == 0 and json.loads(out)["assignment"] == {"l1": "int8-g128", "l2": "int4-g128"}


def test_import_imatrix_needs_model_and_options_and_builds_the_table(capfd, tmp_path):
    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((16, 64)).astype(np.float32)
    im = gguf.GGUFWriter(str(tmp_path / "im.gguf"), "imatrix")
    im.add_type("imatrix")
    im.add_tensor("blk.0.attn_q.weight.in_sum2", rng.random((1, 64)).astype(np.float32))
    im.add_tensor("blk.0.attn_q.weight.counts", np.array([[10.0]], np.float32))
    model = gguf.GGUFWriter(str(tmp_path / "model.gguf"), "llama")
    model.add_tensor("blk.0.attn_q.weight", weight)
    for w in (im, model):
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    code, _, err = run(capfd, "import", "imatrix", str(tmp_path / "im.gguf"), "-o", str(tmp_path / "p.json"))
    assert code == 2 and "--model" in err
    code, _, err = run(capfd, "import", "imatrix", str(tmp_path / "im.gguf"), "--model", str(tmp_path / "model.gguf"),
                       "--options", "Q4_0,Q8_0", "-o", str(tmp_path / "p.json"))
    assert code == 0, err
    p = mpqopt.load(tmp_path / "p.json")
    assert p.layers == ("blk.0.attn_q",) and p.sensitivity[0, 0] > p.sensitivity[0, 1] > 0
    code, _, err = run(capfd, "import", "imatrix", str(tmp_path / "model.gguf"), "--model", str(tmp_path / "model.gguf"),
                       "--options", "Q4_0", "-o", str(tmp_path / "q.json"))
    assert code == 2 and "not a llama.cpp imatrix" in err
