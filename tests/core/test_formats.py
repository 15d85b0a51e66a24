"""The format catalogue (``mpqopt.formats``): every entry's bits per weight against an independent
count (GGUF's own block sizes, the issue's published numbers, a hand count of groups and scales on a
4096 x 4096 layer), name lookup, block divisibility and user formats."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpqopt import ProblemError
from mpqopt.formats import Format, catalogue, format_names, get_format, int_format, register_format, unregister_format

GGUF = [f for f in catalogue() if f.gguf_type is not None]
OTHERS = [f for f in catalogue() if f.gguf_type is None]

# the numbers issue 16 states (bits per weight, from each format's specification)
PUBLISHED = {
    "int4-g128-asym": 4.25, "mxfp4": 4.25, "nvfp4": 4.5, "Q4_0": 4.5, "Q4_1": 5.0, "Q5_0": 5.5, "Q5_1": 6.0, "Q8_0": 8.5,
    "Q2_K": 2.625, "Q3_K": 3.4375, "Q4_K": 4.5, "Q5_K": 5.5, "Q6_K": 6.5625, "IQ4_XS": 4.25, "BF16": 16.0, "F16": 16.0,
}

# scale and zero-point storage of the non-GGUF families as their specifications give them, counted
# here without the catalogue: (data bits, weights per scale or None for per row, scale bits, zero bits)
FP16 = 16


def _spec(name: str) -> tuple[int, int | None, int, int]:
    match = re.fullmatch(r"int(\d+)(?:-g(\d+))?(-asym)?", name)
    if match:
        bits, group, asym = int(match.group(1)), match.group(2), bool(match.group(3))
        return bits, None if group is None else int(group), FP16, FP16 if asym else 0
    return {"mxfp4": (4, 32, 8, 0),      # OCP MX: 32 x E2M1 + one E8M0 scale
            "nvfp4": (4, 16, 8, 0),      # NVFP4: 16 x E2M1 + one E4M3 scale
            "fp8-e4m3": (8, None, 32, 0),  # FP8 weights, fp32 scale per output channel
            "fp8-e5m2": (8, None, 32, 0)}[name]


def _ggml_sizes():
    gguf = pytest.importorskip("gguf", reason="the gguf package (pip install mpqopt[llm]) holds GGML's block sizes")
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    return {t.name: sizes for t, sizes in GGML_QUANT_SIZES.items() if isinstance(t, GGMLQuantizationType)}, gguf


def test_catalogue_holds_the_formats_the_issue_names():
    names = set(format_names())
    wanted = set(PUBLISHED) | {"TQ1_0", "TQ2_0", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "fp8-e4m3"}
    wanted |= {f"int{b}" for b in range(2, 9)}
    wanted |= {f"int{b}-g{g}{kind}" for b in (2, 3, 4, 8) for g in (32, 64, 128) for kind in ("", "-asym")}
    assert wanted <= names, sorted(wanted - names)
    assert len(names) == len(catalogue()), "names are unique"


@pytest.mark.parametrize("fmt", GGUF, ids=lambda f: f.name)
def test_gguf_entries_match_ggml_block_sizes(fmt):
    sizes, _ = _ggml_sizes()
    elements, nbytes = sizes[fmt.gguf_type]
    assert fmt.group_size == elements
    if fmt.block:  # the documented layout adds up to GGML's block
        assert sum(bits for _, bits in fmt.block) == 8 * nbytes
    assert fmt.effective_bits == 8 * nbytes / elements


def test_nvfp4_matches_ggml_nvfp4_bits():
    # GGML packs four 16-weight NVFP4 blocks into one 64-weight block: the same bits per weight
    sizes, _ = _ggml_sizes()
    elements, nbytes = sizes["NVFP4"]
    assert get_format("nvfp4").effective_bits == 8 * nbytes / elements


def test_formats_module_does_not_import_gguf():
    code = "import sys, mpqopt, mpqopt.formats, mpqopt.io; print('gguf' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_bits_per_weight(name):
    assert get_format(name).effective_bits == PUBLISHED[name]


@pytest.mark.parametrize("fmt", OTHERS, ids=lambda f: f.name)
def test_non_gguf_entries_match_a_hand_count_on_a_4096_square_layer(fmt):
    rows = cols = 4096
    bits, group, scale, zero = _spec(fmt.name)
    scales = rows * (cols // group) if group is not None else rows  # one scale (and zero) per group or per row
    expected = rows * cols * bits + scales * (scale + zero)
    assert fmt.storage_bits(rows * cols, row_length=cols) == expected
    assert fmt.bits == bits and fmt.group_size == group
    if group is None:  # without the row length only the data bits are known
        assert fmt.storage_bits(rows * cols) == rows * cols * bits


@pytest.mark.parametrize("fmt", catalogue(), ids=lambda f: f.name)
def test_lookup_ignores_case_and_the_entry_describes_itself(fmt):
    for name in (fmt.name, fmt.name.lower(), fmt.name.upper(), fmt.name.swapcase(), f" {fmt.name} "):
        assert get_format(name) == fmt
    assert fmt.is_builtin
    assert Format.from_dict(fmt.to_dict()) == fmt
    assert f"{fmt.effective_bits:g} bits per weight" in fmt.describe()


def test_aliases():
    assert get_format("fp8") == get_format("fp8-e4m3")
    assert get_format("FP16") == get_format("float16") == get_format("f16")
    assert get_format("bf16").name == "BF16"


@given(st.integers(1, 16), st.none() | st.integers(1, 4096), st.booleans())
def test_integer_scheme_names_read_back(bits, group, symmetric):
    fmt = int_format(bits, group, symmetric)
    assert get_format(fmt.name) == fmt and get_format(fmt.name.upper()) == fmt
    per_group = FP16 + (0 if symmetric else FP16)
    assert fmt.effective_bits == (bits if group is None else bits + per_group / group)
    assert fmt.row_bits == (per_group if group is None else 0)


@pytest.mark.parametrize("name, fragment", [
    ("Q4_KM", "did you mean Q4_K"),
    ("int4-g0", "group size must be a positive integer"),
    ("int0", "bits must be an integer in 1..16"),
    ("int17-g32", "'int17'"),
    ("", "unknown quantization format ''"),
    (7, "must be a string"),
])
def test_unknown_or_bad_names_are_clear_errors(name, fragment):
    with pytest.raises(ProblemError, match=re.escape(fragment)):
        get_format(name)


@pytest.mark.parametrize("fmt", [f for f in catalogue() if (f.group_size or 1) > 1], ids=lambda f: f.name)
def test_block_divisibility(fmt):
    g = fmt.group_size
    for k in (1, 3, 16):
        assert fmt.fits(k * g) is None
        reason = fmt.fits(k * g + 1)
        assert reason is not None and fmt.name in reason and f"{g}-weight" in reason and str(k * g + 1) in reason


def test_per_channel_and_float_formats_fit_every_row_length():
    for name in ("int4", "fp8", "F16", "BF16", "int8-asym"):
        assert all(get_format(name).fits(n) is None for n in (1, 7, 576, 4096))
    assert get_format("Q4_K").fits(576) == "row length 576 is not divisible by Q4_K's 256-weight super-block"
    assert get_format("Q8_0").fits(48) == "row length 48 is not divisible by Q8_0's 32-weight block"
    assert get_format("int4-g128").fits(192) == "row length 192 is not divisible by int4-g128's 128-weight group"


@pytest.fixture
def myq():
    fmt = Format("myq3", "int", 3, group_size=64, scale_bits=8, zero_bits=4, symmetric=False)
    yield fmt
    if "myq3" in [n.lower() for n in format_names()]:
        unregister_format("myq3")


def test_registered_formats(myq):
    with pytest.raises(ProblemError, match="unknown quantization format 'MyQ3'"):
        get_format("MyQ3")
    assert register_format(myq) is myq
    assert get_format("MyQ3") == myq and myq.effective_bits == 3 + 12 / 64
    assert not myq.is_builtin
    assert register_format(myq) is myq  # the same format again is fine
    other = Format("MYQ3", "int", 3, group_size=32, scale_bits=8)
    with pytest.raises(ProblemError, match="already registered"):
        register_format(other)
    register_format(other, replace=True)
    assert get_format("myq3") == other
    unregister_format("myq3")
    with pytest.raises(ProblemError, match="not a registered format"):
        unregister_format("myq3")


@pytest.mark.parametrize("name", ["q4_k", "BF16", "fp8", "int4-g128", "INT5-G7-ASYM"])
def test_builtin_names_cannot_be_registered(name):
    with pytest.raises(ProblemError, match="built in"):
        register_format(Format(name, "int", 4))


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(name="a b", family="int", bits=4), "format name"),
    (dict(name="x", family="int8", bits=4), "family must be one of"),
    (dict(name="x", family="int", bits=0), "'bits'"),
    (dict(name="x", family="int", bits=4.5), "'bits'"),
    (dict(name="x", family="int", bits=4, group_size=0), "group_size"),
    (dict(name="x", family="int", bits=4, group_size=True), "group_size"),
    (dict(name="x", family="int", bits=4, scale_bits=-1), "scale_bits"),
    (dict(name="x", family="int", bits=4, zero_bits=1.5), "zero_bits"),
    (dict(name="x", family="int", bits=4, symmetric="no"), "symmetric"),
    (dict(name="x", family="int", bits=4, act_bits=0), "act_bits"),
    (dict(name="x", family="gguf", bits=4, block=(("d", 16),)), "needs group_size"),
    (dict(name="x", family="gguf", bits=4, group_size=32, block=(("d", 0),)), "block part 0"),
    (dict(name="x", family="gguf", bits=4, group_size=32, block=(("d", 16),)), "under 1 bit per weight"),
    (dict(name="x", family="gguf", bits=4, group_size=32, block="d"), "block must be a list"),
])
def test_bad_format_fields_name_the_format_and_field(kwargs, fragment):
    with pytest.raises(ProblemError, match=re.escape(fragment)):
        Format(**kwargs)


@pytest.mark.parametrize("spec, fragment", [
    ({"name": "x", "family": "int", "bits": 4, "groupsize": 4}, "unknown key 'groupsize'"),
    ({"name": "x", "family": "int"}, "missing 'bits'"),
    ([1, 2], "a name or an object"),
])
def test_format_from_dict_refuses_bad_documents(spec, fragment):
    with pytest.raises(ProblemError, match=re.escape(fragment)):
        Format.from_dict(spec)
