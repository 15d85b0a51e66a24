"""estimate_delta_loss with cached activations and stacked options against the plain measurement (a
full forward per layer, option and batch: ``_delta_loss_reference``): the same table, on a chain, a
model with skip connections, activation options, a model fx cannot trace, tied weights, with the
options of a layer stacked along the batch or not, and with several batches joined in one forward or
not (models that mix the samples of a batch, or fix its size, fall back to one batch per forward)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
from torch import nn  # noqa: E402

from mpqopt.adapters.torch.estimators.delta_loss import _delta_loss_reference, estimate_delta_loss  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402
from torch_tables import ROUND_OFF_ATOL, assert_same_table, one_per_forward  # noqa: E402

torch.set_num_threads(1)


def chain() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(inplace=True), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).eval()


class Skip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.a, self.b, self.c = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.c(h + torch.tanh(self.b(h)))


class Twice(nn.Module):
    """One layer used twice (not single-use: its options cannot be stacked)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x):
        return self.b(self.a(torch.tanh(self.a(x))))


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x):
        h = self.a(x)
        if h.sum() > -1e9:
            h = torch.relu(h)
        return self.b(h)


def batches(n: int = 3, size: int = 8, seed: int = 5, last: int | None = None):
    gen = torch.Generator().manual_seed(seed)
    sizes = [size] * (n - 1) + [size if last is None else last]
    return [(torch.randn(k, 4, generator=gen), torch.randint(0, 3, (k,), generator=gen)) for k in sizes]


def check(model, options, stack, concat="auto", **kw):
    got = estimate_delta_loss(model, batches(), options, batch_perturbations=stack, concat_batches=concat, **kw)
    want = _delta_loss_reference(model, batches(), options, **kw)
    assert one_per_forward(got.meta) == (stack == 1 and concat == 1)
    assert_same_table(got, want)  # bit for bit with one batch and one option per forward, else to round-off
    assert got.meta["forward_passes"] == want.meta["forward_passes"]
    return got


@pytest.mark.parametrize("concat", [1, "auto"])
@pytest.mark.parametrize("stack", [1, "auto", 8])
@pytest.mark.parametrize("make", [chain, Skip, Twice])
def test_cached_table_equals_full_forwards(make, stack, concat):
    got = check(make(), [2, 3, 8, 32], stack, concat)
    assert got.meta["mode"] == "fx" and got.meta["step_fraction"] < 1
    assert got.meta["concat_batches"] == (3 if concat == "auto" else 1) and got.meta["concat_note"] == ""
    if stack == 8 or (stack == "auto" and concat == 1):  # "auto" on CPU stacks only small forwards (3 joined batches are 24 samples)
        assert got.meta["batch_perturbations"] == 3  # W32 needs no pass (Twice: its layer b stacks, a cannot)


def test_activation_options_and_other_losses_equal_full_forwards():
    check(Skip(), ["W2A4", "W4", "W8A8"], 1)
    check(chain(), [2, "W4A4"], "auto", loss="kl")


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_untraceable_model_gives_the_same_table_memoized_or_whole(mode):
    got = estimate_delta_loss(Branchy(), batches(), [2, 4], batch_perturbations=1, mode=mode)
    assert got.meta["mode"] == ("memo" if mode == "auto" else "full")
    assert_same_table(got, _delta_loss_reference(Branchy(), batches(), [2, 4]))


class BatchMean(nn.Module):
    """Mixes the samples of a batch (subtracts their mean): joining batches changes every output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x):
        h = self.a(x)
        return self.b(h - h.mean(0))


class FixedSize(nn.Module):
    """Hard-codes the batch size in a reshape: a joined forward fails."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)).reshape(8, 6))


class Scaled(nn.Module):
    """Takes a per-batch Python number: batches with different numbers cannot be joined."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(8)
        self.a = nn.Linear(4, 3)

    def forward(self, x, scale):
        return self.a(x) * scale


@pytest.mark.parametrize("concat", [2, "auto", 100])
@pytest.mark.parametrize("options, kw", [([2, 3, 8], {}), (["W2A4", "W4"], {}), ([2, "W4A4"], {"loss": "kl"}), ([3, 4], {"loss": "mse"})])
def test_joined_batches_give_the_table_of_one_batch_per_forward(concat, options, kw):
    data = batches(n=5, last=3)  # the last batch is smaller
    got = estimate_delta_loss(Skip(), data, options, concat_batches=concat, **kw)
    one = estimate_delta_loss(Skip(), data, options, concat_batches=1, **kw)
    want = _delta_loss_reference(Skip(), data, options, **kw)
    np.testing.assert_allclose(got.values, one.values, rtol=0, atol=ROUND_OFF_ATOL)
    np.testing.assert_allclose(got.std, one.std, rtol=0, atol=ROUND_OFF_ATOL)
    assert_same_table(got, want)
    assert got.meta["concat_batches"] == (2 if concat == 2 else 5) and one.meta["concat_batches"] == 1
    assert got.meta["forward_passes"] == one.meta["forward_passes"] == want.meta["forward_passes"]


@pytest.mark.parametrize("make, why", [(BatchMean, "mixes the samples"), (FixedSize, "joined")])
def test_models_that_couple_a_batch_fall_back_to_one_batch_per_forward(make, why):
    got = estimate_delta_loss(make(), batches(), [2, 4], concat_batches="auto")
    want = _delta_loss_reference(make(), batches(), [2, 4])
    assert_same_table(got, want)
    assert got.meta["concat_batches"] == 1 and why in got.meta["concat_note"] and "one batch per forward" in got.meta["concat_note"]


def test_inputs_that_differ_between_batches_are_not_joined():
    data = [((x, float(k + 1)), y) for k, (x, y) in enumerate(batches())]
    got = estimate_delta_loss(Scaled(), data, [2, 4], concat_batches="auto")
    assert_same_table(got, _delta_loss_reference(Scaled(), data, [2, 4]))
    assert got.meta["concat_batches"] == 1 and "cannot be concatenated" in got.meta["concat_note"]
    same = [((x, 2.0), y) for x, y in batches()]  # the same number in every batch: joined
    assert estimate_delta_loss(Scaled(), same, [2, 4], concat_batches="auto").meta["concat_batches"] == 3


def test_concat_batches_must_be_a_positive_integer():
    with pytest.raises(ProblemError, match="concat_batches"):
        estimate_delta_loss(chain(), batches(), [2], concat_batches=0)


def nan_in_marked_batch(out, ref, target):
    """MSE to the FP32 output; NaN for a perturbed output of the batch whose first target is -1."""
    marked = bool(target[0] == -1) and not torch.equal(out, ref)
    return torch.nn.functional.mse_loss(out, ref) + (float("nan") if marked else 0.0)


def test_a_non_finite_loss_in_joined_batches_names_its_batch():
    data = batches(n=4)
    data[2][1][0] = -1
    with pytest.raises(ProblemError, match=r"layer 'a' at option W2 \(batch 2\) gave a non-finite loss"):
        estimate_delta_loss(Skip(), data, [2, 4], loss=nan_in_marked_batch, concat_batches="auto")


class Lookup(nn.Module):
    """Takes a table shared by the batch (no batch dimension): it must not be concatenated."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(9)
        self.a = nn.Linear(4, 3)

    def forward(self, x, table):
        return self.a(x) + table.sum(0)


def test_an_input_without_a_batch_dimension_is_not_joined():
    table = torch.randn(5, 3)
    data = [((x, table), y) for x, y in batches()]
    got = estimate_delta_loss(Lookup(), data, [2, 4], concat_batches="auto")
    assert_same_table(got, _delta_loss_reference(Lookup(), data, [2, 4]))
    assert got.meta["concat_batches"] == 1 and "does not carry its batch" in got.meta["concat_note"]


def test_auto_joins_up_to_256_samples_per_forward_on_cpu():
    data = batches(n=40, size=8)  # 32 batches of 8 make 256 samples
    got = estimate_delta_loss(chain(), data, [2, 4])
    assert got.meta["concat_batches"] == 32 and got.meta["concat_note"] == ""
    assert_same_table(got, _delta_loss_reference(chain(), data, [2, 4]))
