"""Intel auto-round: ``layer_config`` from an allocation, and its AutoScheme score caches as a Problem.

Writer schema (auto-round 0.16.1 ``auto_round/schemes.py`` ``QuantizationScheme`` fields ``bits``,
``group_size`` (-1: per channel), ``sym``, ``data_type`` ("int", "fp", "mx_fp", "nv_fp"),
``act_bits``, ``act_group_size``, ``act_sym``, ``act_data_type``, ``act_dynamic``, and the presets
``PRESET_SCHEMES`` / ``GGUF_PRESET_ALIASES``; keys resolved in
``compressors/layer_config_resolver.py``: a key that is a supported layer's name applies to it
alone, any other key is a regex searched in every name, so exact names are written): ``layer_config``
maps a module name to a dict of those fields or to a preset name. GGUF types are written as
auto-round's GGUF presets (``GGUF:Q4_0``, ``GGUF:Q4_K_S`` for Q4_K: the ``_S``/``_M`` file recipes share
one per-layer scheme), for a model exported with ``format="gguf:..."``; F16/BF16/F32 as 16-bit ``fp``.

Reader schema (``auto_round/auto_scheme/delta_loss.py`` ``_save_autoscheme_scores`` /
``_load_autoscheme_scores``, cache schema version 1): one JSON file per scheme,
``{"version": 1, "score_granularity": "per_op", "scheme": {...}, "layer_scores": {layer: [bits, loss]},
"total_params": n, "cache_config": {...}, ...}``. ``bits`` is the layer's total storage in bits under
auto-round's own accounting (``auto_scheme/utils.py`` ``compute_layer_bits``: scales and zero points
included unless ``ignore_scale_zp_bits``) and ``loss`` its measured loss increase. :func:`autoscheme_problem`
turns several such files (one per scheme) into one Problem: options = schemes, sensitivity = loss,
``size_bits`` = bits, so the exact solver re-solves what auto-round measured.

>>> layer_config({"model.layers.0.mlp.up_proj": "int4-g128", "lm_head": "Q6_K"})
{'model.layers.0.mlp.up_proj': {'bits': 4, 'group_size': 128, 'sym': True, 'data_type': 'int', 'act_bits': 16}, 'lm_head': 'GGUF:Q6_K'}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ...errors import FormatError
from ...formats import Format, int_format
from ...options import Option, OptionLike
from ...problem import Problem
from .allocation import Allocation, is_kept_float, pairs, refuse, weight_format
from .names import module_name

TOOL = "auto-round"
_GGUF_PRESET = {"Q4_0": "GGUF:Q4_0", "Q4_1": "GGUF:Q4_1", "Q5_0": "GGUF:Q5_0", "Q5_1": "GGUF:Q5_1", "Q8_0": "GGUF:Q8_0",
                "Q2_K": "GGUF:Q2_K_S", "Q3_K": "GGUF:Q3_K_S", "Q4_K": "GGUF:Q4_K_S", "Q5_K": "GGUF:Q5_K_S", "Q6_K": "GGUF:Q6_K"}
_FP4 = {"mxfp4": ("mx_fp", 32), "nvfp4": ("nv_fp", 16)}


# ---------------------------------------------------------------------- writer
def scheme(layer: str, option: Option) -> dict[str, Any] | str:
    """One layer's ``layer_config`` value: a dict of scheme fields, or a GGUF preset name."""
    fmt: Format = weight_format(TOOL, layer, option)
    act = None if option.a is None or option.a >= 16 else option.a
    if fmt.family == "gguf":
        if fmt.gguf_type not in _GGUF_PRESET or act is not None:
            raise refuse(TOOL, layer, option, f"auto-round's GGUF presets are {', '.join(_GGUF_PRESET)}, weight-only")
        return _GGUF_PRESET[fmt.gguf_type]
    if is_kept_float(fmt) and act is None:
        return {"bits": 16, "data_type": "fp", "act_bits": 16}
    if fmt.family == "int" and fmt.scale_bits == 16 and fmt.zero_bits in (0, 16):
        out = {"bits": fmt.bits, "group_size": -1 if fmt.group_size is None else fmt.group_size, "sym": fmt.symmetric, "data_type": "int"}
        if act is None:
            return {**out, "act_bits": 16}
        if act == 8 and fmt.bits == 8 and fmt.group_size is None and fmt.symmetric:  # the INT8 (W8A8) preset
            return {**out, "act_bits": 8, "act_group_size": -1, "act_sym": True, "act_data_type": "int", "act_dynamic": True}
        raise refuse(TOOL, layer, option, "auto-round's integer activation preset is W8A8 per channel (int8 with -a8)")
    if fmt.name == "fp8-e4m3":
        out = {"bits": 8, "group_size": -1, "data_type": "fp"}
        if act is None:
            return {**out, "act_bits": 16}
        if act == 8:  # the FP8_STATIC preset
            return {**out, "act_bits": 8, "act_group_size": 0, "act_data_type": "fp", "act_dynamic": False, "act_sym": True}
    if fmt.family in _FP4 and act in (None, 4):
        dtype, group = _FP4[fmt.family]
        out = {"bits": 4, "group_size": group, "data_type": dtype}
        if act is None:
            return {**out, "act_bits": 16}
        act_type = "nv_fp4_with_static_gs" if fmt.family == "nvfp4" else "mx_fp"  # the NVFP4 / MXFP4 presets
        return {**out, "act_bits": 4, "act_data_type": act_type, "act_group_size": group, "act_sym": True, "act_dynamic": True}
    raise refuse(TOOL, layer, option, "no auto-round scheme or preset describes it")


def layer_config(allocation: Allocation) -> dict[str, Any]:
    """``{module name: scheme}`` for ``AutoRound(model, layer_config=...)``."""
    return {module_name(layer): scheme(layer, option) for layer, option in pairs(allocation)}


def render(allocation: Allocation) -> str:
    """``layer_config`` as JSON text."""
    return json.dumps(layer_config(allocation), indent=2) + "\n"


# ---------------------------------------------------------------------- reader
def scheme_option(spec: Mapping[str, Any]) -> Option:
    """The mpqopt option of an auto-round scheme dict. Integer schemes become ``int{b}[-g{G}][-asym]``
    (auto-round's GGUF Q4_0/Q5_0/Q8_0 presets have the same fields as int4-g32/int5-g32/int8-g32 and
    read as those), double-quantized GGUF schemes ``Q{b}_K``, ``int_asym_float_zp`` ``Q{b}_1``,
    ``mx_fp``/``nv_fp`` 4-bit ``mxfp4``/``nvfp4``, 8-bit ``fp`` ``fp8-e4m3``, 16 bits ``BF16``; any
    other scheme a plain ``W{bits}`` option (solvable, not exportable). Activation bits below 16 are kept.

    >>> scheme_option({"bits": 4, "group_size": 128, "sym": False, "data_type": "int", "act_bits": 16}).label
    'int4-g128-asym'
    >>> scheme_option({"bits": 4, "group_size": 32, "sym": False, "data_type": "int_asym_dq", "super_bits": 6}).label
    'Q4_K'
    """
    bits = spec.get("bits")
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise FormatError(f"scheme has no positive integer 'bits': {dict(spec)!r}")
    act = spec.get("act_bits")
    act = act if isinstance(act, int) and not isinstance(act, bool) and act < 16 else None
    dtype, group, sym = str(spec.get("data_type", "int")), spec.get("group_size"), spec.get("sym", True)
    fmt: Format | str | None = None
    if bits >= 16:
        fmt = "BF16"
    elif dtype.endswith("_dq") and 2 <= bits <= 6:
        fmt = f"Q{bits}_K"
    elif dtype == "int_asym_float_zp" and bits in (4, 5):
        fmt = f"Q{bits}_1"
    elif dtype == "int" and isinstance(group, int) and not isinstance(group, bool) and (group > 0 or group == -1):
        fmt = int_format(bits, None if group == -1 else group, symmetric=bool(sym))
    elif bits == 4 and dtype.startswith(("mx_fp", "nv_fp")):
        fmt = "mxfp4" if dtype.startswith("mx_fp") else "nvfp4"
    elif bits == 8 and dtype.startswith("fp"):
        fmt = "fp8-e4m3"
    if fmt is None:
        return Option(bits, act)
    return Option(format=fmt, a=act)


def _read(source: str | Path | Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    if isinstance(source, Mapping):
        return source, "<dict>"
    path = Path(source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FormatError("no such file", source=str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"cannot read the JSON of an auto-round score cache: {exc}", source=str(path)) from None
    if not isinstance(data, Mapping):
        raise FormatError("expected a JSON object (an auto-round AutoScheme score cache)", source=str(path))
    return data, str(path)


def _scores(data: Mapping[str, Any], name: str) -> dict[str, tuple[float, float]]:
    if data.get("version") != 1 or data.get("score_granularity") != "per_op":
        raise FormatError(f"not an auto-round AutoScheme score cache of version 1, per_op (version {data.get('version')!r}, "
                          f"score_granularity {data.get('score_granularity')!r})", "$", name)
    table = data.get("layer_scores")
    if not isinstance(table, Mapping) or not table:
        raise FormatError("'layer_scores' must be a non-empty object {layer: [bits, loss]}", "$.layer_scores", name)
    out = {}
    for layer, entry in table.items():
        where = f"$.layer_scores[{json.dumps(layer)}]"
        if not isinstance(entry, Sequence) or isinstance(entry, str) or len(entry) != 2:
            raise FormatError(f"expected [bits, loss], got {entry!r}", where, name)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry):
            raise FormatError(f"expected two numbers [bits, loss], got {entry!r}", where, name)
        bits, loss = float(entry[0]), float(entry[1])
        if not (math.isfinite(bits) and bits > 0 and math.isfinite(loss)):
            raise FormatError(f"bits must be a positive number and loss a finite one, got {entry!r}", where, name)
        out[str(layer)] = (bits, loss)
    return out


def autoscheme_problem(sources: Sequence[str | Path | Mapping[str, Any]], *, options: Sequence[OptionLike] | None = None,
                       params: Mapping[str, float] | None = None) -> Problem:
    """One Problem from auto-round score caches, one file (or parsed dict) per scheme.

    Options come from each file's ``scheme`` (:func:`scheme_option`) unless ``options`` names them, one
    per file; two files of the same option are an error. ``size_bits`` is each layer's ``bits`` from the
    cache; give ``params`` (``{layer: weight count}``) for bits-per-weight budgets. Every file must score
    the same layers (a missing or extra one is named).
    """
    if isinstance(sources, (str, Path, Mapping)) or not sources:
        raise FormatError("give a list of auto-round score cache files, one per scheme")
    read = [_read(s) for s in sources]
    tables = [_scores(data, name) for data, name in read]
    if options is not None and len(options) != len(read):
        raise FormatError(f"{len(options)} options given for {len(read)} score files; give one per file")
    opts = [Option.parse(o) for o in options] if options is not None else [_option(d, n) for d, n in read]
    labels = [o.label for o in opts]
    for k, label in enumerate(labels):
        if labels.index(label) != k:
            raise FormatError(f"two score files are the same option '{label}' ({read[labels.index(label)][1]} and {read[k][1]}); "
                              "pass options= to name them apart")
    layers = list(tables[0])
    for table, (_, name) in zip(tables[1:], read[1:]):
        missing, extra = [n for n in layers if n not in table], [n for n in table if n not in tables[0]]
        if missing or extra:
            what = f"has no score for layer '{missing[0]}'" if missing else f"scores layer '{extra[0]}', which {read[0][1]} does not"
            raise FormatError(f"the score files are not of one model: {what}", "$.layer_scores", name)
    loss = np.array([[t[n][1] for t in tables] for n in layers])
    bits = np.array([[t[n][0] for t in tables] for n in layers])
    weights = None if params is None else [params[n] if n in params else _no_params(n) for n in layers]
    meta = {"source": "auto-round AutoScheme score cache", "files": [name for _, name in read],
            "total_params": read[0][0].get("total_params")}
    return Problem(layers, opts, loss, costs={"size_bits": bits}, cost_units={"size_bits": "bit"}, params=weights, meta=meta)


def _option(data: Mapping[str, Any], name: str) -> Option:
    spec = data.get("scheme")
    if spec is None:
        raise FormatError("missing the 'scheme' object (or pass options= to name the file's option)", "$.scheme", name)
    if not isinstance(spec, Mapping):
        raise FormatError(f"'scheme' is {spec!r}, not an object of scheme fields (bits, group_size, sym, data_type); "
                          "pass options= to name the file's option", "$.scheme", name)
    try:
        return scheme_option(spec)
    except FormatError as exc:
        raise FormatError(exc.message, "$.scheme", name) from None


def _no_params(layer: str) -> float:
    raise FormatError(f"params has no weight count for layer '{layer}'")
