"""LLM-scale estimators on a tiny random Llama: activation statistics (imatrix), KL with cached
block inputs, the gradient score; each against an independent computation, plus checkpoint/resume
and the executor path."""

from __future__ import annotations

import concurrent.futures as cf

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("transformers", reason="transformers is not installed (pip install 'mpqopt[llm]')")
pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'mpqopt[llm]')")

from mpqopt.adapters.torch import apply  # noqa: E402
from mpqopt.adapters.torch.estimators.imatrix import activation_stats, estimate_imatrix, imatrix_sensitivity  # noqa: E402
from mpqopt.adapters.torch.llm import discover_llm_layers  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402
from llm_helpers import tiny_llama, token_batches  # noqa: E402

torch.set_num_threads(1)
OPTIONS = ["int2-g32", "Q4_0", "int4-g32-asym", "Q8_0"]


def _inputs(model, data, names):
    """Every input each module saw, concatenated over tokens (plain hooks, no mpqopt)."""
    seen = {n: [] for n in names}
    modules = dict(model.named_modules())
    hooks = [modules[n].register_forward_pre_hook(lambda m, a, n=n: seen[n].append(a[0].detach().reshape(-1, a[0].shape[-1]))) for n in names]
    with torch.no_grad():
        for b in data:
            model(**b)
    for h in hooks:
        h.remove()
    return {n: torch.cat(v).double() for n, v in seen.items()}


def test_imatrix_equals_importance_weighted_error_from_raw_inputs():
    model = tiny_llama(tied=True)
    data = token_batches()
    s = estimate_imatrix(model, data, OPTIONS, progress=False)
    found = discover_llm_layers(model)
    assert s.layers == found.names
    linears = [n for n in found.names if n != "model.embed_tokens"]
    xs = _inputs(model, data, linears + ["lm_head"])
    ids = torch.cat([b["input_ids"].reshape(-1) for b in data])
    modules = dict(model.named_modules())
    for k, opt in enumerate(OPTIONS):
        for i, name in enumerate(found.names):
            w = modules[name].weight.detach().double()
            dw2 = (apply(model, {name: opt}).get_submodule(name).weight.detach().double() - w) ** 2
            if name == "model.embed_tokens":
                # tied: the looked-up rows by token frequency, plus the head's input channels
                freq = torch.bincount(ids, minlength=w.shape[0]).double() / ids.numel()
                want = float((dw2 * freq[:, None]).sum() + (dw2 * xs["lm_head"].pow(2).mean(0)[None, :]).sum())
            else:
                want = float((dw2 * xs[name].pow(2).mean(0)[None, :]).sum())
            assert s.values[i, k] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert (s.values[:, 0] > s.values[:, 3]).all()  # 2-bit worse than 8-bit everywhere


def test_imatrix_checkpoint_resume_and_executor(tmp_path):
    model = tiny_llama(tied=False)
    data = token_batches()
    path = tmp_path / "imatrix.npz"
    first = estimate_imatrix(model, data, OPTIONS, progress=False, checkpoint=path)
    again = estimate_imatrix(model, data, OPTIONS, progress=False, checkpoint=path)
    assert again.meta["resumed_rows"] == len(first.layers) and np.array_equal(again.values, first.values)
    with pytest.raises(ProblemError, match="different run: options"):
        estimate_imatrix(model, data, OPTIONS[:2], progress=False, checkpoint=path)
    with pytest.raises(ProblemError, match="other weights or data"):
        estimate_imatrix(model, token_batches(seed=7), OPTIONS, progress=False, checkpoint=path)
    with cf.ThreadPoolExecutor(2) as pool:
        spread = estimate_imatrix(model, data, OPTIONS, progress=False, executor=pool, chunks=3)
    assert np.allclose(spread.values, first.values, rtol=1e-12) and spread.meta["chunks"] == 3


def test_imatrix_statistics_of_another_model_are_refused():
    model = tiny_llama(tied=True)
    stats = activation_stats(tiny_llama(tied=True, hidden=32, intermediate=256), token_batches(), )
    with pytest.raises(ProblemError, match=r"layer 'model.embed_tokens': statistics of \(32,\) columns for a weight of shape \(256, 64\).*another model"):
        imatrix_sensitivity(model, stats, OPTIONS, progress=False)
    with pytest.raises(ProblemError, match="nothing for layer 'model.embed_tokens'"):
        imatrix_sensitivity(model, {"blk.0.attn_q.weight": np.ones(64)}, OPTIONS, progress=False)


# ------------------------------------------------------------------ KL with cached block inputs
from mpqopt.adapters.torch import estimate_delta_loss  # noqa: E402
from mpqopt.adapters.torch.estimators.kl_blocks import estimate_kl_blocks  # noqa: E402


@pytest.mark.parametrize("tied", [True, False])
def test_kl_blocks_equals_full_forwards(tied):
    model = tiny_llama(tied=tied)
    data = token_batches()
    s = estimate_kl_blocks(model, data, OPTIONS + ["W32"], progress=False)
    full = estimate_delta_loss(model, data, OPTIONS + ["W32"], layers=list(s.layers), loss="kl")
    assert np.allclose(s.values, full.values, rtol=1e-4, atol=1e-7)
    assert np.allclose(s.std, full.std, rtol=1e-3, atol=1e-7)
    assert (s.values[:, -1] == 0).all() and (s.values[:, 0] > s.values[:, 3]).all()
    # blocks before the perturbed one are replayed: (embedding 2 + block 0's 7 x 2 + block 1's 7 x 1 [+ head 0]) / (2 per decision)
    L = len(s.layers)
    assert s.meta["block_fraction"] == pytest.approx((2 + 14 + 7) / (2 * L), abs=1e-4)


def test_kl_blocks_resume_and_executor(tmp_path):
    model = tiny_llama(tied=True)
    data = token_batches(batches=2)
    path = tmp_path / "kl.npz"
    first = estimate_kl_blocks(model, data, OPTIONS[:2], progress=False, checkpoint=path)
    again = estimate_kl_blocks(model, data, OPTIONS[:2], progress=False, checkpoint=path)
    assert again.meta["resumed_rows"] == len(first.layers) and np.array_equal(again.values, first.values)
    with pytest.raises(ProblemError, match="other weights or data"):
        estimate_kl_blocks(tiny_llama(tied=True, seed=3), data, OPTIONS[:2], progress=False, checkpoint=path)
    with cf.ThreadPoolExecutor(2) as pool:
        spread = estimate_kl_blocks(model, data, OPTIONS[:2], progress=False, executor=pool, chunks=4)
    assert np.allclose(spread.values, first.values, rtol=1e-5, atol=1e-9)


# ------------------------------------------------------------------ gradient score
from mpqopt.adapters.torch.estimators.gradient_score import estimate_gradient_score  # noqa: E402


def _score_oracle(model, batch, name, opt):
    """½ N Σ g² ΔY² with g from retain_grad on the layer's output, ΔY from apply()'s weight (tied head added)."""
    users = [name] + (["lm_head"] if name == "model.embed_tokens" and model.lm_head.weight is model.model.embed_tokens.weight else [])
    modules = dict(model.named_modules())
    ids = batch["input_ids"]
    outs, ins = {}, {}

    def hook(n):
        def f(m, a, out):
            out.retain_grad()
            outs[n], ins[n] = out, a[0].detach()
        return f
    hs = [modules[u].register_forward_hook(hook(u)) for u in users]
    for p in model.parameters():
        p.requires_grad_(True)
    logits = model(input_ids=ids).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    loss.backward()
    for h in hs:
        h.remove()
    model.zero_grad()
    dw = (apply(model, {name: opt}).get_submodule(name).weight - modules[name].weight).detach().double()
    n = ids.shape[0] * (ids.shape[1] - 1)
    total = 0.0
    for u in users:
        dy = dw[ins[u]] if u == "model.embed_tokens" else ins[u].double() @ dw.T
        total += 0.5 * n * float((outs[u].grad.double() ** 2 * dy**2).sum())
    return total


def test_gradient_score_equals_the_formula_from_retained_gradients():
    model = tiny_llama(tied=True)
    data = token_batches(batches=2)
    s = estimate_gradient_score(model, data, OPTIONS, progress=False)
    assert s.meta["backward_passes"] == 2
    for i, name in enumerate(s.layers):
        for k in (0, 1):
            want = np.mean([_score_oracle(model, b, name, OPTIONS[k]) for b in data])
            assert s.values[i, k] == pytest.approx(want, rel=1e-6)
    assert (s.values[:, 0] > s.values[:, 3]).all()


def test_gradient_score_resume_and_executor(tmp_path):
    model = tiny_llama(tied=False)
    data = token_batches(batches=3)
    path = tmp_path / "g.npz"
    first = estimate_gradient_score(model, data, OPTIONS, progress=False, checkpoint=path)
    again = estimate_gradient_score(model, data, OPTIONS, progress=False, checkpoint=path)
    assert again.meta["resumed_rows"] == 3 and np.array_equal(again.values, first.values)
    with pytest.raises(ProblemError, match="other weights or data"):
        estimate_gradient_score(tiny_llama(tied=False, seed=5), data, OPTIONS, progress=False, checkpoint=path)
    with cf.ThreadPoolExecutor(2) as pool:
        spread = estimate_gradient_score(model, data, OPTIONS, progress=False, executor=pool)
    assert np.allclose(spread.values, first.values, rtol=1e-9)
