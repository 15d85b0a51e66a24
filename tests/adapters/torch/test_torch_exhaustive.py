"""exhaustive_losses' prefix-cached enumeration against the plain one (a full forward per allocation,
``_exhaustive_reference``): equal values on chains, models with skip connections, models fx cannot
trace (full forwards, with a warning), activation options; and its checkpoint/resume and executors."""

from __future__ import annotations

import multiprocessing
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from mpqopt.adapters.torch import memo  # noqa: E402
from mpqopt.adapters.torch.estimators.exhaustive import _exhaustive_reference, exhaustive_losses, leaves  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402

torch.set_num_threads(1)


def chain(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(inplace=True), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).eval()


class Skip(nn.Module):
    """A residual block: the first layer's output feeds the last one directly too."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.a, self.b, self.c = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.c(h + torch.tanh(self.b(h)))


class Branchy(nn.Module):
    """Data-dependent control flow: fx cannot trace it, and it is no nn.Sequential."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x):
        h = self.a(x)
        if h.sum() > -1e9:
            h = torch.relu(h)
        return self.b(h)


def batches(n: int = 2, size: int = 8, classes: int = 3, seed: int = 5):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 4, generator=gen), torch.randint(0, classes, (size,), generator=gen)) for _ in range(n)]


def same(a, b) -> None:
    """Bit-identical: the same operations on the same inputs."""
    assert a.layers == b.layers and a.fp_loss == b.fp_loss
    np.testing.assert_array_equal(a.assignments, b.assignments)
    np.testing.assert_array_equal(a.change, b.change)


@pytest.mark.parametrize("mode", ["auto", "fx", "sequential", "full"])
def test_chain_equals_full_forwards_in_every_mode(mode):
    model, data = chain(), batches(3)
    got = exhaustive_losses(model, data, [2, 3, 8], mode=mode, progress=False)
    same(got, _exhaustive_reference(model, data, [2, 3, 8]))
    assert got.meta["mode"] == ("fx" if mode == "auto" else mode)
    assert got.meta["evaluations"] == 27 * 3
    if mode != "full":
        assert got.meta["step_fraction"] < 0.6  # the cache skipped work


def test_skip_connections_and_activation_options_equal_full_forwards():
    model, data = Skip(), batches(2)
    opts = ["W2A4", "W4", "W8A8"]
    got = exhaustive_losses(model, data, opts, progress=False)
    assert got.meta["mode"] == "fx"
    same(got, _exhaustive_reference(model, data, opts))
    ranges = {"a": (-3.0, 3.0), "b": (-1.0, 1.0), "c": (-2.0, 2.0)}
    same(exhaustive_losses(model, data, opts, act_ranges=ranges, loss="kl", progress=False), _exhaustive_reference(model, data, opts, act_ranges=ranges, loss="kl"))


def test_untraceable_model_falls_back_to_full_forwards_and_says_so(monkeypatch):
    model, data = Branchy(), batches(2)
    got = exhaustive_losses(model, data, [2, 4, 8], progress=False)
    assert got.meta["mode"] == "memo" and "fx" in got.meta["mode_reason"]  # its module calls replayed
    same(got, _exhaustive_reference(model, data, [2, 4, 8]))
    monkeypatch.setattr(memo, "MEMO_MAX_BYTES", 0)  # no room for them: whole forwards
    with pytest.warns(UserWarning, match="full forward"):
        got = exhaustive_losses(model, data, [2, 4, 8], progress=False)
    assert got.meta["mode"] == "full" and "fx" in got.meta["mode_reason"] and "memo" in got.meta["mode_reason"]
    same(got, _exhaustive_reference(model, data, [2, 4, 8]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asked for: no warning
        exhaustive_losses(model, data, [2, 8], mode="full", progress=False)


def test_layers_out_of_forward_order_are_indexed_in_the_given_order():
    model, data = chain(), batches(1)
    got = exhaustive_losses(model, data, [2, 8], layers=["4", "0", "2"], progress=False)
    same(got, _exhaustive_reference(model, data, [2, 8], layers=["4", "0", "2"]))


def test_leaves_are_the_allocations_under_a_prefix():
    K, L, order = 3, 3, [2, 0, 1]
    weight = [K ** (L - 1 - l) for l in range(L)]
    all_x = np.array(np.unravel_index(np.arange(K**L), (K,) * L)).T
    for prefix in [(), (1,), (2, 0), (0, 1, 2)]:
        want = [n for n, x in enumerate(all_x) if all(x[order[t]] == k for t, k in enumerate(prefix))]
        assert sorted(leaves(prefix, order, weight, K).tolist()) == want


class Interrupted(Exception):
    pass


def counting_ce(limit):
    calls = {"n": 0}

    def ce_counting(out, ref, target):
        calls["n"] += 1
        if limit is not None and calls["n"] > limit:
            raise Interrupted
        return F.cross_entropy(out, target)

    return ce_counting, calls


def test_checkpoint_resume_gives_the_same_values_and_skips_finished_work(tmp_path):
    model, data = chain(), batches(2)
    loss, calls = counting_ce(None)
    straight = exhaustive_losses(model, data, [2, 3], loss=loss, progress=False)
    total_calls = calls["n"]
    path = tmp_path / "truth.npz"
    loss, _ = counting_ce(total_calls * 3 // 4)
    with pytest.raises(Interrupted):
        exhaustive_losses(model, data, [2, 3], loss=loss, checkpoint=path, checkpoint_every=0, progress=False)
    with np.load(path, allow_pickle=False) as z:
        assert 0 < z["done"].sum() < z["done"].size
    loss, calls = counting_ce(None)
    resumed = exhaustive_losses(model, data, [2, 3], loss=loss, checkpoint=path, progress=False)
    assert resumed.meta["resumed"] > 0 and calls["n"] < total_calls
    same(resumed, straight)
    again = exhaustive_losses(model, data, [2, 3], loss=loss, checkpoint=path, progress=False)
    assert again.meta["evaluations"] == 0
    same(again, straight)
    with pytest.raises(ProblemError, match="different run: options"):
        exhaustive_losses(model, data, [2, 4], loss=loss, checkpoint=path, progress=False)
    with pytest.raises(ProblemError, match="other weights or data"):
        exhaustive_losses(chain(seed=9), data, [2, 3], loss=loss, checkpoint=path, progress=False)


def test_process_and_thread_pools_give_the_serial_values():
    model, data = chain(), batches(2)
    serial = exhaustive_losses(model, data, [2, 3, 4, 8], progress=False)
    pools = [ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")), ThreadPoolExecutor(2)]
    for pool in pools:
        with pool:
            par = exhaustive_losses(model, data, [2, 3, 4, 8], executor=pool, chunks=5, progress=False)
        same(par, serial)
        assert par.meta["chunks"] == 5
