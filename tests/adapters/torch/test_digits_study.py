"""The digits CNN against its exhaustive ground truth: exact allocations from a measured table beat
uniform precision at the same size budget (benchmarks/digits_study.py runs every estimator)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")

import mpqopt  # noqa: E402

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out

OPTIONS = (2, 3, 4, 8)
BUDGETS = (0.1, 0.25, 0.5)


@pytest.fixture(scope="module")
def study(digits_bed):
    from mpqopt.adapters import torch as mt

    test = [(digits_bed.test_x[:270], digits_bed.test_y[:270])]  # half the test split keeps 1024 evaluations quick
    truth = mt.exhaustive_losses(digits_bed.model, test, OPTIONS, loss="ce")
    base = mt.problem_from_model(digits_bed.model, digits_bed.train[0], OPTIONS, np.zeros((5, 4)), costs=("size_bits",))
    lo, hi = base.cost_range("size_bits")
    return truth, base, {f: lo + f * (hi - lo) for f in BUDGETS}


def test_exact_allocations_from_delta_loss_beat_uniform_precision(digits_bed, study):
    from mpqopt.adapters import torch as mt

    truth, base, limits = study
    table = mt.estimate_delta_loss(digits_bed.model, digits_bed.train[:8], OPTIONS)
    problem = mt.problem_from_model(digits_bed.model, digits_bed.train[0], None, table, costs=("size_bits",))
    for f, limit in limits.items():
        result = mpqopt.solve(problem, budgets={"size_bits": limit})
        assert result.status == "optimal"
        fits = [k for k in range(len(OPTIONS)) if base.evaluate(np.full(5, k)).costs["size_bits"] <= limit]
        uniform = truth.lookup(np.full(5, max(fits)))
        best = truth.best(base, {"size_bits": limit})[1]
        measured = truth.lookup(result.x)
        assert best <= measured <= uniform + 1e-9, (f, best, measured, uniform)


def test_ground_truth_lookup_names_a_bad_assignment(study):
    from mpqopt.errors import ProblemError

    truth = study[0]
    for bad in ([0, 1, 2], [0, 1, 2, 3, 4], [0, 1, 2, 3, 9]):
        with pytest.raises(ProblemError, match="option indices in 0..3"):
            truth.lookup(bad)
