"""Bad input at the LLM entry points of the PyTorch adapter (issue 17): a model with no blocks, an
allocation naming a layer the model lacks (GGUF spelling, a block past the last, a norm), a type the
gguf package cannot quantize, a row its block does not divide, a source file of another model, a path
that cannot be written. Each is an mpqopt error naming the layer/tensor and format, through ``apply``
and ``write_gguf`` alike, and ``write_gguf`` leaves no file behind."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("transformers", reason="transformers is not installed (pip install 'mpqopt[llm]')")
gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'mpqopt[llm]')")

from torch import nn  # noqa: E402

from mpqopt.adapters.torch import apply  # noqa: E402
from mpqopt.adapters.torch.formats import GGUF_QUANTIZABLE, apply_reason, nearest_quantizable  # noqa: E402
from mpqopt.adapters.torch.gguf_writer import write_gguf  # noqa: E402
from mpqopt.adapters.torch.llm import discover_llm_layers  # noqa: E402
from mpqopt.errors import ArgumentError, FormatError, ProblemError  # noqa: E402
from mpqopt.formats import catalogue, get_format  # noqa: E402
from llm_helpers import tiny_llama  # noqa: E402

torch.set_num_threads(1)
Q = "model.layers.0.self_attn.q_proj"


def _apply(model, allocation, tmp_path):
    return apply(model, allocation)


def _write(model, allocation, tmp_path):
    return write_gguf(model, allocation, tmp_path / "out.gguf")


ENTRY_POINTS = {"apply": _apply, "write_gguf": _write}


@pytest.fixture(scope="module")
def model():
    return tiny_llama(tied=True)


def test_a_model_without_decoder_blocks_is_named():
    with pytest.raises(ProblemError, match="Sequential has no nn.ModuleList of blocks holding nn.Linear"):
        discover_llm_layers(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("layer, why", [
    ("blk.0.attn_q", r"GGUF tensor name: this model calls it 'model\.layers\.0\.self_attn\.q_proj'"),
    ("model.layers.9.self_attn.q_proj", r"'model\.layers' has 2 entries \(0\.\.1\)"),
    ("blk.9.attn_q", r"would be 'model\.layers\.9\.self_attn\.q_proj'.*'model\.layers' has 2 entries"),
    ("model.layers.0.self_attn.qq_proj", r"'model\.layers\.0\.self_attn' holds q_proj, k_proj, v_proj, o_proj"),
    ("model.norm", r"it is a LlamaRMSNorm, not a Conv, Linear or Embedding layer"),
])
def test_a_layer_the_model_lacks_is_named_with_what_would_work(model, tmp_path, entry, layer, why):
    with pytest.raises(ProblemError, match=rf"no quantizable layer named '{layer}'; .*{why}"):
        ENTRY_POINTS[entry](model, {layer: "Q8_0"}, tmp_path)
    assert not any(tmp_path.iterdir())


UNQUANTIZABLE = [f.name for f in catalogue() if f.family == "gguf" and f.gguf_type not in GGUF_QUANTIZABLE]


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("label", ["Q4_K", "Q6_K", "IQ4_XS", "IQ2_XXS"])
def test_a_type_gguf_cannot_quantize_names_layer_and_type_and_types_that_work(model, tmp_path, entry, label):
    with pytest.raises(ProblemError, match=rf"layer '{Q}': option '{label}' cannot be used") as info:
        ENTRY_POINTS[entry](model, {Q: label}, tmp_path)
    suggested = nearest_quantizable(get_format(label))
    assert f"nearest in size that it can: {', '.join(suggested)}" in str(info.value)
    ENTRY_POINTS[entry](model, {Q: suggested[0]}, tmp_path)  # what the message offers does work


@pytest.mark.parametrize("label", UNQUANTIZABLE)
def test_the_suggested_types_are_quantizable_and_nearest_in_size(label):
    fmt = get_format(label)
    assert apply_reason(fmt) is not None
    suggested = nearest_quantizable(fmt)
    assert len(suggested) == 2 and all(apply_reason(get_format(t)) is None for t in suggested)
    blocks = [t for t in GGUF_QUANTIZABLE if get_format(t).family in ("gguf", "mxfp4") and not t.startswith("TQ")]
    gap = sorted(abs(get_format(t).effective_bits - fmt.effective_bits) for t in blocks)
    assert [abs(get_format(t).effective_bits - fmt.effective_bits) for t in suggested] == gap[:2]


@pytest.mark.parametrize("entry, label, block", [("apply", "Q4_0", "32-weight block"), ("apply", "int4-g32", "32-weight group"),
                                                 ("write_gguf", "Q4_0", "32-weight block"), ("write_gguf", "Q8_0", "32-weight block")])
def test_a_row_its_block_does_not_divide_is_named_from_a_plain_allocation(tmp_path, entry, label, block):
    narrow = tiny_llama(tied=False, hidden=48)  # 48-wide rows: no 32-weight block fits
    with pytest.raises(ProblemError, match=rf"layer '{Q}'.* cannot take format {label}: row length 48 is not divisible by {label}'s {block}"):
        ENTRY_POINTS[entry](narrow, {Q: label}, tmp_path)
    assert not any(tmp_path.iterdir())


def _gguf_of(model, path):
    write_gguf(model, {Q: "Q8_0"}, path)
    return path


def test_a_source_file_of_another_model_or_kind_is_refused(model, tmp_path):
    other = _gguf_of(tiny_llama(tied=True, layers=3), tmp_path / "three_blocks.gguf")
    with pytest.raises(FormatError, match=r"another model: its llama\.block_count is 3, the model's is 2") as info:
        write_gguf(model, {Q: "Q8_0"}, tmp_path / "a.gguf", source=other)
    assert str(other) in str(info.value)
    im = gguf.GGUFWriter(str(tmp_path / "im.gguf"), "imatrix")
    im.add_type("imatrix")
    im.write_header_to_file()
    im.write_kv_data_to_file()
    im.write_tensors_to_file()
    im.close()
    with pytest.raises(FormatError, match=r"GGUF file of a Llama model.*general\.type 'imatrix'"):
        write_gguf(model, {Q: "Q8_0"}, tmp_path / "b.gguf", source=tmp_path / "im.gguf")
    with pytest.raises(FormatError, match=r"another model: its vocabulary size is 300, the model's is 256"):
        write_gguf(model, {Q: "Q8_0"}, tmp_path / "v.gguf", source=_gguf_of(tiny_llama(tied=True, vocab=300), tmp_path / "vocab300.gguf"))
    tok = gguf.GGUFWriter(str(tmp_path / "tokens.gguf"), "llama")
    tok.add_token_list([f"t{i}" for i in range(300)])  # a tokenizer of 300 tokens, no llama.vocab_size
    tok.write_header_to_file()
    tok.write_kv_data_to_file()
    tok.write_tensors_to_file()
    tok.close()
    with pytest.raises(FormatError, match=r"another model: its vocabulary size is 300, the model's is 256"):
        write_gguf(model, {Q: "Q8_0"}, tmp_path / "t.gguf", source=tmp_path / "tokens.gguf")
    good = _gguf_of(model, tmp_path / "same.gguf")
    (tmp_path / "cut.gguf").write_bytes(good.read_bytes()[:5000])
    with pytest.raises(FormatError, match="truncated or damaged"):
        write_gguf(model, {Q: "Q8_0"}, tmp_path / "c.gguf", source=tmp_path / "cut.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.gguf", "im.gguf", "same.gguf", "three_blocks.gguf", "tokens.gguf", "vocab300.gguf"]


def test_a_path_that_cannot_be_written_is_named(model, tmp_path):
    with pytest.raises(ArgumentError, match=r"cannot write the GGUF file '.*no_dir/x\.gguf'"):
        write_gguf(model, {Q: "Q8_0"}, tmp_path / "no_dir" / "x.gguf")


def _entry(name):
    from mpqopt.adapters.torch import activation_stats, estimate_gradient_score, estimate_imatrix, estimate_kl_blocks, perplexity

    return {"estimate_kl_blocks": lambda m, b: estimate_kl_blocks(m, b, ["Q8_0"], progress=False),
            "estimate_imatrix": lambda m, b: estimate_imatrix(m, b, ["Q8_0"], progress=False),
            "estimate_gradient_score": lambda m, b: estimate_gradient_score(m, b, ["Q8_0"], progress=False),
            "activation_stats": activation_stats, "perplexity": perplexity}[name]


@pytest.mark.parametrize("entry", ["estimate_kl_blocks", "estimate_imatrix", "estimate_gradient_score", "activation_stats", "perplexity"])
@pytest.mark.parametrize("bad", [256, 999, -1])
def test_token_ids_outside_the_vocabulary_are_named(model, entry, bad):
    good = torch.randint(0, 256, (1, 8), generator=torch.Generator().manual_seed(0))
    ids = good.clone()
    ids[0, 5] = bad
    with pytest.raises(ProblemError, match=rf"batch 1 holds token id {bad}, but the model's vocabulary has 256 ids \(0\.\.255\)"):
        _entry(entry)(model, [{"input_ids": good}, {"input_ids": ids}])


def test_a_gguf_spelled_include_pattern_says_patterns_take_module_names(model):
    with pytest.raises(ProblemError, match=r"include pattern 'blk\.\*' matches no layer.*not GGUF tensor names"):
        discover_llm_layers(model, include="blk.*")


@pytest.mark.parametrize("content", [b"", b"not a GGUF file at all", b"GGUF\x03\x00"])
def test_load_gguf_model_names_a_file_that_is_not_gguf(tmp_path, content):
    pytest.importorskip("transformers", reason="transformers is not installed (pip install 'mpqopt[llm]')")
    pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'mpqopt[llm]')")
    from mpqopt.adapters.torch import load_gguf_model
    from mpqopt.errors import FormatError

    path = tmp_path / "broken.gguf"
    path.write_bytes(content)
    with pytest.raises(FormatError, match="broken.gguf"):
        load_gguf_model(path)
