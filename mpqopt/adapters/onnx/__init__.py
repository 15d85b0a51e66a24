"""ONNX adapter: find the quantizable layers of an ONNX graph, count their costs, tie layers that
share an input, estimate sensitivities with ONNX Runtime, and export the allocation (a per-node
JSON config or a fake-quantized ONNX model). Needs the ``onnx`` extra; never imports torch.
"""
