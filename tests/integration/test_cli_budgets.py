"""The command line's scoped budgets (``-b 'size[stage0:blk.{0..1}.*]=...'``) and bits-per-weight
budgets and axis (``-b size=4bpw``, ``pareto --unit bpw``). Expected answers come from the
independent exhaustive oracle or from sums computed here."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mpqopt
from mpqopt import cli
from oracle import brute_force

LAYERS = ["blk.0.attn", "blk.0.mlp", "blk.1.attn", "blk.1.mlp", "blk.2.attn"]
OPTIONS = ["W2", "W4", "W8"]
PARAMS = np.array([100.0, 300.0, 200.0, 400.0, 50.0])
SIZE = np.outer(PARAMS, [2.0, 4.0, 8.0])
SENS = np.array([[0.9, 0.2, 0.0], [0.5, 0.12, 0.01], [0.3, 0.05, 0.0], [0.7, 0.3, 0.02], [0.4, 0.1, 0.0]])
STAGE0 = ["blk.0.attn", "blk.0.mlp", "blk.1.attn", "blk.1.mlp"]


@pytest.fixture
def llm(tmp_path) -> str:
    path = tmp_path / "llm.json"
    mpqopt.save(mpqopt.Problem(LAYERS, OPTIONS, SENS, costs={"size_bits": SIZE}), path)
    return str(path)


@pytest.fixture
def with_params(llm) -> str:
    """The same problem with its weight counts: a file of format version 2."""
    mpqopt.save(mpqopt.load(llm).replace(params=PARAMS), llm)
    assert json.loads(open(llm).read())["version"] == 2
    return llm


def run(capfd, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capfd.readouterr()
    return code, out, err


def labels(x) -> dict[str, str]:
    return {n: OPTIONS[k] for n, k in zip(LAYERS, x)}


def test_scoped_budget_on_the_command_line_matches_the_oracle(capfd, llm):
    problem = mpqopt.load(llm)
    key = "size_bits[stage0:blk.{0..1}.*]"
    limits = {key: 2.0 * PARAMS[:4].sum() + 800.0, "size_bits": 4.0 * PARAMS.sum()}
    best, argbest = brute_force(problem, limits, scopes={key: ("size_bits", STAGE0)})
    assert best is not None and len(argbest) == 1
    code, out, err = run(capfd, "solve", llm, "-b", f"size[stage0:blk.{{0..1}}.*]={limits[key]:g}", "-b", f"size={limits['size_bits']:g}", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["assignment"] == labels(argbest[0])
    used = sum(SIZE[LAYERS.index(n), OPTIONS.index(res["assignment"][n])] for n in STAGE0)
    assert res["costs"][key] == used and res["slack"][key] == pytest.approx(limits[key] - used)
    code, out, err = run(capfd, "solve", llm, "-b", f"size[stage0:blk.{{0..1}}.*]={limits[key]:g}")
    assert code == 0 and key in out


def test_scope_matching_no_layer_is_bad_input_naming_it(capfd, llm):
    code, out, err = run(capfd, "solve", llm, "-b", "size[stage9:blk.9.*]=1KiB")
    assert code == 2 and "Traceback" not in err
    assert "scope 'stage9': pattern 'blk.9.*' matches no layer" in err


def test_infeasible_scope_is_named(capfd, llm):
    code, out, err = run(capfd, "solve", llm, "-b", "size[stage0:blk.{0..1}.*]=10")
    assert code == 3
    assert "budget 'size_bits[stage0:blk.{0..1}.*]'" in err


def test_bits_per_weight_budget(capfd, with_params):
    llm = with_params
    problem = mpqopt.load(llm)
    best, argbest = brute_force(problem, {"size_bits": 4.5 * PARAMS.sum()})
    code, out, err = run(capfd, "solve", llm, "-b", "size=4.5bpw", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["budgets"] == {"size_bits": 4.5 * PARAMS.sum()}
    assert res["assignment"] == labels(argbest[0])
    assert res["bpw"]["size_bits"] == {"total": pytest.approx(res["costs"]["size_bits"] / PARAMS.sum()), "budget": 4.5}
    code, out, err = run(capfd, "solve", llm, "-b", "size[s0:blk.0.*]=3bpw")
    assert code == 0 and "bpw budget" in out
    assert json.loads(json.dumps(mpqopt.resolve_budgets(problem.replace(params=PARAMS), {"size[s0:blk.0.*]": "3bpw"}))) == {"size_bits[s0:blk.0.*]": 3 * 400.0}


def test_bits_per_weight_without_weight_counts_says_how_to_give_them(capfd, llm):
    code, out, err = run(capfd, "solve", llm, "-b", "size=4.5bpw")
    assert code == 2 and "weight count" in err and "params" in err


def test_pareto_axis_in_bits_per_weight(capfd, with_params):
    llm = with_params
    code, out, err = run(capfd, "pareto", llm, "--cost", "size", "--unit", "bpw", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["unit"] == "bpw"
    for point in res["points"]:
        assert point["bpw"] == pytest.approx(point["cost"] / PARAMS.sum())
    code, out, err = run(capfd, "pareto", llm, "--cost", "size", "--unit", "bpw", "--points", "3", "-b", "size[stage0:blk.{0..1}.*]=3bpw")
    assert code == 0, err
    assert "bpw" in out.splitlines()[0]


def test_info_and_compare_show_a_files_scoped_budget(capfd, tmp_path):
    path = tmp_path / "scoped.json"
    stage0_lo = 2.0 * PARAMS[:4].sum()
    mpqopt.save(mpqopt.Problem(LAYERS, OPTIONS, SENS, costs={"size_bits": SIZE}, budgets={"size[stage0:blk.{0..1}.*]": stage0_lo + 100}), path)
    code, out, err = run(capfd, "info", str(path))
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("size_bits[stage0:blk.{0..1}.*]"))
    assert f"{100 / (6.0 * PARAMS[:4].sum()) * 100:.1f}%" in row  # % of the scope's own range
    code, out, err = run(capfd, "compare", str(path), "--solvers", "mckp,highs")
    assert code == 0, err
    assert "slack size_bits[stage0:blk.{0..1}.*]" in out
