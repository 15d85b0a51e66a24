"""LIMPQ importance-indicator files, read safely, and the sensitivity table they define.

LIMPQ (Tang et al., ECCV 2022; github.com/1hunters/LIMPQ) stores its learned indicators with
``pickle.dump`` of ``{"weight": {layer: {"6": s, ..., "2": s}}, "act": {...}, "layer_name": [...]}``
(``indicators_pretraining/importance_extractor.py``, read back by ``quantization_search/search.py``)
and extracts them from a ``torch.save`` checkpoint whose ``state_dict`` holds one ``<layer>.quan_w_fn.s``
/ ``<layer>.quan_a_fn.s`` vector per layer (one step size per candidate bit).

A pickle can run any code when loaded, so :func:`load_limpq_indicators` never calls ``pickle.load``:
a plain pickle goes through an unpickler whose ``find_class`` refuses every global (a plain-data
file needs none: dicts, lists, strings and numbers have their own opcodes) and which has no
persistent loader; a ``torch.save`` file (zip, or the legacy format) goes through
``torch.load(..., weights_only=True)``, torch's own allow-list of tensors and containers. JSON is
read as JSON. torch is imported only for ``torch.save`` files.

:func:`indicator_table` turns indicators into ``values[layer, option] = alpha * weight[l][w] +
act[l][a]`` for any list of options (LIMPQ's 25 crossed pairs by default) with LIMPQ's "wired
points" masked (:func:`mpqopt.importers.limpq.wired_points`); add costs and budgets with
:meth:`IndicatorTable.problem`. (:func:`mpqopt.importers.limpq_problem` builds LIMPQ's whole search,
costs included, from the peer JSON files.)

>>> data = {"layer_name": ["a", "b"],
...         "weight": {"a": {"4": 0.1, "2": 0.3}, "b": {"4": 0.2, "2": 0.1}},
...         "act": {"a": {"4": 0.5, "2": 0.9}, "b": {"4": 0.4, "2": 0.6}}}
>>> t = indicator_table(load_limpq_indicators(data), ["W4A4", "W2A4", "W4A2", "W2A2"])
>>> t.values.round(2).tolist()
[[0.7, 1.1, 1.1, 1.5], [0.8, 0.6, 1.0, 0.8]]
>>> t.allowed.tolist()   # layer b's W2 indicator is below its W4 one: a wired point
[[True, True, True, True], [True, False, True, False]]
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import FormatError, ProblemError
from ..options import Option, OptionLike
from ..problem import Problem
from . import get_key, name_list
from .limpq import _indicator_table, wired_points

FULL_PRECISION_BITS = 32  # an option bit at or above this has indicator 0 (nothing is quantized)
# the first object of a legacy (pre-1.6, non-zip) torch.save file: torch's magic number
LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
STEP_SUFFIXES = {"weight": ".quan_w_fn.s", "act": ".quan_a_fn.s"}


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles only what plain data needs: no global is ever looked up, so no callable can be
    reached (``REDUCE``, ``INST``, ``OBJ``, ``NEWOBJ`` and the extension registry all go through
    ``find_class``), and persistent ids are refused."""

    def __init__(self, file: Any, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        raise FormatError(
            f"refusing to unpickle {module}.{name}: an indicator file holds only dicts, lists, strings and numbers "
            "(a pickle naming a class or function can run arbitrary code)",
            source=self.source,
        )

    def persistent_load(self, pid: Any) -> Any:
        raise FormatError("refusing a pickle with persistent ids (not plain data)", source=self.source)


def restricted_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` allowing nothing but plain data; FormatError for anything else.

    >>> import pickle
    >>> restricted_loads(pickle.dumps({"a": [1, 2.5, "x"]}))
    {'a': [1, 2.5, 'x']}
    >>> try:
    ...     restricted_loads(pickle.dumps(print))
    ... except FormatError as exc:
    ...     print(str(exc)[:47])
    <bytes>: $: refusing to unpickle builtins.print
    """
    try:
        return _PlainDataUnpickler(io.BytesIO(data), source).load()
    except FormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError, UnicodeDecodeError, MemoryError) as exc:
        raise FormatError(f"not a readable pickle: {type(exc).__name__}: {exc}", source=source) from None


def _torch_load(path: Path) -> Any:
    try:
        import torch
    except ImportError:
        raise FormatError("this is a torch.save file: reading it needs torch (pip install torch)", source=str(path)) from None
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types; all mean "refused or unreadable"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FormatError(f"torch.load(weights_only=True) refused or could not read it: {first}", source=str(path)) from None


def _read_file(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FormatError("file not found", source=str(path)) from None
    except OSError as exc:
        raise FormatError(f"cannot read: {exc}", source=str(path)) from None
    if zipfile.is_zipfile(io.BytesIO(raw)):
        return _torch_load(path)
    if raw.lstrip()[:1] in (b"{", b"["):
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FormatError(f"cannot read JSON: {exc}", source=str(path)) from None
    obj = restricted_loads(raw, str(path))
    if isinstance(obj, int) and not isinstance(obj, bool) and obj == LEGACY_TORCH_MAGIC:
        return _torch_load(path)  # torch's legacy format starts with this number, then its own records
    return obj


def _plain(obj: Any, where: str, source: str) -> Any:
    """Tensors (from torch.load) to lists, containers to dicts/lists; anything else is refused."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Mapping):
        return {k: _plain(v, f"{where}.{k}", source) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", source) for i, v in enumerate(obj)]
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):  # a torch tensor from weights_only loading
        return obj.detach().cpu().tolist()
    raise FormatError(f"unexpected {type(obj).__name__} (expected numbers, strings, lists or dicts)", where, source)


def _from_state_dict(state: Mapping[str, Any], bits: Sequence[int] | None, source: str) -> dict[str, Any]:
    """LIMPQ's ``importance_extractor.py``: ``<layer>.quan_w_fn.s`` / ``.quan_a_fn.s`` vectors,
    one step per candidate bit in the order of the pretraining config's ``target_bits``."""
    if bits is None:
        raise FormatError("this is a LIMPQ checkpoint (step-size vectors per layer): pass bits=[...] in the order of its target_bits, e.g. [6, 5, 4, 3, 2]", source=source)
    bits = [int(b) for b in bits]
    out: dict[str, Any] = {"layer_name": []}
    for key, value in state.items():
        for kind, suffix in STEP_SUFFIXES.items():
            if isinstance(key, str) and key.endswith(suffix):
                layer = key[: -len(suffix)]
                steps = value if isinstance(value, list) else [value]
                if len(steps) != len(bits):
                    raise FormatError(f"{len(steps)} step sizes but bits={bits} has {len(bits)}", f"$.{key}", source)
                out.setdefault(kind, {})[layer] = {str(b): v for b, v in zip(bits, steps)}
                if kind == "weight":
                    out["layer_name"].append(layer)
    return out


def load_limpq_indicators(source: str | Path | Mapping[str, Any], bits: Sequence[int] | None = None) -> dict[str, Any]:
    """LIMPQ indicators as ``{"layer_name": [...], "weight": {layer: {"6": s, ...}}, "act": {...}}``.

    ``source`` is LIMPQ's pickle, a ``torch.save`` file (of that dict, or a LIMPQ checkpoint, whose
    step-size vectors need ``bits`` in the order of its ``target_bits``), a JSON file with those keys
    (e.g. ``limpq_resnet50_indicators_fixture.json``; other keys are ignored) or such a dict. Values
    come back as Python floats; ``"act"`` is absent when the source has none. Pickles naming any
    class or function are refused without running anything (:func:`restricted_loads`).
    """
    if isinstance(source, Mapping):
        raw, name = source, "<dict>"
    elif isinstance(source, (str, Path)):
        name = str(source)
        raw = _read_file(Path(source))
    else:
        raise FormatError(f"expected a file path or a dict, got {type(source).__name__}")
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        raw = raw["state_dict"]  # a LIMPQ checkpoint: {"state_dict": ..., "epoch": ...}
    if not isinstance(raw, Mapping):
        raise FormatError(f"expected a dict at the top level, got {type(raw).__name__}", source=name)
    suffixes = tuple(STEP_SUFFIXES.values())
    if "weight" not in raw and any(isinstance(k, str) and k.endswith(suffixes) for k in raw):
        # only the step-size vectors are converted: a checkpoint's weights would be millions of floats
        steps = {k: v for k, v in raw.items() if isinstance(k, str) and k.endswith(suffixes)}
        raw = _from_state_dict(_plain(steps, "$", name), bits, name)
    else:
        raw = _plain({k: raw[k] for k in ("layer_name", "weight", "act") if k in raw}, "$", name)
    layers = name_list(get_key(raw, "layer_name", "$", name), "$.layer_name", name)
    if len(set(layers)) != len(layers):
        raise FormatError("duplicate layer names", "$.layer_name", name)
    out: dict[str, Any] = {"layer_name": layers}
    for kind in ("weight", "act"):
        if kind not in raw and kind == "act":
            continue
        table = get_key(raw, kind, "$", name)
        cand = _bits_of(table, layers, f"$.{kind}", name)
        values = _indicator_table(table, layers, cand, f"$.{kind}", name)  # checks every number
        out[kind] = {layer: {str(b): float(v) for b, v in zip(cand, row)} for layer, row in zip(layers, values)}
    return out


def _bits_of(table: Any, layers: Sequence[str], where: str, name: str) -> list[int]:
    """The candidate bits of an indicator table (its first layer's keys, in stored order); every
    layer must have the same ones."""
    if not isinstance(table, Mapping):
        raise FormatError("expected an object {layer: {bit: indicator}}", where, name)
    first = get_key(table, layers[0], where, name)
    if not isinstance(first, Mapping) or not first:
        raise FormatError("expected an object {bit: indicator}", f"{where}.{layers[0]}", name)
    try:
        bits = [int(k) for k in first]
    except (TypeError, ValueError):
        raise FormatError(f"bit keys must be integers like '4', got {list(first)}", f"{where}.{layers[0]}", name) from None
    if any(b <= 0 for b in bits) or len(set(bits)) != len(bits):
        raise FormatError(f"bit keys must be distinct positive integers, got {list(first)}", f"{where}.{layers[0]}", name)
    for layer in layers:
        row = get_key(table, layer, where, name)
        if not isinstance(row, Mapping) or sorted(str(k) for k in row) != sorted(str(b) for b in bits):
            keys = list(row) if isinstance(row, Mapping) else row
            raise FormatError(f"bits {keys} differ from the first layer's {[str(b) for b in bits]}", f"{where}.{layer}", name)
    return bits


@dataclass
class IndicatorTable:
    """LIMPQ's objective coefficients per (layer, option) and its wired-point mask."""

    layers: tuple[str, ...]
    options: tuple[Option, ...]
    values: np.ndarray
    allowed: np.ndarray
    alpha: float
    wired: dict[str, Any] = field(default_factory=dict)

    def problem(self, costs: Mapping[str, Any] | None = None, budgets: Mapping[str, Any] | None = None, **kwargs: Any) -> Problem:
        """A :class:`~mpqopt.Problem` minimising the indicators (wired points disallowed unless
        ``allowed=`` says otherwise)."""
        kwargs.setdefault("allowed", self.allowed)
        meta = {"estimator": "limpq_indicators", "alpha": self.alpha, "wired_points": self.wired, **kwargs.pop("meta", {})}
        return Problem(self.layers, self.options, self.values, costs, budgets, meta=meta, **kwargs)


def indicator_table(source: str | Path | Mapping[str, Any], options: Sequence[OptionLike] | None = None, alpha: float = 2.0) -> IndicatorTable:
    """``values[l, k] = alpha * weight[l][w_k] + act[l][a_k]`` (a term is 0 at 32 bits or more, and
    the activation term 0 for weight-only options) with LIMPQ's wired points disallowed.

    ``options`` defaults to LIMPQ's crossed pairs ``W6A6, W6A5, ..., W2A2`` (its variable order), or
    ``W6 ... W2`` when there are no activation indicators. A layer whose every option would be
    disallowed keeps them all (recorded in ``wired["relaxed_layers"]``).
    """
    data = load_limpq_indicators(source)
    layers = data["layer_name"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not np.isfinite(alpha):
        raise ProblemError(f"alpha must be a finite number, got {alpha!r}")
    tables: dict[str, tuple[list[int], np.ndarray]] = {}
    for kind in ("weight", "act"):
        if kind in data:
            bits = [int(b) for b in data[kind][layers[0]]]
            tables[kind] = (bits, np.array([[data[kind][layer][str(b)] for b in bits] for layer in layers], dtype=np.float64))
    if options is None:
        w_bits = tables["weight"][0]
        options = [Option(w, a) for w in w_bits for a in tables["act"][0]] if "act" in tables else [Option(w) for w in w_bits]
    opts = tuple(Option.parse(o) for o in options)
    if not opts:
        raise ProblemError("options must be a non-empty list")
    L, K = len(layers), len(opts)
    values, allowed = np.zeros((L, K)), np.ones((L, K), dtype=bool)
    wired: dict[str, Any] = {}
    for kind, factor in (("weight", float(alpha)), ("act", 1.0)):
        if kind not in tables:
            continue
        bits, table = tables[kind]
        mask = wired_points(table, bits)
        wired[kind] = [[layers[l], bits[b]] for l, b in zip(*np.nonzero(mask))]
        for k, opt in enumerate(opts):
            bit = opt.w if kind == "weight" else opt.a
            if bit is None or bit >= FULL_PRECISION_BITS:
                continue
            if bit not in bits:
                raise ProblemError(f"option {opt.label}: the {kind} indicators have no {bit}-bit entry (their bits are {bits})")
            values[:, k] += factor * table[:, bits.index(bit)]
            allowed[:, k] &= ~mask[:, bits.index(bit)]
    for opt in opts:
        if opt.a is not None and opt.a < FULL_PRECISION_BITS and "act" not in tables:
            raise ProblemError(f"option {opt.label} has activation bits but the indicators have no 'act' table")
    empty = ~allowed.any(axis=1)
    if empty.any():
        allowed[empty] = True
        wired["relaxed_layers"] = [layers[l] for l in np.nonzero(empty)[0]]
    return IndicatorTable(tuple(layers), opts, values, allowed, float(alpha), wired)
