"""estimate_delta_output with cached FP32 tensors and per-layer suffix sessions (``mode="suffix"``, and
``"auto"``, which uses them where they pay)
against the whole-graph runs (``mode="full"``, the path checked against baked-weight models and the
torch adapter in test_onnx_runtime.py), a hand-written numpy forward of a residual graph, and the
fall-backs (control flow, nondeterministic ops, a suffix that is the whole graph). One ONNX Runtime
thread throughout.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mpqopt.adapters.onnx.quantize import quantize_array  # noqa: E402
from mpqopt.adapters.onnx.sensitivity import estimate_delta_output, estimate_pairwise  # noqa: E402
from mpqopt.adapters.onnx.suffix import plan_suffix  # noqa: E402

OPTIONS = [2, 3, 4, 8, 32]
RTOL = 1e-6  # the promised agreement; on these models the tables are bit-identical


def _model(nodes: list, weights: dict[str, np.ndarray], width: int, extra_inits: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(v, k) for k, v in {**weights, **(extra_inits or {})}.items()]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", None])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _weights(rng: np.random.Generator, shapes: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    return {k: (rng.normal(size=s) / np.sqrt(s[0])).astype(np.float32) for k, s in shapes.items()}


def mlp3(rng: np.random.Generator) -> onnx.ModelProto:
    """x @ w1 + b1 -> Relu -> @ w2 -> Relu -> @ w3 (weights [in, out])."""
    w = _weights(rng, {"w1": (6, 16), "w2": (16, 16), "w3": (16, 5)})
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"), helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["r1"]), helper.make_node("MatMul", ["r1", "w2"], ["h2"], name="fc2"),
             helper.make_node("Relu", ["h2"], ["r2"]), helper.make_node("MatMul", ["r2", "w3"], ["y"], name="fc3")]
    return _model(nodes, w, 6, {"b1": rng.normal(size=16).astype(np.float32)})


def residual(w: dict[str, np.ndarray]) -> onnx.ModelProto:
    """h = Relu(x w1); a = Relu(h w2); s = a w3 + h (skip); y = s w4: fc3's suffix reads a and h."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"), helper.make_node("Relu", ["h0"], ["h"]),
             helper.make_node("MatMul", ["h", "w2"], ["a0"], name="fc2"), helper.make_node("Relu", ["a0"], ["a"]),
             helper.make_node("MatMul", ["a", "w3"], ["b"], name="fc3"), helper.make_node("Add", ["b", "h"], ["s"]),
             helper.make_node("MatMul", ["s", "w4"], ["y"], name="fc4")]
    return _model(nodes, w, 6)


def _batches(rng: np.random.Generator, width: int, n: int = 3, rows: int = 12) -> list[dict[str, np.ndarray]]:
    return [{"x": rng.normal(size=(rows, width)).astype(np.float32)} for _ in range(n)]


def _both(model, batches, **kw):
    """The tables of every mode agree; returns the ``"suffix"`` and ``"full"`` ones."""
    full, cached, auto = (estimate_delta_output(model, batches, OPTIONS, mode=m, threads=1, progress=False, **kw) for m in ("full", "suffix", "auto"))
    for other in (cached, auto):
        np.testing.assert_allclose(other.values, full.values, rtol=RTOL, atol=0)
        if full.std is not None:
            np.testing.assert_allclose(other.std, full.std, rtol=RTOL, atol=0)
    assert full.meta["mode"] == "full" and full.meta["step_fraction"] == 1.0
    return cached, full


def test_mlp_cached_equals_full_graph():
    rng = np.random.default_rng(0)
    cached, full = _both(mlp3(rng), _batches(rng, 6))
    assert cached.meta["mode"] == "suffix" and cached.meta["mode_reason"] == ""
    assert cached.meta["full_layers"] == {"fc1": "its suffix is the whole graph"}
    assert (full.values[:, :4] > 0).all() and (full.values[:, 4] == 0).all()  # a real signal, not zeros
    # fc2 runs 3 of the 6 nodes, fc3 one; fc1 and the caching pass run all 6
    runs = 3 * (1 + 4 * 3)
    assert cached.meta["forward_passes"] == 3 + runs and full.meta["forward_passes"] == 3 + 3 * 4 * 3
    assert cached.meta["step_fraction"] == round(3 * (6 + 4 * (6 + 3 + 1)) / (6 * runs), 4)


def test_residual_suffix_feeds_the_skip_tensor_and_matches_numpy():
    rng = np.random.default_rng(1)
    w = _weights(rng, {"w1": (6, 12), "w2": (12, 12), "w3": (12, 12), "w4": (12, 4)})
    model, batches = residual(w), _batches(rng, 6)
    s = plan_suffix(model.graph, "w3", "y", set(w))
    assert sorted(s.cached) == ["a", "h"] and s.weights == ("w3", "w4")  # two cached tensors: the input and the skip
    cached, full = _both(model, batches, metric="mse")
    assert cached.meta["mode"] == "suffix" and list(cached.meta["full_layers"]) == ["fc1"]

    def forward(ws, x):  # the graph in float64 numpy
        h = np.maximum(x @ ws["w1"], 0)
        return ((np.maximum(h @ ws["w2"], 0) @ ws["w3"]) + h) @ ws["w4"]

    ref = [forward(w, b["x"].astype(np.float64)) for b in batches]
    for i, name in enumerate(("w1", "w2", "w3", "w4")):
        q = {**w, name: quantize_array(w[name], 3, axis=1)}
        expect = np.mean([np.mean((forward(q, b["x"].astype(np.float64)) - r) ** 2) for b, r in zip(batches, ref)])
        assert np.isclose(cached.values[i, 1], expect, rtol=1e-4), (name, cached.values[i, 1], expect)


def test_digits_cnn_cached_equals_full_graph(digits_onnx):
    path, batches, labels = digits_onnx
    cached, full = _both(path, batches, labels=labels)
    assert cached.meta["mode"] == "suffix" and len(cached.meta["full_layers"]) == 1  # only the first conv runs the whole graph
    assert cached.meta["step_fraction"] < 0.8
    assert (full.values[:, 0] > 0).all()


def test_constant_weight_and_unreached_layer():
    rng = np.random.default_rng(2)
    model = mlp3(rng)
    g = model.graph
    w3 = next(t for t in g.initializer if t.name == "w3")
    g.node.insert(0, helper.make_node("Constant", [], ["w3"], name="w3_const", value=w3))  # a weight held by a Constant node
    g.initializer.remove(w3)
    batches = _batches(rng, 6)
    cached, _ = _both(model, batches)
    assert list(cached.meta["full_layers"]) == ["fc1"]
    # scoring r1: fc2 and fc3 come after it, their entries are exactly 0 without a run
    early, _ = _both(model, batches, output="r1", metric="mse")
    assert (early.values[1:] == 0).all() and (early.values[0, :4] > 0).all()
    assert early.meta["forward_passes"] == 3 + 4 * 3  # references + fc1's whole-graph runs; nothing to cache


def test_control_flow_falls_back_to_the_whole_graph():
    rng = np.random.default_rng(3)
    w = _weights(rng, {"w1": (6, 8), "w2": (8, 4)})
    branch = [helper.make_graph([helper.make_node(op, ["h"], [f"r_{op}"])], f"{op}_branch", [],
                                [helper.make_tensor_value_info(f"r_{op}", TensorProto.FLOAT, None)]) for op in ("Relu", "Neg")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True), "c")),
             helper.make_node("If", ["cond"], ["r"], name="branch", then_branch=branch[0], else_branch=branch[1]),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")]
    cached, full = _both(_model(nodes, w, 6), _batches(rng, 6))
    assert cached.meta["mode"] == "full" and "'branch' (If) holds a subgraph" in cached.meta["mode_reason"]
    assert cached.meta["forward_passes"] == full.meta["forward_passes"]


def test_nondeterministic_suffix_falls_back():
    """A suffix whose FP32 output is not the whole graph's on the first batch is not used."""
    rng = np.random.default_rng(4)
    w = _weights(rng, {"w1": (6, 8), "w2": (8, 4)})
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["z"], name="fc2"), helper.make_node("RandomUniformLike", ["z"], ["u"]),
             helper.make_node("Add", ["z", "u"], ["y"])]
    s = estimate_delta_output(_model(nodes, w, 6), _batches(rng, 6), OPTIONS, metric="mse", mode="suffix", threads=1, progress=False)
    assert s.meta["mode"] == "full" and s.meta["mode_reason"] == "no layer's suffix reproduced the whole graph's output"
    assert "differs from the whole graph's on batch 0" in s.meta["full_layers"]["fc2"]


def test_auto_keeps_the_whole_graph_when_a_session_costs_more_than_it_saves():
    rng = np.random.default_rng(6)
    model, batches = mlp3(rng), _batches(rng, 6, n=1, rows=2)  # one run per layer of a tiny model
    s = estimate_delta_output(model, batches, [4], threads=1, progress=False)
    assert s.meta["mode"] == "full" and s.meta["mode_reason"] == "no layer's suffix pays for its session"
    assert "would save about" in s.meta["full_layers"]["fc3"]
    assert s.meta["forward_passes"] == 1 + 1 + 1 + 3  # reference, caching pass, timed run, one whole-graph run per layer
    assert np.array_equal(s.values, estimate_delta_output(model, batches, [4], mode="full", threads=1, progress=False).values)


def _pairwise_all_modes(model, batches, **kw):
    """estimate_pairwise's tables in every mode agree; returns the ``"suffix"`` one."""
    full, cached, auto = (estimate_pairwise(model, batches, [2, 4, 32], mode=m, threads=1, progress=False, **kw) for m in ("full", "suffix", "auto"))
    for other in (cached, auto):
        for a, b in ((other.values, full.values), (other.pairwise, full.pairwise), (other.std, full.std)):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=0)
    assert np.abs(full.pairwise).max() > 0  # real interactions, not zeros
    return cached


def test_pairwise_cached_equals_full_graph_on_chains_and_branches():
    rng = np.random.default_rng(7)
    s = _pairwise_all_modes(mlp3(rng), _batches(rng, 6))
    assert s.meta["mode"] == "suffix" and list(s.meta["full_layers"]) == ["fc1"]
    # pairs with fc1 run the whole graph (6 nodes), (fc2, fc3) fc2's suffix (3 nodes)
    runs = 3 * (1 + 2 * 3 + 3 * 4)  # per batch: caching pass, 2 options x 3 layers, 3 layer pairs x 2 x 2 options
    assert s.meta["forward_passes"] == 3 + runs
    assert s.meta["step_fraction"] == round(3 * (6 + 2 * (6 + 3 + 1) + 4 * (6 + 6 + 3)) / (6 * runs), 4)
    w = _weights(rng, {"w1": (6, 12), "w2": (12, 12), "w3": (12, 12), "w4": (12, 4)})
    _pairwise_all_modes(residual(w), _batches(rng, 6), metric="mse")
    # two parallel branches: neither branch's suffix holds the other's nodes, so their pair runs the whole graph
    w = _weights(rng, {"w1": (6, 12), "wa": (12, 8), "wb": (12, 8), "wo": (8, 4)})
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"), helper.make_node("Relu", ["h0"], ["h"]),
             helper.make_node("MatMul", ["h", "wa"], ["a"], name="fa"), helper.make_node("MatMul", ["h", "wb"], ["b0"], name="fb"),
             helper.make_node("Relu", ["b0"], ["b"]), helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("MatMul", ["s", "wo"], ["y"], name="fo")]
    s = _pairwise_all_modes(_model(nodes, w, 6), _batches(rng, 6), metric="mse")
    assert s.meta["mode"] == "suffix" and list(s.meta["full_layers"]) == ["fc1"]


def test_pairwise_digits_cnn_cached_equals_full_graph(digits_onnx):
    path, batches, labels = digits_onnx
    s = _pairwise_all_modes(path, batches[:2], labels=labels[:2], window=1)
    assert s.meta["mode"] == "suffix" and s.meta["step_fraction"] < 0.8


def test_bad_mode_and_nothing_to_run():
    from mpqopt.errors import ProblemError

    rng = np.random.default_rng(5)
    s = estimate_delta_output(mlp3(rng), _batches(rng, 6), [32], progress=False)
    assert s.meta["mode"] == "full" and s.meta["mode_reason"] == "every option is full precision: nothing to run"
    assert s.meta["forward_passes"] == 3 and (s.values == 0).all()
    with pytest.raises(ProblemError, match="mode must be one of"):
        estimate_delta_output(mlp3(rng), _batches(rng, 6), OPTIONS, mode="fx", progress=False)
