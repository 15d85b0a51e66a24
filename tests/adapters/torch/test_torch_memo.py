"""memo: models torch.fx cannot trace run from the middle by replaying their module calls' FP32 outputs.
The tables equal full forwards (bit for bit with one batch and one option per forward, else to float
round-off: tests/torch_tables.py) (a module called twice, tuple and dict outputs, in-place
writes before and after the cut, tied weights, a tiny Hugging Face BERT), the prefix really is skipped,
forwards are restored after errors, and fx still wins where it works."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
from torch import nn  # noqa: E402

from mpqopt.adapters.torch import memo  # noqa: E402
from mpqopt.adapters.torch.estimators.delta_loss import _delta_loss_reference, estimate_delta_loss  # noqa: E402
from mpqopt.adapters.torch.estimators.exhaustive import _exhaustive_reference, exhaustive_losses  # noqa: E402
from mpqopt.adapters.torch.stages import stage_model  # noqa: E402
from mpqopt.errors import ProblemError  # noqa: E402
from torch_tables import assert_same_table, one_per_forward  # noqa: E402

torch.set_num_threads(1)


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc, self.norm = nn.Linear(d, d), nn.LayerNorm(d)

    def forward(self, x):
        return self.norm(x + torch.tanh(self.fc(x))), {"total": x.sum(), "n": x.shape[0]}


class CountingLinear(nn.Linear):
    """Counts the times its forward computes (hooks would also count the calls answered from the cache)."""

    runs = 0

    def forward(self, x):
        self.runs += 1
        return super().forward(x)


class Untraceable(nn.Module):
    """A data-dependent slice (fx fails), a block called twice, an in-place ReLU on a block's output
    before the head, and a write into the stem's output after the head (the suffix writes into a
    cached value)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.stem, self.blocks, self.head = CountingLinear(4, 6), nn.ModuleList([Block(6), Block(6)]), nn.Linear(6, 3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        e = self.stem(x)
        n = int((e[:, 0] > -1e9).sum())  # every row, but fx cannot know
        h = e[:n]
        for block in self.blocks:
            h, _ = block(h)
        h = self.act(h)
        h = self.blocks[0](h)[0]
        out = self.head(h)
        e.mul_(0.5)
        return out + e[:, :3]


class Tied(nn.Module):
    """``head`` shares ``stem``'s weight: quantizing head changes stem's output too."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.stem, self.mid, self.head = nn.Linear(5, 5), nn.Linear(5, 5), nn.Linear(5, 5)
        self.head.weight = self.stem.weight

    def forward(self, x):
        h = torch.tanh(self.stem(x))
        h = self.mid(h[: int(h.shape[0])])
        return self.head(h)


def batches(n: int = 3, size: int = 6, width: int = 4, seed: int = 5):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, width, generator=gen), torch.randint(0, 3, (size,), generator=gen)) for _ in range(n)]


def restored(model: nn.Module) -> bool:
    return all("forward" not in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("per_forward", [{"concat_batches": 1, "batch_perturbations": 1}, {"concat_batches": 1}, {}])
@pytest.mark.parametrize("options, kw", [([2, 3, 8], {}), (["W2A4", "W4"], {}), ([3, 4], {"loss": "mse"})])
def test_memo_table_equals_full_forwards(options, kw, per_forward):
    model, data = Untraceable().eval(), batches()
    got = estimate_delta_loss(model, data, options, **per_forward, **kw)
    want = _delta_loss_reference(model, data, options, **kw)
    assert got.meta["mode"] == "memo" and got.meta["mode_reason"].startswith("fx:")
    assert 0 < got.meta["step_fraction"] < 1
    assert one_per_forward(got.meta) == (len(per_forward) == 2)
    assert_same_table(got, want)  # bit for bit with one batch and one option per forward
    assert np.abs(want.values).max() > 1e-4  # the perturbations matter
    assert restored(model)


def test_the_prefix_runs_once_per_batch_not_once_per_evaluation():
    model, data = Untraceable().eval(), batches()
    layers = ["blocks.0.fc", "blocks.1.fc", "head"]  # after the stem
    got = estimate_delta_loss(model, data, [2, 3, 4], concat_batches=1, layers=layers)
    evaluations = len(got.layers) * 3 * len(data)
    # the evaluator's FP32 pass, stage_model's reference, its fx trace (into the stem, no leaf), the memo
    # layout's forward and check, then one recording forward per batch: never per evaluation
    assert model.stem.runs == 2 * len(data) + 4 < evaluations
    model.stem.runs = 0
    _delta_loss_reference(model, data, [2, 3, 4], layers=layers)
    assert model.stem.runs == len(data) + evaluations


def test_tied_weights_cut_at_the_first_module_holding_them():
    model, data = Tied().eval(), batches(width=5)
    staged = stage_model(model, ["stem", "mid", "head"], data[0][0])
    assert staged.mode == "memo" and staged.cut["head"] == staged.cut["stem"] < staged.cut["mid"]
    # one batch and one option per forward: joined batches (or stacked options) of this 5-wide model
    # differ from one at a time in the last bits, in every mode
    got = estimate_delta_loss(model, data, [2, 4], loss="mse", concat_batches=1, batch_perturbations=1)
    assert_same_table(got, _delta_loss_reference(model, data, [2, 4], loss="mse"))


def test_exhaustive_enumeration_in_memo_mode_equals_full_forwards():
    model, data = Untraceable().eval(), batches(2)
    got = exhaustive_losses(model, data, [2, 8], progress=False)
    want = _exhaustive_reference(model, data, [2, 8])
    assert got.meta["mode"] == "memo" and got.meta["step_fraction"] < 1
    np.testing.assert_array_equal(got.change, want.change)


def test_a_cached_output_written_into_downstream_stays_intact():
    model, (x, _) = Untraceable().eval(), batches(1)[0]
    staged = stage_model(model, ["stem", "head"], x)
    with torch.no_grad():
        want = model(x)
        env = staged.advance(staged.start(x), 0, staged.cut["head"])
        for _ in range(3):  # the forward halves the stem's output after the head: a shared cache would drift
            assert torch.equal(staged.finish(env, staged.cut["head"]), want)


def test_forwards_are_restored_after_an_error_in_the_model():
    model, (x, _) = Untraceable().eval(), batches(1)[0]
    staged = stage_model(model, ["stem", "head"], x)
    env = staged.advance(staged.start(x), 0, staged.cut["head"])
    with torch.no_grad(), pytest.raises(RuntimeError):
        staged.finish({**env, "inputs": torch.randn(6, 7)}, 0)  # the wrong width: the stem fails
    assert restored(model)


class Swapping(nn.Module):
    """Calls its layers in an order that depends on the data."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        return self.b(self.a(x)) if x.sum() > 0 else self.a(self.b(x))


def test_a_data_dependent_call_order_is_an_error_naming_it():
    model = Swapping().eval()
    staged = stage_model(model, ["a", "b"], torch.ones(2, 4))
    assert staged.mode == "memo"
    with torch.no_grad(), pytest.raises(ProblemError, match="data-dependent order"):
        staged.advance(staged.start(-torch.ones(2, 4)), 0, staged.cut["b"])
    assert restored(model)


def test_over_the_memory_cap_it_falls_back_to_full_forwards_and_says_why(monkeypatch):
    monkeypatch.setattr(memo, "MEMO_MAX_BYTES", 16)
    model, data = Untraceable().eval(), batches()
    got = estimate_delta_loss(model, data, [2, 4])
    assert got.meta["mode"] == "full" and "memo: ProblemError: its cached values would take" in got.meta["mode_reason"]
    assert_same_table(got, _delta_loss_reference(model, data, [2, 4]))


def test_sequential_models_still_use_fx():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    assert estimate_delta_loss(model, batches(), [2, 4]).meta["mode"] == "fx"


@pytest.mark.parametrize("options", [[2, 3, 4], ["W4A8", "W2A4", "W8A4"]])
@pytest.mark.parametrize("stack", [1, 3])
def test_tiny_bert_in_memo_mode_equals_full_forwards(options, stack):
    """stack=3: the three options of each layer in one forward (inputs and recorded outputs repeated,
    the layer computing each slice with its own weights and input quantizer)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                                     max_position_embeddings=16, attn_implementation="eager")
    torch.manual_seed(0)
    model = transformers.BertModel(config, add_pooling_layer=False).eval()
    gen = torch.Generator().manual_seed(1)
    data = []
    for _ in range(2):
        ids = torch.randint(1, 40, (3, 7), generator=gen)
        mask = torch.ones(3, 7, dtype=torch.long)
        mask[0, 5:] = 0
        data.append({"input_ids": ids, "attention_mask": mask})
    got = estimate_delta_loss(model, data, options, loss="mse", include="re:encoder", batch_perturbations=stack)
    want = _delta_loss_reference(model, data, options, loss="mse", include="re:encoder")
    assert got.meta["mode"] == "memo" and got.meta["step_fraction"] < 0.75
    assert got.meta["batch_perturbations"] == stack and not got.meta["batching_note"]
    assert_same_table(got, want)
    assert restored(model)


class Shortcut(nn.Module):
    """Skips its middle layer on some batches."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        h = self.a(x)
        return h if x.sum() < 0 else self.c(self.b(h))


def test_a_forward_that_ends_before_the_cut_is_an_error_naming_it():
    model = Shortcut().eval()
    staged = stage_model(model, ["a", "b", "c"], torch.ones(2, 4))
    assert staged.mode == "memo"
    with torch.no_grad(), pytest.raises(ProblemError, match="data-dependent order"):
        staged.advance(staged.start(-torch.ones(2, 4)), 0, staged.cut["c"])
    assert restored(model)


@pytest.mark.parametrize("tied", [True, False])
def test_tiny_llama_in_memo_mode_equals_full_forwards(tied):
    from llm_helpers import tiny_llama, token_batches

    from mpqopt.adapters.torch import discover_llm_layers

    model = tiny_llama(tied=tied).eval()
    names = discover_llm_layers(model).names  # the embedding too: with tied=True the head reads its weight
    data = token_batches()
    got = estimate_delta_loss(model, data, [2, 4], layers=names)
    assert got.meta["mode"] == "memo" and got.meta["step_fraction"] < 0.75
    assert_same_table(got, _delta_loss_reference(model, data, [2, 4], layers=names))
    assert restored(model)


def test_stacked_options_over_the_memory_cap_run_one_by_one_and_say_why(monkeypatch):
    model, data = Untraceable().eval(), batches()
    layers = ["blocks.1.fc", "head"]  # called once each: stackable
    peak = stage_model(model, layers, data[0][0]).peak_bytes
    monkeypatch.setattr(memo, "MEMO_MAX_BYTES", 2 * peak)  # one batch's records fit, three copies do not
    got = estimate_delta_loss(model, data, [2, 3, 4], layers=layers, concat_batches=1, batch_perturbations=3)
    assert got.meta["mode"] == "memo" and got.meta["batch_perturbations"] == 1
    assert "would take over" in got.meta["batching_note"]
    assert_same_table(got, _delta_loss_reference(model, data, [2, 3, 4], layers=layers))


def test_stacked_options_of_a_narrow_model_agree_to_float_round_off():
    """Stacking the options changes the matrix shapes of the rest of the model; on this 5-wide model
    that changes the last bits (8e-8 relative measured), as joining batches does in every mode."""
    model, data = Tied().eval(), batches(width=5)
    got = estimate_delta_loss(model, data, [2, 3, 4], loss="mse", concat_batches=1, batch_perturbations=3)
    want = _delta_loss_reference(model, data, [2, 3, 4], loss="mse")
    assert got.meta["batch_perturbations"] == 3
    np.testing.assert_allclose(got.values, want.values, rtol=1e-6, atol=1e-12)
