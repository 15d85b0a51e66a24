"""Quantizers for named formats (mpqopt.adapters.torch.formats): group-wise integer RTN against a
plain-Python oracle, GGUF types against the gguf package's own round trip, and what cannot be applied."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'mpqopt[llm]')")
from torch import nn  # noqa: E402

from mpqopt.adapters.torch import apply  # noqa: E402
from mpqopt.adapters.torch.formats import GGUF_QUANTIZABLE, apply_reason, quantize_to_format  # noqa: E402
from mpqopt.adapters.torch.perturb import quantized  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402
from mpqopt.formats import catalogue, get_format  # noqa: E402

torch.set_num_threads(1)


def _fp16(x: float) -> float:
    return float(np.float16(x))


def rtn_oracle(row: list[float], bits: int, group: int, symmetric: bool) -> list[float]:
    """Round to nearest, one group at a time, written out without tensors."""
    out = []
    for start in range(0, len(row), group):
        g = row[start:start + group]
        if symmetric:
            qmax = 2 ** (bits - 1) - 1
            s = _fp16(max(abs(v) for v in g) / qmax)
            out += [0.0 if s == 0 else min(max(float(np.round(v / s)), -qmax - 1), qmax) * s for v in g]
        else:
            qmax = 2**bits - 1
            lo, hi = min(g), max(g)
            s = _fp16((hi - lo) / qmax)
            if s == 0:
                out += [_fp16(lo)] * len(g)
                continue
            z = _fp16(-lo / s)
            out += [(min(max(float(np.round(v / s + z)), 0), qmax) - z) * s for v in g]
    return out


@pytest.mark.parametrize("bits,group,symmetric", list(itertools.product([2, 3, 4, 8], [None, 32, 64, 128], [True, False])))
def test_int_rtn_matches_the_oracle(bits, group, symmetric):
    rng = np.random.default_rng(bits * 1000 + (group or 0) + symmetric)
    w = rng.standard_normal((3, 128)).astype(np.float32)
    w[2, :32] = 0.25  # a constant group: stored exactly (asymmetric) or on the grid
    fmt = get_format(f"int{bits}" + (f"-g{group}" if group else "") + ("" if symmetric else "-asym"))
    got = quantize_to_format(torch.from_numpy(w), fmt).numpy()
    want = np.array([rtn_oracle([float(v) for v in row], bits, group or 128, symmetric) for row in w], dtype=np.float32)
    assert np.allclose(got, want, rtol=0, atol=1e-6)
    # at most 2^b levels per group
    for row in got:
        for start in range(0, 128, group or 128):
            assert len(np.unique(row[start:start + (group or 128)])) <= 2**bits


@pytest.mark.parametrize("name", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "mxfp4", "TQ2_0", "BF16", "F16", "TQ1_0"])
def test_gguf_types_equal_the_gguf_round_trip(name):
    fmt = get_format(name)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 512)).astype(np.float32)
    qtype = gguf.GGMLQuantizationType[fmt.gguf_type]
    want = gguf.quants.dequantize(gguf.quants.quantize(w, qtype), qtype)
    got = quantize_to_format(torch.from_numpy(w), fmt)
    assert got.dtype == torch.float32 and got.shape == (4, 512)
    assert np.array_equal(got.numpy(), want)


def test_more_bits_less_error_across_formats():
    w = torch.randn(8, 256, generator=torch.Generator().manual_seed(0))
    err = {n: float((quantize_to_format(w, get_format(n)) - w).pow(2).sum()) for n in ["TQ2_0", "int3-g32", "Q4_0", "Q5_0", "Q8_0"]}
    assert err["TQ2_0"] > err["int3-g32"] > err["Q4_0"] > err["Q5_0"] > err["Q8_0"] > 0


def test_catalogue_split_into_applicable_and_not():
    ok = {f.name for f in catalogue() if apply_reason(f) is None}
    assert {"Q4_0", "Q8_0", "mxfp4", "BF16", "int4-g128-asym", "fp8-e4m3"} <= ok
    for name in ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS", "IQ2_XXS", "nvfp4"]:
        assert name not in ok
    assert "dequantize" in apply_reason(get_format("Q4_K"))
    assert all(get_format(t).gguf_type == t or get_format(t).name == "mxfp4" for t in GGUF_QUANTIZABLE)


def test_apply_and_perturbation_use_the_format_and_restore():
    model = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    q = apply(model, {"0": "Q4_0", "2": "int4-asym"})
    assert torch.equal(q[0].weight, quantize_to_format(model[0].weight, get_format("Q4_0")))
    assert torch.equal(q[2].weight, quantize_to_format(model[2].weight, get_format("int4-asym")))
    before = model[0].weight.clone()
    with quantized(model, {"0": "int2-g32"}):
        assert torch.equal(model[0].weight, quantize_to_format(before, get_format("int2-g32")))
    assert torch.equal(model[0].weight, before)


def test_formats_a_layer_cannot_take_are_errors_naming_layer_and_format():
    model = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    with pytest.raises(ProblemError, match=r"layer '2' cannot take format Q4_0: row length 8 is not divisible by Q4_0's 32-weight block"):
        apply(model, {"2": "Q4_0"})
    with pytest.raises(ProblemError, match=r"layer '0'.*Q4_K.*dequantize"):
        apply(model, {"0": "Q4_K"})
    with pytest.raises(ProblemError, match=r"layer '0'.*nvfp4"):
        with quantized(model, {"0": "nvfp4"}):
            pass
