"""CLADO pairwise estimator: Ω against losses measured by hand, the activation cache against full
forwards, pair restriction, checkpoint/resume, executors, and the prediction on the digits CNN."""

import itertools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from mpqopt.adapters.torch.estimators.pairwise import clado_matrix, estimate_pairwise  # noqa: E402
from mpqopt.adapters.torch.perturb import WeightCache, calibrate_activations, quantized  # noqa: E402
from mpqopt.adapters.torch.data import Evaluator  # noqa: E402
from mpqopt.adapters.torch.stages import stage_model  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out


# ------------------------------------------------------------------------------ models and helpers
def seq_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 3),
    ).eval()


class Residual(nn.Module):
    """A skip connection across two layers and an in-place write into a value cached at a cut."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(6, 8)
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        y = self.b(torch.relu(self.a(h)))
        h += y  # writes into h, which the cut at "a" and "b" keeps
        return self.head(h.relu_())


class Branchy(nn.Module):
    """Data-dependent control flow: fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = self.a(x)
        if h.sum() > 0:
            h = torch.relu(h)
        return self.b(h)


class BatchMixer(nn.Module):
    """Subtracts the batch mean: stacking perturbations along the batch changes its answer."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = self.b(torch.relu(self.a(x)))
        return self.c(h - h.mean(dim=0, keepdim=True))


def batches(shape, n=2, rows=8, classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(rows, *shape, generator=g), torch.randint(0, classes, (rows,), generator=g)) for _ in range(n)]


def hand_loss(model, data, choices, act_ranges=None):
    """Mean cross-entropy over the batches with ``choices`` quantized (no mpqopt evaluator)."""
    with torch.no_grad(), quantized(model, choices, act_ranges=act_ranges):
        return float(np.mean([float(F.cross_entropy(model(x), y)) for x, y in data]))


def flat(s, layer, option):
    return s.layers.index(layer) * len(s.options) + option


# ------------------------------------------------------------------------------ Ω from losses measured by hand
def test_omega_and_values_equal_losses_measured_by_hand():
    model, data = seq_model(), batches((1, 4, 4))
    s = estimate_pairwise(model, data, [2, 3, 32], progress=False)
    omega = clado_matrix(s)
    base = hand_loss(model, data, {})
    interactions = []
    for (la, lb), (oa, ob) in zip(itertools.combinations(s.layers, 2), itertools.cycle([(0, 1), (1, 1), (0, 0)])):
        both = hand_loss(model, data, {la: oa + 2, lb: ob + 2})  # options [2, 3]: bits = index + 2
        alone_a, alone_b = hand_loss(model, data, {la: oa + 2}), hand_loss(model, data, {lb: ob + 2})
        expected = both - alone_a - alone_b + base
        r, c = flat(s, la, oa), flat(s, lb, ob)
        assert omega[r, c] == pytest.approx(expected, abs=2e-6) and omega[c, r] == pytest.approx(expected, abs=2e-6)
        assert s.values[s.layers.index(la), oa] == pytest.approx(alone_a - base, abs=2e-6)
        assert omega[r, r] == pytest.approx(2 * (alone_a - base), abs=4e-6)
        interactions.append(abs(expected))
    assert len(interactions) == 6 and max(interactions) > 5e-4  # the interactions checked are not all ~0
    # the FP option is exactly the identity: no change, no interaction
    assert np.all(s.values[:, 2] == 0) and np.all(s.pairwise[2::3] == 0) and np.all(s.pairwise[:, 2::3] == 0)
    assert s.std is not None and s.std.shape == (4, 3)


def test_problem_objective_is_clados_prediction_exact_on_pairs():
    """With two layers quantized and the rest FP, CLADO's prediction is exact: the Problem's objective
    must equal the measured L(q_i, q_j) - L(0) for every pair of layers and options."""
    model, data = seq_model(seed=3), batches((1, 4, 4), seed=4)
    s = estimate_pairwise(model, data, [2, 4, 32], progress=False)
    problem = s.problem()
    base = hand_loss(model, data, {})
    L = len(s.layers)
    for i, j in itertools.combinations(range(L), 2):
        for o, p in itertools.product(range(2), repeat=2):
            x = np.full(L, 2)  # everyone FP32 ...
            x[i], x[j] = o, p  # ... but these two
            measured = hand_loss(model, data, {s.layers[i]: s.options[o], s.layers[j]: s.options[p]}) - base
            assert problem.evaluate(x).objective == pytest.approx(measured, abs=3e-6)
    # and a single layer: the separable entry
    x = np.full(L, 2)
    x[1] = 0
    assert problem.evaluate(x).objective == pytest.approx(hand_loss(model, data, {s.layers[1]: 2}) - base, abs=2e-6)


def test_activation_options_are_measured_with_their_input_quantizers():
    model, data = seq_model(seed=5), batches((1, 4, 4), seed=6)
    s = estimate_pairwise(model, data, ["W4A4", "W8A8"], progress=False)
    ranges = calibrate_activations(model, s.layers, Evaluator(model, data))
    base = hand_loss(model, data, {})
    for la, lb in [("0", "2"), ("2", "7")]:
        both = hand_loss(model, data, {la: "W4A4", lb: "W4A4"}, ranges)
        a, b = hand_loss(model, data, {la: "W4A4"}, ranges), hand_loss(model, data, {lb: "W4A4"}, ranges)
        assert clado_matrix(s)[flat(s, la, 0), flat(s, lb, 0)] == pytest.approx(both - a - b + base, abs=2e-6)


# ------------------------------------------------------------------------------ the activation cache
@pytest.mark.parametrize("make, shape, mode", [(seq_model, (1, 4, 4), "fx"), (seq_model, (1, 4, 4), "sequential"), (Residual, (6,), "fx")])
def test_cached_suffix_forwards_give_the_losses_of_full_forwards(make, shape, mode):
    model, data = make().eval(), batches(shape)
    full = estimate_pairwise(model, data, [2, 3, 4], mode="full", progress=False)
    for stack in (1, 3):
        cached = estimate_pairwise(model, data, [2, 3, 4], mode=mode, batch_perturbations=stack, progress=False)
        assert cached.meta["mode"] == mode and full.meta["mode"] == "full"
        assert cached.meta["batch_perturbations"] == stack
        np.testing.assert_allclose(cached.values, full.values, rtol=0, atol=1e-6)
        np.testing.assert_allclose(cached.pairwise, full.pairwise, rtol=0, atol=1e-6)
        assert cached.meta["step_fraction"] < full.meta["step_fraction"] == 1.0
    assert np.abs(full.pairwise).max() > 1e-4


def test_staged_model_resumes_from_every_cut_and_keeps_its_cache_intact():
    model = Residual().eval()
    x = torch.randn(5, 6)
    staged = stage_model(model, ["stem", "a", "b", "head"], x)
    assert staged.mode == "fx"
    with torch.no_grad():
        expected = model(x)
        for name in ("stem", "a", "b", "head"):
            t = staged.cut[name]
            env = staged.advance(staged.start(x), 0, t)
            before = {k: v.clone() for k, v in env.items()}
            for _ in range(2):  # a second run from the same cache: the in-place `h +=` must not leak into it
                assert torch.allclose(staged.finish(env, t), expected, atol=1e-6)
            assert all(torch.equal(env[k], before[k]) for k in env)


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_untraceable_model_replays_module_calls_or_runs_whole_and_says_so(mode):
    model, data = Branchy().eval(), batches((6,))
    s = estimate_pairwise(model, data, [2, 4], mode=mode, progress=False)
    assert s.meta["mode"] == ("memo" if mode == "auto" else "full")
    assert mode == "full" or ("fx" in s.meta["mode_reason"] and s.meta["step_fraction"] < 1)
    base = hand_loss(model, data, {})
    expected = hand_loss(model, data, {"a": 2, "b": 4}) - hand_loss(model, data, {"a": 2}) - hand_loss(model, data, {"b": 4}) + base
    assert clado_matrix(s)[0, 3] == pytest.approx(expected, abs=2e-6)
    with pytest.raises(ProblemError, match="fx"):
        estimate_pairwise(model, data, [2, 4], mode="fx", progress=False)
    with pytest.raises(ProblemError, match="Sequential"):
        estimate_pairwise(model, data, [2, 4], mode="sequential", progress=False)


def test_stacking_is_dropped_when_it_changes_the_answer():
    model, data = BatchMixer().eval(), batches((6,))
    one = estimate_pairwise(model, data, [2, 3, 4], batch_perturbations=1, progress=False)
    stacked = estimate_pairwise(model, data, [2, 3, 4], batch_perturbations=3, progress=False)
    assert stacked.meta["batch_perturbations"] == 1 and "changed the loss" in stacked.meta["batching_note"]
    np.testing.assert_allclose(stacked.pairwise, one.pairwise, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------ restricting pairs
def test_window_and_pairs_zero_exactly_the_excluded_pairs():
    model, data = seq_model(), batches((1, 4, 4))
    opts = [2, 3]
    full = estimate_pairwise(model, data, opts, progress=False)
    L, K = 4, 2
    layer_of = np.repeat(np.arange(L), K)
    dist = np.abs(layer_of[:, None] - layer_of[None, :])
    for window in (0, 1, 2):
        w = estimate_pairwise(model, data, opts, window=window, progress=False)
        keep = (dist <= window) & (dist > 0)
        assert np.all(w.pairwise[~keep] == 0)
        np.testing.assert_array_equal(w.pairwise[keep], full.pairwise[keep])
        assert np.all(full.pairwise[keep] != 0)
        np.testing.assert_array_equal(w.values, full.values)
        assert w.meta["layer_pairs"] == sum(L - d for d in range(1, window + 1))
    chosen = {("0", "7"), ("5", "2")}
    for pairs in (chosen, lambda a, b: {a, b} in ({"0", "7"}, {"2", "5"})):
        p = estimate_pairwise(model, data, opts, pairs=pairs, progress=False)
        keep = np.zeros((L * K, L * K), dtype=bool)
        for a, b in chosen:
            ia, ib = p.layers.index(a), p.layers.index(b)
            keep[(layer_of == ia)[:, None] & (layer_of == ib)[None, :]] = True
        keep |= keep.T
        assert np.all(p.pairwise[~keep] == 0)
        np.testing.assert_array_equal(p.pairwise[keep], full.pairwise[keep])
    with pytest.raises(ProblemError, match="unknown layer 'nope'"):
        estimate_pairwise(model, data, opts, pairs=[("0", "nope")], progress=False)
    with pytest.raises(ProblemError, match="window"):
        estimate_pairwise(model, data, opts, window=-1, progress=False)


# ------------------------------------------------------------------------------ checkpoint / resume
class Interrupted(Exception):
    pass


def counting_ce(limit):
    """Cross-entropy that raises after ``limit`` calls (an interrupted run); same name every time."""
    calls = {"n": 0}

    def ce_counting(out, ref, target):
        calls["n"] += 1
        if limit is not None and calls["n"] > limit:
            raise Interrupted
        return F.cross_entropy(out, target)

    return ce_counting, calls


def test_checkpoint_resume_gives_the_same_matrix_and_skips_finished_work(tmp_path):
    model, data = seq_model(), batches((1, 4, 4))
    loss, calls = counting_ce(None)
    straight = estimate_pairwise(model, data, [2, 3], loss=loss, progress=False)
    total_calls = calls["n"]

    path = tmp_path / "clado.npz"
    loss, _ = counting_ce(total_calls // 2)
    with pytest.raises(Interrupted):
        estimate_pairwise(model, data, [2, 3], loss=loss, checkpoint=path, checkpoint_every=0, progress=False)
    with np.load(path, allow_pickle=False) as z:
        done = z["done"].sum()
    assert 0 < done < 8

    loss, calls = counting_ce(None)
    resumed = estimate_pairwise(model, data, [2, 3], loss=loss, checkpoint=path, progress=False)
    assert resumed.meta["resumed_entries"] > 0 and calls["n"] < total_calls
    np.testing.assert_array_equal(resumed.pairwise, straight.pairwise)
    np.testing.assert_array_equal(resumed.values, straight.values)
    np.testing.assert_array_equal(resumed.std, straight.std)

    # a finished checkpoint: nothing left to measure
    again = estimate_pairwise(model, data, [2, 3], loss=loss, checkpoint=path, progress=False)
    assert again.meta["evaluations"] == 0
    np.testing.assert_array_equal(again.pairwise, straight.pairwise)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    model, data = seq_model(), batches((1, 4, 4))
    path = tmp_path / "clado.npz"
    estimate_pairwise(model, data, [2, 3], checkpoint=path, progress=False)
    with pytest.raises(ProblemError, match=r"different run: options"):
        estimate_pairwise(model, data, [2, 4], checkpoint=path, progress=False)
    with pytest.raises(ProblemError, match=r"different run: loss"):
        estimate_pairwise(model, data, [2, 3], loss="kl", checkpoint=path, progress=False)
    with pytest.raises(ProblemError, match=r"batches .*samples"):
        estimate_pairwise(model, data[:1], [2, 3], checkpoint=path, progress=False)
    with pytest.raises(ProblemError, match=r"different run: pairs"):
        estimate_pairwise(model, data, [2, 3], window=1, checkpoint=path, progress=False)
    with pytest.raises(ProblemError, match="other weights or data"):
        estimate_pairwise(seq_model(seed=9), data, [2, 3], checkpoint=path, progress=False)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ProblemError, match="cannot be read"):
        estimate_pairwise(model, data, [2, 3], checkpoint=bad, progress=False)


# ------------------------------------------------------------------------------ executors
def test_process_and_thread_pools_give_the_serial_matrix():
    model, data = seq_model(), batches((1, 4, 4))
    serial = estimate_pairwise(model, data, [2, 3, 4], progress=False)
    pools = [ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(m)) for m in ("spawn", "fork")] + [ThreadPoolExecutor(2)]
    for pool in pools:
        with pool:
            par = estimate_pairwise(model, data, [2, 3, 4], executor=pool, chunks=5, progress=False)
        np.testing.assert_allclose(par.pairwise, serial.pairwise, rtol=0, atol=1e-9)
        np.testing.assert_allclose(par.values, serial.values, rtol=0, atol=1e-9)
        assert par.meta["chunks"] == 5 and par.meta["evaluations"] == serial.meta["evaluations"]
    with pytest.raises(ProblemError, match="loss cannot be sent"):
        with ProcessPoolExecutor(1) as pool:
            estimate_pairwise(model, data, [2, 3], loss=lambda o, r, t: F.cross_entropy(o, t), executor=pool, progress=False)
    with pytest.raises(ProblemError, match="executor must be"):
        estimate_pairwise(model, data, [2, 3], executor=object(), progress=False)


def test_dask_local_cluster_gives_the_serial_matrix():
    distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] is not installed")
    model, data = seq_model(), batches((1, 4, 4))
    serial = estimate_pairwise(model, data, [2, 3, 4], progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        via_client = estimate_pairwise(model, data, [2, 3, 4], executor=client, progress=False)
        via_executor = estimate_pairwise(model, data, [2, 3, 4], executor=client.get_executor(), chunks=3, progress=False)
    for par in (via_client, via_executor):
        np.testing.assert_allclose(par.pairwise, serial.pairwise, rtol=0, atol=1e-9)
        np.testing.assert_allclose(par.values, serial.values, rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------ the digits CNN
def test_pairwise_prediction_beats_the_separable_one_on_the_digits_cnn(digits_bed):
    model, data = digits_bed.model, digits_bed.train[:5]
    s = estimate_pairwise(model, data, [2, 3, 4, 8], progress=False)
    assert s.meta["mode"] == "fx" and s.meta["step_fraction"] < 0.4  # the cache ran under 40% of the steps
    assert s.meta["entries"] == 5 * 4 + 10 * 16
    problem = s.problem()
    cache = WeightCache(model)

    def loss():
        with torch.no_grad():
            return float(np.mean([float(F.cross_entropy(model(x), y)) for x, y in data]))

    base = loss()
    rng = np.random.default_rng(0)
    err_pair, err_sep = [], []
    for _ in range(40):
        x = rng.integers(0, 4, size=5)
        with quantized(model, {n: s.options[k] for n, k in zip(s.layers, x)}, cache=cache):
            measured = loss() - base
        err_pair.append(problem.evaluate(x).objective - measured)
        err_sep.append(s.values[np.arange(5), x].sum() - measured)
    mae_pair, mae_sep = np.abs(err_pair).mean(), np.abs(err_sep).mean()
    print(f"digits CNN, 40 random assignments: MAE pairwise {mae_pair:.4f}, separable {mae_sep:.4f}")
    assert mae_pair < 0.5 * mae_sep
