"""Load a GGUF file into a transformers causal LM, through transformers' own GGUF reader.

This is how a file :func:`~mpqopt.adapters.torch.write_gguf` wrote is checked: the reader
dequantizes every tensor to float32 and undoes the row permutation llama.cpp applies to Llama's
``attn_q`` / ``attn_k``, so the model's weights equal ``dequantize(quantize(w))`` of each type.
``AutoModelForCausalLM.from_pretrained(gguf_file=)`` is that path, but it also needs ``accelerate``;
without it the same reader (``load_gguf_checkpoint``) is called directly.

>>> load_gguf_model("no-such-file.gguf")
Traceback (most recent call last):
...
mpqopt.errors.ProblemError: GGUF file 'no-such-file.gguf' does not exist
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import torch

from ...errors import ProblemError

__all__ = ["load_gguf_model"]


def load_gguf_model(path: str | os.PathLike, *, device: Any = None, dtype: torch.dtype = torch.float32) -> Any:
    """The transformers model a GGUF file holds (config from its metadata), in eval mode, weights in
    ``dtype`` on ``device`` (default: the CPU). A head tied to the token embedding stays tied."""
    from ...io.targets.gguf_file import open_gguf

    path = Path(path)
    if not path.is_file():
        raise ProblemError(f"GGUF file {str(path)!r} does not exist")
    open_gguf(path, "loading a GGUF model")  # an empty, truncated or non-GGUF file: a FormatError naming it, not transformers' traceback
    try:
        import transformers
    except ImportError as exc:
        raise ProblemError(f"loading a GGUF file needs transformers (pip install 'mpqopt[llm]'): {exc}") from None
    if importlib.util.find_spec("accelerate") is not None:
        model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    else:
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

        config = transformers.AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
        tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
        missing, unexpected = model.load_state_dict({k: torch.as_tensor(v) for k, v in tensors.items()}, strict=False)
        if unexpected:
            raise ProblemError(f"GGUF file {path.name!r} has tensors {type(model).__name__} does not: {', '.join(sorted(unexpected)[:5])}")
        tied = bool(getattr(config, "tie_word_embeddings", False))
        missing = [k for k in missing if not (tied and k == "lm_head.weight")]  # a tied head is the embedding
        if missing:  # they would keep their random initial values
            raise ProblemError(f"GGUF file {path.name!r} lacks tensors {type(model).__name__} needs: {', '.join(sorted(missing)[:5])}")
        if hasattr(model, "tie_weights"):
            model.tie_weights()
    model = model.eval()
    return model if device is None else model.to(device)
