"""apply / evaluate / report, and the whole torch path on the digits CNN: build, solve, apply, evaluate."""

import copy
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import mpqopt  # noqa: E402
from mpqopt import Option, Problem  # noqa: E402
from mpqopt.adapters.torch.apply import apply, evaluate, report  # noqa: E402
from mpqopt.adapters.torch.build import problem_from_model  # noqa: E402
from mpqopt.adapters.torch.estimators.base import Sensitivity  # noqa: E402
from mpqopt.adapters.torch.quantizer import WeightScheme, quantize_activation, quantize_weight  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402

DIGITS_LAYERS = ("0", "3", "7", "12", "14")
BITS = (2, 3, 4, 8)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def hand_quantized(model, bits_by_layer, scheme=WeightScheme()):
    """An independent fake-quantized copy: deepcopy and overwrite weights with quantize_weight."""
    out = copy.deepcopy(model)
    modules = dict(out.named_modules())
    with torch.no_grad():
        for name, bits in bits_by_layer.items():
            modules[name].weight.copy_(quantize_weight(modules[name].weight, bits, scheme))
    return out


def ce_per_batch(model, batches):
    with torch.no_grad():
        return np.array([float(F.cross_entropy(model(x), y)) for x, y in batches])


def small():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


# ------------------------------------------------------------------------------ apply
def test_apply_returns_a_quantized_copy_and_leaves_the_original_untouched():
    model = small()
    before = state(model)
    for scheme in (WeightScheme(), WeightScheme(symmetric=False, per_channel=False, scale="mse")):
        q = apply(model, {"0": 3, "2": "W32"}, scheme)
        assert q is not model
        assert torch.equal(q[0].weight, quantize_weight(model[0].weight, 3, scheme))
        assert torch.equal(q[2].weight, model[2].weight)  # 32 bits = unquantized
        assert torch.equal(q[0].bias, model[0].bias)
    q = apply(model, {"0": Option(2)})
    assert not torch.equal(q[0].weight, model[0].weight)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    x = torch.randn(4, 6)
    assert torch.allclose(q(x), hand_quantized(model, {"0": 2})(x))


def test_apply_accepts_a_result_and_rejects_a_result_without_assignment():
    model = small()
    p = Problem(["0", "2"], ["W2", "W8"], [[1.0, 0.0], [0.5, 0.0]], costs={"size_bits": [[60, 240], [30, 120]]})
    r = mpqopt.solve(p, budgets={"size_bits": 270})
    assert r.assignment == {"0": "W8", "2": "W2"}
    q = apply(model, r)
    assert torch.equal(q[0].weight, quantize_weight(model[0].weight, 8))
    assert torch.equal(q[2].weight, quantize_weight(model[2].weight, 2))
    bad = mpqopt.solve(p, budgets={"size_bits": 10})
    assert bad.status == "infeasible"
    with pytest.raises(ProblemError, match="no assignment to apply \\(status infeasible\\)"):
        apply(model, bad)


def test_apply_bad_inputs_name_the_problem():
    model = small()
    with pytest.raises(ProblemError, match="no quantizable layer named '1'"):
        apply(model, {"0": 4, "1": 4})  # '1' is the ReLU
    with pytest.raises(ProblemError, match="no quantizable layer named 'fc'"):
        apply(model, {"fc": 4})
    with pytest.raises(ProblemError, match="layer '2'.*'Q4_K'.*can dequantize this GGUF type but not quantize it"):
        apply(model, {"2": "Q4_K"})  # named formats the adapter cannot reproduce are refused, not approximated
    with pytest.raises(ProblemError, match="empty"):
        apply(model, {})
    with pytest.raises(ProblemError, match="Result or a mapping"):
        apply(model, [4, 8])
    with pytest.raises(ProblemError, match="torch.nn.Module"):
        apply("model", {"0": 4})


def test_activation_quantization_with_ranges_or_calibration():
    model = small()
    x = torch.randn(8, 6)
    with pytest.raises(ProblemError, match=r"layers \['0'\] have options with activation bits \(W4A4\)"):
        apply(model, {"0": "W4A4"})
    q = apply(model, {"0": "W4A4"}, act_ranges={"0": (-1.0, 2.0)})
    expected = F.linear(quantize_activation(x, 4, -1.0, 2.0), quantize_weight(model[0].weight, 4), model[0].bias)
    assert torch.allclose(q[0](x), expected)
    # calibration measures the first layer's input range on the data: its min and max
    q = apply(model, {"0": "W4A4", "2": "W8A8"}, calibration=[(x, torch.zeros(8, dtype=torch.long))])
    lo, hi = float(x.min()), float(x.max())
    assert torch.allclose(q[0](x), F.linear(quantize_activation(x, 4, lo, hi), quantize_weight(model[0].weight, 4), model[0].bias))
    with torch.no_grad():
        h = torch.relu(q[0](x))
        ref_h = torch.relu(model[0](x))  # calibrated on the FP32 model
        assert torch.allclose(q(x), F.linear(quantize_activation(h, 8, float(ref_h.min()), float(ref_h.max())), quantize_weight(model[2].weight, 8), model[2].bias))
    with pytest.raises(ProblemError, match=r"no range for layers \['2'\]"):
        apply(model, {"0": "W4A4", "2": "W8A8"}, act_ranges={"0": (0.0, 1.0)})


def test_calibration_on_a_train_mode_model_changes_nothing():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).train()
    before = state(model)
    q = apply(model, {"2": "W4A8"}, calibration=[torch.randn(16, 3) * 3 + 1])
    assert model.training and q.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------ evaluate
def test_evaluate_on_digits_matches_independent_computations(digits_bed):
    from mpqopt.examples.digits import accuracy

    model = digits_bed.model
    batches = digits_bed.test_batches(100)  # 540 samples: five of 100 and one of 40
    acc = evaluate(model, batches, "accuracy")
    assert acc == pytest.approx(accuracy(model, digits_bed.test_x, digits_bed.test_y), abs=1e-6)  # float32 mean there
    with torch.no_grad():
        full = float(F.cross_entropy(model(digits_bed.test_x), digits_bed.test_y))
    assert evaluate(model, batches) == pytest.approx(full, rel=1e-5)  # batch-size-weighted mean = dataset mean
    top1 = evaluate(model, batches, lambda out, y: (out.argmax(1) == y).float().mean())
    assert top1 == pytest.approx(acc, abs=1e-9)
    # KL to the FP32 outputs, against torch's KL computed on the whole set at once
    q = apply(model, {n: 2 for n in DIGITS_LAYERS})
    with torch.no_grad():
        ref, out = model(digits_bed.test_x), q(digits_bed.test_x)
        kl = float(F.kl_div(F.log_softmax(out, 1), F.log_softmax(ref, 1), log_target=True, reduction="batchmean"))
    assert evaluate(q, [digits_bed.test_x[i : i + 108] for i in range(0, 540, 108)], loss="kl", reference=model) == pytest.approx(kl, rel=1e-4)
    with pytest.raises(ProblemError, match="loss 'kl' compares.*reference="):
        evaluate(q, [digits_bed.test_x], loss="kl")


def test_evaluate_bad_inputs_name_the_problem(digits_bed):
    model = digits_bed.model
    with pytest.raises(ProblemError, match="failed on batch 0 \\(wrong input shape"):
        evaluate(model, [(torch.randn(4, 1, 7), torch.zeros(4, dtype=torch.long))])
    with pytest.raises(ProblemError, match="accuracy needs targets, but batch 0 has none"):
        evaluate(model, [digits_bed.test_x[:4]], "accuracy")
    with pytest.raises(ProblemError, match=r"batch 0 has outputs \(4, 10\) but targets \(4, 2\)"):
        evaluate(model, [(digits_bed.test_x[:4], torch.zeros(4, 2, dtype=torch.long))], "accuracy")
    with pytest.raises(ProblemError, match="metric must be"):
        evaluate(model, [digits_bed.test_x[:4]], "f1")
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken[0].weight.fill_(float("nan"))
    with pytest.raises(ProblemError, match="non-finite loss"):
        evaluate(broken, digits_bed.test_batches())
    with pytest.raises(ProblemError, match="metric on batch 0 gave a non-finite"):
        evaluate(model, digits_bed.test_batches(), lambda out, y: float("nan"))
    with pytest.raises(ProblemError, match="data is empty"):
        evaluate(model, [])


# ------------------------------------------------------------------------------ report and the whole path
def delta_table(model, batches, layers, bits):
    """Loss increase of each layer alone at each bit-width, by hand (deepcopy + quantize_weight)."""
    fp = ce_per_batch(model, batches).mean()
    return np.array([[ce_per_batch(hand_quantized(model, {n: b}), batches).mean() - fp for b in bits] for n in layers])


def test_report_predicted_vs_measured(digits_bed):
    model, batches = digits_bed.model, digits_bed.train[:4]
    values = delta_table(model, batches, DIGITS_LAYERS, BITS)
    sens = Sensitivity(DIGITS_LAYERS, tuple(Option(b) for b in BITS), values, None, "hand", meta={"loss": "ce"})
    choice = {"0": "W8", "3": "W4", "7": "W3", "12": "W2", "14": "W8"}
    rep = report(model, choice, sens, batches, per_layer=True)
    picked = [values[i, BITS.index(int(choice[n][1:]))] for i, n in enumerate(DIGITS_LAYERS)]
    assert rep.predicted == pytest.approx(sum(picked), rel=1e-12)
    fp = ce_per_batch(model, batches)
    q = ce_per_batch(hand_quantized(model, {n: int(lbl[1:]) for n, lbl in choice.items()}), batches)
    assert rep.measured == pytest.approx((q - fp).mean(), rel=1e-5, abs=1e-9)
    assert rep.measured_stderr == pytest.approx((q - fp).std(ddof=1) / 2, rel=1e-4)
    assert rep.fp_loss == pytest.approx(fp.mean(), rel=1e-5) and rep.loss == "ce"
    # each layer alone: the hand table is exactly "loss change with that layer alone quantized"
    for (name, _label, pred, alone), want in zip(rep.rows, picked):
        assert pred == want and alone == pytest.approx(want, rel=1e-4, abs=1e-8), name
    text = rep.table()
    assert "measured alone" in text and text.count("\n") >= len(DIGITS_LAYERS) + 3 and "change predicted" in text
    assert "(s.e. over 4 batches)" in text and rep.batches == 4
    one = report(model, choice, sens, batches[:1])  # one batch: no standard error to claim
    assert one.measured_stderr is None and "(one batch: no standard error)" in one.table()
    # the pairwise term is part of the prediction
    pair = np.zeros((20, 20))
    pair[0 * 4 + 3, 1 * 4 + 2] = pair[1 * 4 + 2, 0 * 4 + 3] = 0.01  # ('0', W8) with ('3', W4)
    p = problem_from_model(model, batches[0], None, Sensitivity(sens.layers, sens.options, values, None, "hand", pairwise=pair))
    rep2 = report(model, choice, p, batches)
    assert rep2.pairwise == pytest.approx(0.02) and rep2.predicted == pytest.approx(sum(picked) + 0.02)
    assert "(pairwise)" in rep2.table()
    with pytest.raises(ProblemError, match=r"missing \['14'\]"):
        report(model, {n: choice[n] for n in DIGITS_LAYERS[:4]}, p, batches)
    with pytest.raises(ProblemError, match="layer '0' takes option W6"):
        report(model, {**choice, "0": "W6"}, p, batches)


def test_digits_end_to_end_build_solve_apply_evaluate(digits_bed):
    from mpqopt.examples.digits import accuracy

    model, batches = digits_bed.model, digits_bed.train[:4]
    before = state(model)
    values = delta_table(model, batches, DIGITS_LAYERS, BITS)
    p = problem_from_model(model, digits_bed.test_x[:3], BITS, values, budgets={"size": "25%"}, keep_first_last=8)
    weights = np.array([16 * 9, 32 * 16 * 9, 64 * 32 * 9, 64 * 256, 10 * 64], dtype=float)
    macs = np.array([16 * 64 * 9, 32 * 64 * 16 * 9, 64 * 16 * 32 * 9, 64 * 256, 10 * 64], dtype=float)
    np.testing.assert_array_equal(p.costs["size_bits"], np.outer(weights, BITS))
    np.testing.assert_array_equal(p.costs["bitops"], np.outer(macs, BITS) * 8)
    assert p.fixed == {"0": "W8", "14": "W8"} and p.ties == ()
    r = mpqopt.solve(p)
    assert r.status == "optimal"
    # independent optimum: every allocation of the three free layers under the same budget
    fixed_size = 8 * (weights[0] + weights[4])
    best = min(
        (values[0, 3] + values[4, 3] + sum(values[i, BITS.index(b)] for i, b in zip((1, 2, 3), combo)), combo)
        for combo in itertools.product(BITS, repeat=3)
        if fixed_size + sum(weights[i] * b for i, b in zip((1, 2, 3), combo)) <= p.budgets["size_bits"] + 1e-9
    )
    assert r.objective == pytest.approx(best[0], rel=1e-9, abs=1e-12)
    chosen = {n: int(r.assignment[n][1:]) for n in DIGITS_LAYERS}
    assert (chosen["3"], chosen["7"], chosen["12"]) == best[1]
    q = apply(model, r)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    acc_fp = evaluate(model, digits_bed.test_batches(), "accuracy")
    acc_q = evaluate(q, digits_bed.test_batches(), "accuracy")
    assert acc_q == pytest.approx(accuracy(hand_quantized(model, chosen), digits_bed.test_x, digits_bed.test_y), abs=1e-6)
    assert acc_q > 0.95 and acc_fp - acc_q < 0.02  # a quarter of the way up from all-2-bit barely hurts
    uniform2 = evaluate(apply(model, {n: 2 for n in DIGITS_LAYERS}), digits_bed.test_batches(), "accuracy")
    assert acc_q > uniform2


def test_a_full_precision_activation_width_needs_no_range():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    x = torch.randn(8, 4)
    with torch.no_grad():  # W8A32 leaves the input alone: no calibration asked for, same model as W8
        assert torch.equal(apply(m, {"0": "W8A32"})(x), apply(m, {"0": "W8"})(x))


def test_report_reliability_ranks_random_feasible_allocations(digits_bed):
    """Each random allocation meets the budget and is measured as by hand; a table that ranks
    allocations backwards is flagged poor with a warning."""
    from scipy.stats import spearmanr

    model, batches = digits_bed.model, digits_bed.train[:2]
    values = delta_table(model, batches, DIGITS_LAYERS, BITS)
    good = problem_from_model(model, batches[0], BITS, values, budgets={"size": "50%"})
    choice = {n: "W4" for n in DIGITS_LAYERS}
    rep = report(model, choice, good, batches, reliability=6, seed=1)
    rel = rep.reliability
    assert len(rel.predicted) == len(rel.measured) == 6 and rel.tried >= 6
    fp = ce_per_batch(model, batches).mean()
    assert rel.spearman == pytest.approx(spearmanr(rel.predicted, rel.measured)[0])
    assert rel.spearman > 0.5 and not rel.poor and "Spearman" in rep.table()
    # the same draws (same seed) with the table negated: the ranking reverses, poor and warned
    bad = good.replace(sensitivity=-good.sensitivity)
    with pytest.warns(UserWarning, match="poor: the table's ranking of allocations is not trusted"):
        flipped = report(model, choice, bad, batches, reliability=6, seed=1).reliability
    assert flipped.measured == pytest.approx(rel.measured) and flipped.spearman == pytest.approx(-rel.spearman) and flipped.poor
    # measured as by hand, for one allocation drawn the same way
    rng = np.random.default_rng(1)
    allowed = [np.nonzero(row)[0] for row in good.allowed]
    while True:
        x = np.array([rng.choice(ok) for ok in allowed])
        if not mpqopt.verify.violations(good, x, good.budgets):
            break
    by_hand = ce_per_batch(hand_quantized(model, {n: BITS[int(k)] for n, k in zip(good.layers, x)}), batches).mean() - fp
    assert rel.measured[0] == pytest.approx(by_hand, rel=1e-4, abs=1e-8)
    assert rel.predicted[0] == pytest.approx(sum(values[i, int(k)] for i, k in enumerate(x)), rel=1e-12)


def test_refine_on_the_digits_cnn_measures_and_beats_a_misleading_table(digits_bed):
    """A table that ranks bit-widths backwards (negated per-layer deltas): its exact allocation is bad;
    refine, measuring with the adapter's measurer, returns one never worse than the uniform ones that
    fit, and its measurements are the CE changes a hand-quantized copy gives."""
    from mpqopt.adapters.torch import measurer

    model, batches = digits_bed.model, digits_bed.train[:2]
    values = delta_table(model, batches, DIGITS_LAYERS, BITS)
    bad = problem_from_model(model, batches[0], BITS, -values, budgets={"size": "40%"})
    measure = measurer(model, batches, loss="ce")
    fp = ce_per_batch(model, batches).mean()
    naive = mpqopt.solve(bad)
    r = mpqopt.refine(bad, measure, max_evaluations=10)
    assert mpqopt.verify.violations(bad, r.x, bad.budgets) == [] and r.evaluations <= 10
    assert r.measured <= min(m.measured for m in r.measurements if m.source.startswith("uniform"))
    assert r.measured <= measure(naive.assignment)[0]
    m = r.measurements[-1]
    by_hand = ce_per_batch(hand_quantized(model, {n: int(m.assignment[n][1:]) for n in DIGITS_LAYERS}), batches).mean() - fp
    assert m.measured == pytest.approx(by_hand, rel=1e-4, abs=1e-8)
