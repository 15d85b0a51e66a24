"""auto-round: ``layer_config`` values against auto-round 0.16.1's schemes (not installed here: its
install pulls datasets/pyarrow/pandas; the expected dicts are copied from ``auto_round/schemes.py``
``PRESET_SCHEMES``/``GGUF_PRESET_ALIASES``), and its AutoScheme score caches read into a Problem whose
exact optimum equals the exhaustive one over the cached scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
from oracle import brute_force

import mpqopt
from mpqopt.errors import FormatError, UnsupportedFormatError
from mpqopt.io.targets import autoround

# auto_round/schemes.py presets, as written there
PRESETS = {
    "int4-g128": {"bits": 4, "sym": True, "group_size": 128, "data_type": "int", "act_bits": 16},  # W4A16
    "int8-g32": {"bits": 8, "sym": True, "group_size": 32, "data_type": "int", "act_bits": 16},  # W8A16G32
    "int8-a8": {"bits": 8, "group_size": -1, "data_type": "int", "sym": True, "act_bits": 8, "act_group_size": -1,
                "act_data_type": "int", "act_dynamic": True, "act_sym": True},  # INT8_W8A8
    "mxfp4-a4": {"bits": 4, "group_size": 32, "data_type": "mx_fp", "act_bits": 4, "act_data_type": "mx_fp", "act_group_size": 32,
                 "act_sym": True, "act_dynamic": True},  # MXFP4
    "nvfp4-a4": {"bits": 4, "group_size": 16, "data_type": "nv_fp", "act_bits": 4, "act_data_type": "nv_fp4_with_static_gs",
                 "act_group_size": 16, "act_sym": True, "act_dynamic": True},  # NVFP4
    "fp8-e4m3-a8": {"bits": 8, "group_size": -1, "data_type": "fp", "act_bits": 8, "act_group_size": 0, "act_data_type": "fp",
                    "act_dynamic": False, "act_sym": True},  # FP8_STATIC
    "Q4_K": "GGUF:Q4_K_S", "Q6_K": "GGUF:Q6_K", "Q4_0": "GGUF:Q4_0",
}


@pytest.mark.parametrize("label", sorted(PRESETS))
def test_layer_config_values_are_auto_rounds_schemes(label):
    assert autoround.layer_config({"model.layers.0.mlp.up_proj": label}) == {"model.layers.0.mlp.up_proj": PRESETS[label]}


@pytest.mark.parametrize("label, why", [("IQ4_XS", "GGUF presets"), ("int4-g128-a8", "W8A8"), ("Q4_K-a8", "weight-only"), ("W4", "no storage format")])
def test_refusals_name_layer_and_format(label, why):
    with pytest.raises(UnsupportedFormatError, match=why) as info:
        autoround.layer_config({"blk.7.attn_output": label})
    assert "blk.7.attn_output" in str(info.value) and label in str(info.value)


def _cache(tmp_path, index, scheme, scores):
    """A per-scheme score cache as auto-round's _save_autoscheme_scores writes it."""
    data = {"version": 1, "score_granularity": "per_op", "cache_key": "abc", "cache_config": {"model": "tiny"}, "scheme_index": index,
            "scheme": scheme, "created_at": "2026-01-01T00:00:00", "layer_scores": scores,
            "total_loss_for_scheme": sum(s[1] for s in scores.values()), "total_params": 1000}
    path = tmp_path / f"scheme_{index:02d}_abc.json"
    path.write_text(json.dumps(data))
    return path


def test_score_caches_become_a_problem_with_the_exhaustive_optimum(tmp_path):
    rng = np.random.default_rng(3)
    layers = [f"model.layers.{b}.mlp.{k}" for b in range(2) for k in ("up_proj", "down_proj", "gate_proj")]
    schemes = [PRESETS["int4-g128"] | {"bits": 2}, PRESETS["int4-g128"], PRESETS["int8-g32"]]
    bits = {n: rng.integers(1000, 5000) for n in layers}
    files = [_cache(tmp_path, i, s, {n: [float(bits[n] * s["bits"]), float(rng.random() / s["bits"])] for n in layers})
             for i, s in enumerate(schemes)]
    p = autoround.autoscheme_problem(files)
    assert p.layers == tuple(layers) and p.option_labels == ("int2-g128", "int4-g128", "int8-g32")
    budget = 0.5 * p.costs["size_bits"].sum(axis=0)[1] + 0.5 * p.costs["size_bits"].sum(axis=0)[0]
    result = mpqopt.solve(p, budgets={"size_bits": budget})
    best, _ = brute_force(p, {"size_bits": budget})
    assert result.objective == pytest.approx(best, rel=1e-9, abs=1e-12)
    assert result.assignment is not None and autoround.layer_config(result)  # exportable back to auto-round


def test_score_caches_of_two_models_or_bad_entries_are_named(tmp_path):
    a = _cache(tmp_path, 0, PRESETS["int4-g128"], {"l1": [10.0, 0.1], "l2": [10.0, 0.2]})
    b = _cache(tmp_path, 1, PRESETS["int8-g32"], {"l1": [20.0, 0.0], "l3": [20.0, 0.0]})
    with pytest.raises(FormatError, match="no score for layer 'l2'"):
        autoround.autoscheme_problem([a, b])
    c = _cache(tmp_path, 2, PRESETS["int8-g32"], {"l1": [20.0, 0.0], "l2": ["x", 0.0]})
    with pytest.raises(FormatError, match=r'layer_scores\["l2"\]'):
        autoround.autoscheme_problem([a, c])
    with pytest.raises(FormatError, match="same option 'int4-g128'"):
        autoround.autoscheme_problem([a, a])


BAD_CACHES = {  # case -> (text of the second score file, what the error says, where)
    "missing scheme": ('{"version": 1, "score_granularity": "per_op", "layer_scores": {"l1": [20, 0.0]}}', "missing the 'scheme'", "$.scheme"),
    "scheme a name": ('{"version": 1, "score_granularity": "per_op", "scheme": "W8A16", "layer_scores": {"l1": [20, 0.0]}}',
                      "'scheme' is 'W8A16', not an object", "$.scheme"),
    "NaN loss": ('{"version": 1, "score_granularity": "per_op", "scheme": {"bits": 8}, "layer_scores": {"l1": [20, NaN]}}',
                 "loss a finite one", '$.layer_scores["l1"]'),
    "infinite bits": ('{"version": 1, "score_granularity": "per_op", "scheme": {"bits": 8}, "layer_scores": {"l1": [Infinity, 0.0]}}',
                      "bits must be a positive number", '$.layer_scores["l1"]'),
    "boolean bits": ('{"version": 1, "score_granularity": "per_op", "scheme": {"bits": 8}, "layer_scores": {"l1": [true, 0.0]}}',
                     "two numbers", '$.layer_scores["l1"]'),
    "string score": ('{"version": 1, "score_granularity": "per_op", "scheme": {"bits": 8}, "layer_scores": {"l1": ["20", "0.1"]}}',
                     "two numbers", '$.layer_scores["l1"]'),
    "empty file": ("", "cannot read the JSON", "$"),
    "truncated file": ('{"version": 1, "score_granularity": "per_op", "scheme": {"bi', "cannot read the JSON", "$"),
}


@pytest.mark.parametrize("case", sorted(BAD_CACHES))
def test_a_bad_score_cache_is_a_format_error_naming_file_and_place(tmp_path, case):
    text, why, where = BAD_CACHES[case]
    good = _cache(tmp_path, 0, PRESETS["int4-g128"], {"l1": [10.0, 0.1]})
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(FormatError, match=why) as info:
        autoround.autoscheme_problem([good, bad])
    assert info.value.source == str(bad) and info.value.where == where
