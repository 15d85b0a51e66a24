"""ONNX adapter: find the quantizable layers of an ONNX graph, count their costs, tie layers that
share an input, estimate sensitivities with ONNX Runtime, and export the allocation (a per-node
JSON config or a fake-quantized ONNX model). Needs the ``onnx`` extra; never imports torch.

>>> from mpqopt.adapters import onnx as mo
>>> sorted(n for n in ("load_model", "discover_layers", "delta_output", "fake_quantized_model") if hasattr(mo, n))
['delta_output', 'discover_layers', 'fake_quantized_model', 'load_model']
"""

from ..sensitivity import Sensitivity
from .build import problem_from_onnx
from .costs import OnnxLayerCost, layer_costs, node_macs
from .export import allocation_config, fake_quantized_model, save, write_config
from .graph import find_ties, model_graph
from .layers import OnnxLayer, discover_layers, framework_name, resolve_layers, stored_weight
from .model import OnnxModel, load_model
from .quantize import grid_codes, grid_params, quantize_array
from .runtime import OnnxEvaluator
from .sensitivity import delta_output, entropy, pairwise, weight_error

__all__ = [
    "OnnxEvaluator", "OnnxLayer", "OnnxLayerCost", "OnnxModel", "Sensitivity", "allocation_config", "delta_output", "discover_layers", "entropy",
    "fake_quantized_model", "find_ties", "framework_name", "grid_codes", "grid_params", "layer_costs", "load_model", "model_graph", "node_macs",
    "pairwise", "problem_from_onnx", "quantize_array", "resolve_layers", "save", "stored_weight", "weight_error", "write_config",
]
