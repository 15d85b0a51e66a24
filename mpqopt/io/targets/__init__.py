"""Files other tools read, from an allocation, and files they write, as Problems.

Writers (each module cites the tool's schema it follows; each refuses, naming layer and format, what
its tool cannot express):

* :mod:`.llama_cpp` - ``llama-quantize --tensor-type`` / ``--tensor-type-file`` lines;
* :mod:`.torchao_config` - torchao ``FqnToConfig``; :mod:`.hqq_config` - HQQ ``dynamic_config``;
* :mod:`.compressed_tensors_config` - compressed-tensors / llm-compressor ``config_groups``;
* :mod:`.modelopt_config` - NVIDIA ModelOpt ``quant_cfg``; :mod:`.autoround` - auto-round ``layer_config``;
* :mod:`.gptqmodel_config` - GPTQModel ``dynamic``.

Readers: :func:`.autoround.autoscheme_problem` (auto-round AutoScheme score caches) and
:func:`.imatrix.imatrix_problem` (llama.cpp imatrix GGUF files, with the model's weights).
:mod:`.names` maps Llama layer names between Hugging Face and GGUF spellings.

>>> sorted(WRITERS)
['auto-round', 'compressed-tensors', 'gptqmodel', 'hqq', 'llama.cpp', 'modelopt', 'torchao']
>>> print(render("llama.cpp", {"blk.0.attn_v": "Q6_K"}), end="")
^blk\\.0\\.attn_v\\.weight$=Q6_K
"""

from __future__ import annotations

from typing import Callable

from ...errors import ArgumentError
from . import autoround, compressed_tensors_config, gptqmodel_config, hqq_config, llama_cpp, modelopt_config, torchao_config
from .allocation import Allocation

# tool name (as `mpqopt export --format` takes it) -> the writer of its file's text
WRITERS: dict[str, Callable[[Allocation], str]] = {
    "llama.cpp": llama_cpp.render,
    "torchao": torchao_config.render,
    "hqq": hqq_config.render,
    "compressed-tensors": compressed_tensors_config.render,
    "modelopt": modelopt_config.render,
    "auto-round": autoround.render,
    "gptqmodel": gptqmodel_config.render,
}


def render(tool: str, allocation: Allocation) -> str:
    """The text of ``tool``'s config file for ``allocation`` (a solve Result or ``{layer: option}``)."""
    if tool not in WRITERS:
        raise ArgumentError(f"unknown target tool {tool!r}; known: {', '.join(WRITERS)}")
    return WRITERS[tool](allocation)


__all__ = ["WRITERS", "render"]
