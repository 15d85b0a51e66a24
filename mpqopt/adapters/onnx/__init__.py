"""ONNX adapter: find the quantizable layers of an ONNX graph, count their costs, tie layers that
share an input, estimate sensitivities with ONNX Runtime, and export the allocation (a per-node
JSON config or a fake-quantized ONNX model). Needs the ``onnx`` extra; never imports torch.

>>> from mpqopt.adapters import onnx as mo
>>> sorted(n for n in ("load_model", "discover_layers", "estimate_delta_output", "fake_quantized_model") if hasattr(mo, n))
['discover_layers', 'estimate_delta_output', 'fake_quantized_model', 'load_model']

The names match the PyTorch adapter's: ``problem_from_model(model, options, sensitivity, ...)`` and
``estimate_*`` estimators (``estimate_weight_error``, ``estimate_entropy``, ``estimate_delta_output``,
``estimate_pairwise``). The old spellings ``problem_from_onnx(model, sensitivity, options=None)``,
``weight_error``, ``entropy``, ``delta_output`` and ``pairwise`` still work for one release and warn.
"""

from ..sensitivity import Sensitivity
from .build import problem_from_model, problem_from_onnx
from .costs import OnnxLayerCost, layer_costs, node_macs
from .export import allocation_config, fake_quantized_model, save, write_config
from .graph import find_ties, model_graph
from .layers import OnnxLayer, discover_layers, framework_name, resolve_layers, stored_weight
from .model import OnnxModel, load_model
from .quantize import grid_codes, grid_params, quantize_array
from .runtime import OnnxEvaluator
from .sensitivity import delta_output, entropy, estimate_delta_output, estimate_entropy, estimate_pairwise, estimate_weight_error, measurer, pairwise, weight_error

__all__ = [
    "OnnxEvaluator", "OnnxLayer", "OnnxLayerCost", "OnnxModel", "Sensitivity", "allocation_config", "discover_layers", "estimate_delta_output",
    "estimate_entropy", "estimate_pairwise", "estimate_weight_error", "fake_quantized_model", "find_ties", "framework_name", "grid_codes", "grid_params",
    "layer_costs", "load_model", "measurer", "model_graph", "node_macs", "problem_from_model", "quantize_array", "resolve_layers", "save", "stored_weight", "write_config",
    # deprecated aliases (one release) of problem_from_model and the estimate_* names
    "delta_output", "entropy", "pairwise", "problem_from_onnx", "weight_error",
]
