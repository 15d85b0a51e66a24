"""Export to .lp / .mps (``mpqopt.io.export``): files read back and solved by HiGHS give the exhaustive optimum,
their names decode to assignments of that value, and the CLI writes them."""

from __future__ import annotations

import numpy as np
import pytest
from milp_cases import _problem
from oracle import brute_force

import mpqopt
from mpqopt.cli import main
from mpqopt.verify import violations

highspy = pytest.importorskip("highspy")


def _solve_file(path) -> tuple[highspy.Highs, float]:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    assert h.readModel(str(path)) == highspy.HighsStatus.kOk
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal, h.modelStatusToString(h.getModelStatus())
    return h, float(h.getInfo().objective_function_value)


@pytest.mark.parametrize("suffix", ["lp", "mps"])
@pytest.mark.parametrize("case", [dict(), dict(fixed=True), dict(ties=True, fixed=True, budgets=3), dict(pairwise=True, fixed=True)],
                         ids=["plain", "fixed", "ties-fixed-3budgets", "pairwise-fixed"])
def test_exported_file_read_back_by_highs_has_the_exhaustive_optimum(tmp_path, suffix, case):
    """The objective constant (forced layers) is in the file: HiGHS's optimum on it is the problem's."""
    for seed in range(6):  # the first seed whose budgets are feasible
        problem = _problem(seed, **case)
        best, _ = brute_force(problem, problem.budgets)
        if best is not None:
            break
    path = mpqopt.export(problem, tmp_path / f"model.{suffix}")
    assert path.exists() and path.read_text().startswith("\\ mpqopt" if suffix == "lp" else "* mpqopt")
    h, value = _solve_file(path)
    assert value == pytest.approx(best, rel=1e-7, abs=1e-9)
    assert value == pytest.approx(mpqopt.solve(problem).objective, rel=1e-7, abs=1e-9)
    lp = h.getLp()
    assert set(problem.budgets) <= set(lp.row_names_)  # budgets are named rows
    if case.get("fixed"):
        assert lp.offset_ != 0.0  # the forced layer's sensitivity is the file's constant


@pytest.mark.parametrize("pairwise", [False, True])
def test_exported_column_names_decode_to_the_optimal_assignment(tmp_path, pairwise):
    """x_<layer>_<option> columns at 1 in HiGHS's solution of the file form an assignment that the
    problem itself (not the file) evaluates to the file's optimum."""
    problem = _problem(11, budgets=2, pairwise=pairwise)
    best, _ = brute_force(problem, problem.budgets)
    assert best is not None
    h, value = _solve_file(mpqopt.export(problem, tmp_path / "m.mps"))
    names, values = h.getLp().col_names_, np.asarray(h.getSolution().col_value)
    chosen = {}
    for name, v in zip(names, values):
        if name.startswith("x_") and v > 0.5:
            layer, _, label = name[2:].rpartition("_")
            chosen[layer] = label
    assert sorted(chosen) == sorted(problem.layers)
    x = problem.as_indices(chosen)
    assert violations(problem, x, problem.budgets) == []
    assert problem.evaluate(x).objective == pytest.approx(value, rel=1e-7, abs=1e-9)
    assert value == pytest.approx(best, rel=1e-7, abs=1e-9)


def test_export_budget_override_format_override_and_errors(tmp_path):
    problem = _problem(2, budgets=1)
    (name, (lo, hi)), = ((n, problem.cost_range(n)) for n in problem.costs)
    best, _ = brute_force(problem, {name: lo})  # the tightest budget: only the cheapest assignments
    path = mpqopt.export(problem, tmp_path / "model.txt", budgets={name: lo}, fmt="lp")
    assert path.read_text().splitlines()[0].startswith("\\ mpqopt")
    # HiGHS reads by suffix: copy to .lp to read back the forced format
    (tmp_path / "copy.lp").write_text(path.read_text())
    _, value = _solve_file(tmp_path / "copy.lp")
    assert value == pytest.approx(best, rel=1e-7, abs=1e-9)
    with pytest.raises(mpqopt.MpqoptError, match="model.csv"):
        mpqopt.export(problem, tmp_path / "model.csv")
    with pytest.raises(mpqopt.MpqoptError, match="fmt='gms'"):
        mpqopt.export(problem, tmp_path / "model.lp", fmt="gms")
    with pytest.raises(mpqopt.BudgetError, match="nosuch"):
        mpqopt.export(problem, tmp_path / "model.lp", budgets={"nosuch": 3})


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_export_writes_the_file(tmp_path, capsys):
    problem = _problem(4, budgets=2, fixed=True)
    src = tmp_path / "p.json"
    mpqopt.save(problem, src)
    (name, (lo, hi)) = next((n, problem.cost_range(n)) for n in problem.costs)
    budget = lo + 0.6 * (hi - lo)
    code, out, err = run(capsys, "export", str(src), "--budget", f"{name}={budget!r}", "--mps", str(tmp_path / "o.mps"))
    assert code == 0, err
    assert "o.mps" in err
    limits = {**problem.budgets, name: budget}
    best, _ = brute_force(problem, limits)
    _, value = _solve_file(tmp_path / "o.mps")
    assert value == pytest.approx(best, rel=1e-7, abs=1e-9)
    code, _, err = run(capsys, "export", str(src), "--lp", str(tmp_path / "o.lp"))
    assert code == 0 and (tmp_path / "o.lp").read_text().startswith("\\ mpqopt")


@pytest.mark.parametrize("argv, message", [
    ([], "one of the arguments --lp --mps --format is required"),
    (["--lp", "a.lp", "--mps", "b.mps"], "not allowed with"),
    (["--budget", "c0", "--lp", "a.lp"], "expected NAME=VALUE"),
    (["--budget", "nosuch=3", "--lp", "a.lp"], "nosuch"),
    (["--lp", "missing_dir/a.lp"], "cannot write"),
])
def test_cli_export_bad_arguments_exit_2(tmp_path, capsys, argv, message):
    src = tmp_path / "p.json"
    mpqopt.save(_problem(0, budgets=1), src)
    argv = [a if not a.endswith((".lp", ".mps")) else str(tmp_path / a) for a in argv]
    code, _, err = run(capsys, "export", str(src), *argv)
    assert code == 2
    assert message in err
