"""Run the whole LLM flow on a GPU, when one exists: estimate, solve, apply, evaluate, write a GGUF file.

    python benchmarks/gpu_check.py [--device auto|cuda|cpu] [--require] [--out DIR]

``auto`` (the default) uses CUDA when torch sees a GPU, and otherwise says so and exits 0 without
running anything (``--require`` makes that an error, exit 2); ``--device cpu`` runs the same flow on
the CPU (CI checks the script that way). The model is a tiny random-initialised Llama (2 blocks,
hidden 64, MLP 256: transformers' LlamaConfig), so the check takes seconds; what it checks is that
every step runs where the model is and agrees with the CPU:

1. every LLM estimator (``estimate_imatrix``, ``estimate_kl_blocks``, ``estimate_gradient_score``)
   and the classic ``estimate_hessian_trace`` (its probes are drawn on the model's device) on the
   device, and their tables against the same estimators on the CPU (relative difference reported);
2. ``llm_problem`` at 6.0 bpw, solved exactly; ``apply`` on the device; perplexity on held-out tokens
   disjoint from the calibration tokens;
3. ``write_gguf`` of the allocation and transformers' GGUF reader loading it back: its perplexity
   against ``apply``'s.

Results go to ``DIR/gpu_check.json`` (with ``--out``) and stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OPTIONS = ["int2-g32", "Q4_0", "int4-g32-asym", "Q5_1", "Q8_0"]


def load_gguf(path: Path, device: Any) -> Any:
    from mpqopt.adapters.torch import load_gguf_model

    return load_gguf_model(path, device=device)


def _rel(a: Any, b: Any) -> float:
    import numpy as np

    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def run(device_name: str) -> dict[str, Any]:
    import numpy as np
    import torch
    from torch import nn

    import mpqopt
    from mpqopt.adapters.torch import (apply, estimate_gradient_score, estimate_hessian_trace, estimate_imatrix, estimate_kl_blocks, llm_problem,
                                       perplexity, split_tokens, token_batches, write_gguf)

    torch.set_num_threads(1)
    device = torch.device(device_name)
    out: dict[str, Any] = {"device": device_name, "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "steps": {}}
    ids = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0))
    calib_ids, eval_ids = split_tokens(ids, 1024, 1024)
    calib = token_batches(calib_ids, seq_len=64, batch_size=4, max_batches=2)
    held_out = token_batches(eval_ids, seq_len=64, batch_size=4)
    from mpqopt.examples.llm import tiny_llama

    cpu_model = tiny_llama()
    model = tiny_llama().to(device)

    tables = {}
    for name, fn in (("imatrix", estimate_imatrix), ("kl_blocks", estimate_kl_blocks), ("gradient_score", estimate_gradient_score)):
        started = time.perf_counter()
        here = fn(model, calib, OPTIONS, progress=False)
        seconds = time.perf_counter() - started
        ref = fn(cpu_model, calib, OPTIONS, progress=False)
        tables[name] = here
        out["steps"][name] = {"seconds": round(seconds, 3), "max_rel_diff_vs_cpu": _rel(here.values, ref.values)}
    net = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4))
    torch.manual_seed(1)
    data = [(torch.randn(32, 16), torch.randint(0, 4, (32,)))]
    h_dev = estimate_hessian_trace(net.to(device), data, [2, 4, 8], max_iter=20)
    out["steps"]["hessian_trace"] = {"ran_on": device_name, "finite": bool(np.isfinite(h_dev.values).all())}

    problem = llm_problem(model, tables["kl_blocks"], budgets={"size_bits": "6.0bpw"})
    result = mpqopt.solve(problem)
    chosen = dict(zip(problem.layers, (problem.options[int(k)].label for k in result.x)))
    bpw = float(sum(problem.costs["size_bits"][i, int(k)] for i, k in enumerate(result.x)) / problem.params.sum())
    qmodel = apply(model, result)
    weights_on = {p.device.type for p in qmodel.parameters()}
    ppl = {"fp32": perplexity(model, held_out), "apply": perplexity(qmodel, held_out)}
    out["steps"]["solve"] = {"status": result.status, "bpw": round(bpw, 4), "formats": sorted(set(chosen.values())), "apply_weights_on": sorted(weights_on)}
    gguf_alloc = {k: ("Q8_0" if v.startswith("int") else v) for k, v in chosen.items()}  # int formats have no GGUF type
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.gguf"
        write_gguf(model, gguf_alloc, path)
        back = load_gguf(path, device)
        ppl["gguf_loaded"] = perplexity(back, held_out)
        ppl["apply_same_allocation"] = perplexity(apply(model, gguf_alloc), held_out)
    out["perplexity"] = {k: round(v, 6) for k, v in ppl.items()}
    out["gguf_matches_apply"] = abs(ppl["gguf_loaded"] - ppl["apply_same_allocation"]) <= 1e-5 * ppl["apply_same_allocation"]
    out["ok"] = bool(out["gguf_matches_apply"] and result.status == "optimal" and weights_on == {device.type}
                     and all(s["max_rel_diff_vs_cpu"] < 1e-3 for k, s in out["steps"].items() if "max_rel_diff_vs_cpu" in s))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--require", action="store_true", help="no GPU is an error (exit 2) instead of a skip")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    device = args.device
    if device in ("auto", "cuda") and not torch.cuda.is_available():
        print("gpu_check: no GPU here (torch.cuda.is_available() is False): nothing run" + ("; --require: failing" if args.require or device == "cuda" else ""))
        return 2 if args.require or device == "cuda" else 0
    if device == "auto":
        device = "cuda"
    report = run(device)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
