"""The memory layout estimators run a CNN in: a channels-last copy of the model and its inputs.

On CPU oneDNN convolves NHWC tensors without reordering them, while an NCHW model pays a reorder on
every convolution. The copy's kernels round differently, so a table measured on it differs from
the model's own (NCHW) one by float round-off only: largest absolute difference of
``estimate_delta_loss`` tables 1.7e-8 (digits CNN), 6.3e-8 (Fashion-MNIST CNN), 2.1e-7 (a 24-layer
random conv chain), the same order as ONNX Runtime's difference from torch
(benchmarks/results/estimators.md). The caller's model and data are never modified.

>>> import torch; from torch import nn
>>> m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten())
>>> cl, data, used = with_memory_format(m, [(torch.randn(2, 1, 5, 5), torch.zeros(2))], "auto")
>>> used, cl is m, cl[0].weight.is_contiguous(memory_format=torch.channels_last), m[0].weight.is_contiguous()
('channels_last', False, True, True)
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
from torch import nn

from ...errors import ProblemError

MEMORY_FORMATS = ("auto", "channels_last", "preserve")


def has_conv2d(model: nn.Module) -> bool:
    """Does the model hold a 2-D convolution?"""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _to_channels_last(value: Any) -> Any:
    """``value`` with each 4-D floating tensor as a channels-last copy, inside tuples, lists and dicts."""
    if isinstance(value, torch.Tensor):
        return value.contiguous(memory_format=torch.channels_last) if value.dim() == 4 and value.is_floating_point() else value
    if isinstance(value, tuple):
        items = [_to_channels_last(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, list):
        return [_to_channels_last(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_channels_last(v) for k, v in value.items()}
    return value


def with_memory_format(model: nn.Module, data: Iterable[Any], memory_format: str) -> tuple[nn.Module, Iterable[Any], str]:
    """``(model, data, used)``: for ``"channels_last"`` (or ``"auto"`` with a 2-D convolution in the
    model) a channels-last copy of the model and the batches (4-D floating tensors converted), and
    ``used = "channels_last"``; else the model and data as they are and ``used = "preserve"``."""
    if memory_format not in MEMORY_FORMATS:
        raise ProblemError(f"memory_format must be one of {MEMORY_FORMATS}, got {memory_format!r}")
    if memory_format == "preserve" or (memory_format == "auto" and not has_conv2d(model)):
        return model, data, "preserve"
    return copy.deepcopy(model).to(memory_format=torch.channels_last), [_to_channels_last(batch) for batch in data], "channels_last"
