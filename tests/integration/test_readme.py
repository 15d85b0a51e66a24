"""The README's Python examples run and print what their comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def run(code: str, env: dict | None = None) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), dict(env or {}))  # noqa: S102 - our own README
    return out.getvalue().splitlines()


def test_the_first_example_prints_what_its_comments_say():
    code = BLOCKS[0]
    expected = [line.split("#", 1)[1].strip() for line in code.splitlines() if line.startswith("print(") and "#" in line]
    printed = run(code)
    assert printed[0] == expected[0] and printed[1] == expected[1]  # status/objective/gap and the assignment
    assert len(expected) == 3 and "conv1" in "\n".join(printed[2:])  # the table


def test_the_pytorch_example_runs_on_the_digits_cnn(digits_bed):
    pytest.importorskip("torch", reason="the torch extra is not installed")
    code = next(b for b in BLOCKS if "mt.estimate_delta_loss(model, batches" in b)
    env = {"model": digits_bed.model, "batches": digits_bed.train[:4], "test_batches": digits_bed.test_batches()}
    printed = "\n".join(run(code, env))
    change = re.search(r"change predicted (\S+), measured (\S+)", printed)
    assert change, printed
    predicted, measured = float(change.group(1)), float(change.group(2))
    assert 0 <= predicted < 1 and 0 <= measured < 1  # the 25% budget keeps the CE increase small on the digits test split


def test_the_complete_file_is_what_save_writes_and_solves(tmp_path):
    """The JSON layout section's file: loading it and saving it again gives the same text, and it
    solves at its own budget (conv1 and fc tied at W4, conv2 fixed at W8A8)."""
    import mpqopt

    text = re.search(r"A complete file, exactly as `mpqopt.save` writes it:\n\n```json\n(.*?)```", README, re.S).group(1)
    path = tmp_path / "complete.json"
    path.write_text(text)
    problem = mpqopt.load(path)
    mpqopt.save(problem, tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == text
    result = mpqopt.solve(problem)
    assert result.status == "optimal" and result.assignment == {"conv1": "W4", "conv2": "W8A8", "fc": "W4"}
    assert result.costs["size_bits"] == 2440.0 <= problem.budgets["size_bits"]


def test_the_scoped_budget_example_prints_what_its_comments_say():
    code = next(b for b in BLOCKS if "Budget(" in b)
    expected = [line.split("#", 1)[1].strip() for line in code.splitlines() if line.startswith("print(") and "#" in line]
    assert run(code) == expected


def test_the_version_2_file_is_what_save_writes_and_solves(tmp_path):
    """The Versions section's file: saved again it is the same text; its costs are size_bits with row
    lengths; Q4_K is ruled out for the 576-wide layer and the solve is what the sentence after it says."""
    import mpqopt

    text = re.search(r"A version-2 file:\n\n```json\n(.*?)```", README, re.S).group(1)
    path = tmp_path / "v2.json"
    path.write_text(text)
    problem = mpqopt.load(path)
    mpqopt.save(problem, tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == text
    sizes = mpqopt.size_bits(problem.params, problem.options, row_lengths=problem.row_lengths)
    assert (sizes == problem.costs["size_bits"]).all()
    assert list(problem.disallowed_reasons()) == [("mm.proj", "Q4_K")]
    result = mpqopt.solve(problem)
    assert result.status == "optimal"
    assert result.assignment == {"blk.0.attn_q": "int4-g64-asym", "blk.0.ffn_down": "int4-g64-asym", "mm.proj": "Q8_0"}
    assert result.assignment == mpqopt.solve(problem, solver="bruteforce").assignment


def test_the_formats_example_prints_what_its_comments_say():
    code = next(b for b in BLOCKS if "from mpqopt.formats import get_format" in b)
    expected = [line.split("#", 1)[1].strip() for line in code.splitlines() if line.startswith("print(")]
    assert run(code) == expected


def test_the_llm_worked_example_prints_what_its_comments_say():
    code = next(b for b in BLOCKS if "llm_problem()" in b)
    expected = [line.split("#", 1)[1].strip() for line in code.splitlines() if line.startswith("print(") and "#" in line]
    assert len(expected) == 4 and run(code) == expected


def test_the_llm_example_runs_on_a_tiny_llama(tmp_path, monkeypatch):
    """The 'From an LLM' flow, with SmolLM2 swapped for a random 2-block Llama and random tokens:
    it writes a GGUF file that loads back and prints the held-out perplexity of the allocation."""
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")
    pytest.importorskip("transformers", reason="transformers is not installed (pip install 'mpqopt[llm]')")
    pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'mpqopt[llm]')")
    from mpqopt.adapters.torch import load_gguf_model
    from mpqopt.examples.llm import tiny_llama

    code = next(b for b in BLOCKS if "mt.write_gguf(model, result" in b)
    assert "load_smollm2()" in code and "source=smollm2_path()" in code
    code = code.replace("load_smollm2()", "tiny()").replace("source=smollm2_path()", "source=None")

    def tokenizer(text, return_tensors):
        return {"input_ids": torch.randint(0, 256, (1, 4096), generator=torch.Generator().manual_seed(len(text)))}

    monkeypatch.chdir(tmp_path)
    printed = run(code, {"tiny": lambda: (tokenizer, tiny_llama()), "text": "held-out and calibration text"})
    assert len(printed) == 1 and 1.0 < float(printed[0]) < float("inf")
    back = load_gguf_model(tmp_path / "smollm2-mixed.gguf")
    assert sum(p.numel() for p in back.parameters()) == sum(p.numel() for p in tiny_llama().parameters())
