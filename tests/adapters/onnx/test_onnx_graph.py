"""ONNX adapter, graph side: loading, layer discovery, MAC counts, the networkx graph and ties.

References are independent of the adapter: published parameter counts, the ResNet-50 architecture
counted by hand below, MACs counted by hand and by the torch adapter's forward hooks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
pytest.importorskip("networkx", reason="the onnx extra is not installed")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mpqopt.adapters.onnx.costs import cost_tables, layer_costs  # noqa: E402
from mpqopt.adapters.onnx.graph import find_ties, model_graph  # noqa: E402
from mpqopt.adapters.onnx.layers import discover_layers, framework_name, resolve_layers  # noqa: E402
from mpqopt.adapters.onnx.model import load_model  # noqa: E402
from mpqopt.errors import FormatError, ProblemError  # noqa: E402

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def zoo(name: str) -> Path:
    path = LIGHT / f"light_{name}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is not in this onnx wheel")
    return path


def vi(name, shape, dtype=TensorProto.FLOAT):  # noqa: ANN001, ANN201
    return helper.make_tensor_value_info(name, dtype, shape)


def init(name: str, shape, seed: int = 0, dtype=np.float32):  # noqa: ANN001, ANN201
    return numpy_helper.from_array(np.random.default_rng(seed).normal(size=shape).astype(dtype), name)


def model(nodes, inputs, outputs, inits, opset: int = 17):  # noqa: ANN001, ANN201
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits), opset_imports=[helper.make_opsetid("", opset)])


# ------------------------------------------------------------------------------ model zoo graphs
def resnet50_by_hand() -> tuple[int, int]:
    """Conv + FC MACs and weights (+ FC bias) of ResNet-50 at 224x224, from the architecture (stride
    on the 3x3 conv of each stage's first block, as the Caffe2 graph has it)."""
    macs = params = 0

    def conv(cin: int, cout: int, k: int, stride: int, size: int, pad: int) -> int:
        nonlocal macs, params
        out = (size + 2 * pad - k) // stride + 1
        macs += cout * out * out * cin * k * k
        params += cout * cin * k * k
        return out

    size = conv(3, 64, 7, 2, 224, 3)  # 112
    size = (size + 2 - 3) // 2 + 1  # 3x3/2 max pool -> 56
    cin = 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for b in range(blocks):
            s = stride if b == 0 else 1
            if b == 0:
                conv(cin, width * 4, 1, s, size, 0)  # downsample branch
            conv(cin, width, 1, 1, size, 0)
            out = conv(width, width, 3, s, size, 1)
            conv(width, width * 4, 1, 1, out, 0)
            size, cin = out, width * 4
    return macs + 2048 * 1000, params + 2048 * 1000 + 1000


def test_resnet50_layers_macs_and_params_match_the_architecture():
    path = zoo("resnet50")
    layers = discover_layers(path)
    assert len(layers) == 54 and [l.op_type for l in layers].count("Conv") == 53
    assert all(l.weight_source == "constant_of_shape" for l in layers)  # placeholder weights
    costs = layer_costs(path)
    macs, params = resnet50_by_hand()
    total = sum(c.macs for c in costs)
    assert total == macs == 4_089_184_256  # the known ~4.1 GMACs of ResNet-50
    assert sum(c.params for c in costs) == params == 25_503_912  # 25.56M minus the 53 BNs' 53,120
    first = costs[0]
    assert first.name == "gpu_0/conv1_w_0" and first.macs == 64 * 112 * 112 * 3 * 7 * 7
    assert first.input_shape == (1, 3, 224, 224) and first.output_shape == (1, 64, 112, 112)
    assert costs[-1].macs == 2048 * 1000 and costs[-1].kind == "linear"


@pytest.mark.parametrize("name, params", [("vgg19", 143_667_240), ("bvlc_alexnet", 60_965_224), ("squeezenet", 1_235_496)])
def test_zoo_parameter_counts_match_published_values(name, params):
    # VGG-19 and BVLC AlexNet as published; SqueezeNet 1.1 as torchvision lists it (no BN, every
    # parameter sits in a conv or fc layer)
    assert sum(l.params for l in discover_layers(zoo(name))) == params


def test_zoo_discovery_counts():
    dense = discover_layers(zoo("densenet121"))
    assert len(dense) == 121 and all(l.op_type == "Conv" for l in dense)  # 120 convs + the 1x1-conv classifier
    squeeze = discover_layers(zoo("squeezenet"))
    assert len(squeeze) == 26
    inception = discover_layers(zoo("inception_v1"))
    assert len(inception) == 58  # 57 convs and the classifier
    fc = inception[-1]
    # the classifier weight is stored [1, 1, 1000, 1024] and reshaped to [1000, 1024]: its channel axis is 2
    assert (fc.op_type, fc.weight_path, fc.stored_shape, fc.weight_shape, fc.weight_axis) == ("Gemm", ("Reshape",), (1, 1, 1000, 1024), (1000, 1024), 2)
    assert len({l.name for l in dense}) == len(dense)


def test_shufflenet_grouped_and_depthwise_macs():
    path = zoo("shufflenet")
    layers = {l.name: l for l in discover_layers(path)}
    costs = {c.name: c for c in layer_costs(path)}
    assert len(layers) == 50
    depthwise = [l for l in layers.values() if l.depthwise]
    assert len(depthwise) == 16 and all(l.groups == l.weight_shape[0] for l in depthwise)  # one per unit
    # by hand: 112 channels, 56x56 -> 28x28 with stride 2, 3x3 kernel, one input channel per group
    dw = costs["gpu_0/gconv3_0_w_0"]
    assert dw.output_shape == (1, 112, 28, 28) and dw.macs == 112 * 28 * 28 * 9
    # a 4-group pointwise conv: 24 input channels, 6 per group, 112 outputs at 56x56
    g = costs["gpu_0/gconv1_0_w_0"]
    assert layers["gpu_0/gconv1_0_w_0"].groups == 4 and g.macs == 112 * 56 * 56 * 6
    for c in costs.values():  # every conv: output elements x in/groups x kernel
        l = layers[c.name]
        assert c.macs == math.prod(c.output_shape) * math.prod(l.weight_shape[1:])


def test_zoo_ties():
    res = find_ties(zoo("resnet50"))
    # each stage's first block: its branch2a conv and its downsample conv read the same tensor
    assert res.method == "onnx" and len(res.groups) == 4
    assert all(len(g) == 2 and g[0].endswith("_0_branch2a_w_0") and g[1].endswith("_0_branch1_w_0") for g in res.groups)
    sq = find_ties(zoo("squeezenet")).groups
    assert len(sq) == 8 and all(g[0].endswith("expand1x1_w_0") and g[1].endswith("expand3x3_w_0") for g in sq)
    inc = find_ties(zoo("inception_v1")).groups
    assert len(inc) == 9 and all(len(g) == 3 for g in inc)  # 1x1, 3x3_reduce, 5x5_reduce of each module
    assert find_ties(zoo("vgg19")).groups == ()


def test_include_exclude_patterns():
    path = zoo("resnet50")
    assert [l.name for l in discover_layers(path, include="re:res5_0_branch")] == [
        "gpu_0/res5_0_branch2a_w_0", "gpu_0/res5_0_branch2b_w_0", "gpu_0/res5_0_branch2c_w_0", "gpu_0/res5_0_branch1_w_0"]
    assert len(discover_layers(path, exclude=["*branch1_w_0", "gpu_0/pred_w_0"])) == 49
    with pytest.raises(ProblemError, match="'nothing\\*' matches no quantizable layer"):
        discover_layers(path, include="nothing*")
    with pytest.raises(ProblemError, match="not a valid regular expression"):
        discover_layers(path, include="re:(")


# ------------------------------------------------------------------------------ torch-exported model
def _torch_net():
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.group = nn.Conv2d(8, 16, 3, padding=1, groups=4)
            self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
            self.proj = nn.Linear(16, 12)  # on tokens [B, 16, 16]: exported as MatMul + Add
            self.head = nn.Linear(12, 5, bias=False)  # exported as a bare MatMul
            self.fc = nn.Linear(12, 5)  # on [B, 12]: exported as Gemm

        def forward(self, x):  # noqa: ANN001, ANN202
            x = self.dw(torch.relu(self.group(torch.relu(self.stem(x)))))
            t = self.proj(x.flatten(2).transpose(1, 2))
            return self.fc(t.mean(1)) + self.head(t).mean(1)

    torch.manual_seed(0)
    return torch, Net().eval()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's deprecation notice
def test_torch_exported_macs_match_hand_count_and_torch_hooks(tmp_path):
    torch, net = _torch_net()
    from mpqopt.adapters.torch.costs import measure_layers

    x = torch.randn(2, 3, 8, 8)
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    layers = discover_layers(path)
    assert {l.framework_name: l.op_type for l in layers} == {"stem": "Conv", "group": "Conv", "dw": "Conv", "proj": "MatMul", "head": "MatMul", "fc": "Gemm"}
    with pytest.raises(ProblemError, match=r"dynamic dims \['batch'\].*input_shapes"):
        layer_costs(path, layers)  # the batch is dynamic and no shape was given
    onnx_costs = {l.framework_name: c for l, c in zip(layers, layer_costs(path, layers, input_shapes={"x": [2, 3, 8, 8]}))}
    # per sample, by hand: output elements x (in/groups x kernel) or x in_features
    by_hand = {"stem": 8 * 4 * 4 * 27, "group": 16 * 4 * 4 * 18, "dw": 16 * 4 * 4 * 9, "proj": 16 * 12 * 16, "head": 16 * 5 * 12, "fc": 5 * 12}
    assert {k: c.macs for k, c in onnx_costs.items()} == by_hand
    torch_costs = {c.name: c for c in measure_layers(net, x)}
    for name, c in onnx_costs.items():
        assert c.macs == torch_costs[name].macs and c.params == torch_costs[name].params, name
    proj = next(l for l in layers if l.framework_name == "proj")
    assert proj.bias_name is not None and proj.weight_axis == 1 and proj.weight_shape == (16, 12)  # stored [in, out]
    assert next(l for l in layers if l.framework_name == "dw").depthwise
    tables = cost_tables(list(onnx_costs.values()), ["W4A8", "W8A8"], ["size_bits", "bitops"])
    assert tables["bitops"][0].tolist() == [by_hand["stem"] * 32.0, by_hand["stem"] * 64.0]
    assert tables["size_bits"][0, 0] == 4 * 8 * 3 * 9  # weights only, not the bias
    # the same dynamic batch given by its dimension name, and resolve by framework name
    assert layer_costs(path, layers, input_shapes={"batch": 1})[0].macs == by_hand["stem"]
    assert resolve_layers(layers, ["fc"])["fc"].name == "/fc/Gemm"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_attention_block_with_dynamic_batch_and_sequence(tmp_path):
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")
    from torch import nn

    from mpqopt.adapters.torch.costs import measure_layers

    class Block(nn.Module):
        def __init__(self, d: int = 16, heads: int = 4) -> None:
            super().__init__()
            self.heads, self.ln = heads, nn.LayerNorm(d)
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
            self.up, self.down = nn.Linear(d, 32), nn.Linear(32, d)

        def forward(self, x):  # noqa: ANN001, ANN202
            b, s, d = x.shape
            y = self.ln(x)
            q, k, v = (f(y).view(b, s, self.heads, -1).transpose(1, 2) for f in (self.q, self.k, self.v))
            a = torch.softmax(q @ k.transpose(-1, -2) / 2.0, -1) @ v  # reshapes computed from the input shape
            x = x + self.o(a.transpose(1, 2).reshape(b, s, d))
            return x + self.down(torch.relu(self.up(x)))

    torch.manual_seed(0)
    net, x = Block().eval(), torch.randn(2, 7, 16)
    path = tmp_path / "block.onnx"
    torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"], dynamic_axes={"x": {0: "b", 1: "s"}})
    layers = discover_layers(path)
    costs = {l.framework_name: c.macs for l, c in zip(layers, layer_costs(path, layers, input_shapes={"x": [2, 7, 16]}))}
    assert costs == {c.name: c.macs for c in measure_layers(net, x)} == {"q": 7 * 256, "k": 7 * 256, "v": 7 * 256, "o": 7 * 256, "up": 7 * 512, "down": 7 * 512}
    names = {l.framework_name: l.name for l in layers}
    assert find_ties(path).groups == ((names["q"], names["k"], names["v"]),)  # all read the LayerNorm output


def test_symbolic_shape_fallback_for_other_domains():
    # ONNX shape inference does not know com.microsoft ops: fc2's output shape comes from ONNX
    # Runtime's symbolic shape inference
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"), helper.make_node("Gelu", ["h"], ["g"], domain="com.microsoft"),
             helper.make_node("MatMul", ["g", "w2"], ["y"], name="fc2")]
    g = helper.make_graph(nodes, "g", [vi("x", ["b", 4])], [vi("y", None)], [init("w1", (4, 8)), init("w2", (8, 3))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    loaded = load_model(m, {"x": [2, 4]})
    assert loaded.shape("y") is None  # unknown to ONNX shape inference
    assert [c.macs for c in layer_costs(loaded, batch_size=2)] == [8 * 4, 3 * 8]


def test_framework_name_from_scopes():
    assert framework_name("/encoder/layer.0/attention/self/query/MatMul", "onnx::MatMul_1") == "encoder.layer.0.attention.self.query"
    assert framework_name("/features/features.3/Conv", "onnx::Conv_9") == "features.3"
    assert framework_name("fc", "fc_w") is None


# ------------------------------------------------------------------------------ hand-built graphs
def test_batched_matmul_gemm_transposed_and_cast_weights():
    nodes = [
        helper.make_node("MatMul", ["x4", "wb"], ["y_batched"], name="batched"),  # [2,3,5,4] x [3,4,6]
        helper.make_node("MatMul", ["wl", "x3"], ["y_left"], name="left"),  # [6,4] x [2,4,5]
        helper.make_node("Gemm", ["x2", "wg"], ["y_gemm"], name="fc_gemm"),  # transB=0: [K, N] = [4, 7]
        helper.make_node("Transpose", ["wt"], ["wt_T"], perm=[1, 0]),
        helper.make_node("MatMul", ["x2", "wt_T"], ["y_t"], name="transposed"),  # stored [out, in] = [9, 4]
        helper.make_node("Cast", ["wh"], ["wh32"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["x2", "wh32"], ["y_half"], name="half"),  # fp16 [4, 3]
        helper.make_node("MatMul", ["y_left", "y_left"], ["act"], name="act_x_act"),  # no constant: not a layer
    ]
    inputs = [vi("x4", [2, 3, 5, 4]), vi("x3", [2, 4, 5]), vi("x2", [10, 4])]
    inits = [init("wb", (3, 4, 6)), init("wl", (6, 4)), init("wg", (4, 7)), init("wt", (9, 4)), init("wh", (4, 3), dtype=np.float16)]
    outs = [vi(n, None) for n in ("y_batched", "y_gemm", "y_t", "y_half", "act")]
    m = model(nodes, inputs, outs, inits)
    layers = {l.name: l for l in discover_layers(m)}
    assert list(layers) == ["batched", "left", "fc_gemm", "transposed", "half"]
    assert {n: (l.weight_axis, l.kind) for n, l in layers.items()} == {
        "batched": (2, "matmul"), "left": (0, "linear"), "fc_gemm": (1, "linear"), "transposed": (0, "linear"), "half": (1, "linear")}
    assert layers["transposed"].weight_path == ("Transpose",) and layers["transposed"].weight_shape == (4, 9)
    assert layers["half"].weight_path == ("Cast",)
    costs = {c.name: c.macs for c in layer_costs(m, batch_size=1)}
    assert costs == {"batched": 2 * 3 * 5 * 6 * 4, "left": 2 * 6 * 5 * 4, "fc_gemm": 10 * 7 * 4, "transposed": 10 * 9 * 4, "half": 10 * 3 * 4}


def _attention_block():
    """h = x + pos; q/k/v = h Wq, Reshape(h) Wk, Identity(h) Wv; softmax(q k^T) v; out = ctx Wo + h."""
    nodes = [
        helper.make_node("Add", ["x", "pos"], ["h"], name="embed"),
        helper.make_node("MatMul", ["h", "wq"], ["q"], name="q"),
        helper.make_node("Reshape", ["h", "shape"], ["h_r"], name="reshape"),
        helper.make_node("MatMul", ["h_r", "wk"], ["k"], name="k"),
        helper.make_node("Identity", ["h"], ["h_i"], name="ident"),
        helper.make_node("MatMul", ["h_i", "wv"], ["v"], name="v"),
        helper.make_node("Transpose", ["k"], ["kT"], perm=[0, 2, 1], name="kT"),
        helper.make_node("MatMul", ["q", "kT"], ["scores"], name="scores"),
        helper.make_node("Softmax", ["scores"], ["attn"], axis=-1, name="softmax"),
        helper.make_node("MatMul", ["attn", "v"], ["ctx"], name="ctx"),
        helper.make_node("MatMul", ["ctx", "wo"], ["o"], name="o"),
        helper.make_node("Add", ["o", "h"], ["out"], name="residual"),
    ]
    inits = [init(n, (8, 8), seed=i) for i, n in enumerate(("wq", "wk", "wv", "wo"))]
    inits += [init("pos", (5, 8)), numpy_helper.from_array(np.array([2, 5, 8], np.int64), "shape")]
    return model(nodes, [vi("x", [2, 5, 8])], [vi("out", None)], inits)


def test_attention_ties_and_graph():
    m = _attention_block()
    layers = discover_layers(m)
    assert [l.name for l in layers] == ["q", "k", "v", "o"]  # q k^T and attn v read no constant
    g = model_graph(m)
    assert g.inputs == {"q": ("h",), "k": ("h",), "v": ("h",), "o": ("ctx",)}
    assert g.graph.nodes[("node", "q")]["layer"] == "q" and g.graph.nodes[("tensor", "wq")]["kind"] == "initializer"
    assert g.graph.has_edge(("tensor", "h"), ("node", "reshape")) and g.graph.nodes[("tensor", "h")]["shape"] == (2, 5, 8)
    auto = find_ties(m)
    assert auto.groups == (("q", "k", "v"),) and auto.method == "onnx"
    assert find_ties(m, ties=None).groups == ()
    assert find_ties(m, ties=[["q", "o"]]).groups == (("q", "o"),)
    assert find_ties(m, extra=[["v", "o"]], exclude="k").groups == (("q", "v", "o"),)
    # a user rule on the graph: tie every layer whose input is produced by an Add node
    def after_add(graph):  # noqa: ANN001, ANN202
        preds = {l: [graph.graph.nodes[p]["op"] for p in graph.graph.predecessors(("tensor", t[0]))] for l, t in graph.inputs.items()}
        return [[l for l, ops in preds.items() if ops == ["Add"]]]
    rule = find_ties(m, ties=after_add)
    assert rule.groups == (("q", "k", "v"),) and rule.method == "callable:onnx"
    with pytest.raises(ProblemError, match="'nope', which is not one of the problem's layers"):
        find_ties(m, ties=[["q", "nope"]])
    with pytest.raises(ProblemError, match="no quantizable layer named 'nope'"):
        find_ties(m, layers=["q", "nope"])
    assert find_ties(m, layers=["k", "o"]).groups == ()  # ties only among the chosen layers


def test_residual_ties():
    # conv1 and the downsample conv read the block input; conv2 reads conv1's ReLU; conv3 reads the sum
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Conv", ["a", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "wd"], ["d"], name="down"),
        helper.make_node("Add", ["c2", "d"], ["s"]),
        helper.make_node("Conv", ["s", "w3"], ["y"], name="conv3"),
    ]
    inits = [init("w1", (4, 4, 3, 3)), init("w2", (4, 4, 3, 3), 1), init("wd", (4, 4, 1, 1), 2), init("w3", (2, 4, 1, 1), 3)]
    m = model(nodes, [vi("x", [1, 4, 6, 6])], [vi("y", None)], inits)
    assert find_ties(m).groups == (("conv1", "down"),)
    assert [c.macs for c in layer_costs(m)] == [4 * 36 * 36, 4 * 36 * 36, 4 * 36 * 4, 2 * 36 * 4]


def test_shared_weight_is_one_layer_with_two_nodes():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="first"), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w"], ["y"], name="second")]
    m = model(nodes, [vi("x", [3, 4])], [vi("y", None)], [init("w", (4, 4))])
    (layer,) = discover_layers(m)
    assert layer.nodes == ("first", "second") and layer.name == "first"
    (cost,) = layer_costs(m, batch_size=3)
    assert cost.calls == 2 and cost.macs == 2 * 4 * 4  # per sample, both calls
    assert model_graph(m).inputs == {"first": ("x", "r")}


def test_unnamed_and_clashing_node_names_are_unique_and_stable():
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["a"], name="n0"), helper.make_node("MatMul", ["a", "w2"], ["b"], name="dup"),
             helper.make_node("MatMul", ["b", "w3"], ["c"], name="dup"), helper.make_node("MatMul", ["c", "w4"], ["y"])]
    m = model(nodes, [vi("x", [1, 4])], [vi("y", None)], [init(f"w{i}", (4, 4), i) for i in range(1, 5)])
    names = [l.name for l in discover_layers(m)]
    assert names == ["w1", "dup", "dup#2", "w4"]  # generated/empty node names fall back to the weight name
    assert [l.name for l in discover_layers(m)] == names


# ------------------------------------------------------------------------------ bad inputs
def test_no_quantizable_layer():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("MatMul", ["r", "r"], ["y"])]
    m = model(nodes, [vi("x", [4, 4])], [vi("y", None)], [])
    with pytest.raises(ProblemError, match=r"no quantizable layer.*\['MatMul', 'Relu'\]"):
        discover_layers(m)


def test_corrupt_truncated_and_missing_files(tmp_path):
    good = tmp_path / "good.onnx"
    onnx.save(_attention_block(), str(good))
    data = good.read_bytes()
    cases = {
        "truncated.onnx": data[: len(data) // 2],
        "random.onnx": np.random.default_rng(0).bytes(2000),
        "empty.onnx": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(FormatError, match=name):
            load_model(tmp_path / name)
    with pytest.raises(FormatError, match="no such file"):
        load_model(tmp_path / "absent.onnx")
    # a file cut at a message boundary still parses: a node then reads a tensor nothing provides
    cut = _attention_block()
    del cut.graph.initializer[:2]
    with pytest.raises(FormatError, match="node 'q' \\(MatMul\\) reads tensor 'wq', which no input"):
        load_model(cut)


def test_missing_external_data(tmp_path):
    m = _attention_block()
    path = tmp_path / "ext.onnx"
    onnx.save(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    assert len(discover_layers(path)) == 4  # loads while the data file is there
    (tmp_path / "weights.bin").write_bytes(b"\0" * 10)
    with pytest.raises(FormatError, match="'weights.bin' is truncated"):
        load_model(path)
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(FormatError, match="external data file 'weights.bin' of initializer '.*' is missing"):
        load_model(path)


def test_input_shape_errors():
    m = _attention_block()
    with pytest.raises(ProblemError, match="'y', which is not an input of the model; inputs are \\['x'\\]"):
        load_model(m, {"y": [1]})
    with pytest.raises(ProblemError, match="has rank 2, but input 'x' has rank 3"):
        load_model(m, {"x": [2, 5]})
    with pytest.raises(ProblemError, match="sets dim 2 to 9, but the model fixes it to 8"):
        load_model(m, {"x": [2, 5, 9]})
    with pytest.raises(ProblemError, match="positive integer sizes"):
        load_model(m, {"x": [2, 0, 8]})
    with pytest.raises(ProblemError, match="ONNX file path or an onnx.ModelProto"):
        load_model(42)
