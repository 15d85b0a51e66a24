"""memory_format: estimate_delta_loss measures a CNN on a private channels-last copy ("auto"), whose
table equals the NCHW one up to float round-off; "preserve" keeps the table equal to full forwards
of the model as given (bit for bit with one batch and one option per forward); the caller's model
and data are never modified."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
from torch import nn  # noqa: E402

from mpqopt.adapters.torch.estimators.delta_loss import _delta_loss_reference, estimate_delta_loss  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402
from torch_tables import assert_same_table  # noqa: E402

torch.set_num_threads(1)

ATOL = 1e-6  # channels-last vs NCHW: float round-off (2.1e-7 at most on the benchmark's CNNs)


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4)).eval()


def batches(n: int = 3, size: int = 4):
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(size, 3, 12, 12, generator=gen), torch.randint(0, 4, (size,), generator=gen)) for _ in range(n)]


@pytest.mark.parametrize("memory_format", ["auto", "channels_last"])
def test_channels_last_agrees_with_preserve_to_round_off_and_leaves_the_model_alone(memory_format):
    model, data = cnn(), batches()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = [x.clone() for x, _ in data]
    got = estimate_delta_loss(model, data, [2, 3, 4], memory_format=memory_format)
    kept = estimate_delta_loss(model, data, [2, 3, 4], memory_format="preserve")
    assert got.meta["memory_format"] == "channels_last" and kept.meta["memory_format"] == "preserve"
    np.testing.assert_allclose(got.values, kept.values, rtol=1e-5, atol=ATOL)
    assert np.abs(kept.values).max() > 1e-3  # the perturbations matter
    # the caller's model and inputs: same values, same (NCHW) layout
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) and v.is_contiguous()
    for (x, _), x0 in zip(data, inputs):
        assert torch.equal(x, x0) and x.is_contiguous()


@pytest.mark.parametrize("per_forward", [{"concat_batches": 1, "batch_perturbations": 1}, {}])
def test_preserve_equals_full_forwards_of_the_model_as_given(per_forward):
    """Bit for bit with one batch and one option per forward; joined or stacked, to float round-off."""
    model, data = cnn(), batches()
    got = estimate_delta_loss(model, data, [2, 4], memory_format="preserve", **per_forward)
    assert got.meta["memory_format"] == "preserve"
    assert_same_table(got, _delta_loss_reference(model, data, [2, 4]))


def test_auto_leaves_a_model_without_2d_convolutions_as_it_is():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    data = [(torch.randn(6, 4), torch.randint(0, 3, (6,))) for _ in range(2)]
    got = estimate_delta_loss(model, data, [2, 4])
    assert got.meta["memory_format"] == "preserve"
    assert_same_table(got, _delta_loss_reference(model, data, [2, 4]))


def test_an_unknown_memory_format_is_an_error_naming_the_choices():
    with pytest.raises(ProblemError, match="memory_format must be one of"):
        estimate_delta_loss(cnn(), batches(), [2], memory_format="nhwc")
