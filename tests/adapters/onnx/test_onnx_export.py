"""ONNX adapter, export side: the per-node config and fake-quantized models run by ONNX Runtime,
checked against the torch adapter's ``apply`` on the same (digits) model and against numpy."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mpqopt import Problem, solve  # noqa: E402
from mpqopt.adapters.onnx.costs import cost_tables, layer_costs  # noqa: E402
from mpqopt.adapters.onnx.export import CONFIG_FORMAT, allocation_config, fake_quantized_model, save, write_config  # noqa: E402
from mpqopt.adapters.onnx.layers import discover_layers  # noqa: E402
from mpqopt.adapters.onnx.model import load_model  # noqa: E402
from mpqopt.adapters.onnx.quantize import quantize_array  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's notice

TORCH_NAMES = ["0", "3", "7", "12", "14"]
MIXED = {"0": 3, "3": 2, "7": 4, "12": 2, "14": 8}


def run(model: onnx.ModelProto, feeds: dict, exact_qdq: bool = False) -> np.ndarray:
    """Outputs of ONNX Runtime (one thread, default optimizations); ``exact_qdq`` turns off the
    rewrites that change a QDQ model's numbers (see mpqopt.adapters.onnx.export)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    disabled = []
    if exact_qdq:
        opts.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "1")
        disabled = ["WeightBiasQuantization"]
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    return sess.run(None, feeds)[0]


@pytest.fixture(scope="module")
def digits(digits_bed, tmp_path_factory):
    """The digits CNN exported twice: with BatchNorm kept (weights identical to torch) and folded."""
    import torch

    d = tmp_path_factory.mktemp("digits")
    x = digits_bed.test_x[:128]
    paths = {}
    for folded in (False, True):
        paths[folded] = d / f"digits_{'folded' if folded else 'bn'}.onnx"
        torch.onnx.export(digits_bed.model, (x,), str(paths[folded]), dynamo=False, opset_version=17, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}}, do_constant_folding=folded)
    return digits_bed, paths, x


def torch_apply(model, assignment, scheme=None, **kw):  # noqa: ANN001, ANN201
    """The torch adapter's fake-quantized copy, as a function of a batch returning numpy outputs."""
    import torch

    from mpqopt.adapters.torch.apply import apply
    from mpqopt.adapters.torch.quantizer import WeightScheme

    qmodel = apply(model, assignment, scheme or WeightScheme(), **kw)

    def forward(x):  # noqa: ANN001, ANN202
        with torch.no_grad():
            return qmodel(x).numpy()

    return forward


def test_digits_layers_map_to_torch_layers(digits):
    from mpqopt.adapters.torch.costs import measure_layers

    bed, paths, x = digits
    for path in paths.values():
        layers = discover_layers(path)
        assert [l.framework_name for l in layers] == TORCH_NAMES
        assert [l.op_type for l in layers] == ["Conv"] * 3 + ["Gemm"] * 2
        onnx_costs = layer_costs(path, input_shapes={"batch": 1})
        torch_costs = measure_layers(bed.model, x)
        assert [c.macs for c in onnx_costs] == [c.macs for c in torch_costs]
        assert [c.weight_params for c in onnx_costs] == [c.weight_params for c in torch_costs]
    # unfolded, the stored weights are the torch parameters themselves
    m = load_model(paths[False])
    for layer in discover_layers(m):
        w = numpy_helper.to_array(m.initializers[layer.weight_name])
        assert np.array_equal(w, dict(bed.model.named_parameters())[f"{layer.framework_name}.weight"].detach().numpy())


@pytest.mark.parametrize("scheme", [None, {"per_channel": False}, {"symmetric": False}, {"scale": "mse"}])
@pytest.mark.parametrize("mode", ["weights", "qdq"])
def test_fake_quantized_onnx_matches_torch_apply(digits, scheme, mode):
    from mpqopt.adapters.torch.quantizer import WeightScheme

    bed, paths, x = digits
    expected = torch_apply(bed.model, MIXED, WeightScheme(**(scheme or {})))(x)
    fp = bed.model(x).detach().numpy()
    q = fake_quantized_model(paths[False], MIXED, scheme, mode=mode)  # torch module names work as layer names
    out = run(q, {"x": x.numpy()})
    assert np.abs(out - expected).max() < 1e-4
    assert np.abs(out - fp).max() > 0.05  # the allocation (2-bit layers) really changed the outputs


def test_bn_folding_keeps_per_channel_quantization_equal(digits):
    """Folding BN scales each output channel of a conv weight by gamma/sigma; a symmetric per-channel
    min/max grid scales with it, so quantizing the folded weight equals folding the quantized one
    (up to float rounding). Per-tensor scales are not equivariant: there the two models differ."""
    bed, paths, x = digits
    folded, unfolded = load_model(paths[True]), discover_layers(paths[False])
    assert folded.initializers[discover_layers(folded)[0].weight_name].dims == [16, 1, 3, 3]
    assert "BatchNormalization" not in {n.op_type for n in folded.graph.node}
    assert len(unfolded) == 5
    expected = torch_apply(bed.model, MIXED)(x)
    out = run(fake_quantized_model(folded, MIXED), {"x": x.numpy()})
    assert np.abs(out - expected).max() < 1e-3
    per_tensor = run(fake_quantized_model(folded, MIXED, {"per_channel": False}), {"x": x.numpy()})
    assert np.abs(per_tensor - torch_apply(bed.model, MIXED, _scheme(per_channel=False))(x)).max() > 1e-2


def _scheme(**kw):  # noqa: ANN003, ANN202
    from mpqopt.adapters.torch.quantizer import WeightScheme

    return WeightScheme(**kw)


def test_activation_quantization_matches_torch(digits):
    from mpqopt.adapters.torch.data import Evaluator
    from mpqopt.adapters.torch.perturb import calibrate_activations

    bed, paths, x = digits
    ranges = calibrate_activations(bed.model, TORCH_NAMES, Evaluator(bed.model, [(x, None)], loss="mse"))
    # the first layer reads the input image itself: no float noise upstream, so results agree exactly
    first = {"0": "W4A4"}
    out = run(fake_quantized_model(paths[False], first, act_ranges=ranges), {"x": x.numpy()})
    assert np.abs(out - torch_apply(bed.model, first, act_ranges=ranges)(x)).max() < 1e-4
    # deeper layers read conv outputs that differ from torch's by ~1e-6: a value that close to a
    # rounding boundary can land one step apart, so compare most samples and the predictions
    allocation = {"0": "W4A8", "3": "W4A8", "7": "W3A8", "12": "W4A8", "14": "W8A8"}
    expected = torch_apply(bed.model, allocation, act_ranges=ranges)(x)
    weights_only = run(fake_quantized_model(paths[False], {k: v[:2] for k, v in allocation.items()}), {"x": x.numpy()})
    assert np.abs(expected - weights_only).max() > 1e-2  # activation quantization matters here
    simulated = fake_quantized_model(paths[False], allocation, act_ranges=ranges)
    qdq = fake_quantized_model(paths[False], allocation, act_ranges=ranges, mode="qdq")
    # ONNX Runtime's WeightBiasQuantization pass re-quantizes weights found between QDQ pairs: with
    # it off the QDQ model is the same simulation; the float-op model needs nothing turned off
    for out in (run(simulated, {"x": x.numpy()}), run(qdq, {"x": x.numpy()}, exact_qdq=True)):
        close = np.abs(out - expected).max(axis=1) < 1e-4
        assert close.mean() > 0.95 and (out.argmax(1) == expected.argmax(1)).mean() > 0.98
    fused = run(qdq, {"x": x.numpy()})  # integer kernels: close to the simulation, not equal
    assert (fused.argmax(1) == expected.argmax(1)).mean() > 0.95
    q = fake_quantized_model(paths[False], {"3": "W8A2"}, act_ranges=ranges)
    ops = [n.op_type for n in q.graph.node]
    conv = [n.name for n in q.graph.node].index("/3/Conv")
    assert ops[conv - 6 : conv] == ["Div", "Round", "Add", "Clip", "Sub", "Mul"] and ops.count("Round") == 1
    ops = [n.op_type for n in fake_quantized_model(paths[False], {"3": "W8A2"}, act_ranges=ranges, mode="qdq").graph.node]
    assert ops.count("QuantizeLinear") == 1 and ops.count("Clip") == 1 and ops.count("DequantizeLinear") == 2  # act + weight
    with pytest.raises(ProblemError, match="at most 8 bits"):
        fake_quantized_model(paths[False], {"3": "W8A16"}, act_ranges=ranges)


def test_qdq_structure(digits):
    _, paths, x = digits
    src = load_model(paths[False])
    before = src.proto.SerializeToString()
    q = fake_quantized_model(src, {"0": 3, "12": 4, "14": 16}, mode="qdq")
    assert src.proto.SerializeToString() == before  # the input model is untouched
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    dq = {n.output[0]: n for n in q.graph.node if n.op_type == "DequantizeLinear"}
    assert set(dq) == {"0.weight", "12.weight"}  # 16 bits has no int8 storage: rounded in place
    for name, bits, axis, channels in (("0.weight", 3, 0, 16), ("12.weight", 4, 0, 64)):
        node = dq[name]
        ints, scale = inits[node.input[0]], inits[node.input[1]]
        assert ints.dtype == np.int8 and ints.min() >= -(2 ** (bits - 1)) and ints.max() <= 2 ** (bits - 1) - 1
        assert helper.get_attribute_value(node.attribute[0]) == axis and scale.shape == (channels,)
        assert name not in {t.name for t in q.graph.initializer}
    w14 = numpy_helper.to_array(src.initializers["14.weight"])
    assert np.array_equal(inits["14.weight"], quantize_array(w14, 16, axis=0))
    same = run(fake_quantized_model(src, {"0": 3, "12": 4, "14": 16}), {"x": x.numpy()})
    assert np.abs(run(q, {"x": x.numpy()}) - same).max() < 1e-5


def _matmul_model(opset: int = 17):  # noqa: ANN202
    w = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)  # stored [out, in], transposed in the graph
    nodes = [helper.make_node("Transpose", ["w"], ["wT"], perm=[1, 0]), helper.make_node("MatMul", ["x", "wT"], ["y"], name="fc")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(w, "w")])
    # IR 7 (what onnx 1.6+ writes for opset 11-12): the runtime may not read the newest IR helper defaults to
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=7), w


@pytest.mark.parametrize("mode", ["weights", "qdq"])
def test_transposed_weight_is_quantized_per_output_channel(mode):
    m, w = _matmul_model()
    x = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    out = run(fake_quantized_model(m, {"fc": 3}, mode=mode), {"x": x}, exact_qdq=True)  # MatMulNBits would quantize x
    # the effective weight is w.T [in, out]: one scale per output column = per row of the stored w
    expected = x @ quantize_array(w.T, 3, axis=1)
    assert np.abs(out - expected).max() < 1e-5
    assert np.abs(out - x @ quantize_array(w.T, 3, axis=0)).max() > 1e-3  # the wrong axis is visibly different


def test_config_from_a_solved_problem(digits, tmp_path):
    _, paths, _ = digits
    layers = discover_layers(paths[True])
    costs = layer_costs(paths[True], layers, input_shapes={"batch": 1})
    options = ["W2A8", "W4A8", "W8A8"]
    tables = cost_tables(costs, options, ["size_bits", "bitops"])
    sens = np.array([[1.0 / (c.weight_params ** 0.5) * 4 ** -k for k in range(3)] for c in costs]) * 100
    problem = Problem([l.name for l in layers], options, sens, costs=tables, budgets={"size_bits": "50%"})
    result = solve(problem)
    assert result.status == "optimal"
    config = allocation_config(result, paths[True])
    assert config["format"] == CONFIG_FORMAT and config["scheme"] == {"symmetric": True, "per_channel": True, "scale": "minmax"}
    assert {n: e["option"] for n, e in config["layers"].items()} == result.assignment
    for layer in layers:
        entry = config["layers"][layer.name]
        assert entry["w_bits"] == int(entry["option"][1]) and entry["a_bits"] == 8
        assert entry["nodes"] == [layer.name] and entry["weight"] == layer.weight_name and entry["weight_axis"] == 0
        assert entry["framework_name"] == layer.framework_name
    path = write_config(tmp_path / "alloc.json", result, layers)
    assert json.loads(path.read_text()) == config
    q = fake_quantized_model(paths[True], result)
    meta = {p.key: p.value for p in q.metadata_props}
    assert json.loads(meta["mpqopt.allocation"])["layers"].keys() == config["layers"].keys()
    saved = save(q, tmp_path / "q.onnx")
    again = load_model(saved)
    assert len(discover_layers(again)) == 5 and run(again.proto, {"x": np.zeros((2, 1, 8, 8), np.float32)}).shape == (2, 10)


def test_export_errors(digits):
    _, paths, _ = digits
    with pytest.raises(ProblemError, match="no quantizable layer named '99'"):
        fake_quantized_model(paths[True], {"99": 4})
    with pytest.raises(ProblemError, match="layer '3': cannot read option label 'W4X'"):
        allocation_config({"3": "W4X"})
    with pytest.raises(ProblemError, match="mode must be one of"):
        fake_quantized_model(paths[True], {"3": 4}, mode="int4")
    with pytest.raises(ProblemError, match="scale method must be one of"):
        fake_quantized_model(paths[True], {"3": 4}, {"scale": "max"})
    with pytest.raises(ProblemError, match="act_ranges\\['3'\\] must be a \\(lo, hi\\) pair"):
        fake_quantized_model(paths[True], {"3": "W4A8"}, act_ranges={"3": 5})
    old, _ = _matmul_model(opset=11)
    assert len(fake_quantized_model(old, {"fc": 4}).graph.node) == 2  # rounding in place works at any opset
    with pytest.raises(ProblemError, match="needs opset >= 13, the model has opset 11"):
        fake_quantized_model(old, {"fc": 4}, mode="qdq")
