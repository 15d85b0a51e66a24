"""Write a Llama-architecture causal LM as a GGUF file with per-tensor types from an allocation.

Each decision takes its option's GGUF type (``Q4_0``, ``Q8_0``, ``mxfp4``, ``BF16``, ...: the types the
``gguf`` package quantizes, :data:`~mpqopt.adapters.torch.formats.GGUF_QUANTIZABLE`); every other
tensor (norms, and weights the allocation does not name) is written as ``rest`` (F32 by default).
An option that is not a GGUF type the package can write (``int4-g128``, ``Q4_K``, ``W4``) is an
error naming the layer. The weights written are ``quantize(W)``, so transformers' GGUF loader (which
dequantizes) gets exactly ``dequantize(quantize(W))``, the weight mpqopt's own ``apply`` gives: the
loaded model's outputs and perplexity equal ``apply``'s (tested to float32 rounding). ``attn_q`` and
``attn_k`` rows are permuted as llama.cpp's converter does (transformers undoes it on load);
quantization is per row, so the two steps commute.

Metadata: from ``source`` (a GGUF file of the same model: every field, tokenizer included, except
``general.architecture`` and the ``GGUF.*`` entries, which the writer makes; array fields keep their
element types), else the ``llama.*`` hyperparameters from ``model.config`` (no tokenizer: load the
tokenizer from elsewhere). Tensor names: the HF → GGUF map of :mod:`mpqopt.io.targets.names` for Llama
(``model.layers.3.self_attn.q_proj`` → ``blk.3.attn_q``); a parameter it cannot name is an error.

>>> _gguf_name("model.layers.3.self_attn.q_proj.weight"), _gguf_name("lm_head.weight")
('blk.3.attn_q.weight', 'output.weight')
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from torch import nn

from ...errors import ArgumentError, FormatError, ProblemError
from ...formats import Format
from ...io.targets.gguf_file import open_gguf
from ...io.targets.names import gguf_tensor_name
from ..choices import Solution, choices_of
from .formats import GGUF_QUANTIZABLE, nearest_quantizable
from .layers import resolve_layer_names

__all__ = ["write_gguf", "gguf_type_reason"]

def _gguf_name(param: str) -> str | None:
    """The GGUF tensor name of a Llama parameter (``....weight``/``....bias``), or None (the one
    HF <-> GGUF map is :mod:`mpqopt.io.targets.names`)."""
    module, _, kind = param.rpartition(".")
    try:
        return f"{gguf_tensor_name(module, suffix=False)}.{kind}"
    except ProblemError:
        return None


def gguf_type_reason(fmt: Format) -> str | None:
    """Why ``fmt`` cannot be written to a GGUF file here, or None."""
    if fmt.gguf_type in GGUF_QUANTIZABLE:
        return None
    near = ", ".join(nearest_quantizable(fmt))
    if fmt.gguf_type is not None:
        return f"the gguf package cannot quantize {fmt.gguf_type}; nearest in size that it can: {near} (all: {', '.join(GGUF_QUANTIZABLE)})"
    return f"{fmt.name} is not a GGUF type; nearest in size that the gguf package writes: {near} (all: {', '.join(GGUF_QUANTIZABLE)})"


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf row order for attn_q / attn_k (rotary halves interleaved)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _copy_fields(writer: Any, reader: Any) -> None:
    import gguf

    for key, f in reader.fields.items():
        if key == "general.architecture" or key.startswith("GGUF."):
            continue  # the writer writes these itself
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = f.types[-1] if len(f.types) > 1 else gguf.GGUFValueType.INT32
            values = [f.parts[i].tobytes().decode("utf-8") if sub == gguf.GGUFValueType.STRING else f.parts[i].tolist()[0] for i in f.data]
            writer.add_key_value(key, values, vtype, sub_type=sub)
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_key_value(key, f.parts[f.data[0]].tobytes().decode("utf-8"), vtype)
        else:
            writer.add_key_value(key, f.parts[f.data[0]].tolist()[0], vtype)


def _check_source(reader: Any, config: Any, source: str | os.PathLike) -> None:
    """The source file must be a Llama model GGUF of this model's shape: its fields are copied as they
    are, so another architecture's keys (``qwen2.block_count``) or another size would silently make a
    file whose metadata contradicts its tensors."""
    def field(key: str) -> Any:
        item = reader.fields.get(key)
        return None if item is None else item.contents()

    where = os.fspath(source)
    kind, arch = field("general.type"), field("general.architecture")
    if kind not in (None, "model") or arch != "llama":
        raise FormatError(f"source= must be a GGUF file of a Llama model to copy its metadata; it is general.type {kind!r}, "
                          f"general.architecture {arch!r}", source=where)
    expected = {"llama.block_count": config.num_hidden_layers, "llama.embedding_length": config.hidden_size,
                "llama.feed_forward_length": config.intermediate_size, "llama.attention.head_count": config.num_attention_heads}
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    found_vocab = len(tokens.data) if tokens is not None else field("llama.vocab_size")
    for key, value, found in [(k, v, field(k)) for k, v in expected.items()] + [("vocabulary size", config.vocab_size, found_vocab)]:
        if found is not None and int(found) != int(value):
            raise FormatError(f"source= is a GGUF file of another model: its {key} is {found}, the model's is {value}", source=where)


def _config_fields(writer: Any, config: Any) -> None:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(int(config.num_attention_heads))
    writer.add_head_count_kv(int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads))
    writer.add_rope_dimension_count(int(head_dim))
    theta = getattr(config, "rope_theta", None) or (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(int(config.vocab_size))


def write_gguf(model: nn.Module, solution: Solution, path: str | os.PathLike, *, source: str | os.PathLike | None = None, rest: str = "F32") -> dict[str, str]:
    """Write ``model`` (a transformers Llama-architecture causal LM) to ``path`` with each allocated
    tensor in its option's GGUF type; returns ``{gguf tensor name: type}``. ``rest``: the type of
    every other tensor (``F32`` or ``F16``; 1-D tensors such as norms are always F32)."""
    try:
        import gguf
        from gguf import GGMLQuantizationType, quants
    except ImportError:  # pragma: no cover - the llm extra is missing
        raise ProblemError("writing GGUF files needs the gguf package: pip install 'mpqopt[llm]'") from None
    if rest not in ("F32", "F16"):
        raise ProblemError(f"rest must be 'F32' or 'F16' (the type of tensors the allocation does not name), got {rest!r}")
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in ("llama", "mistral"):
        raise ProblemError(f"write_gguf writes Llama-architecture transformers models; got {type(model).__name__} (model_type {getattr(config, 'model_type', None)!r})")
    choices = choices_of(solution, "export", formats=gguf_type_reason)
    for name, opt in choices.items():
        if opt.format is None:
            raise ProblemError(f"layer {name!r}: option '{opt.label}' has no storage format; a GGUF file needs a GGUF type such as Q4_0 or Q8_0")
    resolve_layer_names(model, choices)  # a layer the model lacks (a GGUF spelling, a block past the last, a norm) is named
    params = dict(model.named_parameters(remove_duplicate=True))
    by_module = {name: f"{name}.weight" for name in choices}
    unknown = [n for n, p in by_module.items() if p not in params]
    if unknown:
        raise ProblemError(f"layer {unknown[0]!r} of the allocation has no weight of its own in the model: it shares another "
                           "layer's (a tied head is written as the embedding: allocate 'model.embed_tokens')")
    if source is not None:
        source_reader = open_gguf(source, "copying metadata from a GGUF file")
        _check_source(source_reader, config, source)
    heads, kv = int(config.num_attention_heads), int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    writer = gguf.GGUFWriter(os.fspath(path), "llama")
    types: dict[str, str] = {}
    try:
        if source is not None:
            _copy_fields(writer, source_reader)
        else:
            writer.add_name(type(model).__name__)
            _config_fields(writer, config)
        module_of = {p: n for n, p in by_module.items()}
        for pname, tensor in params.items():
            gname = _gguf_name(pname)
            if gname is None:
                raise ProblemError(f"parameter {pname!r} has no GGUF tensor name in mpqopt's Llama map")
            w = tensor.detach().float().cpu().numpy()
            if ".attn_q." in gname:
                w = _permute(w, heads)
            elif ".attn_k." in gname:
                w = _permute(w, kv)
            layer = module_of.get(pname)
            if layer is not None:
                fmt = choices[layer].format
                assert fmt is not None and fmt.gguf_type is not None
                bad = fmt.fits(int(w.shape[-1]))
                if bad is not None:
                    raise ProblemError(f"layer {layer!r} ({gname}) cannot take format {fmt.name}: {bad}")
                qtype = GGMLQuantizationType[fmt.gguf_type]
                if qtype == GGMLQuantizationType.F32:
                    writer.add_tensor(gname, np.ascontiguousarray(w, dtype=np.float32))
                elif qtype == GGMLQuantizationType.F16:
                    writer.add_tensor(gname, np.ascontiguousarray(w, dtype=np.float16))
                else:
                    writer.add_tensor(gname, quants.quantize(np.ascontiguousarray(w), qtype), raw_dtype=qtype)
                types[gname] = fmt.gguf_type
            else:
                kind = "F16" if rest == "F16" and w.ndim > 1 else "F32"
                writer.add_tensor(gname, np.ascontiguousarray(w, dtype=np.float16 if kind == "F16" else np.float32))
                types[gname] = kind
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException as exc:
        writer.close()
        if os.path.exists(path):
            os.remove(path)  # no half-written file that looks like a model
        if isinstance(exc, OSError):
            raise ArgumentError(f"cannot write the GGUF file {os.fspath(path)!r}: {exc.strerror or exc}") from None
        raise
    writer.close()
    return types
