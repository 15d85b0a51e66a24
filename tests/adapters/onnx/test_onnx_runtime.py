"""The ONNX adapter's ONNX Runtime side: numpy quantizer, one-session evaluator, sensitivities.

Independent checks: the torch quantizer (bit-equal), ONNX Runtime's own QuantizeLinear /
DequantizeLinear (grid_params), models with the quantized weights baked in (the in-session
overrides), and the torch adapter's estimators on the same network (digits CNN exported to ONNX;
BN folds into the convs, which per-channel symmetric quantization does not see beyond rounding).
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from scipy.special import log_softmax  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from mpqopt.adapters.onnx.layers import discover_layers  # noqa: E402
from mpqopt.adapters.onnx.quantize import grid_codes, grid_params, quantize_array  # noqa: E402
from mpqopt.adapters.onnx.runtime import OnnxEvaluator  # noqa: E402
from mpqopt.adapters.onnx.sensitivity import estimate_delta_output, estimate_entropy, estimate_pairwise, estimate_weight_error  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out

SCHEMES = [(sym, pc, sc) for sym in (True, False) for pc in (True, False) for sc in ("minmax", "mse")]


def _session(proto: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def mlp(w1: np.ndarray, w2: np.ndarray, *, constant_w2: bool = False, opset: int = 17, ir: int = 8, custom: bool = False) -> onnx.ModelProto:
    """x @ w1 -> Relu -> @ w2, weights stored [in, out] (w2 optionally as a Constant node)."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Foo" if custom else "Relu", ["h"], ["r"], name="act", domain="my.ops" if custom else ""),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")]
    inits = [numpy_helper.from_array(w1, "w1")]
    if constant_w2:
        nodes.insert(0, helper.make_node("Constant", [], ["w2"], name="w2_const", value=numpy_helper.from_array(w2, "w2_value")))
    else:
        inits.append(numpy_helper.from_array(w2, "w2"))
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", w1.shape[0]])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", w2.shape[1]])], inits)
    ops = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("my.ops", 1)] if custom else [])
    return helper.make_model(g, opset_imports=ops, ir_version=ir)


@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(6, 8)).astype(np.float32)
    w2 = rng.normal(size=(8, 4)).astype(np.float32)
    batches = [{"x": rng.normal(size=(12, 6)).astype(np.float32)} for _ in range(3)]
    return w1, w2, batches


# ------------------------------------------------------------------------------ quantizer
@pytest.mark.parametrize("symmetric,per_channel,scale", SCHEMES)
def test_quantize_array_equals_torch_quantizer(symmetric, per_channel, scale):
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")
    from mpqopt.adapters.torch.quantizer import WeightScheme, quantize_weight

    scheme = WeightScheme(symmetric, per_channel, scale)
    rng = np.random.default_rng(SCHEMES.index((symmetric, per_channel, scale)))
    for trial, shape in enumerate([(16, 8), (8, 4, 3, 3), (33,), (5, 7), (3, 1)] * 4):
        w = (rng.standard_t(3, size=shape) * rng.uniform(0.01, 3)).astype(np.float32)
        if trial % 3 == 0 and len(shape) > 1:
            w[1] = 0.0  # an all-zero output channel stays zero
        for bits in (2, 3, 4, 8, 32):
            expected = quantize_weight(torch.from_numpy(w), bits, scheme).numpy()
            got = quantize_array(w, bits, axis=0 if per_channel else None, symmetric=symmetric, scale=scale)
            assert got.dtype == np.float32
            _same_to_float32(got, expected, w, per_channel, scale, (shape, bits))
            if per_channel and w.ndim > 1:  # a weight stored [in, out] (ONNX MatMul): channels on the last axis
                moved = quantize_array(np.moveaxis(w, 0, -1).copy(), bits, axis=-1, symmetric=symmetric, scale=scale)
                _same_to_float32(np.moveaxis(moved, -1, 0), expected, w, per_channel, scale, (shape, bits, "axis -1"))


def _same_to_float32(got, expected, w, per_channel, scale, where):
    """Bit-equal, except that the MSE search may pick another clipping ratio where two ratios' float32
    error sums tie to rounding (torch and numpy sum in different orders; about 1 tensor in 10,000):
    then both choices' errors must agree to float32 precision."""
    if np.array_equal(got, expected):
        return
    assert scale == "mse", where
    rows = (lambda a: a.reshape(a.shape[0], -1)) if per_channel and w.ndim > 1 else (lambda a: a.reshape(1, -1))
    g, e, f = rows(got).astype(np.float64), rows(expected).astype(np.float64), rows(w).astype(np.float64)
    differ = (g != e).any(axis=1)
    assert np.allclose(((g - f) ** 2).sum(1)[differ], ((e - f) ** 2).sum(1)[differ], rtol=1e-6, atol=0), where


@pytest.mark.parametrize("symmetric,per_channel,scale", SCHEMES)
def test_grid_params_agree_with_onnxruntime_qdq(symmetric, per_channel, scale):
    """8 bits: ONNX Runtime's QuantizeLinear -> DequantizeLinear with grid_params' scale and zero
    point reproduces quantize_array; grid_codes * scale does too."""
    rng = np.random.default_rng(3)
    w = (rng.standard_t(3, size=(8, 37)) * 0.7).astype(np.float32)
    for axis in ((0, 1) if per_channel else (None,)):
        s, z = grid_params(w, 8, axis, symmetric, scale)
        attrs = {} if axis is None else {"axis": axis}
        g = helper.make_graph([helper.make_node("QuantizeLinear", ["w", "s", "z"], ["q"], **attrs), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **attrs)], "qdq",
                              [helper.make_tensor_value_info("w", TensorProto.FLOAT, list(w.shape))], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(s, "s"), numpy_helper.from_array(z.astype(np.int8 if symmetric else np.uint8), "z")])
        y = _session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)).run(None, {"w": w})[0]
        q = quantize_array(w, 8, axis, symmetric, scale)
        assert np.array_equal(y, q)
        codes = grid_codes(w, 8, axis, symmetric, scale)
        rows = np.moveaxis(q, axis, 0).reshape(q.shape[axis], -1) if axis is not None else q.reshape(1, -1)
        assert np.array_equal((codes * s.reshape(-1, 1)).astype(np.float32), rows)


def test_quantizer_rejects_bad_arguments():
    w = np.ones((2, 2), np.float32)
    with pytest.raises(ProblemError, match="at least 2 bits"):
        quantize_array(w, 1)
    with pytest.raises(ProblemError, match="scale method"):
        quantize_array(w, 4, scale="max")
    with pytest.raises(ProblemError, match="axis 2 is out of range"):
        quantize_array(w, 4, axis=2)
    with pytest.raises(ProblemError, match="floating-point"):
        quantize_array(np.ones(3, np.int64), 4)
    assert np.array_equal(quantize_array(np.zeros((2, 3), np.float32), 4, axis=0), np.zeros((2, 3)))


# ------------------------------------------------------------------------------ evaluator
def test_one_session_per_estimator_call(small, monkeypatch):
    w1, w2, batches = small
    real = ort.InferenceSession
    made = []

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            made.append(kwargs.get("sess_options") or (args[1] if len(args) > 1 else None))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", Counting)
    s = estimate_delta_output(mlp(w1, w2), batches, [2, 3, 4, 32], mode="full", progress=False)
    assert len(made) == 1 and s.meta["forward_passes"] == 3 + 2 * 3 * 3
    assert made[0].intra_op_num_threads == 1
    made.clear()
    # cached: + one session caching the ReLU output and one for fc2's suffix, whatever the batch count
    s = estimate_delta_output(mlp(w1, w2), batches * 2, [2, 3, 4, 32], mode="suffix", progress=False)
    assert len(made) == 3 and s.meta["forward_passes"] == 6 + 6 + 2 * 3 * 6
    assert [m.intra_op_num_threads for m in made] == [1, 1, 1]
    made.clear()
    p = estimate_pairwise(mlp(w1, w2), batches, [2, 3, 32], mode="full", progress=False)
    assert len(made) == 1 and p.meta["forward_passes"] == 3 + (2 * 2 + 1 * 2 * 2) * 3
    made.clear()
    p = estimate_pairwise(mlp(w1, w2), batches, [2, 3, 32], mode="suffix", progress=False)  # fc2's suffix serves fc2 alone
    assert len(made) == 3 and p.meta["forward_passes"] == 3 + 3 + (2 * 2 + 1 * 2 * 2) * 3


def test_overrides_equal_models_with_baked_weights(digits_onnx):
    """The perturbed output of the one session equals that of a separate model whose initializer
    holds the quantized weight (and the caller's model is left untouched)."""
    path, batches, _ = digits_onnx
    layers = discover_layers(path)
    proto = onnx.load(path)
    before = proto.SerializeToString()
    ev = OnnxEvaluator(proto, batches, weights=[l.weight_name for l in layers])
    assert proto.SerializeToString() == before
    stored = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert np.allclose(ev.references[0], _session(proto).run(None, batches[0])[0], rtol=1e-5, atol=1e-5)
    for layer, bits in zip(layers, (2, 3, 4, 2, 3)):
        q = quantize_array(stored[layer.weight_name], bits, axis=layer.weight_axis)
        baked = onnx.ModelProto()
        baked.CopyFrom(proto)
        for t in baked.graph.initializer:
            if t.name == layer.weight_name:
                t.CopyFrom(numpy_helper.from_array(q, layer.weight_name))
        for b in (0, 2):
            want = _session(baked).run(None, batches[b])[0]
            got = ev.run(b, {layer.weight_name: q})
            assert np.allclose(got, want, rtol=1e-5, atol=1e-5), layer.name
            assert not np.allclose(got, ev.references[b], atol=1e-4)  # the perturbation did something
    assert np.array_equal(ev.run(1), ev.references[1])  # no override: the FP32 weights again


def test_constant_weight_and_intermediate_output(small):
    w1, w2, batches = small
    ev = OnnxEvaluator(mlp(w1, w2, constant_w2=True), batches, output="h", metric="mse", weights=["w1", "w2"])
    h = batches[0]["x"] @ w1
    assert np.allclose(ev.references[0], h, rtol=1e-5, atol=1e-5)
    assert np.allclose(ev.run(0, {"w1": 2 * w1}), 2 * h, rtol=1e-5, atol=1e-5)
    full = OnnxEvaluator(mlp(w1, w2, constant_w2=True), batches, metric="mse", weights=["w2"])
    y = np.maximum(h, 0) @ (0.5 * w2)
    assert np.allclose(full.run(0, {"w2": 0.5 * w2}), y, rtol=1e-5, atol=1e-5)


def test_metrics_against_hand_computation(small):
    w1, w2, batches = small
    labels = [np.arange(len(b["x"])) % 4 for b in batches]
    half = {"w2": 0.5 * w2}
    out = [np.maximum(b["x"] @ w1, 0) @ (0.5 * w2) for b in batches]
    ref = [np.maximum(b["x"] @ w1, 0) @ w2 for b in batches]
    hand = {
        "ce": [-log_softmax(o.astype(np.float64), axis=1)[np.arange(len(t)), t].mean() for o, t in zip(out, labels)],
        "kl": [(np.exp(log_softmax(r, axis=1)) * (log_softmax(r, axis=1) - log_softmax(o, axis=1))).sum(axis=1).mean() for o, r in zip(out, ref)],
        "mse": [np.mean((o - r) ** 2) for o, r in zip(out, ref)],
        # an all-zero row (every hidden unit off) has similarity 0, as torch.cosine_similarity's eps gives
        "cosine": [1 - np.mean((o * r).sum(1) / np.maximum(np.linalg.norm(o, axis=1), 1e-8) / np.maximum(np.linalg.norm(r, axis=1), 1e-8)) for o, r in zip(out, ref)],
    }
    for metric, want in hand.items():
        ev = OnnxEvaluator(mlp(w1, w2), batches, metric=metric, labels=labels if metric == "ce" else None, weights=["w2"])
        assert np.allclose(ev.batch_losses(half), want, rtol=1e-5, atol=1e-7), metric
    auto = OnnxEvaluator(mlp(w1, w2), [(b["x"], t) for b, t in zip(batches, labels)], weights=["w2"])  # (array, labels) batches
    assert auto.metric_name == "ce" and np.allclose(auto.batch_losses(half), hand["ce"], rtol=1e-5)
    custom = OnnxEvaluator(mlp(w1, w2), batches, metric=lambda o, r, t: float(np.abs(o - r).max()), weights=["w2"])
    assert np.allclose(custom.batch_losses(half), [np.abs(o - r).max() for o, r in zip(out, ref)], rtol=1e-5)


# ------------------------------------------------------------------------------ sensitivities
def test_delta_output_agrees_with_torch_on_digits(digits_bed, digits_onnx):
    """Same network, two adapters: the ONNX delta_output (CE to the labels) matches the torch
    adapter's delta_loss, in ranking and in value (BN folding only changes float rounding)."""
    from mpqopt.adapters.torch.estimators.delta_loss import estimate_delta_loss

    path, batches, labels = digits_onnx
    opts = [2, 3, 4, 8]
    s = estimate_delta_output(path, batches, opts, labels=labels, mode="suffix", progress=False)
    assert s.meta["metric"] == "ce" and s.meta["forward_passes"] == 3 + 3 + 5 * 4 * 3  # references, caching passes, entries
    assert [l.framework_name for l in discover_layers(path)] == ["0", "3", "7", "12", "14"]
    t = estimate_delta_loss(digits_bed.model, [(digits_bed.test_x[i : i + 180], digits_bed.test_y[i : i + 180]) for i in range(0, 540, 180)], opts)
    rho = spearmanr(s.values.ravel(), t.values.ravel()).statistic
    assert rho > 0.95, rho
    assert np.allclose(s.values, t.values, rtol=1e-4, atol=2e-6)
    assert np.allclose(s.std, t.std, rtol=1e-3, atol=2e-6)
    assert s.values[0, 0] == s.values[:, 0].max()  # the first conv is the most sensitive at W2 (testbeds.md)


@pytest.mark.parametrize("symmetric,per_channel,scale", [(True, True, "minmax"), (False, True, "mse"), (True, False, "minmax")])
def test_matmul_weights_quantized_per_output_column(symmetric, per_channel, scale):
    """MatMul weights are stored [in, out]: quantizing per output channel must give what torch
    gives for the nn.Linear holding the transposed weight (KL to FP32, unlabelled batches)."""
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")
    from torch import nn

    from mpqopt.adapters.torch.estimators.delta_loss import estimate_delta_loss
    from mpqopt.adapters.torch.quantizer import WeightScheme

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Linear(8, 5, bias=False)).eval()
    data = [torch.randn(16, 6) for _ in range(2)]
    model = mlp(net[0].weight.detach().numpy().T.copy(), net[2].weight.detach().numpy().T.copy(), constant_w2=True)
    scheme = WeightScheme(symmetric, per_channel, scale)  # the torch adapter's scheme object works for both
    s = estimate_delta_output(model, [{"x": x.numpy()} for x in data], [2, 3, 4], scheme=scheme, progress=False)
    t = estimate_delta_loss(net, data, [2, 3, 4], loss="kl", scheme=scheme)
    assert s.meta["metric"] == "kl" and s.meta["scheme"] == {"symmetric": symmetric, "per_channel": per_channel, "scale": scale}
    assert np.allclose(s.values, t.values, rtol=1e-4, atol=1e-7)


def test_pairwise_matches_torch_and_hand_identity(digits_bed, digits_onnx):
    """The ONNX CLADO matrix equals the torch adapter's (same index/factor convention), and a few
    entries equal Ω_ij = L(q_i, q_j) − L(q_i) − L(q_j) + L(0) from models with the weights baked in."""
    from mpqopt.adapters.torch.estimators.pairwise import clado_matrix
    from mpqopt.adapters.torch.estimators.pairwise import estimate_pairwise as torch_pairwise

    path, batches, labels = digits_onnx
    batches, labels = batches[:2], labels[:2]
    opts = [2, 4, 32]
    s = estimate_pairwise(path, batches, opts, labels=labels, progress=False)
    L, K = 5, 3
    assert s.method == "clado" and s.pairwise.shape == (L * K, L * K) and s.meta["layer_pairs"] == 10
    assert np.allclose(s.pairwise, s.pairwise.T) and not np.diag(s.pairwise).any()
    assert not s.pairwise.reshape(L, K, L, K)[:, 2].any() and not s.pairwise.reshape(L, K, L, K)[:, :, :, 2].any()  # W32: no interaction
    data = [(digits_bed.test_x[i : i + 180], digits_bed.test_y[i : i + 180]) for i in range(0, 360, 180)]
    t = torch_pairwise(digits_bed.model, data, opts, progress=False)
    assert np.allclose(s.values, t.values, atol=2e-6) and np.allclose(s.pairwise, t.pairwise, atol=2e-6)
    assert np.allclose(clado_matrix(s), clado_matrix(t), atol=4e-6)

    proto = onnx.load(path)
    layers = discover_layers(path)
    stored = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}

    def loss(changes):  # mean CE over the batches of a model with these weights baked in
        baked = onnx.ModelProto()
        baked.CopyFrom(proto)
        for init in baked.graph.initializer:
            for i, bits in changes:
                if init.name == layers[i].weight_name:
                    init.CopyFrom(numpy_helper.from_array(quantize_array(stored[init.name], bits, axis=layers[i].weight_axis), init.name))
        sess = _session(baked)
        ce = [-log_softmax(sess.run(None, b)[0].astype(np.float64), axis=1)[np.arange(len(y)), y].mean() for b, y in zip(batches, labels)]
        return float(np.mean(ce))

    base = loss([])
    for (i, k), (j, p) in [((0, 0), (1, 0)), ((0, 1), (4, 0)), ((2, 0), (3, 1))]:
        omega = loss([(i, opts[k]), (j, opts[p])]) - loss([(i, opts[k])]) - loss([(j, opts[p])]) + base
        assert np.isclose(2 * s.pairwise[i * K + k, j * K + p], omega, rtol=1e-4, atol=2e-6), (i, k, j, p)
        assert np.isclose(s.values[i, k], loss([(i, opts[k])]) - base, rtol=1e-4, atol=2e-6)
    # the problem's objective is CLADO's prediction: ΔL_i + ΔL_j + Ω_ij for two quantized layers
    x = [0, 0, 2, 2, 2]
    pred = s.problem().evaluate(x).objective
    assert np.isclose(pred, s.values[0, 0] + s.values[1, 0] + 2 * s.pairwise[0, K], rtol=1e-9)


def test_pairwise_window_and_pairs_restrict(small):
    w1, w2, batches = small
    full = estimate_pairwise(mlp(w1, w2), batches, [2, 4])  # a progress bar by default (quiet: stderr is no terminal here)
    none = estimate_pairwise(mlp(w1, w2), batches, [2, 4], window=0, progress=False)
    listed = estimate_pairwise(mlp(w1, w2), batches, [2, 4], pairs=[("fc2", "fc1")], progress=False)
    assert none.meta["layer_pairs"] == 0 and not none.pairwise.any() and np.allclose(none.values, full.values)
    assert listed.meta["layer_pairs"] == 1 and np.allclose(listed.pairwise, full.pairwise) and full.pairwise.any()
    with pytest.raises(ProblemError, match="unknown layer 'fc3'"):
        estimate_pairwise(mlp(w1, w2), batches, [2, 4], pairs=[("fc1", "fc3")], progress=False)


@pytest.mark.parametrize("old,new,kwargs", [
    ("delta_output", "estimate_delta_output", {"progress": False}),
    ("pairwise", "estimate_pairwise", {"progress": False}),
    ("entropy", "estimate_entropy", {}),
    ("weight_error", "estimate_weight_error", {"kind": "sqnr"}),
])
def test_old_estimator_names_are_deprecated_aliases(small, old, new, kwargs):
    """The ONNX estimators' old names (one release) warn naming the ``estimate_*`` spelling, which
    matches the PyTorch adapter's, and give the same table."""
    import mpqopt.adapters.onnx as mo

    w1, w2, batches = small
    args = (mlp(w1, w2), batches, [2, 4, 32]) if old in ("delta_output", "pairwise") else (mlp(w1, w2), [2, 4, 32])
    expected = getattr(mo, new)(*args, **kwargs)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated: use mpqopt.adapters.onnx.{new}"):
        got = getattr(mo, old)(*args, **kwargs)
    assert got.layers == expected.layers and got.options == expected.options and got.method == expected.method
    np.testing.assert_array_equal(got.values, expected.values)
    for name in ("std", "pairwise"):
        a, b = getattr(got, name), getattr(expected, name)
        assert (a is None) == (b is None) and (a is None or np.array_equal(a, b))


def test_layer_selection(small):
    w1, w2, batches = small
    model = mlp(w1, w2)
    full = estimate_delta_output(model, batches, [2, 3], progress=False)
    by_object = estimate_delta_output(model, batches, [2, 3], layers=discover_layers(model)[1:], progress=False)
    by_pattern = estimate_delta_output(model, batches, [2, 3], exclude="fc1", progress=False)
    assert by_object.layers == by_pattern.layers == ("fc2",)
    assert np.allclose(by_object.values, full.values[1:]) and np.allclose(by_pattern.values, full.values[1:])
    with pytest.raises(ProblemError, match="all layer names or all layer objects"):
        estimate_delta_output(model, batches, [2], layers=["fc1", discover_layers(model)[1]], progress=False)


def test_entropy_and_weight_error_equal_torch(digits_bed, digits_onnx):
    """EAGL entropy: the same table as the torch estimator (per-channel grids do not see the BN
    scale folded into the convs); weight MSE on the Gemms (untouched by folding) = torch's
    quantization_error; SQNR = MSE / ||W||²."""
    from mpqopt.adapters.torch.estimators.entropy import estimate_entropy as torch_entropy
    from mpqopt.adapters.torch.quantizer import WeightScheme, quantization_error

    path, _, _ = digits_onnx
    for sym in (True, False):
        e = estimate_entropy(path, [2, 3, 4, 8], scheme={"symmetric": sym, "scale": "mse"})
        t = torch_entropy(digits_bed.model, [2, 3, 4, 8], scheme=WeightScheme(sym, True, "mse"))
        assert np.allclose(e.values, t.values, rtol=1e-9, atol=1e-6) and e.std is None
        assert np.allclose(e.meta["entropies"], t.meta["entropies"], atol=1e-9)
    mse = estimate_weight_error(path, [2, 4, 32], layers=["12", "14"])  # framework names resolve too
    sqnr = estimate_weight_error(path, [2, 4, 32], kind="sqnr", layers=["/12/Gemm", "/14/Gemm"])
    for i, name in enumerate(("12", "14")):
        w = dict(digits_bed.model.named_modules())[name].weight.detach()
        want = [quantization_error(w, b) for b in (2, 4)] + [0.0]
        assert np.allclose(mse.values[i], want, rtol=1e-5)
        assert np.allclose(sqnr.values[i], np.array(want) / float((w.double() ** 2).sum()), rtol=1e-5)
        assert np.allclose(sqnr.meta["sqnr_db"][i][:2], -10 * np.log10(sqnr.values[i, :2]))


# ------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("batch,message", [
    ({"z": np.ones((2, 6), np.float32)}, "input 'z', which the model does not take; its inputs are \\['x'\\]"),
    ({}, "lacks model input \\['x'\\]"),
    ({"x": np.ones((2, 5), np.float32)}, "input 'x' has shape \\[2, 5\\], the model expects \\['batch', 6\\] \\(dim 1 must be 6\\)"),
    ({"x": np.ones(6, np.float32)}, "input 'x' has shape \\[6\\] \\(rank 1\\), the model expects rank 2"),
    ({"x": np.ones((2, 6))}, "input 'x' has dtype float64, the model expects float32"),
    ({"x": np.ones((2, 6), np.float32), "w1": np.ones((6, 8), np.float32)}, "'w1'.*a weight"),
    ("not a batch", "batch 0 is a str"),
])
def test_bad_batches(small, batch, message):
    w1, w2, _ = small
    with pytest.raises(ProblemError, match=message):
        estimate_delta_output(mlp(w1, w2), [batch], [4], progress=False)


def test_named_dimension_must_agree_across_inputs():
    g = helper.make_graph([helper.make_node("Add", ["a", "b"], ["c"]), helper.make_node("MatMul", ["c", "w"], ["y"])], "two",
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 3]) for n in "ab"],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(np.eye(3, dtype=np.float32), "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(ProblemError, match="dimension 'batch' is 2 in input 'a' dim 0 but 3 in input 'b'"):
        OnnxEvaluator(model, [{"a": np.ones((2, 3), np.float32), "b": np.ones((3, 3), np.float32)}], weights=["w"])
    with pytest.raises(ProblemError, match="single array, but the model has 2 inputs"):
        OnnxEvaluator(model, [np.ones((2, 3), np.float32)], weights=["w"])


@pytest.mark.parametrize("kw,message", [
    # IR 9: readable by every onnxruntime we support (1.17 reads up to 9), so the opset is what it rejects
    (dict(opset=40, ir=9), "it uses opset 40 of domain ai.onnx, newer than the opset \\d+ this ONNX Runtime supports"),
    (dict(ir=99), "its IR version is 99 and this ONNX Runtime reads up to \\d+"),
    (dict(custom=True), "node 'act' \\(Foo in domain 'my.ops'\\) uses operators it has no kernel for"),
])
def test_models_onnxruntime_cannot_run(small, kw, message):
    w1, w2, batches = small
    with pytest.raises(ProblemError, match="ONNX Runtime .* cannot run this model: " + message):
        estimate_delta_output(mlp(w1, w2, **kw), batches, [4], progress=False)


def test_bad_arguments(small):
    w1, w2, batches = small
    model = mlp(w1, w2)
    with pytest.raises(ProblemError, match="no tensor named 'logits' to score; graph outputs are \\['y'\\]"):
        estimate_delta_output(model, batches, [4], output="logits", progress=False)
    with pytest.raises(ProblemError, match="metric 'ce' needs labels, but batch 0 has none"):
        estimate_delta_output(model, batches, [4], metric="ce", progress=False)
    with pytest.raises(ProblemError, match="labels has 2 entries for 3 batches"):
        estimate_delta_output(model, batches, [4], labels=[np.zeros(12, np.int64)] * 2, progress=False)
    with pytest.raises(ProblemError, match="batch 0: labels must lie in \\[0, 4\\)"):
        estimate_delta_output(model, batches, [4], labels=[np.full(12, 7)] * 3, progress=False)
    with pytest.raises(ProblemError, match="batch 0: 5 labels for output 'y' of shape \\[12, 4\\]"):
        estimate_delta_output(model, batches, [4], labels=[np.zeros(5, np.int64)] * 3, progress=False)
    with pytest.raises(ProblemError, match="metric must be one of"):
        estimate_delta_output(model, batches, [4], metric="l1", progress=False)
    with pytest.raises(ProblemError, match="activations"):
        estimate_delta_output(model, batches, ["W4A8"], progress=False)
    with pytest.raises(ProblemError, match="no quantizable layer named 'fc9'"):
        estimate_delta_output(model, batches, [4], layers=["fc9"], progress=False)
    with pytest.raises(ProblemError, match="inputs is empty"):
        estimate_delta_output(model, [], [4], progress=False)
    with pytest.raises(ProblemError, match="options must be a non-empty list"):
        estimate_delta_output(model, batches, [], progress=False)
    with pytest.raises(ProblemError, match="scale method must be one of"):
        estimate_delta_output(model, batches, [4], scheme={"scale": "max"}, progress=False)
    with pytest.raises(ProblemError, match="kind must be 'mse' or 'sqnr'"):
        estimate_weight_error(model, [4], kind="l1")
    ev = OnnxEvaluator(model, batches, metric="mse", weights=["w1"])
    with pytest.raises(ProblemError, match="cannot override 'w2'"):
        ev.run(0, {"w2": w2})
    with pytest.raises(ProblemError, match="override of weight 'w1' has shape \\[8, 6\\], the stored weight \\[6, 8\\]"):
        ev.run(0, {"w1": w1.T})
    with pytest.raises(ProblemError, match="weight 'h' is not an initializer or Constant output \\(MatMul\\)"):
        OnnxEvaluator(model, batches, weights=["h"])


def test_measurer_drives_refine_on_an_onnx_model(small):
    """Each single-layer measurement equals estimate_delta_output's entry; refine with a table that
    ranks bit-widths backwards returns a feasible allocation no worse than the uniform ones that fit."""
    import mpqopt
    from mpqopt.adapters.onnx import estimate_delta_output, measurer, problem_from_model

    w1, w2, batches = small
    model = mlp(w1, w2)
    table = estimate_delta_output(model, batches, [2, 4, 8], progress=False)
    measure = measurer(model, batches, [2, 4, 8, 32])
    for i, name in enumerate(table.layers):
        for k, bits in enumerate((2, 4, 8)):
            change, stderr = measure({name: f"W{bits}"})
            assert change == pytest.approx(table.values[i, k], rel=1e-6, abs=1e-9) and stderr == pytest.approx(table.std[i, k], rel=1e-5, abs=1e-9)
    with pytest.raises(mpqopt.ProblemError, match="no quantizable layer named 'fc9'"):
        measure({"fc9": "W4"})
    p = problem_from_model(model, [2, 4, 8], -table.values, input_shapes={"x": [12, 6]}, budgets={"size": "40%"})
    r = mpqopt.refine(p, measure, max_evaluations=8)
    assert mpqopt.verify.violations(p, r.x, p.budgets) == []
    assert r.measured <= min(m.measured for m in r.measurements if m.source.startswith("uniform"))
    assert r.measured == pytest.approx(measure(r.assignment)[0])
