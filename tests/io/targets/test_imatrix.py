"""llama.cpp imatrix GGUF files (written here with gguf.GGUFWriter as llama-imatrix lays them out) read into
importance vectors and into a Problem whose sensitivity equals an independent loop over the definition."""

from __future__ import annotations

import numpy as np
import pytest

import mpqopt
from mpqopt.errors import FormatError, UnsupportedFormatError
from mpqopt.io.targets import imatrix

gguf = pytest.importorskip("gguf")
KINDS = {"attn_q": (64, 64), "attn_v": (32, 64), "ffn_down": (64, 128)}  # (out, in)


def _write_imatrix(path, shapes, rng, zero_count=None):
    w = gguf.GGUFWriter(str(path), "imatrix")
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", ["calib.txt"])
    w.add_uint32("imatrix.chunk_count", 7)
    w.add_uint32("imatrix.chunk_size", 512)
    sums = {}
    for name, (_, cols) in shapes.items():
        sums[name] = (rng.random((1, cols)) * 50).astype(np.float32)
        count = 0.0 if name == zero_count else 25.0
        w.add_tensor(name + ".in_sum2", sums[name])
        w.add_tensor(name + ".counts", np.array([[count]], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sums


def _model(blocks=2):
    return {f"blk.{b}.{k}.weight": shape for b in range(blocks) for k, shape in KINDS.items()}


def _oracle(weight, importance, dequant):
    """The definition, by explicit loops over input channels."""
    total = 0.0
    for j in range(weight.shape[1]):
        total += importance[j] * float(((weight[:, j].astype(np.float64) - dequant[:, j]) ** 2).sum())
    return total


def _rtn_loop(weight, bits, group, symmetric):
    """Group RTN written out group by group (fp16 scale and zero)."""
    out = np.empty(weight.shape)
    for i in range(weight.shape[0]):
        for g in range(0, weight.shape[1], group):
            x = weight[i, g:g + group].astype(np.float64)
            if symmetric:
                qmax = 2 ** (bits - 1) - 1
                s = float(np.float16(np.abs(x).max() / qmax)) or 1.0
                out[i, g:g + group] = np.clip(np.round(x / s), -qmax - 1, qmax) * s
            else:
                qmax = 2 ** bits - 1
                s = float(np.float16((x.max() - x.min()) / qmax)) or 1.0
                z = float(np.float16(np.round(-x.min() / s)))
                out[i, g:g + group] = (np.clip(np.round(x / s) + z, 0, qmax) - z) * s
    return out


def test_reads_importance_as_llama_quantize_does(tmp_path):
    shapes = _model()
    sums = _write_imatrix(tmp_path / "im.gguf", shapes, np.random.default_rng(0), zero_count="blk.1.attn_v.weight")
    with pytest.warns(UserWarning, match=r"1 imatrix entries have count 0.*blk\.1\.attn_v\.weight.*importance 1"):
        m = imatrix.read_imatrix(tmp_path / "im.gguf")
    assert set(m.entries) == set(shapes) and m.datasets == ("calib.txt",) and (m.chunk_count, m.chunk_size) == (7, 512)
    np.testing.assert_allclose(m.entries["blk.0.attn_q.weight"].values, sums["blk.0.attn_q.weight"] / 25.0, rtol=1e-6)
    assert (m.entries["blk.1.attn_v.weight"].values == 1.0).all()  # count 0: importance 1, as llama-quantize sets


def test_problem_sensitivity_is_the_weighted_error(tmp_path):
    rng = np.random.default_rng(1)
    shapes = _model()
    _write_imatrix(tmp_path / "im.gguf", shapes, rng)
    weights = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    options = ["Q4_0", "Q8_0", "int4-g32-asym", "int3-g64", "BF16"]
    p = imatrix.imatrix_problem(tmp_path / "im.gguf", weights, options)
    m = imatrix.read_imatrix(tmp_path / "im.gguf")
    assert p.layers == tuple(n.removesuffix(".weight") for n in m.entries)
    for li, name in enumerate(m.entries):
        w, imp = weights[name], m.entries[name].values[0]
        for k, label in enumerate(options):
            if label.startswith("int"):
                deq = _rtn_loop(w, int(label[3]), int(label.split("-g")[1].split("-")[0]), not label.endswith("asym"))
            else:
                qtype = gguf.GGMLQuantizationType[label]
                deq = gguf.quants.dequantize(gguf.quants.quantize(w, qtype), qtype)
            assert p.sensitivity[li, k] == pytest.approx(_oracle(w, imp, deq), rel=1e-9, abs=1e-9), (name, label)
    assert (p.sensitivity[:, 1] < p.sensitivity[:, 0]).all()  # Q8_0 errs less than Q4_0
    assert p.costs["size_bits"][0, 0] == 64 * 64 * 4.5 and p.params[0] == 64 * 64
    assert mpqopt.solve(p, budgets={"size_bits": "5bpw"}).status == "optimal"


def test_k_quants_are_refused_or_estimated_and_masked_on_short_rows(tmp_path):
    rng = np.random.default_rng(2)
    shapes = {"blk.0.ffn_down.weight": (8, 256), "blk.0.attn_q.weight": (8, 64)}
    _write_imatrix(tmp_path / "im.gguf", shapes, rng)
    weights = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    with pytest.raises(UnsupportedFormatError, match="blk.0.ffn_down.weight.*Q4_K.*estimate_k_quants"):
        imatrix.imatrix_problem(tmp_path / "im.gguf", weights, ["Q8_0", "Q4_K"])
    p = imatrix.imatrix_problem(tmp_path / "im.gguf", weights, ["Q8_0", "Q4_K"], estimate_k_quants=True, names="hf")
    assert p.layers == ("model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj") and p.meta["estimated_k_quants"]
    assert p.sensitivity[1, 1] > 0 and not p.allowed[0, 1]  # 64-wide rows cannot take a 256-weight super-block
    assert "256" in p.disallowed_reasons()[("model.layers.0.self_attn.q_proj", "Q4_K")]


def test_an_imatrix_for_another_model_is_named(tmp_path):
    rng = np.random.default_rng(3)
    shapes = _model()
    _write_imatrix(tmp_path / "im.gguf", shapes, rng)
    weights = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    wide = dict(weights, **{"blk.1.attn_v.weight": np.zeros((32, 96), np.float32)})
    with pytest.raises(FormatError, match=r"blk\.1\.attn_v\.weight has shape \(32, 96\).*another model"):
        imatrix.imatrix_problem(tmp_path / "im.gguf", wide, ["Q8_0"])
    del weights["blk.0.ffn_down.weight"]
    with pytest.raises(FormatError, match=r"blk\.0\.ffn_down\.weight of the imatrix is not among the weights"):
        imatrix.imatrix_problem(tmp_path / "im.gguf", weights, ["Q8_0"])


def test_a_model_file_is_not_an_imatrix_and_its_weights_read_back(tmp_path):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((16, 64)).astype(np.float32)
    q = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0)
    writer = gguf.GGUFWriter(str(tmp_path / "model.gguf"), "llama")
    writer.add_tensor("blk.0.attn_q.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(FormatError, match="not a llama.cpp imatrix"):
        imatrix.read_imatrix(tmp_path / "model.gguf")
    got = imatrix.gguf_weights(tmp_path / "model.gguf")
    np.testing.assert_array_equal(got["blk.0.attn_q.weight"], gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0))


def _write_entries(path, entries):
    """An imatrix file of ``{tensor: (in_sum2, counts)}`` as given (any values, for damaged files)."""
    w = gguf.GGUFWriter(str(path), "imatrix")
    w.add_type("imatrix")
    for name, (sums, counts) in entries.items():
        w.add_tensor(name + ".in_sum2", np.asarray(sums, np.float32))
        w.add_tensor(name + ".counts", np.asarray(counts, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("damage, which, value", [("negative count", "counts", -3.0), ("NaN count", "counts", np.nan),
                                                 ("negative sum", "in_sum2", -1.0), ("NaN sum", "in_sum2", np.nan),
                                                 ("infinite sum", "in_sum2", np.inf)])
def test_values_no_imatrix_holds_are_named(tmp_path, damage, which, value):
    sums, counts = np.ones((1, 64)), np.array([[5.0]])
    (sums if which == "in_sum2" else counts)[0, 0] = value
    path = _write_entries(tmp_path / "im.gguf", {"blk.0.attn_q.weight": (np.ones((1, 64)), [[5.0]]), "blk.1.attn_q.weight": (sums, counts)})
    with pytest.raises(FormatError, match=rf"imatrix tensor blk\.1\.attn_q\.weight\.{which} .*must be finite and >= 0") as info:
        imatrix.read_imatrix(path)
    assert str(path) in str(info.value)


def test_zero_counts_warn_and_all_zero_counts_are_an_error(tmp_path):
    entries = {f"blk.{b}.attn_q.weight": (np.full((1, 64), 2.0), [[0.0 if b else 4.0]]) for b in range(2)}
    with pytest.warns(UserWarning, match=r"1 imatrix entries have count 0 .*blk\.1\.attn_q\.weight"):
        m = imatrix.read_imatrix(_write_entries(tmp_path / "some.gguf", entries))
    assert (m.entries["blk.1.attn_q.weight"].values == 1.0).all() and (m.entries["blk.0.attn_q.weight"].values == 0.5).all()
    entries["blk.0.attn_q.weight"] = (np.full((1, 64), 2.0), [[0.0]])
    with pytest.raises(FormatError, match=r"every entry of the imatrix has count 0 .*blk\.0\.attn_q\.weight.*no statistics"):
        imatrix.read_imatrix(_write_entries(tmp_path / "none.gguf", entries))


def test_non_finite_weights_and_unmappable_names_are_named(tmp_path):
    path = _write_entries(tmp_path / "im.gguf", {"blk.0.attn_q.weight": (np.ones((1, 64)), [[5.0]])})
    weights = {"blk.0.attn_q.weight": np.ones((8, 64), np.float32)}
    weights["blk.0.attn_q.weight"][3, 5] = np.nan
    with pytest.raises(FormatError, match=r"tensor blk\.0\.attn_q\.weight .*non-finite weights"):
        imatrix.imatrix_problem(path, weights, ["Q8_0"])
    moe = _write_entries(tmp_path / "moe.gguf", {"blk.0.ffn_gate_exps.weight": (np.ones((1, 64)), [[5.0]])})
    with pytest.raises(FormatError, match=r"moe\.gguf: .*blk\.0\.ffn_gate_exps\.weight.*names='gguf'"):
        imatrix.imatrix_problem(moe, {"blk.0.ffn_gate_exps.weight": np.ones((8, 64), np.float32)}, ["Q8_0"], names="hf")
    assert imatrix.imatrix_problem(moe, {"blk.0.ffn_gate_exps.weight": np.ones((8, 64), np.float32)}, ["Q8_0"]).layers == ("blk.0.ffn_gate_exps",)
