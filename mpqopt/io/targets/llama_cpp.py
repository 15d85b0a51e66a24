"""llama.cpp's ``llama-quantize --tensor-type PATTERN=TYPE`` and ``--tensor-type-file FILE`` from an allocation.

Schema (llama.cpp ``tools/quantize/quantize.cpp``, ``parse_tensor_type`` / ``parse_tensor_type_file``,
and ``src/llama-quant.cpp``, read at ggml-org/llama.cpp commit 03161a4e): each override is one token
``PATTERN=TYPE``; the file holds such tokens separated by spaces or newlines (read with ``file >> arg``:
no comments, no spaces inside a token); ``PATTERN`` is **lower-cased**, compiled as a ``std::regex``
and matched with ``regex_search`` against each tensor name, and ``TYPE`` is a GGML type name, matched
case-insensitively. A bare ``attn_v=q6_k`` therefore changes every block's ``attn_v``, and
``blk.1.attn_v`` also hits ``blk.10.attn_v`` .. ``blk.19.attn_v``. The lines written here are
anchored and escaped (``^blk\\.1\\.attn_v\\.weight$=Q6_K``), so each matches exactly one tensor.

Only GGML types can be written (the GGUF entries of :mod:`mpqopt.formats` and ``mxfp4``); other
formats, activation bits and tensor names with capitals (a lower-cased pattern cannot match them)
are refused, naming the layer. Layer names may be GGUF tensor names or Llama HF module names
(:mod:`.names`). Pass ``tensor_names`` (e.g. ``[t.name for t in gguf.GGUFReader(path).tensors]``)
to check every pattern against the model's own tensor list.

>>> print(tensor_type_file({"blk.1.attn_v": "Q6_K", "model.layers.10.mlp.down_proj": "Q5_K"}), end="")
^blk\\.1\\.attn_v\\.weight$=Q6_K
^blk\\.10\\.ffn_down\\.weight$=Q5_K
>>> tensor_type_args({"lm_head": "Q8_0"})
['--tensor-type', '^output\\\\.weight$=Q8_0']
"""

from __future__ import annotations

import re
from typing import Iterable

from ...errors import UnsupportedFormatError
from .allocation import Allocation, pairs, refuse, weight_only
from .names import gguf_tensor_name

TOOL = "llama.cpp"
_SAFE = re.compile(r"^[a-z0-9_.]+$")


def tensor_pattern(tensor: str) -> str:
    """The anchored, escaped pattern that matches exactly ``tensor`` under llama.cpp's rules.

    >>> tensor_pattern("blk.1.attn_v.weight")
    '^blk\\\\.1\\\\.attn_v\\\\.weight$'
    """
    if not _SAFE.match(tensor):
        raise UnsupportedFormatError(f"{TOOL}: tensor name {tensor!r} has characters other than a-z, 0-9, '_' and '.'; "
                                     "llama-quantize lower-cases its patterns, so no pattern can be written for it")
    return "^" + tensor.replace(".", r"\.") + "$"


def llama_matches(pattern: str, tensor: str) -> bool:
    """Whether llama-quantize applies ``pattern`` to ``tensor``: the pattern lower-cased, then a regex
    search (Python's ``re`` agrees with ECMAScript ``std::regex`` on the anchors and escapes used here)."""
    return re.search(pattern.lower(), tensor) is not None


def tensor_types(allocation: Allocation, *, tensor_names: Iterable[str] | None = None) -> list[str]:
    """``PATTERN=TYPE`` per layer, in the allocation's order (a layer given twice in two spellings
    must have one type)."""
    chosen: dict[str, tuple[str, str]] = {}
    for layer, option in pairs(allocation):
        fmt = weight_only(TOOL, layer, option)
        if fmt.gguf_type is None:
            raise refuse(TOOL, layer, option, "llama.cpp stores GGML types only (Q4_0, Q4_K, IQ4_XS, Q8_0, MXFP4, BF16, ...)")
        tensor = gguf_tensor_name(layer)
        if tensor in chosen and chosen[tensor][1] != fmt.gguf_type:
            other = chosen[tensor][0]
            raise UnsupportedFormatError(f"{TOOL}: layers '{other}' and '{layer}' are both tensor {tensor}, "
                                         f"with types {chosen[tensor][1]} and {fmt.gguf_type}")
        chosen.setdefault(tensor, (layer, fmt.gguf_type))
    lines = [f"{tensor_pattern(tensor)}={gtype}" for tensor, (_, gtype) in chosen.items()]
    if tensor_names is not None:
        check_against(lines, tensor_names)
    return lines


def check_against(lines: Iterable[str], tensor_names: Iterable[str]) -> None:
    """Every line's pattern must match exactly one of the model's tensors, as llama-quantize matches."""
    names = list(tensor_names)
    for line in lines:
        pattern, _, _ = line.rpartition("=")
        hits = [n for n in names if llama_matches(pattern, n)]
        if len(hits) != 1:
            tensor = pattern.strip("^$").replace("\\.", ".")
            what = "no tensor of the model" if not hits else f"{len(hits)} tensors ({', '.join(hits[:4])})"
            raise UnsupportedFormatError(f"{TOOL}: the pattern for tensor {tensor} matches {what}; "
                                         "is the allocation for this model (tied embeddings have no output.weight)?")


def tensor_type_file(allocation: Allocation, *, tensor_names: Iterable[str] | None = None) -> str:
    """The content of a ``--tensor-type-file``: one ``PATTERN=TYPE`` per line."""
    return "".join(line + "\n" for line in tensor_types(allocation, tensor_names=tensor_names))


def tensor_type_args(allocation: Allocation, *, tensor_names: Iterable[str] | None = None) -> list[str]:
    """The same overrides as command-line arguments: ``["--tensor-type", "PATTERN=TYPE", ...]``."""
    out: list[str] = []
    for line in tensor_types(allocation, tensor_names=tensor_names):
        out += ["--tensor-type", line]
    return out


render = tensor_type_file
