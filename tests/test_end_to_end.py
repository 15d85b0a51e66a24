"""benchmarks/end_to_end.py on the digits CNN (quick mode): every cell is a real measurement of a
verified allocation, the uniform baseline is the best that fits, and the checks read the cells right."""

from __future__ import annotations

import pytest
from benchmark_scripts import load_benchmark

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("sklearn", reason="scikit-learn (test extra) is not installed")


def bench():
    return load_benchmark("end_to_end")


@pytest.fixture(scope="module")
def report():
    return bench().run(["digits"], quick=True)


def test_budgets_span_uniform_low_to_high_and_uniform_is_the_best_that_fits(report):
    e2e = bench()
    sweeps = report["models"]["digits CNN"]["sweeps"]
    size = sweeps["size"]
    # size budgets in bits per weight: the fractions of the W2..W8 range
    assert [b["per_unit"] for b in size["budgets"]] == pytest.approx([2 + 6 * f for f in e2e.FRACTIONS])
    assert [b["per_unit"] for b in sweeps["bitops"]["budgets"]] == pytest.approx([16 + 48 * f for f in e2e.FRACTIONS])
    for s in sweeps.values():
        for b in s["budgets"]:
            fits = {k: u for k, u in s["uniform"].items() if u["cost"] <= b["limit"] * (1 + 1e-12)}
            assert b["uniform"]["option"] in fits
            assert b["uniform"]["metric"] == max(u["metric"] for u in fits.values())


def test_every_cell_is_a_feasible_allocation_measured_on_the_test_split(report, digits_bed):
    from mpqopt.adapters import torch as mt

    e2e = bench()
    s = report["models"]["digits CNN"]["sweeps"]["size"]
    assert set(s["methods"]) == set(e2e.EXACT) | {e2e.GREEDY}
    for method, r in s["methods"].items():
        for b, cell in zip(s["budgets"], r["budgets"]):
            assert cell["status"] == ("feasible" if method == e2e.GREEDY else "optimal"), (method, cell)
            assert cell["cost"] <= b["limit"] * (1 + 1e-12)
    # one cell re-measured independently: same allocation -> same accuracy on the 540 test images
    cell = s["methods"]["pairwise"]["budgets"][0]
    quantized = mt.apply(digits_bed.model, dict(zip(s["layers"], cell["allocation"])))
    from mpqopt.testbeds.digits import accuracy

    assert accuracy(quantized, digits_bed.test_x, digits_bed.test_y) == pytest.approx(cell["metric"])
    # the prediction is the table's value of that allocation
    table = mt.estimate_delta_loss(digits_bed.model, digits_bed.train[:8], (2, 3, 4, 8))
    exact = s["methods"]["delta_loss"]["budgets"][2]
    problem = table.problem()
    assert problem.evaluate(problem.as_indices(dict(zip(s["layers"], exact["allocation"])))).objective == pytest.approx(exact["predicted"], rel=1e-9)


def test_measured_tables_beat_uniform_w2_by_far_at_the_tightest_budget(report):
    s = report["models"]["digits CNN"]["sweeps"]["size"]
    tight = s["budgets"][0]
    assert tight["uniform"]["option"] == "W2"
    for method in ("delta_loss", "hessian_trace", "fisher", "pairwise"):
        cell = s["methods"][method]["budgets"][0]
        assert cell["loss_change"] < 0.25 * tight["uniform"]["loss_change"], method


def test_checks_count_what_the_cells_say(report):
    c = report["checks"]
    rows = c["exact_vs_uniform_rows"]
    assert sum(c["exact_vs_uniform"].values()) == len(rows) == 2 * 5 * 5
    for r in rows:
        assert r["verdict"] == ("better" if r["metric"] > r["uniform"] else "equal" if r["metric"] == r["uniform"] else "worse")
        assert r["loss_verdict"] == ("better" if r["loss_change"] < r["uniform_loss_change"] else "equal" if r["loss_change"] == r["uniform_loss_change"] else "worse")
    assert c["pairwise_beats_separable_somewhere"] == any(r["pairwise"] > r["best_separable"] for r in c["pairwise_tight"])
    assert c["pairwise_beats_separable_on_loss_somewhere"] == any(r["pairwise_loss"] < r["best_separable_loss"] for r in c["pairwise_tight"])


def test_checks_on_a_made_up_report():
    e2e = bench()

    def cell(metric):
        return {"metric": metric, "loss_change": 1 - metric}

    budgets = [{"per_unit": 2.5, "uniform": {"option": "W2", "metric": 0.5, "loss_change": 1 - 0.5}},
               {"per_unit": 3.0, "uniform": {"option": "W3", "metric": 0.9, "loss_change": 1 - 0.9}}]
    metrics = {"delta_loss": [0.8, 0.85], "hessian_trace": [0.7, 0.9], "fisher": [0.6, 0.95], "entropy": [0.4, 0.9], "pairwise": [0.81, 0.91]}
    methods = {m: {"budgets": [cell(v) for v in vs]} for m, vs in metrics.items()}
    report = {"models": {"m": {"sweeps": {"size": {"budgets": budgets, "methods": methods}}}}}
    c = e2e.checks(report)
    assert c["exact_vs_uniform"] == {"better": 6, "equal": 2, "worse": 2}
    assert c["exact_vs_uniform_on_loss"] == {"better": 6, "equal": 2, "worse": 2}  # loss change = 1 - metric here
    assert [r["beats_all"] for r in c["pairwise_tight"]] == [True, False]
    assert [r["beats_all_on_loss"] for r in c["pairwise_tight"]] == [True, False]
    assert c["pairwise_beats_separable_somewhere"]


def test_report_files(report, tmp_path):
    e2e = bench()
    text = e2e.markdown(report)
    assert "## Checks" in text and "| uniform (best that fits) |" in text and text.count("| pairwise |") == 2
    if e2e.plot(report, tmp_path / "e2e.png"):
        assert (tmp_path / "e2e.png").stat().st_size > 10_000


def test_a_model_without_its_data_is_skipped_with_the_reason(monkeypatch):
    e2e = bench()
    from mpqopt.testbeds import fashion

    monkeypatch.setattr(fashion, "load_fashion_cnn", lambda **kw: fashion.fashion_data("/nonexistent/fashion"))
    out = e2e.run(["fashion"], quick=True)
    assert "apt-get install -y dataset-fashion-mnist" in out["models"]["fashion"]["skipped"]
    assert "## fashion" in e2e.markdown(out)


def test_the_oracle_is_no_worse_than_any_method_on_its_own_images(digits_bed):
    e2e = bench()
    bed = e2e.classifier_testbed("digits", digits_bed, 8, 100, 0.0, "digits", quick=True)  # measure and oracle on 100 test images
    s = e2e.run_sweep(bed, e2e.SIZE, truth=True)
    for k, b in enumerate(s["budgets"]):
        best = b["true_best"]
        assert best["loss_change"] == pytest.approx(best["subset_loss_change"], abs=1e-9)  # the same images, measured twice
        assert best["allocations"] == 4**5 and best["images"] == 100
        for method, r in s["methods"].items():
            assert best["loss_change"] <= r["budgets"][k]["loss_change"] + 1e-9, (method, k)
    assert "true best (oracle" in e2e.markdown({"machine": "", "quick": True, "models": {"digits": {
        "describe": "d", "metric": "accuracy", "fp32": {}, "setup_seconds": 0.0, "sweeps": {"size": s}}}, "checks": e2e.checks(
        {"models": {"digits": {"sweeps": {"size": s}}}})})
