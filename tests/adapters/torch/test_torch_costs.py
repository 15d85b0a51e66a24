"""Per-layer costs of the torch adapter: MACs against hand formulas and torch's own FLOP counter."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from mpqopt import Option  # noqa: E402
from mpqopt.adapters.torch.costs import check_latency, cost_tables, latency_table, measure_layers  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402


def conv_out(size, k, s=1, p=0, d=1):
    """Output length of a convolution along one axis (the formula in torch's Conv docs)."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class Mixed(nn.Module):
    """Stride-2, dilated, grouped and depthwise convs, a Conv1d, a Linear on [B, T, F], and a Conv3d."""

    def __init__(self):
        super().__init__()
        self.strided = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.dilated = nn.Conv2d(8, 8, 3, dilation=2, padding=1, bias=False)
        self.grouped = nn.Conv2d(8, 12, (3, 1), groups=4)
        self.depthwise = nn.Conv2d(12, 12, 3, groups=12, padding=1, stride=(1, 2))
        self.conv1d = nn.Conv1d(12, 6, 2, stride=2)
        self.fc = nn.Linear(6, 5)
        self.conv3d = nn.Conv3d(1, 2, (1, 3, 3), stride=(1, 2, 2))

    def forward(self, x):
        y = self.depthwise(self.grouped(self.dilated(self.strided(x))))  # [B, 12, H, W]
        seq = self.conv1d(y.flatten(2))  # [B, 6, T]
        out = self.fc(seq.transpose(1, 2))  # [B, T, 5]
        vol = self.conv3d(x[:, :1].unsqueeze(1))  # [B, 2, 1, H', W']
        return out.mean() + vol.mean()


def hand_macs(h=17, w=13):
    """Per-sample MACs of Mixed from the output-size formula and out_ch * in_ch/groups * prod(kernel)."""
    h1, w1 = conv_out(h, 3, 2, 1), conv_out(w, 3, 2, 1)
    h2, w2 = conv_out(h1, 3, 1, 1, 2), conv_out(w1, 3, 1, 1, 2)
    h3, w3 = conv_out(h2, 3), conv_out(w2, 1)
    h4, w4 = conv_out(h3, 3, 1, 1), conv_out(w3, 3, 2, 1)
    t = conv_out(h4 * w4, 2, 2)
    d_h, d_w = conv_out(h, 3, 2), conv_out(w, 3, 2)
    return {
        "strided": 8 * h1 * w1 * 3 * 9,
        "dilated": 8 * h2 * w2 * 8 * 9,
        "grouped": 12 * h3 * w3 * (8 // 4) * 3,
        "depthwise": 12 * h4 * w4 * 1 * 9,
        "conv1d": 6 * t * 12 * 2,
        "fc": t * 5 * 6,
        "conv3d": 2 * 1 * d_h * d_w * 1 * 9,
    }


def test_macs_match_hand_formulas_for_stride_dilation_groups_and_depthwise():
    costs = measure_layers(Mixed(), torch.randn(2, 3, 17, 13))
    assert {c.name: c.macs for c in costs} == {k: float(v) for k, v in hand_macs().items()}
    by = {c.name: c for c in costs}
    assert by["depthwise"].groups == 12 and by["grouped"].groups == 4
    assert by["dilated"].params == by["dilated"].weight_params == 8 * 8 * 9  # no bias
    assert by["strided"].params == 8 * 3 * 9 + 8


def test_macs_match_torch_flop_counter_per_layer():
    model, batch = Mixed(), 3
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(batch, 3, 17, 13))
    flops = {k.split(".", 1)[1]: sum(v.values()) for k, v in counter.get_flop_counts().items() if k.startswith("Mixed.")}
    costs = measure_layers(model, torch.randn(batch, 3, 17, 13))
    for c in costs:
        assert c.macs == flops[c.name] / 2 / batch, c.name  # one MAC = 2 FLOPs in torch's counter


def test_macs_are_per_sample_and_shapes_recorded():
    one = measure_layers(Mixed(), torch.randn(1, 3, 17, 13))
    five = measure_layers(Mixed(), torch.randn(5, 3, 17, 13))
    assert [c.macs for c in one] == [c.macs for c in five]
    assert five[0].input_shape == (5, 3, 17, 13) and five[0].output_shape == (5, 8, 9, 7)
    # batch_size= overrides the leading dimension (e.g. a sequence model fed [T, F] per sample)
    assert measure_layers(Mixed(), torch.randn(5, 3, 17, 13), batch_size=1)[0].macs == 5 * one[0].macs


def test_module_called_twice_sums_calls_and_execution_order():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.late = nn.Linear(4, 4)  # registered first, runs second
            self.shared = nn.Linear(4, 4)

        def forward(self, x):
            return self.late(self.shared(self.shared(x)))

    costs = {c.name: c for c in measure_layers(Twice(), torch.randn(3, 4))}
    assert costs["shared"].calls == 2 and costs["shared"].macs == 2 * 16
    assert costs["late"].calls == 1 and costs["late"].macs == 16
    assert (costs["shared"].order, costs["late"].order) == (0, 1)


def test_dict_inputs_and_labels_are_dropped():
    class Kw(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, features, mask):
            return self.fc(features * mask)

    batch = {"features": torch.randn(4, 7, 3), "mask": torch.ones(4, 7, 1), "labels": torch.zeros(4)}
    (c,) = measure_layers(Kw(), batch)
    assert c.macs == 7 * 2 * 3  # [4, 7, 2] outputs x 3 inputs, per sample of 4


def test_eval_mode_during_measure_and_mode_restored():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 4 * 4, 2)).train()
    before = model[1].running_mean.clone()
    measure_layers(model, torch.randn(2, 1, 6, 6) * 5 + 3)
    assert model.training and torch.equal(model[1].running_mean, before)


def test_cost_tables_from_core_models():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4 * 3 * 3, 3))
    costs = measure_layers(model, torch.randn(1, 2, 5, 5))
    opts = [Option(4, 8), Option(8, 8), Option(2)]
    tables = cost_tables(costs, opts, ["size_bits", "size_bytes", "bitops"], default_act_bits=6)
    weights = np.array([4 * 1 * 9, 3 * 36], dtype=float)  # weights only, biases not counted
    np.testing.assert_array_equal(tables["size_bits"], weights[:, None] * [4, 8, 2])
    np.testing.assert_array_equal(tables["size_bytes"], weights[:, None] * [4, 8, 2] / 8)
    macs = np.array([4 * 9 * 1 * 9, 3 * 36], dtype=float)
    np.testing.assert_array_equal(tables["bitops"], macs[:, None] * [32, 64, 12])
    with pytest.raises(ProblemError, match="'flops'"):
        cost_tables(costs, opts, ["flops"])
    with pytest.raises(ProblemError, match="latency="):
        cost_tables(costs, opts, ["latency_s"])
    with pytest.raises(ProblemError, match="W2.*default_act_bits"):
        cost_tables(costs, opts, ["bitops"], default_act_bits=None)


def test_latency_table_calls_benchmark_per_cell_and_validates():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    calls = []

    def bench(m, name, opt):
        calls.append((name, opt.label))
        assert m is model
        return 1e-3 * (int(name) + 1) * opt.w

    table = latency_table(model, ["0", "1"], ["W4A8", 8], bench)
    assert sorted(calls) == [("0", "W4A8"), ("0", "W8"), ("1", "W4A8"), ("1", "W8")]
    np.testing.assert_allclose(table, [[4e-3, 8e-3], [8e-3, 16e-3]])
    for bad, what in ((float("nan"), "nan"), (-1.0, "-1.0"), ("fast", "'fast'"), (None, "None")):
        with pytest.raises(ProblemError, match=f"layer '0' option W4A8 returned {what}"):
            latency_table(model, ["0", "1"], ["W4A8"], lambda m, n, o, bad=bad: bad)
    with pytest.raises(ProblemError, match="callable"):
        latency_table(model, ["0"], [4], 0.5)
    with pytest.raises(ProblemError, match=r"shape \(1, 2\), expected \(2, 2\)"):
        check_latency([[1, 2]], ["0", "1"], [4, 8])
    with pytest.raises(ProblemError, match="layer '1' option W8 is -0.5"):
        check_latency([[1, 2], [3, -0.5]], ["0", "1"], [4, 8])


def test_bad_inputs_name_the_problem():
    with pytest.raises(ProblemError, match="no quantizable layer"):
        measure_layers(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)), torch.randn(2, 3))
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ProblemError, match="failed on the example input"):
        measure_layers(model, torch.randn(2, 5, 3, 3))  # 5 channels for a 3-channel conv
    with pytest.raises(ProblemError, match="no tensor"):
        measure_layers(model, {"x": "not a tensor"})

    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.aux = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(ProblemError, match=r"\['aux'\] never ran"):
        measure_layers(Unused(), torch.randn(1, 2))
    assert [c.name for c in measure_layers(Unused(), torch.randn(1, 2), skip_unused=True)] == ["used"]
    with pytest.raises(ProblemError, match="batch_size"):
        measure_layers(Unused(), torch.randn(1, 2), batch_size=0)
    assert math.isclose(measure_layers(Unused(), torch.randn(1, 2), exclude="aux")[0].macs, 4)
