"""The framework-free code both adapters share: weight schemes, options and allocations, pair
filters and CLADO's tables, the loss choice, the entropy table, the checks of a measured table."""

import itertools

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy

from mpqopt import Option
from mpqopt.adapters.choices import choices_of, is_identity, parse_options
from mpqopt.adapters.entropy import code_entropy, entropy_table
from mpqopt.adapters.losses import choose_loss
from mpqopt.adapters.pairs import clado_matrix, pair_mask, pairwise_terms
from mpqopt.adapters.scheme import WeightScheme, parse_scheme
from mpqopt.adapters.sensitivity import Sensitivity, check_finite
from mpqopt.errors import ProblemError


# ------------------------------------------------------------------------------ schemes
def test_parse_scheme_reads_every_form_and_names_what_is_wrong():
    given = WeightScheme(False, True, "mse")
    assert parse_scheme(given) is given
    assert parse_scheme(None) == WeightScheme(True, True, "minmax")
    assert parse_scheme({"symmetric": 0, "scale": "mse"}) == WeightScheme(False, True, "mse")

    class Duck:  # any object with the fields, e.g. another library's scheme
        per_channel = False

    assert parse_scheme(Duck()) == WeightScheme(True, False, "minmax")
    with pytest.raises(ProblemError, match=r"unknown keys \['bits'\]"):
        parse_scheme({"bits": 4})
    with pytest.raises(ProblemError, match="weight scale method must be one of"):
        parse_scheme({"scale": "percentile"})


def test_torch_quantizer_exports_the_shared_scheme():
    quantizer = pytest.importorskip("mpqopt.adapters.torch.quantizer")
    assert quantizer.WeightScheme is WeightScheme


# ------------------------------------------------------------------------------ options and allocations
def test_identity_means_nothing_is_quantized():
    assert is_identity(Option(32)) and is_identity(Option(32, 32)) and is_identity(Option(64, None))
    assert not is_identity(Option(32, 8)) and not is_identity(Option(8)) and not is_identity(Option(4, 32))


def test_options_and_allocations_errors_name_the_culprit():
    assert parse_options(["W4A8", 2]) == (Option(4, 8), Option(2))
    for bad in ([], 4, "W4"):
        with pytest.raises(ProblemError, match="options must be a non-empty list"):
            parse_options(bad)
    with pytest.raises(ProblemError, match="layer 'fc': cannot read option label 'W4X'"):
        choices_of({"fc": "W4X"})
    with pytest.raises(ProblemError, match="the assignment is empty"):
        choices_of({})


def test_a_result_without_assignment_cannot_be_applied_or_exported():
    import mpqopt

    problem = mpqopt.Problem(["a"], [2, 4], [[1.0, 0.0]], {"size_bits": [[2, 4]]}, {"size_bits": 1})
    result = mpqopt.solve(problem)
    assert result.x is None
    with pytest.raises(ProblemError, match=r"no assignment to apply \(status infeasible\)"):
        choices_of(result)
    with pytest.raises(ProblemError, match=r"no assignment to export \(status infeasible\)"):
        choices_of(result, "export")


# ------------------------------------------------------------------------------ pairs
def test_pair_mask_matches_a_brute_force_filter():
    names = ["a", "b", "c", "d", "e"]
    rule = lambda x, y: (x, y) != ("b", "d")  # noqa: E731
    for window, pairs in itertools.product((None, 0, 1, 3), (None, rule, [("e", "a"), ["c", "b"]])):
        got = pair_mask(names, window, pairs)
        for i, j in itertools.product(range(5), repeat=2):
            want = i < j and (window is None or j - i <= window)
            if callable(pairs):
                want = want and rule(names[i], names[j])
            elif pairs is not None:
                want = want and {names[i], names[j]} in ({"a", "e"}, {"b", "c"})
            assert got[i, j] == want, (window, pairs, i, j)
    with pytest.raises(ProblemError, match="window must be a non-negative number"):
        pair_mask(names, -1, None)
    with pytest.raises(ProblemError, match="pairs names unknown layer 'z'"):
        pair_mask(names, None, [("a", "z")])
    with pytest.raises(ProblemError, match="pairs must be a callable"):
        pair_mask(names, None, 3)


def test_pairwise_terms_are_clados_interactions():
    rng = np.random.default_rng(1)
    L, options, nb = 3, [Option(2), Option(4), Option(32)], 4
    K = len(options)
    base = rng.normal(size=nb)
    single = rng.normal(size=(L, K, nb))
    pair = np.full((L * K, L * K), np.nan)
    measured = [(0, 1), (0, 2)]  # layers 1 and 2 are never measured together
    for i, j in measured:
        for k, p in itertools.product(range(2), repeat=2):  # the identity option is never measured
            pair[i * K + k, j * K + p] = rng.normal()
    values, std, p = pairwise_terms(base, single, pair, options)
    for i, k in itertools.product(range(L), range(K)):
        d = single[i, k] - base if k < 2 else np.zeros(nb)
        assert values[i, k] == pytest.approx(d.mean()) and std[i, k] == pytest.approx(d.std(ddof=1) / np.sqrt(nb))
    for (i, j), k, q in itertools.product(measured, range(2), range(2)):
        omega = pair[i * K + k, j * K + q] - (values[i, k] + base.mean()) - (values[j, q] + base.mean()) + base.mean()
        assert p[i * K + k, j * K + q] == pytest.approx(omega / 2) == p[j * K + q, i * K + k]
    assert np.all(p[3:6, 6:9] == 0) and np.all(p[:, 2::3] == 0) and np.all(np.diag(p) == 0)
    s = Sensitivity(("a", "b", "c"), tuple(options), values, std, "clado", p)
    assert np.allclose(np.diag(clado_matrix(s)), 2 * values.ravel())


# ------------------------------------------------------------------------------ losses, entropy, checks
def test_loss_choice_follows_the_targets_and_words_errors_for_each_adapter():
    fns = {"ce": "CE", "kl": "KL", "mse": "MSE", "cosine": "COS"}
    assert choose_loss("auto", [True, True], fns) == ("ce", "CE")
    assert choose_loss("auto", [True, False], fns) == ("kl", "KL")
    assert choose_loss(abs, [False], fns) == ("abs", abs)
    with pytest.raises(ProblemError, match="loss 'ce' needs targets, but batch 1 has none: give \\(inputs, targets\\) batches"):
        choose_loss("ce", [True, False], fns)
    with pytest.raises(ProblemError, match="metric 'ce' needs labels, but batch 0 has none: pass labels="):
        choose_loss("ce", [False], fns, what="metric", target="labels", fix="pass labels= or use metric='kl'")
    with pytest.raises(ProblemError, match="metric must be one of .* got 'l1'"):
        choose_loss("l1", [True], fns, what="metric")


def test_entropy_table_is_eagls_formula():
    codes = np.random.default_rng(2).integers(-8, 8, size=500)
    assert code_entropy(codes) == pytest.approx(scipy_entropy(np.unique(codes, return_counts=True)[1], base=2))
    h = {2: 1.0, 3: 1.7, 8: 3.9, 16: 4.2}
    opts = [Option(2), Option(3), Option(8), Option(32)]
    values, entropies, ref = entropy_table(opts, [(100, h.get), (7, lambda b: h[b] / 2)])
    assert ref == 16
    assert values[0].tolist() == pytest.approx([100 * (4.2 - 1.0), 100 * (4.2 - 1.7), 100 * (4.2 - 3.9), 0.0])
    assert entropies[1].tolist() == pytest.approx([0.5, 0.85, 1.95, 2.1])
    per_weight, _, _ = entropy_table(opts[:2], [(100, h.get)], per_weight=True)
    assert per_weight[0].tolist() == pytest.approx([0.7, 0.0])  # b_ref = 3, the largest option
    with pytest.raises(ProblemError, match="reference_bits must be an integer >= 2"):
        entropy_table(opts, [(1, h.get)], reference_bits=1)


def test_non_finite_losses_and_tables_are_named():
    with pytest.raises(ProblemError, match="batch 3 gave a non-finite loss \\(inf\\); check the inputs"):
        check_finite(float("inf"), "batch 3", "the inputs")
    values = np.array([[0.1, 0.0], [np.nan, 0.0]])
    with pytest.raises(ProblemError, match="demo: layer 'b' option W2 gave a non-finite sensitivity"):
        Sensitivity.checked(["a", "b"], [Option(2), Option(8)], values, None, "demo")
    ok = Sensitivity.checked(["a"], [Option(2)], np.array([[0.5]]), None, "demo", meta={"seconds": 1.0})
    assert ok.layers == ("a",) and ok.meta == {"seconds": 1.0}


# ------------------------------------------------------------------------------ identity options cost nothing
def test_identity_options_are_zero_without_a_pass_in_every_torch_estimator():
    torch = pytest.importorskip("torch")
    from mpqopt.adapters.torch import estimate_delta_loss, estimate_finetune_gain

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    data = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(2)]
    s = estimate_delta_loss(model, data, ["W32A32", 32])
    assert s.values.tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert s.meta["forward_passes"] == 2 * 2  # the references and the activation calibration: no perturbed pass
    f = estimate_finetune_gain(model, data, ["W32A32"], steps=2)
    assert f.values.tolist() == [[0.0], [0.0]] and f.meta["backward_passes"] == 0
