"""estimate_delta_loss with cached activations and stacked options against the plain measurement (a
full forward per layer, option and batch: ``_delta_loss_reference``): the same table, on a chain, a
model with skip connections, activation options, a model fx cannot trace, tied weights, and with the
options of a layer stacked along the batch or not."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
from torch import nn  # noqa: E402

from mpqopt.adapters.torch.estimators.delta_loss import _delta_loss_reference, estimate_delta_loss  # noqa: E402

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


def batches(n: int = 3, size: int = 8, seed: int = 5):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 4, generator=gen), torch.randint(0, 3, (size,), generator=gen)) for _ in range(n)]


def check(model, options, stack, **kw):
    got = estimate_delta_loss(model, batches(), options, batch_perturbations=stack, **kw)
    want = _delta_loss_reference(model, batches(), options, **kw)
    if stack == 1:
        np.testing.assert_array_equal(got.values, want.values)
        np.testing.assert_array_equal(got.std, want.std)
    else:  # stacked rows may round differently: checked against separate forwards to 1e-6 relative
        np.testing.assert_allclose(got.values, want.values, rtol=0, atol=1e-6)
        np.testing.assert_allclose(got.std, want.std, rtol=0, atol=1e-6)
    assert got.meta["forward_passes"] == want.meta["forward_passes"]
    return got


@pytest.mark.parametrize("stack", [1, "auto", 8])
@pytest.mark.parametrize("make", [chain, Skip, Twice])
def test_cached_table_equals_full_forwards(make, stack):
    got = check(make(), [2, 3, 8, 32], stack)
    assert got.meta["mode"] == "fx" and got.meta["step_fraction"] < 1
    if stack != 1:
        assert got.meta["batch_perturbations"] == 3  # W32 needs no pass (Twice: its layer b stacks, a cannot)


def test_activation_options_and_other_losses_equal_full_forwards():
    check(Skip(), ["W2A4", "W4", "W8A8"], 1)
    check(chain(), [2, "W4A4"], "auto", loss="kl")


def test_untraceable_model_runs_whole_with_the_same_table():
    got = check(Branchy(), [2, 4], 1)
    assert got.meta["mode"] == "full"
