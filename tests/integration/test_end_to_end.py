"""benchmarks/end_to_end.py on the digits CNN (quick mode): every cell is a real measurement of a
verified allocation, the uniform baseline is the best that fits, and the checks read the cells right."""

from __future__ import annotations

import json

import pytest
from benchmark_scripts import load_benchmark

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("sklearn", reason="scikit-learn (test extra) is not installed")


def bench():
    return load_benchmark("end_to_end")


@pytest.fixture(scope="module")
def report():
    return bench().run(["digits"], quick=True)


def test_budgets_span_uniform_low_to_high_and_uniform_is_the_best_that_fits(report):
    e2e = bench()
    sweeps = report["models"]["digits"]["sweeps"]
    # size budgets in bits per quantized weight: the fractions of the W2..W8 range; BitOps per MAC: of 16..64
    assert [b["per_unit"] for b in sweeps["size"]["budgets"]] == pytest.approx([2 + 6 * f for f in e2e.FRACTIONS])
    assert [b["per_unit"] for b in sweeps["bitops"]["budgets"]] == pytest.approx([16 + 48 * f for f in e2e.FRACTIONS])
    for s in sweeps.values():
        for b in s["budgets"]:
            fits = {k: u for k, u in s["uniform"].items() if u["cost"] <= b["limit"] * (1 + 1e-12)}
            assert b["uniform"]["option"] in fits and b["uniform_by_loss"]["option"] in fits
            assert b["uniform"]["metric"] == max(u["metric"] for u in fits.values())
            assert b["uniform_by_loss"]["loss_change"] == min(u["loss_change"] for u in fits.values())


def test_every_cell_is_a_feasible_allocation_measured_on_the_test_split(report, digits_bed):
    from mpqopt.adapters import torch as mt
    from mpqopt.examples.digits import accuracy

    e2e = bench()
    s = report["models"]["digits"]["sweeps"]["size"]
    assert set(s["methods"]) == set(e2e.EXACT) | {e2e.GREEDY}
    for method, r in s["methods"].items():
        for b, cell in zip(s["budgets"], r["budgets"]):
            assert cell["status"] == ("feasible" if method == e2e.GREEDY else "optimal"), (method, cell)
            assert cell["cost"] <= b["limit"] * (1 + 1e-12)
    # one cell re-measured independently: same allocation -> same accuracy on the 540 test images
    cell = s["methods"]["pairwise"]["budgets"][0]
    quantized = mt.apply(digits_bed.model, dict(zip(s["layers"], cell["allocation"])))
    assert accuracy(quantized, digits_bed.test_x, digits_bed.test_y) == pytest.approx(cell["metric"])
    # the prediction is the table's value of that allocation
    table = mt.estimate_delta_loss(digits_bed.model, digits_bed.train[:8], (2, 3, 4, 8))
    exact = s["methods"]["delta_loss"]["budgets"][2]
    problem = table.problem()
    assert problem.evaluate(problem.as_indices(dict(zip(s["layers"], exact["allocation"])))).objective == pytest.approx(exact["predicted"], rel=1e-9)


def test_measured_tables_beat_uniform_w2_by_far_at_the_tightest_budget(report):
    s = report["models"]["digits"]["sweeps"]["size"]
    tight = s["budgets"][0]
    assert tight["uniform"]["option"] == "W2"
    for method in ("delta_loss", "hessian_trace", "fisher", "pairwise"):
        cell = s["methods"][method]["budgets"][0]
        assert cell["loss_change"] < 0.25 * tight["uniform"]["loss_change"], method


def test_checks_count_what_the_cells_say(report):
    c = report["checks"]
    rows = c["exact_vs_uniform_rows"]
    for q in ("metric", "loss_change"):
        assert sum(c["exact_vs_uniform"][q].values()) == len(rows) == 2 * 5 * 5
    worse = [r for r in rows if r["loss_change"]["verdict"] == "worse"]
    assert all(r["loss_change"]["value"] > r["loss_change"]["uniform"] for r in worse)
    assert c["pairwise_beats_separable_somewhere"]["metric"] == any(t["metric"]["beats_all"] for t in c["pairwise_tight"])


def test_every_exact_cell_is_refined_within_its_measurement_budget(report, digits_bed):
    from mpqopt.adapters import torch as mt
    from mpqopt.examples.digits import accuracy

    e2e = bench()
    assert report["refine_evaluations"] == e2e.REFINE_EVALUATIONS
    for s in report["models"]["digits"]["sweeps"].values():
        assert set(s["uniform_calibration"]) == set(s["options"])
        for method, r in s["methods"].items():
            for b, cell in zip(s["budgets"], r["budgets"]):
                if method not in e2e.EXACT:
                    assert "refined" not in cell  # the greedy row shares delta_loss's table
                    continue
                ref = cell["refined"]
                assert 1 <= ref["evaluations"] <= e2e.REFINE_EVALUATIONS
                assert ref["cost"] <= b["limit"] * (1 + 1e-12) and len(ref["allocation"]) == len(s["layers"])
                assert all(layer in s["layers"] and option in s["options"] for layer, option, _, _ in ref["corrected"])
    # the calibration numbers are the measurer's on the 8 calibration batches, the held-out one the test split's accuracy
    s = report["models"]["digits"]["sweeps"]["size"]
    measure = mt.measurer(digits_bed.model, digits_bed.train[:8], loss="ce")
    assert s["uniform_calibration"]["W3"] == pytest.approx(measure({n: "W3" for n in s["layers"]})[0], rel=1e-6)
    ref = s["methods"]["entropy"]["budgets"][-1]["refined"]
    allocation = dict(zip(s["layers"], ref["allocation"]))
    assert ref["calibration"]["refined"] == pytest.approx(measure(allocation)[0], rel=1e-6, abs=1e-9)
    assert accuracy(mt.apply(digits_bed.model, allocation), digits_bed.test_x, digits_bed.test_y) == pytest.approx(ref["metric"])


def test_refine_never_loses_to_uniform_on_the_calibration_data(report):
    e2e = bench()
    c = report["checks"]["refine"]
    assert c["cells"] == c["calibration_guarantee"]["checked"] == 2 * 5 * 5
    assert c["calibration_guarantee"]["violations"] == []
    for s in report["models"]["digits"]["sweeps"].values():  # the same, from the cells themselves
        for method in e2e.EXACT:
            for b, cell in zip(s["budgets"], s["methods"][method]["budgets"]):
                fits = [k for k, u in s["uniform"].items() if u["cost"] <= b["limit"] * (1 + 1e-12)]
                assert cell["refined"]["calibration"]["refined"] <= min(s["uniform_calibration"][k] for k in fits), (method, b["per_unit"])
    text = e2e.markdown(report)
    assert "### Refine" in text and "| entropy + refine |" in text and text.count("| pairwise |") == 2
    assert f"holds in {c['cells']} of {c['cells']} cells (violations: none)" in text


def refined(metric, calibration=0.1):
    return {"metric": metric, "loss_change": 1 - metric, "allocation": ["W3"], "calibration": {"refined": calibration, "plain": 0.2}}


def test_refine_checks_on_a_made_up_report():
    e2e = bench()
    report = made_up_report()
    s = report["models"]["m"]["sweeps"]["size"]
    s["uniform_calibration"] = {"W2": 0.3, "W3": 0.15}
    after = {"delta_loss": [0.8, 0.95], "hessian_trace": [0.7, 0.9], "fisher": [0.6, 0.95], "entropy": [0.55, 0.85], "pairwise": [0.81, 0.96]}
    for method, values in after.items():
        for cell, v in zip(s["methods"][method]["budgets"], values):
            cell["refined"] = refined(v)
    s["methods"]["fisher"]["budgets"][1]["refined"]["calibration"]["refined"] = 0.16  # above W3's 0.15 at budget 3
    r = e2e.checks(report)["refine"]
    # before: entropy 0.4 < 0.5 lost at 2.5; at 3 hessian 0.9 and entropy 0.9 tie W3, delta_loss 0.85 loses
    lt = r["lost_or_tied"]["metric"]
    assert lt["before_counts"] == {"equal": 2, "worse": 2}
    assert lt["after_counts"] == {"equal": 1, "worse": 1}  # hessian still 0.9; entropy 0.85 at 3 loses
    assert [(c["method"], c["budget"]) for c in lt["after"]] == [("hessian_trace", 3.0), ("entropy", 3.0)]
    assert r["refined_vs_plain"]["metric"] == {"better": 3, "equal": 6, "worse": 1}
    assert [(v["method"], v["budget"]) for v in r["calibration_guarantee"]["violations"]] == [("fisher", 3.0)]
    assert [t["metric"]["beats_all"] for t in r["pairwise_tight"]] == [True, True]
    assert "violations: m / size / fisher at 3 0.16 > W3 0.15" in "\n".join(e2e.refine_lines({}, r))
    for m in s["methods"].values():  # a report from before refine renders without the refine section
        for cell in m["budgets"]:
            del cell["refined"]
    assert "refine" not in e2e.checks(report)


def made_up_report(pairwise=(0.81, 0.91)):
    """Two budgets; uniform W2 (cost 2) and W3 (cost 3); 'loss change' = 1 - metric."""
    def cell(metric):
        return {"metric": metric, "loss_change": 1 - metric, "allocation": ["W2"]}

    uniform = {"W2": {"cost": 2.0, "metric": 0.5, "loss_change": 0.5}, "W3": {"cost": 3.0, "metric": 0.9, "loss_change": 1 - 0.9}}
    budgets = [{"fraction": 0.5, "limit": 2.5, "per_unit": 2.5}, {"fraction": 1.0, "limit": 3.0, "per_unit": 3.0}]
    metrics = {"delta_loss": [0.8, 0.85], "hessian_trace": [0.7, 0.9], "fisher": [0.6, 0.95], "entropy": [0.4, 0.9], "pairwise": list(pairwise)}
    methods = {m: {"budgets": [cell(v) for v in vs]} for m, vs in metrics.items()}
    return {"models": {"m": {"sweeps": {"size": {"uniform": uniform, "budgets": budgets, "methods": methods}}}}}


def test_checks_on_a_made_up_report():
    e2e = bench()
    c = e2e.checks(made_up_report())
    # budget 2.5: only W2 (0.5) fits: 4 better, entropy 0.4 worse; budget 3: W3 (0.9): 2 better, 2 equal, 1 worse
    assert c["exact_vs_uniform"]["metric"] == {"better": 6, "equal": 2, "worse": 2}
    assert c["exact_vs_uniform"]["loss_change"] == {"better": 6, "equal": 2, "worse": 2}
    assert [t["metric"]["beats_all"] for t in c["pairwise_tight"]] == [True, False]
    assert [t["loss_change"]["beats_all"] for t in c["pairwise_tight"]] == [True, False]
    assert c["pairwise_beats_separable_somewhere"] == {"metric": True, "loss_change": True}
    c = e2e.checks(made_up_report(pairwise=(0.79, 0.8)))
    assert c["pairwise_beats_separable_somewhere"] == {"metric": False, "loss_change": False}
    assert [t["metric"]["beats_delta_loss"] for t in c["pairwise_tight"]] == [False, False]


def test_report_files_and_render(report, tmp_path):
    e2e = bench()
    text = e2e.markdown(report)
    assert "## Checks" in text and "| uniform, best that fits" in text and text.count("| pairwise |") == 2 and "| pairwise † |" not in text
    assert "| hessian_trace † |" in text  # weight-only estimator on the BitOps sweep, flagged
    if e2e.plot(report, tmp_path / "e2e.png"):
        assert (tmp_path / "e2e.png").stat().st_size > 10_000
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(report, default=float))
    e2e.main(["--render", str(saved), "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "end_to_end.md").read_text().startswith(text.split("\n\n![")[0][:200])


@pytest.mark.parametrize("argv, message", [
    (["--render", "{dir}/missing.json"], "cannot read it"),
    (["--render", "{dir}/bad.json"], "not JSON"),
    (["--render", "{dir}/other.json"], "not an end_to_end.json report"),
    (["--render", "{dir}/other.json", "--quick"], "--render measures nothing: drop --quick"),
    (["--models", "digits,imagenet"], "unknown model"),
])
def test_bad_command_lines_are_named(argv, message, tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"models": {"x": {"sweeps": {"size": {}}}}}')
    with pytest.raises(SystemExit):
        bench().main([a.format(dir=tmp_path) for a in argv])
    assert message in capsys.readouterr().err


def test_a_model_without_its_data_is_skipped_with_the_reason(monkeypatch):
    e2e = bench()
    from mpqopt.examples import fashion

    monkeypatch.setattr(fashion, "load_fashion_cnn", lambda **kw: fashion.fashion_data("/nonexistent/fashion"))
    out = e2e.run(["fashion"], quick=True)
    assert "apt-get install -y dataset-fashion-mnist" in out["models"]["fashion"]["skipped"]
    assert "## fashion" in e2e.markdown(out)


@pytest.mark.parametrize("sweep", ["SIZE", "BITOPS"])
def test_the_oracle_is_no_worse_than_any_method_on_its_own_images(digits_bed, sweep):
    e2e = bench()
    bed = e2e.classifier_testbed(key="digits", title="digits", bed=digits_bed, calibration_batches=8, test_size=100, truth_size=None,
                                 seconds=0.0, describe="digits", quick=True)  # measurements and oracle on the same 100 test images
    s = e2e.run_sweep(bed, getattr(e2e, sweep), truth=True, refine_evaluations=0)  # refine is checked on the quick run
    for k, b in enumerate(s["budgets"]):
        best = b["true_best"]
        assert best["loss_change"] == pytest.approx(best["subset_loss_change"], abs=1e-6)  # the same images, measured twice
        assert best["allocations"] == 4**5 and best["images"] == 100
        for method, r in s["methods"].items():
            assert best["loss_change"] <= r["budgets"][k]["loss_change"] + 1e-6, (method, k)
    report = {"models": {"digits": {"title": "digits", "measured_samples": 100, "sweeps": {"size": s}}}}
    c = e2e.checks(report)
    assert c["below_oracle"] == [] and sum(n for _, n in c["oracle_hits"].values()) == len(s["methods"]) * 5
    assert "oracle: least CE of all 1024 allocations on 100 test images" in "\n".join(e2e.sweep_table("size", s, "accuracy"))


def test_too_much_calibration_is_refused(digits_bed):
    from mpqopt.errors import MpqoptError

    with pytest.raises(MpqoptError, match="digits: 24 calibration batches asked for, the training split has 20"):
        bench().classifier_testbed(key="digits", title="digits", bed=digits_bed, calibration_batches=24, test_size=None, truth_size=None,
                                   seconds=0.0, describe="d", quick=True)
