"""Skip collecting the optional adapters' modules (doctests) when their framework is absent."""

import importlib.util

# mpqopt.testbeds is a deprecated alias of mpqopt.examples: importing it warns, and it has no doctests
collect_ignore_glob = ["mpqopt/testbeds/*"]
if importlib.util.find_spec("torch") is None:
    collect_ignore_glob.append("mpqopt/adapters/torch/*")
    collect_ignore_glob.append("mpqopt/examples/*")
if importlib.util.find_spec("gguf") is None:  # the llm extra: GGUF quantizers and writer
    collect_ignore_glob += ["mpqopt/adapters/torch/formats.py", "mpqopt/adapters/torch/gguf_writer.py"]
if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
    collect_ignore_glob.append("mpqopt/adapters/onnx/*")
