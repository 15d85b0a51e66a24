"""Tie groups from the model graph: layers reading the same tensor share an input quantizer."""

import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("networkx", reason="networkx (torch extra) is not installed")
from torch import nn  # noqa: E402

from mpqopt.adapters.torch.graph import ModelGraph, find_ties, fx_graph, hook_graph, same_input_groups  # noqa: E402
from mpqopt.adapters.torch.layers import discover_layers  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402


def names(model):
    return [layer.name for layer in discover_layers(model)]


class Block(nn.Module):
    """A ResNet basic block with a downsample branch: conv1 and downsample.0 read the block input."""

    def __init__(self, cin=4, cout=8):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.downsample(x))


class ResNetTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block1 = Block(4, 8)
        self.block2 = Block(8, 8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.block2(self.block1(torch.relu(self.stem(x))))
        return self.fc(x.mean((2, 3)))


class Attention(nn.Module):
    """q/k/v read the layer-normed input (v through a reshape, k through dropout); o reads the attention."""

    def __init__(self, d=8, heads=2):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.drop = nn.Dropout(0.1)
        self.up, self.gate, self.down = nn.Linear(d, 16), nn.Linear(d, 16), nn.Linear(16, d)
        self.norm2 = nn.LayerNorm(d)

    def forward(self, x):
        b, t, d = x.shape
        h = self.norm(x)
        q = self.q(h).view(b, t, self.heads, -1).transpose(1, 2)
        k = self.k(self.drop(h)).view(b, t, self.heads, -1).transpose(1, 2)
        v = self.v(h.reshape(b * t, d)).view(b, t, self.heads, -1).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(b, t, d))
        h2 = self.norm2(x)
        return x + self.down(torch.nn.functional.silu(self.gate(h2)) * self.up(h2))


def test_residual_block_ties_first_conv_with_downsample():
    model = ResNetTiny()
    ties = find_ties(model, names(model), example_input=torch.randn(2, 3, 8, 8))
    assert ties.method == "fx" and ties.reason == ""
    assert ties.groups == (("block1.conv1", "block1.downsample.0"), ("block2.conv1", "block2.downsample.0"))


def test_attention_qkv_and_gate_up_are_tied_but_not_o_or_down():
    model = Attention()
    ties = find_ties(model, names(model))
    assert ties.method == "fx"
    assert ties.groups == (("q", "k", "v"), ("up", "gate"))  # members in module order
    g = ties.graph
    assert isinstance(g, ModelGraph) and g.inputs["q"] == g.inputs["k"] == g.inputs["v"] == ("norm",)
    assert g.graph.nodes["norm"]["op"] == "call_module" and g.graph.has_edge("norm", "q")


def test_hooks_find_the_same_groups_as_fx():
    for model, x in ((ResNetTiny(), torch.randn(2, 3, 8, 8)), (Attention().eval(), torch.randn(2, 5, 8))):
        layers = names(model)
        fx_groups = same_input_groups(fx_graph(model, layers))
        hooked = hook_graph(model, layers, x)
        assert hooked.method == "hooks"
        assert same_input_groups(hooked) == fx_groups


def test_value_changing_ops_and_slices_are_not_tied():
    class Split(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c, self.d = nn.Linear(4, 2), nn.Linear(4, 2), nn.Linear(8, 2), nn.Linear(8, 2)
            self.e = nn.Linear(4, 2)

        def forward(self, x):
            # a and b read different halves; c reads x, d reads relu(x); e reads column-block 0 of a view
            y = x.view(-1, 8)
            return self.a(y[:, :4]) + self.b(y[:, 4:]) + self.c(y) + self.d(torch.relu(y)) + self.e(x.view(-1, 2, 4)[:, 0])

    model = Split()
    layers = names(model)
    assert find_ties(model, layers).groups == ()
    assert same_input_groups(hook_graph(model, layers, torch.randn(3, 8))) == ()


def test_in_place_writes_split_reads_of_one_tensor():
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.before, self.also_before, self.after, self.after2 = (nn.Linear(4, 4) for _ in range(4))
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            h = x * 2
            a = self.before(h) + self.also_before(h.view(-1, 4))
            self.act(h.view(-1, 4))  # writes into h through a view
            return a + self.after(h) + self.after2(h)

    model = InPlace()
    layers = names(model)
    expected = (("before", "also_before"), ("after", "after2"))
    graph = fx_graph(model, layers)
    assert graph.inputs["before"] == ("mul",) and graph.inputs["after"] == ("mul@1",)
    assert same_input_groups(graph) == expected
    assert same_input_groups(hook_graph(model, layers, torch.randn(3, 4))) == expected


def test_layers_fx_does_not_call_as_modules_fall_back_to_hooks():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            return self.a(x) + nn.functional.linear(x, self.b.weight)  # b's weight used without calling b

    model = Functional()
    ties = find_ties(model, ["a", "b"], example_input=torch.randn(2, 3))
    assert ties.method == "hooks" and "never calls layers ['b'] as modules" in ties.reason
    assert ties.groups == ()  # b never runs as a module: nothing to tie it by


class DataDependent(nn.Module):
    """Python control flow on tensor values: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.other = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        h = torch.tanh(x)
        if h.sum() > 0:
            return self.q(h) + self.k(h.view(h.shape)) + self.other(x)
        return self.q(h) + self.k(h) + self.other(x)


def test_fx_failure_falls_back_to_hooks_and_says_so():
    model = DataDependent()
    ties = find_ties(model, names(model), example_input=torch.randn(3, 4))
    assert ties.method == "hooks"
    assert "torch.fx could not trace DataDependent" in ties.reason
    assert ties.groups == (("q", "k"),)
    with pytest.raises(ProblemError, match="could not trace DataDependent.*example input"):
        find_ties(model, names(model))


def test_hf_llama_falls_back_to_hooks_and_ties_qkv_and_gate_up():
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    cfg = transformers.LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=2)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    ties = find_ties(model, names(model), example_input={"input_ids": torch.randint(0, 32, (2, 6))})
    assert ties.method == "hooks"
    expected = []
    for i in range(2):
        p = f"model.layers.{i}."
        expected += [tuple(p + f"self_attn.{n}_proj" for n in "qkv"), (p + "mlp.gate_proj", p + "mlp.up_proj")]
    assert ties.groups == tuple(expected)


def test_user_overrides():
    model = Attention()
    layers = names(model)
    assert find_ties(model, layers, None).groups == ()
    assert find_ties(model, layers, None).method == "none"
    user = find_ties(model, layers, [["o", "down"], ["down", "q"]])
    assert user.method == "user" and user.groups == (("q", "o", "down"),)  # overlapping groups merged
    # a callable sees the graph: here, tie every layer that reads a LayerNorm output
    rule = find_ties(model, layers, lambda g: [[n for n, src in g.inputs.items() if src[0].startswith("norm")]])
    assert rule.method == "callable:fx" and rule.groups == (("q", "k", "v", "up", "gate"),)
    extra = find_ties(model, layers, extra=[["o", "down"]], exclude=["k", "re:^g"])
    assert extra.groups == (("q", "v"), ("o", "down"))


def test_bad_tie_specs_name_the_problem():
    model = Attention()
    layers = names(model)
    with pytest.raises(ProblemError, match="group 0 names 'qq'"):
        find_ties(model, layers, [["q", "qq"]])
    with pytest.raises(ProblemError, match="extra ties: group 1 names 'norm'"):
        find_ties(model, layers, None, extra=[["q", "k"], ["norm"]])
    with pytest.raises(ProblemError, match="ties must be 'auto'"):
        find_ties(model, layers, "fx")
    with pytest.raises(ProblemError, match="group 0 must be a list"):
        find_ties(model, layers, ["q"])
    with pytest.raises(ProblemError, match="the ties callable failed: KeyError"):
        find_ties(model, layers, lambda g: g.inputs["nope"])
    with pytest.raises(ProblemError, match="no quantizable layer named 'missing'"):
        find_ties(model, ["q", "missing"])
