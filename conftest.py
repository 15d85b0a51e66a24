"""Skip collecting the optional adapters' modules (doctests) when their framework is absent."""

import importlib.util

collect_ignore_glob = []
if importlib.util.find_spec("torch") is None:
    collect_ignore_glob.append("mpqopt/adapters/torch/*")
    collect_ignore_glob.append("mpqopt/testbeds/*")
if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
    collect_ignore_glob.append("mpqopt/adapters/onnx/*")
