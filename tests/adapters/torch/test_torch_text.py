"""Token data and held-out perplexity for causal LMs (mpqopt.adapters.torch.text)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("transformers", reason="transformers is not installed (pip install 'mpqopt[llm]')")

from mpqopt.adapters.torch.text import perplexity, split_tokens, token_batches  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402
from llm_helpers import tiny_llama  # noqa: E402

torch.set_num_threads(1)


def test_perplexity_is_exp_of_the_mean_next_token_nll():
    model = tiny_llama()
    data = token_batches(torch.randint(0, 256, (300,), generator=torch.Generator().manual_seed(0)), seq_len=16, batch_size=3)
    nll, count = 0.0, 0
    with torch.no_grad():
        for b in data:
            ids = b["input_ids"]
            logp = torch.log_softmax(model(input_ids=ids).logits.double(), dim=-1)
            for r in range(ids.shape[0]):
                for t in range(ids.shape[1] - 1):
                    nll -= float(logp[r, t, ids[r, t + 1]])
                    count += 1
    assert count == len(data) * 3 * 15
    assert perplexity(model, data) == pytest.approx(math.exp(nll / count), rel=1e-5)
    assert not model.training


def test_calibration_and_evaluation_are_disjoint():
    ids = torch.arange(1000)
    calib, held_out = split_tokens(ids, 600, 300)
    assert set(calib.tolist()).isdisjoint(held_out.tolist()) and len(calib) == 600 and held_out[-1] == 999
    with pytest.raises(ProblemError, match="overlap"):
        split_tokens(ids, 700, 301)
    batches = token_batches(calib, seq_len=64, batch_size=4)
    assert len(batches) == 2 and torch.equal(batches[0]["input_ids"][1], ids[64:128])
    with pytest.raises(ProblemError, match="do not fill one batch"):
        token_batches(ids[:10], seq_len=16)
