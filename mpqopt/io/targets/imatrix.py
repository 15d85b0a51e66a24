"""llama.cpp importance-matrix (imatrix) GGUF files: the per-input-channel activation statistics, and
the sensitivity table they define once the weights are known.

File schema (llama.cpp ``tools/imatrix/imatrix.cpp`` writer and ``tools/quantize/quantize.cpp``
``load_imatrix``, GGUF imatrix format): ``general.type = "imatrix"``, ``imatrix.datasets`` (str[]),
``imatrix.chunk_count``, ``imatrix.chunk_size``; per weight tensor ``W`` (``blk.0.attn_q.weight``) two
F32 tensors, ``W.in_sum2`` of GGML shape ``[in_features, n_mat]`` (the sum over tokens of each input
channel's squared activation) and ``W.counts`` of shape ``[1, n_mat]`` (tokens seen; ``n_mat`` > 1 for
stacked experts). llama-quantize uses ``in_sum2 / counts`` as the importance of each input channel,
and 1 where a count is 0; :class:`Importance` holds exactly that.

The sensitivity of tensor ``W`` (rows ``i`` = outputs, columns ``j`` = inputs) in format ``f`` is
``sum_j importance_j * sum_i (W_ij - Q_f(W)_ij)**2``: the expected squared output error when the
inputs have those mean squares and are uncorrelated, the objective llama.cpp's quantizers weight
with the imatrix. ``Q_f`` is, for GGUF types, the ``gguf`` package's own ``quantize`` then ``dequantize``
(gguf 0.19 quantizes F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, MXFP4, TQ1_0, TQ2_0 in numpy; its
K-quants raise ``NotImplementedError``); for ``int{b}[-g{G}][-asym]`` a round-to-nearest with fp16
scales (and zero points) per group. K-quants are refused unless ``estimate_k_quants=True``, which
stands each in with that RTN at its sub-block size and symmetry (Q2_K: int2-g16-asym, Q3_K: int3-g16,
Q4_K: int4-g32-asym, Q5_K: int5-g32-asym, Q6_K: int6-g16): an **estimate**, optimistic, since the
real formats store the sub-block scales in 4 to 8 bits and llama.cpp searches them. ``fp8``, ``nvfp4``
and the IQ types cannot be computed here and are refused.

>>> import numpy as np
>>> w = np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32)
>>> importance = np.ones(32)
>>> weighted_error(w, importance, "Q4_0") > weighted_error(w, importance, "Q8_0") > 0
True
>>> weighted_error(w, np.zeros(32), "Q4_0")  # channels that never see activations cost nothing
0.0
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ...costs import size_bits
from ...errors import FormatError, ProblemError, UnsupportedFormatError
from ...formats import Format, get_format, int_format
from ...options import Option, OptionLike
from ...problem import Problem
from .gguf_file import open_gguf
from .names import hf_module_name

_K_ESTIMATE = {"Q2_K": int_format(2, 16, False), "Q3_K": int_format(3, 16), "Q4_K": int_format(4, 32, False),
               "Q5_K": int_format(5, 32, False), "Q6_K": int_format(6, 16)}


@dataclass(frozen=True)
class Importance:
    """One tensor's imatrix entry: ``values[m, j]`` = mean squared activation of input channel ``j``
    over the tokens matrix ``m`` saw (``in_sum2 / counts``, 1 where ``counts`` is 0, as llama-quantize
    reads it); ``counts[m]`` = those tokens. Dense layers have one matrix (``n_mat == 1``)."""

    tensor: str
    values: np.ndarray
    counts: np.ndarray

    @property
    def in_features(self) -> int:
        return int(self.values.shape[1])


@dataclass(frozen=True)
class ImportanceMatrix:
    """Every entry of an imatrix file by GGUF tensor name, with the file's metadata."""

    entries: dict[str, Importance]
    datasets: tuple[str, ...] = ()
    chunk_count: int | None = None
    chunk_size: int | None = None
    source: str = field(default="", compare=False)


def _field(reader: Any, key: str) -> Any:
    item = reader.fields.get(key)
    return None if item is None else item.contents()


def read_imatrix(path: str | os.PathLike[str]) -> ImportanceMatrix:
    """Read an imatrix GGUF file (needs the ``gguf`` package). A file that is not one (missing, empty,
    cut short, another kind of GGUF), an entry without its ``.counts``, with shapes that disagree, or
    with values no imatrix holds (a negative or non-finite sum of squares or count) is a
    ``FormatError`` naming the tensor. Entries with count 0 (tensors that saw no token: unused
    experts, a partial run) get importance 1, as llama-quantize gives them, with a warning naming
    them; a file in which no entry saw a token is an error (it holds no statistics)."""
    reader = open_gguf(path, "reading imatrix files")
    source = str(path)
    kind = _field(reader, "general.type")
    sums, counts = {}, {}
    for tensor in reader.tensors:
        for suffix, table in ((".in_sum2", sums), (".counts", counts)):
            if tensor.name.endswith(suffix):
                table[tensor.name[: -len(suffix)]] = np.asarray(tensor.data, dtype=np.float64)
    if kind != "imatrix" and not sums:
        raise FormatError(f"not a llama.cpp imatrix file (general.type {kind!r}, no '*.in_sum2' tensors)", source=source)
    entries = {}
    for name in sorted(set(sums) | set(counts)):
        if name not in sums or name not in counts:
            missing = ".in_sum2" if name not in sums else ".counts"
            raise FormatError(f"imatrix entry {name} has no {name}{missing} tensor", source=source)
        total, count = np.atleast_2d(sums[name]), counts[name].reshape(-1)
        if total.shape[0] != count.size:
            raise FormatError(f"imatrix entry {name}: {name}.in_sum2 has {total.shape[0]} matrices, {name}.counts {count.size}", source=source)
        for what, values in ((f"{name}.in_sum2 (sums of squared activations)", total), (f"{name}.counts (tokens seen)", count)):
            bad = ~np.isfinite(values) | (values < 0)
            if bad.any():
                raise FormatError(f"imatrix tensor {what} holds {values[bad].flat[0]} ({int(bad.sum())} of {values.size} values); "
                                  "it must be finite and >= 0: the file is damaged or not llama-imatrix's", source=source)
        values = np.where(count[:, None] > 0, total / np.where(count > 0, count, 1.0)[:, None], 1.0)
        entries[name] = Importance(name, values, count)
    unseen = [name for name, e in entries.items() if not (e.counts > 0).all()]
    if entries and not any((e.counts > 0).any() for e in entries.values()):
        raise FormatError(f"every entry of the imatrix has count 0 (no tensor saw a token, e.g. {unseen[0]}): it holds no statistics", source=source)
    if unseen:
        warnings.warn(f"{source}: {len(unseen)} imatrix entries have count 0 for some matrix ({', '.join(unseen[:3])}"
                      f"{', ...' if len(unseen) > 3 else ''}): those channels get importance 1, as llama-quantize gives them", stacklevel=2)
    datasets = _field(reader, "imatrix.datasets") or ()
    return ImportanceMatrix(entries, tuple(datasets) if isinstance(datasets, list) else (str(datasets),),
                            _field(reader, "imatrix.chunk_count"), _field(reader, "imatrix.chunk_size"), source)


# ---------------------------------------------------------------------- quantization error
def _rtn(weight: np.ndarray, fmt: Format) -> np.ndarray:
    """Round-to-nearest on groups along rows, fp16 scales (and zero points): the dequantized weight."""
    rows, cols = weight.shape
    group = cols if fmt.group_size is None else fmt.group_size
    w = weight.astype(np.float64).reshape(rows, cols // group, group)
    if fmt.symmetric:
        qmax = 2 ** (fmt.bits - 1) - 1 if fmt.bits > 1 else 1
        scale = (np.abs(w).max(axis=2, keepdims=True) / qmax).astype(np.float16).astype(np.float64)
        scale[scale == 0] = 1.0
        out = np.clip(np.round(w / scale), -qmax - (fmt.bits > 1), qmax) * scale
    else:
        qmax = 2**fmt.bits - 1
        low, high = w.min(axis=2, keepdims=True), w.max(axis=2, keepdims=True)
        scale = ((high - low) / qmax).astype(np.float16).astype(np.float64)
        scale[scale == 0] = 1.0
        zero = np.round(-low / scale).astype(np.float16).astype(np.float64)
        out = (np.clip(np.round(w / scale) + zero, 0, qmax) - zero) * scale
    return out.reshape(rows, cols)


def dequantized(weight: np.ndarray, fmt: "Format | str", *, estimate_k_quants: bool = False, tensor: str = "tensor") -> np.ndarray:
    """``Q_f(W)``: the weight after quantizing to ``fmt`` and back (see the module docstring)."""
    fmt = get_format(fmt)
    cols = weight.shape[-1]
    why = fmt.fits(cols)
    if why is not None:
        raise UnsupportedFormatError(f"tensor {tensor} cannot take format {fmt.name}: {why}")
    if fmt.family == "int":
        return _rtn(weight, fmt)
    if fmt.gguf_type is not None:
        import gguf

        qtype = gguf.GGMLQuantizationType[fmt.gguf_type]
        try:
            return gguf.quants.dequantize(gguf.quants.quantize(np.ascontiguousarray(weight, dtype=np.float32), qtype), qtype).astype(np.float64)
        except NotImplementedError:
            if estimate_k_quants and fmt.gguf_type in _K_ESTIMATE:
                return _rtn(weight, _K_ESTIMATE[fmt.gguf_type])
            hint = " (estimate_k_quants=True stands in an RTN estimate)" if fmt.gguf_type in _K_ESTIMATE else ""
            raise UnsupportedFormatError(f"tensor {tensor}: the gguf package cannot quantize {fmt.name} in numpy{hint}") from None
    raise UnsupportedFormatError(f"tensor {tensor}: format {fmt.name} cannot be quantized here (numpy has no {fmt.family} type)")


def weighted_error(weight: np.ndarray, importance: np.ndarray, fmt: "Format | str", *, estimate_k_quants: bool = False,
                   tensor: str = "tensor") -> float:
    """``sum_j importance_j * sum_i (W_ij - Q_f(W)_ij)**2`` for a 2-D weight (rows = outputs)."""
    err = (np.asarray(weight, dtype=np.float64) - dequantized(weight, fmt, estimate_k_quants=estimate_k_quants, tensor=tensor)) ** 2
    return float(err.sum(axis=0) @ np.asarray(importance, dtype=np.float64))


# ---------------------------------------------------------------------- problem
def imatrix_problem(imatrix: "ImportanceMatrix | str | os.PathLike[str]", weights: Mapping[str, np.ndarray], options: Sequence[OptionLike],
                    *, tensors: Iterable[str] | None = None, names: str = "gguf", estimate_k_quants: bool = False) -> Problem:
    """The Problem of ``options`` over the imatrix's tensors (or the ``tensors`` named): sensitivity =
    imatrix-weighted quantization error (module docstring), ``size_bits`` in each format's effective
    bits, ``params`` and ``row_lengths`` set. ``weights`` maps GGUF tensor names to arrays of shape
    ``(out, in)`` (``(n_mat, out, in)`` for stacked experts), e.g. from :func:`gguf_weights`. Layers are
    named as GGUF tensors without ``.weight`` (``names="gguf"``) or as HF modules (``names="hf"``).
    A tensor missing from ``weights``, or whose input width is not the imatrix's, is a ``FormatError``
    naming it: the imatrix is for another model. A format a tensor's rows cannot take is left out of
    that layer's mask (``Problem.disallowed_reasons``); other failures name the tensor and format."""
    if names not in ("gguf", "hf"):
        raise FormatError(f"names must be 'gguf' or 'hf', got {names!r}")
    matrix = imatrix if isinstance(imatrix, ImportanceMatrix) else read_imatrix(imatrix)
    opts = [Option.parse(o) for o in options]
    chosen = list(matrix.entries) if tensors is None else list(tensors)
    if not chosen:
        raise FormatError("the imatrix has no entries", source=matrix.source or None)
    layers = [n.removesuffix(".weight") if names == "gguf" else _hf_name(n, matrix.source or None) for n in chosen]
    sens = np.zeros((len(chosen), len(opts)))
    params, rows = [], []
    for li, name in enumerate(chosen):
        if name not in matrix.entries:
            raise FormatError(f"the imatrix has no entry for tensor {name}", source=matrix.source or None)
        entry = matrix.entries[name]
        if name not in weights:
            raise FormatError(f"tensor {name} of the imatrix is not among the weights given: is the imatrix for another model?",
                              source=matrix.source or None)
        w = np.asarray(weights[name])
        stack = w.reshape((1, *w.shape)) if w.ndim == 2 else w
        if stack.ndim != 3 or stack.shape[0] != entry.values.shape[0] or stack.shape[2] != entry.in_features:
            raise FormatError(f"tensor {name} has shape {w.shape}, but the imatrix has {entry.values.shape[0]} matrices of "
                              f"{entry.in_features} input channels: is the imatrix for another model?", source=matrix.source or None)
        if not np.isfinite(stack).all():
            raise FormatError(f"tensor {name} of the model has non-finite weights (NaN or inf) among the weights given: a damaged model file?",
                              source=matrix.source or None)
        params.append(float(w.size))
        rows.append(int(stack.shape[2]))
        for k, opt in enumerate(opts):
            fmt = opt.format
            if fmt is None:
                raise UnsupportedFormatError(f"option '{opt.label}' names no storage format; the imatrix table needs one (e.g. 'Q4_0')")
            if fmt.fits(rows[-1]) is not None:
                continue  # the Problem masks it out, with the reason
            sens[li, k] = sum(weighted_error(stack[m], entry.values[m], fmt, estimate_k_quants=estimate_k_quants, tensor=name)
                              for m in range(stack.shape[0]))
    meta = {"source": "llama.cpp imatrix", "file": matrix.source, "datasets": list(matrix.datasets), "chunk_count": matrix.chunk_count,
            "estimated_k_quants": bool(estimate_k_quants and any(o.format is not None and o.format.gguf_type in _K_ESTIMATE for o in opts))}
    return Problem(layers, opts, sens, costs={"size_bits": size_bits(params, opts, rows)}, cost_units={"size_bits": "bit"},
                   params=params, row_lengths=rows, meta=meta)


def _hf_name(tensor: str, source: str | None) -> str:
    try:
        return hf_module_name(tensor)
    except ProblemError as exc:
        raise FormatError(f"{exc}; names='gguf' keeps the imatrix's own tensor names", source=source) from None


def gguf_weights(path: str | os.PathLike[str], tensors: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Weights of a GGUF model file as float32 arrays ``(out, in)``, dequantized by the ``gguf`` package
    (every type it can dequantize), for the named tensors or every 2-D or 3-D one. A file that cannot
    be read, or a tensor that cannot be dequantized, is a ``FormatError`` naming it."""
    import gguf

    reader = open_gguf(path, "reading GGUF model files")
    source = str(path)
    wanted = None if tensors is None else set(tensors)
    out = {}
    for t in reader.tensors:
        if (wanted is None and len(t.shape) >= 2) or (wanted is not None and t.name in wanted):
            try:
                out[t.name] = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
            except Exception as exc:  # noqa: BLE001 - an unknown or damaged tensor type, named
                raise FormatError(f"cannot dequantize tensor {t.name} (type {getattr(t.tensor_type, 'name', t.tensor_type)}): "
                                  f"{type(exc).__name__}: {exc}", source=source) from None
    if wanted is not None and wanted - set(out):
        raise FormatError(f"the model file has no tensor {sorted(wanted - set(out))[0]}", source=source)
    return out
