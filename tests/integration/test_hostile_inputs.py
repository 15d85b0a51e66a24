"""The hostile-input corpus: every input a new user tried that hung, ate memory, crashed or answered wrong.

Each case runs in its own process (a fork of the test process for Python cases, a fresh ``mpqopt`` for
command lines) under a 1 GiB address-space cap and a timeout (tests/sandbox.py) and
asserts the error's type (an ``MpqoptError`` subclass), the exit code for command-line cases (2: bad
input, 3: infeasible) and that the message names the culprit (layer, key, budget, argument).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import mpqopt
from sandbox import run_cli, run_forked

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out

TOY = {"format": "mpqopt.problem", "version": 1, "layers": ["a", "b"],
       "options": [{"label": "W4", "w": 4}, {"label": "W8", "w": 8}],
       "sensitivity": [[0.5, 0.0], [0.1, 0.0]], "costs": {"size_bits": [[4, 8], [4, 8]]}}
TOY_PY = ("import mpqopt\n"
          "p = mpqopt.Problem(['a', 'b'], [4, 8], [[0.5, 0.0], [0.1, 0.0]], costs={'size_bits': [[4, 8], [4, 8]]})\n")


def write_json(path: Path, doc: dict | str) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def npz_bomb(path: Path, shape=(20_000, 20_000), payload_mb: int = 32, member: str = "sensitivity") -> Path:
    """A small NPZ whose 'sensitivity' header declares ``shape`` float64 (3.2 GB) over deflated zeros.

    Only 32 MB of zeros are behind it (to keep the test fast); a reader that trusts the header
    allocates the full 3.2 GB before reading them, which the sandbox's 1 GiB cap turns into a MemoryError.
    """
    header = json.dumps({k: v for k, v in TOY.items() if k not in ("sensitivity", "costs")} | {"layers": ["a"], "options": [{"label": "W4", "w": 4}], "costs": []})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("header.npy", "w") as out:
            np.lib.format.write_array(out, np.array(header))
        with archive.open(f"{member}.npy", "w", force_zip64=True) as out:
            np.lib.format.write_array_header_1_0(out, {"descr": "<f8", "fortran_order": False, "shape": shape})
            zeros = bytes(1 << 20)
            for _ in range(payload_mb):
                out.write(zeros)
    return path


def deep_meta_json(levels: int) -> str:
    doc = json.dumps({**TOY, "meta": None})
    return doc.replace('"meta": null', '"meta": ' + '{"x": ' * levels + "1" + "}" * levels)


# ------------------------------------------------------------------------------ files: mpqopt.load
def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.json")
    return tmp / "pipe.json"


def _link(target: str, name: str):
    def make(tmp: Path) -> Path:
        (tmp / name).symlink_to(target)
        return tmp / name
    return make


LOAD_CASES = {
    # name: (make the file, load's keyword arguments, error class, fragments the message must hold)
    "fifo": (_fifo, {}, "FormatError", ["pipe.json", "FIFO"]),
    "dev_zero": (_link("/dev/zero", "zero.json"), {}, "FormatError", ["zero.json", "character device"]),
    "dev_urandom": (_link("/dev/urandom", "random.npz"), {}, "FormatError", ["random.npz", "character device"]),
    "over_size_cap": (lambda tmp: write_json(tmp / "p.json", TOY), {"max_bytes": 100}, "FormatError", ["p.json", "limit", "max_bytes"]),
    "npz_bomb": (lambda tmp: npz_bomb(tmp / "bomb.npz"), {}, "FormatError", ["bomb.npz", "sensitivity", "expected 1 rows"]),
    # an 'x-' extension array is never read, but a file that expands past the cap is refused all the same
    "npz_over_cap_expanded": (lambda tmp: npz_bomb(tmp / "bomb.npz", (1_000_000,), 8, "x-blob"), {"max_bytes": 1 << 20}, "FormatError",
                              ["bomb.npz", "x-blob", "expand to more than", "max_bytes="]),
    "deep_json_meta": (lambda tmp: write_json(tmp / "deep.json", deep_meta_json(100_000)), {}, "FormatError", ["deep.json", "nested too deeply"]),
    "meta_over_depth_limit": (lambda tmp: write_json(tmp / "deep.json", deep_meta_json(500)), {}, "FormatError", ["deep.json", "$.meta", "100 levels"]),
    "lone_surrogate_layer": (lambda tmp: write_json(tmp / "s.json", json.dumps({**TOY, "layers": ["a", "\ud800"]}, ensure_ascii=True)), {},
                             "FormatError", ["s.json", "layer 1", "surrogate"]),
    "overflowing_cost": (lambda tmp: write_json(tmp / "o.json", {**TOY, "costs": {"size_bits": [[1e308, 1e308], [1e308, 1e308]]}}), {},
                         "FormatError", ["o.json", "costs['size_bits']", "overflows"]),
    # version 2's layer facts: a 1-d array declaring 400 M entries over a few MB of zeros is refused by its header
    "npz_bomb_params": (lambda tmp: npz_bomb(tmp / "bomb.npz", (400_000_000,), 8, "params"), {}, "FormatError",
                        ["bomb.npz", "params", "expected shape (1,)"]),
    "huge_row_length": (lambda tmp: write_json(tmp / "r.json", {**TOY, "version": 2, "row_lengths": [1, int("9" * 1000)]}), {}, "FormatError",
                        ["r.json", "$.row_lengths[1]", "1000 digits is too large"]),
    # Python's int() refuses over 4300 digits (a guard against quadratic-time parsing): json.loads raises a bare ValueError
    "number_of_5000_digits": (lambda tmp: write_json(tmp / "n.json", json.dumps(TOY).replace("0.5", "9" * 5000)), {}, "FormatError",
                              ["n.json", "too long to read", "4300 digits"]),
    "pairwise_nan_in_npz": (None, {}, "FormatError", ["pairwise[1, 2]", "row 1 is (layer 'a', option 'W8')", "column 2 is (layer 'b', option 'W4')"]),
}


def _pairwise_nan_npz(tmp: Path) -> Path:
    header = json.dumps({k: v for k, v in TOY.items() if k not in ("sensitivity", "costs")} | {"costs": []})
    pairwise = np.zeros((4, 4))
    pairwise[1, 2] = np.nan
    np.savez(tmp / "pw.npz", header=np.array(header), sensitivity=np.array(TOY["sensitivity"]), pairwise=pairwise)
    return tmp / "pw.npz"


LOAD_CASES["pairwise_nan_in_npz"] = (_pairwise_nan_npz,) + LOAD_CASES["pairwise_nan_in_npz"][1:]


@pytest.mark.parametrize("case", sorted(LOAD_CASES))
def test_hostile_files_are_refused_fast_and_small(tmp_path, case):
    make, kwargs, error, fragments = LOAD_CASES[case]
    path = make(tmp_path)
    out = run_forked(f"import mpqopt\nmpqopt.load({str(path)!r}, **{kwargs!r})")
    assert out.is_a("MpqoptError") and out.error == error, (out.raised, out.stderr[-2000:])
    for fragment in fragments:
        assert fragment in out.message, (fragment, out.message)
    assert out.seconds < 15


# ------------------------------------------------------------------------------ the command line
def _cli_files(tmp: Path) -> dict[str, Path]:
    return {"toy": write_json(tmp / "toy.json", TOY)}


CLI_CASES = {
    # name: (arguments with {toy}/{tmp} placeholders, exit code, fragments of stderr; None: file made in the test)
    "fifo": (["info", "{tmp}/pipe.json"], 2, ["pipe.json", "FIFO"]),
    "dev_zero": (["solve", "{tmp}/zero.json"], 2, ["zero.json", "character device"]),
    "max_file_size": (["info", "{toy}", "--max-file-size", "100"], 2, ["toy.json", "limit", "--max-file-size"]),
    "max_file_size_unit": (["info", "{toy}", "--max-file-size", "1XB"], 2, ["--max-file-size", "1XB"]),
    "deep_meta": (["solve", "{tmp}/deep.json"], 2, ["deep.json", "nested too deeply"]),
    "overflowing_cost": (["solve", "{tmp}/o.json"], 2, ["costs['size_bits']", "overflows"]),
    "lone_surrogate": (["info", "{tmp}/s.json"], 2, ["layer 1", "surrogate"]),
    "budget_inf": (["solve", "{toy}", "-b", "size=inf"], 2, ["size_bits", "infinite", "none"]),
    "budget_1e400": (["solve", "{toy}", "-b", "size=1e400"], 2, ["size_bits", "infinite", "none"]),
    "budget_twice": (["solve", "{toy}", "-b", "size=10", "-b", "size=12"], 2, ["'size'", "twice", "size=10", "size=12"]),
    "budget_two_names_one_cost": (["solve", "{toy}", "-b", "size=10", "-b", "size_bits=12"], 2, ["'size'", "'size_bits'", "both"]),
    "threads_zero": (["solve", "{toy}", "--threads", "0"], 2, ["--threads"]),
    "export_infeasible": (["export", "{toy}", "-b", "size=1", "--lp", "{tmp}/out.lp"], 3, ["infeasible", "size_bits"]),
    # free text may hold one (meta round-trips it); printing escapes it instead of crashing (exit 0)
    "lone_surrogate_in_meta_prints": (["info", "{tmp}/m.json"], 0, []),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_hostile_command_lines_exit_with_the_culprit(tmp_path, case):
    args, code, fragments = CLI_CASES[case]
    toy = _cli_files(tmp_path)["toy"]
    if "pipe.json" in " ".join(args):
        os.mkfifo(tmp_path / "pipe.json")
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    write_json(tmp_path / "deep.json", deep_meta_json(100_000))
    write_json(tmp_path / "o.json", {**TOY, "costs": {"size_bits": [[1e308, 1e308], [1e308, 1e308]]}})
    write_json(tmp_path / "s.json", json.dumps({**TOY, "layers": ["a", "\ud800"]}, ensure_ascii=True))
    write_json(tmp_path / "m.json", json.dumps({**TOY, "meta": {"description": "x\ud800"}}, ensure_ascii=True))
    out = run_cli(*(a.format(toy=toy, tmp=tmp_path) for a in args))
    assert out.returncode == code, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr
    for fragment in fragments:
        assert fragment in out.stderr, (fragment, out.stderr)
    if case == "export_infeasible":
        assert (tmp_path / "out.lp").exists()  # written (to study the model), but the exit code says infeasible


# ------------------------------------------------------------------------------ the Python API
API_CASES = {
    # name: (code after TOY_PY defines p, error class, fragments)
    "solver_none": ("mpqopt.solve(p, solver=None)", "ArgumentError", ["solver", "None"]),
    "solver_int": ("mpqopt.solve(p, solver=123)", "ArgumentError", ["solver", "123"]),
    "time_limit_text": ("mpqopt.solve(p, time_limit='5')", "ArgumentError", ["time_limit", "'5'"]),
    "threads_zero": ("mpqopt.solve(p, threads=0)", "ArgumentError", ["threads", "0"]),
    "verbose_text": ("mpqopt.solve(p, verbose='no')", "ArgumentError", ["verbose", "'no'"]),
    "mip_gap_text": ("mpqopt.solve(p, mip_gap='0')", "ArgumentError", ["mip_gap"]),
    "pareto_solver_none": ("mpqopt.pareto(p, 'size_bits', points=3, solver=None)", "ArgumentError", ["solver"]),
    "compare_time_limit": ("mpqopt.compare(p, ['mckp'], time_limit=-1)", "ArgumentError", ["time_limit"]),
    "meta_list": ("mpqopt.Problem(['a'], [4], [[1.0]], meta=[1])", "FormatError", ["meta", "list"]),
    "meta_deep": ("m = {}\nn = m\nfor _ in range(100_000):\n    n['x'] = n = {}\nmpqopt.Problem(['a'], [4], [[1.0]], meta=m)",
                  "FormatError", ["$.meta", "100 levels"]),
    "complex_sensitivity": ("mpqopt.Problem(['a'], [4], [[1 + 2j]])", "ProblemError", ["sensitivity", "complex"]),
    "overflowing_cost": ("mpqopt.Problem(['a', 'b'], [4], [[1.0], [1.0]], costs={'size_bits': [[1e308], [1e308]]})",
                         "ProblemError", ["costs['size_bits']", "overflows"]),
    "overflowing_objective": ("mpqopt.Problem(['a', 'b'], [4], [[1e308], [1e308]])", "ProblemError", ["sensitivity", "overflows"]),
    "lone_surrogate_layer": ("mpqopt.Problem(['a', '\\ud800'], [4], [[1.0], [1.0]])", "ProblemError", ["layer 1", "surrogate"]),
    "lone_surrogate_unit": ("mpqopt.Problem(['a'], [4], [[1.0]], costs={'c': [[1.0]]}, cost_units={'c': 'b\\udc00'})",
                            "ProblemError", ["cost_units['c']", "surrogate"]),
    "pairwise_inf": ("import numpy as np\nq = np.zeros((4, 4))\nq[3, 0] = np.inf\n"
                     "mpqopt.Problem(['a', 'b'], [4, 8], [[1.0, 0.0], [1.0, 0.0]], pairwise=q)",
                     "ProblemError", ["pairwise[3, 0]", "(layer 'b', option 'W8')", "(layer 'a', option 'W4')"]),
    "load_none": ("mpqopt.load(None)", "ArgumentError", ["path", "None"]),
    "load_open_file": ("mpqopt.load(open(__import__('os').devnull, 'rb'))", "ArgumentError", ["path", "file name"]),
    "load_bytes": ("mpqopt.load(b'p.json')", "ArgumentError", ["path", "bytes"]),
    "load_max_bytes_text": ("mpqopt.load('p.json', max_bytes='1GB')", "ArgumentError", ["max_bytes"]),
    "export_path_none": ("mpqopt.export(p, None)", "ArgumentError", ["path", "None"]),
    "save_missing_directory": ("mpqopt.save(p, '/nonexistent-dir/p.json')", "FormatError", ["/nonexistent-dir/p.json", "does not exist"]),
    "budget_inf": ("mpqopt.solve(p, budgets={'size': float('inf')})", "BudgetError", ["size_bits", "infinite", "None"]),
    "budget_two_names_one_cost": ("mpqopt.solve(p, budgets={'size': 10, 'size_bits': 12})", "BudgetError", ["'size'", "'size_bits'"]),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_hostile_api_arguments_raise_mpqopt_errors_naming_them(case):
    code, error, fragments = API_CASES[case]
    out = run_forked(TOY_PY + code)
    assert out.is_a("MpqoptError") and out.error == error, (out.raised, out.stderr[-2000:])
    for fragment in fragments:
        assert fragment in out.message, (fragment, out.message)


# ------------------------------------------------------------------------------ answers that were wrong
def test_budget_a_hair_below_the_minimum_is_met_within_the_stated_tolerance():
    """Float costs: 1e-12 below the cheapest total (relative 1.2e-13 < verify.BUDGET_RTOL) is met,
    slack 0, never negative. Integer costs are exact data (issue 19): the same hair below their
    cheapest total is infeasible, named, while the round-off of computing a limit (a few ulps) is not."""
    p = mpqopt.Problem(["a", "b"], [4, 8], [[0.5, 0.0], [0.1, 0.0]], costs={"size_bits": [[4.1, 8.1], [4.1, 8.1]]})
    low = p.cost_range("size_bits")[0]
    r = mpqopt.solve(p, budgets={"size_bits": low - 1e-12})
    assert r.status == "optimal" and r.slack == {"size_bits": 0.0}
    assert json.loads(json.dumps(r.to_dict()))["slack"]["size_bits"] == 0.0
    beyond = mpqopt.solve(p, budgets={"size_bits": low * (1 - 1e-11)})  # beyond the tolerance: infeasible, named
    assert beyond.status == "infeasible" and "size_bits" in beyond.message
    exact = mpqopt.Problem(["a", "b"], [4, 8], [[0.5, 0.0], [0.1, 0.0]], costs={"size_bits": [[4, 8], [4, 8]]})
    low = exact.cost_range("size_bits")[0]
    below = mpqopt.solve(exact, budgets={"size_bits": low - 1e-12})
    assert below.status == "infeasible" and "size_bits" in below.message
    ulp = mpqopt.solve(exact, budgets={"size_bits": float(np.nextafter(low, 0))})  # one ulp below: round-off of the limit
    assert ulp.status == "optimal" and ulp.slack["size_bits"] <= 0 and abs(ulp.slack["size_bits"]) < 1e-14


def test_pairwise_too_large_for_bnb_advises_something_that_works():
    """auto (bnb) refuses a pairwise problem above 4,000 options to choose from; the advice must solve it."""
    rng = np.random.default_rng(0)
    L, K = 1100, 4
    rows = np.repeat(np.arange((L - 1) * K), K)
    cols = (rows // K + 1) * K + np.tile(np.arange(K), (L - 1) * K)
    import scipy.sparse as sp
    pairwise = sp.coo_array((rng.random(rows.size) * 0.01, (rows, cols)), shape=(L * K, L * K))
    p = mpqopt.Problem([f"l{i}" for i in range(L)], ["W2", "W4", "W6", "W8"], rng.random((L, K)) * [1, 0.5, 0.2, 0],
                       costs={"size_bits": np.tile([2.0, 4.0, 6.0, 8.0], (L, 1))}, pairwise=pairwise)
    refused = mpqopt.solve(p, budgets={"size_bits": "50%"})
    assert refused.status == "error" and "solver 'highs'" in refused.message and "mckp" not in refused.message
    followed = mpqopt.solve(p, budgets={"size_bits": "50%"}, solver="highs", time_limit=60)
    assert followed.status in ("optimal", "feasible", "time_limit") and followed.x is not None
