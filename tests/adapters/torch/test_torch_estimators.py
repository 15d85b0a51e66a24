"""The four single-layer sensitivity estimators of the torch adapter against independent computations.

delta_loss against a loss difference computed by hand; Hutchinson traces against the exact Hessian
(torch.autograd.functional.hessian); the Fisher diagonal against a plain loop of per-sample
gradients; the Taylor/Fisher prediction against measured loss changes at 8 bits; entropy against a
histogram computed by hand; and, on the digits CNN, each estimator's W2 ranking of the layers
against delta_loss's.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from mpqopt.adapters.torch.estimators.delta_loss import estimate_delta_loss  # noqa: E402
from mpqopt.adapters.torch.estimators.entropy import code_entropy, estimate_entropy, grid_codes  # noqa: E402
from mpqopt.adapters.torch.estimators.fisher import estimate_fisher, fisher_diagonal  # noqa: E402
from mpqopt.adapters.torch.estimators.base import prepare  # noqa: E402
from mpqopt.adapters.torch.estimators.hessian import estimate_hessian_trace  # noqa: E402
from mpqopt.adapters.torch.quantizer import WeightScheme, quantize_activation, quantize_weight  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out


def mlp(seed: int = 0, widths=(3, 5, 4)) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(a, b)] + ([nn.Tanh()] if i < len(widths) - 2 else [])
    return nn.Sequential(*layers).eval()


def labelled(n_batches: int, size: int, d_in: int = 3, classes: int = 4, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, d_in, generator=gen), torch.randint(0, classes, (size,), generator=gen)) for _ in range(n_batches)]


class TinyConv(nn.Sequential):
    def __init__(self):
        torch.manual_seed(3)
        super().__init__(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 3 * 3, 3))


# --- delta_loss ----------------------------------------------------------------------------------


def test_delta_loss_is_the_hand_computed_loss_difference():
    model, data = mlp(), labelled(3, 16)
    s = estimate_delta_loss(model, data, [2, 3, 32])
    W0, b0, W1, b1 = (p.detach().clone() for p in model.parameters())

    def loss(w0, w1, x, y):
        return float(F.cross_entropy(F.linear(torch.tanh(F.linear(x, w0, b0)), w1, b1), y))

    for k, bits in enumerate((2, 3)):
        per_layer = [(quantize_weight(W0, bits), W1), (W0, quantize_weight(W1, bits))]
        for i, (w0, w1) in enumerate(per_layer):
            diffs = [loss(w0, w1, x, y) - loss(W0, W1, x, y) for x, y in data]
            assert s.values[i, k] == pytest.approx(np.mean(diffs), rel=1e-5, abs=1e-7)
            assert s.std[i, k] == pytest.approx(np.std(diffs, ddof=1) / math.sqrt(3), rel=1e-4, abs=1e-8)
    assert np.all(s.values[:, 2] == 0) and np.all(s.std[:, 2] == 0)  # FP32 costs no pass
    assert s.meta["forward_passes"] == 3 + 2 * 2 * 3 and s.meta["backward_passes"] == 0
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), (W0, b0, W1, b1)))  # restored


def test_delta_loss_quantizes_activations_of_wa_options():
    model, data = mlp(), labelled(2, 16)
    s = estimate_delta_loss(model, data, ["W8A2", "W8"])
    W0, b0, W1, b1 = (p.detach() for p in model.parameters())
    # the second layer's input range over all batches, then its 2-bit fake quantization
    hidden = [torch.tanh(F.linear(x, W0, b0)) for x, _ in data]
    lo, hi = min(float(h.min()) for h in hidden), max(float(h.max()) for h in hidden)
    diffs = []
    for h, (_, y) in zip(hidden, data):
        q = F.linear(quantize_activation(h, 2, lo, hi), quantize_weight(W1, 8), b1)
        diffs.append(float(F.cross_entropy(q, y)) - float(F.cross_entropy(F.linear(h, W1, b1), y)))
    assert s.values[1, 0] == pytest.approx(np.mean(diffs), rel=1e-5)
    assert s.values[1, 0] > 10 * abs(s.values[1, 1])  # the 2-bit input is what hurts
    assert s.meta["forward_passes"] == 2 + 2 + 2 * 2 * 2  # references, calibration, 4 perturbations


def test_delta_loss_unlabelled_data_uses_kl_to_fp32():
    model, data = mlp(), labelled(1, 32)
    s = estimate_delta_loss(model, [x for x, _ in data], [2])
    x = data[0][0]
    with torch.no_grad():
        ref = F.log_softmax(model(x), -1)
        q = model[2].weight.clone()
        model[2].weight.copy_(quantize_weight(q, 2))
        out = F.log_softmax(model(x), -1)
        model[2].weight.copy_(q)
    kl = float((ref.exp() * (ref - out)).sum(-1).mean())
    assert s.meta["loss"] == "kl" and s.values[1, 0] == pytest.approx(kl, rel=1e-4)
    assert s.std is None  # one batch: no spread to report


# --- hessian_trace -------------------------------------------------------------------------------


def exact_traces(model: nn.Module, names, data) -> np.ndarray:
    """Per-layer trace of the Hessian of the mean-over-batches CE, by torch.autograd.functional.hessian."""
    mods = dict(model.named_modules())
    out = []
    for name in names:
        w0 = mods[name].weight.detach()

        def f(flat, x, y):
            return F.cross_entropy(torch.func.functional_call(model, {f"{name}.weight": flat.reshape(w0.shape)}, (x,)), y)

        out.append(np.mean([float(torch.autograd.functional.hessian(lambda v: f(v, x, y), w0.reshape(-1)).diagonal().sum()) for x, y in data]))
    return np.array(out)


def conv_data(batches: int = 1):
    gen = torch.Generator().manual_seed(2)
    return [(torch.randn(16, 1, 5, 5, generator=gen), torch.randint(0, 3, (16,), generator=gen)) for _ in range(batches)]


@pytest.mark.parametrize("probes", [1, 8])
@pytest.mark.parametrize("make, data", [(mlp, labelled(1, 24)), (mlp, labelled(2, 24)), (TinyConv, conv_data())])
def test_hutchinson_converges_to_the_exact_trace(make, data, probes):
    model = make()
    mods = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    exact = exact_traces(model, [n for n, _ in mods], data)
    with pytest.warns(UserWarning, match=r"stopped at max_iter=600 samples without meeting tol=0; relative standard errors of the traces are up to"):
        s = estimate_hessian_trace(model, data, [2, 4], tol=0.0, max_iter=600, probes_per_step=probes)  # tol 0 never converges: it says so
    est = np.array(s.meta["traces"])
    assert s.meta["iterations"] == 600 and not s.meta["converged"]
    assert s.meta["hvp"] == "batched" and s.meta["steps"] == s.meta["hvp_calls"] == 600 // probes
    assert np.allclose(est, exact, rtol=0.15), (est, exact)
    # the table is HAWQ's trace / n * ||Q(W) - W||², its std the Hutchinson standard error scaled alike
    n = np.array([m.weight.numel() for _, m in mods])
    qerr = np.array([[float((quantize_weight(m.weight, b) - m.weight.detach()).pow(2).sum()) for b in (2, 4)] for _, m in mods])
    assert np.allclose(s.values, (est / n)[:, None] * qerr, rtol=1e-6)
    se = s.std[:, 0] / qerr[:, 0] * n
    assert np.all(se > 0) and np.all(np.abs(est - exact) < 4 * se)


def test_hutchinson_stops_at_the_tolerance():
    model, data = mlp(), labelled(1, 24)
    exact = exact_traces(model, ["0", "2"], data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: no warning
        s = estimate_hessian_trace(model, data, [4], tol=2e-3, max_iter=5000)
    steps = s.meta["steps"]
    assert s.meta["converged"] and 10 <= s.meta["iterations"] < 5000 and steps == math.ceil(s.meta["iterations"] / 8)  # 8 probes a step
    assert s.meta["forward_passes"] == 1 + steps and s.meta["hvp_calls"] == steps and s.meta["backward_passes"] == 2 * steps
    assert np.allclose(s.meta["traces"], exact, rtol=0.3)


def hutchinson_runs(model, data, **kw):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="hessian_trace: stopped at max_iter")  # tol=0: a fixed number of probes
        return estimate_hessian_trace(model, data, [2, 4], tol=0.0, **kw)


# float32 products summed in another order: measured up to 4e-8 relative on these models
BATCHED_RTOL = 1e-6


@pytest.mark.parametrize("make, data", [(mlp, labelled(3, 24)), (TinyConv, conv_data(2))])
def test_batched_probes_give_the_traces_of_one_product_per_probe(make, data):
    # 50 probes, 8 a step: 6 full steps, then 2; the same seed draws the same probes both ways
    batched = hutchinson_runs(make(), data, max_iter=50, probes_per_step=8, seed=3)
    looped = hutchinson_runs(make(), data, max_iter=50, probes_per_step=8, seed=3, hvp="loop")
    assert (batched.meta["hvp"], batched.meta["hvp_calls"], batched.meta["steps"]) == ("batched", 7, 7)
    assert (looped.meta["hvp"], looped.meta["hvp_calls"], looped.meta["steps"]) == ("loop", 50, 7)
    assert np.allclose(batched.meta["traces"], looped.meta["traces"], rtol=BATCHED_RTOL, atol=0)
    assert np.allclose(batched.values, looped.values, rtol=BATCHED_RTOL) and np.allclose(batched.std, looped.std, rtol=1e-5)
    # the probe sequence does not depend on probes_per_step: on one batch, 8 probes a step in one
    # product each are the old estimator (one loss, gradient and product per probe)
    one = [data[0]]
    single = hutchinson_runs(make(), one, max_iter=50, probes_per_step=1, seed=3, hvp="loop")
    assert single.meta["steps"] == single.meta["hvp_calls"] == 50
    assert np.allclose(hutchinson_runs(make(), one, max_iter=50, seed=3).meta["traces"], single.meta["traces"], rtol=BATCHED_RTOL, atol=0)
    other_seed = hutchinson_runs(make(), one, max_iter=50, seed=4)
    assert not np.allclose(other_seed.meta["traces"], single.meta["traces"], rtol=1e-3)


@pytest.mark.parametrize("batches, max_iter, probes", [(1, 30, 8), (4, 12, 3), (4, 40, 8), (20, 30, 1)])
def test_default_probes_per_step_reach_every_batch(batches, max_iter, probes):
    # 8 probes a step, fewer when max_iter probes at 8 a step would leave batches unseen
    s = hutchinson_runs(mlp(), labelled(batches, 4), max_iter=max_iter)
    assert s.meta["probes_per_step"] == probes and s.meta["steps"] == -(-max_iter // probes) >= min(batches, max_iter)
    assert s.meta["iterations"] == max_iter and s.meta["hvp_calls"] == s.meta["steps"]


class _TanhGrad(torch.autograd.Function):
    """tanh's derivative ``g * (1 - y²)`` whose own backward reads a value (``.item()``): autograd
    cannot vmap it over a batch of probes."""

    @staticmethod
    def forward(ctx, y, g):
        ctx.save_for_backward(y, g)
        return g * (1 - y * y)

    @staticmethod
    def backward(ctx, gg):
        y, g = ctx.saved_tensors
        assert math.isfinite(float(gg.abs().sum()))
        return -2 * y * g * gg, gg * (1 - y * y)


class _Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        return _TanhGrad.apply(ctx.saved_tensors[0], g)


class UnbatchableTanh(nn.Module):
    """``mlp()`` with a tanh whose Hessian-vector product works one probe at a time only."""

    def __init__(self):
        super().__init__()
        self.body = mlp()

    def forward(self, x):
        return self.body[2](_Tanh.apply(self.body[0](x)))


def test_hessian_falls_back_to_one_product_per_probe_when_batching_fails():
    data = labelled(2, 24)
    fallback = hutchinson_runs(UnbatchableTanh(), data, max_iter=40, seed=1)
    plain = hutchinson_runs(mlp(), data, max_iter=40, seed=1)
    assert fallback.meta["hvp"] == "loop" and "item" in fallback.meta["hvp_fallback"]
    assert plain.meta["hvp"] == "batched" and plain.meta["hvp_fallback"] is None
    # detected once: the first step tried the batched product, then every probe had its own
    assert fallback.meta["hvp_calls"] == 40 and fallback.meta["backward_passes"] == 5 + 40
    assert np.allclose(fallback.meta["traces"], plain.meta["traces"], rtol=BATCHED_RTOL, atol=0)
    with pytest.raises(ProblemError, match="hvp='loop'"):
        hutchinson_runs(UnbatchableTanh(), data, max_iter=8, hvp="batched")
    for bad in ({"probes_per_step": 0}, {"hvp": "vmap"}):
        with pytest.raises(ProblemError, match=f"hessian_trace: {next(iter(bad))}"):
            hutchinson_runs(mlp(), data, max_iter=8, **bad)


def test_hessian_of_an_unused_layer_is_zero():
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.unused = mlp(), nn.Linear(4, 4)

        def forward(self, x):
            return self.body(x)

    s = estimate_hessian_trace(Head(), labelled(1, 8), [2], max_iter=5)
    assert s.layers[-1] == "unused" and s.values[-1, 0] == 0 and s.std[-1, 0] == 0 and s.values[0, 0] > 0


# --- fisher --------------------------------------------------------------------------------------


def test_fisher_diagonal_is_the_mean_of_squared_per_sample_gradients():
    model, data = TinyConv(), None
    gen = torch.Generator().manual_seed(4)
    data = [(torch.randn(7, 1, 5, 5, generator=gen), torch.randint(0, 3, (7,), generator=gen)) for _ in range(2)]
    setup = prepare(model, data, [4])
    weights = [model[0].weight, model[3].weight]
    for mode in ("vmap", "loop"):
        stats = fisher_diagonal(setup, per_sample=mode, chunk=3)
        assert stats.mode == mode and stats.samples == 14
        for b, (x, y) in enumerate(data):
            g2 = [torch.zeros_like(w) for w in weights]
            g1 = [torch.zeros_like(w) for w in weights]
            for j in range(len(y)):
                grads = torch.autograd.grad(F.cross_entropy(model(x[j : j + 1]), y[j : j + 1]), weights)
                for i, g in enumerate(grads):
                    g2[i] += g.pow(2) / len(y)
                    g1[i] += g / len(y)
            for i in range(2):
                assert torch.allclose(stats.diag[b][i].float(), g2[i], rtol=1e-4, atol=1e-9)
                assert torch.allclose(stats.grad[b][i].float(), g1[i], rtol=1e-4, atol=1e-8)


def test_fisher_table_is_half_the_fisher_weighted_quantization_error():
    model, data = mlp(), labelled(3, 10)
    s = estimate_fisher(model, data, [2, 8], first_order=True, clip_negative=False)  # the raw Taylor values
    setup = prepare(model, data, [2, 8])
    stats = fisher_diagonal(setup)
    for i, m in enumerate((model[0], model[2])):
        for k, bits in enumerate((2, 8)):
            dw = (quantize_weight(m.weight, bits) - m.weight.detach()).double()
            per = [0.5 * float((stats.diag[b][i] * dw**2).sum()) + float((stats.grad[b][i] * dw).sum()) for b in range(3)]
            assert s.values[i, k] == pytest.approx(np.mean(per), rel=1e-9)
            assert s.std[i, k] == pytest.approx(np.std(per, ddof=1) / math.sqrt(3), rel=1e-6)
    assert s.meta["per_sample"] == "vmap" and s.meta["forward_passes"] == 3 + 3 and s.meta["samples"] == 30


def trained_mlp() -> tuple[nn.Module, list]:
    model = mlp(0, (6, 16, 16, 4))
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2000, 6, generator=gen)
    y = (x[:, :2].sum(1) > 0).long() + 2 * (x[:, 2] > 0).long()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), [(x[i : i + 500], y[i : i + 500]) for i in range(0, 2000, 500)]


def test_taylor_predictions_match_measured_changes_at_8_bits():
    model, data = trained_mlp()
    inputs = [x for x, _ in data]
    x = torch.cat(inputs)
    # KL to FP32 has zero gradient there; its Hessian is the Gauss-Newton matrix G, whose expectation
    # the Fisher of labels sampled from the FP32 softmax estimates
    kl, fk = estimate_delta_loss(model, inputs, [8]), estimate_fisher(model, inputs, [8])
    assert fk.meta["labels"] == "sampled"
    for i, name in enumerate(kl.layers):
        w = dict(model.named_modules())[name].weight.detach()
        dw = quantize_weight(w, 8) - w

        def log_probs(wv, xs):
            return torch.log_softmax(torch.func.functional_call(model, {f"{name}.weight": wv}, (xs,)), -1)

        with torch.no_grad():
            p = log_probs(w, x).exp()
            # per-sample Jacobians of the log-probabilities; G = E_x[Jᵀ (diag p - p pᵀ) J] = E_x,c~p[∇log p_c ∇log p_cᵀ]
            jac = torch.func.vmap(torch.func.jacrev(lambda wv, xi: log_probs(wv, xi[None])[0]), in_dims=(None, 0))(w, x)
            jv = (jac * dw).flatten(2).sum(-1)  # J ΔW per sample and class
            full = 0.5 * float(((p * jv**2).sum(-1) - (p * jv).sum(-1) ** 2).mean())  # ½ ΔWᵀ G ΔW
            diag = 0.5 * float((p[:, :, None, None] * jac**2).sum(1).mean(0).mul(dw**2).sum())  # ½ Σ G_ii ΔW_i²
        assert kl.values[i, 0] == pytest.approx(full, rel=0.03)  # second order is exact enough at 8 bits
        assert fk.values[i, 0] == pytest.approx(diag, rel=0.25)  # the sampled Fisher finds the diagonal term
        # dropping G's off-diagonal terms is MPQCO's approximation: right in expectation over rounding
        # errors, off by a factor for one rounding pattern (measured x1.75, x4.2, x1.06 on these layers)
        assert full / 5 < diag < full * 5
    assert fk.values[0, 0] == pytest.approx(kl.values[0, 0], rel=1.0)  # the layer that dominates
    # CE on data the model was not trained on: the first-order term dominates and is captured
    fresh = labelled(4, 500, d_in=6, seed=9)
    fresh = [(x, (x[:, :2].sum(1) > 0).long() + 2 * (x[:, 2] > 0).long()) for x, _ in fresh]
    # (raw Taylor values: a measured change can be a real decrease here, which the default clips to 0)
    ce, ft = estimate_delta_loss(model, fresh, [8]), estimate_fisher(model, fresh, [8], first_order=True, clip_negative=False)
    assert np.allclose(ft.values, ce.values, rtol=0.3, atol=1e-6), (ft.values, ce.values)


def test_first_order_fisher_never_predicts_a_loss_decrease():
    """g.dW can make a Taylor value negative; the solver would spend it. Clipped to 0, counted, warned."""
    model, data = mlp(), labelled(3, 10)
    raw = estimate_fisher(model, data, [2, 3, 4, 8], first_order=True, clip_negative=False)
    negative = raw.values < 0
    assert negative.any()  # an untrained model: the first-order term dominates and has both signs
    with pytest.warns(UserWarning, match=f"{int(negative.sum())} of {raw.values.size} entries predicted a loss decrease"):
        clipped = estimate_fisher(model, data, [2, 3, 4, 8], first_order=True)
    assert (clipped.values >= 0).all() and clipped.meta["clipped_negative"] == int(negative.sum())
    assert np.array_equal(clipped.values, np.maximum(raw.values, 0.0))


class Branchy(nn.Module):
    """Python control flow on a tensor's value: torch.func.vmap cannot trace it."""

    def __init__(self):
        super().__init__()
        self.body = mlp()

    def forward(self, x):
        y = self.body(x)
        return y if float(y.detach().abs().sum()) >= 0 else -y


def test_fisher_falls_back_to_a_loop_when_vmap_fails():
    data = labelled(2, 6)
    loop = estimate_fisher(Branchy(), data, [2, 4])
    plain = estimate_fisher(mlp(), data, [2, 4], per_sample="vmap")
    assert loop.meta["per_sample"] == "loop" and plain.meta["per_sample"] == "vmap"
    assert np.allclose(loop.values, plain.values, rtol=1e-5)
    assert loop.meta["forward_passes"] == 2 + 12 and loop.meta["backward_passes"] == 12
    with pytest.raises(ProblemError, match="per_sample='loop'"):
        estimate_fisher(Branchy(), data, [2], per_sample="vmap")


def test_fisher_refuses_distance_losses():
    model, data = mlp(), labelled(1, 8)
    with pytest.raises(ProblemError, match="hessian_trace"):
        estimate_fisher(model, [x for x, _ in data], [4], loss="cosine")
    with pytest.raises(ProblemError, match="labels='sampled'"):
        estimate_fisher(model, [x for x, _ in data], [4], labels="data")


# --- entropy -------------------------------------------------------------------------------------


def hand_entropy(w: torch.Tensor, bits: int) -> float:
    """Symmetric min/max per-row quantization codes, pooled, histogram entropy in bits."""
    qmax = 2 ** (bits - 1) - 1
    counts: dict[int, int] = {}
    for row in w.reshape(w.shape[0], -1).tolist():
        scale = max(abs(v) for v in row) / qmax
        for v in row:
            c = int(max(-qmax - 1, min(qmax, round(v / scale))))
            counts[c] = counts.get(c, 0) + 1
    n = sum(counts.values())
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def test_entropy_is_the_hand_computed_histogram_entropy():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(2, 5, 3), nn.Flatten(), nn.Linear(20, 3))
    s = estimate_entropy(model, [2, 3, 8, 32])
    assert s.meta["reference_bits"] == 16 and s.std is None and s.meta["forward_passes"] == 0
    for i, m in enumerate((model[0], model[2])):
        w = m.weight.detach()
        h = {b: hand_entropy(w, b) for b in (2, 3, 8, 16)}
        assert s.meta["entropies"][i] == pytest.approx([h[2], h[3], h[8], h[16]], abs=1e-9)
        assert s.values[i, :3] == pytest.approx([w.numel() * (h[16] - h[b]) for b in (2, 3, 8)], rel=1e-9)
        assert s.values[i, 3] == 0
    per = estimate_entropy(model, [2, 8], per_weight=True)
    assert per.meta["reference_bits"] == 8
    assert per.values[1, 0] == pytest.approx(hand_entropy(model[2].weight.detach(), 8) - hand_entropy(model[2].weight.detach(), 2))


def test_grid_codes_recover_every_scheme():
    torch.manual_seed(7)
    w = torch.randn(6, 40)
    for scheme in (WeightScheme(), WeightScheme(symmetric=False), WeightScheme(scale="mse")):
        for bits in (2, 4, 8, 16):
            q = quantize_weight(w, bits, scheme)
            codes = grid_codes(q)
            assert all(len(set(r.tolist())) == len(set(c.tolist())) for r, c in zip(q, codes))  # one code per level
            span = codes.max(dim=1).values - codes.min(dim=1).values
            assert int(span.max()) <= 2**bits - 1
            step = q.double().abs().max(dim=1, keepdim=True).values / codes.abs().max(dim=1, keepdim=True).values
            assert torch.allclose(codes.double() * step, q.double(), atol=1e-6)
    assert code_entropy(torch.tensor([3, 3, 3, 3])) == 0.0


# --- standard errors and errors ------------------------------------------------------------------


@pytest.mark.parametrize("estimate", [estimate_delta_loss, estimate_fisher])
def test_standard_errors_across_batches(estimate):
    model = mlp()
    many = estimate(model, labelled(4, 8), [2, 4])
    assert many.std.shape == (2, 2) and np.all(many.std > 0)
    assert estimate(model, labelled(1, 32), [2, 4]).std is None
    p = many.problem(costs={"size": [[2, 4], [2, 4]]}, budgets={"size": 6})
    assert np.array_equal(p.sensitivity_std, many.std)


def nan_after_quantization(out, ref, target):
    return torch.where(torch.equal(out, ref) * torch.ones(()) > 0, F.mse_loss(out, ref), torch.tensor(float("nan")))


def always_nan(out, ref, target):
    return out.sum() * float("nan")


def test_nan_losses_name_the_culprit():
    model, data = mlp(), labelled(2, 8)
    with pytest.raises(ProblemError, match=r"layer '0' at option W2 \(batch 0\)"):
        estimate_delta_loss(model, data, [32, 2], loss=nan_after_quantization)
    with pytest.raises(ProblemError, match="unquantized model on batch 0"):
        estimate_delta_loss(model, data, [2], loss=always_nan)
    with pytest.raises(ProblemError, match="hessian_trace: the model on batch 0"):
        estimate_hessian_trace(model, data, [2], loss=always_nan)
    with pytest.raises(ProblemError, match="sample 0 of batch 0"):
        estimate_fisher(model, data, [2], loss=always_nan)


@pytest.mark.parametrize("estimate", [estimate_delta_loss, estimate_hessian_trace, estimate_fisher])
def test_bad_data_and_layer_names(estimate):
    model = mlp()
    with pytest.raises(ProblemError, match="model failed on batch 0"):
        estimate(model, [(torch.randn(4, 7), torch.zeros(4, dtype=torch.long))], [4])
    with pytest.raises(ProblemError, match="'nope'"):
        estimate(model, labelled(1, 4), [4], layers=["0", "nope"])


def test_entropy_rejects_unknown_layers_and_data_arguments():
    with pytest.raises(ProblemError, match="'nope'"):
        estimate_entropy(mlp(), [4], layers=["nope"])
    with pytest.raises(ProblemError, match="data-free"):
        estimate_entropy(mlp(), [4], loss="ce")


# --- digits CNN: every estimator ranks the layers' W2 sensitivity like delta_loss ------------------


@pytest.fixture(scope="module")
def digits_delta(digits_bed):
    return estimate_delta_loss(digits_bed.model, digits_bed.test_batches(), [2, 4, 8])


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.mark.parametrize(
    "name",
    [
        "hessian_trace",
        "fisher",
        pytest.param(
            "entropy",
            marks=pytest.mark.xfail(
                strict=True,
                reason="measured Spearman -0.5: the most sensitive layer (first conv, 144 weights spread evenly over the grid) "
                "loses the least weight entropy; a data-free weight statistic cannot see a layer's position",
            ),
        ),
    ],
)
def test_digits_rankings_agree_with_delta_loss(digits_bed, digits_delta, name):
    model, train = digits_bed.model, digits_bed.train
    before = [p.clone() for p in model.parameters()]
    if name == "hessian_trace":
        s = estimate_hessian_trace(model, train, [2, 4, 8], max_iter=40)
    elif name == "fisher":
        s = estimate_fisher(model, train, [2, 4, 8])
    else:
        s = estimate_entropy(model, [2, 4, 8])
    assert s.layers == digits_delta.layers == ("0", "3", "7", "12", "14")
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert np.all(s.values[:, 0] > s.values[:, 2])  # W2 costs more than W8 in every layer
    rho = spearman(s.values[:, 0], digits_delta.values[:, 0])
    print(f"{name}: Spearman {rho:.2f} vs delta_loss at W2, {s.meta['seconds']:.2f} s, "
          f"{s.meta['forward_passes']} forward / {s.meta['backward_passes']} backward passes")
    assert rho > 0


def test_exhaustive_losses_quantize_activations_to_given_ranges():
    from mpqopt.adapters.torch import exhaustive_losses

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    data = [torch.randn(32, 4)]
    default = exhaustive_losses(m, data, ["W8A4", "W8A8"], loss="kl")
    wide = exhaustive_losses(m, data, ["W8A4", "W8A8"], loss="kl", act_ranges={"0": (-50.0, 50.0), "2": (-50.0, 50.0)})
    # a range 10x too wide wastes the 4-bit grid: every allocation loses more than with calibrated ranges
    assert np.all(wide.change > default.change)
    with pytest.raises(ProblemError, match=r"act_ranges has no range for layers \['2'\]"):
        exhaustive_losses(m, data, ["W8A4"], loss="kl", act_ranges={"0": (-1.0, 1.0)})


@pytest.mark.parametrize("data", [None, 3, "batches.pt", {"input_ids": torch.zeros(2, 3, dtype=torch.long)}])
def test_data_that_is_not_a_collection_of_batches_is_named(data):
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ProblemError, match=f"data must be an iterable of batches.*got {type(data).__name__}"):
        estimate_delta_loss(model, data, [4, 8])
