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
