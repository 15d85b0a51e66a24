"""problem_from_model: layers, costs, ties, first/last layers and the sensitivity checks."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
from torch import nn  # noqa: E402

import mpqopt  # noqa: E402
from mpqopt import Option  # noqa: E402
from mpqopt.adapters.torch.build import problem_from_model  # noqa: E402
from mpqopt.adapters.torch.estimators.base import Sensitivity  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402


class Block(nn.Module):
    """stem -> (conv1 -> conv2) + downsample -> fc; conv1 and downsample read the stem's ReLU output."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.conv1 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.downsample = nn.Conv2d(4, 8, 1, stride=2)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = self.conv2(torch.relu(self.conv1(x))) + self.downsample(x)
        return self.fc(y.mean((2, 3)))


LAYERS = ("stem", "conv1", "conv2", "downsample", "fc")
X = torch.randn(2, 3, 8, 8)


def table(rows=5, cols=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (rows, cols))


def test_costs_ties_and_meta_on_a_residual_block():
    opts = ["W4A8", "W8A8"]
    p = problem_from_model(Block(), X, opts, table(), budgets={"size": "50%"})
    assert p.layers == LAYERS
    weights = np.array([4 * 3 * 9, 8 * 4 * 9, 8 * 8 * 9, 8 * 4, 3 * 8], dtype=float)
    np.testing.assert_array_equal(p.costs["size_bits"], weights[:, None] * [4, 8])
    macs = np.array([4 * 64 * 27, 8 * 16 * 36, 8 * 16 * 72, 8 * 16 * 4, 24], dtype=float)
    np.testing.assert_array_equal(p.costs["bitops"], macs[:, None] * [32, 64])
    assert p.ties == (("conv1", "downsample"),) and p.meta["ties_method"] == "fx"
    assert p.budgets["size_bits"] == pytest.approx(weights.sum() * 6)  # halfway between all-4 and all-8
    assert p.meta["macs_per_sample"] == macs.tolist() and p.meta["batch_size"] == 2


def test_weight_only_options_add_no_auto_ties_but_explicit_ties_still_apply():
    p = problem_from_model(Block(), X, [4, 8], table())
    assert p.ties == () and p.meta["ties_method"] == "none" and "weight-only" in p.meta["ties_note"]
    p = problem_from_model(Block(), X, [4, 8], table(), ties=[["conv2", "fc"]], tie_extra=[["stem", "fc"]])
    assert p.ties == (("stem", "conv2", "fc"),) and p.meta["ties_method"] == "user"
    p = problem_from_model(Block(), X, ["W4A4", "W8A8"], table(), tie_exclude="downsample")
    assert p.ties == ()


def test_keep_first_last_fixes_the_layers_that_run_first_and_last():
    class Reordered(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 2)  # registered first, runs last
            self.body = nn.Linear(4, 4)
            self.embed = nn.Linear(3, 4)  # registered last, runs first

        def forward(self, x):
            return self.head(self.body(self.embed(x)))

    x = torch.randn(2, 3)
    opts = ["W4A4", "W8A4", "W8A8"]
    p = problem_from_model(Reordered(), x, opts, table(3, 3), keep_first_last=8)
    assert p.fixed == {"head": "W8A8", "embed": "W8A8"}  # int 8 prefers 8-bit activations too
    assert p.meta["keep_first_last"] == ["head", "embed"]
    assert problem_from_model(Reordered(), x, opts, table(3, 3), keep_first_last="W8A4").fixed == {"head": "W8A4", "embed": "W8A4"}
    assert problem_from_model(Reordered(), x, opts, table(3, 3), keep_first_last=Option(8, 4, "custom")).fixed["head"] == "W8A4"
    # an excluded first layer stays unquantized: only the last is fixed, and the second layer is not promoted
    p = problem_from_model(Reordered(), x, opts, table(2, 3), exclude="embed", keep_first_last=8)
    assert p.fixed == {"head": "W8A8"}
    # fixed layers still count toward the budget: their 8-bit size is in every total
    p = problem_from_model(Block(), X, [2, 4, 8], table(5, 3), keep_first_last=8, budgets={"size": "0%"})
    assert p.fixed == {"stem": "W8", "fc": "W8"}
    assert p.budgets["size_bits"] == pytest.approx(8 * (108 + 24) + 2 * (288 + 576 + 32))
    with pytest.raises(ProblemError, match=r"keep_first_last=8 needs an option with 8-bit weights among the options \['W2', 'W4'\]"):
        problem_from_model(Block(), X, [2, 4], table(), keep_first_last=8)
    with pytest.raises(ProblemError, match="keep_first_last=W6 is not one of the options"):
        problem_from_model(Block(), X, [2, 4], table(), keep_first_last="W6")


def test_sensitivity_object_order_options_and_pairwise_carry_over():
    order = ("fc", "stem", "conv1", "conv2", "downsample")
    values = table(5, 2, seed=3)
    pair = np.zeros((10, 10))
    pair[0, 3] = pair[3, 0] = 0.25
    sens = Sensitivity(order, (Option(4), Option(8)), values, values / 10, "hand", pairwise=pair, meta={"loss": "ce", "seconds": 1.5})
    p = problem_from_model(Block(), X, None, sens)
    assert p.layers == order
    np.testing.assert_array_equal(p.sensitivity, values)
    np.testing.assert_array_equal(p.sensitivity_std, values / 10)
    assert p.pairwise is not None and p.pairwise[0, 3] == 0.25
    assert p.meta["estimator"] == "hand" and p.meta["loss"] == "ce" and p.meta["source"] == "torch"
    # costs follow the sensitivity's layer order
    np.testing.assert_array_equal(p.costs["size_bits"][:, 0], np.array([24, 108, 288, 576, 32]) * 4)
    assert problem_from_model(Block(), X, [4, 8], sens).layers == order
    with pytest.raises(ProblemError, match=r"options \['W2', 'W8'\] differ from the sensitivity's \['W4', 'W8'\]"):
        problem_from_model(Block(), X, [2, 8], sens)
    with pytest.raises(ProblemError, match=r"in the sensitivity but not selected \['fc'\], selected but missing from the sensitivity \[\]"):
        problem_from_model(Block(), X, None, sens, exclude="fc")
    wrong = Sensitivity(("stem", "conv1", "conv2", "down", "fc"), (Option(4), Option(8)), values, None, "hand")
    with pytest.raises(ProblemError, match=r"\['down'\].*\['downsample'\]"):
        problem_from_model(Block(), X, None, wrong)


def test_latency_benchmark_becomes_a_latency_table():
    def bench(model, name, opt):
        return 1e-3 * opt.w * (1 + LAYERS.index(name))

    p = problem_from_model(Block(), X, [4, 8], table(), latency=bench, budgets={"latency": "20ms"})
    np.testing.assert_allclose(p.costs["latency_s"], np.outer(np.arange(1, 6), [4, 8]) * 1e-3)
    assert p.budgets["latency_s"] == pytest.approx(0.02)
    p = problem_from_model(Block(), X, [4, 8], table(), costs=["size_bytes"], latency=np.ones((5, 2)))
    assert sorted(p.costs) == ["latency_s", "size_bytes"]
    with pytest.raises(ProblemError, match=r"latency table has shape \(4, 2\)"):
        problem_from_model(Block(), X, [4, 8], table(), latency=np.ones((4, 2)))


def test_bad_inputs_name_the_problem():
    with pytest.raises(ProblemError, match="Sequential has no quantizable layer"):
        problem_from_model(nn.Sequential(nn.ReLU()), X, [4, 8], table())
    with pytest.raises(ProblemError, match=r"sensitivity table has shape \(4, 2\), but the model has 5 selected layers"):
        problem_from_model(Block(), X, [4, 8], table(4, 2))
    with pytest.raises(ProblemError, match="failed on the example input"):
        problem_from_model(Block(), torch.randn(2, 5, 8, 8), [4, 8], table())
    with pytest.raises(ProblemError, match="include pattern 'layer1.*' matches no quantizable layer"):
        problem_from_model(Block(), X, [4, 8], table(), include="layer1.*")
    with pytest.raises(ProblemError, match="options are needed"):
        problem_from_model(Block(), X, None, table())
    with pytest.raises(ProblemError, match="unknown cost 'flops'"):
        problem_from_model(Block(), X, [4, 8], table(), costs=["flops"])
    with pytest.raises(ProblemError, match="sensitivity.*non-finite|non-finite.*sensitivity"):
        problem_from_model(Block(), X, [4, 8], np.full((5, 2), np.nan))

    class Unused(Block):
        def __init__(self):
            super().__init__()
            self.aux = nn.Linear(8, 2)

    with pytest.raises(ProblemError, match=r"\['aux'\] never ran on the example input"):
        problem_from_model(Unused(), X, [4, 8], table(6, 2))
    assert problem_from_model(Unused(), X, [4, 8], table(), exclude="aux").layers == LAYERS


def test_estimated_tables_round_trip_through_the_file_format(digits_bed, tmp_path):
    """An estimator's table (with its standard errors) saved as a problem file reads back unchanged."""
    from mpqopt.adapters import torch as mt

    table = mt.estimate_delta_loss(digits_bed.model, digits_bed.train[:3], [2, 4, 8])
    problem = mt.problem_from_model(digits_bed.model, digits_bed.train[0], None, table, budgets={"size_bits": "50%"})
    for suffix in (".json", ".npz"):
        path = tmp_path / f"digits{suffix}"
        mpqopt.save(problem, path)
        back = mpqopt.load(path)
        assert back.layers == problem.layers and back.options == problem.options
        np.testing.assert_array_equal(back.sensitivity, table.values)
        np.testing.assert_array_equal(back.sensitivity_std, table.std)
        assert mpqopt.solve(back).assignment == mpqopt.solve(problem).assignment
