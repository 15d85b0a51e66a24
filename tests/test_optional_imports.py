"""The core never imports a framework: torch, onnx and onnxruntime load only with their adapters."""

import subprocess
import sys


def test_core_and_cli_import_no_framework():
    code = ("import sys, mpqopt, mpqopt.cli, mpqopt.adapters, mpqopt.adapters.sensitivity, mpqopt.importers; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'gurobipy', 'pyomo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
