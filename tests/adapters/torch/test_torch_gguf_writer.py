"""GGUF files from an allocation (mpqopt.adapters.torch.gguf_writer): transformers' GGUF reader loads
them back to exactly the weights mpqopt's apply gives, so logits and perplexity are equal; metadata
copied from a source file; formats a GGUF file cannot hold are errors naming the layer."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("transformers", reason="transformers is not installed (pip install 'mpqopt[llm]')")
gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'mpqopt[llm]')")

from mpqopt.adapters.torch import apply  # noqa: E402
from mpqopt.adapters.torch.gguf_writer import write_gguf  # noqa: E402
from mpqopt.adapters.torch.llm import discover_llm_layers  # noqa: E402
from mpqopt.adapters.torch.text import perplexity  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402
from llm_helpers import load_gguf_model, tiny_llama, token_batches  # noqa: E402

torch.set_num_threads(1)
FORMATS = ["Q4_0", "Q8_0", "Q5_1", "mxfp4", "BF16", "Q4_1", "Q5_0", "TQ2_0"]


def _allocation(model):
    names = discover_llm_layers(model).names
    # TQ2_0 needs rows of 256: only down_proj (intermediate 256) gets it
    return {n: ("TQ2_0" if n.endswith("down_proj") else FORMATS[i % 7]) for i, n in enumerate(names)}


@pytest.mark.parametrize("tied", [True, False])
def test_loaded_file_equals_apply_weights_logits_and_perplexity(tmp_path, tied):
    model = tiny_llama(tied=tied)
    alloc = _allocation(model)
    types = write_gguf(model, alloc, tmp_path / "m.gguf")
    assert types["token_embd.weight"] == alloc["model.embed_tokens"].upper()
    assert types["blk.1.ffn_down.weight"] == "TQ2_0" and types["blk.0.attn_norm.weight"] == "F32"
    assert ("output.weight" in types) == (not tied)
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    assert {t.name: t.tensor_type.name for t in reader.tensors} == types
    back = load_gguf_model(tmp_path / "m.gguf")
    ours = apply(model, alloc)
    loaded = dict(back.named_parameters())
    for name, p in ours.named_parameters():
        assert torch.equal(p, loaded[name]), name  # bit-exact: same dequantize(quantize(w))
    data = token_batches(batches=3)
    # tolerance: equal weights give equal float32 logits on one machine; allow float32 rounding (1e-6 relative)
    assert perplexity(back, data) == pytest.approx(perplexity(ours, data), rel=1e-6)
    assert perplexity(ours, data) != pytest.approx(perplexity(model, data), rel=1e-4)  # the allocation changed the model


def test_metadata_is_copied_from_a_source_file_and_rest_in_f16(tmp_path):
    model = tiny_llama(tied=True)
    alloc = {"model.layers.0.mlp.down_proj": "Q8_0"}
    write_gguf(model, alloc, tmp_path / "first.gguf")
    types = write_gguf(model, alloc, tmp_path / "second.gguf", source=tmp_path / "first.gguf", rest="F16")
    assert types["blk.0.attn_q.weight"] == "F16" and types["output_norm.weight"] == "F32"
    first, second = gguf.GGUFReader(tmp_path / "first.gguf"), gguf.GGUFReader(tmp_path / "second.gguf")
    def fields(r):
        return {k: (f.types, [f.parts[i].tolist() for i in f.data]) for k, f in r.fields.items() if not k.startswith("GGUF.")}
    assert fields(first) == fields(second)
    back = load_gguf_model(tmp_path / "second.gguf")
    want = apply(model, alloc)
    for name, p in want.named_parameters():
        if name.endswith("down_proj.weight") and ".0." in name or p.dim() == 1:
            assert torch.equal(p, back.get_parameter(name)), name
        else:  # F16 storage of the weights the allocation leaves alone
            assert torch.equal(p.half().float(), back.get_parameter(name)), name


def test_what_a_gguf_file_cannot_hold_is_refused(tmp_path):
    model = tiny_llama(tied=True)
    q = "model.layers.0.self_attn.q_proj"
    with pytest.raises(ProblemError, match=rf"layer '{q}'.*int4-g32 is not a GGUF type"):
        write_gguf(model, {q: "int4-g32"}, tmp_path / "a.gguf")
    with pytest.raises(ProblemError, match=rf"layer '{q}'.*cannot quantize Q4_K"):
        write_gguf(model, {q: "Q4_K"}, tmp_path / "b.gguf")
    with pytest.raises(ProblemError, match=rf"layer '{q}' \(blk.0.attn_q.weight\) cannot take format TQ2_0: row length 64"):
        write_gguf(model, {q: "TQ2_0"}, tmp_path / "c.gguf")
    with pytest.raises(ProblemError, match=r"layer 'lm_head' of the allocation has no weight.*allocate 'model.embed_tokens'"):
        write_gguf(model, {"lm_head": "Q8_0"}, tmp_path / "d.gguf")
    with pytest.raises(ProblemError, match="no storage format"):
        write_gguf(model, {q: "W4"}, tmp_path / "e.gguf")
    with pytest.raises(ProblemError, match="Llama-architecture"):
        write_gguf(torch.nn.Linear(2, 2), {"": "Q8_0"}, tmp_path / "f.gguf")
    assert not any(tmp_path.iterdir())  # nothing half-written left behind
