"""The command line, run in-process through ``mpqopt.cli.main`` (plus a subprocess smoke test).

Expected answers come from the independent exhaustive oracle (tests/oracle.py) or from sums
computed here with numpy, never from mpqopt's own output.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mpqopt
from mpqopt import cli
from mpqopt.report import eng, fmt_cost
from mpqopt.result import Result
from mpqopt.solvers import backend_class, backend_names
from oracle import brute_force

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out

LAYERS = ["conv1", "conv2", "fc1", "fc2"]
OPTIONS = [{"label": "W2", "w": 2, "a": 8}, {"label": "W4", "w": 4, "a": 8}, {"label": "W8", "w": 8, "a": 8}]
PARAMS = np.array([100.0, 400.0, 250.0, 50.0])
WIDTHS = np.array([2.0, 4.0, 8.0])
SENS = np.array([[0.90, 0.20, 0.0], [0.50, 0.12, 0.01], [0.30, 0.05, 0.0], [0.70, 0.30, 0.02]])
SIZE = PARAMS[:, None] * WIDTHS[None, :]
BITOPS = SIZE * 8 * 10.0
SIZE_LO, SIZE_HI = float(SIZE.min(axis=1).sum()), float(SIZE.max(axis=1).sum())  # 1600, 6400
FILE_BUDGET = 3600.0


def problem_dict(**changes) -> dict:
    d = {
        "format": "mpqopt.problem", "version": 1, "layers": LAYERS, "options": OPTIONS,
        "sensitivity": SENS.tolist(), "costs": {"size_bits": SIZE.tolist(), "bitops": BITOPS.tolist()},
        "budgets": {"size_bits": FILE_BUDGET}, "meta": {"description": "four-layer toy network for CLI tests"},
    }
    d.update(changes)
    return d


def write(tmp_path: Path, d: dict, name: str = "toy.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return str(path)


@pytest.fixture
def toy(tmp_path) -> str:
    return write(tmp_path, problem_dict())


def oracle(budgets: dict[str, float], d: dict | None = None) -> tuple[float, dict[str, str]]:
    """Unique optimum (objective, assignment) by exhaustive enumeration of the problem in ``d``."""
    d = d or problem_dict()
    p = mpqopt.Problem(d["layers"], d["options"], d["sensitivity"], costs=d["costs"], ties=d.get("ties", ()),
                       fixed=d.get("fixed"), allowed=d.get("allowed"))
    best, argbest = brute_force(p, budgets)
    assert best is not None and len(argbest) == 1, "test fixture must have a unique optimum"
    return best, {name: p.options[k].label for name, k in zip(p.layers, argbest[0])}


def run(capfd, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capfd.readouterr()
    return code, out, err


def run_json(capfd, *argv: str) -> tuple[int, dict]:
    code, out, err = run(capfd, *argv, "--json")
    return code, json.loads(out)


# ---------------------------------------------------------------------------------- solve
def test_table_lists_every_layer_and_totals(capfd, toy):
    best, expected = oracle({"size_bits": FILE_BUDGET})
    code, out, err = run(capfd, "solve", toy)
    assert code == 0, err
    lines = out.splitlines()
    for layer in LAYERS:
        row = next(line for line in lines if line.split()[:1] == [layer])
        assert row.split()[1] == expected[layer]
    total_size = sum(SIZE[i, [o["label"] for o in OPTIONS].index(expected[name])] for i, name in enumerate(LAYERS))
    total_row = next(line for line in lines if line.startswith("total"))
    assert eng(total_size) in total_row
    size_row = next(line for line in lines if line.startswith("size_bits"))
    assert eng(total_size) in size_row and eng(FILE_BUDGET) in size_row and eng(FILE_BUDGET - total_size) in size_row
    assert "slack" in out and "optimal" in out and "objective" in out and "gap" in out


def test_json_has_required_keys_and_matches_oracle_and_solve(capfd, toy):
    code, res = run_json(capfd, "solve", toy)
    assert code == 0
    for key in ("status", "objective", "bound", "gap", "assignment", "costs", "slack", "solver", "solve_time_s", "message"):
        assert key in res
    best, expected = oracle({"size_bits": FILE_BUDGET})
    assert res["status"] == "optimal"
    assert res["assignment"] == expected
    assert res["objective"] == pytest.approx(best, abs=1e-12)
    assert res["bound"] <= res["objective"] + 1e-12
    labels = [o["label"] for o in OPTIONS]
    size = sum(SIZE[i, labels.index(expected[n])] for i, n in enumerate(LAYERS))
    assert res["costs"]["size_bits"] == pytest.approx(size)
    assert res["slack"] == {"size_bits": pytest.approx(FILE_BUDGET - size)}
    direct = mpqopt.solve(mpqopt.Problem(LAYERS, OPTIONS, SENS, costs={"size_bits": SIZE, "bitops": BITOPS},
                                         budgets={"size_bits": FILE_BUDGET}))
    assert res["assignment"] == direct.assignment


def test_solve_time_excludes_file_loading(capfd, toy, monkeypatch):
    delay = 0.5

    def slow_load(path, **options):  # options: max_bytes from --max-file-size
        time.sleep(delay)
        return mpqopt.load(path, **options)

    monkeypatch.setattr(cli, "load", slow_load)
    start = time.perf_counter()
    code, res = run_json(capfd, "solve", toy)
    assert code == 0
    assert time.perf_counter() - start >= delay  # the slow loader really ran
    assert 0 < res["solve_time_s"] < delay


def test_budget_override_replaces_file_budget(capfd, toy):
    code, res = run_json(capfd, "solve", toy, "--budget", "size=2400")
    assert code == 0
    assert res["budgets"] == {"size_bits": 2400.0}
    assert res["assignment"] == oracle({"size_bits": 2400.0})[1]
    assert res["assignment"] != oracle({"size_bits": FILE_BUDGET})[1]  # the override changed the answer


def test_budget_percent_and_extra_budget(capfd, toy):
    code, res = run_json(capfd, "solve", toy, "-b", "size_bits=50%", "-b", "bitops=30%")
    assert code == 0
    size_limit = SIZE_LO + 0.5 * (SIZE_HI - SIZE_LO)
    ops_lo, ops_hi = BITOPS.min(axis=1).sum(), BITOPS.max(axis=1).sum()
    ops_limit = ops_lo + 0.3 * (ops_hi - ops_lo)
    assert res["budgets"] == {"size_bits": pytest.approx(size_limit), "bitops": pytest.approx(ops_limit)}
    assert res["assignment"] == oracle({"size_bits": size_limit, "bitops": ops_limit})[1]


def test_budget_none_removes_file_budget(capfd, toy):
    code, res = run_json(capfd, "solve", toy, "--budget", "size_bits=none")
    assert code == 0
    assert res["budgets"] == {} and res["slack"] == {}
    labels = [o["label"] for o in OPTIONS]
    assert res["assignment"] == {n: labels[int(np.argmin(SENS[i]))] for i, n in enumerate(LAYERS)}


def test_output_file_gets_json_and_table_still_printed(capfd, toy, tmp_path):
    out_path = tmp_path / "result.json"
    code, out, err = run(capfd, "solve", toy, "-o", str(out_path))
    assert code == 0
    saved = json.loads(out_path.read_text())
    assert saved["assignment"] == oracle({"size_bits": FILE_BUDGET})[1]
    assert all(layer in out for layer in LAYERS) and not out.lstrip().startswith("{")


def test_verbose_json_keeps_stdout_clean(capfd, toy):
    # capfd sees the file descriptors, so a solver log written to fd 1 would break the JSON
    code = cli.main(["solve", toy, "--json", "--verbose", "--solver", "highs"])
    out, err = capfd.readouterr()
    assert code == 0
    assert json.loads(out)["status"] == "optimal"
    assert "HiGHS" in err  # the log went to stderr


# ---------------------------------------------------------------------------------- bad input
def _assert_clean_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert err.startswith("mpqopt: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err


def test_missing_file_exits_2(capfd, tmp_path):
    code, out, err = run(capfd, "solve", str(tmp_path / "nope.json"))
    _assert_clean_error(code, err, "nope.json")
    assert out == ""


def test_bad_json_exits_2(capfd, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"format": "mpqopt.problem", "layers": [')
    code, out, err = run(capfd, "solve", str(path))
    _assert_clean_error(code, err, "broken.json")


def test_invalid_problem_exits_2_naming_the_key(capfd, tmp_path):
    path = write(tmp_path, problem_dict(sensitivity=SENS[:3].tolist()))
    code, out, err = run(capfd, "info", path)
    _assert_clean_error(code, err, "sensitivity")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--budget", "latency=5"], "latency"),
        (["--solver", "nosuch"], "nosuch"),
        (["--budget", "size50%"], "size50%"),
        (["--budget", "size=lots"], "lots"),
    ],
)
def test_bad_budget_or_solver_exits_2(capfd, toy, args, needle):
    code, out, err = run(capfd, "solve", toy, *args)
    _assert_clean_error(code, err, needle)


@pytest.mark.parametrize("args", [["--mip-gap", "2"], ["--time-limit", "-1"], ["--threads", "0"], ["--bogus"]])
def test_bad_arguments_exit_2(capfd, toy, args):
    code, out, err = run(capfd, "solve", toy, *args)
    assert code == 2 and "usage:" in err


def test_debug_shows_traceback(capfd, tmp_path):
    code, out, err = run(capfd, "solve", str(tmp_path / "nope.json"), "--debug")
    assert code == 2 and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("mpqopt: error: ")


# ---------------------------------------------------------------------------------- infeasible / no solution
def test_infeasible_budget_exits_3_naming_budget_and_cheapest(capfd, toy):
    code, out, err = run(capfd, "solve", toy, "--budget", "size_bits=1000")
    assert code == 3
    assert "size_bits" in err and fmt_cost(SIZE_LO, "bit") in err and "Traceback" not in err
    assert eng(SIZE_LO) in out  # the table shows the cheapest achievable size
    code, res = run_json(capfd, "solve", toy, "--budget", "size_bits=1000")
    assert code == 3
    assert res["status"] == "infeasible" and res["assignment"] is None
    assert res["infeasibility"]["unmet"] == ["size_bits"]
    assert res["infeasibility"]["cheapest"]["size_bits"] == pytest.approx(SIZE_LO)


@pytest.mark.parametrize("status, has_x, expected", [("time_limit", False, 4), ("error", False, 4), ("time_limit", True, 0)])
def test_exit_code_without_solution(capfd, toy, monkeypatch, status, has_x, expected):
    def fake_solve(problem, **kwargs):
        x = np.zeros(problem.num_layers, dtype=np.int64) if has_x else None
        return Result(status, "stopped early", problem, x=x, costs={} if x is None else problem.evaluate(x).costs, solver="fake")

    monkeypatch.setattr(cli, "solve", fake_solve)
    code, out, err = run(capfd, "solve", toy, "--budget", "size_bits=none")
    assert code == expected
    assert status.replace("_", " ") in err.replace("_", " ")  # a time-limit warning or the failure reason


# ---------------------------------------------------------------------------------- info
def test_info_text_and_json(capfd, tmp_path):
    allowed = np.ones((4, 3), dtype=bool)
    allowed[3, 0] = False  # fc2 may not use W2
    d = problem_dict(ties=[["conv1", "conv2"]], fixed={"fc1": "W8"}, allowed=allowed.tolist())
    path = write(tmp_path, d)
    code, out, err = run(capfd, "info", path)
    assert code == 0, err
    for needle in LAYERS + ["W2", "W4", "W8", "size_bits", "bitops", "four-layer toy network", "masked entries: 1", "fc2:W2", "absent"]:
        assert needle in out
    assert "tie 1: conv1, conv2" in out and "fc1 = W8" in out

    code, info = run_json(capfd, "info", path)
    assert code == 0
    # independent range: tied conv1+conv2 choose together, fc1 fixed to W8, fc2 without W2
    tied = SIZE[0] + SIZE[1]
    lo = tied.min() + SIZE[2, 2] + SIZE[3, 1:].min()
    hi = tied.max() + SIZE[2, 2] + SIZE[3, 1:].max()
    assert info["costs"]["size_bits"]["min"] == pytest.approx(lo)
    assert info["costs"]["size_bits"]["max"] == pytest.approx(hi)
    assert info["costs"]["size_bits"]["per_layer"]["fc2"] == pytest.approx([SIZE[3, 1], SIZE[3, 2]])
    assert info["budgets"]["size_bits"]["value"] == FILE_BUDGET
    assert info["budgets"]["size_bits"]["percent_of_range"] == pytest.approx(100 * (FILE_BUDGET - lo) / (hi - lo))
    assert info["ties"] == [["conv1", "conv2"]] and info["fixed"] == {"fc1": "W8"}
    assert info["masked"] == [["fc2", "W2"]] and info["pairwise"] is False
    assert info["num_layers"] == 4 and info["num_options"] == 3 and info["num_decisions"] == 3


# ---------------------------------------------------------------------------------- solvers
def test_solvers_lists_backends(capfd):
    code, out, err = run(capfd, "solvers")
    assert code == 0
    for name in backend_names():
        row = next(line for line in out.splitlines() if line.split()[:1] == [name])
        assert backend_class(name).description in row
        assert row.split()[1] == ("yes" if backend_class(name).available() else "no")


# ---------------------------------------------------------------------------------- demo
def _example(name: str) -> Path:
    path = Path(mpqopt.__file__).parent / "data" / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"bundled example {path} not generated yet (scripts/make_examples.py)")
    return path


def test_demo_digits_allocations_are_optimal(capfd):
    d = json.loads(_example("digits_cnn").read_text())
    assert not d.get("ties") and not d.get("fixed") and not d.get("allowed")  # the independent range below assumes so
    size = np.array(d["costs"]["size_bits"])
    lo, hi = size.min(axis=1).sum(), size.max(axis=1).sum()
    labels = [o["label"] for o in d["options"]]
    budgets = {f"{p}%": lo + p / 100 * (hi - lo) for p in (25, 50, 75)}
    budgets["=W4"] = size[:, labels.index("W4")].sum()

    code, out, err = run(capfd, "demo", "digits_cnn")
    assert code == 0, err
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("layer")).split()[1:]
    assert sorted(header) == sorted(budgets) and max(map(len, lines)) <= 100
    problem = mpqopt.Problem(d["layers"], d["options"], d["sensitivity"], costs={"size_bits": size})
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.split()[:1] and line.split()[0] in d["layers"]}
    assert list(rows) == d["layers"]
    for c, column in enumerate(header):
        chosen = [labels.index(rows[layer][c]) for layer in d["layers"]]
        best, _ = brute_force(problem, {"size_bits": budgets[column]})
        evaluation = problem.evaluate(np.array(chosen))
        assert evaluation.costs["size_bits"] <= budgets[column] * (1 + 1e-9)
        assert evaluation.objective == pytest.approx(best, rel=1e-9, abs=1e-12), column
    assert "objective" in out and "gap" in out and "time" in out


def test_demo_runs_every_example(capfd):
    _example("digits_cnn")
    code, out, err = run(capfd, "demo")
    assert code == 0, err
    for name, resource in cli.example_paths().items():
        if resource is None:
            assert f"'{name}' is missing" in err
        else:
            assert f"== {name}:" in out
            d = json.loads(resource.read_text())
            assert all(layer in out for layer in d["layers"])
    assert "Traceback" not in err


def test_demo_list_and_unknown_and_missing(capfd, monkeypatch):
    _example("digits_cnn")
    code, out, err = run(capfd, "demo", "--list")
    assert code == 0 and "digits_cnn" in out and "5 layers" in out
    code, out, err = run(capfd, "demo", "nosuch")
    _assert_clean_error(code, err, "nosuch", "digits_cnn")
    monkeypatch.setattr(cli, "EXAMPLES", cli.EXAMPLES + ("ghost_net",))
    code, out, err = run(capfd, "demo", "ghost_net")
    _assert_clean_error(code, err, "ghost_net", "missing")


# ---------------------------------------------------------------------------------- entry points
def test_python_dash_m_and_console_script(toy):
    proc = subprocess.run([sys.executable, "-m", "mpqopt", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "solve" in proc.stdout and "demo" in proc.stdout
    script = Path(sys.executable).parent / "mpqopt"
    if not script.exists():
        pytest.skip(f"console script not installed at {script}")
    proc = subprocess.run([str(script), "solve", toy, "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["assignment"] == oracle({"size_bits": FILE_BUDGET})[1]
    proc = subprocess.run([str(script), "solve", toy + ".missing"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("mpqopt: error: ") and "Traceback" not in proc.stderr


def _fresh_process_json(*argv: str) -> tuple[int, dict]:
    """The CLI in a new process, so HiGHS makes its first ``Highs`` there (1.16 prints its banner on
    stdout then): stdout must be exactly one JSON object whatever the solver libraries print."""
    proc = subprocess.run([sys.executable, "-m", "mpqopt", *argv, "--json"], capture_output=True, text=True, timeout=120)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not one JSON object:\n{proc.stdout[:2000]}\n--- stderr:\n{proc.stderr[-2000:]}")


@pytest.mark.parametrize("argv", [
    ("solve", "{limpq}"),                       # two budgets: Lagrangian dual (HiGHS LP) + core
    ("solve", "{limpq}", "--solver", "highs"),
    ("solve", "{pairwise}", "--solver", "highs"),
    ("solve", "{limpq}", "--solver", "pyomo", "--verbose"),  # a solver log, and it goes to stderr
    ("compare", "{toy}", "--solvers", "mckp,highs,scipy"),
    ("pareto", "{toy}", "--cost", "size", "--points", "3"),
], ids=["limpq-auto", "limpq-highs", "pairwise-highs", "limpq-pyomo-verbose", "compare", "pareto"])
def test_json_stdout_is_only_json_through_highs(argv, toy, tmp_path, peers_dir):
    from mpqopt.importers import limpq_problem
    from mpqopt.synthetic import iqp_problem

    if "pyomo" in argv and not backend_class("pyomo").available():
        pytest.skip("pyomo is not installed")
    files = {"toy": toy, "limpq": str(tmp_path / "limpq.json"), "pairwise": str(tmp_path / "pairwise.json")}
    mpqopt.save(limpq_problem(peers_dir / "limpq_resnet50.json"), files["limpq"])
    mpqopt.save(iqp_problem(6, 3, seed=1), files["pairwise"])
    code, doc = _fresh_process_json(*(a.format(**files) for a in argv))
    assert code == 0 and doc


def test_proof_advice_follows_the_backends_exact_flag(toy):
    """After a heuristic (exact = False) the advice names the exact default; after an exact backend
    that stopped short it says so instead of sending the user to another exact solver."""
    from mpqopt.cli import _proof_advice
    from mpqopt.result import Result

    problem = mpqopt.load(toy)
    assert "the exact solver 'mckp'" in _proof_advice(Result("feasible", "", problem, solver="greedy"))
    assert "'highs' stopped short of its proof" in _proof_advice(Result("feasible", "", problem, solver="highs"))
    assert "'mckp' stopped short of its proof" in _proof_advice(Result("feasible", "", problem, solver="mckp (auto)"))


# ---------------------------------------------------------------------------------- accuracy-target mode
def _least_size_at(max_loss: float, size_budget: float | None = FILE_BUDGET) -> tuple[float, float]:
    """(least size, least loss overall) by enumerating every assignment of the toy with numpy sums."""
    import itertools

    best, least_loss = None, np.inf
    for x in itertools.product(range(3), repeat=len(LAYERS)):
        size = SIZE[np.arange(4), x].sum()
        loss = SENS[np.arange(4), x].sum()
        if size_budget is not None and size > size_budget:
            continue
        least_loss = min(least_loss, loss)
        if loss <= max_loss and (best is None or size < best):
            best = size
    return best, least_loss


def test_minimize_size_at_max_loss_matches_enumeration(capfd, toy):
    best, _ = _least_size_at(0.5)
    code, res = run_json(capfd, "solve", toy, "--minimize", "size", "--max-loss", "0.5")
    assert code == 0
    assert res["status"] == "optimal" and res["minimize"] == "size_bits" and res["max_loss"] == 0.5
    assert res["objective"] == pytest.approx(best) and res["bound"] <= res["objective"] + 1e-9
    assert res["objective"] == pytest.approx(res["costs"]["size_bits"])
    labels = [o["label"] for o in OPTIONS]
    loss = sum(SENS[i, labels.index(res["assignment"][n])] for i, n in enumerate(LAYERS))
    assert res["loss"] == pytest.approx(loss) and loss <= 0.5
    code, out, err = run(capfd, "solve", toy, "--minimize", "size", "--max-loss", "0.5")
    assert code == 0 and "size_bits = " in out and "(minimized)" in out and "max_loss 0.5" in out


def test_max_loss_below_least_loss_exits_3_naming_it(capfd, toy):
    _, least = _least_size_at(np.inf)
    code, out, err = run(capfd, "solve", toy, "--minimize", "size", "--max-loss", "0.01")
    assert code == 3 and "least predicted loss" in err and f"{least:.10g}" in err
    code, res = run_json(capfd, "solve", toy, "--minimize", "size", "--max-loss", "0.01")
    assert res["infeasibility"]["unmet"] == ["max_loss"]
    assert res["infeasibility"]["cheapest"]["max_loss"] == pytest.approx(least)


@pytest.mark.parametrize("args, needle", [(["--max-loss", "0.5"], "max_loss needs minimize"), (["--minimize", "nope", "--max-loss", "1"], "minimize='nope'"),
                                          (["--minimize", "size", "--max-loss", "nan"], "--max-loss")])
def test_bad_target_arguments_exit_2(capfd, toy, args, needle):
    code, out, err = run(capfd, "solve", toy, *args)
    assert code == 2 and needle in err and "Traceback" not in err
