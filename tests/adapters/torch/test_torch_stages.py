"""stages: max pooling of NCHW CPU tensors runs on a channels-last copy in the fx stages (torch's NCHW
CPU kernel is a scalar loop); the staged forward must stay bit-identical to the model's own forward,
with ties, signed zeros, NaN and infinities in the windows, and every pooling geometry."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
from torch import nn  # noqa: E402

from mpqopt.adapters.torch import stages  # noqa: E402
from mpqopt.adapters.torch.stages import stage_model  # noqa: E402

torch.set_num_threads(1)


class Pooled(nn.Module):
    def __init__(self, pool: nn.MaxPool2d, channels: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.pool, self.head = nn.Conv2d(3, channels, 3, padding=1), pool, nn.Conv2d(channels, 4, 1)

    def forward(self, x):
        return self.head(self.pool(torch.relu(self.conv(x))))


def awkward(shape, seed):
    """Values with many ties, signed zeros, infinities and NaNs."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(-2, 3, shape, generator=gen).float()
    x[x == 0] = torch.where(torch.rand(int((x == 0).sum()), generator=gen) < 0.5, -0.0, 0.0)
    flat = x.view(-1)
    flat[torch.randint(0, flat.numel(), (7,), generator=gen)] = float("nan")
    flat[torch.randint(0, flat.numel(), (7,), generator=gen)] = float("inf")
    flat[torch.randint(0, flat.numel(), (7,), generator=gen)] = -float("inf")
    return x


def same_bits(a, b):
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


POOLS = [nn.MaxPool2d(2), nn.MaxPool2d(3, stride=2, padding=1), nn.MaxPool2d(2, stride=1, dilation=2), nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.MaxPool2d((2, 3), stride=(1, 2))]


@pytest.mark.parametrize("pool", POOLS, ids=repr)
def test_channels_last_pooling_is_bit_identical_to_the_models_own(pool, monkeypatch):
    calls = []
    fast = stages._max_pool_channels_last
    monkeypatch.setattr(stages, "_max_pool_channels_last", lambda m, x: calls.append(1) or fast(m, x))
    x = torch.randn(5, 3, 9, 11, generator=torch.Generator().manual_seed(1))
    staged = stage_model(Pooled(pool).eval(), ["conv", "head"], x)
    with torch.no_grad():
        for seed in range(3):
            h = awkward((5, 16, 9, 11), seed)  # straight into the pool: the values before it
            cut = staged.cut["head"] - 1
            env = staged.advance(staged.start(x), 0, cut)
            node = staged.steps[cut]
            env = dict(env)
            env[node.args[0]] = h
            got = staged.advance(env, cut, cut + 1)[node]
            assert same_bits(got, pool(h))
    assert calls  # the channels-last path ran


def test_pooling_with_a_hook_or_few_channels_runs_the_module_itself(monkeypatch):
    monkeypatch.setattr(stages, "_max_pool_channels_last", lambda m, x: pytest.fail("the channels-last path ran"))
    x = torch.randn(2, 3, 8, 8)
    narrow = Pooled(nn.MaxPool2d(2), channels=4).eval()
    stage_model(narrow, ["conv", "head"], x)
    hooked = Pooled(nn.MaxPool2d(2)).eval()
    seen = []
    hooked.pool.register_forward_hook(lambda m, args, out: seen.append(out.shape))
    staged = stage_model(hooked, ["conv", "head"], x)
    with torch.no_grad():
        staged.finish(staged.start(x), 0)
    assert seen  # the hook ran
