"""Sensitivities of an ONNX model's layers: data-free from the weights, or measured with ONNX Runtime.

Every estimator returns a :class:`~mpqopt.adapters.sensitivity.Sensitivity` with the torch adapter's
conventions: ``values[l, k]`` = loss increase (or the method's proxy for it) when layer ``l`` takes
option ``k`` and every other layer stays FP32; options at 32 bits or more score 0 at no cost.
Weights are quantized by :func:`~.quantize.quantize_array` (the torch quantizer's math) in the
weight scheme ``scheme=``: a :class:`~mpqopt.adapters.scheme.WeightScheme`, a dict with keys ``symmetric``,
``per_channel``, ``scale``, or None (symmetric, one scale per output channel along the stored
weight's ``weight_axis``, min/max scale), as in :func:`~.export.fake_quantized_model`.

- :func:`estimate_weight_error`: ``||Q(W) − W||²`` (``kind="mse"``), or the noise-to-signal ratio
  ``||Q(W) − W||² / ||W||²`` (``kind="sqnr"``: ``10^(−SQNR_dB/10)``, 0 at FP32; the SQNR in dB
  is in ``meta["sqnr_db"]``). Data-free.
- :func:`estimate_entropy`: EAGL's entropy of the quantized weights, exactly the table of the torch
  adapter's ``estimate_entropy`` (see :mod:`mpqopt.adapters.torch.estimators.entropy`). Data-free.
- :func:`estimate_delta_output`: quantize one layer's weight in memory, run the calibration batches, and
  measure the metric's change (KL for classifiers, cosine / MSE for embeddings, CE with labels);
  ``std`` is its standard error across batches.
- :func:`estimate_pairwise`: CLADO's cross terms ``Ω_ij = L(q_i, q_j) − L(q_i) − L(q_j) + L(0)`` measured
  the same way, in the torch adapter's convention (``values = ΔL``, ``pairwise = Ω/2`` off the
  diagonal, mirrored; see :mod:`mpqopt.adapters.torch.estimators.pairwise`).

The measured ones build ONE ONNX Runtime session per call (:class:`~.runtime.OnnxEvaluator`: the
weights are graph inputs, perturbed copies are fed), one intra-op thread by default, and show a
progress bar on a terminal; :func:`estimate_delta_output` and :func:`estimate_pairwise` add one session
caching FP32 tensors and one per layer running only the graph after it (:mod:`~.suffix`), where that pays. Options with activation bits (``W4A8``) are not supported by them yet.

>>> from onnx import TensorProto, helper, numpy_helper
>>> rng = np.random.default_rng(0)
>>> inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n) for n, s in (("w1", (4, 8)), ("w2", (8, 3)))]
>>> g = helper.make_graph([helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"), helper.make_node("Relu", ["h"], ["r"]),
...     helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")], "g",
...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], inits)
>>> model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
>>> batches = [{"x": rng.normal(size=(16, 4)).astype(np.float32)} for _ in range(2)]
>>> s = estimate_delta_output(model, batches, [2, 8, 32], mode="suffix", progress=False)
>>> s.layers, s.values.shape, float(s.values[0, 2]), s.meta["forward_passes"]   # 2 references, 2 caching passes, 2 layers x 2 options x 2 batches
(('fc1', 'fc2'), (2, 3), 0.0, 12)
>>> s.meta["mode"], s.meta["full_layers"]   # fc2 runs alone on the cached ReLU output; fc1's suffix is the whole graph
('suffix', {'fc1': 'its suffix is the whole graph'})
>>> p = estimate_pairwise(model, batches, [2, 8], progress=False)
>>> p.pairwise.shape, bool(np.allclose(p.values, s.values[:, :2]))
((4, 4), True)
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ...errors import ProblemError
from ...options import Option, OptionLike
from ...progress import Progress
from ..choices import is_identity, parse_options, quantizes_input
from ..deprecation import deprecated_alias
from ..entropy import MAX_REFERENCE_BITS, code_entropy, entropy_table  # noqa: F401 - MAX_REFERENCE_BITS: importable from here too
from ..pairs import PairFilter, pair_mask, pairwise_terms
from ..scheme import FULL_PRECISION_BITS, parse_scheme
from ..sensitivity import Sensitivity, check_finite, mean_and_stderr
from .layers import OnnxLayer, discover_layers, resolve_layers, stored_weight
from .model import ModelLike, OnnxModel, load_model
from .quantize import grid_codes, quantize_array
from .runtime import MetricFn, OnnxEvaluator
from .suffix import SuffixRuns, check_mode

# what error messages ask the user to check, in this adapter's terms
_CHECK_LOSS = "the model, the inputs and the metric"
_CHECK_TABLE = "the model, inputs and metric"


# ------------------------------------------------------------------------------ shared set-up
def _select(model: OnnxModel, layers: Sequence[str | OnnxLayer] | None, include: Any, exclude: Any) -> list[OnnxLayer]:
    """The layers to score: exact names or layer objects (in that order), else include/exclude."""
    if layers is None:
        return discover_layers(model, include, exclude)
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ProblemError("layers is empty: give layer names, or None for every quantizable layer")
    if all(isinstance(l, str) for l in layers):
        found = resolve_layers(discover_layers(model), layers)
        chosen = [found[n] for n in layers]  # type: ignore[index]
    elif any(isinstance(l, str) for l in layers) or not all(hasattr(l, "name") and hasattr(l, "weight_name") for l in layers):
        raise ProblemError("layers must be all layer names or all layer objects (OnnxLayer, from discover_layers)")
    else:
        chosen = layers  # layer objects with .name, .weight_name and a channel axis
    seen: dict[str, str] = {}
    for layer in chosen:
        other = seen.setdefault(layer.weight_name, layer.name)
        if other != layer.name:
            raise ProblemError(f"layers {other!r} and {layer.name!r} share weight {layer.weight_name!r}: give the weight once")
    if len({l.name for l in chosen}) != len(chosen):
        raise ProblemError(f"layers lists a layer twice: {[l.name for l in chosen]}")
    return chosen


def _axis(layer: Any, sch: Any) -> int | None:
    # the output-channel axis of the weight as stored (OnnxLayer.weight_axis; out_axis for plain objects)
    return getattr(layer, "weight_axis", layer.out_axis) if sch.per_channel else None


def _quantize(w: np.ndarray, bits: int, layer: Any, sch: Any) -> np.ndarray:
    return quantize_array(w, bits, _axis(layer, sch), sch.symmetric, sch.scale)


def _weight(model: OnnxModel, layer: Any) -> np.ndarray:
    if isinstance(layer, OnnxLayer):
        return stored_weight(model, layer)
    value = model.constant(layer.weight_name)
    if value is None:
        raise ProblemError(f"{model.source}: weight {layer.weight_name!r} of layer {layer.name!r} is not an initializer or Constant")
    return value


def _result(names: Sequence[str], opts: tuple[Option, ...], values: np.ndarray, std: np.ndarray | None, method: str,
            pairwise: np.ndarray | None = None, **meta: Any) -> Sensitivity:
    return Sensitivity.checked(names, opts, values, std, method, pairwise, meta, check=_CHECK_TABLE)


# ------------------------------------------------------------------------------ data-free
def estimate_weight_error(
    model: ModelLike,
    options: Sequence[OptionLike],
    *,
    kind: str = "mse",
    layers: Sequence[str | OnnxLayer] | None = None,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    scheme: Any = None,
    per_weight: bool = False,
) -> Sensitivity:
    """Weight quantization error per layer and option (data-free; activation bits are ignored).

    ``kind="mse"``: ``||Q(W) − W||²`` (``per_weight=True``: divided by the weight count);
    ``kind="sqnr"``: ``||Q(W) − W||² / ||W||²``, with the SQNR in dB in ``meta["sqnr_db"]``.
    """
    started = time.perf_counter()
    if kind not in ("mse", "sqnr"):
        raise ProblemError(f"weight_error kind must be 'mse' or 'sqnr', got {kind!r}")
    sch = parse_scheme(scheme)
    m = load_model(model)
    opts = parse_options(options)
    found = _select(m, layers, include, exclude)
    values = np.zeros((len(found), len(opts)))
    power = np.zeros(len(found))
    for i, layer in enumerate(found):
        w = _weight(m, layer).astype(np.float32)
        power[i] = float(np.square(w, dtype=np.float64).sum())
        for k, opt in enumerate(opts):
            if opt.w >= FULL_PRECISION_BITS:
                continue
            q = _quantize(w, opt.w, layer, sch)
            err = float(np.square(q.astype(np.float64) - w).sum())
            values[i, k] = err / (w.size if per_weight else 1) if kind == "mse" else err / power[i] if power[i] > 0 else 0.0
    meta: dict[str, Any] = {"seconds": time.perf_counter() - started, "forward_passes": 0, "backward_passes": 0, "kind": kind, "per_weight": per_weight, "scheme": asdict(sch)}
    if kind == "sqnr":
        with np.errstate(divide="ignore"):
            meta["sqnr_db"] = np.where(values > 0, -10 * np.log10(np.where(values > 0, values, 1.0)), np.inf).tolist()
    return _result([l.name for l in found], opts, values, None, f"weight_{kind}", **meta)


def _layer_entropy(w: np.ndarray, bits: int, layer: Any, sch: Any) -> float:
    codes = grid_codes(w, bits, _axis(layer, sch), sch.symmetric, sch.scale)
    # a channel whose codes share a factor g lies on the coarser grid g*step: count that grid's codes,
    # as the torch estimator does (it recovers the finest step the values fit)
    g = np.gcd.reduce(np.abs(codes), axis=1, keepdims=True)
    return code_entropy(codes // np.where(g > 0, g, 1))


def estimate_entropy(
    model: ModelLike,
    options: Sequence[OptionLike],
    *,
    layers: Sequence[str | OnnxLayer] | None = None,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    scheme: Any = None,
    reference_bits: int | None = None,
    per_weight: bool = False,
) -> Sensitivity:
    """EAGL's table ``n_l · (H_l(b_ref) − H_l(min(w_k, b_ref)))`` in bits (data-free), the torch
    adapter's ``estimate_entropy``: ``H_l(b)`` is the Shannon entropy of the histogram of the layer's
    weight codes at ``b`` bits (pooled over its channels), ``n_l`` its weight count (dropped with
    ``per_weight=True``), ``b_ref`` the largest weight bit-width among the options, capped at 16.
    ``meta["entropies"]`` holds ``H_l`` per layer and option.
    """
    started = time.perf_counter()
    sch = parse_scheme(scheme)
    m = load_model(model)
    opts = parse_options(options)
    found = _select(m, layers, include, exclude)

    def rows() -> Iterator[tuple[int, Callable[[int], float]]]:
        for layer in found:  # one weight in memory at a time
            w = _weight(m, layer)
            yield w.size, lambda bits, w=w, layer=layer: _layer_entropy(w, bits, layer, sch)

    values, entropies, ref = entropy_table(opts, rows(), reference_bits=reference_bits, per_weight=per_weight)
    meta = {"seconds": time.perf_counter() - started, "forward_passes": 0, "backward_passes": 0, "reference_bits": ref,
            "per_weight": per_weight, "entropies": entropies.tolist(), "scheme": asdict(sch)}
    return _result([l.name for l in found], opts, values, None, "entropy", **meta)


# ------------------------------------------------------------------------------ measured
class _Measure:
    """The evaluator and quantized weights one measured estimator call works with."""

    def __init__(self, model: ModelLike, inputs: Any, options: Sequence[OptionLike], output: str | None, metric: str | MetricFn,
                 labels: Sequence[Any] | None, layers: Any, include: Any, exclude: Any, scheme: Any, threads: int):
        self.started = time.perf_counter()
        self.threads = threads
        self.scheme = parse_scheme(scheme)
        self.model = load_model(model)
        self.options = parse_options(options)
        bad = [o.label for o in self.options if quantizes_input(o)]
        if bad:
            raise ProblemError(f"options {bad} quantize activations, which the ONNX Runtime estimators do not support yet; use weight-only options such as 'W4'")
        self.layers = _select(self.model, layers, include, exclude)
        self.names = tuple(l.name for l in self.layers)
        self.ev = OnnxEvaluator(self.model, inputs, output, metric, labels, [l.weight_name for l in self.layers], threads=threads)
        self.base = self.ev.base_losses
        for b, v in enumerate(self.base):
            check_finite(v, f"the unquantized model on batch {b}", _CHECK_LOSS)
        self.live = [k for k, o in enumerate(self.options) if not is_identity(o)]
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def quantized(self, i: int, k: int) -> tuple[str, np.ndarray]:
        """Layer i's weight at option k (computed once)."""
        key = (i, self.options[k].w)
        if key not in self._cache:
            layer = self.layers[i]
            w = self.ev.weights[layer.weight_name]
            q = _quantize(w, self.options[k].w, layer, self.scheme)
            self._cache[key] = q.astype(w.dtype, copy=False)
        return self.layers[i].weight_name, self._cache[key]

    def losses(self, changes: Sequence[tuple[int, int]]) -> np.ndarray:
        """Per-batch losses with each (layer, option) of ``changes`` applied together."""
        out = self.ev.batch_losses(dict(self.quantized(i, k) for i, k in changes))
        for b, v in enumerate(out):
            self.check(v, changes, b)
        return out

    def check(self, loss: float, changes: Sequence[tuple[int, int]], b: int) -> float:
        """``loss`` when finite, else an error naming the changes and the batch."""
        check_finite(loss, " with ".join(f"layer {self.names[i]!r} at {self.options[k].label}" for i, k in changes) + f" (batch {b})", _CHECK_LOSS)
        return loss

    def suffix_runs(self, mode: str, evaluations: int | Sequence[int]) -> SuffixRuns:
        """The runner of one estimator call (whole-graph runs when no option changes anything)."""
        runs = SuffixRuns(self.ev, [l.weight_name for l in self.layers], evaluations=evaluations,
                          mode=check_mode(mode) if self.live else "full", threads=self.threads)
        if not self.live:
            runs.reason = "every option is full precision: nothing to run"
        return runs

    def meta(self, **extra: Any) -> dict[str, Any]:
        return {"seconds": time.perf_counter() - self.started, "forward_passes": self.ev.runs, "backward_passes": 0, "metric": self.ev.metric_name,
                "batches": self.ev.num_batches, "output": self.ev.output_name, "scheme": asdict(self.scheme), **extra}


def measurer(
    model: ModelLike,
    inputs: Any,
    options: Sequence[OptionLike],
    *,
    output: str | None = None,
    metric: str | MetricFn = "auto",
    labels: Sequence[Any] | None = None,
    layers: Sequence[str | OnnxLayer] | None = None,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    scheme: Any = None,
    threads: int = 1,
) -> Callable[[Any], tuple[float, float | None]]:
    """``measure(assignment) -> (loss change, standard error or None)`` with ONNX Runtime, for
    :func:`mpqopt.refine`: every layer of ``assignment`` at its option together (layers it leaves
    out stay FP32), the metric's change over the calibration batches. One session for all calls;
    arguments as :func:`estimate_delta_output`'s (``options``: those the assignments use).

    >>> from onnx import TensorProto, helper, numpy_helper
    >>> w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32), "w")
    >>> g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "g",
    ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], [w])
    >>> model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    >>> batches = [{"x": np.random.default_rng(b).normal(size=(8, 4)).astype(np.float32)} for b in range(2)]
    >>> measure = measurer(model, batches, [2, 32])
    >>> alone = estimate_delta_output(model, batches, [2], progress=False).values[0, 0]
    >>> bool(np.isclose(measure({"fc": "W2"})[0], alone)), measure({"fc": "W32"})[0]
    (True, 0.0)
    """
    s = _Measure(model, inputs, options, output, metric, labels, layers, include, exclude, scheme, threads)
    option_index = {o.label: k for k, o in enumerate(s.options)}
    layer_index = {name: i for i, name in enumerate(s.names)}

    def measure(assignment: Any) -> tuple[float, float | None]:
        changes = []
        for name, value in dict(assignment).items():
            if name not in layer_index:
                raise ProblemError(f"measure: no quantizable layer named {name!r}; layers are {list(s.names)}")
            label = Option.parse(value).label
            if label not in option_index:
                raise ProblemError(f"measure: layer {name!r} takes option {label}, which is not among the measurer's options {list(option_index)}")
            if not is_identity(s.options[option_index[label]]):
                changes.append((layer_index[name], option_index[label]))
        if not changes:
            return 0.0, (0.0 if s.ev.num_batches > 1 else None)
        delta, stderr = mean_and_stderr(s.losses(changes) - s.base)
        return float(delta), (float(stderr) if s.ev.num_batches > 1 else None)

    return measure


def estimate_delta_output(
    model: ModelLike,
    inputs: Any,
    options: Sequence[OptionLike],
    *,
    output: str | None = None,
    metric: str | MetricFn = "auto",
    labels: Sequence[Any] | None = None,
    layers: Sequence[str | OnnxLayer] | None = None,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    scheme: Any = None,
    threads: int = 1,
    mode: str = "auto",
    progress: bool = True,
) -> Sensitivity:
    """Loss increase of quantizing each layer's weight alone: ``values[l, k] = mean_b [loss_b(layer
    l at option k) − loss_b(FP32)]`` over the calibration batches, ``std`` its standard error (None
    with one batch). See :class:`~.runtime.OnnxEvaluator` for ``inputs``, ``output``, ``metric`` and
    ``labels``; ``layers`` (names or :class:`~.layers.OnnxLayer` objects) wins over
    ``include``/``exclude``.

    ``mode="suffix"`` caches, per batch, the FP32 tensors each layer's suffix reads (one pass) and
    runs only the nodes after the layer (:mod:`~.suffix`: one extra session per layer, built once),
    the whole graph where that is impossible or saves nothing; ``mode="auto"`` (default) does so only
    for layers whose runs save more time than their session costs to build (estimated from timings:
    a few runs of a small model keep the whole graph); ``mode="full"`` runs the whole graph for
    every entry. All give the same table (checked in the tests to 1e-6 relative; on the models there
    the same bits). ``meta``: ``forward_passes`` (runs on one batch, suffix runs, the FP32
    references, the caching passes and auto's one timed run included; the suffixes' check on the
    first batch not), ``mode`` (``"suffix"`` when some layer runs its suffix, else ``"full"``),
    ``mode_reason`` (why no layer does), ``full_layers`` (layer -> why it runs the whole graph),
    ``step_fraction`` (nodes run / nodes of as many whole-graph runs).
    """
    s = _Measure(model, inputs, options, output, metric, labels, layers, include, exclude, scheme, threads)
    L, K, nb = len(s.names), len(s.options), s.ev.num_batches
    losses = np.tile(s.base, (L, K, 1))
    start = s.ev.runs
    runs = s.suffix_runs(mode, len(s.live) * nb)
    with Progress(nb * L, "ONNX delta_output", enabled=progress) as bar:
        for b in range(nb):  # batch by batch: one batch's cached tensors in memory at a time
            runs.load(b)
            for i in range(L):
                for k in s.live:
                    out = runs.run(b, i, s.quantized(i, k)[1])
                    losses[i, k, b] = s.check(s.ev.loss_of(b, out), [(i, k)], b)
                bar.update()
    values, std = np.zeros((L, K)), np.zeros((L, K))
    for i in range(L):
        for k in s.live:
            values[i, k], std[i, k] = mean_and_stderr(losses[i, k] - s.base)
    return _result(s.names, s.options, values, std if nb > 1 else None, "delta_output", **s.meta(**_mode_meta(s, runs, start)))


def estimate_pairwise(
    model: ModelLike,
    inputs: Any,
    options: Sequence[OptionLike],
    *,
    window: int | None = None,
    pairs: PairFilter | None = None,
    output: str | None = None,
    metric: str | MetricFn = "auto",
    labels: Sequence[Any] | None = None,
    layers: Sequence[str | OnnxLayer] | None = None,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    scheme: Any = None,
    threads: int = 1,
    mode: str = "auto",
    progress: bool = True,
) -> Sensitivity:
    """CLADO's pairwise sensitivity measured with ONNX Runtime, in the torch estimator's convention:
    ``values`` = :func:`estimate_delta_output`'s table (and ``std``), ``pairwise[l·K+k, m·K+p] = Ω/2`` with
    ``Ω = L(q_lk, q_mp) − L(q_lk) − L(q_mp) + L(0)`` (losses averaged over the batches), mirrored,
    zero diagonal; ``problem.evaluate(x).objective`` is then CLADO's prediction of ``L(x) − L(0)``.

    ``window``: only pairs at most this many layers apart (layer order); ``pairs``: a callable
    ``(layer_a, layer_b) -> bool`` or a list of name pairs. Unmeasured pairs are 0. Cost: one run
    per batch for every (layer, option) and every pair of options of every measured layer pair.
    ``mode`` and the ``meta`` entries it adds as in :func:`estimate_delta_output`: a pair runs the
    suffix of its earlier layer when that suffix holds every node the later one changes (a chain),
    else the whole graph.
    """
    s = _Measure(model, inputs, options, output, metric, labels, layers, include, exclude, scheme, threads)
    L, K, nb = len(s.names), len(s.options), s.ev.num_batches
    mask = pair_mask(s.names, window, pairs)
    layer_pairs = [(int(a), int(b)) for a, b in zip(*np.nonzero(mask))]
    single = np.tile(s.base, (L, K, 1))  # identity options: the FP32 losses
    pair_sum = np.zeros((L * K, L * K))  # loss summed over batches, row = first layer's (layer, option); one matrix, not one per batch
    measured = np.zeros((L * K, L * K), dtype=bool)
    total = L * len(s.live) + len(layer_pairs) * len(s.live) ** 2
    start = s.ev.runs
    runs = s.suffix_runs(mode, _pair_evaluations(L, layer_pairs, len(s.live), nb))
    with Progress(total * nb, "ONNX pairwise", enabled=progress) as bar:
        for b in range(nb):  # batch by batch: one batch's cached tensors in memory at a time
            runs.load(b)
            for i in range(L):
                for k in s.live:
                    single[i, k, b] = s.check(s.ev.loss_of(b, runs.run(b, i, s.quantized(i, k)[1])), [(i, k)], b)
                bar.update(len(s.live))
            for i, j in layer_pairs:
                for k in s.live:
                    for p in s.live:
                        out = runs.run_many(b, {i: s.quantized(i, k)[1], j: s.quantized(j, p)[1]})
                        pair_sum[i * K + k, j * K + p] += s.check(s.ev.loss_of(b, out), [(i, k), (j, p)], b)
                        measured[i * K + k, j * K + p] = True
                bar.update(len(s.live) ** 2)
    values, std, omega_half = pairwise_terms(s.base, single, np.where(measured, pair_sum / nb, np.nan), s.options)
    return _result(s.names, s.options, values, std if nb > 1 else None, "clado", pairwise=omega_half,
                   **s.meta(entries=total, evaluations=total * nb, layer_pairs=len(layer_pairs), **_mode_meta(s, runs, start)))


def _pair_evaluations(L: int, layer_pairs: Sequence[tuple[int, int]], live: int, nb: int) -> list[int]:
    """Runs each layer's suffix may serve: its own entries and those of its pairs (an upper bound)."""
    out = [live * nb] * L
    for i, j in layer_pairs:
        out[i] += live * live * nb
        out[j] += live * live * nb
    return out


def _mode_meta(s: _Measure, runs: SuffixRuns, start: int) -> dict[str, Any]:
    """What ``meta`` says about the suffix runs since ``s.ev.runs`` was ``start``."""
    count = s.ev.runs - start
    return {"mode": runs.mode, "mode_reason": runs.reason, "full_layers": {s.names[i]: why for i, why in runs.reasons.items()},
            "step_fraction": round(runs.steps / (runs.full_steps * count), 4) if count else 0.0}


# ------------------------------------------------------------------------------ deprecated names (one release)
weight_error = deprecated_alias(estimate_weight_error, "weight_error", "mpqopt.adapters.onnx.estimate_weight_error")
entropy = deprecated_alias(estimate_entropy, "entropy", "mpqopt.adapters.onnx.estimate_entropy")
delta_output = deprecated_alias(estimate_delta_output, "delta_output", "mpqopt.adapters.onnx.estimate_delta_output")
pairwise = deprecated_alias(estimate_pairwise, "pairwise", "mpqopt.adapters.onnx.estimate_pairwise")
