"""The core never imports a framework: torch, onnx and onnxruntime load only with their adapters."""

import subprocess
import sys


def test_core_and_cli_import_no_framework():
    # the adapters' framework-free modules (shared by the torch and ONNX adapters) count as core
    shared = ", ".join(f"mpqopt.adapters.{m}" for m in ("sensitivity", "scheme", "choices", "pairs", "losses", "entropy", "tables", "patterns", "ties"))
    code = (f"import sys, mpqopt, mpqopt.cli, mpqopt.adapters, {shared}, mpqopt.importers; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'gurobipy', 'pyomo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
